"""Chapter 7 (sampling): the DDIM step, classifier-free guidance, timestep respacing."""
import pytest
import torch
from grading import assert_close

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
