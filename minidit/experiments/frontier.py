"""The compute-optimal frontier: ``python -m minidit.experiments.frontier``.

The paper's Figure 9 says that at equal training compute a larger DiT reaches a lower FID. The
CPU scaling grid (scaling.py) finds the opposite: trained to the same compute, each smaller model
of the grid wins, because every one of them is still improving fast when its run ends; the
smaller model simply takes more steps. Both can be true. For a fixed training compute C there is
a model size N*(C) that does best (Hoffmann et al., 2022, call the plot below an IsoFLOP profile):

* a model smaller than N*(C) has run out of capacity before it ran out of compute: a larger one
  is better at that compute (the paper's Figure 9);
* a model larger than N*(C) has run out of steps: a smaller one is better (the CPU grid).

N*(C) grows with C. The paper's 12 models at its 10^9-10^12 training Gflops all sit below it, so
larger wins everywhere it looks; the CPU grid's P, N and T at 10^3-10^4 training Gflops sit above
it. This experiment measures the profile at one compute: five models of patch 4 on the scaling
study's 16x16 glyphs, from A(tto) (1 block, width 32) to T(iny) (6 blocks, width 128), each
trained to exactly the compute of 20,000 steps of DiT-A/4 (about 980 training Gflops), with the
scaling recipe and its own full cosine schedule. FID is the scaling study's (500 samples, 25
DDPM steps, the glyphs classifier's features).

``--high`` measures the profile again at six times that compute (120,000 steps of DiT-A/4, about
5,900 training Gflops) for F/4 to T/4, to see where the optimum goes when the compute grows. A/4 is
left out there: it is already behind F/4 at the lower compute, and 120,000 steps of it would take
the longest of all the runs (about 40 minutes).

    python -m minidit.experiments.frontier --smoke
    python -m minidit.experiments.frontier --workers 2          # the committed runs (about 28 min, 2 cores)
    python -m minidit.experiments.frontier --high --workers 2   # the 6x-compute runs (55 min, 2 cores)
    python -m minidit.experiments.frontier --report             # both profiles
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from . import claims, cli, scaling
from .common import Recipe, RunSpec, model_facts
from .grid import load_results

# smallest first; all of patch 4 (16 tokens), so only the model's size changes
MODELS = ("DiT-A/4", "DiT-F/4", "DiT-P/4", "DiT-N/4", "DiT-T/4")
REFERENCE = "DiT-A/4"   # every model gets the training compute of RECIPE.steps steps of this one
SEEDS = (0, 1, 2)   # three: the bottom of the profile is flat, and F/4's seeds differ the most
RESULTS = Path(__file__).resolve().parent / "results" / "frontier"

# the scaling recipe, with 20,000 steps of the reference model: a compute at which the smallest
# models have stopped improving much (A/4: FID -80, -47, -28 per doubling of its steps) while
# the largest get only a few hundred steps; checkpoints at 1/8, 1/4, 1/2 and all of each run;
# no sampling-steps sweep
RECIPE = dataclasses.replace(scaling.RECIPE, steps=20000, fractions=(0.125, 0.25, 0.5, 1.0), sweep_steps=())
SMOKE_RECIPE = dataclasses.replace(scaling.SMOKE_RECIPE, steps=40, fractions=(0.5, 1.0), sweep_steps=())
SMOKE_MODELS = ("DiT-A/4", "DiT-P/4")

# the second profile (--high): six times the compute, the same recipe otherwise; no A/4, two seeds
HIGH = 6
HIGH_RECIPE = dataclasses.replace(RECIPE, steps=HIGH * RECIPE.steps)
HIGH_MODELS = MODELS[1:]
HIGH_SEEDS = (0, 1)
SMOKE_HIGH_RECIPE = dataclasses.replace(SMOKE_RECIPE, steps=HIGH * SMOKE_RECIPE.steps)
SMOKE_HIGH_MODELS = ("DiT-F/4", "DiT-P/4")
RESULTS_HIGH = RESULTS.parent / "frontier_high"


def frontier_specs(recipe: Recipe = RECIPE, seeds=SEEDS, models=MODELS) -> list[RunSpec]:
    """Every model and seed at the training compute of ``recipe.steps`` steps of REFERENCE:
    ``steps = round(recipe.steps * gflops_reference / gflops)`` (Recipe.at_compute_of)."""
    g_ref = model_facts(recipe.spec(REFERENCE))["gflops"]
    recipes = {m: recipe.at_compute_of(g_ref, model_facts(recipe.spec(m))["gflops"]) for m in models}
    return [recipes[m].spec(m, seed=seed) for m in models for seed in seeds]


def profile(results: list[dict]) -> list[dict]:
    """One row per model (smallest first): its size, steps, compute, and the final FID and class
    accuracy as mean and standard deviation over its finished seeds (claims.seed_stats)."""
    rows = [dict(model=model, params=s["params"], gflops=s["gflops"], steps=s["steps"][-1], compute=s["compute"][-1],
                 seeds=len(s["seeds"]), train_seconds=s["train_seconds"], fid_mean=s["fid_mean"][-1],
                 fid_std=s["fid_std"][-1], acc_mean=s["acc_mean"], acc_std=s["acc_std"])
            for model, s in claims.seed_stats(results).items()]
    return sorted(rows, key=lambda r: r["params"])


def optimum(rows: list[dict]) -> dict:
    """The row with the lowest mean FID: the compute-optimal model among those measured."""
    return min(rows, key=lambda r: r["fid_mean"])


def tied_with_optimum(rows: list[dict]) -> list[dict]:
    """The other rows whose FID is within the seed spreads of the optimum's (mean - std of one
    reaches mean + std of the other): where the profile's bottom is too flat to tell them apart."""
    best = optimum(rows)
    return [r for r in rows if r is not best and r["fid_mean"] - r["fid_std"] <= best["fid_mean"] + best["fid_std"]]


