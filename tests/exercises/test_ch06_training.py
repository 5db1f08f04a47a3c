"""Chapter 6 (Training a DiT): update_ema, sample_timesteps, lr_at_step, split_global_batch."""
from __future__ import annotations

import math

import pytest
import torch
from grading import assert_close

from minidit.training.distributed import split_global_batch as reference_split
from minidit.training.ema import update_ema as reference_update_ema
from minidit.training.optim import lr_at_step as reference_lr

pytestmark = pytest.mark.ch6


def test_update_ema_matches_the_equation(impl):
    update_ema = impl("ch06").update_ema
    torch.manual_seed(0)
    shapes = [(4, 3), (5,), (2, 2, 2)]
    ema = [torch.randn(s) for s in shapes]
    params = [torch.randn(s) for s in shapes]
    expected = [e.clone() for e in ema]
    reference_update_ema(expected, params, 0.9)
    params_before = [p.clone() for p in params]
    result = update_ema(ema, params, 0.9)
    assert result is None, "update_ema should update ema_params in place and return None"
    for i, (got, want) in enumerate(zip(ema, expected)):
        # theta_ema <- 0.9 theta_ema + 0.1 theta  (hand-checked closed form below too)
        assert_close(got, want, f"update_ema(..., decay=0.9): EMA tensor {i} of shape {shapes[i]}")
    for p, q in zip(params, params_before):
        assert torch.equal(p, q), "update_ema must not change the trained parameters"


def test_update_ema_frozen_values(impl):
    update_ema = impl("ch06").update_ema
    ema, params = [torch.tensor([1.0, 2.0])], [torch.tensor([3.0, -2.0])]
    update_ema(ema, params, 0.75)
    # 0.75 * [1, 2] + 0.25 * [3, -2] = [1.5, 1.0]
    assert_close(ema[0], torch.tensor([1.5, 1.0]), "update_ema([1, 2] towards [3, -2], decay=0.75)")
    update_ema(ema, params, 0.0)
    assert_close(ema[0], params[0], "update_ema(..., decay=0) must copy the parameters")


def test_sample_timesteps(impl):
    sample_timesteps = impl("ch06").sample_timesteps
    t = sample_timesteps(5000, 1000, generator=torch.Generator().manual_seed(0))
    assert t.shape == (5000,) and t.dtype == torch.int64, \
        f"sample_timesteps(5000, 1000): expected int64 of shape (5000,), got {t.dtype} {tuple(t.shape)}"
    assert int(t.min()) >= 0 and int(t.max()) <= 999, "timesteps must lie in [0, num_timesteps - 1]"
    # uniform: every bin of 100 timesteps gets ~10% (a 6-sigma band)
    counts = torch.bincount(t // 100, minlength=10).float() / 5000
    assert bool(((counts - 0.1).abs() < 6 * math.sqrt(0.09 / 5000)).all()), f"not uniform: {counts.tolist()}"
    small = sample_timesteps(2000, 3, generator=torch.Generator().manual_seed(1))
    assert set(small.tolist()) == {0, 1, 2}, "with num_timesteps=3 the values 0, 1 and 2 must all appear"
    a = sample_timesteps(8, 1000, generator=torch.Generator().manual_seed(7))
    b = sample_timesteps(8, 1000, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b), "the same generator seed must give the same timesteps"
    # drawn with torch.randint on the generator, as the official code does
    want = torch.randint(0, 1000, (8,), generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, want), f"expected torch.randint(0, 1000, (8,), generator=g) = {want.tolist()}, got {a.tolist()}"


@pytest.mark.parametrize("step, warmup, decay, expected", [
    (0, 0, None, 1e-3), (500, 0, None, 1e-3),         # the paper: constant
    (0, 100, None, 1e-5), (49, 100, None, 5e-4), (99, 100, None, 1e-3), (100, 100, None, 1e-3),
    (100, 100, 1100, 1e-3), (600, 100, 1100, 5e-4),
    (1100, 100, 1100, 0.0), (5000, 100, 1100, 0.0),
])
def test_lr_at_step_frozen(impl, step, warmup, decay, expected):
    lr_at_step = impl("ch06").lr_at_step
    got = lr_at_step(step, 1e-3, warmup, decay)
    assert isinstance(got, float), f"lr_at_step must return a Python float, got {type(got).__name__}"
    assert abs(got - expected) < 1e-12, f"lr_at_step({step}, 1e-3, warmup_steps={warmup}, decay_steps={decay}): expected {expected}, got {got}"


def test_lr_at_step_cosine_with_min_lr(impl):
    lr_at_step = impl("ch06").lr_at_step
    for step in (10, 250, 777, 999):
        want = reference_lr(step, 2e-3, 10, 1000, min_lr=1e-4)
        got = lr_at_step(step, 2e-3, 10, 1000, min_lr=1e-4)
        assert abs(got - want) < 1e-12, f"lr_at_step({step}, 2e-3, 10, 1000, min_lr=1e-4): expected {want}, got {got}"


def test_split_global_batch(impl):
    split = impl("ch06").split_global_batch
    for g, w in ((256, 8), (256, 1), (12, 3)):
        assert split(g, w) == reference_split(g, w), f"split_global_batch({g}, {w}) should be {g // w}"
    for g, w in ((10, 4), (0, 2), (8, 0)):
        with pytest.raises(ValueError):
            split(g, w)
