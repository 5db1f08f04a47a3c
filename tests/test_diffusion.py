"""Oracle tests for minidit.diffusion: schedules, forward process, posterior, loss terms.

Oracles are independent: diffusers' schedulers, float64 closed forms written here the slow
obvious way (Bayes' rule for the posterior, the std-parametrised Gaussian KL, exact erf CDFs).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from minidit.diffusion import create_diffusion
from minidit.diffusion.gaussian import learned_range_log_variance, posterior_mean_variance
from minidit.diffusion.losses import (approx_standard_normal_cdf, discretized_gaussian_log_likelihood,
                                      mean_flat, normal_kl)
from minidit.diffusion.schedules import cosine_beta_schedule, linear_beta_schedule

diffusers = pytest.importorskip("diffusers")


# ---------------------------------------------------------------- schedules
def test_linear_schedule_matches_paper_and_official_scaling():
    betas = linear_beta_schedule(1000)
    assert betas.dtype == np.float64 and betas.shape == (1000,)
    assert betas[0] == 1e-4 and abs(betas[-1] - 0.02) < 1e-17
    np.testing.assert_allclose(np.diff(betas), (0.02 - 1e-4) / 999, rtol=1e-9)
    # other T: both ends scaled by 1000 / T (official code)
    b250 = linear_beta_schedule(250)
    assert abs(b250[0] - 4e-4) < 1e-18 and abs(b250[-1] - 0.08) < 1e-16


def test_cosine_alpha_bar_matches_closed_form():
    T, s = 1000, 0.008
    betas = cosine_beta_schedule(T)
    alpha_bar = np.cumprod(1 - betas)
    t = np.arange(T)
    f = np.cos(((t + 1) / T + s) / (1 + s) * np.pi / 2) ** 2
    f0 = math.cos(s / (1 + s) * math.pi / 2) ** 2
    unclipped = betas < 0.999
    err = np.abs(alpha_bar[unclipped] - (f / f0)[unclipped]).max()
    assert err < 1e-12, err
    assert unclipped[:-1].all() and betas[-1] == 0.999  # only the very last beta is clipped


def test_create_diffusion_schedule_arrays_are_float64():
    d = create_diffusion("")
    assert d.num_timesteps == 1000 and d.timestep_map == list(range(1000))
    for name in ("betas", "alphas_cumprod", "alphas_cumprod_prev", "posterior_variance",
                 "posterior_log_variance_clipped"):
        assert getattr(d, name).dtype == np.float64, name
    # even unrespaced, betas are rebuilt from alpha_bar ratios (as in the official code): equal
    # to the schedule up to float64 rounding
    np.testing.assert_allclose(d.betas, linear_beta_schedule(1000), rtol=1e-10, atol=0)
    assert d.alphas_cumprod_prev[0] == 1.0 and d.posterior_variance[0] == 0.0
    # clipped log variance: t = 0 borrows t = 1 (official), the rest is log beta tilde
    assert d.posterior_log_variance_clipped[0] == np.log(d.posterior_variance[1])
    np.testing.assert_array_equal(d.posterior_log_variance_clipped[1:], np.log(d.posterior_variance[1:]))


# ---------------------------------------------------------------- forward process
def test_q_sample_matches_diffusers_add_noise():
    d = create_diffusion("")
    sched = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear",
                                    beta_start=1e-4, beta_end=0.02)
    x0 = torch.randn(8, 4, 8, 8)
    noise = torch.randn_like(x0)
    t = torch.tensor([0, 1, 2, 10, 250, 500, 998, 999])
    ours = d.q_sample(x0, t, noise=noise)
    theirs = sched.add_noise(x0, noise, t)
    err = (ours - theirs).abs().max().item()
    # diffusers keeps alpha_bar in float32 (ours: float64), so a few float32 ulps apart
    assert ours.dtype == torch.float32 and err < 2e-5, err


def test_q_sample_float64_matches_closed_form():
    d = create_diffusion("")
    x0 = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    noise = torch.randn_like(x0)
    t = torch.tensor([0, 400, 999])
    ab = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))[t.numpy()]
    ab = torch.from_numpy(ab).view(-1, 1, 1, 1)
    expected = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    assert (d.q_sample(x0, t, noise) - expected).abs().max() < 1e-14


# ---------------------------------------------------------------- posterior
def test_posterior_matches_bayes_rule_in_float64():
    """q(x_{t-1} | x_t, x_0) ∝ q(x_{t-1} | x_0) q(x_t | x_{t-1}): product of two Gaussians."""
    d = create_diffusion("")
    x0 = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    xt = torch.randn_like(x0)
    t = torch.tensor([1, 7, 500, 999])
    mean, var, log_var = d.q_posterior_mean_variance(x0, xt, t)
    betas = np.linspace(1e-4, 0.02, 1000)
    ab = np.cumprod(1 - betas)
    worst = 0.0
    for i, ti in enumerate(t.tolist()):
        prior_mean_coef, prior_var = math.sqrt(ab[ti - 1]), 1 - ab[ti - 1]      # x_{t-1} | x_0
        lik_coef, lik_var = math.sqrt(1 - betas[ti]), betas[ti]                 # x_t | x_{t-1}
        post_var = 1.0 / (1.0 / prior_var + lik_coef ** 2 / lik_var)
        post_mean = post_var * (prior_mean_coef * x0[i] / prior_var + lik_coef * xt[i] / lik_var)
        worst = max(worst, (mean[i] - post_mean).abs().max().item(),
                    ((var[i] - post_var).abs().max() / post_var).item())
        assert var.shape == log_var.shape == x0.shape
        assert (log_var[i] - math.log(post_var)).abs().max() < 1e-10
    assert worst < 1e-10, worst
    # t = 0: the posterior collapses onto x_0 with zero variance
    m0, v0, _ = d.q_posterior_mean_variance(x0, xt, torch.zeros(4, dtype=torch.long))
    assert torch.allclose(m0, x0, atol=1e-12) and (v0 == 0).all()


def test_posterior_float32_keeps_float64_precision_near_t0():
    """Coefficients are computed from float64 schedule values, even for float32 data."""
    d = create_diffusion("")
    x0, xt = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
    t = torch.tensor([1, 2])
    m32, _, _ = d.q_posterior_mean_variance(x0, xt, t)
    m64, _, _ = d.q_posterior_mean_variance(x0.double(), xt.double(), t)
    assert m32.dtype == torch.float32
    assert (m32.double() - m64).abs().max() < 1e-6


# ---------------------------------------------------------------- loss terms
def test_normal_kl_matches_direct_float64_formula():
    m1, m2 = torch.randn(1000, dtype=torch.float64), torch.randn(1000, dtype=torch.float64)
    lv1, lv2 = torch.randn(1000, dtype=torch.float64), torch.randn(1000, dtype=torch.float64)
    s1, s2 = torch.exp(lv1 / 2), torch.exp(lv2 / 2)
    # KL(N1 || N2) = log(s2 / s1) + (s1^2 + (m1 - m2)^2) / (2 s2^2) - 1/2
    direct = torch.log(s2 / s1) + (s1 ** 2 + (m1 - m2) ** 2) / (2 * s2 ** 2) - 0.5
    assert (normal_kl(m1, lv1, m2, lv2) - direct).abs().max() < 1e-12
    lib = torch.distributions.kl_divergence(torch.distributions.Normal(m1, s1),
                                            torch.distributions.Normal(m2, s2))
    assert (normal_kl(m1, lv1, m2, lv2) - lib).abs().max() < 1e-12
    assert normal_kl(torch.tensor(0.3), 0.0, 0.3, 0.0).item() == 0.0   # floats accepted


def test_discretized_gaussian_probabilities_sum_to_one_over_256_bins():
    x = (torch.arange(256, dtype=torch.float64) / 127.5 - 1.0)  # the 256 8-bit values in [-1, 1]
    for mean, log_scale in [(0.0, -3.0), (0.7, -5.0), (-0.99, -1.0), (0.2, 0.5), (1.0, -6.0)]:
        logp = discretized_gaussian_log_likelihood(
            x, means=torch.full_like(x, mean), log_scales=torch.full_like(x, log_scale))
        total = logp.exp().sum().item()
        assert abs(total - 1.0) < 1e-9, (mean, log_scale, total)
    # float32 as used in training
    x32 = x.float()
    total32 = discretized_gaussian_log_likelihood(x32, torch.zeros_like(x32), torch.full_like(x32, -2.0)).exp().sum()
    assert abs(total32.item() - 1.0) < 1e-5


def test_discretized_gaussian_uses_official_tanh_cdf():
    z = torch.linspace(-6, 6, 1001, dtype=torch.float64)
    exact = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    # the approximation is close to the exact CDF (max error ~2e-4) but not equal to it
    err = (approx_standard_normal_cdf(z) - exact).abs().max().item()
    assert 1e-5 < err < 3e-4, err
    # inner bin probability = difference of the tanh CDF at the edges x -+ 1/255
    x, mean, log_scale = torch.tensor([0.2], dtype=torch.float64), torch.tensor([0.1], dtype=torch.float64), torch.tensor([-3.0], dtype=torch.float64)
    sig = math.exp(-3.0)
    c = lambda v: 0.5 * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3)))
    expected = math.log(c((0.1 + 1 / 255) / sig) - c((0.1 - 1 / 255) / sig))
    assert abs(discretized_gaussian_log_likelihood(x, mean, log_scale).item() - expected) < 1e-12


def test_learned_range_interpolates_between_posterior_and_beta():
    d = create_diffusion("")
    t = torch.tensor([0, 10, 999])
    lo = torch.from_numpy(d.posterior_log_variance_clipped[t.numpy()])
    hi = torch.from_numpy(np.log(d.betas[t.numpy()]))
    assert torch.equal(learned_range_log_variance(torch.full((3,), -1.0, dtype=torch.float64), lo, hi), lo)
    assert torch.equal(learned_range_log_variance(torch.ones(3, dtype=torch.float64), lo, hi), hi)
    mid = learned_range_log_variance(torch.zeros(3, dtype=torch.float64), lo, hi)
    assert torch.allclose(mid, (lo + hi) / 2)


class LinearEpsV(torch.nn.Module):
    """A tiny model with learned sigma: (N, C, H, W) -> (N, 2C, H, W), depends on t."""

    def __init__(self, channels=3, out_mult=2):
        super().__init__()
        self.conv = torch.nn.Conv2d(channels, out_mult * channels, 1)
        self.seen_t = None

    def forward(self, x, t, y=None):
        self.seen_t = t
        return torch.tanh(self.conv(x) + t.view(-1, 1, 1, 1).float() / 1000)


def _vb_by_hand(d, x0, xt, t, out):
    """The vb term in float64 numpy from scratch: KL of posterior vs model Gaussian, or decoder NLL."""
    betas, ab = d.betas, d.alphas_cumprod
    eps, v = [a.detach().double().numpy() for a in out.chunk(2, dim=1)]
    x0n, xtn = x0.double().numpy(), xt.double().numpy()
    res = []
    for i, ti in enumerate(t.tolist()):
        ab_t, ab_prev, b = ab[ti], (ab[ti - 1] if ti > 0 else 1.0), betas[ti]
        pred_x0 = (xtn[i] - math.sqrt(1 - ab_t) * eps[i]) / math.sqrt(ab_t)
        c1, c2 = b * math.sqrt(ab_prev) / (1 - ab_t), (1 - ab_prev) * math.sqrt(1 - b) / (1 - ab_t)
        model_mean = c1 * pred_x0 + c2 * xtn[i]
        # posterior variance; at t = 0 (where it is 0) the clipped log uses t = 1's
        post_var = betas[1] * (1 - ab[0]) / (1 - ab[1]) if ti == 0 else b * (1 - ab_prev) / (1 - ab_t)
        frac = (v[i] + 1) / 2
        model_logvar = frac * math.log(b) + (1 - frac) * math.log(post_var)
        if ti == 0:
            sig = np.exp(0.5 * model_logvar)
            cdf = lambda z: 0.5 * (1 + np.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z ** 3)))
            p = cdf((x0n[i] - model_mean + 1 / 255) / sig) - cdf((x0n[i] - model_mean - 1 / 255) / sig)
            p = np.where(x0n[i] < -0.999, cdf((x0n[i] - model_mean + 1 / 255) / sig), p)
            p = np.where(x0n[i] > 0.999, 1 - cdf((x0n[i] - model_mean - 1 / 255) / sig), p)
            res.append(-np.log(np.maximum(p, 1e-12)).mean() / math.log(2))
        else:
            post_mean = c1 * x0n[i] + c2 * xtn[i]
            s1, s2 = math.sqrt(post_var), np.exp(0.5 * model_logvar)
            kl = np.log(s2 / s1) + (s1 ** 2 + (post_mean - model_mean) ** 2) / (2 * s2 ** 2) - 0.5
            res.append(kl.mean() / math.log(2))
    return np.array(res)


def test_training_losses_hybrid_loss_against_hand_computation():
    d = create_diffusion("")
    model = LinearEpsV()
    x0 = (torch.randint(0, 256, (4, 3, 4, 4)).float() / 127.5 - 1)  # 8-bit data, decoder applies
    t = torch.tensor([0, 1, 300, 999])
    noise = torch.randn_like(x0)
    terms = d.training_losses(model, x0, t, noise=noise)
    assert set(terms) == {"loss", "mse", "vb"} and all(v.shape == (4,) for v in terms.values())
    assert torch.equal(terms["loss"], terms["mse"] + terms["vb"])
    xt = d.q_sample(x0, t, noise)
    out = model(xt, t)
    assert torch.allclose(terms["mse"], mean_flat((out[:, :3] - noise) ** 2), atol=1e-6)
    expected_vb = _vb_by_hand(d, x0, xt, t, out)
    err = np.abs(terms["vb"].detach().double().numpy() - expected_vb).max()
    assert err < 1e-4 * max(1.0, np.abs(expected_vb).max()), (terms["vb"], expected_vb)


def test_vb_trains_only_the_variance_and_mse_only_the_mean():
    d = create_diffusion("")
    x0 = torch.randn(2, 3, 4, 4)
    t = torch.tensor([5, 600])
    out = torch.randn(2, 6, 4, 4, requires_grad=True)
    terms = d.training_losses(lambda x, t: out, x0, t)
    g_vb, = torch.autograd.grad(terms["vb"].sum(), out, retain_graph=True)
    g_mse, = torch.autograd.grad(terms["mse"].sum(), out)
    assert (g_vb[:, :3] == 0).all() and g_vb[:, 3:].abs().sum() > 0      # mean detached in vb
    assert (g_mse[:, 3:] == 0).all() and g_mse[:, :3].abs().sum() > 0


def test_fixed_variance_and_xstart_prediction_options():
    x0 = torch.randn(2, 3, 4, 4)
    t = torch.tensor([0, 500])
    d = create_diffusion("", learn_sigma=False)
    assert d.model_var_type == "fixed_large"          # the official default without learned sigma
    terms = d.training_losses(LinearEpsV(out_mult=1), x0, t)
    assert torch.equal(terms["vb"], torch.zeros(2)) and torch.equal(terms["loss"], terms["mse"])
    out = d.p_mean_variance(LinearEpsV(out_mult=1), x0, t)
    # fixed large: beta_t, except posterior variance of step 1 at t = 0
    assert torch.allclose(out["variance"][:, 0, 0, 0],
                          torch.tensor([d.posterior_variance[1], d.betas[500]], dtype=torch.float32))
    small = create_diffusion("", learn_sigma=False, sigma_small=True)
    out = small.p_mean_variance(LinearEpsV(out_mult=1), x0, t)
    assert torch.allclose(out["variance"][1, 0, 0, 0].double(), torch.tensor(small.posterior_variance[500]))
    # x_0 prediction: the mse target is x_0 and pred_xstart is the model output
    dx = create_diffusion("", predict_xstart=True)
    model = LinearEpsV()
    noise = torch.randn_like(x0)
    terms = dx.training_losses(model, x0, t, noise=noise)
    pred = model(dx.q_sample(x0, t, noise), t)[:, :3]
    assert torch.allclose(terms["mse"], mean_flat((pred - x0) ** 2), atol=1e-6)
    out = dx.p_mean_variance(model, x0, t)
    assert torch.allclose(out["pred_xstart"], model(x0, t)[:, :3], atol=1e-6)


def test_rescale_learned_sigmas_option():
    x0, t = torch.randn(2, 3, 4, 4), torch.tensor([3, 40])
    model = LinearEpsV()
    plain = create_diffusion("50").training_losses(model, x0, t, noise=torch.zeros_like(x0))
    scaled = create_diffusion("50", rescale_learned_sigmas=True).training_losses(model, x0, t, noise=torch.zeros_like(x0))
    assert torch.allclose(scaled["vb"], plain["vb"] * 50 / 1000)
