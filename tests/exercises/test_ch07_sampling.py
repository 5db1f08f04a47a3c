"""Chapter 7 (sampling): the DDIM step, classifier-free guidance, timestep respacing, the ancestral
DDPM step and the sampling loop."""
import pytest
import torch
from grading import assert_close, close

from minidit.diffusion import create_diffusion
from minidit.diffusion.guidance import cfg_combine as ref_cfg_combine
from minidit.diffusion.respace import space_timesteps as ref_space_timesteps
from minidit.diffusion.sampling import ddim_step as ref_ddim_step

pytestmark = pytest.mark.ch7


def test_ddim_step(impl):
    ddim_step = impl("ch07").ddim_step
    alpha_bar_t = torch.tensor([0.3, 0.9, 0.05], dtype=torch.float64).view(3, 1, 1, 1)
    alpha_bar_prev = torch.tensor([0.5, 1.0, 0.07], dtype=torch.float64).view(3, 1, 1, 1)
    x_t, eps, noise = (torch.randn(3, 2, 4, 4, dtype=torch.float64) for _ in range(3))
    for eta in (0.0, 0.5, 1.0):
        assert_close(ddim_step(x_t, eps, alpha_bar_t, alpha_bar_prev, eta, noise),
                     ref_ddim_step(x_t, eps, alpha_bar_t, alpha_bar_prev, eta, noise),
                     f"ddim_step(x_t, eps (3, 2, 4, 4), alpha_bar_t=[0.3, 0.9, 0.05], "
                     f"alpha_bar_prev=[0.5, 1.0, 0.07], eta={eta}, noise)", atol=1e-10, rtol=1e-9)
    # frozen: eta = 0 is deterministic and works without noise; a jump to alpha_bar_prev = 1
    # lands on the predicted x_0
    got = ddim_step(torch.tensor([1.4], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64),
                    torch.tensor([0.36], dtype=torch.float64), torch.tensor([1.0], dtype=torch.float64), 0.0, None)
    assert_close(got, torch.tensor([1.0]), "ddim_step(x_t=1.4, eps=1, alpha_bar_t=0.36, alpha_bar_prev=1, eta=0, noise=None)")


def test_cfg_combine(impl):
    cfg_combine = impl("ch07").cfg_combine
    cond, uncond = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    for s in (0.0, 1.0, 1.5, 4.0):
        assert_close(cfg_combine(cond, uncond, s), ref_cfg_combine(cond, uncond, s),
                     f"cfg_combine(eps_cond, eps_uncond of shape (2, 4, 8, 8), scale={s})")
    # frozen: extrapolate from the unconditional towards (and past) the conditional prediction
    assert_close(cfg_combine(torch.tensor([1.0]), torch.tensor([0.0]), 1.5), torch.tensor([1.5]),
                 "cfg_combine(eps_cond=1, eps_uncond=0, scale=1.5)")


def test_space_timesteps(impl):
    space_timesteps = impl("ch07").space_timesteps
    for spec in ["250", "ddim50", "ddim7", "10,20,30", 25, [3, 2], "1", "21"]:
        got = space_timesteps(1000, spec)
        expected = ref_space_timesteps(1000, spec)
        assert list(got) == expected, (
            f"space_timesteps(1000, {spec!r}): expected the sorted list {expected[:8]}... "
            f"({len(expected)} steps), got {sorted(got)[:8]}... ({len(got)} steps)")
    # frozen conventions
    assert list(space_timesteps(1000, "250"))[:6] == [0, 4, 8, 12, 16, 20], "'250' starts 0, 4, 8, 12, 16, 20"
    assert list(space_timesteps(1000, "ddim50"))[-1] == 980, "'ddim50' has stride 20: last step 980"
    assert list(space_timesteps(1000, "21"))[10] == 499, (
        "'21': step 10 must be 499 -- add the stride 49.95 ten times (as the official code does); "
        "the float sum is just below 499.5")
    for bad in ("fast", "ddim999", "2000"):
        with pytest.raises(ValueError):
            space_timesteps(1000, bad)


class ToyEps:
    """A fixed, smooth stand-in for a trained model (eps and variance values); records its timesteps."""

    def __init__(self):
        self.timesteps = []

    def __call__(self, x, t, y=None):
        self.timesteps.append(int(t[0]))
        # (N, C, H, W) -> (N, 2C, H, W): eps = 0.5 x + t-dependent shift, v in [-1, 1]
        eps = 0.5 * x + (t.float() / 1000)[:, None, None, None]
        v = torch.tanh(x) * 0.5
        return torch.cat([eps, v], dim=1)


