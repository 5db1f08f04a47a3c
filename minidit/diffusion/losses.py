"""The training objective's pieces: L_simple and the variational bound terms.

DiT trains with the hybrid loss of Improved DDPM: ``loss = L_simple + L_vlb``. ``L_simple`` is the
plain MSE between the true and predicted noise; ``L_vlb`` is one term of the variational lower
bound -- a KL divergence between two Gaussians (``normal_kl``), or at t = 0 the negative log
likelihood of a discretized Gaussian decoder -- measured in bits per dimension.
"""
from __future__ import annotations

import math

import torch


def mean_flat(x: torch.Tensor) -> torch.Tensor:
    """Mean over every dimension except the first (batch) one: (N, ...) -> (N,).

    Losses are reported per example so that callers can weight or inspect them per timestep.
    """
    # BEGIN SOLUTION ch02 difficulty=1 minutes=5
    # mean over dims 1 .. ndim-1: (N, C, H, W) -> (N,)
    return x.mean(dim=tuple(range(1, x.ndim)))
    # END SOLUTION


def simple_loss(eps_pred: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """``L_simple`` per example: the mean squared error between predicted and true noise.

        L_simple = mean over (C, H, W) of (eps - eps_pred)^2          -> shape (N,)

    (DDPM's simplified objective; DiT paper §3.1. With x_0-prediction the same function is used
    with ``x_0`` in place of ``eps``.)
    """
    # BEGIN SOLUTION ch02 difficulty=1 minutes=5
    # L_simple = mean_flat((eps - eps_pred)^2)
    return mean_flat((eps - eps_pred) ** 2)
    # END SOLUTION


def normal_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor,
              logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))), elementwise, in nats.

    For one-dimensional Gaussians::

        KL = 0.5 * (-1 + logvar2 - logvar1 + exp(logvar1 - logvar2)
                    + (mean1 - mean2)^2 * exp(-logvar2))

    Arguments are tensors (or floats, as long as one of them is a tensor) that broadcast.
    """
    # BEGIN SOLUTION ch08 difficulty=2 minutes=15
    ref = next(a for a in (mean1, logvar1, mean2, logvar2) if torch.is_tensor(a))
    # floats -> tensors, so torch.exp works on them
    logvar1, logvar2 = (a if torch.is_tensor(a) else torch.tensor(a).to(ref) for a in (logvar1, logvar2))
    # KL = 0.5 (-1 + logvar2 - logvar1 + exp(logvar1 - logvar2) + (mean1 - mean2)^2 exp(-logvar2))
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2)
                  + (mean1 - mean2) ** 2 * torch.exp(-logvar2))
    # END SOLUTION


def approx_standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    """A fast approximation of the standard normal CDF, the one the official code uses.

        Phi(x) ~= 0.5 * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3)))

    (the same tanh approximation as in the GELU activation; max error about 2e-4, which is part of
    the official loss, so minidit keeps it rather than using the exact ``erf``.)
    """
    # Phi(x) ~= 0.5 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def discretized_gaussian_log_likelihood(x: torch.Tensor, means: torch.Tensor,
                                        log_scales: torch.Tensor) -> torch.Tensor:
    """Log-probability (nats) of 8-bit data under a Gaussian discretized to its 256 bins.

    The data are uint8 values rescaled to [-1, 1], so neighbouring values are 2/255 apart and
    each value ``x`` owns the bin ``[x - 1/255, x + 1/255]``. Its probability is the Gaussian
    mass of that bin (the DDPM decoder ``p(x_0 | x_1)``, DDPM §3.3)::

        P(x) = Phi((x - mean + 1/255) / sigma) - Phi((x - mean - 1/255) / sigma)

    where ``sigma = exp(log_scales)`` and Phi is ``approx_standard_normal_cdf`` (the official
    code's tanh approximation). The two outermost bins extend to infinity, so the 256
    probabilities sum to 1::

        x < -0.999:  P(x) = Phi((x - mean + 1/255) / sigma)
        x >  0.999:  P(x) = 1 - Phi((x - mean - 1/255) / sigma)

    Probabilities are clamped at 1e-12 before the log (as in the official code), so the result
    is finite. ``x``, ``means`` and ``log_scales`` broadcast; the result has their broadcast shape.
    """
    # BEGIN SOLUTION ch08 difficulty=3 minutes=35
    # 1 / sigma
    inv_sigma = torch.exp(-log_scales)
    centered = x - means
    # Phi at the bin's upper and lower edges, x +- 1/255
    cdf_plus = approx_standard_normal_cdf(inv_sigma * (centered + 1.0 / 255.0))
    cdf_min = approx_standard_normal_cdf(inv_sigma * (centered - 1.0 / 255.0))
    # log P for the lowest bin (-inf, -1 + 1/255]: log Phi(upper edge)
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    # log P for the highest bin [1 - 1/255, inf): log(1 - Phi(lower edge))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    # log P for an inner bin: log(Phi(upper) - Phi(lower))
    log_cdf_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus,
                       torch.where(x > 0.999, log_one_minus_cdf_min, log_cdf_delta))
    # END SOLUTION
