"""Chapter 3 (images as token sequences): patchify, unpatchify, the patch embedding, the 2-D
sin-cos positions and multi-head self-attention."""
import pytest
import torch
from einops import rearrange
from grading import assert_close, close, randomize_

from minidit.models.attention import Attention as RefAttention
from minidit.models.patch_embed import PatchEmbed as RefPatchEmbed
from minidit.models.patch_embed import patchify as ref_patchify
from minidit.models.patch_embed import unpatchify as ref_unpatchify
from minidit.models.pos_embed import get_1d_sincos_pos_embed as ref_1d
from minidit.models.pos_embed import get_2d_sincos_pos_embed as ref_2d

pytestmark = pytest.mark.ch3


def test_patchify(impl):
    patchify = impl("ch03").patchify
    # conventions first: features of a token are ordered (row in patch, column in patch, channel) ...
    x = torch.arange(8.0).reshape(1, 2, 2, 2)            # x[0, c, a, b] = 4c + 2a + b
    assert_close(patchify(x, 2), torch.tensor([[[0.0, 4, 1, 5, 2, 6, 3, 7]]]),
                 "patchify(arange(8).reshape(1, 2, 2, 2), 2): token features must be ordered (p, q, c), "
                 "channel fastest")
    # ... and the tokens are row-major over the patch grid
    grid = torch.arange(4.0).reshape(1, 1, 2, 2)         # a 2 x 2 grid of 1-pixel patches
    assert_close(patchify(grid, 1)[0, :, 0], torch.tensor([0.0, 1, 2, 3]),
                 "patchify(arange(4).reshape(1, 1, 2, 2), 1): tokens go row by row over the patch grid")
    for shape, p in (((2, 4, 8, 8), 2), ((1, 3, 8, 8), 4), ((2, 1, 6, 6), 1)):
        x = torch.randn(shape)
        assert_close(patchify(x, p), ref_patchify(x, p), f"patchify(x of shape {shape}, patch_size={p})")


def test_unpatchify(impl):
    unpatchify = impl("ch03").unpatchify
    for n, t, p, c in ((2, 16, 2, 4), (1, 4, 4, 3), (3, 9, 1, 1)):
        tokens = torch.randn(n, t, p * p * c)
        assert_close(unpatchify(tokens, p, c), ref_unpatchify(tokens, p, c),
                     f"unpatchify(tokens of shape {(n, t, p * p * c)}, patch_size={p}, channels={c})")
    x = torch.randn(2, 4, 8, 8)
    assert_close(unpatchify(ref_patchify(x, 2), 2, 4), x, "unpatchify(patchify(x, 2), 2, 4) must give x back")


def test_get_1d_sincos_pos_embed(impl):
    f = impl("ch03").get_1d_sincos_pos_embed
    # convention first: [sin, cos] with omega = 1 / 10000^(i / (D/2)); D = 4 -> omega = [1, 0.01]
    assert_close(f(4, torch.tensor([1.0])), torch.tensor([[0.8414709848, 0.0099998333, 0.5403023059, 0.9999500004]]),
                 "get_1d_sincos_pos_embed(4, [1.0]) must be [sin(1), sin(0.01), cos(1), cos(0.01)] (sin first)",
                 atol=1e-8)
    pos = torch.tensor([0.0, 1.0, 5.0, 2.5])
    assert_close(f(16, pos), ref_1d(16, pos), "get_1d_sincos_pos_embed(16, [0, 1, 5, 2.5])", atol=1e-7)


def test_get_2d_sincos_pos_embed(impl):
    f = impl("ch03").get_2d_sincos_pos_embed
    # convention first: token 1 (row 0, column 1): the FIRST half of the channels encodes the column
    s1, s01, c1, c01 = 0.8414709848, 0.0099998333, 0.5403023059, 0.9999500004
    assert_close(f(8, 2)[1], torch.tensor([s1, s01, c1, c01, 0, 0, 1, 1]),
                 "get_2d_sincos_pos_embed(8, 2)[1] (row 0, column 1): first half = column, second = row",
                 atol=1e-6)
    for dim, grid in ((32, 4), (64, 3), (8, 2)):
        assert_close(f(dim, grid), ref_2d(dim, grid), f"get_2d_sincos_pos_embed({dim}, {grid})", atol=1e-6)


