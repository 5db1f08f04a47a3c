"""The final layer: tokens back to per-patch predictions (Section 3.2, "Transformer decoder").

After the last block each token is mapped by one linear layer to ``p * p * out_channels`` numbers
(the noise prediction and, with a learned variance, the interpolation weights for Sigma), which
``unpatchify`` puts back on the image grid. Before it comes a LayerNorm -- adaptive (modulated by
``c``) when the blocks use adaLN, plain for the in-context and cross-attention variants, as the
paper describes ("the final layer norm (adaptive if using adaLN)").
"""
from __future__ import annotations

import torch
from torch import nn

from .block import modulate


class FinalLayer(nn.Module):
    """adaLN final layer of the official DiT: ``linear(modulate(norm_final(x), shift, scale))``.

    ``adaLN_modulation = Sequential(SiLU, Linear(D, 2D))`` gives ``shift, scale`` (in that order);
    ``linear`` maps ``D -> p*p*out_channels``. Both are zero-initialised in ``DiT``, so a new DiT
    outputs exactly zero.
    """

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels, bias=True)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size, bias=True))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``x``: ``(N, T, D)`` tokens, ``c``: ``(N, D)`` condition -> ``(N, T, p*p*out_channels)``.

        The formula of the class docstring; ``self.adaLN_modulation(c)`` is ``(N, 2D)`` and holds
        ``shift`` then ``scale``, one ``(N, D)`` vector each per sample.
        """
        # BEGIN SOLUTION ch05 difficulty=1 minutes=10
        # (N, D) -> (N, 2D) -> shift, scale each (N, D)
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        x = modulate(self.norm_final(x), shift, scale)
        # (N, T, D) -> (N, T, p*p*out_channels)
        return self.linear(x)
        # END SOLUTION


class PlainFinalLayer(nn.Module):
    """Non-adaptive final layer for the in-context / cross-attention variants: LN (affine) + linear."""

    def __init__(self, hidden_size: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, eps=1e-6)
        self.linear = nn.Linear(hidden_size, patch_size * patch_size * out_channels, bias=True)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        # (N, T, D) -> (N, T, p*p*out_channels); c is unused (conditioning happened in the blocks)
        return self.linear(self.norm_final(x))
