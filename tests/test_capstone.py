"""The capstone runs the student's own code end to end: train (chapters 1-6), sample (1-7), judge.

A student's folder here is a copy of the reference answers: the capstone on it must give exactly
minidit's result, and a copy with one sabotaged line a different one -- proof that the student's
functions, not minidit's, were the ones that ran. Smoke sizes: a few steps, a few samples.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minidit.capstone import latest_checkpoint, sample_my_dit, train_my_dit
from minidit.impl import active_impl
from repo_tools import load_tool

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--max-steps", "6", "--ckpt-every", "6", "--log-every", "3", "--threads", "1"]


def student_copy(folder: Path, sabotage: dict[str, tuple[str, str]] | None = None) -> Path:
    """The reference answers copied into ``folder``, with ``{stem: (line, replacement)}`` changed."""
    shutil.copytree(ROOT / "solutions", folder)
    for stem, (old, new) in (sabotage or {}).items():
        path = folder / f"{stem}.py"
        text = path.read_text()
        assert old in text, f"{old!r} is not in {path.name}"
        path.write_text(text.replace(old, new))
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Train once with minidit, once with a copy of the answers, once with a sabotaged copy."""
    base = tmp_path_factory.mktemp("capstone")
    mine = student_copy(base / "mine")
    broken = student_copy(base / "broken", {
        # chapter 1: the noise enters x_t with the wrong sign
        "ch01_forward_process": ("return torch.sqrt(alpha_bar_t) * x_0 + torch.sqrt(1 - alpha_bar_t) * eps",
                                 "return torch.sqrt(alpha_bar_t) * x_0 - torch.sqrt(1 - alpha_bar_t) * eps"),
        # chapter 7: the ancestral step forgets its noise
        "ch07_sampling": ("sample = out[\"mean\"] + nonzero * torch.exp(0.5 * out[\"log_variance\"]) * noise",
                          "sample = out[\"mean\"]"),
    })
    found = {}
    for name, impl in (("minidit", "minidit"), ("mine", str(mine)), ("broken", str(broken))):
        torch.manual_seed(0)
        found[name] = train_my_dit(impl, smoke_mode=True, results_dir=base / f"runs-{name}", extra_args=FAST)
        assert active_impl() is None  # the switch is off again afterwards
    return dict(found, mine_folder=mine, broken_folder=broken, base=base)


def weights(run_dir: Path) -> dict:
    return torch.load(latest_checkpoint(run_dir.parent), map_location="cpu", weights_only=False)


def test_training_on_the_students_code(runs):
    ref, mine, broken = weights(runs["minidit"]), weights(runs["mine"]), weights(runs["broken"])
    assert ref["step"] == mine["step"] == 6
    for key in ("model", "ema"):
        # the reference answers are minidit's code: the same weights to the last bit
        assert all(torch.equal(ref[key][n], mine[key][n]) for n in ref[key]), key
        # a wrong sign in the student's chapter 1 changes the trained model: their code ran
        assert not all(torch.equal(ref[key][n], broken[key][n]) for n in ref[key]), key


def test_sampling_and_judging_with_the_students_sampler(runs):
    ckpt = latest_checkpoint(runs["base"] / "runs-minidit")
    kwargs = dict(smoke_mode=True, ckpt=ckpt, num_samples=10)
    ref = sample_my_dit("minidit", **kwargs)
    mine = sample_my_dit(str(runs["mine_folder"]), **kwargs)
    broken = sample_my_dit(str(runs["broken_folder"]), **kwargs)
    assert torch.equal(ref["samples"], mine["samples"]) and ref["accuracy"] == mine["accuracy"]
    assert not torch.equal(ref["samples"], broken["samples"])  # the student's p_sample ran
    assert 0.0 <= mine["accuracy"] <= 1.0 and mine["samples"].shape == (10, 1, 8, 8)
    assert active_impl() is None


def test_an_unfinished_exercise_stops_the_command_lines_with_one_line(runs, tmp_path):
    """From the shell (--impl), an untouched stub is one line on stderr, exit code 2, no traceback."""
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    files, _ = load_tool("make_exercises").expected_files(root=tmp_path)  # fresh stubs, whatever exercises/ holds
    for stem in ("ch06_training", "ch07_sampling"):
        (stubs / f"{stem}.py").write_text(files[tmp_path / "exercises" / f"{stem}.py"])
    train = subprocess.run([sys.executable, "-m", "minidit.train", "--impl", f"{stubs}:ch06", "--max-steps", "1",
                            "--results-dir", str(tmp_path / "r"), "--threads", "1"],
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert train.returncode == 2, train.stderr[-2000:]
    assert train.stderr.strip().count("\n") == 0 and "Traceback" not in train.stderr, train.stderr[-2000:]
    assert train.stderr.startswith("error: EXERCISE ch06.split_global_batch is not done yet: write it in ")
    assert f"--impl minidit" in train.stderr  # chapter 6 was the only one: minidit's own code runs it
    ckpt = latest_checkpoint(runs["base"] / "runs-minidit")
    sample = subprocess.run([sys.executable, "-m", "minidit.sample", "--impl", f"{stubs}:ch07", "--ckpt", str(ckpt),
                             "--num-samples", "2", "--out", str(tmp_path / "s.png"), "--no-progress"],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert sample.returncode == 2 and sample.stderr.strip().count("\n") == 0, sample.stderr[-2000:]
    assert sample.stderr.startswith("error: EXERCISE ch07.") and "Traceback" not in sample.stderr