def test_patch_embed_forward(impl):
    PatchEmbed = impl("ch03").PatchEmbed
    ref = randomize_(RefPatchEmbed(2, 3, 16))
    mine = PatchEmbed(2, 3, 16)
    mine.load_state_dict(ref.state_dict())
    x = torch.randn(2, 3, 8, 12)                          # a 4 x 6 patch grid: rows and columns differ
    want = ref(x)                                         # (2, 24, 16)
    got = mine(x)
    # conventions first: features last, tokens row-major over the patch grid
    if tuple(got.shape) == (2, 16, 24):
        pytest.fail("PatchEmbed.forward returned (N, D, T) = (2, 16, 24); the tokens are (N, T, D): features last")
    grid = ref.proj(x)                                    # (2, 16, 4, 6)
    if close(got, grid.permute(0, 3, 2, 1).reshape(2, 24, 16)):
        pytest.fail("PatchEmbed.forward orders the tokens column by column; token i * (W/p) + j must be the "
                    "patch in grid row i, column j (row-major, as patchify)")
    assert_close(got, want, "PatchEmbed(2, 3, 16).forward(x of shape (2, 3, 8, 12)) with random weights")


def _attention_variant(attn, x, layout="three h d", scale=None, softmax_dim=-1, merge="h d", proj=True):
    """Attention written out with one convention changed: what common mistakes compute."""
    h, D = attn.num_heads, x.shape[-1]
    d = D // h
    qkv = rearrange(attn.qkv(x), f"n t ({layout}) -> three n {'h t d'}", three=3, h=h, d=d)
    q, k, v = qkv.unbind(0)                               # (N, h, T, d) each
    scores = q @ k.transpose(-2, -1) * (scale if scale is not None else d ** -0.5)
    out = scores.softmax(dim=softmax_dim) @ v             # (N, h, T, d)
    out = rearrange(out, f"n h t d -> n t ({merge})")
    return attn.proj(out) if proj else out


ATTENTION_MISTAKES = [
    (dict(scale=1.0), "the scores are not scaled: divide q k^T by sqrt(d), d = head width"),
    (dict(scale=None, softmax_dim=-2), "the softmax runs over the queries; it must run over the keys (the last axis of q k^T)"),
    (dict(layout="h three d"), "q, k and v are split per head; qkv's output is [q; k; v], each holding all heads"),
    (dict(layout="three d h"), "the heads are taken as the fastest-changing features; head i is features i*d .. (i+1)*d - 1"),
    (dict(merge="d h"), "the heads are merged back in the wrong order: head 0's d features come first"),
    (dict(proj=False), "the output projection self.proj is missing"),
]


@pytest.mark.parametrize("fused", [True, False])
def test_attention_forward(impl, fused):
    Attention = impl("ch03").Attention
    x = torch.randn(2, 5, 32)
    # one head first: no head bookkeeping can go wrong
    ref1 = randomize_(RefAttention(32, 1), std=0.3)
    mine1 = Attention(32, 1, fused_attn=fused)
    mine1.load_state_dict(ref1.state_dict())
    got1 = mine1(x)
    if tuple(got1.shape) != (2, 5, 32):
        pytest.fail(f"Attention(32, 1).forward(x of shape (2, 5, 32)) returned shape {tuple(got1.shape)}; "
                    f"expected (2, 5, 32)")
    with torch.no_grad():
        for change, why in ATTENTION_MISTAKES[:2] + ATTENTION_MISTAKES[-1:]:
            if close(got1, _attention_variant(ref1, x, **change), atol=1e-5) and not close(got1, ref1(x)):
                pytest.fail(f"Attention(32, num_heads=1): {why}")
    assert_close(got1, ref1(x), "Attention(32, num_heads=1).forward(x (2, 5, 32)) with random weights")
    # permuting the tokens permutes the output (no position enters attention itself)
    perm = torch.tensor([3, 0, 4, 1, 2])
    assert_close(mine1(x[:, perm]), got1[:, perm],
                 "Attention: shuffling the input tokens must shuffle the output tokens the same way")
    # then four heads, against both of minidit's paths (fused kernel and the written-out formula)
    ref = randomize_(RefAttention(32, 4), std=0.3)
    mine = Attention(32, 4, fused_attn=fused)
    mine.load_state_dict(ref.state_dict())
    got = mine(x)
    with torch.no_grad():
        for change, why in ATTENTION_MISTAKES:
            if close(got, _attention_variant(ref, x, **change), atol=1e-5) and not close(got, ref(x)):
                pytest.fail(f"Attention(32, num_heads=4): {why}")
    assert_close(got, ref(x), f"Attention(32, num_heads=4, fused_attn={fused}).forward(x (2, 5, 32)), "
                 f"against minidit's fused attention", atol=1e-5)
    unfused = RefAttention(32, 4, fused_attn=False)
    unfused.load_state_dict(ref.state_dict())
    assert_close(got, unfused(x), "Attention(32, num_heads=4).forward against softmax(q k^T / sqrt(d)) v written out",
                 atol=1e-5)
