"""Sampling: ancestral DDPM steps and deterministic (or partly stochastic) DDIM steps.

Both samplers start from pure noise ``x_{T-1} ~ N(0, I)`` and walk the chain backwards,
t = T-1, ..., 0, asking the model at each step for its estimate of x_0:

* DDPM (Ho et al. 2020, with Improved DDPM's learned variance): sample
  ``x_{t-1} ~ N(mean_theta(x_t), sigma_t^2 I)``; the last step adds no noise.
* DDIM (Song et al. 2021): jump along the "implied" trajectory; ``eta = 0`` is deterministic,
  ``eta = 1`` has DDPM's posterior variance.
* DDIM inversion: the deterministic DDIM step run the other way, ``x_t -> x_{t+1}``, which maps
  data to the noise that DDIM would turn back into it (``ddim_reverse_sample``).

Arguments come in the official order (``model, shape, noise, clip_denoised, denoised_fn,
cond_fn, model_kwargs, device, progress[, eta]``), so positional calls mean the same in both.
``cond_fn`` adds classifier guidance (``classifier_guidance.py``).

``clip_denoised`` DEFAULTS TO False HERE AND TO True IN THE OFFICIAL CODE. DiT samples VAE
latents, which are not confined to [-1, 1]: clamping a latent's x_0 estimate silently damages the
samples, which is why the official sampling scripts pass ``clip_denoised=False`` every time, and
minidit makes the safe value the default. For pixel-space models (data in [-1, 1], like the
digits preset) ``clip_denoised=True`` is legitimate: pass it explicitly.

``SamplingMethods`` holds the loops; ``GaussianDiffusion`` inherits them (they only need its
``p_mean_variance`` and schedule), so ``diffusion.p_sample_loop(...)`` works as in the official code.
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from .gaussian import predict_eps_from_x0, predict_x0_from_eps


def ddim_step(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar_t: torch.Tensor,
              alpha_bar_prev: torch.Tensor, eta: float, noise: torch.Tensor | None) -> torch.Tensor:
    """One DDIM update ``x_t -> x_{t-1}`` (Song et al. 2021, eq. 12) from a noise prediction.

    ``alpha_bar_prev`` is alpha_bar of the step we jump to (1.0 after the last step). First
    recover the predicted clean sample, then re-noise it to the previous noise level::

        x_0   = sqrt(1 / alpha_bar_t) x_t - sqrt(1 / alpha_bar_t - 1) eps
        sigma = eta * sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t))
                    * sqrt(1 - alpha_bar_t / alpha_bar_prev)
        x_prev = sqrt(alpha_bar_prev) x_0 + sqrt(1 - alpha_bar_prev - sigma^2) eps + sigma noise

    ``eta = 0`` makes the step deterministic (then ``noise`` may be None). Schedule values
    broadcast against ``x_t`` (e.g. shape (N, 1, 1, 1)).
    """
    # BEGIN SOLUTION ch07 difficulty=2 minutes=20
    # x_0 = sqrt(1 / alpha_bar_t) x_t - sqrt(1 / alpha_bar_t - 1) eps
    x_0 = predict_x0_from_eps(x_t, alpha_bar_t, eps)
    # sigma = eta sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_prev)
    sigma = (eta * torch.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t))
             * torch.sqrt(1 - alpha_bar_t / alpha_bar_prev))
    # x_prev = sqrt(alpha_bar_prev) x_0 + sqrt(1 - alpha_bar_prev - sigma^2) eps
    x_prev = torch.sqrt(alpha_bar_prev) * x_0 + torch.sqrt(1 - alpha_bar_prev - sigma ** 2) * eps
    if noise is not None:
        # ... + sigma * noise
        x_prev = x_prev + sigma * noise
    return x_prev
    # END SOLUTION


def _model_device(model) -> torch.device:
    """Where the model lives (a module, or a bound method like ``model.forward_with_cfg``)."""
    owner = getattr(model, "__self__", model)
    params = getattr(owner, "parameters", None)
    if callable(params):
        for p in params():
            return p.device
    return torch.device("cpu")


class SamplingMethods:
    """The samplers of ``GaussianDiffusion`` (mixed in; see the module docstring)."""

    # ------------------------------------------------------------------ DDPM
    def p_sample(self, model, x: torch.Tensor, t: torch.Tensor, clip_denoised: bool = False,
                 denoised_fn=None, cond_fn=None, model_kwargs=None) -> dict:
        """One ancestral step: ``{"sample": x_{t-1}, "pred_xstart": x_0 estimate}``.

            x_{t-1} = mean_theta(x_t, t) + sigma_t * z,  z ~ N(0, I), and no noise where t == 0

        ``self.p_mean_variance(model, x, t, clip_denoised=..., denoised_fn=..., model_kwargs=...)``
        gives the model's Gaussian for the step: a dict with ``"mean"``, ``"log_variance"`` (log
        sigma_t^2, per element) and ``"pred_xstart"``, each shaped like ``x`` ``(N, C, ...)``.
        ``t`` ``(N,)`` holds one step per sample: a sample at ``t == 0`` gets its mean, no noise.
        Draw ``z`` with ``torch.randn_like(x)`` right after ``p_mean_variance`` (the official order,
        so samples match for a seed); with a ``cond_fn`` (classifier guidance) the mean is then
        replaced by ``self.condition_mean(cond_fn, out, x, t, model_kwargs=model_kwargs)``.

        ``clip_denoised=False`` by default, NOT the official True (see the module docstring).
        """
        # BEGIN SOLUTION ch07 difficulty=2 minutes=25
        out = self.p_mean_variance(model, x, t, clip_denoised=clip_denoised,
                                   denoised_fn=denoised_fn, model_kwargs=model_kwargs)
        noise = torch.randn_like(x)
        # 1 where t > 0, 0 at the last step (t == 0): the final sample is the mean itself
        nonzero = (t != 0).to(x.dtype).reshape(-1, *([1] * (x.ndim - 1)))  # (N,) -> (N, 1, ..., 1)
        if cond_fn is not None:
            # mu' = mu + sigma_t^2 grad_x log p(y | x_t)   (after drawing z, as the official code)
            out["mean"] = self.condition_mean(cond_fn, out, x, t, model_kwargs=model_kwargs)
        # x_{t-1} = mean + sigma_t z,  sigma_t = exp(log sigma_t^2 / 2)
        sample = out["mean"] + nonzero * torch.exp(0.5 * out["log_variance"]) * noise
        return {"sample": sample, "pred_xstart": out["pred_xstart"]}
        # END SOLUTION

    def p_sample_loop(self, model, shape, noise=None, clip_denoised: bool = False, denoised_fn=None,
                      cond_fn=None, model_kwargs=None, device=None, progress: bool = False):
        """Run the whole DDPM chain from noise; returns the final sample ``x_0`` of ``shape``.

        Start from ``x_{T-1}``: ``self._initial_x(shape, noise, device, model)`` returns the given
        ``noise``, or a fresh draw from N(0, I) on ``device`` (None: the model's device). Then one
        ``self.p_sample`` per step, for t = T-1, T-2, ..., 0 (``T = self.num_timesteps``; the
        steps, with a progress bar when ``progress``, come from ``self._timesteps_down(progress)``),
        each with a batch of timesteps ``(N,)`` (int64, on x's device), the other arguments passed
        on, and no gradients recorded. Each step's ``"sample"`` is the next step's ``x``.

        ``clip_denoised=False`` by default, NOT the official True (see the module docstring).
        """
        # BEGIN SOLUTION ch07 difficulty=2 minutes=15
        x = self._initial_x(shape, noise, device, model)  # x_{T-1} ~ N(0, I)
        for i in self._timesteps_down(progress):  # T-1, ..., 0
            t = torch.full((x.shape[0],), i, device=x.device, dtype=torch.long)  # (N,)
            with torch.no_grad():
                out = self.p_sample(model, x, t, clip_denoised=clip_denoised, denoised_fn=denoised_fn,
                                    cond_fn=cond_fn, model_kwargs=model_kwargs)
            x = out["sample"]
        return x
        # END SOLUTION

    def p_sample_loop_progressive(self, model, shape, noise=None, clip_denoised: bool = False,
                                  denoised_fn=None, cond_fn=None, model_kwargs=None, device=None,
                                  progress: bool = False):
        """Like ``p_sample_loop``, but yield ``p_sample``'s dict after every one of the
        ``num_timesteps`` steps (for animations of the denoising)."""
        yield from self._loop(self.p_sample, model, shape, noise, progress, device,
                              clip_denoised=clip_denoised, denoised_fn=denoised_fn,
                              cond_fn=cond_fn, model_kwargs=model_kwargs)

    # ------------------------------------------------------------------ DDIM
    def ddim_sample(self, model, x: torch.Tensor, t: torch.Tensor, clip_denoised: bool = False,
                    denoised_fn=None, cond_fn=None, model_kwargs=None, eta: float = 0.0) -> dict:
        """One DDIM step (see ``ddim_step``): ``{"sample": x_{t-1}, "pred_xstart": x_0}``.

        As in the official code, eps is re-derived from the (possibly clipped) x_0 estimate, so
        ``clip_denoised`` affects both terms of the update. With ``cond_fn`` the x_0 estimate
        comes from the conditioned score (``condition_score``).
        """
        out = self.p_mean_variance(model, x, t, clip_denoised=clip_denoised,
                                   denoised_fn=denoised_fn, model_kwargs=model_kwargs)
        if cond_fn is not None:
            # eps' = eps - sqrt(1 - alpha_bar_t) grad_x log p(y | x_t), x_0 re-derived from it
            out = self.condition_score(cond_fn, out, x, t, model_kwargs=model_kwargs)
        alpha_bar_t = self._extract("alphas_cumprod", t, x.ndim)
        alpha_bar_prev = self._extract("alphas_cumprod_prev", t, x.ndim)
        # eps = (sqrt(1 / alpha_bar_t) x_t - x_0) / sqrt(1 / alpha_bar_t - 1)
        eps = predict_eps_from_x0(x, alpha_bar_t, out["pred_xstart"])
        noise = torch.randn_like(x) if eta > 0 else None
        sample = ddim_step(x, eps, alpha_bar_t, alpha_bar_prev, eta, noise).to(x.dtype)
        return {"sample": sample, "pred_xstart": out["pred_xstart"]}

    def ddim_sample_loop(self, model, shape, noise=None, clip_denoised: bool = False, denoised_fn=None,
                         cond_fn=None, model_kwargs=None, device=None, progress: bool = False,
                         eta: float = 0.0):
        """Run the DDIM chain from noise; returns the final sample. ``eta = 0``: deterministic.

        Use a respaced diffusion (``create_diffusion("ddim50")`` or ``"50"``) for few steps.
        ``clip_denoised=False`` by default, NOT the official True (see the module docstring).
        """
        final = None
        for final in self.ddim_sample_loop_progressive(model, shape, noise, clip_denoised, denoised_fn,
                                                       cond_fn, model_kwargs, device, progress, eta):
            pass
        return final["sample"]

    def ddim_sample_loop_progressive(self, model, shape, noise=None, clip_denoised: bool = False,
                                     denoised_fn=None, cond_fn=None, model_kwargs=None, device=None,
                                     progress: bool = False, eta: float = 0.0):
        """Like ``ddim_sample_loop``, yielding ``ddim_sample``'s dict after every step."""
        yield from self._loop(self.ddim_sample, model, shape, noise, progress, device,
                              clip_denoised=clip_denoised, denoised_fn=denoised_fn,
                              cond_fn=cond_fn, model_kwargs=model_kwargs, eta=eta)

    # ------------------------------------------------------------------ DDIM inversion
    def ddim_reverse_sample(self, model, x: torch.Tensor, t: torch.Tensor, clip_denoised: bool = False,
                            denoised_fn=None, cond_fn=None, model_kwargs=None, eta: float = 0.0) -> dict:
        """One step of DDIM run backwards, ``x_t -> x_{t+1}``: ``{"sample", "pred_xstart"}``.

        The deterministic DDIM update (eq. 12 with eta = 0) solved for the next, noisier state,
        with the model evaluated at the CURRENT state -- so it undoes ``ddim_sample`` at step
        t + 1 up to the change of the model's eps over one step::

            x_0      = sqrt(1 / alpha_bar_t) x_t - sqrt(1 / alpha_bar_t - 1) eps
            x_{t+1}  = sqrt(alpha_bar_{t+1}) x_0 + sqrt(1 - alpha_bar_{t+1}) eps

        with alpha_bar_T = 0 after the last step. Only the deterministic path can be inverted:
        ``eta`` must be 0 (the official code asserts it).
        """
        if eta != 0.0:
            raise ValueError(f"ddim_reverse_sample inverts the deterministic DDIM path only: "
                             f"eta must be 0.0, got {eta}")
        out = self.p_mean_variance(model, x, t, clip_denoised=clip_denoised,
                                   denoised_fn=denoised_fn, model_kwargs=model_kwargs)
        if cond_fn is not None:
            out = self.condition_score(cond_fn, out, x, t, model_kwargs=model_kwargs)
        alpha_bar_t = self._extract("alphas_cumprod", t, x.ndim)
        alpha_bar_next = self._extract("alphas_cumprod_next", t, x.ndim)
        # eps = (sqrt(1 / alpha_bar_t) x_t - x_0) / sqrt(1 / alpha_bar_t - 1)
        eps = predict_eps_from_x0(x, alpha_bar_t, out["pred_xstart"])
        # x_{t+1} = sqrt(alpha_bar_{t+1}) x_0 + sqrt(1 - alpha_bar_{t+1}) eps  (DDIM eq. 12 reversed)
        sample = torch.sqrt(alpha_bar_next) * out["pred_xstart"] + torch.sqrt(1 - alpha_bar_next) * eps
        sample = sample.to(x.dtype)
        return {"sample": sample, "pred_xstart": out["pred_xstart"]}

    def ddim_reverse_sample_loop(self, model, x: torch.Tensor, clip_denoised: bool = False,
                                 denoised_fn=None, cond_fn=None, model_kwargs=None,
                                 progress: bool = False, eta: float = 0.0) -> torch.Tensor:
        """Invert DDIM: data ``x`` -> the noise ``x_{T-1}`` that ``ddim_sample_loop`` maps back to x.

        A minidit addition: the official DiT code has only the step, ``ddim_reverse_sample``.
        ``x`` is taken as the state at t = 0 (alpha_bar_0 = 1 - beta_0, nearly clean), and the
        steps t = 0, ..., T-2 carry it to x_{T-1}: exactly where ``ddim_sample_loop`` starts, so
        ``ddim_sample_loop(model, x.shape, noise=ddim_reverse_sample_loop(model, x))`` returns x
        up to the discretisation error of the two ODE solves. (Loops elsewhere that also take the
        step at t = T-1 land on alpha_bar_T = 0, one step beyond where sampling starts.)
        """
        final = {"sample": x}
        for final in self.ddim_reverse_sample_loop_progressive(model, x, clip_denoised, denoised_fn,
                                                               cond_fn, model_kwargs, progress, eta):
            pass
        return final["sample"]

    def ddim_reverse_sample_loop_progressive(self, model, x: torch.Tensor, clip_denoised: bool = False,
                                             denoised_fn=None, cond_fn=None, model_kwargs=None,
                                             progress: bool = False, eta: float = 0.0):
        """Like ``ddim_reverse_sample_loop``, yielding ``ddim_reverse_sample``'s dict per step."""
        steps = range(self.num_timesteps - 1)  # 0, ..., T-2
        if progress:
            steps = tqdm(steps, desc="inverting", total=self.num_timesteps - 1)
        for i in steps:
            t = torch.full((x.shape[0],), i, device=x.device, dtype=torch.long)
            with torch.no_grad():
                out = self.ddim_reverse_sample(model, x, t, clip_denoised, denoised_fn, cond_fn,
                                               model_kwargs, eta)
            yield out
            x = out["sample"]

    # ------------------------------------------------------------------ shared loop
    def _initial_x(self, shape, noise, device, model) -> torch.Tensor:
        """Where a chain starts: ``noise`` (checked against ``shape``) or x_{T-1} ~ N(0, I)."""
        shape = tuple(shape)
        if noise is not None:
            if tuple(noise.shape) != shape:
                raise ValueError(f"noise has shape {tuple(noise.shape)} but shape={shape}")
            return noise
        return torch.randn(*shape, device=device if device is not None else _model_device(model))

    def _timesteps_down(self, progress: bool = False):
        """The step indices T-1, ..., 0 of a sampling chain (with a tqdm bar when ``progress``)."""
        steps = range(self.num_timesteps - 1, -1, -1)
        return tqdm(steps, desc="sampling", total=self.num_timesteps) if progress else steps

    def _loop(self, step, model, shape, noise, progress, device, **step_kwargs):
        x = self._initial_x(shape, noise, device, model)
        for i in self._timesteps_down(progress):
            t = torch.full((x.shape[0],), i, device=x.device, dtype=torch.long)
            with torch.no_grad():
                out = step(model, x, t, **step_kwargs)
            yield out
            x = out["sample"]
