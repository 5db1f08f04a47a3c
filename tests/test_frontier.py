"""The compute-optimal frontier (minidit/experiments/frontier.py, chapter 12): the two families
below P, the equal-compute specs, the CLI, and what the committed runs show."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from minidit.experiments import common, frontier, scaling
from minidit.experiments.grid import load_results
from minidit.experiments.common import RunSpec
from minidit.flops import training_compute_gflops
from minidit.models import get_model


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def committed_profile(times: int) -> list[dict]:
    """The committed runs of one profile, checked to be exactly its specs, as ``profile`` rows."""
    prof = frontier.PROFILE[times]
    results = load_results(prof.results)
    expected = {s.key(): s.to_json() for s in frontier.frontier_specs(prof.recipe(), prof.seeds, prof.models)}
    assert {RunSpec(**r["spec"]).key(): r["spec"] for r in results} == expected
    rows = frontier.profile(results)
    assert [r["model"] for r in rows] == list(prof.models) and all(r["seeds"] == len(prof.seeds) for r in rows)
    return rows


def worse(a, b):  # a's FID above b's by more than both seed spreads
    return a["fid_mean"] - a["fid_std"] > b["fid_mean"] + b["fid_std"]


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
    assert [s.model for s in specs] == [m for m in frontier.MODELS for _ in frontier.PROFILE[1].seeds]
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


@pytest.mark.parametrize("times, first, last", [(6, ("DiT-F/4", 64536), ("DiT-T/4", 1527)),
                                                (36, ("DiT-P/4", 103991), ("DiT-T/4", 9162))])
def test_the_larger_profiles_give_every_model_a_multiple_of_the_compute(times, first, last):
    low = {(s.model, s.seed): s for s in frontier.frontier_specs()}
    prof = frontier.PROFILE[times]
    high = frontier.frontier_specs(prof.recipe(), prof.seeds, prof.models)
    assert [s.model for s in high] == [m for m in prof.models for _ in prof.seeds]
    for s in high:
        g = common.model_facts(s)["gflops"]
        ratio = training_compute_gflops(g, s.batch_size, s.steps) / training_compute_gflops(g, 64, low[s.model, s.seed].steps)
        assert ratio == pytest.approx(times, rel=2e-3), s.model
        # the same recipe apart from the length: checkpoints at 1/8, 1/4, 1/2 and the end of the run
        assert s.checkpoints == (round(s.steps / 8), round(s.steps / 4), round(s.steps / 2), s.steps)
        same = {k: v for k, v in s.to_json().items() if k not in ("steps", "checkpoints")}
        assert same == {k: v for k, v in low[s.model, s.seed].to_json().items() if k not in ("steps", "checkpoints")}
    assert (high[0].model, high[0].steps) == first and (high[-1].model, high[-1].steps) == last
    assert prof.results.name == f"frontier_{times}x"


def test_frontier_cli_smoke_and_report(tmp_path, capsys, pixel_features):
    results = frontier.main(["--smoke", "--seeds", "0", "--steps", "8", "--fid-samples", "40",
                             "--sampling-steps", "2", "--out", str(tmp_path)])
    assert sorted(r["spec"]["model"] for r in results) == ["DiT-A/4", "DiT-P/4"]
    steps = {r["spec"]["model"]: r["spec"]["steps"] for r in results}
    assert steps["DiT-A/4"] == 8 and steps["DiT-P/4"] == max(2, round(8 * results[0]["gflops"] / results[1]["gflops"]))
    capsys.readouterr()
    again = frontier.main(["--report", "--out", str(tmp_path)])
    assert len(again) == 2 and "The compute-optimal model here" in capsys.readouterr().out
    # --times 6: the smaller smoke pair at six times the compute, in a folder of its own
    high = frontier.main(["--smoke", "--times", "6", "--seeds", "0", "--fid-samples", "40", "--sampling-steps", "2",
                          "--out", str(tmp_path / "high")])
    gflops = {r["spec"]["model"]: r["gflops"] for r in results + high}
    steps = {r["spec"]["model"]: r["spec"]["steps"] for r in high}
    assert sorted(steps) == ["DiT-F/4", "DiT-P/4"]
    target = 6 * frontier.SMOKE_RECIPE.steps * gflops["DiT-A/4"]
    assert steps["DiT-P/4"] == round(target / gflops["DiT-P/4"])


def test_the_committed_runs_show_a_compute_optimal_size_below_which_figure_9_holds():
    rows = committed_profile(1)
    best = frontier.optimum(rows)
    i = rows.index(best)
    fid = [r["fid_mean"] for r in rows]
    # an IsoFLOP profile: the optimum inside the measured range, FID falling towards it from the
    # smallest model and rising beyond it to the largest (seed means)
    assert 0 < i < len(rows) - 1
    assert fid[:i + 1] == sorted(fid[:i + 1], reverse=True) and fid[i:] == sorted(fid[i:])

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


def _profile(params, fids, compute):
    return [dict(params=n, fid_mean=f, fid_std=0.0, compute=compute) for n, f in zip(params, fids)]


def test_the_optimum_between_the_measured_sizes_is_the_parabolas_vertex():
    # log FID exactly a parabola in log params with its bottom at n0: the fit must return n0
    n0, sizes = 70_000.0, [20_000, 50_000, 180_000, 700_000]
    fids = [30 * np.exp(0.8 * np.log(n / n0) ** 2) for n in sizes]
    assert frontier.optimal_params(_profile(sizes, fids, 1000.0)) == pytest.approx(n0, rel=1e-9)
    # the bottom at the edge of the measured sizes: no interior optimum
    assert frontier.optimal_params(_profile(sizes, sorted(fids, reverse=True), 1000.0)) is None
    # the largest model a hair ahead of its neighbour: a flat bottom, read off the parabola through
    # the last three sizes, between the two best ones, nearer the better one
    sizes = [50_000, 180_000, 700_000, 1_900_000]
    flat = frontier.optimal_params(_profile(sizes, [20.0, 9.6, 8.15, 8.12], 1000.0))
    assert np.sqrt(700_000 * 1_900_000) < flat < 1_900_000
    # still falling steeply at the largest size (the parabola opens downwards), or falling less
    # and less but with its bottom beyond the largest size: outside the measured range
    assert frontier.optimal_params(_profile(sizes, [20.0, 10.0, 9.0, 6.0], 1000.0)) is None
    assert frontier.optimal_params(_profile(sizes, [40.0, 20.0, 10.0, 8.0], 1000.0)) is None
    # two sizes (a smoke profile): no parabola, no optimum, and no fit attempted
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert frontier.optimal_params(_profile(sizes[:2], [20.0, 10.0], 1000.0)) is None


def test_the_optimums_growth_is_extrapolated_as_a_power_of_the_compute():
    sizes = [20_000, 50_000, 180_000, 700_000, 2_000_000]

    def profile_at(n0, compute):
        return _profile(sizes, [30 * np.exp(0.8 * np.log(n / n0) ** 2) for n in sizes], compute)
    # the optimum grows by 4x whenever the compute grows 16x: N* ~ C^0.5
    low, mid, high = profile_at(60_000.0, 1000.0), profile_at(240_000.0, 16000.0), profile_at(960_000.0, 256000.0)
    a, k = frontier.optimum_growth([low, mid])
    assert a == pytest.approx(0.5, rel=1e-9) and k * 256000.0 ** a == pytest.approx(960_000.0, rel=1e-9)
    a, c = frontier.compute_for_params([low, mid], 960_000.0)
    assert a == pytest.approx(0.5, rel=1e-9)
    assert c == pytest.approx(1000.0 * 16 ** 2, rel=1e-9)   # 16x the size -> 256x the compute
    # through three points on the law the least-squares line is the law itself
    a, c = frontier.compute_for_params([low, mid, high], 3_840_000.0)
    assert a == pytest.approx(0.5, rel=1e-9) and c == pytest.approx(1000.0 * 64 ** 2, rel=1e-9)
    # off the law, the fit is the least-squares line in log-log: the middle optimum 2x too large
    # lifts the line by log(2) / 3 at every compute and leaves its slope alone
    a, k = frontier.optimum_growth([low, profile_at(480_000.0, 16000.0), high])
    assert a == pytest.approx(0.5, rel=1e-6) and k * 1000.0 ** 0.5 == pytest.approx(60_000.0 * 2 ** (1 / 3), rel=1e-6)
    shrank = [profile_at(240_000.0, 1000.0), profile_at(60_000.0, 16000.0)]
    assert frontier.optimum_growth(shrank) is None                      # an optimum that shrank
    assert frontier.optimum_growth([low]) is None                       # one profile: no growth
    edge = _profile(sizes, sorted([30.0, 20.0, 10.0, 5.0, 2.0], reverse=True), 4000.0)
    assert frontier.optimum_growth([low, edge]) is None                 # a bottom outside its profile


def test_with_six_times_the_compute_the_optimum_moves_to_a_larger_model():
    low_rows, rows = committed_profile(1), committed_profile(6)
    # at the higher compute the bottom is P/4, no longer F/4: F/4 -> P/4 now follows the paper's
    # Figure 9 beyond the spreads, while P/4 -> N/4 -> T/4 stays inverted
    by = {r["model"]: r for r in rows}
    assert frontier.optimum(rows)["model"] == "DiT-P/4" and frontier.optimum(low_rows)["model"] == "DiT-F/4"
    assert worse(by["DiT-F/4"], by["DiT-P/4"]) and worse(by["DiT-N/4"], by["DiT-P/4"])
    assert worse(by["DiT-T/4"], by["DiT-N/4"]) and not frontier.tied_with_optimum(rows)
    # every model is better with six times the compute; the smallest, the one that had started to
    # run out of capacity, gains the least
    before = {r["model"]: r["fid_mean"] for r in low_rows}
    gains = [before[r["model"]] / r["fid_mean"] for r in rows]
    assert all(g > 1 for g in gains) and min(gains) == gains[0]
    # the optimum between the measured sizes grows with the compute, roughly as its square root
    n_low, n_high = frontier.optimal_params(low_rows), frontier.optimal_params(rows)
    assert 51_168 < n_low < 182_176 < n_high < 727_712
    a, c_t4 = frontier.compute_for_params([low_rows, rows], rows[-1]["params"])
    assert 0.3 < a < 0.8 and c_t4 > 10 * rows[-1]["compute"]


def test_at_36_times_the_compute_the_optimum_is_larger_than_the_first_two_profiles_predicted(capsys):
    low, mid, rows = committed_profile(1), committed_profile(6), committed_profile(36)
    # the 1x and 6x optima, grown as a power of the compute, predicted the bottom of the 36x profile
    # at about 630K parameters (between P/4 and N/4, near N/4; written before the runs). With three
    # seeds the bottom is flat between N/4 and T/4: T/4 is a hair ahead of N/4 in the seed mean,
    # and the parabola through the three sizes puts the optimum between them, about twice as large
    # as predicted
    a, k = frontier.optimum_growth([low, mid])
    predicted, measured = k * rows[0]["compute"] ** a, frontier.optimal_params(rows)
    assert 600_000 < predicted < 660_000
    assert 1.7 < measured / predicted < 2.1 and 727_712 < measured < 1_871_136
    by = {r["model"]: r for r in rows}
    assert all(r["seeds"] == 3 for r in rows)
    assert frontier.optimum(rows) is by["DiT-T/4"]
    assert abs(by["DiT-T/4"]["fid_mean"] - by["DiT-N/4"]["fid_mean"]) < 0.1
    # so the grid's three sizes of patch 4 are in the paper's order in the seed means (Figure 9):
    # P/4 -> N/4 beyond both seed spreads, N/4 -> T/4 within them. T/4's seeds differ the most of
    # any model at 36x, so wide that P/4 too is within the spreads of the optimum
    assert by["DiT-P/4"]["fid_mean"] > by["DiT-N/4"]["fid_mean"] > by["DiT-T/4"]["fid_mean"]
    assert worse(by["DiT-P/4"], by["DiT-N/4"])
    assert frontier.tied_with_optimum(rows) == [by["DiT-P/4"], by["DiT-N/4"]]
    assert by["DiT-T/4"]["fid_std"] == max(r["fid_std"] for r in rows) > 3 * by["DiT-N/4"]["fid_std"]
    # seed by seed: the first puts the bottom at 568K (just below the prediction); the second and
    # third have T/4 best by a wide margin, a bottom at or beyond the largest size
    runs = load_results(frontier.PROFILE[36].results)
    by_seed = [frontier.profile([r for r in runs if r["spec"]["seed"] == seed]) for seed in (0, 1, 2)]
    assert 500_000 < frontier.optimal_params(by_seed[0]) < 640_000
    assert [frontier.optimum(p)["model"] for p in by_seed] == ["DiT-N/4", "DiT-T/4", "DiT-T/4"]
    assert frontier.optimal_params(by_seed[1]) is None and frontier.optimal_params(by_seed[2]) is None
    # every model is better with six times more compute again; the smallest gains the least
    before = {r["model"]: r["fid_mean"] for r in mid}
    gains = [before[r["model"]] / r["fid_mean"] for r in rows]
    assert all(g > 1 for g in gains) and gains == sorted(gains)
    # through all three profiles the optimum grows as C^a, a well above Chinchilla's 0.5 (0.73);
    # T/4 would be the optimum at about twice the highest compute
    a, c_t4 = frontier.compute_for_params([low, mid, rows], rows[-1]["params"])
    assert 0.65 < a < 0.8 and 1.5 * rows[-1]["compute"] < c_t4 < 3 * rows[-1]["compute"]
    # --report prints the three profiles, the prediction and the fit
    frontier.main(["--report"])
    out = capsys.readouterr().out
    assert out.count("The compute-optimal model here") == 3 and "was predicted at about 628K" in out
