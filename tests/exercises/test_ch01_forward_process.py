"""Chapter 1 (the forward process): schedules, q(x_t | x_0) and the SNR."""
import numpy as np
import pytest
import torch
from grading import assert_close

from minidit.diffusion.gaussian import noisy_sample as ref_noisy_sample
from minidit.diffusion.schedules import cosine_beta_schedule as ref_cosine
from minidit.diffusion.schedules import linear_beta_schedule as ref_linear
from minidit.diffusion.schedules import snr as ref_snr

pytestmark = pytest.mark.ch1


def test_linear_beta_schedule(impl):
    linear = impl("ch01").linear_beta_schedule
    for T in (1000, 250, 10):
        got = linear(T)
        assert isinstance(got, np.ndarray) and got.dtype == np.float64, (
            f"linear_beta_schedule({T}) must return a float64 numpy array, got "
            f"{type(got).__name__} {getattr(got, 'dtype', '')}")
        assert_close(torch.from_numpy(got), torch.from_numpy(ref_linear(T)),
                     f"linear_beta_schedule({T})", atol=1e-15, rtol=1e-12)
    # frozen conventions: the paper's ends for T = 1000, both ends scaled by 1000 / T otherwise
    assert_close(torch.from_numpy(linear(1000)[[0, -1]]), torch.tensor([1e-4, 0.02], dtype=torch.float64),
                 "linear_beta_schedule(1000) first and last beta", atol=1e-15)
    assert_close(torch.from_numpy(linear(250)[[0, -1]]), torch.tensor([4e-4, 0.08], dtype=torch.float64),
                 "linear_beta_schedule(250) first and last beta (scale = 1000 / 250)", atol=1e-15)


def test_cosine_beta_schedule(impl):
    cosine = impl("ch01").cosine_beta_schedule
    got = cosine(1000)
    assert_close(torch.as_tensor(got), torch.from_numpy(ref_cosine(1000)), "cosine_beta_schedule(1000)",
                 atol=1e-12, rtol=1e-10)
    # frozen: s = 0.008, beta_0 = 1 - f(1/T) / f(0), the last beta clipped to max_beta
    assert_close(torch.as_tensor(got)[[0, 500, 999]],
                 torch.tensor([4.128422482196914e-05, 3.155691441585007e-03, 0.999], dtype=torch.float64),
                 "cosine_beta_schedule(1000) at steps 0, 500, 999", atol=1e-12, rtol=1e-9)
    assert_close(torch.as_tensor(cosine(100, max_beta=0.5)), torch.from_numpy(ref_cosine(100, max_beta=0.5)),
                 "cosine_beta_schedule(100, max_beta=0.5)", atol=1e-12, rtol=1e-10)


def test_noisy_sample(impl):
    noisy_sample = impl("ch01").noisy_sample
    x_0, eps = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    alpha_bar = torch.tensor([0.9999, 0.5, 0.01]).view(3, 1, 1, 1)
    assert_close(noisy_sample(x_0, alpha_bar, eps), ref_noisy_sample(x_0, alpha_bar, eps),
                 "noisy_sample(x_0 (3, 2, 4, 4), alpha_bar_t = [0.9999, 0.5, 0.01] as (3, 1, 1, 1), eps)")
    # frozen: sqrt(alpha_bar) on x_0, sqrt(1 - alpha_bar) on eps
    got = noisy_sample(torch.tensor([1.0]), torch.tensor([0.36]), torch.tensor([1.0]))
    assert_close(got, torch.tensor([0.6 + 0.8]), "noisy_sample(x_0=1, alpha_bar_t=0.36, eps=1)")


def test_snr(impl):
    snr = impl("ch01").snr
    alpha_bar = torch.rand(10, dtype=torch.float64) * 0.98 + 0.01
    assert_close(snr(alpha_bar), ref_snr(alpha_bar), "snr(alpha_bar of shape (10,))", atol=1e-12, rtol=1e-10)
    assert_close(snr(torch.tensor([0.5, 0.8])), torch.tensor([1.0, 4.0]), "snr([0.5, 0.8])")
