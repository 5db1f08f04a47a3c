"""torchrun on CPU: 2 gloo processes share the batch, stay in sync, exit 0 -- and when one fails, all
stop within seconds with the reason printed once (every run bounded by a timeout, so a hang fails)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
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


def torchrun(*args: str, timeout: float = 150, **env) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``torchrun --nproc_per_node 2 ARGS`` on CPU; the result and its wall time."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    t0 = time.time()
    out = subprocess.run(cmd, cwd=ROOT, env=dict(os.environ, OMP_NUM_THREADS="1", **env), capture_output=True,
                         text=True, timeout=timeout)
    return out, time.time() - t0


def our_errors(out: subprocess.CompletedProcess) -> list[str]:
    """The error lines minidit printed (torchrun adds its own report, which is not ours)."""
    return [line for line in (out.stdout + out.stderr).splitlines() if re.match(r"^(error|stopping)\b", line)]


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
    ck = torch.load(list_checkpoints(runs[0] / "checkpoints")[-1][1], weights_only=True)  # the safe loader
    assert ck["step"] == 3 and ck["args"]["world_size"] == 2
    # both ranks' RNG states were saved (for resume) and differ (each rank its own seed)
    states = ck["rng_per_rank"]
    assert len(states) == 2 and not torch.equal(states[0]["torch"], states[1]["torch"])


def test_batch_not_divisible_by_world_size_fails_before_training(tmp_path, monkeypatch):
    from minidit import train as train_mod
    from minidit.training.distributed import DistInfo

    monkeypatch.setattr(train_mod, "init_distributed", lambda device=None, timeout_s=None: DistInfo(rank=0, world_size=2))
    with pytest.raises(ValueError, match=r"--global-batch-size 33 is not divisible by the number of processes \(2\)"):
        train_mod.main(["--results-dir", str(tmp_path), "--model", "DiT-P/2", "--global-batch-size", "33"])


FAULTY = str(ROOT / "tests" / "faulty_train.py")
SMALL = ["--model", "DiT-P/2", "--global-batch-size", "8", "--grid-columns", "0", "--log-every", "1",
         "--ckpt-every", "2", "--max-steps", "6", "--device", "cpu"]


@pytest.mark.parametrize("fault", ["data", "disk", "results-dir"])
def test_when_one_rank_fails_every_rank_stops_and_the_error_is_printed_once(tmp_path, fault):
    """Rank 1's data breaks, the disk fills up under rank 0's checkpoint, rank 0 cannot make the run folder."""
    results = tmp_path / "runs"
    if fault == "results-dir":
        results.write_text("a file where the results folder should be")
    out, _ = torchrun(FAULTY, "--results-dir", str(results), *SMALL, FAULT=fault)
    text = out.stdout + out.stderr
    assert out.returncode != 0, text[-3000:]
    assert "minidit/" not in text, text[-3000:]  # no traceback through minidit's code, on any rank
    expected = {
        "data": "error (rank 1): Input/output error: data/broken.png",
        "disk": f"error: disk full while writing {results}/000-DiT-P-2-digits/checkpoints/0000004.pt: ",
        "results-dir": f"error: --results-dir {results} is a file, not a folder; pass a folder",
    }[fault]
    assert len(our_errors(out)) == 1 and our_errors(out)[0].startswith(expected), text[-3000:]
    if fault == "disk":  # the last good checkpoint stays, loadable
        ckpts = list_checkpoints(results / "000-DiT-P-2-digits" / "checkpoints")
        assert [s for s, _ in ckpts] == [2] and torch.load(ckpts[0][1], weights_only=True)["step"] == 2
        assert our_errors(out)[0].endswith(f"the last good checkpoint is {ckpts[0][1]}")


def test_a_stuck_rank_cannot_keep_the_others_waiting(tmp_path):
    """Rank 1 stops answering (alive, not dead): rank 0 gives up after --dist-timeout, torchrun then
    sends rank 1 SIGTERM, and rank 1's watchdog ends it though its loop never comes back."""
    # no checkpoint before the hang: rank 0's writing must not take longer than the short timeout
    out, _ = torchrun(FAULTY, "--results-dir", str(tmp_path), *SMALL, "--ckpt-every", "100", "--dist-timeout", "5",
                      FAULT="hang")
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "minidit/" not in text, text[-3000:]
    assert our_errors(out) == [
        "error: stopped: another process of the job did not answer within 5 s (--dist-timeout); it may be stuck",
        "stopping: no step finished within 15 s of SIGTERM (the process is stuck, e.g. waiting for one that died); "
        "exiting without a checkpoint"], text[-3000:]
    assert "SIGKILL" not in text  # it left by itself, before torchrun's last resort
