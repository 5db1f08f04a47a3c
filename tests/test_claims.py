"""The scaling claims checker: seed statistics and verdicts on hand-made grids with known answers."""
from __future__ import annotations

import numpy as np
import pytest

from minidit.experiments import claims


def run(model, gflops, fids, seed, sweep=((10, None), (50, None))):
    """A result dict as run_grid writes it (only the fields the checker reads), 3 checkpoints."""
    return dict(spec=dict(model=model, seed=seed, steps=400), gflops=gflops, params=100, tokens=4,
                checkpoints=[dict(step=s, fid=f, accuracy=0.5, train_compute_gflops=3 * gflops * 64 * s)
                             for s, f in zip((100, 200, 400), fids)],
                sweep=[dict(num_steps=n, fid=f if f is not None else fids[-1], sampling_gflops=gflops * n)
                       for n, f in sweep])


def good_grid():
    """3 families x 3 patches, final FID = 100 / Gflops^0.5 exactly (so r_loglog = -1), two seeds
    +-1; along training FID ~ steps^-0.3, so at equal training compute (steps ~ 1 / Gflops) the
    bigger model is ahead."""
    out = []
    for fi, fam in enumerate("PNT"):
        for pi, p in enumerate((8, 4, 2)):
            g = (4.0 ** fi) * (3.0 ** pi)
            final = 100 / np.sqrt(g)
            for seed, d in ((0, -1.0), (1, 1.0)):
                out.append(run(f"DiT-{fam}/{p}", g, (4 ** 0.3 * final + d, 2 ** 0.3 * final + d, final + d), seed,
                               sweep=((10, final * 1.5 + d), (25, final + d), (50, final * 0.9 + d))))
    return out


def test_seed_stats_means_and_spreads():
    stats = claims.seed_stats(good_grid())
    assert list(stats)[0] == "DiT-P/8" and list(stats)[-1] == "DiT-T/2"   # in order of Gflops
    s = stats["DiT-P/8"]
    assert s["seeds"] == [0, 1] and s["steps"] == [100, 200, 400]
    assert s["fid_mean"] == pytest.approx([100 * 4 ** 0.3, 100 * 2 ** 0.3, 100]) and s["fid_std"] == pytest.approx([np.sqrt(2)] * 3)
    assert s["sweep_steps"] == [10, 25, 50] and s["sweep_mean"] == pytest.approx([150, 100, 90])
    assert s["compute"] == pytest.approx([3 * 64 * 100, 3 * 64 * 200, 3 * 64 * 400])


def test_every_claim_holds_on_a_grid_that_scales():
    c = claims.check_claims(good_grid())
    assert len(c["size"]) == 3 and len(c["tokens"]) == 3 and all(x["holds"] for x in c["size"] + c["tokens"])
    assert c["correlation"]["r_loglog"] == pytest.approx(-1.0) and c["correlation"]["holds"]
    assert c["training_compute"] and all(x["holds"] for x in c["training_compute"])
    f10 = c["sampling_compute"]
    assert (f10["smaller"], f10["larger"], f10["steps_smaller"], f10["steps_larger"]) == ("DiT-P/8", "DiT-T/2", 50, 10)
    assert f10["fid_smaller"] == pytest.approx(90) and f10["fid_larger"] == pytest.approx(1.5 * 100 / np.sqrt(144))
    assert c["all_hold"]
    assert "does NOT hold" not in claims.format_claims(c)


def test_one_model_out_of_order_is_caught():
    grid = good_grid()
    for r in grid:                     # N/4 worse than N/8: the token axis fails in family N
        if r["spec"]["model"] == "DiT-N/4":
            for ck in r["checkpoints"]:
                ck["fid"] = 1000.0
    c = claims.check_claims(grid)
    verdicts = {x["axis"]: x["holds"] for x in c["tokens"]}
    assert verdicts == {"family P": True, "family N": False, "family T": True}
    assert not {x["axis"]: x["holds"] for x in c["size"]}["patch 4"]   # N/4 above P/4 too
    assert not c["all_hold"] and "does NOT hold" in claims.format_claims(c)


def test_figure_9_compares_at_equal_training_compute():
    # P/8: compute 19200..76800 with FID 40 -> 10; N/8 (2x the Gflops): 38400..153600, FID 30 -> 5
    grid = [run("DiT-P/8", 1.0, (40, 20, 10), 0), run("DiT-N/8", 2.0, (30, 15, 5), 0)]
    (pair,) = claims.check_claims(grid)["training_compute"]
    assert pair["compute"] == pytest.approx(np.sqrt(38400 * 76800))
    # log-log interpolation at the middle of the overlap: P/8 between 20 and 10, N/8 between 30 and 15
    assert pair["fid_smaller"] == pytest.approx(np.sqrt(20 * 10)) and pair["fid_larger"] == pytest.approx(np.sqrt(30 * 15))
    assert not pair["holds"]           # 21.2 > 14.1: the larger model is worse at equal compute


def test_figure_9_uses_compute_matched_runs_where_they_exist():
    # P/8 (1 Gflop) trained to N/8's (2 Gflops) final compute: 800 steps instead of 400
    grid = [run("DiT-P/8", 1.0, (40, 20, 10), s) for s in (0, 1)] + [run("DiT-N/8", 2.0, (30, 15, 5 + s), s) for s in (0, 1)]
    longer = [dict(run("DiT-P/8", 1.0, (20, 10, f), s), spec=dict(model="DiT-P/8", seed=s, steps=800)) for s, f in ((0, 7.0), (1, 9.0))]
    for r in longer:
        for c, step in zip(r["checkpoints"], (200, 400, 800)):
            c.update(step=step, train_compute_gflops=3 * 1.0 * 64 * step)
    (pair,) = claims.check_claims(grid, matched=longer)["training_compute"]
    assert pair["method"] == "matched" and (pair["steps_smaller"], pair["steps_larger"]) == (800, 400)
    assert pair["compute"] == pytest.approx(3 * 2.0 * 64 * 400)
    assert pair["fid_smaller"] == pytest.approx(8.0) and pair["std_smaller"] == pytest.approx(np.sqrt(2))
    assert pair["fid_larger"] == pytest.approx(5.5) and pair["holds"]          # 5.5 < 8: the larger model wins
    assert "both trained to the end of their schedule" in claims.format_claims(claims.check_claims(grid, matched=longer))
    # without them the same grid falls back to its checkpoints (and there the smaller model is ahead)
    (fallback,) = claims.check_claims(grid)["training_compute"]
    assert fallback["method"] == "checkpoints" and not fallback["holds"]


def test_unfinished_runs_do_not_count():
    grid = good_grid()
    grid[0]["checkpoints"] = grid[0]["checkpoints"][:2]       # P/8 seed 0 stopped early (diverged)
    assert claims.seed_stats(grid)["DiT-P/8"]["seeds"] == [1]
