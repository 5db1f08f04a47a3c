"""What a run leaves behind, and what it prints: the run folder, the log, metrics, throughput.

A run folder (rank 0 creates it, see runfolder.py; the official code's naming plus the preset)::

    results/003-DiT-N-2-digits/
        args.json        every argument of the run (after presets and flags are combined)
        log.txt          the plain-text log (the terminal gets a tqdm bar on top of the same lines)
        metrics.jsonl    one JSON object per log step: step, loss, mse, vb, steps/s, images/s, lr, mfu
        checkpoints/     0000500.pt, ... (see checkpoint.py)
        samples_0002000.png   a sample grid, one row per class
        loss.png         the loss curves (mse and vb)
        .lock            while a process trains here: its pid and host (see runfolder.py)
        set-aside/       after a roll-back: what the abandoned branch wrote after the resumed step

Every file is written atomically, or appended a whole line at a time (minidit/files.py).

Between two log lines the losses are summed on the device by a ``LossMeter``: reading a GPU
tensor (``.item()``) waits for the GPU, so the trainer reads them at log steps only.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from minidit.files import append_line, write_text_atomic
from minidit.training.distributed import DistInfo, all_reduce_mean


class LossMeter:
    """Loss, mse and vb summed on the device since the last log line, and the first non-finite step."""

    def __init__(self, device: torch.device):
        self.sums = torch.zeros(3, device=device)  # loss, mse, vb
        self.bad_step = torch.full((), -1, dtype=torch.long, device=device)  # -1: every loss finite
        self.count = 0
        self.since = time.time()

    def add(self, losses: dict[str, torch.Tensor], step: int) -> None:
        """Add one step's losses (device-side bookkeeping only: no ``.item()`` here)."""
        loss = losses["loss"].detach()
        self.sums += torch.stack([loss, losses.get("mse", loss).detach(),
                                  losses.get("vb", torch.zeros_like(loss)).detach()])
        self.bad_step = torch.where(torch.isfinite(loss) | (self.bad_step >= 0), self.bad_step,
                                    torch.full_like(self.bad_step, step))
        self.count += 1

    def first_bad_step(self) -> int:
        """The first step whose loss was NaN or inf, or -1 (a host-device sync)."""
        return int(self.bad_step.item())

    def read(self, info: DistInfo, now: float) -> tuple[list[float], float]:
        """The mean loss, mse and vb over the interval and all ranks, and the steps/s; then start anew."""
        means = (all_reduce_mean(self.sums, info) / self.count).tolist()
        steps_per_s = self.count / max(now - self.since, 1e-9)
        self.sums.zero_()
        self.count = 0
        self.restart_clock()
        return means, steps_per_s

    def restart_clock(self) -> None:
        """Time from now on (after a pause that is not training, such as drawing a sample grid)."""
        self.since = time.time()


def format_log_line(rec: dict) -> str:
    """The official log line (``(step=0000100) Train Loss: ..., Train Steps/Sec: ...``) plus minidit's figures."""
    line = (f"(step={rec['step']:07d}) Train Loss: {rec['loss']:.4f} (mse {rec['mse']:.4f}, vb {rec['vb']:.4f}), "
            f"Train Steps/Sec: {rec['steps_per_s']:.2f}, images/s {rec['images_per_s']:.1f}, lr {rec['lr']:.2e}")
    if "mfu" in rec:
        line += f", MFU {100 * rec['mfu']:.1f}%"
    return line


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
    """The terminal's log lines; a record logged with ``extra={"file_only": True}`` goes to log.txt only."""

    def emit(self, record):
        if getattr(record, "file_only", False):
            return
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
    show = enabled and sys.stderr.isatty()
    return tqdm(total=total, initial=initial, disable=not show, unit="step", dynamic_ncols=True)


def write_json(path: Path, obj: dict) -> None:
    """Write ``obj`` as a JSON file, atomically (a reader sees the old file or the new one)."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def append_jsonl(path: Path, obj: dict) -> None:
    """Add one record to a ``.jsonl`` file: the whole line or nothing (a full disk cuts nothing in half)."""
    append_line(path, json.dumps(obj, default=float))


def write_jsonl(path: Path, records: list[dict]) -> None:
    """Replace a ``.jsonl`` file atomically with ``records``."""
    write_text_atomic(path, "".join(json.dumps(r, default=float) + "\n" for r in records))


def read_jsonl(path: Path) -> list[dict]:
    """The records of a ``.jsonl`` file; a torn line (a power cut mid-write) is skipped."""
    if not Path(path).exists():
        return []
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
