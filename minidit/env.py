"""Where minidit runs and how torch computes there: smoke switch, device, cache, threads, precision.

Notebooks and scripts read these instead of hard-coding sizes, so the same code runs small on a
CPU (``MINIDIT_SMOKE=1``, set by CI) and at full size on a GPU. The trainer, the sampler and the
benchmarks set up torch with the same two functions (``configure_torch``, ``autocast_context``),
so a benchmark's "fp32" or "bf16" is the trainer's.
"""
from __future__ import annotations

import contextlib
import os
import time
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
            raise ValueError(f"--device {name}: no CUDA GPU is visible here (torch {torch.__version__}: a CPU-only "
                             f"build, no driver, or CUDA_VISIBLE_DEVICES empty); use --device cpu, or a CUDA "
                             f"build of torch on a machine with a GPU")
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


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask, e.g. a container's or taskset's share)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def other_load() -> float:
    """How many cores' worth of work other processes want: the 1-minute load average, or -- when
    higher -- the number of threads ready to run right now (Linux: ``/proc/loadavg``, the median
    of a few looks, without this process). The average lags a minute behind; a job that starts
    together with others would not see them in it."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not on every platform
        load = 0.0
    now = []
    for _ in range(5):
        try:
            now.append(int(Path("/proc/loadavg").read_text().split()[3].split("/")[0]) - 1)
        except (OSError, IndexError, ValueError):
            break
        time.sleep(0.01)
    return max(load, sorted(now)[len(now) // 2]) if now else load


def default_threads() -> int:
    """CPU threads for a process that was not told: the usable cores other jobs leave free, at least 1.

    On an idle machine that is every core; on a busy one fewer threads, so PyTorch's threads do
    not queue behind other jobs at every barrier of every operation.
    """
    cores = usable_cores()
    return max(1, min(cores, cores - int(other_load() + 0.5)))


def configure_torch(device: torch.device, threads: int | None = None, auto_threads: bool = False) -> int:
    """Set this process's CPU threads and, on CUDA, allow TF32 matmuls and convolutions; returns the threads.

    ``threads``: as given (``--threads``); else, with ``auto_threads`` (the trainer), ``OMP_NUM_THREADS``
    when set (torchrun sets it to 1 per process) or ``default_threads()``; else PyTorch's default. Too many threads are what stalls a run on a busy
    machine: every operation ends at a barrier that waits for its slowest thread, and a thread that
    must queue for a core behind other jobs holds up all of them (the command lines also set
    ``OMP_WAIT_POLICY=PASSIVE`` before torch starts, so a waiting thread sleeps instead of spinning
    on a core another thread needs; benchmarks/bench_busy_machine.py measures both). The thread
    count changes how sums are split, so the weights of two runs with different counts differ in
    the last bits: pass ``--threads`` for bit-identical reruns. TF32 on Ampere
    and later GPUs: the official code allows it too.
    """
    if not threads and auto_threads and not os.environ.get("OMP_NUM_THREADS"):
        threads = default_threads()
    if threads:
        torch.set_num_threads(threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return torch.get_num_threads()


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
