"""Chapter 3 (images as token sequences): patchify, unpatchify and the 2-D sin-cos positions."""
import pytest
import torch
from grading import assert_close

from minidit.models.patch_embed import patchify as ref_patchify
from minidit.models.patch_embed import unpatchify as ref_unpatchify
from minidit.models.pos_embed import get_1d_sincos_pos_embed as ref_1d
from minidit.models.pos_embed import get_2d_sincos_pos_embed as ref_2d

pytestmark = pytest.mark.ch3


def test_patchify(impl):
    patchify = impl("ch03").patchify
    for shape, p in (((2, 4, 8, 8), 2), ((1, 3, 8, 8), 4), ((2, 1, 6, 6), 1)):
        x = torch.randn(shape)
        assert_close(patchify(x, p), ref_patchify(x, p), f"patchify(x of shape {shape}, patch_size={p})")
    # frozen convention: features of a token are ordered (row in patch, column in patch, channel)
    x = torch.arange(8.0).reshape(1, 2, 2, 2)            # x[0, c, a, b] = 4c + 2a + b
    assert_close(patchify(x, 2), torch.tensor([[[0.0, 4, 1, 5, 2, 6, 3, 7]]]),
                 "patchify(arange(8).reshape(1, 2, 2, 2), 2): token features must be ordered (p, q, c), "
                 "channel fastest")


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
    pos = torch.tensor([0.0, 1.0, 5.0, 2.5])
    assert_close(f(16, pos), ref_1d(16, pos), "get_1d_sincos_pos_embed(16, [0, 1, 5, 2.5])", atol=1e-7)
    # frozen: [sin, cos] with omega = 1 / 10000^(i / (D/2)); D = 4 -> omega = [1, 0.01]
    assert_close(f(4, torch.tensor([1.0])), torch.tensor([[0.8414709848, 0.0099998333, 0.5403023059, 0.9999500004]]),
                 "get_1d_sincos_pos_embed(4, [1.0]) must be [sin(1), sin(0.01), cos(1), cos(0.01)] (sin first)",
                 atol=1e-8)


def test_get_2d_sincos_pos_embed(impl):
    f = impl("ch03").get_2d_sincos_pos_embed
    for dim, grid in ((32, 4), (64, 3), (8, 2)):
        assert_close(f(dim, grid), ref_2d(dim, grid), f"get_2d_sincos_pos_embed({dim}, {grid})", atol=1e-6)
    # frozen: token 1 (row 0, column 1): the FIRST half of the channels encodes the column
    s1, s01, c1, c01 = 0.8414709848, 0.0099998333, 0.5403023059, 0.9999500004
    assert_close(f(8, 2)[1], torch.tensor([s1, s01, c1, c01, 0, 0, 1, 1]),
                 "get_2d_sincos_pos_embed(8, 2)[1] (row 0, column 1): first half = column, second = row",
                 atol=1e-6)