def test_p_sample(impl):
    p_sample = impl("ch07").SamplingMethods.p_sample   # called with minidit's diffusion as self
    diffusion = create_diffusion("10")
    x = torch.randn(4, 1, 8, 8)
    what = "p_sample(model, x (4, 1, 8, 8), t)"
    # convention first: the last step (t == 0) adds no noise -- it returns the mean itself
    t0 = torch.zeros(4, dtype=torch.long)
    mean = diffusion.p_mean_variance(ToyEps(), x, t0)["mean"]
    got = p_sample(diffusion, ToyEps(), x, t0)
    if not isinstance(got, dict) or "sample" not in got or "pred_xstart" not in got:
        pytest.fail(f"{what}: return a dict with 'sample' (x_(t-1)) and 'pred_xstart' (the x_0 estimate)")
    assert_close(got["sample"], mean, f"{what} at t = 0: the last step adds no noise, x_(t-1) is the mean")
    # a batch mixing the last step and others, against minidit with the same random numbers
    t = torch.tensor([0, 3, 9, 0])
    torch.manual_seed(7)
    got = p_sample(diffusion, ToyEps(), x, t)
    torch.manual_seed(7)
    want = diffusion.p_sample(ToyEps(), x, t)
    out = diffusion.p_mean_variance(ToyEps(), x, t)
    torch.manual_seed(7)
    z = torch.randn_like(x)
    if close(got["sample"], out["mean"] + torch.exp(out["log_variance"]) * z * (t != 0)[:, None, None, None]):
        pytest.fail(f"{what}: the noise is scaled by the variance; scale it by the standard deviation "
                    f"sigma_t = exp(0.5 * log_variance)")
    if close(got["sample"][1:3], want["sample"][1:3]) and not close(got["sample"][[0, 3]], want["sample"][[0, 3]]):
        pytest.fail(f"{what} with t = [0, 3, 9, 0]: samples at t = 0 must get no noise, the others must "
                    f"(decide per sample, from t)")
    assert_close(got["sample"], want["sample"], f"{what} with t = [0, 3, 9, 0] (draw z with torch.randn_like(x) "
                 f"after p_mean_variance, as minidit)")
    assert_close(got["pred_xstart"], want["pred_xstart"], f"{what}: 'pred_xstart'")
    # classifier guidance: the mean is shifted by condition_mean
    def cond_fn(x, t, **kwargs):
        return torch.ones_like(x) * 0.3
    torch.manual_seed(8)
    got = p_sample(diffusion, ToyEps(), x, t, cond_fn=cond_fn)
    torch.manual_seed(8)
    assert_close(got["sample"], diffusion.p_sample(ToyEps(), x, t, cond_fn=cond_fn)["sample"],
                 f"{what} with a cond_fn: out['mean'] = self.condition_mean(cond_fn, out, x, t, model_kwargs=...)")


def test_p_sample_loop(impl):
    p_sample_loop = impl("ch07").SamplingMethods.p_sample_loop
    diffusion = create_diffusion("10")
    noise = torch.randn(3, 1, 8, 8)
    model = ToyEps()
    torch.manual_seed(3)
    got = p_sample_loop(diffusion, model, noise.shape, noise=noise)
    what = "p_sample_loop(model, (3, 1, 8, 8), noise=noise) on create_diffusion('10')"
    if not torch.is_tensor(got):
        pytest.fail(f"{what}: return the final sample (a tensor), not {type(got).__name__}")
    # the model must see every step once, from the noisiest to the cleanest (original timesteps)
    want_steps = list(reversed(diffusion.timestep_map))
    if model.timesteps != want_steps:
        pytest.fail(f"{what}: the model saw the timesteps {model.timesteps}; expected one call per step, "
                    f"from t = T-1 down to 0: {want_steps}")
    torch.manual_seed(3)
    want = diffusion.p_sample_loop(ToyEps(), noise.shape, noise=noise)
    assert_close(got, want, f"{what}: the final sample (each step's 'sample' is the next step's x)")
    # no noise given: start from torch.randn(*shape) (the same random numbers as minidit)
    torch.manual_seed(4)
    got = p_sample_loop(diffusion, ToyEps(), (2, 1, 8, 8))
    torch.manual_seed(4)
    assert_close(got, diffusion.p_sample_loop(ToyEps(), (2, 1, 8, 8)),
                 "p_sample_loop(model, (2, 1, 8, 8)) without noise: start from x_(T-1) ~ N(0, I) of that shape")
    # sampling records no gradients (a trained model's parameters require them)
    layer = torch.nn.Conv2d(1, 2, 1)
    with torch.enable_grad():
        out = p_sample_loop(diffusion, lambda x, t: layer(x), (2, 1, 8, 8))
    if out.requires_grad:
        pytest.fail("p_sample_loop: the result carries gradients; run the steps under torch.no_grad()")
