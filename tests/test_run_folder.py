"""A run's history is never lost or mixed: roll-back, one process per folder, failed resumes, signals, full disk."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from minidit import train as train_mod
from minidit.files import TEMP_MARK, DiskFullError
from minidit.training import checkpoint as ck
from minidit.training.runfolder import RunFolder, RunFolderBusy, new_run_folder

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--model", "DiT-P/2", "--global-batch-size", "16", "--grid-columns", "0", "--log-every", "1"]


@pytest.fixture(autouse=True)
def no_loss_curve(monkeypatch):
    """loss.png is not what these tests are about, and matplotlib takes seconds per picture."""
    monkeypatch.setattr(train_mod, "save_loss_curve", lambda *args, **kwargs: None)


def steps(folder: Path) -> list[int]:
    return [s for s, _ in ck.list_checkpoints(folder)]


def metric_steps(path: Path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` and a hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_roll_back_sets_the_later_history_aside_and_metrics_hold_each_step_once(tmp_path):
    run = train_mod.main(["--results-dir", str(tmp_path), *FAST, "--max-steps", "6", "--ckpt-every", "2",
                          "--keep-last", "0"])
    assert steps(run / "checkpoints") == [2, 4, 6] and metric_steps(run / "metrics.jsonl") == [1, 2, 3, 4, 5, 6]
    old = {s: ck.load_checkpoint(p)["model"] for s, p in ck.list_checkpoints(run / "checkpoints")}
    # roll back to step 2 and train a new branch (another learning rate) to step 5, keeping the newest 2
    again = train_mod.main(["--results-dir", str(tmp_path), "--resume", str(run / "checkpoints" / "0000002.pt"),
                            "--max-steps", "5", "--lr", "1e-3", "--keep-last", "2"])
    assert again == run
    # the new branch: pruning kept its newest two; --resume latest finds its newest
    assert steps(run / "checkpoints") == [4, 5]
    assert ck.find_latest(tmp_path) == run / "checkpoints" / "0000005.pt"
    new4 = ck.load_checkpoint(run / "checkpoints" / "0000004.pt")["model"]
    assert not torch.equal(new4["x_embedder.proj.weight"], old[4]["x_embedder.proj.weight"])
    # the abandoned branch: set aside, complete and untouched
    (aside,) = (run / "set-aside").iterdir()
    assert aside.name.endswith("-after-step-0000002")
    assert steps(aside / "checkpoints") == [4, 6]
    kept = ck.load_checkpoint(aside / "checkpoints" / "0000006.pt")["model"]
    assert all(torch.equal(kept[k], old[6][k]) for k in kept)
    assert metric_steps(aside / "metrics.jsonl") == [3, 4, 5, 6]
    # metrics.jsonl: each step once, the new branch's after step 2
    assert metric_steps(run / "metrics.jsonl") == [1, 2, 3, 4, 5]
    log = (run / "log.txt").read_text()
    assert f"is set aside in {aside}" in log and "resumed from" in log


def test_resume_latest_skips_a_corrupt_newest_checkpoint_and_clears_stale_temp_files(tmp_path):
    run = train_mod.main(["--results-dir", str(tmp_path), *FAST, "--max-steps", "4", "--ckpt-every", "2",
                          "--keep-last", "0"])
    newest = run / "checkpoints" / "0000004.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # a write cut short by a failing disk
    stale = run / "checkpoints" / f"0000006.pt{TEMP_MARK}999999999"  # a killed writer's leftovers
    stale.write_bytes(b"half")
    train_mod.main(["--results-dir", str(tmp_path), "--resume", "latest", "--max-steps", "3"])
    log = (run / "log.txt").read_text()
    assert f"cannot read checkpoint {newest}" in log and "resuming from the checkpoint before it" in log
    assert "resumed from" in log and "0000002.pt at step 2" in log
    assert "removed 1 temporary file(s)" in log and not stale.exists()
    assert steps(run / "checkpoints") == [2, 3]
    assert ck.load_checkpoint(run / "checkpoints" / "0000003.pt")["step"] == 3
    (aside,) = (run / "set-aside").iterdir()
    assert steps(aside / "checkpoints") == [4]  # the unreadable file is kept, out of the way


def test_a_failed_resume_changes_nothing_in_the_run_folder(tmp_path):
    run = train_mod.main(["--results-dir", str(tmp_path), *FAST, "--max-steps", "2"])
    ckpt = str(run / "checkpoints" / "0000002.pt")
    before = snapshot(tmp_path)
    with pytest.raises(ValueError) as info:  # another model
        train_mod.main(["--results-dir", str(tmp_path), "--resume", ckpt, "--model", "DiT-S/2"])
    assert str(info.value) == (f"{ckpt} holds a DiT-P/2 but --model DiT-S/2 was asked for; leave out --model to "
                               f"resume it, or start a new run without --resume")
    with pytest.raises(ValueError, match=r"holds a DiT-P/2 on 1x8x8 inputs, 10 classes, learn_sigma True, but this "
                                         r"run asks for a DiT-P/2 on 1x8x8 inputs, 12 classes"):
        train_mod.main(["--results-dir", str(tmp_path), "--resume", ckpt, "--num-classes", "12"])
    with pytest.raises(ValueError, match=r"is at step 2 and this run ends at step 2: nothing to train; pass "
                                         r"--max-steps larger than 2"):
        train_mod.main(["--results-dir", str(tmp_path), "--resume", ckpt])
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        bad = tmp_path / "bad.pt"
        bad.write_bytes(b"\x00not a checkpoint")
        train_mod.main(["--results-dir", str(tmp_path), "--resume", str(bad)])
    bad.unlink()
    assert snapshot(tmp_path) == before  # no args.json rewritten, no log line, no new folder


def test_one_process_per_run_folder_and_fresh_runs_never_share_one(tmp_path):
    run = train_mod.main(["--results-dir", str(tmp_path), *FAST, "--max-steps", "1"])
    holder = RunFolder(run).lock()  # as if another process were training in it
    try:
        with pytest.raises(RunFolderBusy, match=rf"run folder {run} is in use by process {os.getpid()} \(on "):
            train_mod.main(["--results-dir", str(tmp_path), "--resume", "latest", "--max-steps", "2"])
    finally:
        holder.release()
    assert not (run / ".lock").exists() and steps(run / "checkpoints") == [1]
    # eight runs starting at the same moment get eight folders with eight different numbers
    start, made = threading.Barrier(8), []

    def make():
        start.wait()
        made.append(new_run_folder(tmp_path / "many", "DiT-P/2", "digits"))

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(int(p.name[:3]) for p in made) == list(range(8))


def test_disk_full_while_checkpointing_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    real_save = torch.save

    def save(obj, f, *args, **kwargs):  # the disk fills up half-way through the step-4 checkpoint
        if isinstance(obj, dict) and obj.get("step") == 4:
            f.write(b"the first bytes of a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    argv = ["--results-dir", str(tmp_path), *FAST, "--max-steps", "6", "--ckpt-every", "2"]
    monkeypatch.setattr("sys.argv", ["minidit.train", *argv])
    with pytest.raises(SystemExit) as info:
        train_mod.cli()
    run = next(tmp_path.iterdir())
    good = run / "checkpoints" / "0000002.pt"
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: disk full while writing {run / 'checkpoints' / '0000004.pt'}: ")
    assert err.rstrip().endswith(f"bytes free; the last good checkpoint is {good}")
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["0000002.pt"]  # no partial file
    assert torch.load(good)["step"] == 2
    assert "error: disk full while writing" in (run / "log.txt").read_text()  # the log says why it stopped


def start_training(results: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "minidit.train", "--results-dir", str(results), *FAST, "--max-steps", "100000",
           "--ckpt-every", "100000", "--threads", "1"]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigterm_and_ctrl_c_save_the_current_step_and_exit_with_one_line(tmp_path):
    procs = {sig: start_training(tmp_path / sig.name) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for sig, proc in procs.items():
            deadline = time.time() + 120
            while not list((tmp_path / sig.name).glob("*/metrics.jsonl")) and time.time() < deadline:
                time.sleep(0.2)
            proc.send_signal(sig)
        outputs = {sig: proc.communicate(timeout=120) for sig, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    for sig, (out, err) in outputs.items():
        assert procs[sig].returncode == 128 + sig, out[-2000:] + err[-2000:]
        assert "Traceback" not in out + err and err.strip() == ""
        run = next((tmp_path / sig.name).iterdir())
        (step, path), = ck.list_checkpoints(run / "checkpoints")
        assert out.splitlines()[-1].endswith(f"stopped by {sig.name} at step {step}: saved checkpoint {path}; "
                                             f"continue with --resume latest")
        assert metric_steps(run / "metrics.jsonl") == list(range(1, step + 1))
        assert torch.load(path)["step"] == step
    # and the run continues from there
    run = next((tmp_path / "SIGTERM").iterdir())
    (step, _), = ck.list_checkpoints(run / "checkpoints")
    train_mod.main(["--results-dir", str(tmp_path / "SIGTERM"), "--resume", "latest", "--max-steps", str(step + 1)])
    assert steps(run / "checkpoints")[-1] == step + 1 and metric_steps(run / "metrics.jsonl")[-2:] == [step, step + 1]


def test_cli_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, monkeypatch):
    run = train_mod.main(["--results-dir", str(tmp_path), *FAST, "--max-steps", "1"])
    ckpt = run / "checkpoints" / "0000001.pt"
    argv = ["--results-dir", str(tmp_path), "--resume", str(ckpt), "--num-classes", "12"]
    out = subprocess.run([sys.executable, "-m", "minidit.train", *argv], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and out.stderr.startswith(f"error: {ckpt} holds a DiT-P/2 on 1x8x8 inputs")
    monkeypatch.setattr("sys.argv", ["minidit.train", *argv, "--debug"])
    with pytest.raises(ValueError, match="holds a DiT-P/2"):  # the exception itself, with its traceback
        train_mod.cli()


def test_pictures_and_args_are_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    """A sample grid, loss.png and args.json that fail half-way (a full disk) leave the old file as it was."""
    import matplotlib.figure
    from PIL import Image

    from minidit.training.logger import write_json
    from minidit.training.plots import save_grid, save_loss_curve

    grid, curve, args = tmp_path / "samples_0000002.png", tmp_path / "loss.png", tmp_path / "args.json"
    save_grid(torch.zeros(4, 1, 8, 8), grid, rows=2)
    save_loss_curve([{"step": 1, "mse": 1.0, "vb": 0.1}, {"step": 2, "mse": 0.5, "vb": 0.05}], curve)
    write_json(args, {"lr": 1e-4})
    before = snapshot(tmp_path)

    def full(self, fp, *a, **k):  # PIL and matplotlib both end in a write to the open file
        fp.write(b"\x89PNG half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full)
    with pytest.raises(DiskFullError, match=f"disk full while writing {grid}"):
        save_grid(torch.ones(4, 1, 8, 8), grid, rows=2)
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full)
    with pytest.raises(DiskFullError, match=f"disk full while writing {curve}"):
        save_loss_curve([{"step": 1, "mse": 2.0, "vb": 0.2}], curve)
    monkeypatch.setattr(os, "fsync", lambda fd: no_space())  # the disk fills up while the bytes are flushed
    with pytest.raises(DiskFullError, match=f"disk full while writing {args}"):
        write_json(args, {"lr": 2e-4})
    assert snapshot(tmp_path) == before  # the old files, and no temporary ones
    assert json.loads(args.read_text()) == {"lr": 1e-4}


def no_space():
    raise OSError(errno.ENOSPC, "No space left on device")
