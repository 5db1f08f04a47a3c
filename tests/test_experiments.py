"""The experiment scripts (chapters 11-13): tiny grids run, cache and resume; the formulas are right.

FID inside these tests uses the raw pixels of an image as its "features" (the ``pixel_features``
fixture of conftest.py), so the tests need neither the offline classifier nor its training time;
the real extractor is exercised by the scripts and notebooks.
"""
from __future__ import annotations

import dataclasses

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from minidit.experiments import ablation, common, cost, frontier, grid, latent, measure, scaling
from minidit.experiments.common import Recipe
from minidit.flops import count_gflops, mfu, peak_throughput, sampling_compute_gflops, training_compute_gflops
from minidit.metrics import fid_from_features
from minidit.models import get_model


def tiny_specs(**kw):
    base = dict(steps=4, fractions=(0.5, 1.0), batch_size=8, fid_samples=80, sampling_steps=2,
                sweep_steps=(1, 2), warmup_steps=1)
    base.update(kw)
    return scaling.grid_specs(("DiT-P/4",), Recipe(**base), seeds=(0,))


def test_grid_runs_caches_and_skips_finished_configs(tmp_path, pixel_features, monkeypatch):
    specs = tiny_specs()
    results = grid.run_grid(specs, tmp_path, desc="test", verbose=False)
    (r,) = results
    path = tmp_path / "DiT-P_4-adaLN-Zero-seed0.json"
    assert path.is_file() and json.loads(path.read_text()) == r
    assert [c["step"] for c in r["checkpoints"]] == [2, 4]
    assert all(math.isfinite(c["fid"]) and c["fid"] > 0 for c in r["checkpoints"])
    g = count_gflops(get_model("DiT-P/4", input_size=8, in_channels=1, num_classes=10))
    assert r["gflops"] == pytest.approx(g) and r["tokens"] == 4
    assert r["checkpoints"][-1]["train_compute_gflops"] == pytest.approx(3 * g * 8 * 4)
    assert [s["num_steps"] for s in r["sweep"]] == [1, 2]
    assert r["sweep"][1]["fid"] == r["checkpoints"][-1]["fid"]  # the 2-step FID is the checkpoint's
    assert r["sweep"][0]["sampling_gflops"] == pytest.approx(g * 1)  # cfg 1.0: one pass per step

    # a rerun trains nothing: any training attempt would fail
    def boom(*a, **k):
        raise AssertionError("a cached config was retrained")
    monkeypatch.setattr(grid, "run_experiment", boom)
    assert grid.run_grid(specs, tmp_path, desc="test", verbose=False) == results
    # a different recipe is not served from the cache
    assert grid.load_result(tmp_path, tiny_specs(steps=6)[0]) is None


def fake_finished(out_dir, spec):
    """A finished result of ``spec`` written where the grid keeps it (no training)."""
    grid.save_result(out_dir, spec, dict(spec=spec.to_json(), checkpoints=[dict(step=spec.steps, fid=50.0)], sweep=[]))


def test_a_grid_never_overwrites_a_finished_run_of_other_settings_in_a_users_folder(tmp_path, monkeypatch):
    """A run's file name has no step count: the grid run and the compute-matched run of one model
    share it. Into one --out folder the second must be refused before anything trains."""
    monkeypatch.setattr(grid, "run_experiment", lambda *a, **k: pytest.fail("trained despite a conflict"))
    short, long = tiny_specs()[0], tiny_specs(steps=6)[0]
    assert short.key() == long.key()
    fake_finished(tmp_path, short)
    before = (tmp_path / f"{short.key()}.json").read_text()
    with pytest.raises(ValueError, match=r"holds a finished run made with other settings \(steps 4 -> 6, "
                                         r"checkpoints \[2, 4\] -> \[3, 6\]\).*another --out folder"):
        grid.run_grid([long], tmp_path, desc="test", verbose=False, keep_others=True)
    assert (tmp_path / f"{short.key()}.json").read_text() == before
    # two runs of ONE grid with one file name: refused whatever the folder
    with pytest.raises(ValueError, match="would both write DiT-P_4-adaLN-Zero-seed0.json.*separate --out"):
        grid.run_grid([short, long], tmp_path / "empty", desc="test", verbose=False)
    # the same spec again is a cache hit, not a conflict
    assert grid.run_grid([short, short], tmp_path, desc="test", verbose=False, keep_others=True)[0]["checkpoints"]


