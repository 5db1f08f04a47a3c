"""torchrun on CPU: 2 gloo processes share the batch, stay in sync, and exit 0."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minidit.training.checkpoint import list_checkpoints, load_checkpoint
from minidit.training.distributed import rank_seed, split_global_batch

ROOT = Path(__file__).resolve().parents[1]


def test_split_and_seeds():
    assert split_global_batch(256, 8) == 32
    with pytest.raises(ValueError, match="not divisible by the number of processes"):
        split_global_batch(10, 4)
    assert [rank_seed(5, 4, r) for r in range(4)] == [20, 21, 22, 23]


def test_torchrun_two_processes_gloo(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "minidit.train", "--results-dir", str(tmp_path), "--model", "DiT-P/2",
           "--global-batch-size", "32", "--max-steps", "3", "--log-every", "1", "--num-sampling-steps", "2",
           "--grid-columns", "1", "--device", "cpu"]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    runs = list(tmp_path.iterdir())
    assert len(runs) == 1  # only rank 0 writes a run folder
    log = (runs[0] / "log.txt").read_text()
    assert "2 process(es)" in log and "ranks in sync: True" in log
    assert log.count("(step=0000003)") == 1  # logged once, by rank 0
    ck = load_checkpoint(list_checkpoints(runs[0] / "checkpoints")[-1][1])
    assert ck["step"] == 3 and ck["args"]["world_size"] == 2
    # both ranks' RNG states were saved (for resume) and differ (each rank its own seed)
    states = ck["rng_per_rank"]
    assert len(states) == 2 and not torch.equal(states[0]["torch"], states[1]["torch"])


def test_batch_not_divisible_by_world_size_fails_before_training(tmp_path, monkeypatch):
    from minidit import train as train_mod
    from minidit.training.distributed import DistInfo

    monkeypatch.setattr(train_mod, "init_distributed", lambda device=None: DistInfo(rank=0, world_size=2))
    with pytest.raises(ValueError, match=r"--global-batch-size 33 is not divisible by the number of processes \(2\)"):
        train_mod.main(["--results-dir", str(tmp_path), "--model", "DiT-P/2", "--global-batch-size", "33"])
