"""The whole variational bound: a diffusion model's negative log-likelihood in bits per dimension.

Training samples ONE term of the bound per example (``training_losses``' ``vb``). Evaluating a
model's likelihood needs all of them (DDPM eq. 5, Improved DDPM §2)::

    -log p(x_0) <= L_prior + sum_{t=1}^{T-1} L_t + L_0

    L_prior = KL(q(x_T | x_0) || N(0, I))                    (the model cannot change it)
    L_t     = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))  (one per step, x_t ~ q(x_t | x_0))
    L_0     = -log p(x_0 | x_1)                              (the discretized Gaussian decoder)

each averaged over the dimensions and divided by log 2: bits per dimension, the unit of the
likelihood tables of DDPM and Improved DDPM (lower is better; 8 bits/dim is a uniform
distribution over 8-bit pixel values). ``calc_bpd_loop`` walks every step once, with fresh noise
per step -- one Monte Carlo sample of the bound, so it costs ``num_timesteps`` model calls.

The decoder term assumes 8-bit data scaled to [-1, 1] (``discretized_gaussian_log_likelihood``):
the bound is an NLL of pixels, not of VAE latents.
"""
from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from .gaussian import predict_eps_from_x0
from .losses import mean_flat, normal_kl


class LikelihoodMethods:
    """``calc_bpd_loop`` and ``_prior_bpd`` of ``GaussianDiffusion`` (mixed in)."""

    def _prior_bpd(self, x_start: torch.Tensor) -> torch.Tensor:
        """L_prior = KL(q(x_T | x_0) || N(0, I)) in bits per dimension, shape (N,).

        It depends on the schedule only (x_T is nearly pure noise), not on the model.
        """
        t = torch.full((x_start.shape[0],), self.num_timesteps - 1, device=x_start.device, dtype=torch.long)
        mean, _, log_variance = self.q_mean_variance(x_start, t)
        # KL(N(mean, exp(log_var)) || N(0, 1)), nats -> bits
        return mean_flat(normal_kl(mean, log_variance, 0.0, 0.0)) / math.log(2.0)

    def calc_bpd_loop(self, model, x_start: torch.Tensor, clip_denoised: bool = True,
                      model_kwargs=None, *, progress: bool = False) -> dict:
        """The whole variational bound of ``x_start`` (N, C, ...) in bits per dimension.

        Returns a dict (the official keys):

        * ``total_bpd`` (N,): ``prior_bpd + vb.sum(1)``, the bound on -log2 p(x_0) per dimension;
        * ``prior_bpd`` (N,): L_prior;
        * ``vb`` (N, T): the terms L_t -- in the official order, the order they are computed,
          from the noisiest step down: ``vb[:, k]`` is the term of t = T-1-k, so ``vb[:, -1]`` is
          the decoder L_0;
        * ``xstart_mse`` (N, T): mean squared error of the model's x_0 estimate at each step;
        * ``mse`` (N, T): mean squared error of its eps (re-derived from that x_0 estimate).

        ``clip_denoised`` defaults to True, as in the official code and unlike minidit's samplers:
        the bound is only meaningful for pixel data in [-1, 1] (see the module docstring), where
        clamping the x_0 estimate is right. Noise is drawn with ``torch.randn_like`` once per step,
        from t = T-1 down to 0, like the official loop, so a seeded run matches it.
        ``progress`` shows a tqdm bar (an addition).
        """
        x_start = x_start.detach()
        n = x_start.shape[0]
        vb, xstart_mse, mse = [], [], []
        steps = range(self.num_timesteps - 1, -1, -1)  # T-1, ..., 0
        if progress:
            steps = tqdm(steps, desc="bits/dim", total=self.num_timesteps)
        for i in steps:
            t = torch.full((n,), i, device=x_start.device, dtype=torch.long)
            noise = torch.randn_like(x_start)
            # x_t ~ q(x_t | x_0)
            x_t = self.q_sample(x_start, t, noise=noise)
            with torch.no_grad():
                out = self._vb_terms_bpd(self._run_model(model, x_t, t, model_kwargs), x_start, x_t, t,
                                         clip_denoised=clip_denoised)
            vb.append(out["output"])
            xstart_mse.append(mean_flat((out["pred_xstart"] - x_start) ** 2))
            alpha_bar_t = self._extract("alphas_cumprod", t, x_start.ndim)
            # eps = (sqrt(1 / alpha_bar_t) x_t - x_0) / sqrt(1 / alpha_bar_t - 1)
            eps = predict_eps_from_x0(x_t, alpha_bar_t, out["pred_xstart"])
            mse.append(mean_flat((eps - noise) ** 2))
        # T lists of (N,) -> (N, T), column k = step T-1-k
        vb, xstart_mse, mse = (torch.stack(a, dim=1) for a in (vb, xstart_mse, mse))
        prior_bpd = self._prior_bpd(x_start)
        # -log2 p(x_0) / dims <= L_prior + sum_t L_t  (summed in the terms' float64)
        total_bpd = vb.sum(dim=1) + prior_bpd
        out = {"total_bpd": total_bpd, "prior_bpd": prior_bpd, "vb": vb,
               "xstart_mse": xstart_mse, "mse": mse}
        return {k: v.to(x_start.dtype) for k, v in out.items()}