def test_an_unfinished_or_own_cache_result_is_replaced(tmp_path, monkeypatch):
    """In minidit's cache an old result is stale (the recipe changed): it is re-run, as is a file
    that holds no finished run. Only finished runs in a user's folder are kept."""
    trained = []
    monkeypatch.setattr(grid, "run_experiment",
                        lambda spec, **k: trained.append(spec.steps) or dict(spec=spec.to_json(), checkpoints=[
                            dict(step=spec.steps, fid=1.0)], sweep=[]))
    short, long = tiny_specs()[0], tiny_specs(steps=6)[0]
    fake_finished(tmp_path, short)
    grid.run_grid([long], tmp_path, desc="test", verbose=False)            # keep_others=False: replaced
    path = tmp_path / f"{short.key()}.json"
    assert trained == [6] and json.loads(path.read_text())["spec"]["steps"] == 6
    path.write_text(json.dumps(dict(spec=long.to_json(), checkpoints=[], diverged_at_step=1)))
    grid.run_grid([short], tmp_path, desc="test", verbose=False, keep_others=True)  # not finished: replaced
    assert trained == [6, 4]


def test_the_experiment_command_line_refuses_the_overwrite_in_one_line(tmp_path):
    spec = scaling.grid_specs(("DiT-P/8",), scaling.RECIPE, seeds=(0,))[0]
    fake_finished(tmp_path, spec)
    r = subprocess.run([sys.executable, "-m", "minidit.experiments.scaling", "--models", "DiT-P/8", "--seeds", "0",
                        "--steps", "7", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, MINIDIT_SMOKE="0"))
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(f"error: {tmp_path / spec.key()}.json holds a finished run made with other settings "
                               f"(steps {spec.steps:,} -> 7".replace(",", "")) and "Traceback" not in r.stderr


def test_same_spec_same_numbers(tmp_path, pixel_features):
    """Seeded end to end: the same spec gives the same FIDs (so grids are comparable run to run)."""
    spec = tiny_specs(sweep_steps=())[0]
    a = common.run_experiment(spec)
    b = common.run_experiment(spec)
    assert [c["fid"] for c in a["checkpoints"]] == [c["fid"] for c in b["checkpoints"]]


def test_scaling_cli_smoke_and_report(tmp_path, pixel_features, capsys):
    results = scaling.main(["--smoke", "--models", "DiT-P/8,DiT-P/4", "--seeds", "0", "--steps", "4",
                            "--fid-samples", "80", "--sampling-steps", "2", "--sweep-steps", "1,2",
                            "--out", str(tmp_path)])
    assert len(results) == 2 and len(list(tmp_path.glob("*.json"))) == 2
    assert not list(tmp_path.glob("*.claim"))  # every claim released
    # the smoke recipe is the scaling recipe, shorter: glyphs 16x16, cosine lr, beta2 0.99, clipping
    spec = results[0]["spec"]
    assert (spec["dataset"], spec["lr_schedule"], spec["beta2"], spec["clip_denoised"]) == ("glyphs", "cosine", 0.99, True)
    out = capsys.readouterr().out
    assert "Pearson correlation" in out and "| DiT-P/4 (seed 0) | 16 |" in out and "| DiT-P/8 (seed 0) | 4 |" in out
    again = scaling.main(["--report", "--out", str(tmp_path)])
    assert sorted(r["spec"]["model"] for r in again) == ["DiT-P/4", "DiT-P/8"]
    with pytest.raises(SystemExit):
        scaling.main(["--smoke", "--models", "DiT-Q/3", "--out", str(tmp_path)])


