"""Noise schedules: how much noise the forward process adds at each of the T steps.

A schedule is the list of variances ``betas[t]`` (t = 0 .. T-1) of the small Gaussian steps
``q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)``. Everything else the diffusion needs
is derived from it, above all the running product

    alpha_bar_t = prod_{s <= t} (1 - beta_s),

the fraction of the clean signal's *variance* that survives after t + 1 steps. All schedule
arrays are float64 numpy arrays, as in the official DiT code: ``1 - alpha_bar_t`` near t = 0 is
about 1e-4, and float32 would keep only three or four of its digits.

Timesteps are 0-based, as in the official code: step ``t = 0`` is the first noising step, so
``alpha_bar[0] = 1 - betas[0]`` (the papers' ``t = 1``).
"""
from __future__ import annotations

import math

import numpy as np
import torch


def linear_beta_schedule(num_timesteps: int) -> np.ndarray:
    """The DDPM/DiT linear schedule: ``num_timesteps`` betas evenly spaced, float64.

    For T = 1000 steps the betas go linearly from 1e-4 to 0.02 (Ho et al. 2020, the DiT paper
    §3.1). For another T both ends are multiplied by ``scale = 1000 / T``, so that a shorter chain
    still destroys the signal about as much (as the official code does).

    Returns a float64 numpy array of shape (num_timesteps,).
    """
    # BEGIN SOLUTION ch01 difficulty=1 minutes=10
    # scale = 1000 / T keeps the total amount of noise roughly independent of T (official code)
    scale = 1000 / num_timesteps
    # betas = linspace(scale * 1e-4, scale * 0.02, T), endpoints included, in float64
    return np.linspace(scale * 1e-4, scale * 0.02, num_timesteps, dtype=np.float64)
    # END SOLUTION


def cosine_beta_schedule(num_timesteps: int, max_beta: float = 0.999) -> np.ndarray:
    """The cosine schedule of Nichol & Dhariwal (2021, "Improved DDPM"), float64.

    It is defined through ``alpha_bar`` as a function of continuous time u in [0, 1]::

        f(u) = cos(((u + s) / (1 + s)) * pi / 2) ** 2,   s = 0.008

    and step i (i = 0 .. T-1) gets the beta that takes f from u = i/T to u = (i+1)/T::

        beta_i = min(1 - f((i + 1) / T) / f(i / T), max_beta)

    The clip at ``max_beta`` (0.999) avoids beta = 1 at the very end, where f reaches 0.
    So, wherever no clipping happened, ``alpha_bar_t = f((t + 1) / T) / f(0)``.

    Returns a float64 numpy array of shape (num_timesteps,).
    """
    # BEGIN SOLUTION ch01 difficulty=2 minutes=20
    s = 0.008

    def f(u: float) -> float:
        # f(u) = cos(((u + s) / (1 + s)) * pi / 2)^2
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    betas = []
    for i in range(num_timesteps):
        # beta_i = min(1 - f((i + 1) / T) / f(i / T), max_beta)
        betas.append(min(1 - f((i + 1) / num_timesteps) / f(i / num_timesteps), max_beta))
    return np.array(betas, dtype=np.float64)
    # END SOLUTION


def get_named_beta_schedule(name: str, num_timesteps: int) -> np.ndarray:
    """``"linear"`` or ``"cosine"`` -> float64 betas (the official code's names)."""
    if not isinstance(num_timesteps, int) or num_timesteps < 1:
        raise ValueError(f"diffusion_steps must be a positive integer, got {num_timesteps!r}")
    if name == "linear":
        return linear_beta_schedule(num_timesteps)
    if name == "cosine":
        return cosine_beta_schedule(num_timesteps)
    raise ValueError(f"unknown noise_schedule {name!r}: use 'linear' (the DiT paper's) or 'cosine'")


def snr(alpha_bar: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio of ``x_t``: ``SNR_t = alpha_bar_t / (1 - alpha_bar_t)``.

    ``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps`` has signal variance
    ``alpha_bar_t`` and noise variance ``1 - alpha_bar_t`` (for unit-variance data), so the SNR
    falls monotonically from large (t = 0) to about 0 (t = T - 1). Works elementwise on a tensor
    of any shape.
    """
    # BEGIN SOLUTION ch01 difficulty=1 minutes=5
    # SNR_t = alpha_bar_t / (1 - alpha_bar_t)
    return alpha_bar / (1 - alpha_bar)
    # END SOLUTION
