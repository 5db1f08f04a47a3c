"""Where minidit runs: the smoke switch, the device, the cache folder.

Notebooks and scripts read these instead of hard-coding sizes, so the same code runs small on a
CPU (``MINIDIT_SMOKE=1``, set by CI) and at full size on a GPU.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch


def smoke() -> bool:
    """True when ``MINIDIT_SMOKE=1``: run the smallest configuration that still shows the idea."""
    return os.environ.get("MINIDIT_SMOKE", "0").lower() in ("1", "true", "yes")


def pick_device(prefer: str | None = None) -> torch.device:
    """The best device available (CUDA, then Apple MPS, then CPU), unless ``prefer`` names one."""
    if prefer:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def cache_dir(*parts: str) -> Path:
    """minidit's cache (trained offline classifiers, tiny autoencoder, ...).

    ``$MINIDIT_CACHE`` if set, else ``~/.cache/minidit``. Created on first use.
    """
    root = Path(os.environ.get("MINIDIT_CACHE", Path.home() / ".cache" / "minidit")).expanduser()
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