def optimal_params(rows: list[dict]) -> float | None:
    """The parameter count at the bottom of the profile, between the measured sizes: the vertex of
    the parabola through the best row and its two neighbours in log parameters vs log FID (how
    Hoffmann et al., 2022, read the optimum off an IsoFLOP profile). None when the best row is the
    smallest or the largest model: the bottom is then outside the measured range."""
    i = rows.index(optimum(rows))
    if i == 0 or i == len(rows) - 1:
        return None
    x = np.log([r["params"] for r in rows[i - 1:i + 2]])
    y = np.log([r["fid_mean"] for r in rows[i - 1:i + 2]])
    # y = a x^2 + b x + c through the three points; its minimum is at x* = -b / (2a)
    a, b, _ = np.polyfit(x, y, 2)
    return float(np.exp(-b / (2 * a)))


def compute_for_params(low: list[dict], high: list[dict], params: float) -> tuple[float, float] | None:
    """Extrapolate the optimum's growth: with N*(C) = N*(C_low) (C / C_low)^a through the optima of
    two profiles, the exponent a and the training compute at which a model of ``params`` parameters
    would be compute-optimal, C = C_low (params / N*(C_low))^(1/a). None if either optimum is
    outside its profile or the optimum did not grow."""
    n_low, n_high = optimal_params(low), optimal_params(high)
    if n_low is None or n_high is None or n_high <= n_low:
        return None
    c_low, c_high = low[0]["compute"], high[0]["compute"]
    # N*(C_high) / N*(C_low) = (C_high / C_low)^a
    a = np.log(n_high / n_low) / np.log(c_high / c_low)
    return float(a), float(c_low * (params / n_low) ** (1 / a))


