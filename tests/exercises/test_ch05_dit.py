"""Chapter 5 (the Diffusion Transformer): token count, Gflops of a block, the final layer, the forward pass."""
import pytest
import torch
from grading import assert_close, close, randomize_

from minidit.flops import block_gflops as ref_block_gflops
from minidit.models.dit import DiT as RefDiT
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


class Recorder:
    """Forward hooks on a DiT's parts: what entered the first block, each block's output, the final layer's."""

    def __init__(self, model):
        self.block_in, self.block_out, self.final_in, self.final_out = None, [], None, None
        model.blocks[0].register_forward_pre_hook(self._block_in)
        for block in model.blocks:
            block.register_forward_hook(lambda m, args, out: self.block_out.append(out))
        model.final_layer.register_forward_pre_hook(self._final_in)
        model.final_layer.register_forward_hook(self._final_out)

    def _block_in(self, module, args):
        self.block_in = args

    def _final_in(self, module, args):
        self.final_in = args

    def _final_out(self, module, args, out):
        self.final_out = out


def test_dit_forward_part_by_part(impl):
    DiT = impl("ch05").DiT
    config = dict(input_size=8, patch_size=2, in_channels=2, hidden_size=32, depth=3, num_heads=4,
                  num_classes=5, learn_sigma=True)
    ref = randomize_(RefDiT(**config), std=0.1).eval()   # non-zero adaLN and final layer: every part counts
    mine = DiT(**config).eval()
    mine.load_state_dict(ref.state_dict())
    want_rec, got_rec = Recorder(ref), Recorder(mine)
    x, t, y = torch.randn(3, 2, 8, 8), torch.tensor([0, 500, 999]), torch.tensor([1, 4, 5])  # 5 = null class
    with torch.no_grad():
        want, got = ref(x, t, y), mine(x, t, y)
    what = "DiT(input_size=8, patch_size=2, in_channels=2, depth=3).forward(x (3, 2, 8, 8), t, y)"
    if got_rec.block_in is None:
        pytest.fail(f"{what}: the blocks never ran; run every block of self.blocks, in order, as block(x, c)")
    tokens, c = got_rec.block_in[0], got_rec.block_in[1] if len(got_rec.block_in) > 1 else None
    want_tokens, want_c = want_rec.block_in
    if not close(tokens, want_tokens):
        hint = ("; you forgot to add self.pos_embed" if close(tokens, ref.x_embedder(x)) else
                "; it should be self.x_embedder(x) + self.pos_embed, (N, T, D)")
        pytest.fail(f"{what}: the tokens entering the first block differ{hint}")
    if c is None or not close(c, want_c):
        hint = ""
        if c is not None and close(c, ref.t_embedder(t)):
            hint = " (it is only the timestep embedding: add self.y_embedder(y))"
        elif c is not None and close(c, ref.y_embedder(y)):
            hint = " (it is only the label embedding: add self.t_embedder(t))"
        pytest.fail(f"{what}: the condition c given to the blocks differs{hint}; c = t_embedder(t) + y_embedder(y), (N, D)")
    if len(got_rec.block_out) != len(ref.blocks):
        pytest.fail(f"{what}: {len(got_rec.block_out)} block calls for a model of depth {len(ref.blocks)}; "
                    f"run each block once, in order")
    for i, (a, b) in enumerate(zip(got_rec.block_out, want_rec.block_out)):
        if not close(a, b):
            pytest.fail(f"{what}: block {i}'s output differs while what entered the first block matched: "
                        f"feed each block the previous block's output and the same c")
    if got_rec.final_in is None or not (close(got_rec.final_in[0], want_rec.final_in[0])
                                        and close(got_rec.final_in[1], want_rec.final_in[1])):
        pytest.fail(f"{what}: the final layer must get the last block's output and c: self.final_layer(x, c)")
    if tuple(got.shape) != tuple(want.shape):
        pytest.fail(f"{what}: returned shape {tuple(got.shape)}, expected {tuple(want.shape)} = "
                    f"(N, out_channels, I, I); unpatchify with self.out_channels, not in_channels")
    assert_close(got, want, f"{what}: everything up to the final layer matched, so the unpatchify step differs")
