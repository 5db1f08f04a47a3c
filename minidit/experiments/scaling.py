"""The paper's scaling study at CPU scale: ``python -m minidit.experiments.scaling``.

Figures 2, 8, 9 and 10 of the paper train 12 DiTs (sizes S, B, L, XL x patch sizes 8, 4, 2) with
one recipe and ask how FID depends on compute. Here the same grid is small enough for a CPU:
minidit's families P (depth 2, width 64), N (4, 96) and T (6, 128) x patch sizes 8, 4, 2 on 16x16
glyphs (digits typeset in 20 fonts), i.e. T = 4, 16 or 64 tokens -- the paper's 16, 64 and 256 on
a 32x32 latent, a quarter as many. Every model trains with the same recipe for the same number of
steps, with two seeds; FID of the EMA model is measured at 25/50/100% of the steps. Three views:

* Figure 8 -- FID vs the model's forward Gflops, with the Pearson correlation (paper: -0.93);
* Figure 9 -- FID vs training compute ``Gflops x batch x steps x 3``;
* Figure 10 -- sampling compute vs model compute: FID of each final model with several
  sampling-step counts, against the Gflops spent to sample one image.

Why this recipe (each choice measured before the grid was run):

* 16x16 glyphs, not 8x8 digits: on an 8x8 image a 4x4 patch is a quarter of the picture, so the
  token axis barely exists; glyphs have fine detail (serifs, italics) at 16x16 and unlimited
  samples.
* lr 5e-3 with a cosine decay, AdamW beta2 0.99 (the paper: 1e-4 constant, beta2 0.999): at this
  size and length the models are limited by optimisation, not capacity; on N-sized models the
  paper's settings left FID 60% higher after 1,500 steps.
* 1,500 steps, batch 64: the budget that keeps the normal grid (9 models x 2 seeds) within
  about 80 minutes on two cores.
* FID from 500 samples in the glyphs classifier's 64-d features against 10,000 held-out images,
  25 respaced DDPM steps: real-vs-real FID at that count is about 4 (``fid_noise`` measures it),
  small against the gaps between models; the seed spread is the larger noise.
* Samples clip the predicted x_0 to [-1, 1] at every step, as ADM's pixel-space sampler does (the
  official DiT does not: its latents are unbounded).

A second grid, ``--grid AFP``, measures Figure 9 where it can hold at CPU compute. The P/N/T grid
sits above the compute-optimal model size (frontier.py measures where that size lies): its smaller
models, trained longer, beat its larger ones at equal compute. The AFP grid is three smaller sizes,
A (depth 1, width 32), F (2, 32) and P (2, 64), x patch sizes 4 and 2, trained 16,000 steps with
the same recipe otherwise, so every model sits below the optimum. Patch 8 is left out: a
width-32 model cannot carry a patch of 64 pixels (F/8 after 16,000 steps: FID 920, no glyph learnt).
A seed of its 6 runs and 4 compute-matched runs takes about an hour on two cores.

Results are cached as one JSON per (model, seed). The grid's results are committed in
``minidit/experiments/results/scaling``; ``--report`` reads them (``--out DIR``: that folder
instead), ``--report --json`` prints one JSON object (each run's final FID and the correlations).
A run writes to the minidit cache unless ``--out`` says otherwise, so it never overwrites the
committed files. ``--matched`` trains Figure 9's compute-matched runs instead (each smaller model
to its larger neighbour's compute; committed in ``results/scaling_matched``). ``--gpu-grid``
prints the paper's own 12-model grid on ImageNet-256 as ``torchrun`` commands with a time
estimate each (gpu_grid.py).

    python -m minidit.experiments.scaling --smoke                  # a tiny grid in a minute
    python -m minidit.experiments.scaling --workers 2              # the normal grid: 9 models x 2 seeds
    python -m minidit.experiments.scaling --models DiT-P/4 --seeds 0   # re-run one committed config
    python -m minidit.experiments.scaling --matched --workers 2    # Figure 9 at equal compute
    python -m minidit.experiments.scaling --report --json          # the committed results as JSON
    python -m minidit.experiments.scaling --grid AFP --workers 2   # the grid below the optimum (Figure 9)
    python -m minidit.experiments.scaling --grid AFP --matched --workers 2
    python -m minidit.experiments.scaling --gpu-grid --gpus 8 --gpu H100 --mfu 0.4 --latents DIR
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

from minidit.errors import run_cli
from minidit.models import DiT_models

from . import cli, gpu_grid
from .common import Recipe, RunSpec, model_facts
from .grid import finished

FAMILIES = ("P", "N", "T")
PATCHES = (8, 4, 2)
ALL_MODELS = tuple(f"DiT-{f}/{p}" for f in FAMILIES for p in PATCHES)
NORMAL_MODELS = ALL_MODELS
SMOKE_MODELS = ("DiT-P/8", "DiT-P/4", "DiT-N/8")
SEEDS = (0, 1)
# where the normal grid's results are committed (one JSON per model and seed)
RESULTS = Path(__file__).resolve().parent / "results" / "scaling"
RESULTS_MATCHED = RESULTS.parent / "scaling_matched"   # its compute-matched runs (Figure 9)

# The scaling recipe: the module's docstring says why each number differs from the ablation's.
RECIPE = Recipe(dataset="glyphs", steps=1500, fractions=(0.25, 0.5, 1.0), batch_size=64, lr=5e-3,
                warmup_steps=100, ema_decay=0.995, fid_samples=500, sampling_steps=25,
                sweep_steps=(10, 25, 50), lr_schedule="cosine", beta2=0.99, clip_denoised=True)
# MINIDIT_SMOKE / --smoke: the plumbing in about a minute (after the glyphs classifier is cached)
SMOKE_RECIPE = Recipe(dataset="glyphs", steps=20, fractions=(0.5, 1.0), batch_size=16, lr=5e-3, warmup_steps=5,
                      ema_decay=0.995, fid_samples=100, sampling_steps=5, sweep_steps=(2, 5),
                      lr_schedule="cosine", beta2=0.99, clip_denoised=True, train_samples=1000)


# ------------------------------------------------------------------------------ graded (ch12)

def pearson_correlation(x, y) -> float:
    """Pearson's correlation coefficient of two equally long sequences of numbers.

        r = sum_i (x_i - mean(x)) (y_i - mean(y)) / sqrt(sum_i (x_i - mean(x))^2 * sum_i (y_i - mean(y))^2)

    ``x`` and ``y`` are lists or 1-d arrays of length n >= 2. Returns a Python float in [-1, 1]:
    -1 when y falls exactly linearly as x grows (the paper reports -0.93 between Gflops and FID).
    Raise ``ValueError`` if the lengths differ, n < 2, or either sequence is constant (r is then
    undefined: 0 / 0). Compute in float64.
    """
    # BEGIN SOLUTION ch12 difficulty=1 minutes=10
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape or x.size < 2:
        raise ValueError(f"pearson_correlation needs two sequences of equal length >= 2, got {x.size} and {y.size}")
    dx, dy = x - x.mean(), y - y.mean()
    denom = math.sqrt(float((dx * dx).sum()) * float((dy * dy).sum()))
    if denom == 0.0:
        raise ValueError("pearson_correlation is undefined when one sequence is constant")
    # r = cov(x, y) / (std(x) std(y))
    return float((dx * dy).sum() / denom)
    # END SOLUTION


# ------------------------------------------------------------------------------ grid + report

@dataclass(frozen=True)
class Grid:
    """A scaling grid: families x patch sizes, every model trained with one recipe, and the folders
    where its runs and Figure 9's compute-matched runs are committed."""

    name: str
    cache: str                    # its folder in minidit's cache (the matched runs: ``<cache>-matched``)
    families: tuple[str, ...]     # smallest first
    patches: tuple[int, ...]      # largest first
    recipe: Recipe
    smoke_models: tuple[str, ...]
    results: Path
    results_matched: Path

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(f"DiT-{f}/{p}" for f in self.families for p in self.patches)

    @property
    def pairs(self) -> tuple[tuple[str, str], ...]:
        """Figure 9's pairs ``(smaller, larger)``: at each patch size, each family and the next one up."""
        return tuple((f"DiT-{a}/{p}", f"DiT-{b}/{p}") for p in self.patches
                     for a, b in zip(self.families, self.families[1:]))


