"""The diffusion API as the official DiT code has it: signatures, ``use_kl``, ``q_mean_variance``,
DDIM inversion, ``calc_bpd_loop``, classifier guidance (``cond_fn``) and ``forward_with_cfg``'s
official channel slice.

The official code cannot be imported here, so its semantics are written out in each test as a
float64 re-statement or a closed form: Gaussians whose exact posterior is known, a data
distribution whose exact eps is known, linear classifiers whose gradient is known.
"""
from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch

from minidit.diffusion import GaussianDiffusion, classifier_cond_fn, create_diffusion
from minidit.diffusion.losses import mean_flat
from test_models import randomize, tiny

ALPHA_BAR = np.cumprod(1 - np.linspace(1e-4, 0.02, 1000))   # original linear chain, float64
EMPTY = inspect.Parameter.empty


def params(fn):
    """[(name, default)] of a function's parameters after ``self``."""
    return [(p.name, p.default) for p in inspect.signature(fn).parameters.values() if p.name != "self"]


class RandomEps(torch.nn.Module):
    """A deterministic stand-in for a trained model, 2C (learned sigma) or C outputs."""

    def __init__(self, channels=3, learn_sigma=True):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        out = (2 if learn_sigma else 1) * channels
        self.w = torch.nn.Parameter(torch.randn(out, channels, generator=g, dtype=torch.float64) * 0.5)
        self.b = torch.nn.Parameter(torch.randn(out, generator=g, dtype=torch.float64) * 0.3)

    def forward(self, x, t, y=None):
        h = torch.einsum("oc,nc...->no...", self.w.to(x.dtype), x)
        tt = (t.to(x.dtype) / 1000).view(-1, 1, 1, 1)
        return torch.tanh(h + self.b.to(x.dtype).view(1, -1, 1, 1) * (1 + tt))


def knows_x0(x_0, v=-1.0):
    """The exact model for a dataset of one point x_0: the true eps, and v = -1 (variance beta tilde)."""
    ab = torch.from_numpy(ALPHA_BAR)

    def model(x, t, y=None):
        a = ab[t].view(-1, 1, 1, 1).to(x.dtype)
        # eps = (x_t - sqrt(alpha_bar_t) x_0) / sqrt(1 - alpha_bar_t)
        eps = (x - a.sqrt() * x_0) / (1 - a).sqrt()
        return torch.cat([eps, torch.full_like(eps, v)], dim=1)
    return model


def gaussian_data_eps(mu, s):
    """The exact eps-model for data x_0 ~ N(mu, s^2) in every dimension (fixed variance).

    x_t ~ N(sqrt(ab) mu, ab s^2 + 1 - ab), so
    E[eps | x_t] = sqrt(1 - ab) (x_t - sqrt(ab) mu) / (ab s^2 + 1 - ab).
    """
    ab = torch.from_numpy(ALPHA_BAR)

    def model(x, t, y=None):
        a = ab[t].view(-1, 1, 1, 1).to(x.dtype)
        return (1 - a).sqrt() * (x - a.sqrt() * mu) / (a * s ** 2 + 1 - a)
    return model


