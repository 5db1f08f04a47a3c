"""The compute-optimal frontier (minidit/experiments/frontier.py, chapter 12): the two families
below P, the equal-compute specs, the CLI, and what the committed runs show."""
from __future__ import annotations

import pytest
import torch

from minidit.experiments import common, frontier, scaling
from minidit.experiments.grid import load_results
from minidit.experiments.common import RunSpec
from minidit.flops import training_compute_gflops
from minidit.models import get_model


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_the_families_below_pico_are_what_their_names_say():
    # F(emto) 2 blocks / width 32 / 2 heads, A(tto) 1 / 32 / 1; on 16x16 glyphs with 4x4 patches
    for name, depth, heads in (("DiT-F/4", 2, 2), ("DiT-A/4", 1, 1)):
        m = get_model(name, input_size=16, in_channels=1, num_classes=10)
        assert (len(m.blocks), m.blocks[0].attn.num_heads, m.x_embedder.proj.out_channels) == (depth, heads, 32)
        assert m.pos_embed.shape == (1, 16, 32)     # (16 / 4)^2 tokens of width 32
    # one adaLN-Zero block of width D: attention 4D^2 + 4D, MLP (ratio 4) 8D^2 + 5D, modulation 6D^2 + 6D
    d = 32
    block = 18 * d * d + 15 * d
    a = get_model("DiT-A/4", input_size=16, in_channels=1, num_classes=10)
    f = get_model("DiT-F/4", input_size=16, in_channels=1, num_classes=10)
    assert n_params(f) - n_params(a) == block


def test_every_model_gets_the_reference_models_compute():
    specs = frontier.frontier_specs()
    assert [s.model for s in specs] == [m for m in frontier.MODELS for _ in frontier.SEEDS]
    gflops = {m: common.model_facts(frontier.RECIPE.spec(m))["gflops"] for m in frontier.MODELS}
    assert list(gflops.values()) == sorted(gflops.values())   # smallest model first
    target = training_compute_gflops(gflops[frontier.REFERENCE], 64, frontier.RECIPE.steps)
    for s in specs:
        got = training_compute_gflops(gflops[s.model], s.batch_size, s.steps)
        assert abs(got - target) <= training_compute_gflops(gflops[s.model], s.batch_size, 0.5), s.model
        assert common.model_facts(s)["tokens"] == 16 and s.checkpoints[-1] == s.steps and s.sweep_steps == ()
        assert (s.lr, s.lr_schedule, s.dataset, s.fid_samples) == (scaling.RECIPE.lr, "cosine", "glyphs", 500)
        assert s.warmup_steps <= s.steps // 2
    # the largest model gets a few hundred steps, the smallest 20,000
    assert specs[0].steps == 20000 and 200 < specs[-1].steps < 300


def test_frontier_cli_smoke_and_report(tmp_path, capsys, pixel_features):
    results = frontier.main(["--smoke", "--seeds", "0", "--steps", "8", "--fid-samples", "40",
                             "--sampling-steps", "2", "--out", str(tmp_path)])
    assert sorted(r["spec"]["model"] for r in results) == ["DiT-A/4", "DiT-P/4"]
    steps = {r["spec"]["model"]: r["spec"]["steps"] for r in results}
    assert steps["DiT-A/4"] == 8 and steps["DiT-P/4"] == max(2, round(8 * results[0]["gflops"] / results[1]["gflops"]))
    capsys.readouterr()
    again = frontier.main(["--report", "--out", str(tmp_path)])
    assert len(again) == 2 and "The compute-optimal model here" in capsys.readouterr().out


def test_the_committed_runs_show_a_compute_optimal_size_below_which_figure_9_holds():
    results = load_results(frontier.RESULTS)
    expected = {s.key(): s.to_json() for s in frontier.frontier_specs()}
    assert {RunSpec(**r["spec"]).key(): r["spec"] for r in results} == expected
    rows = frontier.profile(results)
    assert [r["model"] for r in rows] == list(frontier.MODELS) and all(r["seeds"] == 2 for r in rows)
    best = frontier.optimum(rows)
    i = rows.index(best)
    fid = [r["fid_mean"] for r in rows]
    # an IsoFLOP profile: the optimum inside the measured range, FID falling towards it from the
    # smallest model and rising beyond it to the largest (seed means)
    assert 0 < i < len(rows) - 1
    assert fid[:i + 1] == sorted(fid[:i + 1], reverse=True) and fid[i:] == sorted(fid[i:])

    def worse(a, b):  # a's FID above b's by more than both seed spreads
        return a["fid_mean"] - a["fid_std"] > b["fid_mean"] + b["fid_std"]
    # below the optimum a larger model is better at equal compute (the paper's Figure 9), beyond
    # the spreads; above it a smaller one is, the scaling grid's compute-matched verdict
    assert worse(rows[0], best) and worse(rows[i - 1], best)
    assert worse(rows[-1], best) and all(worse(b, a) for a, b in zip(rows[i + 1:], rows[i + 2:]))
    # what the summary calls a tie really is one
    for r in frontier.tied_with_optimum(rows):
        assert not worse(r, best)


@pytest.mark.parametrize("name", ["DiT-F/8", "DiT-A/8"])
def test_the_small_families_have_no_8x8_patches(name):
    with pytest.raises(ValueError, match="unknown model"):
        get_model(name)