GRIDS = {
    "PNT": Grid("PNT", "scaling", FAMILIES, PATCHES, RECIPE, SMOKE_MODELS, RESULTS, RESULTS_MATCHED),
    # below the compute-optimal size (the module docstring says why): the same recipe, 16,000 steps
    # its own cache folder: the two grids' runs of one model share a file name
    "AFP": Grid("AFP", "scaling-afp", ("A", "F", "P"), (4, 2), dataclasses.replace(RECIPE, steps=16_000),
                ("DiT-A/4", "DiT-F/4"), RESULTS.parent / "scaling_afp", RESULTS.parent / "scaling_afp_matched"),
}
MATCHED_PAIRS = GRIDS["PNT"].pairs


# Figure 9 at equal training compute. Under a cosine schedule a run's mid-way checkpoints are not
# annealed (the learning rate is still high), so comparing the larger model's mid-way checkpoint
# with the smaller model's final one is unfair to the larger model. These runs give the smaller
# model of each pair (one patch size, the next family up) its own full schedule, as long as it
# takes to spend the larger model's final training compute: two annealed models, equal compute.
def matched_specs(recipe: Recipe = RECIPE, seeds=SEEDS, pairs=MATCHED_PAIRS) -> list[RunSpec]:
    """For each ``(smaller, larger)`` pair, the smaller model trained for
    ``round(steps * gflops_larger / gflops_smaller)`` steps (its checkpoints at the recipe's
    fractions of that, no sampling-steps sweep), every seed; longest runs first, so that parallel
    workers finish together."""
    specs = []
    for small, large in pairs:
        g_small, g_large = (model_facts(recipe.spec(m))["gflops"] for m in (small, large))
        longer = dataclasses.replace(recipe.at_compute_of(g_large, g_small), sweep_steps=())
        specs += [(longer.steps * g_small, longer.spec(small, seed=s)) for s in seeds]
    return [spec for _, spec in sorted(specs, key=lambda cs: -cs[0])]


