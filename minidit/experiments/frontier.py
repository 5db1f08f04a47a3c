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

    python -m minidit.experiments.frontier --smoke
    python -m minidit.experiments.frontier --workers 2          # the committed runs
    python -m minidit.experiments.frontier --report             # their table
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from . import claims, cli, scaling
from .common import Recipe, RunSpec, model_facts

# smallest first; all of patch 4 (16 tokens), so only the model's size changes
MODELS = ("DiT-A/4", "DiT-F/4", "DiT-P/4", "DiT-N/4", "DiT-T/4")
REFERENCE = "DiT-A/4"   # every model gets the training compute of RECIPE.steps steps of this one
SEEDS = (0, 1)
RESULTS = Path(__file__).resolve().parent / "results" / "frontier"

# the scaling recipe, with 20,000 steps of the reference model: a compute at which the smallest
# models have stopped improving much (A/4: FID -80, -47, -28 per doubling of its steps) while
# the largest get only a few hundred steps; checkpoints at 1/8, 1/4, 1/2 and all of each run;
# no sampling-steps sweep
RECIPE = dataclasses.replace(scaling.RECIPE, steps=20000, fractions=(0.125, 0.25, 0.5, 1.0), sweep_steps=())
SMOKE_RECIPE = dataclasses.replace(scaling.SMOKE_RECIPE, steps=40, fractions=(0.5, 1.0), sweep_steps=())
SMOKE_MODELS = ("DiT-A/4", "DiT-P/4")


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


def summarize(results: list[dict]) -> str:
    """Markdown: the IsoFLOP profile (one row per model) and where its minimum lies."""
    rows = profile(results)
    if not rows:
        return "(no results)"
    best = optimum(rows)
    lines = [f"glyphs 16x16, the scaling recipe; every model trained to the compute of "
             f"{RECIPE.steps:,} steps of {REFERENCE} with its own cosine schedule.", "",
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


def main(argv=None) -> list[dict]:
    return cli.study_main(argv, "frontier", "the compute-optimal frontier: five model sizes at one training compute",
                          "0,1", RESULTS, summarize, RECIPE, SMOKE_RECIPE, desc="frontier",
                          make_specs=lambda recipe, seeds, smoke: frontier_specs(
                              recipe, seeds=seeds, models=SMOKE_MODELS if smoke else MODELS))


if __name__ == "__main__":
    main()
