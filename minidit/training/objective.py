"""One training example's loss: draw timesteps, noise the data, ask the diffusion for the loss.

DiT trains with the improved-DDPM objective (paper §3.1, as in the official code): for each image
a timestep ``t ~ Uniform{0, ..., T-1}``, then ``L = L_simple + L_vlb`` where ``L_simple`` is the
MSE between the true and predicted noise and ``L_vlb`` trains the learned variance. The heavy
lifting (``q_sample``, the KL terms) lives in ``minidit.diffusion``; this module only decides
*which* timesteps, and how the model is called (mixed precision).
"""
from __future__ import annotations

import torch

from minidit.env import autocast_context


def sample_timesteps(batch_size: int, num_timesteps: int, generator: torch.Generator | None = None,
                     device: torch.device | str | None = None) -> torch.Tensor:
    """Draw one diffusion timestep per example, uniformly: ``t_i ~ Uniform{0, 1, ..., T-1}``.

    Returns an int64 tensor of shape ``(batch_size,)`` on ``device`` with values in
    ``[0, num_timesteps)``; raise ``ValueError`` if ``num_timesteps < 1``. Uniform integers, as
    the paper and the official code draw them: with ``generator`` given, from that generator
    (so a run can be reproduced), otherwise from the global RNG -- the same random numbers as
    the official code for the same seed. Create them directly on ``device`` (no CPU tensor
    copied to the GPU each step).
    """
    # BEGIN SOLUTION ch06 difficulty=1 minutes=5
    if num_timesteps < 1:
        raise ValueError(f"num_timesteps must be >= 1, got {num_timesteps}")
    return torch.randint(0, num_timesteps, (batch_size,), generator=generator, device=device,
                         dtype=torch.long)
    # END SOLUTION


def _float32_output(model):
    """Wrap ``model`` so its output reaches the loss in fp32 (the loss's logs and exps need it)."""

    def call(x, t, **kwargs):
        return model(x, t, **kwargs).float()

    return call


def diffusion_loss(diffusion, model, x_0: torch.Tensor, y: torch.Tensor, precision: str = "fp32",
                   generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Mean ``loss``, ``mse`` and ``vb`` over the batch for one training step (tensors on device).

    ``loss = mse + vb`` per example as the official ``training_losses`` returns it; the
    optimizer steps on ``loss.mean()``. The returned tensors are *not* turned into Python
    numbers here: ``.item()`` would wait for the GPU, so the trainer does it at log steps only.
    """
    t = sample_timesteps(x_0.shape[0], diffusion.num_timesteps, generator=generator, device=x_0.device)
    with autocast_context(x_0.device, precision):
        terms = diffusion.training_losses(_float32_output(model), x_0, t, model_kwargs=dict(y=y))
    out = {"loss": terms["loss"].float().mean()}
    for key in ("mse", "vb"):
        if key in terms:
            out[key] = terms[key].float().mean()
    return out
