"""The README's scaling, frontier, ablation and latent-vs-pixel tables, made from the committed result files.

    python tools/results_tables.py            # print the tables
    python tools/results_tables.py --write    # put them into README.md between their markers
    python tools/results_tables.py --check    # exit 1 if README.md's tables differ from the results

README.md holds each table between ``<!-- results:scaling -->`` and ``<!-- /results:scaling -->``
(and ``results:scaling-afp``, ``results:frontier``, ``results:ablation``, ``results:latent``); ``tests/test_results_tables.py`` runs the check, so a table can never
drift from the committed JSON files in ``minidit/experiments/results/``.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minidit.experiments import ablation, claims, frontier, latent, scaling  # noqa: E402
from minidit.experiments.grid import load_results  # noqa: E402
from minidit.models.configs import FAMILIES  # noqa: E402

README = ROOT / "README.md"


def scaling_table(results: list[dict], matched: list[dict] | None = None, grid: scaling.Grid = scaling.GRIDS["PNT"]) -> str:
    """``grid``'s families x patch sizes: final FID (mean +- std over seeds) and forward MFLOPs; the
    verdicts; Figure 9's pairs at equal training compute (``matched``: the compute-matched runs)."""
    stats = claims.seed_stats(results)
    if not stats:
        return "(no committed scaling results)"
    tokens = {p: (16 // p) ** 2 for p in grid.patches}
    lines = ["| family (depth / width) | " + " | ".join(f"patch {p} ({tokens[p]} tokens)" for p in grid.patches) + " |",
             "|---|" + "---|" * len(grid.patches)]
    for fam in grid.families:
        depth, width, _ = FAMILIES[fam]
        cells = []
        for p in grid.patches:
            s = stats.get(f"DiT-{fam}/{p}")
            cells.append("--" if s is None else
                         f"{s['fid_mean'][-1]:.1f} ± {s['fid_std'][-1]:.1f} ({s['gflops'] * 1e3:.2f} MFLOPs)")
        lines.append(f"| {fam} ({depth} / {width}) | " + " | ".join(cells) + " |")
    seeds = sorted({len(s["seeds"]) for s in stats.values()})
    verdicts = claims.check_claims(results, matched, grid.families, grid.patches)
    lines += ["", f"Final FID after {results[0]['spec']['steps']:,} steps, mean ± std of "
                  f"{'/'.join(map(str, seeds))} seeds. " + _claims_sentence(verdicts)]
    pairs = [c for c in verdicts["training_compute"] if c["method"] == "matched"]
    if pairs:
        lines += ["", "Figure 9 at equal training compute, both models trained to the end of their schedule "
                      "(`--matched`: the smaller model trained to the larger one's final compute):", "",
                  "| training Gflops | larger model (steps) | its FID | smaller model (steps) | its FID | larger ahead |",
                  "|---|---|---|---|---|---|"]
        for c in pairs:
            lines.append(f"| {c['compute']:,.0f} | {c['larger'].replace('DiT-', '')} ({c['steps_larger']:,}) | "
                         f"{c['fid_larger']:.1f} ± {c['std_larger']:.1f} | {c['smaller'].replace('DiT-', '')} "
                         f"({c['steps_smaller']:,}) | {c['fid_smaller']:.1f} ± {c['std_smaller']:.1f} | "
                         f"{'yes' if c['holds'] else 'no'} |")
    return "\n".join(lines)


def _claims_sentence(v: dict) -> str:
    def n_of(key):
        return f"{sum(c['holds'] for c in v[key])} of {len(v[key])}"
    parts = [f"FID falls with model size at {n_of('size')} patch sizes and with smaller patches in "
             f"{n_of('tokens')} families"]
    if "correlation" in v:
        c = v["correlation"]
        parts.append(f"Pearson r of log Gflops and log FID **{c['r_loglog']:.3f}** (raw {c['r_raw']:.2f}, "
                     f"Spearman {c['spearman']:.2f}; the paper: −0.93; "
                     f"{'meets' if c['holds'] else 'misses'} the ≤ −0.90 asked of a grid)")
    for method, how in (("matched", "pairs trained to the same compute"),
                        ("checkpoints", "pairs compared at the grid's mid-run checkpoints")):
        pairs = [c for c in v["training_compute"] if c["method"] == method]
        if pairs:
            parts.append(f"at equal training compute the larger model is ahead in {sum(c['holds'] for c in pairs)} "
                         f"of {len(pairs)} {how} (Figure 9)")
    if "sampling_compute" in v:
        c = v["sampling_compute"]
        parts.append(f"{c['smaller'].replace('DiT-', '')} with {c['steps_smaller']} sampling steps "
                     f"(FID {c['fid_smaller']:.1f}) {'stays behind' if c['holds'] else 'catches'} "
                     f"{c['larger'].replace('DiT-', '')} with {c['steps_larger']} (FID {c['fid_larger']:.1f}; Figure 10)")
    return "; ".join(parts) + "."


def ablation_table(results: list[dict]) -> str:
    """Variants as columns: compute overhead, final FID (mean +- std over seeds), mean FID over training."""
    if not results:
        return "(no committed ablation results)"
    variants = [v for v in ablation.VARIANTS if any(r["spec"]["conditioning"] == v for r in results)]
    runs = {v: [r for r in results if r["spec"]["conditioning"] == v] for v in variants}
    gflops = {v: runs[v][0]["gflops"] for v in variants}
    over = ablation.gflops_overhead(gflops) if "adaLN-Zero" in gflops else {}
    finals = {v: [r["checkpoints"][-1]["fid"] for r in runs[v]] for v in variants}
    areas = {v: [ablation.area_under_fid_curve([c["step"] for c in r["checkpoints"]],
                                               [c["fid"] for c in r["checkpoints"]]) for r in runs[v]]
             for v in variants}

    def ms(values):
        return f"{np.mean(values):.1f} ± {np.std(values, ddof=1) if len(values) > 1 else 0.0:.1f}"
    n = sorted({len(runs[v]) for v in variants})
    lines = ["| conditioning | " + " | ".join(variants) + " |", "|---|" + "---|" * len(variants),
             "| Gflops vs adaLN-Zero | " + " | ".join(f"{100 * over[v]:+.1f}%" if v in over else "--" for v in variants) + " |",
             f"| final FID, mean ± std of {'/'.join(map(str, n))} seeds | " + " | ".join(ms(finals[v]) for v in variants) + " |",
             "| mean FID over training | " + " | ".join(ms(areas[v]) for v in variants) + " |"]
    ranking = sorted(variants, key=lambda v: np.mean(finals[v]))
    lines += ["", f"{results[0]['spec']['model']}, {results[0]['spec']['steps']:,} steps. Ranking by the seed means "
                  f"of the final FID: {' < '.join(ranking)}; the paper (XL/2): adaLN-Zero < adaLN < cross-attention < "
                  f"in-context."]
    return "\n".join(lines)


def latent_table(results: list[dict]) -> str:
    """One row per model and space: tokens, cost, steps, final FID and class accuracy (seed means)."""
    rows = latent.summary_rows(results)
    if not rows:
        return "(no committed latent results)"
    lines = ["| model | tokens | MFLOPs per image | steps | training Gflops | final FID | class accuracy |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['tokens']} | {r['gflops'] * 1e3:.2f} | {r['steps']:,} | {r['compute']:,.0f} | "
                     f"{r['fid_mean']:.1f} ± {r['fid_std']:.1f} | {r['acc_mean']:.2f} ± {r['acc_std']:.2f} |")
    lines += ["", f"Mean ± std of {'/'.join(map(str, sorted({r['seeds'] for r in rows})))} seeds; FID and class "
                  f"accuracy of {results[0]['spec']['fid_samples']} samples (guidance {results[0]['spec']['cfg_scale']:g}) "
                  f"judged on pixels by the shapes classifier; chance accuracy is 0.10."]
    return "\n".join(lines)


def frontier_table(results: list[list[dict]]) -> str:
    """The IsoFLOP profiles: one row per model size, its steps and FID at each training compute
    (seed means; the optimum of each compute in bold). ``results`` holds the runs of each of
    frontier.PROFILES; a profile without runs is left out."""
    ran = [(prof, r) for prof, r in zip(frontier.PROFILES, results) if r]
    profiles = [frontier.profile(r) for _, r in ran]
    if not profiles:
        return "(no committed frontier results)"
    by_model = [{r["model"]: r for r in p} for p in profiles]
    computes = [max(r["compute"] for r in p) for p in profiles]
    best = [frontier.optimum(p) for p in profiles]
    lines = ["| model (depth / width) | parameters | MFLOPs per image |"
             + "".join(f" steps at {c:,.0f} Gflops | FID at {c:,.0f} Gflops |" for c in computes),
             "|" + "---|" * (3 + 2 * len(computes))]
    for r in profiles[0]:
        depth, width, _ = FAMILIES[r["model"].split("-")[1].split("/")[0]]
        line = f"| {r['model']} ({depth} / {width}) | {r['params']:,} | {r['gflops'] * 1e3:.2f} |"
        for at, b in zip(by_model, best):
            x = at.get(r["model"])
            if x is None:        # a model not run at this compute
                line += " – | – |"
                continue
            fid = frontier.spread(x)
            line += f" {x['steps']:,} | {f'**{fid}**' if x is b else fid} |"
        lines.append(line)
    seeds = [min(r["seeds"] for r in p) for p in profiles]
    at = {}   # seed count -> the computes measured with it, so each count is named once
    for n, c in zip(seeds, computes):
        at.setdefault(n, []).append(f"{c:,.0f}")
    measured = "; ".join(f"{f'mean ± std of {n} seeds' if n > 1 else 'one seed'} at {frontier.and_list(cs)}"
                         for n, cs in at.items())
    ties = [f"{level} at {c:,.0f}" for level, c in zip(map(frontier.level_with_optimum, profiles), computes) if level]
    steps = [prof.recipe().steps for prof, _ in ran]
    lines += ["", f"The training Gflops are the compute of {' / '.join(f'{n:,}' for n in steps)} steps of "
                  f"{frontier.REFERENCE}; every model trained with its own cosine schedule, final FID "
                  f"{measured}. "
                  "In bold, the lowest FID at each compute: the compute-optimal size"
                  + "".join(f"; {t}" for t in ties) + ". A dash: the model is not run at that compute."]
    return "\n".join(lines)


def tables() -> dict[str, str]:
    afp = scaling.GRIDS["AFP"]
    return {"scaling": scaling_table(load_results(scaling.RESULTS), load_results(scaling.RESULTS_MATCHED)),
            "scaling-afp": scaling_table(load_results(afp.results), load_results(afp.results_matched), afp),
            "frontier": frontier_table([load_results(p.results) for p in frontier.PROFILES]),
            "ablation": ablation_table(load_results(ablation.RESULTS)),
            "latent": latent_table(load_results(latent.RESULTS))}


def replace_blocks(text: str, blocks: dict[str, str]) -> str:
    for name, body in blocks.items():
        pattern = re.compile(rf"<!-- results:{name} -->\n.*?<!-- /results:{name} -->", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- results:{name} --> ... <!-- /results:{name} --> block")
        block = f"<!-- results:{name} -->\n{body}\n<!-- /results:{name} -->"
        text = pattern.sub(lambda m: block, text)
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--write", action="store_true", help="rewrite README.md's tables")
    g.add_argument("--check", action="store_true", help="exit 1 if README.md's tables are out of date")
    args = p.parse_args(argv)
    blocks = tables()
    if not (args.write or args.check):
        for name, body in blocks.items():
            print(f"## {name}\n\n{body}\n")
        return 0
    text = README.read_text()
    new = replace_blocks(text, blocks)
    if args.check:
        if new != text:
            print("README.md's results tables differ from the committed results: run python tools/results_tables.py --write")
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
