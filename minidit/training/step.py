"""One optimisation step of DiT, in the official order: loss, zero_grad, backward, AdamW step, EMA.

The trainer (minidit/train.py) calls ``train_step`` once per batch, and so do the experiment
scripts (minidit/experiments/common.py). Everything around it is theirs: where the batch comes
from, the learning-rate schedule, logging and checkpoints.
"""
from __future__ import annotations

import torch
from torch import nn

from minidit.training.ema import update_ema
from minidit.training.objective import diffusion_loss


def train_step(model: nn.Module, diffusion, optimizer: torch.optim.Optimizer, ema_params: list[torch.Tensor],
               params: list[torch.Tensor], x_0: torch.Tensor, y: torch.Tensor, *, ema_decay: float,
               precision: str = "fp32") -> dict[str, torch.Tensor]:
    """Train on the batch ``(x_0, y)`` once; returns its mean ``loss`` (and ``mse``, ``vb``).

    As the official train.py, in this order: the batch's losses ``L_simple + L_vlb`` at random
    timesteps (``diffusion_loss``, which draws the timesteps and the noise and runs the model
    under ``precision``); the optimizer's old gradients cleared (``set_to_none``, as official),
    the mean ``loss`` backpropagated, one optimizer step (its learning rate is set by the
    caller); then the EMA update ``theta_ema <- decay * theta_ema + (1 - decay) * theta`` over
    the matching tensor lists ``ema_params`` and ``params`` (from ``ema_pairs``) with
    ``update_ema``. Returns ``diffusion_loss``'s dict; its tensors stay on the device: reading
    one (``.item()``) would wait for the GPU.
    """
    # BEGIN SOLUTION ch06 difficulty=2 minutes=20
    losses = diffusion_loss(diffusion, model, x_0, y, precision=precision)
    optimizer.zero_grad(set_to_none=True)
    losses["loss"].backward()
    optimizer.step()
    # theta_ema <- decay * theta_ema + (1 - decay) * theta
    update_ema(ema_params, params, ema_decay)
    return losses
    # END SOLUTION