def grid_specs(models, recipe: Recipe = RECIPE, seeds=SEEDS) -> list[RunSpec]:
    """The list of RunSpecs of a grid: every model x seed, the same recipe for all."""
    return [recipe.spec(m, seed=s) for m in models for s in seeds]


def final_fids(results: list[dict]) -> dict[str, float]:
    """model -> final-checkpoint FID, averaged over seeds (finished runs only)."""
    by_model: dict[str, list[float]] = {}
    for r in finished(results):
        by_model.setdefault(r["spec"]["model"], []).append(r["checkpoints"][-1]["fid"])
    return {m: float(np.mean(v)) for m, v in by_model.items()}


def spearman_correlation(x, y) -> float:
    """Spearman's rank correlation: Pearson's r of the ranks (ties share their mean rank).

    It asks only whether y falls whenever x grows, not how straight the line is; the same for raw
    and log axes, since the logarithm keeps the order.
    """
    return pearson_correlation(rankdata(x), rankdata(y))


def correlations(results: list[dict]) -> dict[str, float]:
    """Gflops vs final FID over models (seed means): Pearson r on raw values and on log-log axes
    (Figure 8's), and Spearman's rank correlation."""
    fids = final_fids(results)
    gfl = {r["spec"]["model"]: r["gflops"] for r in results}
    g = [gfl[m] for m in fids]
    f = [fids[m] for m in fids]
    if len(f) < 2:
        return {}
    return dict(raw=pearson_correlation(g, f), loglog=pearson_correlation(np.log(g), np.log(f)),
                spearman=spearman_correlation(g, f))


