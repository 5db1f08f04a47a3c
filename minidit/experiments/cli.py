"""The command line both experiment scripts share: the recipe's flags, the output folder, run or report.

``python -m minidit.experiments.scaling`` and ``python -m minidit.experiments.ablation`` take the
same flags for the shared ``Recipe`` (each changes one field of it) and add their own knob
(``--models``, ``--variants``). Results are cached as one JSON per run in the output folder, so
a rerun skips finished runs and ``--report`` prints the tables without training.
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from minidit.env import cache_dir, configure_torch
from minidit.env import smoke as smoke_mode
from minidit.errors import add_debug_flag

from .common import Recipe, RunSpec
from .grid import load_results, run_grid


def build_parser(prog: str, description: str, recipe: Recipe, seeds: str = "0",
                 steps: str | None = None) -> argparse.ArgumentParser:
    """The flags of the shared recipe and of the output. A recipe flag not given keeps the value of
    ``recipe`` (the experiment's), which its help names; ``steps`` replaces the help's default for
    ``--steps`` where it is not one number."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    sweep = ",".join(map(str, recipe.sweep_steps)) or "none"
    p.add_argument("--smoke", action="store_true", help="a tiny run in seconds (also MINIDIT_SMOKE=1)")
    p.add_argument("--steps", type=int, default=None,
                   help=f"training steps per run (default {steps or f'{recipe.steps:,}'}; --smoke: far fewer)")
    p.add_argument("--seeds", default=seeds, help=f"comma-separated seeds (default {seeds})")
    p.add_argument("--batch-size", type=int, default=None, help=f"images per step (default {recipe.batch_size})")
    p.add_argument("--fid-samples", type=int, default=None, help=f"samples per FID (default {recipe.fid_samples})")
    p.add_argument("--sampling-steps", type=int, default=None,
                   help=f"respaced DDPM steps of the FID samples (default {recipe.sampling_steps})")
    p.add_argument("--cfg-scale", type=float, default=None,
                   help=f"guidance of the FID samples (default {recipe.cfg_scale:g}; 1 is none)")
    p.add_argument("--sweep-steps", default=None,
                   help=f"sampling-step counts tried on the final model, comma-separated (default {sweep})")
    p.add_argument("--out", default=None, help="results folder (default: the minidit cache)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: these models are tiny, and on a busy machine extra "
                        "threads only wait for each other)")
    p.add_argument("--workers", type=int, default=1,
                   help="processes training runs side by side (default 1; one per CPU core is fastest)")
    p.add_argument("--report", action="store_true", help="print the tables of the committed results (with --out DIR: of that folder), train nothing")
    add_debug_flag(p)
    return p


def results_dir(experiment: str, smoke: bool) -> Path:
    """The default output folder of an experiment (``scaling``, ``ablation``) in the minidit cache."""
    return cache_dir("experiments", f"{experiment}-smoke" if smoke else experiment)


def start(args: argparse.Namespace, experiment: str) -> tuple[bool, Path]:
    """The smoke switch, this process's CPU threads, and the output folder."""
    smoke = args.smoke or smoke_mode()
    configure_torch(torch.device("cpu"), args.threads)
    out = Path(args.out) if args.out else results_dir(experiment, smoke)
    return smoke, out


def recipe_from_args(args: argparse.Namespace, base: Recipe) -> Recipe:
    """``base`` with every recipe flag that was given."""
    changes = {key: getattr(args, key) for key in ("steps", "batch_size", "fid_samples", "sampling_steps", "cfg_scale")
               if getattr(args, key) is not None}
    if args.sweep_steps:
        changes["sweep_steps"] = tuple(int(s) for s in args.sweep_steps.split(","))
    return dataclasses.replace(base, **changes)


def seeds_of(args: argparse.Namespace) -> tuple[int, ...]:
    return tuple(int(s) for s in args.seeds.split(","))


def report(args: argparse.Namespace, committed: Path, summarize) -> list[dict]:
    """``--report``: print the tables of the committed results in ``committed`` (with ``--out DIR``:
    of every run cached in that folder); train nothing."""
    results = load_results(Path(args.out) if args.out else committed)
    print(summarize(results))
    return results


def run_and_report(specs: list[RunSpec], out: Path, summarize, desc: str, workers: int = 1) -> list[dict]:
    """Run the specs not cached in ``out`` yet, then print the tables of all of them. In a folder of
    the user's (``--out``), a finished run of other settings is never overwritten."""
    t0 = time.time()
    theirs = not Path(out).resolve().is_relative_to(Path(cache_dir("experiments")).resolve())
    results = [r for r in run_grid(specs, out, desc=desc, workers=workers, keep_others=theirs) if r is not None]
    print(summarize(results))
    print(f"\n{len(results)} runs in {out} ({time.time() - t0:.0f} s this time)")
    return results
