"""The paper's scaling claims, checked on a finished grid: seed statistics and one verdict per claim.

A grid (``scaling.py``) is a list of result dicts, one per (model, seed). This module reduces it
to what the paper's figures show and tests each claim the way the figures state it:

* **size**  (Figure 2, right): at every patch size, FID falls as the model grows (P -> N -> T);
* **tokens** (Figure 2, left): in every family, FID falls as the patch shrinks (8 -> 4 -> 2);
* **correlation** (Figure 8): Pearson r of log Gflops and log FID over the models is <= -0.90
  (the paper: -0.93);
* **training compute** (Figure 9): where two models of one patch size have spent the same
  training compute, the larger one has the lower FID. Compared fairly only when both runs have
  finished their learning-rate schedule: the smaller model is trained to the larger one's compute
  (``python -m minidit.experiments.scaling --matched``); without those runs, the grid's checkpoints;
* **sampling compute** (Figure 10): the smallest model sampled with the most steps does not reach
  the largest model sampled with the fewest.

Every comparison uses seed means; the seed spread (sample standard deviation over seeds) is
reported next to each mean, so a reader can see which orderings are wider than the noise.

    python -m minidit.experiments.claims              # the verdicts on the committed grid
    python -m minidit.experiments.claims --grid AFP   # on the committed grid below the optimum
    python -m minidit.experiments.claims --out DIR    # on a grid of your own
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from minidit.errors import add_debug_flag, run_cli

from .grid import finished, load_results
from .scaling import GRIDS, correlations


def _family_patch(model: str) -> tuple[str, int]:
    """``"DiT-N/4"`` -> ``("N", 4)``."""
    family, patch = model.split("-")[1].split("/")
    return family, int(patch)


def seed_stats(results: list[dict], key=lambda r: r["spec"]["model"]) -> dict[str, dict]:
    """model (or ``key`` of a run) -> its facts and, per checkpoint and per sampling-step count, the mean and standard
    deviation of FID over the seeds (finished runs only), in increasing order of Gflops.

    Keys per model: ``gflops``, ``params``, ``tokens``, ``seeds``, ``steps``, ``compute`` (training
    Gflops at each checkpoint), ``fid_mean``, ``fid_std``, ``acc_mean`` and ``acc_std`` (class
    accuracy of the samples at the final checkpoint), ``train_seconds`` (mean over the seeds;
    NaN like the accuracy where a result does not record it), ``sweep_steps``, ``sampling_gflops``,
    ``sweep_mean``, ``sweep_std``. With one seed the standard deviation is 0.
    """
    runs: dict[str, list[dict]] = {}
    for r in finished(results):
        runs.setdefault(key(r), []).append(r)
    out = {}
    for model, rs in sorted(runs.items(), key=lambda kv: kv[1][0]["gflops"]):
        fids = np.array([[c["fid"] for c in r["checkpoints"]] for r in rs])          # (seeds, checkpoints)
        sweeps = np.array([[s["fid"] for s in r["sweep"]] for r in rs]) if rs[0]["sweep"] else np.zeros((len(rs), 0))
        accs = [r["checkpoints"][-1].get("accuracy", np.nan) for r in rs]
        ddof = 1 if len(rs) > 1 else 0
        out[model] = dict(
            gflops=rs[0]["gflops"], params=rs[0]["params"], tokens=rs[0]["tokens"],
            seeds=sorted(r["spec"]["seed"] for r in rs),
            steps=[c["step"] for c in rs[0]["checkpoints"]],
            compute=[c["train_compute_gflops"] for c in rs[0]["checkpoints"]],
            fid_mean=fids.mean(0).tolist(), fid_std=fids.std(0, ddof=ddof).tolist(),
            acc_mean=float(np.mean(accs)), acc_std=float(np.std(accs, ddof=ddof)),
            train_seconds=float(np.mean([r.get("train_seconds", np.nan) for r in rs])),
            sweep_steps=[s["num_steps"] for s in rs[0]["sweep"]],
            sampling_gflops=[s["sampling_gflops"] for s in rs[0]["sweep"]],
            sweep_mean=sweeps.mean(0).tolist(), sweep_std=sweeps.std(0, ddof=ddof).tolist())
    return out


def _monotone(stats: dict[str, dict], models: list[str]) -> dict:
    """Do the final seed-mean FIDs fall strictly along ``models`` (in that order)?"""
    fids = [stats[m]["fid_mean"][-1] for m in models]
    return dict(models=models, fids=fids, holds=all(a > b for a, b in zip(fids, fids[1:])))


def _interp_loglog(xs: list[float], ys: list[float], x: float) -> float:
    """Piecewise-linear interpolation of log y over log x (the axes of Figure 9)."""
    return float(np.exp(np.interp(np.log(x), np.log(xs), np.log(ys))))


def check_claims(results: list[dict], matched: list[dict] | None = None, families=("P", "N", "T"),
                 patches=(8, 4, 2)) -> dict:
    """One verdict per claim of the module docstring, with the numbers behind it; ``matched``: the
    compute-matched runs of Figure 9 (``python -m minidit.experiments.scaling --matched``), if any.

    Returns ``{"size": [...], "tokens": [...], "correlation": {...}, "training_compute": [...],
    "sampling_compute": {...}, "all_hold": bool}``; every entry has ``holds``. Claims whose
    models are missing from ``results`` are left out (and do not count for ``all_hold``).
    """
    stats = seed_stats(results)
    out: dict = dict(size=[], tokens=[], training_compute=[])
    for p in patches:
        models = [f"DiT-{f}/{p}" for f in families if f"DiT-{f}/{p}" in stats]
        if len(models) >= 2:
            out["size"].append(dict(axis=f"patch {p}", **_monotone(stats, models)))
    for f in families:
        models = [f"DiT-{f}/{p}" for p in patches if f"DiT-{f}/{p}" in stats]
        if len(models) >= 2:
            out["tokens"].append(dict(axis=f"family {f}", **_monotone(stats, models)))
    corr = correlations(results)
    if corr:
        out["correlation"] = dict(r_loglog=corr["loglog"], r_raw=corr["raw"], spearman=corr["spearman"],
                                  holds=corr["loglog"] <= -0.90)
    # Figure 9. Compute-matched runs (``matched``, scaling.matched_specs): the smaller model of an
    # adjacent pair trained, with its own full schedule, to the larger model's final compute, so
    # two annealed models of equal compute are compared. A pair without such runs falls back to the
    # grid's checkpoints where the two compute ranges overlap, compared at the geometric middle of
    # the overlap; under a cosine schedule the larger model's checkpoint there is mid-way (not
    # annealed), which favours the smaller model.
    longer = seed_stats(matched or [])
    for p in patches:
        models = [f"DiT-{f}/{p}" for f in families if f"DiT-{f}/{p}" in stats]
        for i, small in enumerate(models):
            for large in models[i + 1:]:
                a, b = stats[small], stats[large]
                if large == models[i + 1] and small in longer:
                    m = longer[small]
                    out["training_compute"].append(dict(
                        smaller=small, larger=large, method="matched", compute=b["compute"][-1],
                        steps_smaller=m["steps"][-1], steps_larger=b["steps"][-1],
                        fid_smaller=m["fid_mean"][-1], std_smaller=m["fid_std"][-1],
                        fid_larger=b["fid_mean"][-1], std_larger=b["fid_std"][-1],
                        holds=b["fid_mean"][-1] < m["fid_mean"][-1]))
                    continue
                lo, hi = max(a["compute"][0], b["compute"][0]), min(a["compute"][-1], b["compute"][-1])
                if lo > hi:
                    continue
                at = float(np.sqrt(lo * hi))
                fa, fb = _interp_loglog(a["compute"], a["fid_mean"], at), _interp_loglog(b["compute"], b["fid_mean"], at)
                out["training_compute"].append(dict(smaller=small, larger=large, method="checkpoints", compute=at,
                                                    fid_smaller=fa, fid_larger=fb, holds=fb < fa))
    # Figure 10: the smallest model with its most sampling steps vs the largest with its fewest
    if len(stats) >= 2:
        small, large = next(iter(stats)), list(stats)[-1]
        a, b = stats[small], stats[large]
        if a["sweep_steps"] and b["sweep_steps"]:
            out["sampling_compute"] = dict(
                smaller=small, larger=large, steps_smaller=a["sweep_steps"][-1], steps_larger=b["sweep_steps"][0],
                fid_smaller=a["sweep_mean"][-1], fid_larger=b["sweep_mean"][0],
                holds=a["sweep_mean"][-1] > b["sweep_mean"][0])
    verdicts = [c["holds"] for key in ("size", "tokens", "training_compute") for c in out[key]]
    verdicts += [out[k]["holds"] for k in ("correlation", "sampling_compute") if k in out]
    out["all_hold"] = bool(verdicts) and all(verdicts)
    return out


def format_claims(claims: dict) -> str:
    """The verdicts as Markdown bullet points, numbers included."""
    yes = {True: "holds", False: "does NOT hold"}
    lines = []
    for key, title in (("size", "bigger model, lower FID"), ("tokens", "smaller patch, lower FID")):
        for c in claims[key]:
            lines.append(f"* {title} at {c['axis']}: " + " > ".join(
                f"{m.replace('DiT-', '')} {f:.1f}" for m, f in zip(c["models"], c["fids"])) + f" -- {yes[c['holds']]}")
    if "correlation" in claims:
        c = claims["correlation"]
        lines.append(f"* Figure 8: r = {c['r_loglog']:.3f} (log-log; raw {c['r_raw']:.3f}, Spearman "
                     f"{c['spearman']:.3f}), needs <= -0.90 -- {yes[c['holds']]}")
    for c in claims["training_compute"]:
        small, large = c["smaller"].replace("DiT-", ""), c["larger"].replace("DiT-", "")
        if c["method"] == "matched":
            lines.append(f"* Figure 9, at {c['compute']:.3g} training Gflops (both trained to the end of their "
                         f"schedule): {large} in {c['steps_larger']:,} steps {c['fid_larger']:.1f} +- "
                         f"{c['std_larger']:.1f} vs {small} in {c['steps_smaller']:,} steps {c['fid_smaller']:.1f} "
                         f"+- {c['std_smaller']:.1f} -- {yes[c['holds']]}")
        else:
            lines.append(f"* Figure 9, at {c['compute']:.3g} training Gflops (grid checkpoints): {large} "
                         f"{c['fid_larger']:.1f} vs {small} {c['fid_smaller']:.1f} -- {yes[c['holds']]}")
    if "sampling_compute" in claims:
        c = claims["sampling_compute"]
        lines.append(f"* Figure 10: {c['smaller'].replace('DiT-', '')} with {c['steps_smaller']} steps "
                     f"{c['fid_smaller']:.1f} vs {c['larger'].replace('DiT-', '')} with {c['steps_larger']} steps "
                     f"{c['fid_larger']:.1f} -- {yes[c['holds']]}")
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m minidit.experiments.claims",
                                description="the paper's scaling claims, checked on a finished grid")
    p.add_argument("--grid", default="PNT", choices=sorted(GRIDS), type=str.upper,
                   help="which grid's families and patch sizes (default PNT; AFP: the grid below the optimum)")
    p.add_argument("--out", default=None, help="results folder (default: the grid's committed runs)")
    p.add_argument("--matched", default=None, help="folder of compute-matched runs for Figure 9 (default: the "
                   "grid's committed ones, with its committed runs; none with --out)")
    add_debug_flag(p)
    args = p.parse_args(argv)
    grid = GRIDS[args.grid]
    results = load_results(Path(args.out) if args.out else grid.results)
    matched_dir = Path(args.matched) if args.matched else (None if args.out else grid.results_matched)
    claims = check_claims(results, load_results(matched_dir) if matched_dir else None, grid.families, grid.patches)
    print(format_claims(claims) or "(no finished runs)")
    print(f"all claims hold: {claims['all_hold']}")
    return claims


if __name__ == "__main__":
    run_cli(main)