def eight_bit(shape, seed=0):
    """8-bit data in [-1, 1], with both edge values present (the decoder's open-ended bins)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, shape, generator=g).double() / 127.5 - 1
    x.view(-1)[:2] = torch.tensor([-1.0, 1.0], dtype=torch.float64)
    return x


def tanh_cdf(z):
    """The official approximate normal CDF: 0.5 (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3)))."""
    return 0.5 * (1 + np.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z ** 3)))


def decoder_bits(x_0, mean, sigma):
    """-log2 of the discretized-Gaussian bin probability, per example (mean over dims), numpy."""
    x, m = x_0.numpy(), mean.numpy() if torch.is_tensor(mean) else mean
    p = tanh_cdf((x - m + 1 / 255) / sigma) - tanh_cdf((x - m - 1 / 255) / sigma)
    p = np.where(x < -0.999, tanh_cdf((x - m + 1 / 255) / sigma), p)
    p = np.where(x > 0.999, 1 - tanh_cdf((x - m - 1 / 255) / sigma), p)
    return (-np.log2(np.maximum(p, 1e-12))).reshape(len(x), -1).mean(1)


# ---------------------------------------------------------------- signatures, as the official ones
def test_signatures_follow_the_official_order_and_defaults():
    assert params(create_diffusion) == [
        ("timestep_respacing", EMPTY), ("noise_schedule", "linear"), ("use_kl", False),
        ("sigma_small", False), ("predict_xstart", False), ("learn_sigma", True),
        ("rescale_learned_sigmas", False), ("diffusion_steps", 1000)]
    d = create_diffusion("10")
    step = ["model", "x", "t", "clip_denoised", "denoised_fn", "cond_fn", "model_kwargs"]
    loop = ["model", "shape", "noise", "clip_denoised", "denoised_fn", "cond_fn", "model_kwargs",
            "device", "progress"]
    assert [n for n, _ in params(d.p_sample)] == step
    assert [n for n, _ in params(d.ddim_sample)] == step + ["eta"]
    assert [n for n, _ in params(d.ddim_reverse_sample)] == step + ["eta"]
    assert [n for n, _ in params(d.p_sample_loop)] == loop
    assert [n for n, _ in params(d.ddim_sample_loop)] == loop + ["eta"]
    assert [n for n, _ in params(d.q_mean_variance)] == ["x_start", "t"]
    for fn in (d.condition_mean, d.condition_score):
        assert [n for n, _ in params(fn)] == ["cond_fn", "p_mean_var", "x", "t", "model_kwargs"]
    assert params(d.calc_bpd_loop)[:4] == [("model", EMPTY), ("x_start", EMPTY),
                                           ("clip_denoised", True), ("model_kwargs", None)]
    # clip_denoised: the official default is True everywhere; minidit's samplers default to False
    # (latents must not be clamped; the official sampling scripts pass False), calc_bpd_loop keeps
    # True (its decoder term only makes sense for pixels in [-1, 1])
    for fn in (d.p_sample, d.p_sample_loop, d.ddim_sample, d.ddim_sample_loop, d.ddim_reverse_sample,
               d.ddim_reverse_sample_loop, d.p_mean_variance):
        assert dict(params(fn))["clip_denoised"] is False, fn.__name__


def test_create_diffusion_positional_equals_keywords():
    pos = create_diffusion("250", "linear", False, False, False, True)
    kw = create_diffusion(timestep_respacing="250", noise_schedule="linear", use_kl=False,
                          sigma_small=False, predict_xstart=False, learn_sigma=True)
    for name in ("betas", "alphas_cumprod", "posterior_variance"):
        np.testing.assert_array_equal(getattr(pos, name), getattr(kw, name))
    assert pos.timestep_map == kw.timestep_map and len(pos.timestep_map) == 250
    assert (pos.model_mean_type, pos.model_var_type, pos.loss_type) == ("epsilon", "learned_range", "mse")
    # the 4th positional is sigma_small and the 5th predict_xstart, as officially
    small = create_diffusion("", "linear", False, True, False, False)
    assert small.model_var_type == "fixed_small"
    assert create_diffusion("", "linear", False, False, True).model_mean_type == "x_start"
    assert create_diffusion("", "linear", False, False, False, False).model_var_type == "fixed_large"
    # loss types: use_kl -> RESCALED_KL, and it wins over rescale_learned_sigmas (official order)
    assert create_diffusion("", "linear", True).loss_type == "rescaled_kl"
    assert create_diffusion("", use_kl=True, rescale_learned_sigmas=True).loss_type == "rescaled_kl"
    assert create_diffusion("", rescale_learned_sigmas=True).loss_type == "rescaled_mse"
    assert create_diffusion("", "linear", False, False, False, True, False, 500).num_timesteps == 500


def test_sampler_positional_call_means_the_official_arguments():
    d = create_diffusion("5")
    model, noise = RandomEps(), torch.randn(2, 3, 4, 4, dtype=torch.float64)
    cond_fn = lambda x, t, y=None: 0.1 * torch.ones_like(x) * y.view(-1, 1, 1, 1)
    kwargs = dict(y=torch.tensor([1.0, 2.0], dtype=torch.float64))
    torch.manual_seed(3)
    pos = d.p_sample_loop(model, noise.shape, noise, False, None, cond_fn, kwargs)
    torch.manual_seed(3)
    kw = d.p_sample_loop(model, noise.shape, noise=noise, cond_fn=cond_fn, model_kwargs=kwargs)
    torch.manual_seed(3)
    plain = d.p_sample_loop(model, noise.shape, noise=noise, model_kwargs=kwargs)
    assert torch.equal(pos, kw) and not torch.allclose(pos, plain)


# ---------------------------------------------------------------- use_kl: the bound as the loss
def kl_term_by_hand(d, x_0, x_t, t, out):
    """L_t in bits (t >= 1) in float64 numpy, std-parametrised Gaussians, from scratch."""
    ab_all = d.alphas_cumprod
    eps, v = (a.detach().numpy() for a in out.chunk(2, dim=1))
    res = []
    for i, ti in enumerate(t.tolist()):
        ab, ab_prev, beta = ab_all[ti], ab_all[ti - 1], d.betas[ti]
        x0, xt = x_0[i].numpy(), x_t[i].numpy()
        pred_x0 = (xt - math.sqrt(1 - ab) * eps[i]) / math.sqrt(ab)
        c1, c2 = beta * math.sqrt(ab_prev) / (1 - ab), (1 - ab_prev) * math.sqrt(1 - beta) / (1 - ab)
        post_var = beta * (1 - ab_prev) / (1 - ab)
        log_var = (v[i] + 1) / 2 * math.log(beta) + (1 - (v[i] + 1) / 2) * math.log(post_var)
        s1, s2 = math.sqrt(post_var), np.exp(0.5 * log_var)
        m1, m2 = c1 * x0 + c2 * xt, c1 * pred_x0 + c2 * xt
        kl = np.log(s2 / s1) + (s1 ** 2 + (m1 - m2) ** 2) / (2 * s2 ** 2) - 0.5
        res.append(kl.mean() / math.log(2))
    return np.array(res)


def test_use_kl_loss_is_the_rescaled_bound_term_and_trains_the_mean():
    d = create_diffusion("", use_kl=True)
    assert d.loss_type == "rescaled_kl"
    x_0 = eight_bit((3, 3, 4, 4))
    t = torch.tensor([1, 300, 999])
    noise = torch.randn_like(x_0)
    out = torch.cat([torch.randn_like(x_0) * 0.3, torch.rand_like(x_0) * 2 - 1], 1).requires_grad_(True)
    terms = d.training_losses(lambda x, t_: out, x_0, t, noise=noise)
    x_t = d.q_sample(x_0, t, noise)
    expected = kl_term_by_hand(d, x_0, x_t, t, out)
    # official RESCALED_KL: loss = T * L_t, nothing else
    np.testing.assert_allclose(terms["loss"].detach().numpy(), 1000 * expected, rtol=1e-9)
    np.testing.assert_allclose(terms["vb"].detach().numpy(), expected, rtol=1e-9)
    grad, = torch.autograd.grad(terms["loss"].sum(), out)
    assert grad[:, :3].abs().sum() > 0 and grad[:, 3:].abs().sum() > 0   # mean AND variance trained
    # mse is reported for logging, detached
    assert not terms["mse"].requires_grad
    torch.testing.assert_close(terms["mse"], mean_flat((out[:, :3] - noise) ** 2).detach())
    # unscaled KL (loss_type="kl"), and the same on a respaced chain: T is that chain's length
    plain = GaussianDiffusion(d.betas, loss_type="kl").training_losses(lambda x, t_: out, x_0, t, noise=noise)
    np.testing.assert_allclose(plain["loss"].detach().numpy(), expected, rtol=1e-9)
    short = create_diffusion("50", use_kl=True).training_losses(lambda x, t_: out, x_0, t // 30, noise=noise)
    torch.testing.assert_close(short["loss"], 50 * short["vb"])


# ---------------------------------------------------------------- q(x_t | x_0)
@pytest.mark.parametrize("spacing", ["", "ddim50"])
def test_q_mean_variance_is_the_closed_form(spacing):
    d = create_diffusion(spacing)
    x_0 = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    t = torch.tensor([0, 1, d.num_timesteps // 2, d.num_timesteps - 1])
    mean, var, log_var = d.q_mean_variance(x_0, t)
    ab = torch.from_numpy(ALPHA_BAR[np.array(d.timestep_map)[t.numpy()]]).view(-1, 1, 1, 1)
    assert mean.shape == var.shape == log_var.shape == x_0.shape
    # q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I), alpha_bar of the ORIGINAL step
    torch.testing.assert_close(mean, ab.sqrt() * x_0, rtol=1e-12, atol=0)
    torch.testing.assert_close(var, (1 - ab).expand_as(x_0), rtol=1e-10, atol=0)
    torch.testing.assert_close(log_var, torch.log(1 - ab).expand_as(x_0), rtol=1e-10, atol=0)
    f32 = d.q_mean_variance(x_0.float(), t)
    assert all(a.dtype == torch.float32 for a in f32)


# ---------------------------------------------------------------- DDIM inversion
def test_ddim_reverse_step_is_the_official_update():
    d = create_diffusion("20", learn_sigma=True)
    model = RandomEps()
    x = torch.randn(4, 3, 4, 4, dtype=torch.float64)
    t = torch.tensor([0, 7, 18, 19])
    out = d.ddim_reverse_sample(model, x, t)
    ab_all = np.array([ALPHA_BAR[s] for s in d.timestep_map])
    ab = torch.from_numpy(ab_all[t.numpy()]).view(-1, 1, 1, 1)
    # alpha_bar_{t+1}, and 0 after the last step
    ab_next = torch.from_numpy(np.append(ab_all[1:], 0.0)[t.numpy()]).view(-1, 1, 1, 1)
    eps = model(x, torch.tensor(d.timestep_map)[t])[:, :3]
    x0 = (x - (1 - ab).sqrt() * eps) / ab.sqrt()
    torch.testing.assert_close(out["pred_xstart"], x0, rtol=1e-10, atol=1e-10)
    # x_{t+1} = sqrt(alpha_bar_{t+1}) x_0 + sqrt(1 - alpha_bar_{t+1}) eps
    torch.testing.assert_close(out["sample"], ab_next.sqrt() * x0 + (1 - ab_next).sqrt() * eps,
                               rtol=1e-10, atol=1e-10)
    assert torch.allclose(out["sample"][3], eps[3], atol=1e-12)      # at t = T-1 the result is eps
    with pytest.raises(ValueError, match="eta must be 0"):
        d.ddim_reverse_sample(model, x, t, eta=0.5)


def test_ddim_reverse_then_forward_step_is_exact_when_eps_is_exact():
    """For a one-point dataset the exact eps stays constant along the ODE, so inverting one step
    and taking the DDIM step back returns x to float64 rounding."""
    d = create_diffusion("100")
    x_0 = eight_bit((2, 3, 4, 4))
    model = knows_x0(x_0)
    for i in (0, 40, 98):
        t = torch.full((2,), i)
        x_t = d.q_sample(x_0, t, torch.randn_like(x_0))
        up = d.ddim_reverse_sample(model, x_t, t)["sample"]
        back = d.ddim_sample(model, up, t + 1)["sample"]
        assert (back - x_t).abs().max() < 1e-10, i


def test_ddim_inversion_loop_follows_the_probability_flow_of_gaussian_data():
    """x_0 ~ N(mu, s^2) with its exact eps: the probability-flow ODE keeps every point's quantile,
    so inversion must land on the same quantile of x_{T-1}'s Gaussian, and sampling must come
    back to x_0, both up to a discretisation error that falls like 1/steps."""
    mu, s = 0.3, 0.5
    x_0 = mu + s * torch.randn(2, 3, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    model = gaussian_data_eps(mu, s)
    errors = {}
    for spacing in ("25", "100", "400"):
        d = create_diffusion(spacing, learn_sigma=False)
        states = list(d.ddim_reverse_sample_loop_progressive(model, x_0))
        z = d.ddim_reverse_sample_loop(model, x_0)
        assert len(states) == d.num_timesteps - 1 and torch.equal(states[-1]["sample"], z)
        # the input is the state at t = 0; its quantile q is kept up to the last step T-1
        a0, a_last = ALPHA_BAR[0], d.alphas_cumprod[-1]
        q = (x_0 - math.sqrt(a0) * mu) / math.sqrt(a0 * s ** 2 + 1 - a0)
        exact = math.sqrt(a_last) * mu + math.sqrt(a_last * s ** 2 + 1 - a_last) * q
        back = d.ddim_sample_loop(model, x_0.shape, z)
        errors[spacing] = ((z - exact).abs().max().item(), (back - x_0).abs().max().item())
    assert errors["400"][0] < 0.03 and errors["400"][1] < 0.03, errors
    for k in (0, 1):
        assert errors["100"][k] < errors["25"][k] / 3 and errors["400"][k] < errors["100"][k] / 3, errors


def test_ddim_reverse_loop_is_the_steps_t_0_to_T_minus_2():
    d = create_diffusion("8")
    model = RandomEps()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    by_hand = x
    for i in range(d.num_timesteps - 1):
        by_hand = d.ddim_reverse_sample(model, by_hand, torch.full((2,), i))["sample"]
    assert torch.equal(d.ddim_reverse_sample_loop(model, x), by_hand)


def test_ddim_reverse_loop_conditions_the_score_at_original_timesteps():
    d = create_diffusion("ddim10")
    model, seen = RandomEps(), []

    def cond_fn(x, t, y=None):
        seen.append(t.tolist())
        return torch.full_like(x, 0.1) * y.view(-1, 1, 1, 1)
    x, y = torch.randn(2, 3, 4, 4, dtype=torch.float64), torch.tensor([1.0, 2.0], dtype=torch.float64)
    guided = d.ddim_reverse_sample_loop(model, x, cond_fn=cond_fn, model_kwargs=dict(y=y))
    assert seen == [[m, m] for m in d.timestep_map[:-1]]
    by_hand, ab = x, d.alphas_cumprod
    for i in range(9):
        t = torch.full((2,), i)
        # the conditioned x_0 estimate, then x_{t+1} = sqrt(ab_{t+1}) x_0' + sqrt(1 - ab_{t+1}) eps'
        x0 = d.condition_score(cond_fn, d.p_mean_variance(model, by_hand, t, model_kwargs=dict(y=y)),
                               by_hand, t, model_kwargs=dict(y=y))["pred_xstart"]
        eps = (by_hand / math.sqrt(ab[i]) - x0) / math.sqrt(1 / ab[i] - 1)
        by_hand = math.sqrt(ab[i + 1]) * x0 + math.sqrt(1 - ab[i + 1]) * eps
    torch.testing.assert_close(guided, by_hand, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- calc_bpd_loop
@pytest.mark.parametrize("spacing,clip", [("", True), ("100", False)])
def test_calc_bpd_loop_equals_closed_form_for_an_exact_model(spacing, clip):
    """A one-point dataset and the model that knows it, with variance beta tilde: every KL term
    L_t (t >= 1) is 0, the decoder's mean is x_0 itself with variance beta tilde_1, and the prior
    term is KL(N(sqrt(ab_T) x_0, 1 - ab_T) || N(0, 1)) -- the bound in closed form."""
    d = create_diffusion(spacing)
    T = d.num_timesteps
    x_0 = eight_bit((2, 3, 4, 4))
    torch.manual_seed(0)
    got = d.calc_bpd_loop(knows_x0(x_0), x_0, clip_denoised=clip)
    assert set(got) == {"total_bpd", "prior_bpd", "vb", "xstart_mse", "mse"}
    assert got["vb"].shape == got["mse"].shape == got["xstart_mse"].shape == (2, T)
    ab = ALPHA_BAR[np.array(d.timestep_map)]        # the chain's alpha_bar (original at kept steps)
    x = x_0.numpy().reshape(2, -1)
    prior = (0.5 * (-1 - math.log(1 - ab[-1]) + (1 - ab[-1]) + ab[-1] * x ** 2)).mean(1) / math.log(2)
    # beta tilde_1 = beta_1 (1 - alpha_bar_0) / (1 - alpha_bar_1), the clipped variance at t = 0
    beta_tilde_1 = (1 - ab[1] / ab[0]) * (1 - ab[0]) / (1 - ab[1])
    decoder = decoder_bits(x_0, x_0.numpy(), math.sqrt(beta_tilde_1))
    np.testing.assert_allclose(got["prior_bpd"].numpy(), prior, rtol=1e-10)
    # the official order: column k is t = T-1-k, so the decoder term is the LAST column
    np.testing.assert_allclose(got["vb"][:, -1].numpy(), decoder, rtol=1e-8)
    assert got["vb"][:, :-1].abs().max() < 1e-8
    np.testing.assert_allclose(got["total_bpd"].numpy(), prior + decoder, rtol=1e-8)
    assert got["xstart_mse"].max() < 1e-20 and got["mse"].max() < 1e-12


def test_calc_bpd_loop_is_the_per_step_terms_in_official_order():
    """The loop == one ``training_losses`` KL term per step, with the noise drawn once per step
    from t = T-1 down to 0 (a seeded generator reproduces it), plus the prior term."""
    d = create_diffusion("12", use_kl=True)
    model = RandomEps()
    x_0 = eight_bit((3, 3, 4, 4), seed=1)
    torch.manual_seed(7)
    got = d.calc_bpd_loop(model, x_0, clip_denoised=False)
    torch.manual_seed(7)
    noises = [torch.randn_like(x_0) for _ in range(12)]
    for k, noise in enumerate(noises):
        t = torch.full((3,), 11 - k)
        terms = d.training_losses(model, x_0, t, noise=noise)
        torch.testing.assert_close(got["vb"][:, k], terms["vb"], rtol=1e-12, atol=1e-12)
        # without clipping, the eps re-derived from the x_0 estimate is the model's eps
        torch.testing.assert_close(got["mse"][:, k], terms["mse"], rtol=1e-9, atol=1e-12)
        x_t = d.q_sample(x_0, t, noise)
        ab = d.alphas_cumprod[11 - k]
        eps = model(x_t, torch.tensor(d.timestep_map)[t])[:, :3]
        x0_hat = (x_t - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
        torch.testing.assert_close(got["xstart_mse"][:, k], mean_flat((x0_hat - x_0) ** 2),
                                   rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(got["total_bpd"], got["vb"].sum(1) + got["prior_bpd"], rtol=1e-12, atol=0)
    # clipping the x_0 estimate changes the terms of a model that predicts out of range
    torch.manual_seed(7)
    clipped = d.calc_bpd_loop(model, x_0)
    assert not torch.allclose(clipped["xstart_mse"], got["xstart_mse"])


# ---------------------------------------------------------------- classifier guidance (cond_fn)
def test_condition_mean_shifts_the_ddpm_mean_by_variance_times_gradient():
    d = create_diffusion("50")
    model = RandomEps()
    x = torch.randn(3, 3, 4, 4, dtype=torch.float64)
    g = torch.randn_like(x)
    t = torch.tensor([0, 20, 49])
    p = d.p_mean_variance(model, x, t)
    torch.testing.assert_close(d.condition_mean(lambda x_, t_: g, p, x, t), p["mean"] + p["variance"] * g,
                               rtol=0, atol=1e-14)
    torch.manual_seed(1)
    plain = d.p_sample(model, x, t)["sample"]
    torch.manual_seed(1)
    guided = d.p_sample(model, x, t, cond_fn=lambda x_, t_: g)["sample"]
    # the same z: the samples differ by exactly Sigma * grad, also at t = 0 (no noise there)
    torch.testing.assert_close(guided - plain, p["variance"] * g, rtol=1e-9, atol=1e-12)


def test_condition_score_is_the_official_eps_formula():
    d = create_diffusion("ddim25", learn_sigma=True)
    model = RandomEps()
    x = torch.randn(3, 3, 4, 4, dtype=torch.float64)
    g = torch.randn_like(x)
    t = torch.tensor([0, 11, 24])
    kept = np.array(d.timestep_map)
    ab = torch.from_numpy(ALPHA_BAR[kept][t.numpy()]).view(-1, 1, 1, 1)
    ab_prev = torch.from_numpy(np.append(1.0, ALPHA_BAR[kept][:-1])[t.numpy()]).view(-1, 1, 1, 1)
    eps = model(x, torch.from_numpy(kept)[t])[:, :3]
    # eps' = eps - sqrt(1 - alpha_bar_t) grad;  x_0' from eps';  DDIM (eta = 0) with eps'
    eps_g = eps - (1 - ab).sqrt() * g
    x0_g = (x - (1 - ab).sqrt() * eps_g) / ab.sqrt()
    expected = ab_prev.sqrt() * x0_g + (1 - ab_prev).sqrt() * eps_g
    out = d.ddim_sample(model, x, t, cond_fn=lambda x_, t_: g)
    torch.testing.assert_close(out["pred_xstart"], x0_g, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(out["sample"], expected, rtol=1e-9, atol=1e-9)
    # condition_score's mean is the posterior mean with x_0' plugged in; variance untouched
    p = d.p_mean_variance(model, x, t)
    cs = d.condition_score(lambda x_, t_: g, p, x, t)
    beta = 1 - ab / ab_prev
    post_mean = (beta * ab_prev.sqrt() * x0_g + (1 - ab_prev) * (1 - beta).sqrt() * x) / (1 - ab)
    torch.testing.assert_close(cs["mean"], post_mean, rtol=1e-9, atol=1e-9)
    assert cs["variance"] is p["variance"] and p["pred_xstart"] is not cs["pred_xstart"]


def test_zero_gradient_changes_nothing():
    d = create_diffusion("20")
    model = RandomEps()
    noise = torch.randn(2, 3, 4, 4)
    zero = lambda x, t: torch.zeros_like(x)
    torch.manual_seed(4)
    plain = d.p_sample_loop(model, noise.shape, noise)
    torch.manual_seed(4)
    assert torch.equal(d.p_sample_loop(model, noise.shape, noise, cond_fn=zero), plain)   # bit for bit
    # DDIM re-derives x_0 from eps (as officially): equal up to the float64 round trip
    plain = d.ddim_sample_loop(model, noise.shape, noise)
    assert (d.ddim_sample_loop(model, noise.shape, noise, cond_fn=zero) - plain).abs().max() < 1e-6


def test_cond_fn_sees_original_timesteps_and_the_model_kwargs():
    """As the official respacing wraps cond_fn: the timesteps it gets are timestep_map[t]."""
    d = create_diffusion("ddim10")
    seen = []

    def cond_fn(x, t, y=None):
        seen.append((t.tolist(), y.tolist()))
        return torch.zeros_like(x)
    y = torch.tensor([3, 4])
    x = torch.randn(2, 3, 4, 4)
    d.p_sample_loop(RandomEps(), x.shape, x, cond_fn=cond_fn, model_kwargs=dict(y=y))
    assert [s[0][0] for s in seen] == d.timestep_map[::-1] == list(range(900, -1, -100))
    assert all(s[1] == [3, 4] for s in seen)
    seen.clear()
    d.ddim_sample_loop(RandomEps(), x.shape, x, cond_fn=cond_fn, model_kwargs=dict(y=y))
    assert [s[0] for s in seen] == [[m, m] for m in d.timestep_map[::-1]]
    with pytest.raises(ValueError, match="cond_fn must return"):
        d.p_sample(RandomEps(), x, torch.tensor([1, 1]), cond_fn=lambda x, t: x[:, :1])


def test_classifier_cond_fn_is_the_log_softmax_gradient():
    """For a linear classifier, grad_x log softmax(W x + b_t)[y] = W_y - sum_k p_k W_k."""
    g = torch.Generator().manual_seed(2)
    W = torch.randn(5, 12, generator=g, dtype=torch.float64)

    def classifier(x, t):
        return x.flatten(1) @ W.T + t.to(x.dtype).view(-1, 1) / 1000
    x = torch.randn(3, 3, 2, 2, dtype=torch.float64)
    t, y = torch.tensor([10, 500, 900]), torch.tensor([0, 4, 2])
    cond_fn = classifier_cond_fn(classifier, scale=2.5)
    with torch.no_grad():                       # as inside the sampling loops
        got = cond_fn(x, t, y=y, cfg_scale=4.0)
    p = torch.softmax(classifier(x, t), dim=-1)
    expected = 2.5 * (W[y] - p @ W).view_as(x)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="model_kwargs=dict"):
        cond_fn(x, t)


def test_loss_type_errors_are_clear():
    with pytest.raises(ValueError, match="loss_type must be one of"):
        GaussianDiffusion(np.full(5, 0.1), loss_type="vlb")
    with pytest.raises(ValueError, match="pass only one"):
        GaussianDiffusion(np.full(5, 0.1), loss_type="kl", rescale_learned_sigmas=True)


# ---------------------------------------------------------------- forward_with_cfg, official slice
def official_cfg(model, x, t, y, s):
    """The official ``forward_with_cfg`` re-stated: guidance on ``model_out[:, :3]``."""
    half = x[: len(x) // 2]
    model_out = model(torch.cat([half, half]), t, y)
    eps, rest = model_out[:, :3], model_out[:, 3:]
    cond_eps, uncond_eps = torch.split(eps, len(eps) // 2, dim=0)
    half_eps = uncond_eps + s * (cond_eps - uncond_eps)
    return torch.cat([torch.cat([half_eps, half_eps]), rest], dim=1)


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("learn_sigma", [True, False])
def test_forward_with_cfg_official_mode_is_the_official_slice(channels, learn_sigma):
    model = randomize(tiny(in_channels=channels, learn_sigma=learn_sigma)).eval()
    half = torch.randn(2, channels, 8, 8)
    x = torch.cat([half, torch.randn_like(half)])        # the second half is ignored, as officially
    t, y = torch.tensor([5, 9, 5, 9]), torch.tensor([1, 2, 10, 10])
    got = model.forward_with_cfg(x, t, y, 4.0, guidance_channels="official")
    torch.testing.assert_close(got, official_cfg(model, x, t, y, 4.0), rtol=0, atol=1e-6)
    plain = model(torch.cat([half, half]), t, y)
    n_guided = min(3, model.out_channels)
    assert torch.equal(got[:, n_guided:], plain[:, n_guided:])
    assert not torch.allclose(got[:2, :n_guided], plain[:2, :n_guided], atol=1e-4)
    # "all" guides exactly the C eps channels, never a variance channel
    every = model.forward_with_cfg(x, t, y, 4.0, guidance_channels="all")
    assert torch.equal(every[:, channels:], plain[:, channels:])
    # minidit's default: the official slice for 4 channels, all eps channels otherwise
    default = model.forward_with_cfg(x, t, y, 4.0)
    assert torch.equal(default, got if channels == 4 else every)
    if channels == 1 and learn_sigma:
        # officially the variance channel v is guided too; with "all" it is not
        assert not torch.allclose(got[:2, 1], plain[:2, 1]) and torch.equal(every[:, 1], plain[:, 1])


def test_forward_with_cfg_option_errors():
    model = randomize(tiny()).eval()
    x, t, y = torch.randn(2, 4, 8, 8), torch.tensor([1, 1]), torch.tensor([0, 10])
    with pytest.raises(ValueError, match="guidance_channels must be"):
        model.forward_with_cfg(x, t, y, 2.0, guidance_channels=3)
    with pytest.raises(ValueError, match="pass only one"):
        model.forward_with_cfg(x, t, y, 2.0, guide_all_channels=True, guidance_channels="official")
