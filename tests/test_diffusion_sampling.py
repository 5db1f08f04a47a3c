"""Oracle tests for respacing, the DDPM/DDIM samplers and classifier-free guidance."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from minidit.diffusion import create_diffusion, guided_forward, sample_with_guidance, space_timesteps

diffusers = pytest.importorskip("diffusers")

ALPHA_BAR = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))   # original linear chain, float64


# ---------------------------------------------------------------- respacing
def test_space_timesteps_250_is_round_i_999_over_249():
    steps = space_timesteps(1000, "250")
    assert len(steps) == 250 and steps[0] == 0 and steps[-1] == 999
    assert steps == [round(i * 999 / 249) for i in range(250)]
    assert steps[:6] == [0, 4, 8, 12, 16, 20]


def test_space_timesteps_matches_official_accumulating_loop():
    """The official code accumulates the fractional stride by repeated float addition; at exact
    .5 ties that differs from round(i * stride) (278 of the counts 1..1000), so check them all."""
    def accumulate(size, count):
        stride = (size - 1) / (count - 1) if count > 1 else 1
        cur, out = 0.0, []
        for _ in range(count):
            out.append(round(cur))
            cur += stride
        return out
    for count in range(1, 1001):
        assert space_timesteps(1000, count) == accumulate(1000, count), count
    # frozen: count 21, stride 49.95, step 10 is 499 (the float sum is just below 499.5);
    # the common counts agree with the exact round(i * 999 / (n - 1))
    assert space_timesteps(1000, 21)[10] == 499
    for n in (10, 25, 50, 100, 250, 500):
        assert space_timesteps(1000, n) == [round(i * 999 / (n - 1)) for i in range(n)]


def test_space_timesteps_ddim_sections_and_ints():
    assert space_timesteps(1000, "ddim50") == list(range(0, 1000, 20))
    assert space_timesteps(1000, "ddim7") == list(range(0, 1000, 143))
    assert space_timesteps(1000, 1000) == list(range(1000))
    assert space_timesteps(1000, "1") == [0]
    # two sections of 500 steps: 3 steps in the first (0, 250 (249.5 rounds to even), 499),
    # 2 in the second (500, 999)
    assert space_timesteps(1000, "3,2") == [0, 250, 499, 500, 999]
    assert space_timesteps(1000, [3, 2]) == space_timesteps(1000, "3,2")
    # uneven split: 10 steps in 3 sections of 4, 3, 3
    assert space_timesteps(10, "2,2,2") == [0, 3, 4, 6, 7, 9]


@pytest.mark.parametrize("spacing", ["250", "ddim50", "10,20,30", "7"])
def test_respaced_chain_keeps_alpha_bar_at_kept_steps(spacing):
    d = create_diffusion(spacing)
    kept = np.array(d.timestep_map)
    assert d.num_timesteps == len(kept) and np.all(np.diff(kept) > 0)
    np.testing.assert_allclose(d.alphas_cumprod, ALPHA_BAR[kept], rtol=1e-12, atol=0)
    # beta'_i = 1 - alpha_bar_{s_i} / alpha_bar_{s_{i-1}}
    prev = np.append(1.0, ALPHA_BAR[kept][:-1])
    np.testing.assert_allclose(d.betas, 1 - ALPHA_BAR[kept] / prev, rtol=1e-12)


def test_model_sees_original_timesteps():
    d = create_diffusion("ddim50")
    seen = []

    def model(x, t):
        seen.append(t.clone())
        return torch.zeros(x.shape[0], 2 * x.shape[1], *x.shape[2:])
    d.training_losses(model, torch.randn(3, 1, 2, 2), torch.tensor([0, 1, 49]))
    assert seen[0].tolist() == [0, 20, 980] and seen[0].dtype == torch.long


# ---------------------------------------------------------------- DDIM vs diffusers
def fake_eps(x, t):
    """A deterministic stand-in for a trained model: depends on x and the (original) t."""
    tt = t.to(x.dtype).view(-1, 1, 1, 1)
    return 0.8 * torch.tanh(x) + 0.1 * torch.sin(tt / 100)


def test_ddim_steps_match_diffusers_ddim_scheduler():
    d = create_diffusion("ddim50", learn_sigma=False)
    sched = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="linear",
                                    beta_start=1e-4, beta_end=0.02, clip_sample=False,
                                    set_alpha_to_one=True, steps_offset=0, timestep_spacing="leading")
    sched.set_timesteps(50)
    assert sched.timesteps.tolist() == d.timestep_map[::-1]
    x = torch.randn(2, 3, 8, 8)
    ours, theirs, worst_step = x.clone(), x.clone(), 0.0
    for i, t_orig in zip(range(49, -1, -1), sched.timesteps):
        t = torch.full((2,), i)
        # a single step from the same input
        step_ours = d.ddim_sample(fake_eps, theirs, t, eta=0.0)["sample"]
        step_theirs = sched.step(fake_eps(theirs, t_orig.expand(2)), int(t_orig), theirs, eta=0.0).prev_sample
        worst_step = max(worst_step, (step_ours - step_theirs).abs().max().item())
        ours = d.ddim_sample(fake_eps, ours, t, eta=0.0)["sample"]
        theirs = step_theirs
    assert worst_step < 1e-4, worst_step
    # the whole 50-step trajectory (diffusers' float32 alpha_bar vs our float64)
    assert (ours - theirs).abs().max().item() < 1e-3
    full = d.ddim_sample_loop(fake_eps, x.shape, x.clone(), eta=0.0)
    assert torch.equal(full, ours)
    # in float64 (data and diffusers' alpha_bar) the two agree to rounding: the float32 gap
    # above is float32 arithmetic at large t, not a difference in the update
    sched.alphas_cumprod = torch.from_numpy(ALPHA_BAR)
    x = x.double()
    for i, t_orig in zip(range(49, -1, -1), sched.timesteps):
        step_ours = d.ddim_sample(fake_eps, x, torch.full((2,), i))["sample"]
        x = sched.step(fake_eps(x, t_orig.expand(2)), int(t_orig), x, eta=0.0).prev_sample
        assert (step_ours - x).abs().max().item() < 1e-10


@pytest.mark.parametrize("t", [999, 500, 10, 1, 0])
def test_ddpm_learned_range_step_matches_diffusers(t):
    """p_sample with learned variance == DDPMScheduler(variance_type="learned_range").step."""
    d = create_diffusion("")
    sched = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4,
                                    beta_end=0.02, variance_type="learned_range", clip_sample=False)
    sched.alphas_cumprod = torch.from_numpy(ALPHA_BAR)           # float64, like ours
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    out = torch.cat([fake_eps(x, torch.full((2,), t)), torch.rand_like(x) * 2 - 1], dim=1)
    torch.manual_seed(123)
    ours = d.p_sample(lambda x_, t_: out, x, torch.full((2,), t))["sample"]
    theirs = sched.step(out, t, x, generator=torch.Generator().manual_seed(123)).prev_sample
    assert (ours - theirs).abs().max().item() < 1e-10


# ---------------------------------------------------------------- samplers with an oracle model
def oracle_model(x_0, learn_sigma=True, v=0.0):
    """A model that knows x_0 and returns the TRUE eps for the original timestep it is given."""
    ab = torch.from_numpy(ALPHA_BAR)

    def model(x, t, y=None):
        a = ab[t].view(-1, 1, 1, 1).to(x.dtype)
        # eps = (x_t - sqrt(alpha_bar) x_0) / sqrt(1 - alpha_bar)
        eps = (x - a.sqrt() * x_0) / (1 - a).sqrt()
        return torch.cat([eps, torch.full_like(eps, v)], dim=1) if learn_sigma else eps
    return model


@pytest.mark.parametrize("spacing", ["", "100", "ddim25"])
def test_ddpm_with_true_eps_recovers_x0(spacing):
    d = create_diffusion(spacing)
    x_0 = torch.rand(2, 3, 4, 4, dtype=torch.float64) * 2 - 1
    noise = torch.randn_like(x_0)
    out = d.p_sample_loop(oracle_model(x_0, v=0.3), x_0.shape, noise)
    assert (out - x_0).abs().max() < 1e-9


def test_ddpm_float32_and_fixed_variance_recover_x0():
    x_0 = torch.rand(2, 3, 4, 4) * 2 - 1
    for d, ls in [(create_diffusion("50"), True), (create_diffusion("50", learn_sigma=False), False)]:
        out = d.p_sample_loop(oracle_model(x_0, learn_sigma=ls), x_0.shape, progress=False)
        assert (out - x_0).abs().max() < 1e-4


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_with_true_eps_recovers_x0_and_stays_on_the_trajectory(eta):
    d = create_diffusion("ddim20")
    x_0 = torch.rand(2, 3, 4, 4, dtype=torch.float64) * 2 - 1
    z = torch.randn_like(x_0)
    states = list(d.ddim_sample_loop_progressive(oracle_model(x_0), x_0.shape, z, eta=eta))
    assert len(states) == 20
    assert (states[-1]["sample"] - x_0).abs().max() < 1e-9
    if eta == 0.0:
        # deterministic DDIM with the true eps keeps eps fixed: x_s = sqrt(ab) x_0 + sqrt(1-ab) eps_0
        ab_start = ALPHA_BAR[d.timestep_map[-1]]          # z is x at the last kept step (950)
        eps_0 = (z - np.sqrt(ab_start) * x_0) / np.sqrt(1 - ab_start)
        for k, state in enumerate(states[:-1]):
            ab = ALPHA_BAR[d.timestep_map[18 - k]]
            expected = np.sqrt(ab) * x_0 + np.sqrt(1 - ab) * eps_0
            assert (state["sample"] - expected).abs().max() < 1e-9, k
            assert (state["pred_xstart"] - x_0).abs().max() < 1e-9


def test_progressive_sampling_yields_every_step():
    d = create_diffusion("10")
    x_0 = torch.zeros(1, 2, 4, 4)
    states = list(d.p_sample_loop_progressive(oracle_model(x_0), (1, 2, 4, 4)))
    assert len(states) == 10
    assert all(set(s) == {"sample", "pred_xstart"} and s["sample"].shape == (1, 2, 4, 4) for s in states)


def test_ddpm_noise_scale_follows_learned_variance():
    """One p_sample step: sample - mean has std exp(log_var / 2); none at t == 0."""
    d = create_diffusion("")
    x = torch.zeros(4000, 1, 1, 1)
    zero_eps = lambda x, t: torch.cat([torch.zeros_like(x), torch.full_like(x, 0.5)], 1)
    t = torch.full((4000,), 500)
    out = d.p_sample(zero_eps, x, t)["sample"]
    expected_std = np.exp(0.5 * (0.75 * np.log(d.betas[500]) + 0.25 * d.posterior_log_variance_clipped[500]))
    assert abs(out.std().item() / expected_std - 1) < 0.05
    last = d.p_sample(zero_eps, x, torch.zeros(4000, dtype=torch.long))["sample"]
    assert last.std().item() == 0.0


def test_clip_denoised_clamps_pred_xstart():
    d = create_diffusion("10")
    x = torch.full((1, 1, 2, 2), 5.0)
    out = d.p_mean_variance(lambda x, t: torch.cat([torch.zeros_like(x)] * 2, 1), x,
                            torch.tensor([0]), clip_denoised=True)
    assert out["pred_xstart"].max() == 1.0
    unclipped = d.p_mean_variance(lambda x, t: torch.cat([torch.zeros_like(x)] * 2, 1), x, torch.tensor([0]))
    assert unclipped["pred_xstart"].max() > 1.0


def test_progress_bar_runs(capsys):
    d = create_diffusion("3")
    d.ddim_sample_loop(oracle_model(torch.zeros(1, 1, 2, 2)), (1, 1, 2, 2), progress=True)
    assert "3/3" in capsys.readouterr().err


# ---------------------------------------------------------------- classifier-free guidance
class FakeDiT(torch.nn.Module):
    """Class-conditional stand-in: eps depends on x and the label; 2C outputs (learned sigma)."""
    num_classes = 5

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(self.num_classes + 1, 3)   # + the null class

    def forward(self, x, t, y):
        e = self.embed(y).view(-1, 3, 1, 1)
        eps = 0.5 * torch.tanh(x + e)
        return torch.cat([eps, torch.tanh(e).expand_as(x)], dim=1)


def test_cfg_scale_one_equals_conditional_sampling():
    d = create_diffusion("ddim10")
    model = FakeDiT()
    labels = torch.tensor([0, 3, 4])
    noise = torch.randn(3, 3, 4, 4)
    guided = sample_with_guidance(d, model, labels, 1.0, noise.shape, sampler="ddim", noise=noise)
    plain = d.ddim_sample_loop(model, noise.shape, noise, model_kwargs={"y": labels})
    assert (guided - plain).abs().max() < 1e-5


def test_guided_forward_combines_eps_and_keeps_variance():
    model = FakeDiT()
    x = torch.randn(2, 3, 4, 4)
    x2 = torch.cat([x, torch.randn_like(x)])        # second half is ignored: both use the first
    y = torch.tensor([1, 2, 5, 5])
    t = torch.tensor([7, 7, 7, 7])
    out = guided_forward(model, x2, t, y, cfg_scale=4.0)
    cond, uncond = model(x, t[:2], y[:2]), model(x, t[:2], y[2:])
    expected = uncond[:, :3] + 4.0 * (cond[:, :3] - uncond[:, :3])
    assert torch.allclose(out[:2, :3], expected, atol=1e-6)
    assert torch.equal(out[:2, :3], out[2:, :3])          # both halves hold the guided eps
    assert torch.allclose(out[:2, 3:], cond[:, 3:]) and torch.allclose(out[2:, 3:], uncond[:, 3:])


def test_sample_with_guidance_uses_forward_with_cfg_and_null_class():
    calls = []

    class WithCfg(FakeDiT):
        def forward_with_cfg(self, x, t, y, cfg_scale):
            calls.append((y.clone(), cfg_scale))
            return guided_forward(self, x, t, y, cfg_scale)
    d = create_diffusion("4")
    out = sample_with_guidance(d, WithCfg(), torch.tensor([1, 2]), 2.5, (2, 3, 4, 4))
    assert out.shape == (2, 3, 4, 4) and len(calls) == 4
    assert calls[0][0].tolist() == [1, 2, 5, 5] and calls[0][1] == 2.5


# ---------------------------------------------------------------- bad input
def test_errors_are_clear():
    d = create_diffusion("50")
    x = torch.randn(2, 3, 4, 4)
    model = FakeDiT()
    with pytest.raises(ValueError, match=r"out of range.*\[0, 49\]"):
        d.q_sample(x, torch.tensor([0, 50]))
    with pytest.raises(ValueError, match="out of range"):
        d.training_losses(model, x, torch.tensor([-1, 3]), model_kwargs={"y": torch.tensor([0, 1])})
    with pytest.raises(ValueError, match="integer tensor"):
        d.q_sample(x, torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match=r"shape \(N,\)"):
        d.q_sample(x, torch.tensor([1, 2, 3]))
    no_sigma = lambda x, t: torch.zeros_like(x)
    with pytest.raises(ValueError, match="learn_sigma=True.*learn_sigma=False"):
        d.training_losses(no_sigma, x, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="fixed variance"):
        create_diffusion("50", learn_sigma=False).p_mean_variance(
            lambda x, t: torch.zeros(2, 6, 4, 4), x, torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="unknown noise_schedule 'quadratic'"):
        create_diffusion("", noise_schedule="quadratic")
    with pytest.raises(ValueError, match="bad respacing 'fast'"):
        create_diffusion("fast")
    with pytest.raises(ValueError, match="bad respacing 'ddimx'"):
        create_diffusion("ddimx")
    with pytest.raises(ValueError, match="integer stride"):
        create_diffusion("ddim999")
    with pytest.raises(ValueError, match="cannot take 2000 steps"):
        create_diffusion("2000")
    with pytest.raises(ValueError, match="num_classes"):
        sample_with_guidance(d, lambda x, t, y: x, torch.tensor([0, 1]), 1.5, x.shape)