def report_json(results: list[dict]) -> str:
    """The grid as ONE JSON object: each finished run's final FID, and the correlations.

    ``configs``: ``{"model", "gflops", "seed", "fid"}`` per finished run (its final checkpoint),
    sorted by Gflops then seed; ``r_loglog``, ``r_raw``, ``spearman``: ``correlations`` over the
    models' seed-mean FIDs (null with fewer than two models); ``models``: how many there are.
    """
    done = sorted(finished(results), key=lambda r: (r["gflops"], r["spec"]["model"], r["spec"]["seed"]))
    corr = correlations(done)
    return json.dumps(dict(
        configs=[dict(model=r["spec"]["model"], gflops=r["gflops"], seed=r["spec"]["seed"],
                      fid=r["checkpoints"][-1]["fid"]) for r in done],
        r_loglog=corr.get("loglog"), r_raw=corr.get("raw"), spearman=corr.get("spearman"),
        models=len(final_fids(done))), indent=1)


def axis_correlations(results: list[dict]) -> dict[str, dict]:
    """log-log Pearson r along one scaling axis at a time (groups of >= 3 models): name -> {r, models}.

    ``"size @ patch p"``: the families P, N, T at one patch size (more depth and width);
    ``"tokens @ family F"``: one family at patch sizes 4, 2, 1 (more tokens, same parameters).
    """
    fids = final_fids(results)
    gfl = {r["spec"]["model"]: r["gflops"] for r in results}
    groups: dict[str, list[str]] = {}
    for m in fids:
        fam, p = m.split("-")[1].split("/")
        groups.setdefault(f"size @ patch {p}", []).append(m)
        groups.setdefault(f"tokens @ family {fam}", []).append(m)
    return {k: dict(r=pearson_correlation(np.log([gfl[m] for m in ms]), np.log([fids[m] for m in ms])), models=ms)
            for k, ms in sorted(groups.items()) if len(ms) >= 3}


