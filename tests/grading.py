"""Assertions for graded exercises: on failure they say what was expected, on which input."""
from __future__ import annotations

from contextlib import contextmanager

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


def close(got, expected, atol: float = 1e-5, rtol: float = 1e-5) -> bool:
    """Same shape and values within tolerance (for checks that then say *which part* differs)."""
    if not torch.is_tensor(got) or tuple(got.shape) != tuple(expected.shape):
        return False
    return torch.allclose(got.detach().double().cpu(), expected.detach().double().cpu(), atol=atol, rtol=rtol)


def randomize_(module: torch.nn.Module, std: float = 0.2, seed: int = 0) -> torch.nn.Module:
    """Give every trainable parameter random values, so that no term of a forward pass is zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return module


@contextmanager
def one_thread():
    """Tiny models run fastest on one CPU thread (several only wait for each other on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
