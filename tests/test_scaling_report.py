"""``scaling --report --json``: one JSON object from a folder of result files, correlations exact."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minidit.experiments import common, grid, scaling

ROOT = Path(__file__).resolve().parents[1]

# model -> (Gflops, final FID per seed): hand-made numbers, two seeds each, one seed missing for T/4
GRID = {"DiT-P/4": (0.0011, {0: 40.0, 1: 44.0}), "DiT-P/2": (0.0035, {0: 30.0, 1: 26.0}),
        "DiT-N/4": (0.0052, {0: 33.0, 1: 29.0}), "DiT-T/4": (0.0140, {0: 12.5})}


def write_grid(folder: Path) -> None:
    """Result files as ``grid.run_grid`` writes them (one JSON per model and seed), plus a diverged run."""
    recipe = common.Recipe(steps=100, fractions=(0.5, 1.0))
    for model, (gflops, fids) in GRID.items():
        for seed, fid in fids.items():
            spec = recipe.spec(model, seed=seed)
            checkpoints = [dict(step=s, fid=fid + (10.0 if s < spec.steps else 0.0), loss=0.1,
                                images_seen=s * spec.batch_size,
                                train_compute_gflops=3 * gflops * spec.batch_size * s, train_seconds=1.0)
                           for s in spec.checkpoints]
            grid.save_result(folder, spec, dict(spec=spec.to_json(), params=1000, gflops=gflops, tokens=4,
                                                  checkpoints=checkpoints, sweep=[], train_seconds=1.0,
                                                  eval_seconds=1.0, images_per_second=1.0, torch_threads=1))
    spec = recipe.spec("DiT-N/2", seed=0)  # diverged at step 70: no final checkpoint, so not a config
    last = dict(step=50, fid=90.0, loss=0.1, images_seen=50 * spec.batch_size,
                train_compute_gflops=3 * 0.02 * spec.batch_size * 50, train_seconds=1.0)
    grid.save_result(folder, spec, dict(spec=spec.to_json(), params=1000, gflops=0.02, tokens=16, checkpoints=[last],
                                          sweep=[], diverged_at_step=70, train_seconds=1.0, eval_seconds=1.0,
                                          images_per_second=1.0, torch_threads=1))


def expected():
    models = list(GRID)
    g = np.array([GRID[m][0] for m in models])
    f = np.array([np.mean(list(GRID[m][1].values())) for m in models])  # seed means
    return g, f


def check(report: dict) -> None:
    assert set(report) == {"configs", "r_loglog", "r_raw", "spearman", "models"}
    assert report["models"] == 4
    configs = report["configs"]
    assert [(c["model"], c["seed"]) for c in configs] == [
        ("DiT-P/4", 0), ("DiT-P/4", 1), ("DiT-P/2", 0), ("DiT-P/2", 1), ("DiT-N/4", 0), ("DiT-N/4", 1),
        ("DiT-T/4", 0)]
    for c in configs:  # the final checkpoint's FID, not the earlier one
        assert c["fid"] == GRID[c["model"]][1][c["seed"]] and c["gflops"] == GRID[c["model"]][0]
    g, f = expected()
    assert report["r_loglog"] == pytest.approx(np.corrcoef(np.log(g), np.log(f))[0, 1], abs=1e-12)
    assert report["r_raw"] == pytest.approx(np.corrcoef(g, f)[0, 1], abs=1e-12)
    # seed means 42, 28, 31, 12.5 against Gflops in increasing order: ranks of FID 4, 2, 3, 1
    assert report["spearman"] == pytest.approx(np.corrcoef([1, 2, 3, 4], [4, 2, 3, 1])[0, 1], abs=1e-12)
    assert report["spearman"] == pytest.approx(-0.8)


def test_report_json_is_one_object_with_exact_correlations(tmp_path, capsys):
    write_grid(tmp_path)
    scaling.main(["--report", "--json", "--out", str(tmp_path)])
    check(json.loads(capsys.readouterr().out))  # the whole of stdout is one JSON object


def test_report_json_from_the_command_line(tmp_path):
    write_grid(tmp_path)
    out = subprocess.run([sys.executable, "-m", "minidit.experiments.scaling", "--report", "--json", "--out",
                          str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=300, check=True).stdout
    check(json.loads(out))


def test_report_json_of_an_empty_folder_and_spearman_ties(tmp_path, capsys):
    scaling.main(["--report", "--json", "--out", str(tmp_path)])
    assert json.loads(capsys.readouterr().out) == dict(configs=[], r_loglog=None, r_raw=None, spearman=None,
                                                       models=0)
    # ties share their mean rank: ranks 1, 2.5, 2.5, 4
    assert scaling.spearman_correlation([1, 2, 3, 4], [1, 5, 5, 9]) == pytest.approx(
        np.corrcoef([1, 2, 3, 4], [1, 2.5, 2.5, 4])[0, 1])
    # the tables state Spearman beside the two Pearson values
    write_grid(tmp_path)
    results = grid.load_results(tmp_path)
    assert len(results) == 8 and scaling.correlations(results)["spearman"] == pytest.approx(-0.8)  # diverged: left out
    assert "Spearman's rank correlation -0.800" in scaling.summarize(results)