def summarize(results: list[dict]) -> str:
    """Markdown tables of a grid: per model its facts and FID at every checkpoint, the correlation,
    the training-compute view and the sampling-steps sweep."""
    results = sorted(results, key=lambda r: (r["gflops"], r["spec"]["seed"]))
    if not results:
        return "(no results)"
    spec = results[0]["spec"]
    steps = [c["step"] for c in results[0]["checkpoints"]]
    dataset = spec.get("dataset", "digits")
    reference = "the training images" if dataset == "digits" else "10,000 held-out images"
    lines = [f"Recipe: {dataset}, batch {spec['batch_size']}, {spec['steps']} steps, AdamW lr {spec['lr']:g} "
             f"(beta2 {spec.get('beta2', 0.999)}, {spec['warmup_steps']}-step warm-up, then "
             f"{spec.get('lr_schedule', 'constant')}), EMA {spec['ema_decay']} (with warm-up), learned sigma. "
             f"FID: {spec['fid_samples']} class-balanced EMA samples vs {reference} through the {dataset} "
             f"classifier's 64-d features; {spec['sampling_steps']} respaced DDPM steps"
             + (", x_0 clipped" if spec.get("clip_denoised") else "")
             + f", cfg {spec['cfg_scale']:g}" + (" (no guidance)" if spec['cfg_scale'] <= 1 else "") + ".", "",
             "| model | tokens | params | Gflops (x1e-3) | " + " | ".join(f"FID @ {s}" for s in steps)
             + " | final loss | train s | img/s |",
             "|---|---|---|---|" + "---|" * len(steps) + "---|---|---|"]
    for r in results:
        fids = " | ".join(f"{c['fid']:.2f}" for c in r["checkpoints"])
        lines.append(f"| {r['spec']['model']} (seed {r['spec']['seed']}) | {r['tokens']} | {r['params']:,} | "
                     f"{r['gflops'] * 1e3:.2f} | {fids} | {r['checkpoints'][-1]['loss']:.4f} | "
                     f"{r['train_seconds']:.0f} | {r['images_per_second']:.0f} |")
    per_model: dict[str, list[float]] = {}
    for r in finished(results):
        per_model.setdefault(r["spec"]["model"], []).append(r["checkpoints"][-1]["fid"])
    if per_model and max(len(v) for v in per_model.values()) > 1:
        lines += ["", "Final FID over seeds (mean +- std, n seeds): " + "; ".join(
            f"{m} {np.mean(v):.1f} +- {np.std(v, ddof=1) if len(v) > 1 else 0:.1f} (n={len(v)})"
            for m, v in per_model.items()) + ". The correlations below use the seed means."]
    corr = correlations(results)
    if corr:
        lines += ["", f"Pearson correlation between Gflops and final FID over {len(final_fids(results))} models: "
                      f"r = {corr['raw']:.3f} (raw values), r = {corr['loglog']:.3f} (log Gflops vs log FID, "
                      f"Figure 8's axes); Spearman's rank correlation {corr['spearman']:.3f}. Paper: -0.93."]
        by_axis = axis_correlations(results)
        if by_axis:
            lines += ["", "Along one axis at a time (log-log r): " + "; ".join(
                f"{k} ({', '.join(v['models'])}): r = {v['r']:.3f}" for k, v in by_axis.items()) + "."]
    lines += ["", "Training compute (Figure 9): FID at each checkpoint vs Gflops x batch x steps x 3.", "",
              "| model | " + " | ".join(f"compute @ {s} (Gflops)" for s in steps) + " |",
              "|---|" + "---|" * len(steps)]
    for r in results:
        lines.append(f"| {r['spec']['model']} (seed {r['spec']['seed']}) | " + " | ".join(
            f"{c['train_compute_gflops']:.3g} (FID {c['fid']:.2f})" for c in r["checkpoints"]) + " |")
    if results[0].get("sweep"):
        ns = [s["num_steps"] for s in results[0]["sweep"]]
        lines += ["", "Sampling compute vs model compute (Figure 10): FID of the final model with n sampling "
                      "steps; in brackets the Gflops spent per sampled image.", "",
                  "| model | " + " | ".join(f"{n} steps" for n in ns) + " |", "|---|" + "---|" * len(ns)]
        for r in results:
            lines.append(f"| {r['spec']['model']} (seed {r['spec']['seed']}) | " + " | ".join(
                f"{s['fid']:.2f} ({s['sampling_gflops']:.3g})" for s in r["sweep"]) + " |")
    return "\n".join(lines)


def summarize_matched(results: list[dict]) -> str:
    """Markdown of the compute-matched runs: each run's length, its training compute and its FID
    at every checkpoint (the runs differ in length, so the grid's table does not fit them)."""
    results = sorted(results, key=lambda r: (r["gflops"], r["spec"]["seed"]))
    if not results:
        return "(no results)"
    lines = ["Compute-matched runs (Figure 9): each smaller model trained, with its own full schedule, to its "
             "larger neighbour's final training compute; otherwise the grid's recipe.", "",
             "| model | steps | training Gflops | FID at each checkpoint (step: FID) | final class accuracy |",
             "|---|---|---|---|---|"]
    for r in results:
        last = r["checkpoints"][-1]
        lines.append(f"| {r['spec']['model']} (seed {r['spec']['seed']}) | {r['spec']['steps']:,} | "
                     f"{last['train_compute_gflops']:,.0f} | "
                     + ", ".join(f"{c['step']:,}: {c['fid']:.2f}" for c in r["checkpoints"])
                     + f" | {last.get('accuracy', float('nan')):.3f} |")
    return "\n".join(lines)


