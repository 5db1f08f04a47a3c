"""Nothing invalid is silently accepted by the model and the diffusion: sizes, labels, respacing."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from minidit.diffusion import create_diffusion
from minidit.models import get_model
from minidit.models.dit import DiT


@pytest.mark.parametrize("kwargs, match", [
    (dict(input_size=0), "input_size must be a positive integer, got 0"),
    (dict(input_size=-8), "input_size must be a positive integer, got -8"),
    (dict(input_size=8.0), "input_size must be a positive integer, got 8.0"),
    (dict(patch_size=0), "patch_size must be a positive integer"),
    (dict(in_channels=0), "in_channels must be a positive integer"),
])
def test_model_sizes_must_be_positive_integers(kwargs, match):
    base = dict(input_size=8, patch_size=2, in_channels=1, hidden_size=32, depth=1, num_heads=2, num_classes=10)
    with pytest.raises(ValueError, match=match):
        DiT(**{**base, **kwargs})
    with pytest.raises(ValueError, match="input_size must be a positive integer"):
        get_model("DiT-P/2", input_size=0, in_channels=1, num_classes=10)


@pytest.mark.parametrize("y, match", [
    (torch.tensor([1.0, 2.7]), "integer tensor of class ids, got a torch.float32 tensor"),
    ([1, 2], "integer tensor of class ids, got list"),
    (torch.tensor([True, False]), "integer tensor"),
])
def test_model_labels_must_be_integer_tensors(y, match):
    model = get_model("DiT-P/2", input_size=8, in_channels=1, num_classes=10).eval()
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([5, 9])
    with pytest.raises(ValueError, match=match):
        model(x, t, y)
    assert model(x, t, torch.tensor([1, 2])).shape == (2, 2, 8, 8)   # int64 labels are fine


@pytest.mark.parametrize("respacing", [25.0, [12.5, 10], True, []])
def test_respacing_counts_must_be_whole_numbers(respacing):
    with pytest.raises(ValueError, match="timestep respacing"):
        create_diffusion(respacing)


def test_whole_respacing_counts_in_every_spelling():
    for r in (25, "25", [np.int64(25)], (25,)):
        assert create_diffusion(r).num_timesteps == 25
