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
it. This experiment measures the profile: five models of patch 4 on the scaling study's 16x16
glyphs, from A(tto) (1 block, width 32) to T(iny) (6 blocks, width 128), each trained to exactly
the compute of 20,000 steps of DiT-A/4 (about 980 training Gflops, the base compute), with the
scaling recipe and its own full cosine schedule. FID is the scaling study's (500 samples, 25
DDPM steps, the glyphs classifier's features).

The profile is measured at three computes, 1x, 6x and 36x that one (``--times``), to see where
the optimum goes when the compute grows. The larger computes leave out the models already behind
at the smaller one (A/4 at 6x, F/4 at 36x); 1x and 36x have three seeds, 6x two (at 36x the P/4
run alone takes 70 minutes of a core, and F/4 there would take four and a half hours). The
optimum of each profile is read between the measured sizes (``optimal_params``) and its growth
fitted as a power of the compute (``optimum_growth``). The 36x profile was run to test what the
first two predicted: an optimum grown as C^0.55 to about 630K parameters, just below N/4's 728K.
Its first seed put it at 568K; with all three seeds the bottom is flat between N/4 and T/4 (FID
8.15 and 8.13 in the seed mean; T/4's seeds: 10.3, 6.9 and 7.2) and the parabola puts it at
1.2M, about twice the prediction.

    python -m minidit.experiments.frontier --smoke
    python -m minidit.experiments.frontier --workers 2             # 1x (about 28 min on 2 cores)
    python -m minidit.experiments.frontier --times 6 --workers 2   # 6x (55 min)
    python -m minidit.experiments.frontier --times 36 --workers 2  # 36x (3 hours 45 min)
    python -m minidit.experiments.frontier --report                # every profile and the optimum's growth
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from minidit.errors import run_cli

from . import claims, cli, scaling
from .common import Recipe, RunSpec, model_facts
from .grid import load_results

# smallest first; all of patch 4 (16 tokens), so only the model's size changes
MODELS = ("DiT-A/4", "DiT-F/4", "DiT-P/4", "DiT-N/4", "DiT-T/4")
REFERENCE = "DiT-A/4"   # the base compute is that of RECIPE.steps steps of this one
RESULTS_ROOT = Path(__file__).resolve().parent / "results"

# the scaling recipe, with 20,000 steps of the reference model: a compute at which the smallest
# models have stopped improving much (A/4: FID -80, -47, -28 per doubling of its steps) while
# the largest get only a few hundred steps; checkpoints at 1/8, 1/4, 1/2 and all of each run;
# no sampling-steps sweep
RECIPE = dataclasses.replace(scaling.RECIPE, steps=20000, fractions=(0.125, 0.25, 0.5, 1.0), sweep_steps=())
SMOKE_RECIPE = dataclasses.replace(scaling.SMOKE_RECIPE, steps=40, fractions=(0.5, 1.0), sweep_steps=())


@dataclasses.dataclass(frozen=True)
class Profile:
    """One IsoFLOP profile: ``models`` trained to ``times`` times the base compute, with ``seeds``
    each; ``--smoke`` trains ``smoke_models`` at ``times`` times the smoke recipe's compute."""
    times: int
    models: tuple[str, ...]
    seeds: tuple[int, ...]
    smoke_models: tuple[str, ...]

    def recipe(self, smoke: bool = False) -> Recipe:
        base = SMOKE_RECIPE if smoke else RECIPE
        return dataclasses.replace(base, steps=self.times * base.steps)

    @property
    def results(self) -> Path:
        """Where its runs are committed."""
        return RESULTS_ROOT / f"frontier_{self.times}x"


PROFILES = (
    # three seeds: the bottom of this profile is flat, and F/4's seeds differ the most
    Profile(1, MODELS, (0, 1, 2), ("DiT-A/4", "DiT-P/4")),
    # no A/4: it is already behind F/4 at 1x, and 120,000 steps of it would take 40 minutes a run
    Profile(6, MODELS[1:], (0, 1), ("DiT-F/4", "DiT-P/4")),
    # no F/4 (behind P/4 at 6x; 387,000 steps, 4.5 hours); P/4 takes 70 minutes a seed, three
    # seeds because T/4's first two differ by 3.3 FID, more than the gap between the models
    Profile(36, MODELS[2:], (0, 1, 2), ("DiT-P/4", "DiT-N/4")),
)
PROFILE = {p.times: p for p in PROFILES}


def frontier_specs(recipe: Recipe = RECIPE, seeds=PROFILES[0].seeds, models=MODELS) -> list[RunSpec]:
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


def spread(row: dict, name: str = "fid", digits: int | None = None) -> str:
    """The row's ``name`` (``fid``, ``acc``) as mean ± std, or the one value when it has one seed
    (no spread to show). ``digits`` after the point; by default 1, or 2 below 10, where the
    profiles' best models differ by hundredths (36x: N/4 8.15, T/4 8.13)."""
    mean, std = row[f"{name}_mean"], row[f"{name}_std"]
    if digits is None:
        digits = 2 if abs(mean) < 10 else 1
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if row["seeds"] > 1 else f"{mean:.{digits}f}"


def optimum(rows: list[dict]) -> dict:
    """The row with the lowest mean FID: the compute-optimal model among those measured."""
    return min(rows, key=lambda r: r["fid_mean"])


def tied_with_optimum(rows: list[dict]) -> list[dict]:
    """The other rows whose FID is within the seed spreads of the optimum's (mean - std of one
    reaches mean + std of the other): where the profile's bottom is too flat to tell them apart."""
    best = optimum(rows)
    return [r for r in rows if r is not best and r["fid_mean"] - r["fid_std"] <= best["fid_mean"] + best["fid_std"]]


def level_with_optimum(rows: list[dict]) -> str:
    """The sentence naming the models within the seed spreads of the optimum ("DiT-P/4 and DiT-N/4
    are within the seed spreads of it"), or "" when none is."""
    level = [r["model"] for r in tied_with_optimum(rows)]
    if not level:
        return ""
    return f"{and_list(level)} {'is' if len(level) == 1 else 'are'} within the seed spreads of it"


def optimal_params(rows: list[dict]) -> float | None:
    """The parameter count at the bottom of the profile, between the measured sizes: the vertex of
    the parabola through the best row and its two neighbours in log parameters vs log FID (how
    Hoffmann et al., 2022, read the optimum off an IsoFLOP profile). When the best row is the
    smallest or the largest model, the parabola goes through it and the two sizes next to it: its
    vertex still lies inside the measured sizes when the edge is only a little ahead of its
    neighbour (a flat bottom). None when the parabola has no bottom (it opens downwards) or its
    bottom is outside the measured sizes, and with fewer than three sizes (no parabola to fit)."""
    if len(rows) < 3:
        return None
    i = rows.index(optimum(rows))
    lo = min(max(i - 1, 0), len(rows) - 3)          # the three rows around the best one
    x = np.log([r["params"] for r in rows[lo:lo + 3]])
    y = np.log([r["fid_mean"] for r in rows[lo:lo + 3]])
    # y = a x^2 + b x + c through the three points; its minimum is at x* = -b / (2a)
    a, b, _ = np.polyfit(x, y, 2)
    if a <= 0 or not x[0] <= -b / (2 * a) <= x[-1]:
        return None
    return float(np.exp(-b / (2 * a)))


def optimum_growth(profiles: list[list[dict]]) -> tuple[float, float] | None:
    """The power law N*(C) = k C^a through the optima of two or more profiles (a straight line in
    log compute vs log optimal parameters: exact through two, least squares through more), as
    ``(a, k)``. None if any optimum is outside its profile, or the optimum did not grow."""
    optima = [optimal_params(rows) for rows in profiles]
    if len(profiles) < 2 or None in optima:
        return None
    computes = [rows[0]["compute"] for rows in profiles]
    # log N* = a log C + log k
    a, log_k = np.polyfit(np.log(computes), np.log(optima), 1)
    return (float(a), float(np.exp(log_k))) if a > 0 else None


def compute_for_params(profiles: list[list[dict]], params: float) -> tuple[float, float] | None:
    """Extrapolate the optimum's growth: the exponent a, and the training compute at which a model
    of ``params`` parameters would be compute-optimal, C = (params / k)^(1/a). None as for
    ``optimum_growth``."""
    growth = optimum_growth(profiles)
    if growth is None:
        return None
    a, k = growth
    return a, (params / k) ** (1 / a)


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
                     f"{r['compute']:.0f} | {r['train_seconds']:.0f} | {spread(r)} | {spread(r, 'acc', 3)} |")
    seeds = max(r["seeds"] for r in rows)
    level = level_with_optimum(rows)
    tied = f"; {level}" if level else ""
    lines.append(f"\n({f'mean ± std over {seeds} seeds' if seeds > 1 else 'one seed'}) The compute-optimal model here: "
                 f"{best['model']} ({best['params']:,} parameters){tied}. Below it a larger model is better at "
                 f"equal compute (the paper's Figure 9), above it a smaller one.")
    return "\n".join(lines)


