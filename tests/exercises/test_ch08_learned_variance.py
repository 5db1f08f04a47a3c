"""Chapter 8 (learned variance and the hybrid loss): learned range, Gaussian KL, decoder NLL."""
import math

import pytest
import torch
from grading import assert_close

from minidit.diffusion.gaussian import learned_range_log_variance as ref_learned_range
from minidit.diffusion.losses import discretized_gaussian_log_likelihood as ref_discretized
from minidit.diffusion.losses import normal_kl as ref_normal_kl

pytestmark = pytest.mark.ch8


def test_learned_range_log_variance(impl):
    learned_range = impl("ch08").learned_range_log_variance
    v = torch.rand(4, 3, 4, 4) * 2 - 1
    min_log = torch.tensor([-9.0, -7.0, -5.0, -4.0]).view(4, 1, 1, 1)
    max_log = torch.tensor([-8.0, -6.5, -4.5, -3.9]).view(4, 1, 1, 1)
    assert_close(learned_range(v, min_log, max_log), ref_learned_range(v, min_log, max_log),
                 "learned_range_log_variance(v (4, 3, 4, 4), min_log, max_log (4, 1, 1, 1))")
    # frozen: v = -1 -> min_log (posterior variance), v = +1 -> max_log (beta_t)
    got = learned_range(torch.tensor([-1.0, 1.0, 0.0]), torch.tensor(-6.0), torch.tensor(-2.0))
    assert_close(got, torch.tensor([-6.0, -2.0, -4.0]), "learned_range_log_variance(v=[-1, 1, 0], min_log=-6, max_log=-2)")


def test_normal_kl(impl):
    normal_kl = impl("ch08").normal_kl
    args = [torch.randn(100, dtype=torch.float64) for _ in range(4)]
    assert_close(normal_kl(*args), ref_normal_kl(*args), "normal_kl(mean1, logvar1, mean2, logvar2 of shape (100,))",
                 atol=1e-12, rtol=1e-10)
    # frozen: KL(N(1, 1) || N(0, 1)) = 0.5, KL(N(0, e^2) || N(0, 1)) = 0.5 (e^2 - 1 - 2)
    got = normal_kl(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0]), torch.tensor([0.0, 0.0]), torch.tensor([0.0, 0.0]))
    assert_close(got, torch.tensor([0.5, 0.5 * (math.exp(2.0) - 3.0)]), "normal_kl(mean1=[1, 0], logvar1=[0, 2], 0, 0)")


def test_discretized_gaussian_log_likelihood(impl):
    ll = impl("ch08").discretized_gaussian_log_likelihood
    x = (torch.randint(0, 256, (2, 3, 8, 8)).double() / 127.5 - 1)   # 8-bit data, edges included
    x[0, 0, 0, :2] = torch.tensor([-1.0, 1.0], dtype=torch.float64)
    means = (x + 0.05 * torch.randn_like(x)).clamp(-1.2, 1.2)
    log_scales = torch.empty_like(x).uniform_(-5, -1)
    assert_close(ll(x, means, log_scales), ref_discretized(x, means, log_scales),
                 "discretized_gaussian_log_likelihood(x 8-bit in [-1, 1] (2, 3, 8, 8), means, log_scales)",
                 atol=1e-9, rtol=1e-7)
    # frozen: the official tanh approximation of the normal CDF, bins of width 2/255, and the
    # probabilities of all 256 values of a pixel sum to 1 (the edge bins reach +-infinity)
    values = torch.arange(256, dtype=torch.float64) / 127.5 - 1
    total = ll(values, torch.full_like(values, 0.3), torch.full_like(values, -2.0)).exp().sum()
    assert_close(total, torch.tensor(1.0, dtype=torch.float64),
                 "sum over the 256 pixel values of exp(log-likelihood) (mean 0.3, log_scale -2)", atol=1e-9)
    phi = lambda z: 0.5 * (1 + math.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z ** 3)))
    expected = math.log(phi(1 / 255 / 0.1) - phi(-1 / 255 / 0.1))
    got = ll(torch.tensor([0.0], dtype=torch.float64), torch.tensor([0.0], dtype=torch.float64),
             torch.tensor([math.log(0.1)], dtype=torch.float64))
    assert_close(got, torch.tensor([expected], dtype=torch.float64), "discretized_gaussian_log_likelihood(x=0, mean=0, sigma=0.1) "
                 "with the tanh-approximate CDF", atol=1e-12, rtol=1e-9)