def test_matched_runs_spend_the_larger_models_compute():
    """Figure 9's compute-matched runs: each smaller model trained to its larger neighbour's final
    training compute (to half a step), under the same recipe otherwise, longest runs first."""
    specs = scaling.matched_specs()
    gflops = {m: common.model_facts(scaling.RECIPE.spec(m))["gflops"] for m in scaling.ALL_MODELS}
    assert {(s.model, s.seed) for s in specs} == {(a, seed) for a, _ in scaling.MATCHED_PAIRS for seed in scaling.SEEDS}
    assert len(scaling.MATCHED_PAIRS) == 6 and ("DiT-P/8", "DiT-N/8") in scaling.MATCHED_PAIRS
    for s in specs:
        (large,) = [b for a, b in scaling.MATCHED_PAIRS if a == s.model]
        target = training_compute_gflops(gflops[large], s.batch_size, scaling.RECIPE.steps)
        got = training_compute_gflops(gflops[s.model], s.batch_size, s.steps)
        assert abs(got - target) <= training_compute_gflops(gflops[s.model], s.batch_size, 0.5)
        assert s.steps > scaling.RECIPE.steps and s.sweep_steps == () and s.checkpoints[-1] == s.steps
        assert (s.lr, s.lr_schedule, s.dataset, s.fid_samples) == (scaling.RECIPE.lr, "cosine", "glyphs", 500)
    costs = [gflops[s.model] * s.steps for s in specs]
    assert costs == sorted(costs, reverse=True)


