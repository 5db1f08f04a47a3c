"""Chapter 2 (learning to denoise): x_0 from eps, the posterior, L_simple."""
import pytest
import torch
from grading import assert_close

from minidit.diffusion.gaussian import posterior_mean_variance as ref_posterior
from minidit.diffusion.gaussian import predict_x0_from_eps as ref_predict_x0
from minidit.diffusion.losses import mean_flat as ref_mean_flat
from minidit.diffusion.losses import simple_loss as ref_simple_loss

pytestmark = pytest.mark.ch2


def _schedule(n):
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    alpha_bar = torch.cumprod(1 - betas, 0)
    t = torch.tensor([1, 10, 500, 999])[:n]
    view = lambda a: a.view(-1, 1, 1, 1)
    return view(betas[t]), view(alpha_bar[t]), view(alpha_bar[t - 1])


def test_predict_x0_from_eps(impl):
    predict = impl("ch02").predict_x0_from_eps
    _, alpha_bar, _ = _schedule(4)
    x_t, eps = torch.randn(4, 3, 4, 4, dtype=torch.float64), torch.randn(4, 3, 4, 4, dtype=torch.float64)
    assert_close(predict(x_t, alpha_bar, eps), ref_predict_x0(x_t, alpha_bar, eps),
                 "predict_x0_from_eps(x_t (4, 3, 4, 4), alpha_bar_t at t = 1, 10, 500, 999, eps)",
                 atol=1e-9, rtol=1e-9)
    # frozen: it inverts x_t = sqrt(ab) x_0 + sqrt(1 - ab) eps
    got = predict(torch.tensor([1.4]), torch.tensor([0.36]), torch.tensor([1.0]))
    assert_close(got, torch.tensor([1.0]), "predict_x0_from_eps(x_t=1.4, alpha_bar_t=0.36, eps=1)")


def test_posterior_mean_variance(impl):
    posterior = impl("ch02").posterior_mean_variance
    beta, alpha_bar, alpha_bar_prev = _schedule(4)
    x_0, x_t = torch.randn(4, 3, 4, 4, dtype=torch.float64), torch.randn(4, 3, 4, 4, dtype=torch.float64)
    result = posterior(x_0, x_t, beta, alpha_bar, alpha_bar_prev)
    assert isinstance(result, tuple) and len(result) == 2, "return a tuple (mean, variance)"
    ref_mean, ref_var = ref_posterior(x_0, x_t, beta, alpha_bar, alpha_bar_prev)
    what = "posterior_mean_variance(x_0, x_t (4, 3, 4, 4), schedule at t = 1, 10, 500, 999)"
    assert_close(result[0], ref_mean, what + " -> mean", atol=1e-10, rtol=1e-9)
    assert_close(torch.as_tensor(result[1]).expand_as(ref_var), ref_var, what + " -> variance", atol=1e-12, rtol=1e-9)
    # frozen: first step (alpha_bar_prev = 1): the posterior is x_0 itself, variance 0
    b = torch.tensor([0.1], dtype=torch.float64)
    mean, var = posterior(torch.tensor([2.0], dtype=torch.float64), torch.tensor([5.0], dtype=torch.float64),
                          b, 1 - b, torch.tensor([1.0], dtype=torch.float64))
    assert_close(mean, torch.tensor([2.0]), "posterior mean at the first step (alpha_bar_prev = 1)")
    assert_close(var, torch.tensor([0.0]), "posterior variance at the first step (alpha_bar_prev = 1)")


def test_mean_flat(impl):
    mean_flat = impl("ch02").mean_flat
    for shape in [(3, 4), (2, 3, 4, 5), (5, 1, 2, 2, 2)]:
        x = torch.randn(shape)
        assert_close(mean_flat(x), ref_mean_flat(x), f"mean_flat(x of shape {shape})")


def test_simple_loss(impl):
    simple_loss = impl("ch02").simple_loss
    eps_pred, eps = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    assert_close(simple_loss(eps_pred, eps), ref_simple_loss(eps_pred, eps),
                 "simple_loss(eps_pred, eps of shape (4, 3, 8, 8)) (one value per example)")
    assert_close(simple_loss(torch.zeros(2, 1, 2, 2), torch.full((2, 1, 2, 2), 3.0)),
                 torch.tensor([9.0, 9.0]), "simple_loss(zeros, threes) of shape (2, 1, 2, 2)")
