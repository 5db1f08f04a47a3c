"""Timestep embedding: the diffusion step ``t`` becomes a ``D``-dimensional vector (Section 3.2).

First a fixed sinusoidal feature vector of ``t`` (256 frequencies, as in the official DiT), then a
two-layer MLP (Linear-SiLU-Linear) that the network learns. Frequencies are
``exp(-ln(10000) * i / half)`` with ``half = 128`` and the output is ``[cos, sin]`` -- cos FIRST,
the opposite of the positional embedding's ``[sin, cos]``. (diffusers' ``Timesteps`` layer divides
by ``half - 1`` by default, ``downscale_freq_shift=1``; see minidit/convert.py.)
"""
from __future__ import annotations

import math

import torch
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: int = 10000) -> torch.Tensor:
    """Sinusoidal features of (possibly fractional) timesteps.

    Args:
        t: shape ``(N,)``, one timestep per sample.
        dim: output size ``dim``; ``half = dim // 2`` frequencies.
        max_period: controls the lowest frequency.

    Returns:
        float32 tensor ``(N, dim)``: with ``freqs_i = exp(-ln(max_period) * i / half)`` for
        ``i = 0 .. half-1`` and the angles ``a[n, i] = t_n * freqs_i``, row ``n`` is
        ``[cos(a[n, 0]), ..., cos(a[n, half-1]), sin(a[n, 0]), ..., sin(a[n, half-1])]`` (cos
        first). If ``dim`` is odd, one zero column is appended. Compute the frequencies in
        float32 on ``t``'s device.
    """
    # BEGIN SOLUTION ch04 difficulty=2 minutes=20
    half = dim // 2
    # freqs_i = exp(-ln(max_period) * i / half),  i = 0 .. half-1
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    # (N, 1) * (1, half) -> (N, half)
    args = t[:, None].float() * freqs[None]
    # [cos, sin] -> (N, 2*half), cos first as in the official DiT code
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        # odd dim: pad one zero column -> (N, dim)
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding
    # END SOLUTION


class TimestepEmbedder(nn.Module):
    """``t -> MLP(sinusoid(t))``, a ``(N, D)`` vector (keys ``t_embedder.mlp.0`` / ``.mlp.2``)."""

    def __init__(self, hidden_size: int, frequency_embedding_size: int = 256):
        super().__init__()
        self.frequency_embedding_size = frequency_embedding_size  # 256 as in the official DiT
        self.mlp = nn.Sequential(
            nn.Linear(frequency_embedding_size, hidden_size, bias=True),
            nn.SiLU(),
            nn.Linear(hidden_size, hidden_size, bias=True),
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        # (N,) -> (N, 256) fixed features; cast to the weights' dtype so bf16/fp16 models work
        t_freq = timestep_embedding(t, self.frequency_embedding_size).to(self.mlp[0].weight.dtype)
        # (N, 256) -> (N, D)
        return self.mlp(t_freq)
