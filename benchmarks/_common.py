"""Shared helpers of the benchmark scripts: the machine report, synced timing, medians, tables.

Not a test and not part of minidit: the scripts in this folder print numbers side by side in one
run. On a shared machine, absolute numbers drift with the load; the scripts therefore interleave
the variants they compare (A, B, B, A, ...) and report medians and median *ratios*, which are
much steadier than either absolute figure.
"""
from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def cpu_model() -> str:
    """The CPU's model name as ``lscpu`` prints it (read from /proc/cpuinfo)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_line(device: torch.device, clock: str = "wall") -> str:
    """One line naming the hardware, the thread count and the current load (for the README)."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    hw = (torch.cuda.get_device_name(device) if device.type == "cuda"
          else f"{cpu_model()}, {os.cpu_count()} cores")
    return (f"{hw} | torch {torch.__version__} | {torch.get_num_threads()} threads | "
            f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min) | {clock} clock")


def pick(device_arg: str | None) -> torch.device:
    from minidit.env import pick_device

    return pick_device(device_arg)


def setup(args) -> torch.device:
    """The benchmarks' common start: ``--threads``, the device, and on CUDA the TF32 matmuls and
    convolutions the trainer allows too (so fp32 figures are the trainer's fp32)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return device


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def timed(fn, device: torch.device, clock: str = "wall") -> float:
    """Seconds one call of ``fn`` takes, with the device drained before and after.

    ``clock="wall"`` is what a user waits for. ``clock="cpu"`` counts the CPU seconds this
    process used (all its threads): on a CPU shared with other jobs (load average above the core
    count) wall time mostly measures the other jobs, CPU time much less so -- use it with
    ``--threads 1`` there (with more threads, time spent spinning at thread barriers is counted).
    """
    now = CLOCKS[clock]
    sync(device)
    t0 = now()
    fn()
    sync(device)
    return now() - t0


def interleaved(fns: dict, device: torch.device, reps: int, warmup: int = 1,
                clock: str = "wall") -> dict[str, list[float]]:
    """Time every function ``reps`` times, alternating them so load drifts hit all equally.

    Warm-up calls first (allocator, oneDNN/cuDNN plans, compilation). Then per repetition each
    function runs once, the order reversed every other repetition (A B, B A, A B, ...).
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        for name in (names if rep % 2 == 0 else names[::-1]):
            times[name].append(timed(fns[name], device, clock))
    return times


def median(xs) -> float:
    return statistics.median(xs)


def paired_ratio(a: list[float], b: list[float]) -> float:
    """Median over repetitions of ``a[i] / b[i]`` (same repetition = same machine load)."""
    return statistics.median(x / y for x, y in zip(a, b))


def autocast(device: torch.device, precision: str):
    """bf16 autocast (fp32 master weights) or nothing, on CPU as on GPU."""
    import contextlib

    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision != "fp32":
        raise ValueError(f"unknown precision {precision!r}: use fp32 or bf16")
    return contextlib.nullcontext()


def peak_tflops(device: torch.device, precision: str, override: float | None) -> float | None:
    """Dense peak TFLOP/s of the GPU by name (H100 SXM 989 bf16, A100 312, ...); None on CPU."""
    from minidit.training.logger import peak_tflops as lookup

    return lookup(device, precision, override)


def mfu(images_per_s: float, gflops: float, passes: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation: ``images/s * passes * 2 * Gflops`` over the peak.

    ``gflops`` is ``count_gflops`` (forward multiply-accumulates per image, the paper's unit;
    1 MAC = 2 FLOPs); ``passes`` is 1 for forward only and 3 for forward + backward.
    """
    if not peak:
        return None
    return images_per_s * passes * 2 * gflops * 1e9 / (peak * 1e12)


def peak_memory_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def rss_mib() -> float:
    """Current resident set size of this process in MiB (Linux /proc; no psutil needed)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def table(headers: list[str], rows: list[list]) -> str:
    """A GitHub markdown table (strings as they are, floats with 3 significant digits)."""
    def fmt(v):
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def emit(text: str, out: str | None) -> None:
    """Print ``text`` and, with ``--out FILE``, append it to FILE (markdown)."""
    print(text, flush=True)
    if out:
        with open(out, "a") as f:
            f.write(text + "\n")


def has_diffusers() -> bool:
    """Whether ``diffusers`` imports (the GPU image has no diffusers unless its wheel was carried:
    see gpu_check.sh). Without it the scripts time minidit alone and say so."""
    try:
        import diffusers  # noqa: F401
    except ImportError:
        return False
    return True


def minidit_only_without_diffusers(args) -> None:
    """Set ``args.no_diffusers`` when diffusers is missing, and say so (nothing is invented)."""
    if not args.no_diffusers and not has_diffusers():
        print("diffusers is not installed: timing minidit only", flush=True)
        args.no_diffusers = True


def build_model(name: str, device: torch.device, **kwargs):
    """``get_model`` with the parameters created and initialised on ``device`` directly.

    DiT-XL/2 has 675M parameters: initialising them on the CPU and copying them over costs seconds
    per variant, which a GPU session with a fixed time budget cannot spare.
    """
    from minidit.models import get_model

    with torch.device(device):
        return get_model(name, **kwargs)
