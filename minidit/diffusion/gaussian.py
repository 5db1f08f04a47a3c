"""Closed forms of the Gaussian diffusion chain, as plain tensor functions (used by gaussian_diffusion.py).

These are the equations of DDPM (Ho et al. 2020) and Improved DDPM (Nichol & Dhariwal 2021) that
DiT trains and samples with. ``GaussianDiffusion`` gathers the schedule values for a batch of
timesteps and calls these functions; they know nothing about timesteps themselves.

Every ``alpha_bar_t``-like argument is a tensor that broadcasts against ``x`` -- typically of
shape (N, 1, 1, 1), one value per example. The functions compute in the promoted dtype of their
inputs: ``GaussianDiffusion`` passes float64 schedule values so that ``1 - alpha_bar_t`` keeps its
digits, and casts the result back to the data's dtype.
"""
from __future__ import annotations

import torch


def noisy_sample(x_0: torch.Tensor, alpha_bar_t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Sample ``x_t ~ q(x_t | x_0)`` in one shot (the forward process, DiT paper §3.1).

    ``q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)``, so with standard normal
    noise ``eps`` (same shape as ``x_0``)::

        x_t = sqrt(alpha_bar_t) * x_0 + sqrt(1 - alpha_bar_t) * eps

    ``alpha_bar_t`` broadcasts against ``x_0`` (e.g. shape (N, 1, 1, 1)). Returns x_t with the
    broadcast shape of the inputs.
    """
    # BEGIN SOLUTION ch01 difficulty=1 minutes=10
    # x_t = sqrt(alpha_bar_t) * x_0 + sqrt(1 - alpha_bar_t) * eps
    return torch.sqrt(alpha_bar_t) * x_0 + torch.sqrt(1 - alpha_bar_t) * eps
    # END SOLUTION


def predict_x0_from_eps(x_t: torch.Tensor, alpha_bar_t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Invert the forward process: the clean ``x_0`` implied by a noise prediction ``eps``.

    Solving ``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps`` for x_0, written as the
    official code writes it::

        x_0 = sqrt(1 / alpha_bar_t) * x_t - sqrt(1 / alpha_bar_t - 1) * eps

    ``alpha_bar_t`` broadcasts against ``x_t`` and ``eps``.
    """
    # BEGIN SOLUTION ch02 difficulty=1 minutes=10
    # x_0 = sqrt(1 / alpha_bar_t) * x_t - sqrt(1 / alpha_bar_t - 1) * eps
    return torch.sqrt(1 / alpha_bar_t) * x_t - torch.sqrt(1 / alpha_bar_t - 1) * eps
    # END SOLUTION


def predict_eps_from_x0(x_t: torch.Tensor, alpha_bar_t: torch.Tensor, x_0: torch.Tensor) -> torch.Tensor:
    """The other way round: the noise that takes ``x_0`` to ``x_t`` (used by DDIM).

    eps = (sqrt(1 / alpha_bar_t) * x_t - x_0) / sqrt(1 / alpha_bar_t - 1)
    """
    # eps = (sqrt(1 / alpha_bar_t) * x_t - x_0) / sqrt(1 / alpha_bar_t - 1)
    return (torch.sqrt(1 / alpha_bar_t) * x_t - x_0) / torch.sqrt(1 / alpha_bar_t - 1)


def posterior_mean_variance(x_0: torch.Tensor, x_t: torch.Tensor, beta_t: torch.Tensor,
                            alpha_bar_t: torch.Tensor, alpha_bar_prev: torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of the forward-process posterior ``q(x_{t-1} | x_t, x_0)``.

    Given both ends, the step back is Gaussian (DDPM eq. 6-7), with ``alpha_t = 1 - beta_t``::

        mean     = beta_t sqrt(alpha_bar_prev) / (1 - alpha_bar_t) * x_0
                 + (1 - alpha_bar_prev) sqrt(alpha_t) / (1 - alpha_bar_t) * x_t
        variance = beta_t (1 - alpha_bar_prev) / (1 - alpha_bar_t)          ("beta tilde")

    ``alpha_bar_prev`` is ``alpha_bar_{t-1}`` (1.0 at the first step, where the variance is 0).
    The schedule arguments broadcast against ``x_0``/``x_t`` (e.g. shape (N, 1, 1, 1)).
    Returns ``(mean, variance)``: mean shaped like x_t, variance shaped like the schedule args.
    """
    # BEGIN SOLUTION ch02 difficulty=2 minutes=20
    # alpha_t = 1 - beta_t
    alpha_t = 1 - beta_t
    # coef_x0 = beta_t sqrt(alpha_bar_prev) / (1 - alpha_bar_t)
    coef_x0 = beta_t * torch.sqrt(alpha_bar_prev) / (1 - alpha_bar_t)
    # coef_xt = (1 - alpha_bar_prev) sqrt(alpha_t) / (1 - alpha_bar_t)
    coef_xt = (1 - alpha_bar_prev) * torch.sqrt(alpha_t) / (1 - alpha_bar_t)
    # mean = coef_x0 * x_0 + coef_xt * x_t
    mean = coef_x0 * x_0 + coef_xt * x_t
    # variance = beta_t (1 - alpha_bar_prev) / (1 - alpha_bar_t)
    variance = beta_t * (1 - alpha_bar_prev) / (1 - alpha_bar_t)
    return mean, variance
    # END SOLUTION


def learned_range_log_variance(v: torch.Tensor, min_log: torch.Tensor, max_log: torch.Tensor) -> torch.Tensor:
    """The learned variance of Improved DDPM ("learned range"), as DiT uses it.

    The model's extra output channels ``v`` (nominally in [-1, 1]) choose a point between the two
    natural variances of a reverse step, interpolating in *log* space::

        frac    = (v + 1) / 2
        log_var = frac * max_log + (1 - frac) * min_log

    where ``max_log = log(beta_t)`` (the upper bound) and ``min_log`` is the clipped log of the
    posterior variance ``beta tilde_t`` (the lower bound). v = 1 gives beta_t, v = -1 gives beta
    tilde_t. ``v`` is not clamped, exactly as in the official code. Shapes broadcast.
    """
    # BEGIN SOLUTION ch08 difficulty=1 minutes=10
    # frac = (v + 1) / 2   maps v in [-1, 1] to [0, 1]
    frac = (v + 1) / 2
    # log_var = frac * max_log + (1 - frac) * min_log
    return frac * max_log + (1 - frac) * min_log
    # END SOLUTION