def summarize(results: list[dict]) -> str:
    """Markdown: the IsoFLOP profile (one row per model) and where its minimum lies."""
    rows = profile(results)
    if not rows:
        return "(no results)"
    best = optimum(rows)
    lines = [f"glyphs 16x16, the scaling recipe; every model trained to {max(r['compute'] for r in rows):,.0f} "
             f"training Gflops with its own cosine schedule.", "",
             "| model | params | MFLOPs | steps | training Gflops | train s | FID | class accuracy |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['params']:,} | {r['gflops'] * 1e3:.3f} | {r['steps']:,} | "
                     f"{r['compute']:.0f} | {r['train_seconds']:.0f} | {r['fid_mean']:.1f} +- {r['fid_std']:.1f} | "
                     f"{r['acc_mean']:.3f} +- {r['acc_std']:.3f} |")
    tied = "".join(f"; {r['model']} is within the seed spreads of it" for r in tied_with_optimum(rows))
    lines.append(f"\n(mean +- std over {max(r['seeds'] for r in rows)} seeds) The compute-optimal model here: "
                 f"{best['model']} ({best['params']:,} parameters){tied}. Below it a larger model is better at "
                 f"equal compute (the paper's Figure 9), above it a smaller one.")
    return "\n".join(lines)


def shift(low: list[dict], high: list[dict]) -> str:
    """One sentence: the compute-optimal model of each profile (the rows of ``profile``)."""
    a, b = optimum(low), optimum(high)
    verb = "stays at" if a["model"] == b["model"] else "moves to"
    text = (f"The compute-optimal model {verb} {b['model']} ({b['params']:,} parameters) at "
            f"{b['compute']:,.0f} training Gflops, from {a['model']} ({a['params']:,}) at {a['compute']:,.0f}.")
    n_low, n_high = optimal_params(low), optimal_params(high)
    if n_low is not None and n_high is not None:
        text += (f" The parabola through the three sizes around each bottom puts the optimum at about "
                 f"{n_low / 1e3:,.0f}K and {n_high / 1e3:,.0f}K parameters.")
        largest = high[-1]
        grows = compute_for_params(low, high, largest["params"])
        if grows is not None:
            c = float(f"{grows[1]:.2g}")    # an extrapolation: two significant digits at most
            text += (f" Growing as C^{grows[0]:.2f}, it would reach {largest['model']} ({largest['params']:,}) at about "
                     f"{c:,.0f} training Gflops ({grows[1] / largest['compute']:,.0f} times the higher compute).")
    return text


def report_both(results: list[dict]) -> str:
    """``--report`` without ``--out``: the committed profile at each compute, and how its optimum moved."""
    high = load_results(RESULTS_HIGH)
    text = summarize(results)
    if high and results:
        text += "\n\n" + summarize(high) + "\n\n" + shift(profile(results), profile(high))
    return text


def main(argv=None) -> list[dict]:
    p = cli.build_parser("python -m minidit.experiments.frontier",
                         "the compute-optimal frontier: model sizes of patch 4 at one training compute", seeds="0,1,2")
    p.add_argument("--high", action="store_true", help="the profile at six times the compute (DiT-F/4 to DiT-T/4, "
                   "seeds 0,1 unless --seeds; 55 minutes on 2 cores)")
    p.set_defaults(seeds=None)   # the default depends on --high: SEEDS, or HIGH_SEEDS
    args = p.parse_args(argv)
    seeds = cli.seeds_of(args) if args.seeds else (HIGH_SEEDS if args.high else SEEDS)
    if args.report:   # one folder's profile (--out DIR, or --high), else both committed profiles
        return cli.report(args, RESULTS_HIGH if args.high else RESULTS,
                          summarize if args.out or args.high else report_both)
    smoke, out = cli.start(args, "frontier-high" if args.high else "frontier")
    if smoke:
        recipe, models = (SMOKE_HIGH_RECIPE, SMOKE_HIGH_MODELS) if args.high else (SMOKE_RECIPE, SMOKE_MODELS)
    else:
        recipe, models = (HIGH_RECIPE, HIGH_MODELS) if args.high else (RECIPE, MODELS)
    specs = frontier_specs(cli.recipe_from_args(args, recipe), seeds=seeds, models=models)
    return cli.run_and_report(specs, out, summarize, desc="frontier", workers=args.workers)


if __name__ == "__main__":
    main()
