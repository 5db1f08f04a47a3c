"""Where minidit runs and how torch computes there: smoke switch, device, cache, threads, precision.

Notebooks and scripts read these instead of hard-coding sizes, so the same code runs small on a
CPU (``MINIDIT_SMOKE=1``, set by CI) and at full size on a GPU. The trainer, the sampler and the
benchmarks set up torch with the same two functions (``configure_torch``, ``autocast_context``),
so a benchmark's "fp32" or "bf16" is the trainer's.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch


def smoke() -> bool:
    """True when ``MINIDIT_SMOKE=1``: run the smallest configuration that still shows the idea."""
    return os.environ.get("MINIDIT_SMOKE", "0").lower() in ("1", "true", "yes")


def check_device(name: str) -> torch.device:
    """``torch.device(name)``, checked to exist here: a clear ValueError instead of a failure later."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"--device {name!r} is not a device name; use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"--device {name}: no CUDA GPU is visible here (a CPU-only torch build, no driver, "
                             f"or CUDA_VISIBLE_DEVICES empty); use --device cpu")
        if device.index is not None and device.index >= count:
            raise ValueError(f"--device {name}: only {count} CUDA GPU(s) visible (cuda:0..cuda:{count - 1})")
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"--device {name}: Apple's MPS is not available here; use --device cpu")
    elif device.type != "cpu":
        raise ValueError(f"--device {name}: minidit runs on cpu, cuda or mps")
    return device


def pick_device(prefer: str | None = None) -> torch.device:
    """The best device available (CUDA, then Apple MPS, then CPU), unless ``prefer`` names one."""
    if prefer:
        return check_device(prefer)
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


def configure_torch(device: torch.device, threads: int | None = None) -> None:
    """Set this process's CPU threads (when given) and, on CUDA, allow TF32 matmuls and convolutions.

    PyTorch's OpenMP threads spin at barriers when the cores are busy with other jobs, and tiny
    models gain little from a second thread, so ``--threads 1`` can be far faster on a shared
    machine (benchmarks/README.md measures both). TF32 on Ampere and later GPUs: the official code
    allows it too.
    """
    if threads:
        torch.set_num_threads(threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def autocast_context(device: torch.device, precision: str):
    """bf16 autocast for ``precision == "bf16"`` (the weights stay fp32: they are the master copy).

    Under autocast the matmuls and attention run in bf16 while PyTorch keeps reductions such as
    LayerNorm and softmax in fp32; the loss itself is computed in fp32 (see
    ``minidit.training.objective``). bf16 has fp32's exponent range, so unlike fp16 no loss scaling
    is needed.
    """
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision != "fp32":
        raise ValueError(f"unknown precision {precision!r}: use 'fp32' or 'bf16'")
    return contextlib.nullcontext()
