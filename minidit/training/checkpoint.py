"""Training checkpoints: the official layout, plus what an exact resume needs, written safely.

A minidit checkpoint is one ``torch.save``d dict. The first four keys are the official DiT
layout, so the official ``sample.py`` (and ``minidit.convert``) read it unchanged:

    "model"  the trained weights (state dict)       "ema"   the EMA weights (what you sample with)
    "opt"    the AdamW state                        "args"  the run's arguments (a dict)

minidit adds ``"step"``, ``"epoch"``, ``"batch_in_epoch"`` (the data position), ``"rng"`` (the
torch/CUDA/numpy/python generator states) and ``"format"``. With them a run stopped after step
N and resumed continues with exactly the batches, timesteps and noise the uninterrupted run would
have drawn: on CPU the weights at step M are bit-identical (tests/test_checkpoint.py checks it).

Checkpoints are written atomically: to a temporary file in the same folder, flushed and fsynced,
then renamed over the final name with ``os.replace`` (atomic on POSIX and Windows). A crash or a
SIGKILL half-way through leaves at worst a stray ``*.tmp`` file, never a truncated ``.pt``.
"""
from __future__ import annotations

import os
import random
import re
from pathlib import Path

import numpy as np
import torch

CKPT_NAME = re.compile(r"^(\d{7,})\.pt$")
FORMAT = "minidit-train-v1"


def checkpoint_path(ckpt_dir: str | Path, step: int) -> Path:
    """``ckpt_dir/0050000.pt``: seven digits, as the official code names them."""
    return Path(ckpt_dir) / f"{step:07d}.pt"


def rng_state() -> dict:
    """Every random generator the training loop draws from, captured now."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Put back the generators captured by ``rng_state`` (CUDA only if both runs had it)."""
    torch.set_rng_state(state["torch"].cpu() if torch.is_tensor(state["torch"]) else state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        states = state["cuda"]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in states])


def atomic_save(obj, path: str | Path) -> Path:
    """``torch.save`` to ``path`` so that readers see the old file or the complete new one.

    Write to ``path.tmp.<pid>`` in the same folder (a rename is only atomic within one file
    system), flush Python's and the OS's buffers (``fsync``) so the bytes are on disk before
    the rename makes them visible, then ``os.replace``. The folder is fsynced too so the new
    name survives a power cut.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    try:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # some file systems (and Windows) cannot fsync a folder; the rename still stands
        pass
    return path


def make_checkpoint(model, ema, opt, args: dict, step: int, epoch: int, batch_in_epoch: int) -> dict:
    """The dict saved at a checkpoint (see the module docstring for the keys)."""
    return {
        "model": model.state_dict(),
        "ema": ema.state_dict(),
        "opt": opt.state_dict(),
        "args": dict(args),
        "step": step,
        "epoch": epoch,
        "batch_in_epoch": batch_in_epoch,
        "rng": rng_state(),
        "format": FORMAT,
    }


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Read a checkpoint, with a clear error when it is missing or not a checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; pass an existing .pt file or --resume latest")
    try:
        # weights_only=False: the dict holds numpy/python RNG states (our own files only)
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # a truncated or foreign file
        raise ValueError(f"cannot read checkpoint {path}: {e}") from e
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path} is not a minidit/DiT checkpoint (got a {type(ckpt).__name__})")
    return ckpt


def list_checkpoints(ckpt_dir: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the complete checkpoints in ``ckpt_dir``, oldest first."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    found = []
    for p in ckpt_dir.iterdir():
        m = CKPT_NAME.match(p.name)
        if m and p.is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def prune_checkpoints(ckpt_dir: str | Path, keep_last: int, milestone_every: int | None) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints, sparing milestones; returns the deleted.

    A milestone is a checkpoint whose step is a multiple of ``milestone_every`` (kept forever,
    like the official code keeps every checkpoint). ``keep_last <= 0`` keeps everything.
    """
    if keep_last <= 0:
        return []
    ckpts = list_checkpoints(ckpt_dir)
    deleted = []
    for step, path in ckpts[:-keep_last]:
        if milestone_every and step % milestone_every == 0:
            continue
        path.unlink(missing_ok=True)
        deleted.append(path)
    return deleted


def find_latest(results_dir: str | Path) -> Path:
    """The newest checkpoint of the newest run in ``results_dir`` (what ``--resume latest`` means)."""
    results_dir = Path(results_dir)
    runs = sorted((p for p in results_dir.glob("[0-9][0-9][0-9]*-*") if p.is_dir()),
                  key=lambda p: int(p.name.split("-")[0]), reverse=True) if results_dir.is_dir() else []
    for run in runs:
        ckpts = list_checkpoints(run / "checkpoints")
        if ckpts:
            return ckpts[-1][1]
    raise FileNotFoundError(f"--resume latest: no checkpoint found under {results_dir}/*/checkpoints; "
                            f"pass a checkpoint path or check --results-dir")
