"""Training checkpoints: the official layout, plus what an exact resume needs, written safely.

A minidit checkpoint is one ``torch.save``d dict. The first four keys are the official DiT
layout, so the official ``sample.py`` (and ``minidit.convert``) read it unchanged:

    "model"  the trained weights (state dict)       "ema"   the EMA weights (what you sample with)
    "opt"    the AdamW state                        "args"  the run's arguments (a dict)

minidit adds ``"step"``, ``"epoch"``, ``"batch_in_epoch"`` (the data position), ``"rng"`` (the
torch/CUDA/numpy/python generator states) and ``"format"``. With them a run stopped after step
N and resumed continues with exactly the batches, timesteps and noise the uninterrupted run would
have drawn: on CPU the weights at step M are bit-identical (tests/test_checkpoint.py checks it).

Everything in the dict is a tensor or a plain Python value (dict, list, str, int, float, None),
so ``torch.load(path)`` reads it with today's default ``weights_only=True`` -- the safe loader,
which refuses to run arbitrary pickled code -- and so does the official ``find_model``. (The
numpy and Python generator states are therefore stored as int64 tensors, not as the tuples
``np.random.get_state()`` and ``random.getstate()`` return.)

Checkpoints are written atomically (minidit/files.py): to a temporary file in the same folder,
flushed and fsynced, then renamed over the final name with ``os.replace``. A crash or a SIGKILL
half-way through leaves at worst a stray ``*.tmp.<pid>`` file (removed when the run resumes),
never a truncated ``.pt``; a full disk raises "disk full while writing <file>: N bytes free" and
leaves the older checkpoints as they were.
"""
from __future__ import annotations

import pickle
import random
import re
from pathlib import Path

import numpy as np
import torch

from minidit.files import atomic_write

CKPT_NAME = re.compile(r"^(\d{7,})\.pt$")
FORMAT = "minidit-train-v2"  # v2: generator states as tensors (v1 held numpy/tuple objects)


def checkpoint_path(ckpt_dir: str | Path, step: int) -> Path:
    """``ckpt_dir/0050000.pt``: seven digits, as the official code names them."""
    return Path(ckpt_dir) / f"{step:07d}.pt"


def rng_state() -> dict:
    """Every random generator the training loop draws from, captured now, as tensors and plain values."""
    _, keys, pos, has_gauss, cached_gaussian = np.random.get_state()  # MT19937: 624 uint32 words + position
    version, words, gauss_next = random.getstate()  # Python's MT19937: 625 ints (624 words + position)
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached_gaussian)},
        "python": {"version": version, "words": torch.tensor(words, dtype=torch.int64), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Put back the generators captured by ``rng_state`` (CUDA only if both runs had it).

    Also reads the tuples of a v1 checkpoint (``np.random.get_state()``/``random.getstate()`` as is).
    """
    torch.set_rng_state(state["torch"].cpu() if torch.is_tensor(state["torch"]) else state["torch"])
    np_state, py_state = state["numpy"], state["python"]
    if isinstance(np_state, dict):
        np_state = ("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"], np_state["has_gauss"],
                    np_state["cached_gaussian"])
    np.random.set_state(np_state)
    if isinstance(py_state, dict):
        py_state = (py_state["version"], tuple(py_state["words"].tolist()), py_state["gauss_next"])
    random.setstate(py_state)
    if "cuda" in state and torch.cuda.is_available():
        states = state["cuda"]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in states])


def atomic_save(obj, path: str | Path) -> Path:
    """``torch.save`` to ``path`` so that readers see the old file or the complete new one (see files.py)."""
    with atomic_write(path) as f:
        torch.save(obj, f)
    return Path(path)


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


def _numpy_globals() -> list:
    """What a v1 checkpoint's numpy generator state needs from the unpickler (arrays of uint32)."""
    core = getattr(np, "_core", None) or np.core
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Read a checkpoint with the safe loader (``weights_only=True``); clear errors naming the file.

    A v1 minidit checkpoint (numpy arrays in its generator state) is read by allowing exactly the
    numpy array types, nothing else.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; pass an existing .pt file or --resume latest")
    try:
        try:
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError:
            with torch.serialization.safe_globals(_numpy_globals()):
                ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a truncated, corrupt or foreign file
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise ValueError(f"cannot read checkpoint {path}: {reason} (a truncated or corrupt file?)") from e
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


def latest_run_checkpoints(results_dir: str | Path) -> list[Path]:
    """The checkpoints of the newest run in ``results_dir`` that has any, newest first."""
    results_dir = Path(results_dir)
    runs = sorted((p for p in results_dir.glob("[0-9][0-9][0-9]*-*") if p.is_dir() and p.name.split("-")[0].isdigit()),
                  key=lambda p: int(p.name.split("-")[0]), reverse=True) if results_dir.is_dir() else []
    for run in runs:
        ckpts = list_checkpoints(run / "checkpoints")
        if ckpts:
            return [path for _, path in reversed(ckpts)]
    raise FileNotFoundError(f"--resume latest: no checkpoint found under {results_dir}/*/checkpoints; "
                            f"pass a checkpoint path or check --results-dir")


def find_latest(results_dir: str | Path) -> Path:
    """The newest checkpoint of the newest run in ``results_dir`` (what ``--resume latest`` tries first)."""
    return latest_run_checkpoints(results_dir)[0]
