"""Assertions for graded exercises: on failure they say what was expected, on which input."""
from __future__ import annotations

import pytest
import torch


def _fmt(t: torch.Tensor, n: int = 6) -> str:
    flat = t.detach().flatten()[:n].tolist()
    return "[" + ", ".join(f"{v:.5g}" for v in flat) + (", ...]" if t.numel() > n else "]")


def assert_close(got, expected, what: str, atol: float = 1e-5, rtol: float = 1e-5):
    """Compare a student's result with the reference; ``what`` names the call and its input."""
    if not torch.is_tensor(expected):
        expected = torch.as_tensor(expected)
    if not torch.is_tensor(got):
        try:
            got = torch.as_tensor(got)
        except Exception:
            pytest.fail(f"{what}: expected a tensor of shape {tuple(expected.shape)}, got {type(got).__name__}")
    if tuple(got.shape) != tuple(expected.shape):
        pytest.fail(f"{what}: expected shape {tuple(expected.shape)}, got shape {tuple(got.shape)}")
    got64, exp64 = got.detach().double().cpu(), expected.detach().double().cpu()
    if not torch.allclose(got64, exp64, atol=atol, rtol=rtol, equal_nan=False):
        diff = (got64 - exp64).abs()
        idx = tuple(int(i) for i in torch.unravel_index(diff.argmax(), diff.shape)) if diff.ndim else ()
        pytest.fail(f"{what}: values differ (max abs diff {diff.max().item():.3g} at index {idx}).\n"
                    f"  expected starts {_fmt(exp64)}\n  got      starts {_fmt(got64)}")