def models_of(arg: str | None, smoke: bool, grid: Grid = GRIDS["PNT"]) -> tuple[str, ...]:
    """The models of ``--models``: comma-separated names, ``all`` or (None) the models of ``grid``
    (with ``smoke``: its few smoke models)."""
    if arg is None:
        models = grid.smoke_models if smoke else grid.models
    elif arg == "all":
        models = grid.models
    else:
        models = tuple(m.strip() for m in arg.split(",") if m.strip())
    unknown = [m for m in models if m not in DiT_models]
    if unknown:
        raise SystemExit(f"error: unknown model(s) {unknown}; e.g. {', '.join(grid.models)}")
    return models


def main(argv=None) -> list[dict]:
    p = cli.build_parser("python -m minidit.experiments.scaling",
                         "DiT scaling study (Figures 8-10) at CPU scale on 16x16 glyphs", RECIPE, seeds="0,1",
                         steps=f"{RECIPE.steps:,}; --grid AFP: {GRIDS['AFP'].recipe.steps:,}")
    p.add_argument("--grid", default="PNT", choices=sorted(GRIDS), type=str.upper,
                   help="default PNT; AFP is below the compute-optimal size (Figure 9). " + "; ".join(
                       f"{g.name}: families {', '.join(g.families)} x patches {', '.join(map(str, g.patches))}, "
                       f"{g.recipe.steps:,} steps" for g in GRIDS.values()))
    p.add_argument("--models", default=None,
                   help="comma-separated names (e.g. DiT-P/4,DiT-N/2) or 'all'; default: the grid's models")
    p.add_argument("--json", action="store_true", help="with --report: one JSON object (configs, r_loglog, "
                   "r_raw, spearman) instead of the tables")
    p.add_argument("--matched", action="store_true", help="Figure 9 at equal compute: each smaller model "
                   "trained to its larger neighbour's final training compute (--models: which smaller models)")
    g = p.add_argument_group("the paper's 12-model grid on GPUs (prints commands and estimates, trains nothing)")
    g.add_argument("--gpu-grid", action="store_true", help="print the torchrun command and a time estimate of "
                   "each of the 12 ImageNet-256 runs (--steps: their length, default 400000)")
    g.add_argument("--gpus", type=int, default=8, help="GPUs per run (default 8; more: whole nodes of 8)")
    g.add_argument("--gpu", default="H100", help="GPU name for its peak TFLOP/s (default H100)")
    g.add_argument("--mfu", type=float, default=0.4, help="ASSUMED model FLOPs utilisation (default 0.4; "
                   "benchmarks/gpu_check.sh measures it)")
    g.add_argument("--throughput", default=None, help="estimate from MEASURED images/s per model instead: a "
                   "benchmarks/bench_gpu_grid.py --json file, or 'h200' for the committed H200 figures")
    g.add_argument("--latents", default="/data/in256-latents", help="latents from python -m minidit.extract")
    args = p.parse_args(argv)
    if args.gpu_grid:
        try:
            plan = gpu_grid.gpu_grid_plan(args.gpus, args.gpu, args.mfu, args.steps, args.latents,
                                          throughput=args.throughput)
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
        print(gpu_grid.format_plan(plan, args.gpus, args.gpu, args.mfu))
        return plan
    grid = GRIDS[args.grid]
    if args.report:
        if args.matched:
            return cli.report(args, grid.results_matched, summarize_matched)
        return cli.report(args, grid.results, report_json if args.json else summarize)
    smoke, out = cli.start(args, f"{grid.cache}-matched" if args.matched else grid.cache)
    recipe = cli.recipe_from_args(args, SMOKE_RECIPE if smoke else grid.recipe)
    if args.matched:
        smaller = models_of(args.models, smoke, grid)
        specs = matched_specs(recipe, cli.seeds_of(args), [(a, b) for a, b in grid.pairs if a in smaller])
        return cli.run_and_report(specs, out, summarize_matched, desc="compute-matched runs", workers=args.workers)
    specs = grid_specs(models_of(args.models, smoke, grid), recipe, seeds=cli.seeds_of(args))
    return cli.run_and_report(specs, out, summarize, desc="scaling grid", workers=args.workers)


if __name__ == "__main__":
    run_cli(main)
