"""Chapter 11 (conditioning ablation): summarising FID curves and the variants' compute overhead."""
import numpy as np
import pytest

from minidit.experiments.ablation import area_under_fid_curve as ref_area
from minidit.experiments.ablation import final_fid_ranking as ref_ranking
from minidit.experiments.ablation import gflops_overhead as ref_overhead

pytestmark = pytest.mark.ch11


def test_area_under_fid_curve(impl):
    f = impl("ch11").area_under_fid_curve
    # frozen by hand: trapezoids (100 * (40 + 20) / 2 + 200 * (20 + 10) / 2) / 300 = 20
    got = f([100, 200, 400], [40.0, 20.0, 10.0])
    assert got == pytest.approx(20.0), f"area_under_fid_curve([100, 200, 400], [40, 20, 10]): expected 20.0, got {got}"
    got = f([0, 10], [5.0, 5.0])
    assert got == pytest.approx(5.0), f"a flat curve at 5 must average to 5.0, got {got}"
    rng = np.random.default_rng(0)
    steps = np.cumsum(rng.integers(1, 50, size=6))
    fids = rng.uniform(5, 100, size=6)
    got, expected = f(steps.tolist(), fids.tolist()), ref_area(steps.tolist(), fids.tolist())
    assert got == pytest.approx(expected, rel=1e-12), (
        f"area_under_fid_curve(steps={steps.tolist()}, fids=...): expected {expected:.6f}, got {got:.6f}")
    for bad in (([1, 2], [1.0]), ([1], [1.0]), ([2, 1], [1.0, 2.0]), ([1, 1], [1.0, 2.0])):
        with pytest.raises(ValueError):
            f(*bad)


def test_final_fid_ranking(impl):
    f = impl("ch11").final_fid_ranking
    curves = {"in-context": [90, 60, 40], "cross-attention": [80, 50, 30], "adaLN": [70, 45, 25],
              "adaLN-Zero": [60, 35, 20]}
    got = f(curves)
    assert got == ["adaLN-Zero", "adaLN", "cross-attention", "in-context"], (
        f"ranking by the LAST FID (lowest first): expected the paper's order, got {got}")
    # only the final value counts, and ties go alphabetically
    got = f({"b": [1, 9], "a": [50, 9], "c": [0, 3]})
    assert got == ["c", "a", "b"], f"final FIDs b=9, a=9, c=3: expected ['c', 'a', 'b'], got {got}"
    assert got == ref_ranking({"b": [1, 9], "a": [50, 9], "c": [0, 3]})
    with pytest.raises(ValueError):
        f({"x": []})


def test_gflops_overhead(impl):
    f = impl("ch11").gflops_overhead
    g = {"adaLN-Zero": 2.0, "cross-attention": 2.3, "adaLN": 1.98, "in-context": 2.05}
    got, expected = f(g), ref_overhead(g)
    assert set(got) == set(expected), f"expected one entry per variant {sorted(expected)}, got {sorted(got)}"
    for k in expected:
        assert got[k] == pytest.approx(expected[k], abs=1e-12), f"gflops_overhead[{k!r}]: expected {expected[k]}, got {got[k]}"
    assert got["adaLN-Zero"] == 0.0 and got["cross-attention"] == pytest.approx(0.15)
    assert f({"a": 1.0, "b": 3.0}, baseline="b")["a"] == pytest.approx(-2 / 3)
    with pytest.raises(ValueError):
        f({"adaLN": 1.0})


# ---- the conditioning variants themselves (minidit/models/block.py and dit.py)

import torch  # noqa: E402
from grading import assert_close  # noqa: E402

from minidit.models.block import AdaLNBlock as RefAdaLNBlock  # noqa: E402
from minidit.models.block import CrossAttentionBlock as RefCrossAttentionBlock  # noqa: E402
from minidit.models.dit import append_condition_tokens as ref_append  # noqa: E402


def _randomised(block):
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(std=0.2)
    return block


def test_adaln_block_forward(impl):
    Block = impl("ch11").AdaLNBlock
    ref = _randomised(RefAdaLNBlock(32, 4))
    block = Block(32, 4)
    block.load_state_dict(ref.state_dict())
    x, c = torch.randn(2, 5, 32), torch.randn(2, 32)
    assert_close(block(x, c), ref(x, c), "AdaLNBlock(32, 4)(x of shape (2, 5, 32), c of shape (2, 32))",
                 atol=1e-5, rtol=1e-5)


def test_cross_attention_block_forward(impl):
    Block = impl("ch11").CrossAttentionBlock
    ref = _randomised(RefCrossAttentionBlock(32, 4))
    block = Block(32, 4)
    block.load_state_dict(ref.state_dict())
    x, c = torch.randn(2, 5, 32), torch.randn(2, 2, 32)
    assert_close(block(x, c), ref(x, c),
                 "CrossAttentionBlock(32, 4)(x of shape (2, 5, 32), c = [t_emb, y_emb] of shape (2, 2, 32))",
                 atol=1e-5, rtol=1e-5)


def test_append_condition_tokens(impl):
    f = impl("ch11").append_condition_tokens
    x, t_emb, y_emb = torch.randn(3, 4, 8), torch.randn(3, 8), torch.randn(3, 8)
    out = f(x, t_emb, y_emb)
    assert tuple(out.shape) == (3, 6, 8), f"(N, T, D) = (3, 4, 8) plus 2 tokens: expected (3, 6, 8), got {tuple(out.shape)}"
    # frozen convention: image tokens first, then the timestep token, then the class token
    assert_close(out[:, :4], x, "append_condition_tokens(...)[:, :T] must be the image tokens", atol=0, rtol=0)
    assert_close(out[:, 4], t_emb, "append_condition_tokens(...)[:, T] must be t_emb", atol=0, rtol=0)
    assert_close(out[:, 5], y_emb, "append_condition_tokens(...)[:, T + 1] must be y_emb", atol=0, rtol=0)
    assert_close(out, ref_append(x, t_emb, y_emb), "append_condition_tokens(x, t_emb, y_emb)", atol=0, rtol=0)
