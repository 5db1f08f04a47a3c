"""The paper's conditioning ablation (Figure 5) at CPU scale: ``python -m minidit.experiments.ablation``.

The paper trains DiT-XL/2 four times, changing only how the timestep and class enter the blocks
(Figure 3): in-context tokens, cross-attention, adaLN and adaLN-Zero, and plots FID-50K over
400K steps: adaLN-Zero is best at every point of training. Here: the same four variants of one
small model (default DiT-N/4: 4 blocks, width 96, 16 tokens of 16x16 glyphs) trained with the
scaling grid's recipe (same steps, batch, learning rate, data order and seeds), FID of the EMA
model at several checkpoints, three seeds. Why N/4 and not the 2-block P/2 of earlier versions:
with two blocks there is little depth for zero-initialised residual branches to help with, and
all four variants came out within the seed spread. Cached as one JSON per (variant, seed) like
the scaling grid; the adaLN-Zero runs of seeds 0 and 1 ARE the scaling grid's DiT-N/4 runs (the
same spec), copied rather than retrained. The measured results are committed in
``minidit/experiments/results/ablation``; ``--report`` reads them.

    python -m minidit.experiments.ablation --smoke
    python -m minidit.experiments.ablation --workers 2     # 12 runs, ~50 min on 2 CPU cores
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from minidit.errors import run_cli
from minidit.models import CONDITIONINGS

from . import cli, scaling
from .common import Recipe, RunSpec
from .grid import load_result, save_result

RECIPE = scaling.RECIPE
MODEL = "DiT-N/4"
SEEDS = (0, 1, 2)
RESULTS = Path(__file__).resolve().parent / "results" / "ablation"

# the paper's Figure 5 order (worst to best there)
VARIANTS = ("in-context", "cross-attention", "adaLN", "adaLN-Zero")


# ------------------------------------------------------------------------------ graded (ch11)

def area_under_fid_curve(steps, fids) -> float:
    """Mean FID over training: the area under the FID-vs-step curve divided by its length.

    ``steps`` (increasing) and ``fids`` are equally long sequences (n >= 2). Use the trapezoid
    rule between consecutive checkpoints::

        area = sum_i (steps[i+1] - steps[i]) * (fids[i] + fids[i+1]) / 2
        mean = area / (steps[-1] - steps[0])

    One number per curve that rewards being good *throughout* training, not just at the end
    (Figure 5's claim is "at all stages of training"). Raise ``ValueError`` if the lengths differ,
    n < 2, or ``steps`` is not strictly increasing.
    """
    # BEGIN SOLUTION ch11 difficulty=1 minutes=15
    s = np.asarray(steps, dtype=np.float64)
    f = np.asarray(fids, dtype=np.float64)
    if s.shape != f.shape or s.ndim != 1 or s.size < 2:
        raise ValueError(f"need two equally long 1-d sequences of length >= 2, got {s.shape} and {f.shape}")
    if np.any(np.diff(s) <= 0):
        raise ValueError(f"steps must be strictly increasing, got {s.tolist()}")
    # trapezoid rule: sum (s_{i+1} - s_i) (f_i + f_{i+1}) / 2
    area = float(np.sum(np.diff(s) * (f[1:] + f[:-1]) / 2.0))
    return area / float(s[-1] - s[0])
    # END SOLUTION


def final_fid_ranking(curves: dict[str, list[float]]) -> list[str]:
    """Variant names sorted from best (lowest FID at the LAST checkpoint) to worst.

    ``curves`` maps a variant name (e.g. ``"adaLN-Zero"``) to its FIDs at the checkpoints, in
    training order. Ties are broken by the name (alphabetically) so the ranking is deterministic.
    Raise ``ValueError`` if a curve is empty.
    """
    # BEGIN SOLUTION ch11 difficulty=1 minutes=10
    for name, fids in curves.items():
        if len(fids) == 0:
            raise ValueError(f"the FID curve of {name!r} is empty")
    return sorted(curves, key=lambda name: (curves[name][-1], name))
    # END SOLUTION


def gflops_overhead(gflops: dict[str, float], baseline: str = "adaLN-Zero") -> dict[str, float]:
    """Extra forward compute of each variant relative to ``baseline``, as a fraction.

    ``gflops`` maps a variant name to its forward Gflops; return ``{name: gflops[name] /
    gflops[baseline] - 1}`` for every name (the baseline itself maps to 0.0). The paper: cross-
    attention adds ~15% Gflops to DiT-XL/2, in-context and adaLN are within a fraction of a percent.
    Raise ``ValueError`` if the baseline is missing or its Gflops are not positive.
    """
    # BEGIN SOLUTION ch11 difficulty=1 minutes=10
    if baseline not in gflops or gflops[baseline] <= 0:
        raise ValueError(f"baseline {baseline!r} missing or non-positive in {sorted(gflops)}")
    base = gflops[baseline]
    return {name: g / base - 1.0 for name, g in gflops.items()}
    # END SOLUTION


# ------------------------------------------------------------------------------ the experiment

def ablation_specs(model: str = MODEL, recipe: Recipe = RECIPE, variants=VARIANTS, seeds=SEEDS) -> list[RunSpec]:
    """One RunSpec per variant x seed: same model, recipe, data order and seed.

    With the shared recipe the adaLN-Zero run IS the scaling grid's run of the same model (same
    JSON; a cached one is reused by copying it over).
    """
    return [recipe.spec(model, conditioning=v, seed=s) for v in variants for s in seeds]


# The smoke ablation is shorter than the scaling grid's smoke run and skips the sampling sweep.
SMOKE_ABLATION = dataclasses.replace(scaling.SMOKE_RECIPE, steps=16, warmup_steps=4, sweep_steps=())


def curves_of(results: list[dict]) -> dict[str, tuple[list[int], list[float]]]:
    """variant -> (checkpoint steps, FIDs averaged over seeds)."""
    acc: dict[str, list[list[float]]] = {}
    steps: dict[str, list[int]] = {}
    for r in results:
        v = r["spec"]["conditioning"]
        acc.setdefault(v, []).append([c["fid"] for c in r["checkpoints"]])
        steps[v] = [c["step"] for c in r["checkpoints"]]
    return {v: (steps[v], np.mean(acc[v], axis=0).tolist()) for v in acc}


def summarize(results: list[dict]) -> str:
    """Markdown: each variant's params, Gflops (+ overhead), FID at every checkpoint, mean FID."""
    if not results:
        return "(no results)"
    order = {v: i for i, v in enumerate(VARIANTS)}
    results = sorted(results, key=lambda r: (order.get(r["spec"]["conditioning"], 99), r["spec"]["seed"]))
    spec = results[0]["spec"]
    steps = [c["step"] for c in results[0]["checkpoints"]]
    over = gflops_overhead({r["spec"]["conditioning"]: r["gflops"] for r in results}) \
        if any(r["spec"]["conditioning"] == "adaLN-Zero" for r in results) else {}
    curves = curves_of(results)
    dataset = spec.get("dataset", "digits")
    lines = [f"{spec['model']} on {dataset}, each variant: batch {spec['batch_size']}, {spec['steps']} steps, AdamW lr "
             f"{spec['lr']:g} ({spec.get('lr_schedule', 'constant')}), same seed and data order. FID: "
             f"{spec['fid_samples']} EMA samples, {spec['sampling_steps']} DDPM steps, cfg {spec['cfg_scale']:g}, "
             f"{dataset}-classifier features.", "",
             "| conditioning | params | Gflops (x1e-3) | vs adaLN-Zero | " + " | ".join(f"FID @ {s}" for s in steps)
             + " | mean FID (area) | final loss | train s |",
             "|---|---|---|---|" + "---|" * len(steps) + "---|---|---|"]
    for r in results:
        v = r["spec"]["conditioning"]
        fids = [c["fid"] for c in r["checkpoints"]]
        lines.append(f"| {v} (seed {r['spec']['seed']}) | {r['params']:,} | {r['gflops'] * 1e3:.3f} | "
                     + (f"{100 * over[v]:+.1f}%" if v in over else "-") + " | " + " | ".join(f"{f:.2f}" for f in fids)
                     + f" | {area_under_fid_curve(steps, fids) if len(fids) > 1 else fids[0]:.2f} | "
                     f"{r['checkpoints'][-1]['loss']:.4f} | {r['train_seconds']:.0f} |")
    ranking = final_fid_ranking({v: f for v, (_, f) in curves.items()})
    finals: dict[str, list[float]] = {}
    for r in results:
        finals.setdefault(r["spec"]["conditioning"], []).append(r["checkpoints"][-1]["fid"])
    if max(len(f) for f in finals.values()) > 1:
        lines += ["", "Final FID over seeds (mean +- std, n seeds): " + "; ".join(
            f"{v} {np.mean(finals[v]):.1f} +- {np.std(finals[v], ddof=1) if len(finals[v]) > 1 else 0:.1f} "
            f"(n={len(finals[v])})" for v in ranking) + "."]
    lines += ["", "Ranking by final FID (best first" + (", seed means" if len(results) > len(curves) else "")
              + "): " + " < ".join(ranking)
              + ". Paper (Figure 5, XL/2): adaLN-Zero < adaLN < cross-attention < in-context."]
    return "\n".join(lines)


