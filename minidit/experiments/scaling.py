"""The paper's scaling study at CPU scale: ``python -m minidit.experiments.scaling``.

Figures 2, 8, 9 and 10 of the paper train 12 DiTs (sizes S, B, L, XL x patch sizes 8, 4, 2) with
one recipe and ask how FID depends on compute. Here the same grid is small enough for a CPU:
minidit's families P (depth 2, width 64), N (4, 96) and T (6, 128) x patch sizes 4, 2, 1 on 8x8
digits, i.e. T = 4, 16 or 64 tokens. Every model trains with the same recipe for the same number
of steps; FID of the EMA model is measured at several checkpoints (25/50/100% of the steps).
Three views of the results:

* Figure 8 -- FID vs the model's forward Gflops, with the Pearson correlation (paper: -0.93);
* Figure 9 -- FID vs training compute ``Gflops x batch x steps x 3``;
* Figure 10 -- sampling compute vs model compute: FID of each final model with several
  sampling-step counts, against the Gflops spent to sample one image.

Results are cached as one JSON per (model, seed) under ``--out`` (a rerun skips finished
configs); ``--report`` prints the tables from the cache without training.

    python -m minidit.experiments.scaling --smoke          # a tiny grid in seconds
    python -m minidit.experiments.scaling                  # the normal CPU grid (6 models, ~40 min)
    python -m minidit.experiments.scaling --models all     # all 9 (+ T/2, N/1, T/1: the costliest)
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

FAMILIES = ("P", "N", "T")
PATCHES = (4, 2, 1)
ALL_MODELS = tuple(f"DiT-{f}/{p}" for f in FAMILIES for p in PATCHES)
# The normal grid (sized for ~40 min on 2 busy CPU cores) covers both scaling axes -- patch size
# 4/2/1 at the smallest width, and size P/N/T at patch 4, plus N/2 -- and leaves out T/2, N/1 and
# T/1: those three alone would cost more than the six together (T/1 is 82 MFLOPs per image, 15x
# T/4). ``--models all`` runs all nine.
NORMAL_MODELS = ("DiT-P/4", "DiT-P/2", "DiT-P/1", "DiT-N/4", "DiT-N/2", "DiT-T/4")
SMOKE_MODELS = ("DiT-P/4", "DiT-P/2", "DiT-N/4")


# ------------------------------------------------------------------------------ graded (ch12)

def pearson_correlation(x, y) -> float:
    """Pearson's correlation coefficient of two equally long sequences of numbers.

        r = sum_i (x_i - mean(x)) (y_i - mean(y)) / sqrt(sum_i (x_i - mean(x))^2 * sum_i (y_i - mean(y))^2)

    ``x`` and ``y`` are lists or 1-d arrays of length n >= 2. Returns a Python float in [-1, 1]:
    -1 when y falls exactly linearly as x grows (the paper reports -0.93 between Gflops and FID).
    Raise ``ValueError`` if the lengths differ, n < 2, or either sequence is constant (r is then
    undefined: 0 / 0). Compute in float64.
    """
    # BEGIN SOLUTION ch12
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


def training_compute_gflops(gflops_per_image: float, batch_size: int, steps: int) -> float:
    """Total training compute in the paper's units (Figure 9): ``Gflops x batch x steps x 3``.

    ``gflops_per_image`` is the forward cost of one image (``count_gflops``). A training step runs
    the forward pass and the backward pass, and the backward pass costs about twice the forward
    (gradients with respect to both the activations and the weights), hence the factor 3.
    Returns a float in Gflops (multiply-accumulates, the paper's convention).
    """
    # BEGIN SOLUTION ch12
    # C_train = 3 * G * B * S  (forward + backward ~ 3 forward passes per image)
    return 3.0 * gflops_per_image * batch_size * steps
    # END SOLUTION


def sampling_compute_gflops(gflops_per_image: float, num_steps: int, cfg: bool = True) -> float:
    """Gflops to sample ONE image with ``num_steps`` denoising steps (the paper's Figure 10 x-axis).

    Every step runs the model once; with classifier-free guidance (``cfg=True``) the model runs on
    a doubled batch (conditional + unconditional half), so each step costs two forward passes.
    Returns ``gflops_per_image * num_steps * (2 if cfg else 1)`` as a float.
    """
    # BEGIN SOLUTION ch12
    passes = 2 if cfg else 1
    return float(gflops_per_image) * num_steps * passes
    # END SOLUTION


# ------------------------------------------------------------------------------ grid + report

def grid_specs(models, steps: int, fractions=(0.25, 0.5, 1.0), seeds=(0,), batch_size: int = 64,
               fid_samples: int = 500, sampling_steps: int = 50, cfg_scale: float = 1.0,
               sweep_steps=(10, 25, 50, 100), lr: float = 1e-3, warmup_steps: int = 100):
    """The list of RunSpecs of a grid: every model x seed, the same recipe for all."""
    from .common import RunSpec, checkpoint_steps

    return [RunSpec(model=m, steps=steps, checkpoints=checkpoint_steps(steps, fractions), batch_size=batch_size,
                    lr=lr, warmup_steps=warmup_steps, seed=s, fid_samples=fid_samples,
                    sampling_steps=sampling_steps, cfg_scale=cfg_scale, sweep_steps=tuple(sweep_steps))
            for m in models for s in seeds]


SMOKE = dict(steps=20, fractions=(0.5, 1.0), batch_size=16, fid_samples=100, sampling_steps=5,
             sweep_steps=(2, 5), warmup_steps=5)


def final_fids(results: list[dict]) -> dict[str, float]:
    """model -> final-checkpoint FID, averaged over seeds."""
    by_model: dict[str, list[float]] = {}
    for r in results:
        by_model.setdefault(r["spec"]["model"], []).append(r["checkpoints"][-1]["fid"])
    return {m: float(np.mean(v)) for m, v in by_model.items()}


def correlations(results: list[dict]) -> dict[str, float]:
    """Pearson r between Gflops and final FID, on raw values and on log-log axes (Figure 8's)."""
    fids = final_fids(results)
    gfl = {r["spec"]["model"]: r["gflops"] for r in results}
    g = [gfl[m] for m in fids]
    f = [fids[m] for m in fids]
    if len(f) < 2:
        return {}
    return dict(raw=pearson_correlation(g, f), loglog=pearson_correlation(np.log(g), np.log(f)))


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
    lines = [f"Recipe: digits 8x8 train split, batch {spec['batch_size']}, {spec['steps']} steps, AdamW lr "
             f"{spec['lr']:g} ({spec['warmup_steps']}-step warm-up, then constant), EMA {spec['ema_decay']} "
             f"(with warm-up), learned sigma. FID: {spec['fid_samples']} class-balanced EMA samples vs the "
             f"{'train split'} through the digits classifier's 64-d features; {spec['sampling_steps']} "
             f"respaced DDPM steps, cfg {spec['cfg_scale']:g}" + (" (no guidance)" if spec['cfg_scale'] <= 1 else "")
             + ".", "",
             "| model | tokens | params | Gflops (x1e-3) | " + " | ".join(f"FID @ {s}" for s in steps)
             + " | final loss | train s | img/s |",
             "|---|---|---|---|" + "---|" * len(steps) + "---|---|---|"]
    for r in results:
        fids = " | ".join(f"{c['fid']:.2f}" for c in r["checkpoints"])
        lines.append(f"| {r['spec']['model']} (seed {r['spec']['seed']}) | {r['tokens']} | {r['params']:,} | "
                     f"{r['gflops'] * 1e3:.2f} | {fids} | {r['checkpoints'][-1]['loss']:.4f} | "
                     f"{r['train_seconds']:.0f} | {r['images_per_second']:.0f} |")
    per_model: dict[str, list[float]] = {}
    for r in results:
        per_model.setdefault(r["spec"]["model"], []).append(r["checkpoints"][-1]["fid"])
    if max(len(v) for v in per_model.values()) > 1:
        lines += ["", "Final FID over seeds (mean +- std, n seeds): " + "; ".join(
            f"{m} {np.mean(v):.1f} +- {np.std(v, ddof=1) if len(v) > 1 else 0:.1f} (n={len(v)})"
            for m, v in per_model.items()) + ". The correlations below use the seed means."]
    corr = correlations(results)
    if corr:
        lines += ["", f"Pearson correlation between Gflops and final FID over {len(final_fids(results))} models: "
                      f"r = {corr['raw']:.3f} (raw values), r = {corr['loglog']:.3f} (log Gflops vs log FID, "
                      f"Figure 8's axes). Paper: -0.93."]
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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m minidit.experiments.scaling",
                                description="DiT scaling study (Figures 8-10) at CPU scale on 8x8 digits")
    p.add_argument("--smoke", action="store_true", help="a tiny grid that runs in seconds (also MINIDIT_SMOKE=1)")
    p.add_argument("--steps", type=int, default=None, help="training steps per model (default 800; smoke 20)")
    p.add_argument("--models", default=None,
                   help="comma-separated names (e.g. DiT-P/4,DiT-N/2) or 'all' for the 9; default: 6 "
                        "(all but T/2, N/1 and T/1)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--fid-samples", type=int, default=None)
    p.add_argument("--sampling-steps", type=int, default=None, help="respaced DDPM steps for FID (default 50)")
    p.add_argument("--cfg-scale", type=float, default=1.0, help="guidance for FID samples (default 1.0: none)")
    p.add_argument("--sweep-steps", default=None, help="sampling steps for Figure 10 (default 10,25,50)")
    p.add_argument("--out", default=None, help="results folder (default: the minidit cache)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: these models are tiny, and on a busy machine extra "
                        "threads only wait for each other)")
    p.add_argument("--report", action="store_true", help="print the tables from the cache, train nothing")
    return p


def default_out(smoke: bool) -> Path:
    from minidit.env import cache_dir

    return cache_dir("experiments", "scaling-smoke" if smoke else "scaling")


def main(argv=None) -> list[dict]:
    from .common import grid_main

    args = build_parser().parse_args(argv)

    def make_specs(smoke: bool, out: Path) -> list:
        cfg = dict(SMOKE) if smoke else dict(steps=800, fractions=(0.25, 0.5, 1.0), batch_size=64, fid_samples=500,
                                             sampling_steps=50, sweep_steps=(10, 25, 50), warmup_steps=100)
        if args.models is None:
            models = SMOKE_MODELS if smoke else NORMAL_MODELS
        elif args.models == "all":
            models = ALL_MODELS
        else:
            models = tuple(m.strip() for m in args.models.split(",") if m.strip())
        from minidit.models import DiT_models

        unknown = [m for m in models if m not in DiT_models]
        if unknown:
            raise SystemExit(f"error: unknown model(s) {unknown}; e.g. {', '.join(ALL_MODELS)}")
        for key in ("steps", "batch_size", "fid_samples", "sampling_steps"):
            if getattr(args, key) is not None:
                cfg[key] = getattr(args, key)
        if args.sweep_steps:
            cfg["sweep_steps"] = tuple(int(s) for s in args.sweep_steps.split(","))
        seeds = tuple(int(s) for s in args.seeds.split(","))
        return grid_specs(models, seeds=seeds, cfg_scale=args.cfg_scale, **cfg)

    return grid_main(args, default_out, summarize, make_specs, desc="scaling grid")

if __name__ == "__main__":
    main()
