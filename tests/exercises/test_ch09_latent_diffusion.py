"""Chapter 9 (latent diffusion): the posterior sample, its KL, and the latent scale factor."""
import math

import pytest
import torch
from grading import assert_close

from minidit.autoencoder import estimate_scale_factor as reference_scale_factor
from minidit.autoencoder import kl_to_standard_normal as reference_kl
from minidit.autoencoder import reparameterize as reference_reparameterize

pytestmark = pytest.mark.ch9


def test_reparameterize(impl):
    reparameterize = impl("ch09").reparameterize
    mean, logvar, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    assert_close(reparameterize(mean, logvar, noise), reference_reparameterize(mean, logvar, noise),
                 "reparameterize(mean, logvar, noise) on seeded (2, 4, 8, 8) tensors")


def test_reparameterize_uses_log_variance(impl):
    # logvar is log(sigma^2): logvar = log 4 means sigma = 2, so z = 1 + 2 * 1 = 3
    reparameterize = impl("ch09").reparameterize
    got = reparameterize(torch.tensor([1.0]), torch.tensor([math.log(4.0)]), torch.tensor([1.0]))
    assert_close(got, torch.tensor([3.0]), "reparameterize(mean=1, logvar=log 4, noise=1) "
                 "(std is exp(0.5 * logvar), not exp(logvar))")


def test_kl_to_standard_normal(impl):
    kl = impl("ch09").kl_to_standard_normal
    mean, logvar = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8)
    assert_close(kl(mean, logvar), reference_kl(mean, logvar),
                 "kl_to_standard_normal(mean, logvar) on seeded (3, 4, 8, 8) tensors: one value per example")


def test_kl_frozen_values(impl):
    kl = impl("ch09").kl_to_standard_normal
    zeros = torch.zeros(2, 3)
    assert_close(kl(zeros, zeros), torch.zeros(2), "KL(N(0, 1) || N(0, 1)) must be 0")
    # mean 2, variance 1 in each of 3 dims: 0.5 * 2^2 = 2 per dim, summed -> 6 per example
    assert_close(kl(torch.full((2, 3), 2.0), zeros), torch.full((2,), 6.0),
                 "KL of N(2, 1) in 3 dimensions, summed over dims (expected 6 per example)")


def test_estimate_scale_factor(impl):
    est = impl("ch09").estimate_scale_factor
    z = 5.5 * torch.randn(16, 4, 8, 8) + 0.3
    assert_close(est(z), reference_scale_factor(z), "estimate_scale_factor(5.5 * randn(16, 4, 8, 8) + 0.3)",
                 atol=1e-4, rtol=1e-3)
    assert_close(est(z) * z.std(), torch.tensor(1.0), "scaled latents must have unit std", atol=1e-3, rtol=1e-3)
