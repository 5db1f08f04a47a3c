"""The benchmark scripts run, on CPU, end to end. Their figures are never asserted (speed lives in
benchmarks/, not in tests); what is checked is that they work.

``gpu_check.sh`` is run blind on a GPU machine, in one go within a time budget of a few minutes,
so a broken script there costs the whole measurement. Its CPU dry run takes every step the GPU run
takes (the same scripts, tiny sizes), so it is checked here step by step, with its time budget, its
refusal on a machine without a GPU, and the path without diffusers (a GPU machine without internet
may lack it unless its wheel is carried along).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
TINY = ["--input-size", "8", "--in-channels", "1", "--num-classes", "10"]


def run(cmd: list[str], tmp_path: Path, **env) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, OUT=str(tmp_path), PYTHON=sys.executable, **env)
    return subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=600)


def step_rows(table: str) -> dict[str, str]:
    """The ``### Steps`` table of gpu_table.md as {step name: result}."""
    rows = table.split("### Steps", 1)[1].splitlines()
    cells = [[c.strip() for c in r.strip("|").split("|")] for r in rows if r.startswith("| ")]
    return {c[0]: c[1] for c in cells[1:]}  # cells[0] is the header


def test_gpu_check_dry_run_passes_every_step_and_writes_the_tables(tmp_path):
    r = run(["bash", str(SCRIPT), "--cpu-dry-run"], tmp_path)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    table = (tmp_path / "gpu_table.md").read_text()
    steps = step_rows(table)
    assert len(steps) == 9 and set(steps.values()) == {"ok"}, steps
    assert "torchrun resume to step 8" in steps
    for heading in ("### Training step", "### Training throughput of the grid models", "### Model throughput",
                    "### Sampling"):
        assert heading in table
    # the grid step's JSON: a row per model and batch size asked for, in order
    grid = json.loads((tmp_path / "gpu_grid_throughput.json").read_text())
    assert [(r["model"], r["batch_size"]) for r in grid["rows"]] == [
        ("DiT-P/2", 2), ("DiT-P/2", 4), ("DiT-P/4", 2), ("DiT-P/4", 4)]
    assert grid["variant"] == "bf16-fused" and all(r["images_per_second"] > 0 for r in grid["rows"])
    # the training-step table has a row per variant asked for, the diffusers comparison ran
    assert "| bf16-fused | bf16 | no | no | fused |" in table and "| naive-optim | fp32 |" in table
    assert "| official | fp32 | no | no | foreach | loop |" in table  # with the VAE every step
    assert "[PASS] minidit == diffusers" in r.stdout
    assert (tmp_path / "gpu_check.log").read_text().count("-- ") >= 9


def test_gpu_check_skips_steps_that_do_not_fit_its_budget(tmp_path):
    r = run(["bash", str(SCRIPT), "--cpu-dry-run"], tmp_path, GPU_CHECK_BUDGET_S="5")
    assert r.returncode == 0, r.stdout[-3000:]
    steps = step_rows((tmp_path / "gpu_table.md").read_text())
    assert len(steps) == 9 and all(v.startswith("skipped") for v in steps.values()), steps
    assert "FAILED" not in r.stdout


def test_gpu_check_refuses_to_run_without_a_gpu(tmp_path):
    r = run(["bash", str(SCRIPT)], tmp_path, CUDA_VISIBLE_DEVICES="")
    assert r.returncode == 1 and "no CUDA GPU visible" in r.stdout and "--cpu-dry-run" in r.stdout
    r = run(["bash", str(SCRIPT), "--gpu"], tmp_path)
    assert r.returncode == 2 and "usage" in r.stdout


def test_benchmarks_time_minidit_alone_when_diffusers_is_missing(tmp_path):
    hidden = tmp_path / "hide" / "diffusers"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('diffusers hidden by the test')\n")
    env = {"PYTHONPATH": str(tmp_path / "hide")}
    r = run([sys.executable, "benchmarks/bench_model.py", "--device", "cpu", "--models", "DiT-P/2", *TINY,
             "--batch-size", "2", "--reps", "1", "--warmup", "0", "--modes", "fwd", "--precision", "fp32"],
            tmp_path, **env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "diffusers is not installed: timing minidit only" in r.stdout
    row = next(line for line in r.stdout.splitlines() if line.startswith("| DiT-P/2 | fp32 | fwd |"))
    assert row.split("|")[5].strip() == "-"  # no diffusers figure, no invented one
    r = run([sys.executable, "benchmarks/gpu_checks.py", "--device", "cpu", "--model", "DiT-P/2", *TINY,
             "--no-compile"], tmp_path, **env)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    assert "[SKIP] minidit == diffusers" in r.stdout and "2/2 checks passed" in r.stdout