def test_scaling_cli_matched_smoke(tmp_path, pixel_features, capsys):
    results = scaling.main(["--smoke", "--matched", "--models", "DiT-P/8", "--seeds", "0", "--steps", "4",
                            "--fid-samples", "80", "--sampling-steps", "2", "--out", str(tmp_path)])
    (r,) = results
    # P/8 trained to N/8's compute: 4 x (N/8 Gflops / P/8 Gflops) steps
    ratio = common.model_facts(scaling.RECIPE.spec("DiT-N/8"))["gflops"] / r["gflops"]
    assert r["spec"]["model"] == "DiT-P/8" and r["spec"]["steps"] == round(4 * ratio) and r["sweep"] == []
    capsys.readouterr()
    scaling.main(["--report", "--matched", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert f"| DiT-P/8 (seed 0) | {r['spec']['steps']:,} |" in out and "Compute-matched runs" in out


def test_scaling_cli_afp_grid_smoke(tmp_path, pixel_features, capsys, monkeypatch):
    """``--grid AFP``: its own models, recipe length, pairs and cache folders (a run of one grid
    never reads or replaces the other grid's run of the same model)."""
    grid = scaling.GRIDS["AFP"]
    assert grid.models == ("DiT-A/4", "DiT-A/2", "DiT-F/4", "DiT-F/2", "DiT-P/4", "DiT-P/2")
    assert grid.pairs == (("DiT-A/4", "DiT-F/4"), ("DiT-F/4", "DiT-P/4"), ("DiT-A/2", "DiT-F/2"), ("DiT-F/2", "DiT-P/2"))
    assert grid.recipe == dataclasses.replace(scaling.RECIPE, steps=16_000)
    for m in grid.models:   # below p^2 C no model here: the width-32 families stop at patch 4
        model = common.build_model(grid.recipe.spec(m))
        assert model.config["hidden_size"] >= model.patch_size ** 2 * model.in_channels
    monkeypatch.setenv("MINIDIT_CACHE", str(tmp_path))
    flags = ["--smoke", "--seeds", "0", "--steps", "4", "--fid-samples", "80", "--sampling-steps", "2", "--sweep-steps", "2"]
    results = scaling.main(["--grid", "afp", *flags])
    assert sorted(r["spec"]["model"] for r in results) == ["DiT-A/4", "DiT-F/4"]
    assert len(list((tmp_path / "experiments" / "scaling-afp-smoke").glob("*.json"))) == 2
    matched = scaling.main(["--grid", "AFP", "--matched", *flags])
    assert {(r["spec"]["model"], r["spec"]["steps"] > 4) for r in matched} == {("DiT-A/4", True), ("DiT-F/4", True)}
    assert len(list((tmp_path / "experiments" / "scaling-afp-matched-smoke").glob("*.json"))) == 2
    assert not (tmp_path / "experiments" / "scaling-smoke").exists()
    capsys.readouterr()
    with pytest.raises(SystemExit):
        scaling.main(["--grid", "XYZ", "--report"])
    assert "invalid choice" in capsys.readouterr().err


def test_ablation_smoke_run(tmp_path, pixel_features):
    specs = ablation.ablation_specs("DiT-P/4", Recipe(steps=3, fractions=(1 / 3, 1.0), batch_size=8, fid_samples=80,
                                                      sampling_steps=2, warmup_steps=1, sweep_steps=()), seeds=(0,))
    results = grid.run_grid(specs, tmp_path, desc="test", verbose=False)
    assert [r["spec"]["conditioning"] for r in results] == list(ablation.VARIANTS)
    gfl = {r["spec"]["conditioning"]: r["gflops"] for r in results}
    for v, g in gfl.items():
        model = get_model("DiT-P/4", input_size=8, in_channels=1, num_classes=10, conditioning=v)
        assert g == pytest.approx(count_gflops(model))
    # same backbone: adaLN regresses 4D numbers per block instead of 6D (no gates), cross-attention
    # adds a layer, in-context 2 tokens (+50% tokens at 4 tokens)
    assert gfl["adaLN"] < gfl["adaLN-Zero"] < gfl["cross-attention"] and gfl["adaLN-Zero"] < gfl["in-context"]
    assert len({r["params"] for r in results}) == 4  # four different architectures really ran
    text = ablation.summarize(results)
    assert "Ranking by final FID" in text and text.count("(seed 0)") == 4
    curves = ablation.curves_of(results)
    assert set(curves) == set(ablation.VARIANTS) and curves["adaLN"][0] == [1, 3]


def test_pearson_matches_numpy():
    rng = np.random.default_rng(0)
    for n in (2, 5, 40):
        x, y = rng.normal(size=n), rng.normal(size=n)
        assert scaling.pearson_correlation(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)
    assert scaling.pearson_correlation([1, 2, 3], [6, 4, 2]) == pytest.approx(-1.0)
    for bad in (([1, 2], [1, 2, 3]), ([1], [2]), ([1, 1, 1], [1, 2, 3])):
        with pytest.raises(ValueError):
            scaling.pearson_correlation(*bad)


def test_compute_formulas():
    # the paper's XL/2 run: 118.6 Gflops x 256 images x 400K steps x 3
    assert training_compute_gflops(118.6, 256, 400_000) == pytest.approx(3.64339e10, rel=1e-5)
    assert sampling_compute_gflops(118.6, 250, cfg=True) == pytest.approx(59_300.0)
    assert sampling_compute_gflops(118.6, 250, cfg=False) == pytest.approx(29_650.0)
    assert mfu(550.0, 118.6, 989.0) == pytest.approx(0.3957, abs=1e-4)
    assert mfu(550.0, 118.6, 989.0, passes=1) == pytest.approx(0.3957 / 3, abs=1e-4)
    assert peak_throughput(118.6, 989.0) == pytest.approx(1389.8, abs=0.1)
    assert cost.latent_size(256) == 32 and cost.latent_size(512) == 64
    with pytest.raises(ValueError, match="248 or 256"):
        cost.latent_size(250)
    wall, total = cost.gpu_hours(400_000 * 256, 100.0, 8)
    assert total == pytest.approx(400_000 * 256 / 100 / 3600) and wall == pytest.approx(total / 8)
    rows = cost.cost_table()
    assert rows[-1]["mfu_vs_peak"] == pytest.approx(1.0)


def test_one_recipe_for_both_experiments():
    """The scaling grid and the ablation train with the same recipe, so their adaLN-Zero runs coincide."""
    runs = scaling.grid_specs(("DiT-N/4",))
    abl = [s for s in ablation.ablation_specs() if s.conditioning == "adaLN-Zero"]
    assert runs == abl[:2] and len(abl) == 3 and [s.seed for s in runs] == [0, 1]
    g = runs[0]
    assert (g.dataset, g.steps, g.checkpoints, g.batch_size, g.lr, g.lr_schedule, g.beta2, g.warmup_steps,
            g.ema_decay, g.fid_samples, g.sampling_steps, g.cfg_scale, g.sweep_steps, g.clip_denoised) == (
        "glyphs", 1500, (375, 750, 1500), 64, 5e-3, "cosine", 0.99, 100, 0.995, 500, 25, 1.0, (10, 25, 50), True)
    # the grid: 3 families x 3 patch sizes, every width at least p^2 C (C = 1)
    assert scaling.ALL_MODELS == scaling.NORMAL_MODELS and len(scaling.ALL_MODELS) == 9
    for m in scaling.ALL_MODELS:
        model = common.build_model(scaling.RECIPE.spec(m))
        assert model.config["hidden_size"] >= model.patch_size ** 2 * model.in_channels and model.input_size == 16


@pytest.mark.parametrize("experiment, defaults", [
    ("scaling", ["(default 1,500;", "samples per FID (default 500)", "FID samples (default 25)",
                 "(default 1; 1 is none)", "(default 10,25,50)"]),
    ("latent", ["(default 5,000;", "samples per FID (default 500)", "FID samples (default 50)",
                "(default 4; 1 is none)", "separated (default none)"]),
    ("frontier", ["(default 20,000 times --times, of DiT-A/4;", "separated (default none)"]),
])
def test_each_experiments_help_names_its_own_recipe(experiment, defaults, monkeypatch, capsys):
    """The shared recipe flags say what a run gets without them: the experiment's recipe, not one
    experiment's numbers for all."""
    monkeypatch.setenv("COLUMNS", "200")          # one help line per flag
    main = {"scaling": scaling.main, "latent": latent.main, "frontier": frontier.main}[experiment]
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for text in defaults:
        assert text in out, text


def test_summaries_on_hand_made_results():
    def fake(model, gflops, fids):
        return dict(spec=dict(model=model, seed=0, batch_size=64, steps=800, lr=1e-3, warmup_steps=100,
                              ema_decay=0.995, fid_samples=500, sampling_steps=50, cfg_scale=1.0,
                              conditioning="adaLN-Zero"),
                    gflops=gflops, tokens=4, params=1000, train_seconds=1.0, images_per_second=1.0,
                    checkpoints=[dict(step=s, fid=f, loss=0.1, train_compute_gflops=3 * gflops * 64 * s)
                                 for s, f in zip((200, 400, 800), fids)], sweep=[])
    results = [fake("DiT-P/4", 0.001, (30, 20, 10)), fake("DiT-P/2", 0.004, (20, 10, 5)),
               fake("DiT-N/2", 0.008, (10, 5, 4))]
    corr = scaling.correlations(results)
    assert corr["raw"] == pytest.approx(np.corrcoef([0.001, 0.004, 0.008], [10, 5, 4])[0, 1])
    assert corr["loglog"] == pytest.approx(np.corrcoef(np.log([0.001, 0.004, 0.008]), np.log([10, 5, 4]))[0, 1])
    assert "Pearson correlation" in scaling.summarize(results)
    results.append(fake("DiT-P/1", 0.016, (9, 8, 7)))
    axes = scaling.axis_correlations(results)
    assert list(axes) == ["tokens @ family P"] and axes["tokens @ family P"]["models"] == ["DiT-P/4", "DiT-P/2", "DiT-P/1"]
    assert axes["tokens @ family P"]["r"] == pytest.approx(
        np.corrcoef(np.log([0.001, 0.004, 0.016]), np.log([10, 5, 7]))[0, 1])


def test_run_spec_validation():
    spec = common.Recipe().spec("DiT-P/2")
    with pytest.raises(ValueError, match="end at steps"):
        common.RunSpec(**dict(spec.to_json(), steps=10, checkpoints=(5,)))
    with pytest.raises(ValueError, match="dataset='cifar'"):
        common.RunSpec(**dict(spec.to_json(), dataset="cifar"))
    with pytest.raises(ValueError, match="lr_schedule='linear'"):
        common.RunSpec(**dict(spec.to_json(), lr_schedule="linear"))
    assert common.checkpoint_steps(800, (0.25, 0.5, 1.0)) == (200, 400, 800)
    assert common.ema_decay_at(0, 0.995) == pytest.approx(0.1)
    assert common.ema_decay_at(10_000, 0.995) == 0.995


def test_cosine_schedule_and_beta2_reach_the_optimizer(tmp_path, pixel_features, monkeypatch):
    """The recipe's lr schedule and AdamW beta2 are what the run uses, step by step."""
    from minidit.training import optim
    seen = []
    real_set_lr = optim.set_lr
    monkeypatch.setattr(common, "set_lr", lambda opt, lr: (seen.append((lr, opt.param_groups[0]["betas"])),
                                                          real_set_lr(opt, lr)))
    spec = tiny_specs(steps=6, lr_schedule="cosine", beta2=0.99, warmup_steps=2, sweep_steps=())[0]
    common.run_experiment(spec)
    lrs = [lr for lr, _ in seen]
    expected = [optim.lr_at_step(s, 1e-3, 2, 6) for s in range(6)]
    assert lrs == pytest.approx(expected) and lrs[1] == pytest.approx(1e-3)
    assert lrs[1:] == sorted(lrs[1:], reverse=True) and lrs[-1] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 3 / 4)))
    assert {b for _, b in seen} == {(0.9, 0.99)}


