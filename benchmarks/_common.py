"""What the benchmark scripts share: the machine report, synced timing, medians, tables.

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

from minidit.env import configure_torch, pick_device  # noqa: E402  (after ROOT is importable)
from minidit.models import get_model  # noqa: E402


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


def setup(args) -> torch.device:
    """The benchmarks' common start: the device, and torch set up as the trainer sets it up
    (``--threads``; on CUDA the TF32 matmuls and convolutions, so fp32 figures are the trainer's)."""
    device = pick_device(args.device)
    configure_torch(device, args.threads)
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
    """Whether ``diffusers`` imports (a GPU machine without internet may lack it unless its wheel
    was carried along: see gpu_check.sh). Without it the scripts time minidit alone and say so."""
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
    per variant, which a GPU run with a fixed time budget (gpu_check.sh) cannot spare.
    """
    with torch.device(device):
        return get_model(name, **kwargs)
