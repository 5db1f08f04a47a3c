"""Checkpoints: atomic writes, pruning, exact resume, and surviving a SIGKILL."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from minidit import train as train_mod
from minidit.training import checkpoint as ck

ROOT = Path(__file__).resolve().parents[1]
# no sample grids (--grid-columns 0): these tests are about checkpoints
FAST = ["--model", "DiT-P/2", "--global-batch-size", "16", "--grid-columns", "0", "--log-every", "1"]


def test_atomic_save_never_leaves_a_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "0000001.pt"
    ck.atomic_save({"w": torch.ones(3)}, path)

    def broken_save(obj, f):  # dies half-way through writing
        f.write(b"partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        ck.atomic_save({"w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path)["w"], torch.ones(3))  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["0000001.pt"]  # no temp file left


def test_prune_keeps_last_k_and_milestones(tmp_path):
    for step in (100, 200, 300, 400, 500, 600):
        ck.atomic_save({"step": step}, ck.checkpoint_path(tmp_path, step))
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    ck.prune_checkpoints(tmp_path, keep_last=2, milestone_every=200)
    assert [s for s, _ in ck.list_checkpoints(tmp_path)] == [200, 400, 500, 600]
    assert (tmp_path / "notes.txt").exists()


def test_find_latest_and_bad_files(tmp_path):
    for run, steps in (("000-DiT-P-2-digits", [5, 10]), ("001-DiT-P-2-digits", [3])):
        for s in steps:
            ck.atomic_save({"step": s}, ck.checkpoint_path(tmp_path / run / "checkpoints", s))
    assert ck.find_latest(tmp_path) == tmp_path / "001-DiT-P-2-digits" / "checkpoints" / "0000003.pt"
    with pytest.raises(FileNotFoundError, match="no checkpoint found"):
        ck.find_latest(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ck.load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        ck.load_checkpoint(tmp_path / "junk.pt")


def test_checkpoints_load_with_torch_load_defaults_and_v1_files_still_resume(tmp_path):
    """``torch.load(path)`` uses ``weights_only=True`` since torch 2.6 (the official ``find_model`` too):
    every key of a minidit checkpoint must be a tensor or a plain value. (The torchrun checkpoint, with
    every rank's generators, is loaded the same way in tests/test_distributed.py.)"""
    run = train_mod.main(["--results-dir", str(tmp_path), *FAST, "--max-steps", "1"])
    path = ck.list_checkpoints(run / "checkpoints")[-1][1]
    state = torch.load(path, weights_only=True)
    assert state["format"] == "minidit-train-v2" and state["step"] == 1
    assert torch.is_tensor(state["rng"]["numpy"]["keys"]) and torch.is_tensor(state["rng"]["python"]["words"])

    def draws():  # from every generator the trainer uses, Gaussian caches included
        return [torch.rand(3), np.random.rand(3), np.random.randn(), random.random(), random.gauss(0, 1)]

    def same(a, b):
        return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a, b))

    np.random.randn(), random.gauss(0, 1)  # leave a cached Gaussian in both
    live = ck.rng_state()
    first = draws()
    ck.set_rng_state(torch.load(ck.atomic_save({"rng": live}, tmp_path / "r.pt"), weights_only=True)["rng"])
    assert same(first, draws())
    # a v1 checkpoint (numpy's and Python's generator states pickled as they are) still loads and resumes
    v1_rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    first = draws()
    ck.atomic_save(dict(state, rng=v1_rng, format="minidit-train-v1"), tmp_path / "v1.pt")
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(tmp_path / "v1.pt", weights_only=True)  # why v2 stores tensors
    ck.set_rng_state(ck.load_checkpoint(tmp_path / "v1.pt")["rng"])
    assert same(first, draws())


def _final(run: Path) -> dict:
    return ck.load_checkpoint(ck.list_checkpoints(run / "checkpoints")[-1][1])


def test_resume_is_exact(tmp_path):
    """Stopped at step 3 and resumed to 7 == straight to 7, bit for bit (model, EMA, optimizer).

    80 training digits in batches of 32 make 2 batches per epoch, so the run crosses epochs and
    the stop at step 3 lands mid-epoch (epoch 1, batch 1): a data-position bug would show.
    """
    common = [*FAST, "--global-batch-size", "32", "--train-samples", "80", "--ckpt-every", "100",
              "--global-seed", "3"]
    straight = train_mod.main(["--results-dir", str(tmp_path / "a"), *common, "--max-steps", "7"])
    first = train_mod.main(["--results-dir", str(tmp_path / "b"), *common, "--max-steps", "3"])
    stopped = ck.list_checkpoints(first / "checkpoints")[-1][1]
    assert _final(first)["step"] == 3 and _final(first)["batch_in_epoch"] == 1
    resumed = train_mod.main(["--results-dir", str(tmp_path / "b"), "--resume", str(stopped),
                              "--max-steps", "7"])
    assert resumed == first  # continues in the same run folder
    a, b = _final(straight), _final(resumed)
    assert a["step"] == b["step"] == 7
    for key in ("model", "ema"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name} differs after resume"
    for sa, sb in zip(a["opt"]["state"].values(), b["opt"]["state"].values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"]) and torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    # and resuming really mattered: a different seed gives different weights
    assert "(step=0000004)" in (first / "log.txt").read_text()


def test_sigkill_while_checkpointing_leaves_a_loadable_checkpoint(tmp_path):
    """Kill -9 a run that checkpoints every step; the newest complete .pt must load."""
    cmd = [sys.executable, "-m", "minidit.train", "--results-dir", str(tmp_path), *FAST,
           "--max-steps", "100000", "--ckpt-every", "1", "--keep-last", "3"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            found = list(tmp_path.glob("*/checkpoints/*.pt"))
            if len(found) >= 2 and max(ck.CKPT_NAME.match(p.name) and int(p.stem) for p in found) >= 4:
                break
            time.sleep(0.05)
        time.sleep(0.13)  # land somewhere inside the next write
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    ckpts = ck.list_checkpoints(next(tmp_path.iterdir()) / "checkpoints")
    assert len(ckpts) >= 1
    for step, path in ckpts:  # every visible checkpoint is complete, the newest included
        state = ck.load_checkpoint(path)
        assert state["step"] == step and "ema" in state
    assert len(ckpts) <= 3 + 1  # pruning ran (keep 3, plus at most one being written)
