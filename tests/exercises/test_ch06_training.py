"""Chapter 6 (Training a DiT): update_ema, sample_timesteps, lr_at_step, split_global_batch,
the training loss and the training step."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from grading import assert_close, close, one_thread, randomize_
from torch import nn

from minidit.diffusion import create_diffusion
from minidit.models import get_model
from minidit.training.distributed import split_global_batch as reference_split
from minidit.training.ema import create_ema, ema_pairs
from minidit.training.step import train_step as reference_train_step
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


class ToyModel(nn.Module):
    """A small differentiable stand-in for a DiT that records how it was called."""

    def __init__(self, channels: int = 1, learn_sigma: bool = True):
        super().__init__()
        out = 2 * channels if learn_sigma else channels
        self.mix = nn.Conv2d(channels, out, 1)
        self.time = nn.Embedding(1000, out)
        self.label = nn.Embedding(11, out)
        self.calls = []

    def forward(self, x, t, y):
        self.calls.append(dict(x=x.detach().clone(), t=t.clone(), y=y.clone()))
        # (N, C, H, W) -> (N, out, H, W), plus per-sample offsets from t and y
        return self.mix(x) + (0.1 * self.time(t) + 0.1 * self.label(y))[:, :, None, None]


def test_training_losses_part_by_part(impl):
    loss_fn = impl("ch06").GaussianDiffusion.training_losses   # called with minidit's diffusion as self
    diffusion = create_diffusion("", learn_sigma=True)
    model = randomize_(ToyModel(), std=0.5)
    x_0 = torch.rand(4, 1, 8, 8) * 2 - 1
    t, y = torch.tensor([0, 10, 500, 999]), torch.tensor([3, 1, 10, 7])
    noise = torch.randn_like(x_0)
    what = "training_losses(model, x_0 (4, 1, 8, 8), t = [0, 10, 500, 999], model_kwargs=dict(y=y), noise=noise)"
    terms = loss_fn(diffusion, model, x_0, t, model_kwargs=dict(y=y), noise=noise)
    if not isinstance(terms, dict) or not {"loss", "mse", "vb"} <= set(terms):
        pytest.fail(f"{what}: return a dict with the keys 'loss', 'mse' and 'vb'; got {type(terms).__name__} "
                    f"{sorted(terms) if isinstance(terms, dict) else ''}")
    for key in ("loss", "mse", "vb"):
        if not torch.is_tensor(terms[key]) or tuple(terms[key].shape) != (4,):
            pytest.fail(f"{what}: {key!r} must be a tensor of shape (N,) = (4,), one value per example; got "
                        f"{tuple(terms[key].shape) if torch.is_tensor(terms[key]) else type(terms[key]).__name__}")
    # the model saw x_t = q_sample(x_0, t, noise), the timesteps and the labels
    if len(model.calls) != 1:
        pytest.fail(f"{what}: the model was called {len(model.calls)} times; call it once, on x_t")
    call = model.calls[0]
    if not close(call["x"], diffusion.q_sample(x_0, t, noise=noise)):
        pytest.fail(f"{what}: the model did not get x_t = self.q_sample(x_start, t, noise)")
    if not torch.equal(call["y"], y):
        pytest.fail(f"{what}: the model did not get the labels: pass model_kwargs on (self._run_model does)")
    model.calls.clear()
    want = diffusion.training_losses(model, x_0, t, model_kwargs=dict(y=y), noise=noise)
    if not close(terms["mse"], want["mse"]):
        pytest.fail(f"{what}: 'mse' differs; L_simple = simple_loss(prediction, noise), with the prediction "
                    f"the FIRST C channels of the model's output (the last C are the variance values v)")
    if not close(terms["vb"], want["vb"], atol=1e-4, rtol=1e-4):
        pytest.fail(f"{what}: 'vb' differs; it is self._vb_terms_bpd(output, x_start, x_t, t)['output'] on the "
                    f"whole output (prediction detached, then v), in bits per dimension")
    assert_close(terms["loss"], want["loss"], f"{what}: 'loss' = mse + vb", atol=1e-4, rtol=1e-4)
    # the stop-gradient: vb trains the variance channels only, mse the prediction only
    model.zero_grad()
    loss_fn(diffusion, model, x_0, t, model_kwargs=dict(y=y), noise=noise)["vb"].sum().backward()
    grad_vb = model.mix.weight.grad[:1].abs().sum().item(), model.mix.weight.grad[1:].abs().sum().item()
    if grad_vb[0] > 0:
        pytest.fail(f"{what}: vb sends gradient into the prediction channels; detach the prediction "
                    f"(the first C channels) before _vb_terms_bpd, so vb trains only the variance")
    if grad_vb[1] == 0:
        pytest.fail(f"{what}: vb sends no gradient into the variance channels v; detach only the prediction")


def test_training_losses_respaced_fixed_variance_and_noise(impl):
    loss_fn = impl("ch06").GaussianDiffusion.training_losses
    x_0, y = torch.rand(3, 1, 8, 8) * 2 - 1, torch.tensor([0, 1, 2])
    # a respaced chain: the model must see the ORIGINAL timesteps (timestep_map)
    spaced = create_diffusion("10", learn_sigma=True)
    model = randomize_(ToyModel(), std=0.5)
    t = torch.tensor([1, 5, 9])
    loss_fn(spaced, model, x_0, t, model_kwargs=dict(y=y), noise=torch.randn_like(x_0))
    seen = model.calls[-1]["t"]
    expected_t = torch.tensor([spaced.timestep_map[i] for i in t])
    if not torch.equal(seen, expected_t):
        pytest.fail(f"training_losses on create_diffusion('10'): the model got t = {seen.tolist()}, expected the "
                    f"original timesteps {expected_t.tolist()}; call it through self._run_model(model, x_t, t, kwargs)")
    # a fixed variance: vb is zero and loss = mse
    fixed = create_diffusion("", learn_sigma=False)
    small = randomize_(ToyModel(learn_sigma=False), std=0.5)
    noise = torch.randn_like(x_0)
    t = torch.tensor([3, 300, 900])
    terms = loss_fn(fixed, small, x_0, t, model_kwargs=dict(y=y), noise=noise)
    want = fixed.training_losses(small, x_0, t, model_kwargs=dict(y=y), noise=noise)
    assert_close(terms["vb"], torch.zeros(3), "training_losses with learn_sigma=False: 'vb' must be zeros")
    assert_close(terms["loss"], want["loss"], "training_losses with learn_sigma=False: loss = mse")
    # no noise given: draw it with torch.randn_like(x_start) (the same random numbers as minidit)
    torch.manual_seed(5)
    got = loss_fn(fixed, small, x_0, t, model_kwargs=dict(y=y))["mse"]
    torch.manual_seed(5)
    assert_close(got, fixed.training_losses(small, x_0, t, model_kwargs=dict(y=y))["mse"],
                 "training_losses without noise: draw it with torch.randn_like(x_start)")


def _tiny_run(seed=0):
    torch.manual_seed(seed)
    model = get_model("DiT-P/2", input_size=8, in_channels=1, num_classes=10, learn_sigma=True)
    randomize_(model, std=0.05, seed=seed)
    ema = create_ema(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    return model, ema, opt


def _two_steps(step_fn, diffusion, x_0, y) -> dict:
    """Two training steps of a tiny DiT with ``step_fn``: the weights before, after one, after two."""
    model, ema, opt = _tiny_run()
    before = copy.deepcopy(model.state_dict())
    ema_params, params = ema_pairs(ema, model)
    torch.manual_seed(1)
    first = step_fn(model, diffusion, opt, ema_params, params, x_0, y, ema_decay=0.5)
    after_one = copy.deepcopy(model.state_dict()), copy.deepcopy(ema.state_dict())
    second = step_fn(model, diffusion, opt, ema_params, params, x_0, y, ema_decay=0.5)
    return dict(before=before, first=first, after_one=after_one, second=second,
                after_two=(model.state_dict(), ema.state_dict()))


def test_train_step(impl, monkeypatch):
    module = impl("ch06")
    monkeypatch.setattr(module, "update_ema", reference_update_ema)  # graded on its own (test above)
    train_step = module.train_step
    diffusion = create_diffusion("")
    x_0, y = torch.rand(8, 1, 8, 8) * 2 - 1, torch.randint(0, 10, (8,))
    runs = {}
    for who, step_fn in (("yours", train_step), ("minidit", reference_train_step)):
        with one_thread():
            runs[who] = _two_steps(step_fn, diffusion, x_0, y)
    mine, ref = runs["yours"], runs["minidit"]
    what = "train_step(model, diffusion, optimizer, ema_params, params, x_0, y, ema_decay=0.5)"
    if not isinstance(mine["first"], dict) or "loss" not in mine["first"]:
        pytest.fail(f"{what}: return the dict of losses from diffusion_loss (with 'loss', 'mse', 'vb')")
    assert_close(mine["first"]["loss"], ref["first"]["loss"],
                 f"{what}: the returned loss (computed with the weights BEFORE the step)", atol=1e-5)
    name = "blocks.0.attn.qkv.weight"
    model_after, ema_after = mine["after_one"]
    if torch.equal(model_after[name], mine["before"][name]):
        pytest.fail(f"{what}: the weights did not change: backpropagate the loss and call optimizer.step()")
    if not all(close(model_after[k], ref["after_one"][0][k], atol=1e-6) for k in model_after):
        pytest.fail(f"{what}: after one step the weights differ from minidit's: loss.backward() on the mean "
                    f"'loss', then optimizer.step()")
    if torch.equal(ema_after[name], mine["before"][name]):
        pytest.fail(f"{what}: the EMA weights did not move: call update_ema(ema_params, params, ema_decay)")
    if not all(close(ema_after[k], ref["after_one"][1][k], atol=1e-6) for k in ema_after):
        pytest.fail(f"{what}: the EMA differs from minidit's after one step: update it AFTER optimizer.step(), "
                    f"with ema_decay")
    if not all(close(mine["after_two"][0][k], ref["after_two"][0][k], atol=1e-5) for k in model_after):
        pytest.fail(f"{what}: the second step differs from minidit's while the first matched: the gradients "
                    f"accumulate; clear them with optimizer.zero_grad(set_to_none=True) before backward")
