"""Gaussian diffusion for DiT: schedules, the hybrid loss, respacing, DDPM/DDIM and guidance.

Reading order: ``schedules`` (the betas) -> ``gaussian`` (closed forms of q and of the posterior)
-> ``losses`` (L_simple, KL, decoder NLL) -> ``gaussian_diffusion`` (the object tying them
together) -> ``sampling`` (DDPM and DDIM loops) -> ``respace`` (fewer steps) -> ``guidance``.

Start from ``create_diffusion``, named and defaulted as in the official DiT code::

    diffusion = create_diffusion(timestep_respacing="")     # training: all 1000 steps
    diffusion = create_diffusion("250")                      # sampling: 250 steps
"""
from __future__ import annotations

from .gaussian_diffusion import GaussianDiffusion, extract_into_tensor
from .guidance import cfg_combine, guided_forward, sample_with_guidance
from .respace import SpacedDiffusion, space_timesteps
from .schedules import get_named_beta_schedule

__all__ = ["create_diffusion", "GaussianDiffusion", "SpacedDiffusion", "space_timesteps",
           "get_named_beta_schedule", "extract_into_tensor", "cfg_combine", "guided_forward",
           "sample_with_guidance"]


def create_diffusion(timestep_respacing, noise_schedule: str = "linear", *, learn_sigma: bool = True,
                     predict_xstart: bool = False, sigma_small: bool = False,
                     rescale_learned_sigmas: bool = False, diffusion_steps: int = 1000) -> SpacedDiffusion:
    """The diffusion DiT trains and samples with (defaults as in the official DiT code).

    Args:
        timestep_respacing: ``None`` or ``""`` for all ``diffusion_steps`` steps (training);
            ``"250"``, ``"ddim50"``, ``"10,20"`` or an int for a shorter chain (sampling), see
            ``space_timesteps``.
        noise_schedule: ``"linear"`` (the paper's) or ``"cosine"``.
        learn_sigma: the model outputs 2C channels, eps and the learned-range variance (DiT).
            If False the variance is fixed: beta_t ("fixed large"), as the official code does,
            or the posterior variance beta tilde_t with ``sigma_small=True``.
        predict_xstart: the model predicts x_0 instead of eps.
        rescale_learned_sigmas: multiply the vb term by T / 1000 (official RESCALED_MSE). Off,
            as in DiT: the official ``create_diffusion`` then uses the plain MSE loss type.
        diffusion_steps: length T of the original chain.

    Arguments after ``noise_schedule`` are keyword-only: the official function has ``use_kl``
    and ``sigma_small`` in between, so positional calls would silently mean something else.
    """
    betas = get_named_beta_schedule(noise_schedule, diffusion_steps)
    if timestep_respacing is None or timestep_respacing == "":
        timestep_respacing = [diffusion_steps]
    if learn_sigma:
        var_type = "learned_range"
    else:
        var_type = "fixed_small" if sigma_small else "fixed_large"
    return SpacedDiffusion(
        use_timesteps=space_timesteps(diffusion_steps, timestep_respacing),
        betas=betas,
        model_mean_type="x_start" if predict_xstart else "epsilon",
        model_var_type=var_type,
        rescale_learned_sigmas=rescale_learned_sigmas,
    )
