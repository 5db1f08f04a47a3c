"""Chapter 5 (the Diffusion Transformer): token count, Gflops of a block, the final layer."""
import pytest
import torch
from grading import assert_close

from minidit.flops import block_gflops as ref_block_gflops
from minidit.models.final_layer import FinalLayer as RefFinalLayer

pytestmark = pytest.mark.ch5


def test_num_patches(impl):
    f = impl("ch05").num_patches
    for size, p, expected in ((32, 2, 256), (32, 4, 64), (32, 8, 16), (8, 1, 64), (8, 2, 16)):
        got = f(size, p)
        assert got == expected, f"num_patches({size}, {p}): expected {expected}, got {got}"
    with pytest.raises(ValueError):
        f(32, 3)


def test_block_gflops(impl):
    f = impl("ch05").block_gflops
    for D, T in ((1152, 256), (384, 16), (64, 16)):
        got, expected = f(D, T), ref_block_gflops(D, T)
        assert got == pytest.approx(expected, rel=1e-9), (
            f"block_gflops({D}, {T}): expected {expected:.6f}, got {got:.6f}")
    # frozen: DiT-XL/2 = 28 blocks of D=1152 on T=256 tokens is ~118.6 Gflops (paper, Table 4)
    assert 28 * f(1152, 256) == pytest.approx(118.60, abs=0.01), "28 * block_gflops(1152, 256) should be ~118.60"
    assert f(64, 16, mlp_ratio=2.0) == pytest.approx(ref_block_gflops(64, 16, mlp_ratio=2.0), rel=1e-9), \
        "block_gflops(64, 16, mlp_ratio=2.0): the MLP width is int(D * mlp_ratio)"


def test_final_layer_forward(impl):
    Final = impl("ch05").FinalLayer
    ref = RefFinalLayer(32, 2, 8)
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(std=0.2)
    layer = Final(32, 2, 8)
    layer.load_state_dict(ref.state_dict())
    x, c = torch.randn(2, 16, 32), torch.randn(2, 32)
    out = layer(x, c)
    assert_close(out, ref(x, c), "FinalLayer(32, 2, 8).forward(x (2, 16, 32), c (2, 32)) with random weights",
                 atol=1e-5)
