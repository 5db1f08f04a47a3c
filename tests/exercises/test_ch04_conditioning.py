"""Chapter 4 (conditioning): timestep and label embeddings, modulate, the adaLN-Zero block."""
import math

import pytest
import torch
from grading import assert_close

from minidit.models.block import DiTBlock as RefBlock
from minidit.models.block import modulate as ref_modulate
from minidit.models.label_embed import drop_labels as ref_drop_labels
from minidit.models.timestep_embed import timestep_embedding as ref_timestep_embedding

pytestmark = pytest.mark.ch4


def test_timestep_embedding(impl):
    f = impl("ch04").timestep_embedding
    # convention first: cos first, frequencies exp(-ln(10000) * i / half) with half = dim // 2 (not half - 1)
    got = f(torch.tensor([2.0]), 4)
    f1 = math.exp(-math.log(10000) / 2)
    assert_close(got, torch.tensor([[math.cos(2.0), math.cos(2 * f1), math.sin(2.0), math.sin(2 * f1)]]),
                 "timestep_embedding([2.0], 4): expected [cos(2 f0), cos(2 f1), sin(2 f0), sin(2 f1)] "
                 "with f_i = exp(-ln(10000) i / 2)", atol=1e-6)
    t = torch.tensor([0.0, 1.0, 250.0, 999.0])
    for dim in (256, 64, 7):
        assert_close(f(t, dim), ref_timestep_embedding(t, dim), f"timestep_embedding(t=[0, 1, 250, 999], dim={dim})",
                     atol=1e-5)


def test_drop_labels(impl):
    f = impl("ch04").drop_labels
    # convention first: a dropped label becomes the null class id num_classes (the table's last row)
    assert_close(f(torch.tensor([2, 0]), 0.0, 5, torch.tensor([1, 1])), torch.tensor([5, 5]),
                 "drop_labels([2, 0], 0.0, num_classes=5, force_drop_ids=[1, 1]): the null class id is "
                 "num_classes = 5")
    y = torch.tensor([3, 1, 4, 1, 5, 9, 2, 6])
    force = torch.tensor([0, 1, 1, 0, 0, 0, 1, 0])
    assert_close(f(y, 0.0, 10, force), ref_drop_labels(y, 0.0, 10, force),
                 "drop_labels(y, 0.0, num_classes=10, force_drop_ids=[0, 1, 1, 0, 0, 0, 1, 0]) "
                 "(forced drops become the null id 10)")
    assert_close(f(y, 1.0, 10), torch.full((8,), 10), "drop_labels(y, drop_prob=1.0, num_classes=10)")
    assert_close(f(y, 0.0, 10), y, "drop_labels(y, drop_prob=0.0, num_classes=10)")
    assert torch.equal(y, torch.tensor([3, 1, 4, 1, 5, 9, 2, 6])), "drop_labels must not modify its input y"
    rate = (f(torch.zeros(20000, dtype=torch.long), 0.25, 7) == 7).float().mean().item()
    assert abs(rate - 0.25) < 0.015, f"drop_labels(..., drop_prob=0.25) dropped {rate:.3f} of the labels"


def test_modulate(impl):
    f = impl("ch04").modulate
    x, shift, scale = torch.randn(2, 5, 8), torch.randn(2, 8), torch.randn(2, 8)
    assert_close(f(x, shift, scale), ref_modulate(x, shift, scale),
                 "modulate(x (2, 5, 8), shift (2, 8), scale (2, 8))")
    assert_close(f(x, torch.zeros(2, 8), torch.zeros(2, 8)), x, "modulate(x, shift=0, scale=0) must return x")


def test_dit_block_forward(impl):
    Block = impl("ch04").DiTBlock
    ref = RefBlock(32, 4)
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_(std=0.2)                           # non-zero gates, so every term matters
    block = Block(32, 4)
    block.load_state_dict(ref.state_dict())
    x, c = torch.randn(2, 6, 32), torch.randn(2, 32)
    assert_close(block(x, c), ref(x, c), "DiTBlock(32, 4).forward(x (2, 6, 32), c (2, 32)) with random weights",
                 atol=1e-5)
    with torch.no_grad():
        block.adaLN_modulation[1].weight.zero_()
        block.adaLN_modulation[1].bias.zero_()
    assert_close(block(x, c), x, "DiTBlock.forward with a zero adaLN_modulation (all gates 0) must return x")