def reuse_scaling_runs(specs, out: Path, smoke: bool) -> None:
    """Copy the scaling grid's run of an identical spec (the adaLN-Zero one) instead of retraining:
    from the committed grid or the cache."""
    for spec in specs:
        if load_result(out, spec) is None:
            for folder in (scaling.RESULTS, cli.results_dir("scaling", smoke)):
                cached = load_result(folder, spec)
                if cached is not None:
                    save_result(out, spec, cached)
                    break


def variants_of(arg: str) -> tuple[str, ...]:
    variants = tuple(v.strip() for v in arg.split(",") if v.strip())
    bad = [v for v in variants if v not in CONDITIONINGS]
    if bad:
        raise SystemExit(f"error: unknown conditioning variant(s) {bad}; choose from {list(CONDITIONINGS)}")
    return variants


def main(argv=None) -> list[dict]:
    p = cli.build_parser("python -m minidit.experiments.ablation",
                         "DiT conditioning ablation (Figure 5) at CPU scale on 16x16 glyphs", RECIPE, seeds="0,1,2")
    p.add_argument("--model", default=MODEL, help=f"model for all variants (default {MODEL})")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated conditioning variants")
    args = p.parse_args(argv)
    if args.report:
        return cli.report(args, RESULTS, summarize)
    smoke, out = cli.start(args, "ablation")
    recipe = cli.recipe_from_args(args, SMOKE_ABLATION if smoke else RECIPE)
    specs = ablation_specs(args.model, recipe, variants_of(args.variants), seeds=cli.seeds_of(args))
    reuse_scaling_runs(specs, out, smoke)
    return cli.run_and_report(specs, out, summarize, desc="conditioning ablation", workers=args.workers)


if __name__ == "__main__":
    run_cli(main)