def params_label(n: float) -> str:
    """A parameter count as a reader says it: 86K, 1.20M."""
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:,.0f}K"


def and_list(items: list[str]) -> str:
    """``["a", "b", "c"]`` as the prose says it: "a, b and c"."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def growth(profiles: list[list[dict]]) -> str:
    """Sentences on the profiles (the rows of ``profile``, smallest compute first): the optimum at
    each compute, what the earlier profiles predicted for the last one, and the fitted growth."""
    at = and_list([f"{optimum(p)['model']} at {p[0]['compute']:,.0f}" for p in profiles])
    text = f"The compute-optimal model: {at} training Gflops."
    optima = [optimal_params(p) for p in profiles]
    if None in optima:
        return text
    text += (" The parabola through the three sizes nearest each bottom puts the optimum at about "
             f"{and_list([params_label(n) for n in optima])} parameters.")
    earlier = optimum_growth(profiles[:-1]) if len(profiles) > 2 else None
    if earlier is not None:
        a, k = earlier
        c = profiles[-1][0]["compute"]
        text += (f" Grown as C^{a:.2f} from the first {len(profiles) - 1} profiles, the optimum at {c:,.0f} "
                 f"training Gflops was predicted at about {params_label(k * c ** a)} parameters; the parabola puts it at "
                 f"{params_label(optima[-1])}.")
    largest = max((p[-1] for p in profiles), key=lambda r: r["params"])
    fitted = compute_for_params(profiles, largest["params"])
    if fitted is not None:
        c = float(f"{fitted[1]:.2g}")    # an extrapolation: two significant digits at most
        top = profiles[-1][0]["compute"]
        text += (f" Fitted through {'both' if len(profiles) == 2 else f'all {len(profiles)}'} profiles, it grows as C^{fitted[0]:.2f} and would reach {largest['model']} "
                 f"({largest['params']:,}) at about {c:,.0f} training Gflops ({fitted[1] / top:,.0f} times the highest compute).")
    return text


def report_all(results: list[dict]) -> str:
    """``--report`` without ``--out`` or ``--times``: every committed profile, and how its optimum moved."""
    profiles = [results] + [load_results(p.results) for p in PROFILES[1:]]
    profiles = [r for r in profiles if r]
    text = "\n\n".join(summarize(r) for r in profiles)
    if len(profiles) > 1:
        text += "\n\n" + growth([profile(r) for r in profiles])
    return text


def main(argv=None) -> list[dict]:
    p = cli.build_parser("python -m minidit.experiments.frontier",
                         "the compute-optimal frontier: model sizes of patch 4 at one training compute",
                         RECIPE, seeds="the profile's",
                         steps=f"{RECIPE.steps:,} times --times, of {REFERENCE}; each model gets as many as its compute allows")
    p.add_argument("--times", type=int, choices=sorted(PROFILE), default=None,
                   help="the profile at this many times the base compute (default 1; 6: DiT-F/4 to DiT-T/4, "
                        "55 minutes on 2 cores; 36: DiT-P/4 to DiT-T/4, 3 hours 45 minutes)")
    p.set_defaults(seeds=None)   # the default is the profile's
    args = p.parse_args(argv)
    prof = PROFILE[args.times or 1]
    if args.report:   # one folder's profile (--out DIR, or --times N), else every committed profile
        return cli.report(args, prof.results, summarize if args.out or args.times else report_all)
    smoke, out = cli.start(args, f"frontier-{prof.times}x")
    recipe = cli.recipe_from_args(args, prof.recipe(smoke))
    seeds = cli.seeds_of(args) if args.seeds else prof.seeds
    specs = frontier_specs(recipe, seeds=seeds, models=prof.smoke_models if smoke else prof.models)
    return cli.run_and_report(specs, out, summarize, desc="frontier", workers=args.workers)


if __name__ == "__main__":
    run_cli(main)
