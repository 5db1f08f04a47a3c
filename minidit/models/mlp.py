"""The transformer's position-wise feed-forward network (as in ViT and the official DiT)."""
from __future__ import annotations

import torch
from torch import nn


class Mlp(nn.Module):
    """``fc2(GELU_tanh(fc1(x)))`` with hidden width ``mlp_ratio * D`` (4D in every DiT config).

    The tanh approximation of GELU is what the official DiT uses
    (``approx_gelu = lambda: nn.GELU(approximate="tanh")``), so we match it for identical outputs.
    """

    def __init__(self, in_features: int, hidden_features: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features, bias=True)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden_features, in_features, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, T, D) -> (N, T, 4D) -> (N, T, D)
        return self.fc2(self.act(self.fc1(x)))
