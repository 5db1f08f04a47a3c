"""What a run leaves behind, and what it prints: the run folder, the log, metrics, throughput.

A run folder (rank 0 creates it; the official code's naming plus the preset)::

    results/003-DiT-N-2-digits/
        args.json        every argument of the run (after presets and flags are combined)
        log.txt          the plain-text log (the terminal gets a tqdm bar on top of the same lines)
        metrics.jsonl    one JSON object per log step: step, loss, mse, vb, steps/s, images/s, lr, mfu
        checkpoints/     0000500.pt, ... (see checkpoint.py)
        samples_0002000.png   a sample grid, one row per class
        loss.png         the loss curves (mse and vb)
"""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import torch

# Dense peak TFLOP/s by device name (bf16 tensor cores; fp32 runs use TF32, half of it), from the
# vendors' data sheets. Used for model-FLOPs utilisation (MFU); --peak-tflops overrides.
PEAK_TFLOPS_BF16 = {
    "H200": 989.0, "H100 SXM": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.0,
    "GH200": 989.0, "B200": 2250.0, "A100": 312.0, "A800": 312.0, "L40S": 362.0, "L40": 181.0,
    "L4": 121.0, "A10G": 70.0, "A10": 125.0, "RTX 4090": 165.0, "RTX 3090": 71.0, "V100": 125.0,
    "T4": 65.0,
}


def peak_tflops(device: torch.device, precision: str, override: float | None = None) -> float | None:
    """The device's dense peak TFLOP/s for ``precision``, or None when unknown (CPU included)."""
    if override:
        return float(override)
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, tflops in PEAK_TFLOPS_BF16.items():  # most specific names come first
        if key in name:
            # fp32 matmuls run on TF32 tensor cores (allowed by train.py): half the bf16 rate
            return tflops if precision == "bf16" else tflops / 2
    return None


def mfu(images_per_s: float, gflops_per_image: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation for the log, or None when the peak or the Gflops are unknown.

    The formula (training FLOPs per image = 3 * 2 * Gflops * 1e9, over the peak) is chapter 13's
    graded ``minidit.experiments.cost.mfu``; the log uses that same function.
    """
    from minidit.experiments.cost import mfu as training_mfu

    if not peak or not gflops_per_image:
        return None
    return training_mfu(images_per_s, gflops_per_image, peak)


def next_run_dir(results_dir: str | Path, model: str, preset: str) -> Path:
    """``results_dir/NNN-<model>-<preset>`` with NNN one more than the highest existing index."""
    results_dir = Path(results_dir)
    results_dir.mkdir(parents=True, exist_ok=True)
    indices = [int(p.name.split("-")[0]) for p in results_dir.iterdir()
               if p.is_dir() and p.name.split("-")[0].isdigit()]
    index = max(indices, default=-1) + 1
    # "DiT-XL/2" -> "DiT-XL-2" (the official code does the same)
    name = f"{index:03d}-{model.replace('/', '-')}-{preset}"
    path = results_dir / name
    (path / "checkpoints").mkdir(parents=True, exist_ok=False)
    return path


def create_logger(run_dir: Path | None, is_main: bool, name: str = "minidit.train") -> logging.Logger:
    """Rank 0 logs to the terminal and ``run_dir/log.txt``; other ranks log nothing.

    The terminal lines go through ``tqdm.write`` so they do not tear the progress bar.
    """
    logger = logging.getLogger(f"{name}.{id(run_dir)}")
    logger.handlers.clear()
    logger.propagate = False
    if not is_main:
        logger.addHandler(logging.NullHandler())
        return logger
    logger.setLevel(logging.INFO)
    fmt = logging.Formatter("[%(asctime)s] %(message)s", datefmt="%Y-%m-%d %H:%M:%S")
    term = _TqdmHandler()
    term.setFormatter(fmt)
    logger.addHandler(term)
    if run_dir is not None:
        fh = logging.FileHandler(run_dir / "log.txt")
        fh.setFormatter(fmt)
        logger.addHandler(fh)
    return logger


class _TqdmHandler(logging.Handler):
    def emit(self, record):
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stdout)
        except Exception:  # pragma: no cover - logging must never kill training
            self.handleError(record)


def close_logger(logger: logging.Logger) -> None:
    for h in list(logger.handlers):
        h.close()
        logger.removeHandler(h)


def progress_bar(total: int, initial: int, enabled: bool):
    """A tqdm bar on an interactive terminal only (log files and CI get plain lines)."""
    from tqdm import tqdm

    show = enabled and sys.stderr.isatty()
    return tqdm(total=total, initial=initial, disable=not show, unit="step", dynamic_ncols=True)


def write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def append_jsonl(path: Path, obj: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(obj, default=float) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    if not Path(path).exists():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