def test_two_processes_share_a_grid_through_claims(tmp_path, pixel_features):
    """A live claim keeps a run from being trained twice; a dead process's claim is taken over."""
    specs = tiny_specs(sweep_steps=())
    claim = grid.result_path(tmp_path, specs[0]).with_suffix(".claim")
    claim.write_text(str(os.getppid()))          # a live process that is not us
    assert not grid._claim(tmp_path, specs[0])
    grid._work(specs, tmp_path)                  # skips the claimed run
    assert grid.load_result(tmp_path, specs[0]) is None
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    claim.write_text(str(dead.pid))               # that process is gone: a stale claim
    grid._work(specs, tmp_path)
    assert grid.load_result(tmp_path, specs[0]) is not None and not claim.exists()


def test_grid_with_two_workers_trains_each_run_once(tmp_path, pixel_features):
    """The second worker is a fresh process (no monkeypatched features there: it uses the real
    digits classifier), so this also checks that a spawned worker can run a spec on its own."""
    specs = scaling.grid_specs(("DiT-P/4", "DiT-P/2"), Recipe(steps=4, fractions=(0.5, 1.0), batch_size=8, fid_samples=40,
                                                        sampling_steps=2, sweep_steps=(), warmup_steps=1), seeds=(0,))
    results = grid.run_grid(specs, tmp_path, desc="test", verbose=False, workers=2)
    assert [r["spec"]["model"] for r in results] == ["DiT-P/4", "DiT-P/2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["DiT-P_2-adaLN-Zero-seed0.json", "DiT-P_4-adaLN-Zero-seed0.json"]


def test_workers_take_the_longest_runs_first():
    # one recipe, equal steps: the largest model first
    specs = scaling.grid_specs(("DiT-P/4", "DiT-T/2", "DiT-N/8"), scaling.RECIPE, seeds=(0,))
    assert [s.model for s in grid.longest_first(specs)] == ["DiT-T/2", "DiT-N/8", "DiT-P/4"]
    # equal training compute (frontier.py's profiles): the flops alone do not tell these apart;
    # with the fixed cost of a step, the smallest model, which takes the most steps, is the longest
    g = {m: common.model_facts(scaling.RECIPE.spec(m))["gflops"] for m in ("DiT-F/4", "DiT-P/4", "DiT-N/4", "DiT-T/4")}
    equal = [scaling.RECIPE.at_compute_of(g["DiT-T/4"], g[m]).spec(m) for m in ("DiT-T/4", "DiT-N/4", "DiT-F/4", "DiT-P/4")]
    assert [s.model for s in grid.longest_first(equal)] == ["DiT-F/4", "DiT-P/4", "DiT-N/4", "DiT-T/4"]


def test_estimator_noise_is_real_against_real(pixel_features):
    """Disjoint real sets against the reference: small, positive, different draw to draw; asking
    for more images than there are is an error, not a silent overlap."""
    values = measure.estimator_noise("digits", 200, draws=3)
    assert len(values) == 3 and len(set(values)) == 3 and all(0 < v < 50 for v in values)
    noise = torch.Generator().manual_seed(0)
    far = fid_from_features(measure.real_features("digits").double().numpy(),
                            torch.randn(200, 64, generator=noise).double().numpy())
    assert far > 10 * max(values)
    with pytest.raises(ValueError, match="has 1438 training images"):
        measure.estimator_noise("digits", 500, draws=3)
