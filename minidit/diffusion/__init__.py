"""Gaussian diffusion for DiT: schedules, the hybrid loss, respacing, DDPM/DDIM and guidance.

Reading order: ``schedules`` (the betas) -> ``gaussian`` (closed forms of q and of the posterior)
-> ``losses`` (L_simple, KL, decoder NLL) -> ``gaussian_diffusion`` (the object tying them
together) -> ``sampling`` (DDPM and DDIM loops, DDIM inversion) -> ``respace`` (fewer steps) ->
``guidance`` (classifier-free) -> ``classifier_guidance`` (a classifier's gradient) ->
``likelihood`` (the whole bound in bits per dimension).

Start from ``create_diffusion``, with the official DiT signature, order and defaults::

    diffusion = create_diffusion(timestep_respacing="")     # training: all 1000 steps
    diffusion = create_diffusion("250")                      # sampling: 250 steps
"""
from __future__ import annotations

from .classifier_guidance import classifier_cond_fn
from .gaussian_diffusion import GaussianDiffusion, extract_into_tensor
from .guidance import cfg_combine, guided_forward, sample_with_guidance
from .respace import SpacedDiffusion, check_respacing, space_timesteps
from .schedules import get_named_beta_schedule

__all__ = ["create_diffusion", "GaussianDiffusion", "SpacedDiffusion", "space_timesteps",
           "get_named_beta_schedule", "extract_into_tensor", "cfg_combine", "guided_forward",
           "sample_with_guidance", "classifier_cond_fn"]


def create_diffusion(timestep_respacing, noise_schedule: str = "linear", use_kl: bool = False,
                     sigma_small: bool = False, predict_xstart: bool = False, learn_sigma: bool = True,
                     rescale_learned_sigmas: bool = False, diffusion_steps: int = 1000) -> SpacedDiffusion:
    """The diffusion DiT trains and samples with.

    The arguments, their order and their defaults are the official DiT ``create_diffusion``'s,
    so ``create_diffusion("250", "linear", False, False, False, True)`` means the same in both.

    Args:
        timestep_respacing: ``None`` or ``""`` for all ``diffusion_steps`` steps (training);
            ``"250"``, ``"ddim50"``, ``"10,20"`` or an int for a shorter chain (sampling), see
            ``space_timesteps``.
        noise_schedule: ``"linear"`` (the paper's) or ``"cosine"``.
        use_kl: train on the variational bound alone instead of the hybrid loss: the official
            ``RESCALED_KL`` loss type, ``loss = num_timesteps * L_t`` (see ``training_losses``).
            Off in DiT. Takes precedence over ``rescale_learned_sigmas``, as officially.
        sigma_small: with ``learn_sigma=False``, the fixed variance is the posterior variance
            beta tilde_t instead of beta_t ("fixed large", the official default).
        predict_xstart: the model predicts x_0 instead of eps.
        learn_sigma: the model outputs 2C channels, eps and the learned-range variance (DiT).
        rescale_learned_sigmas: multiply the vb term by T / 1000 (official RESCALED_MSE). Off,
            as in DiT: the official ``create_diffusion`` then uses the plain MSE loss type.
        diffusion_steps: length T of the original chain.
    """
    betas = get_named_beta_schedule(noise_schedule, diffusion_steps)
    if use_kl:
        loss_type = "rescaled_kl"
    elif rescale_learned_sigmas:
        loss_type = "rescaled_mse"
    else:
        loss_type = "mse"
    if timestep_respacing is None or timestep_respacing == "":
        timestep_respacing = [diffusion_steps]
    check_respacing(timestep_respacing)
    if learn_sigma:
        var_type = "learned_range"
    else:
        var_type = "fixed_small" if sigma_small else "fixed_large"
    return SpacedDiffusion(
        use_timesteps=space_timesteps(diffusion_steps, timestep_respacing),
        betas=betas,
        model_mean_type="x_start" if predict_xstart else "epsilon",
        model_var_type=var_type,
        loss_type=loss_type,
    )
