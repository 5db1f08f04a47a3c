"""Running a grid of experiment runs: one JSON file per run, resumable, shared by worker processes.

A grid is a list of ``RunSpec`` s (common.py). Each finished run is one JSON file in the output
folder, written atomically, so an interrupted grid resumes where it stopped and a notebook can
plot results without retraining; a file is only reused when its spec is exactly the one asked
for. Several processes -- ``--workers N``, or separate commands on one folder -- share a grid
through claim files: a run is trained by whoever claims it first, once.
"""
from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import torch
from tqdm.auto import tqdm

from minidit.env import configure_torch
from minidit.files import write_json_atomic

from .common import RunSpec, model_facts, run_experiment


def result_path(out_dir: str | Path, spec: RunSpec) -> Path:
    return Path(out_dir) / f"{spec.key()}.json"


def load_result(out_dir: str | Path, spec: RunSpec) -> dict | None:
    """The cached result of ``spec``, or None if absent or made with different settings."""
    path = result_path(out_dir, spec)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return data if data.get("spec") == spec.to_json() else None


def save_result(out_dir: str | Path, spec: RunSpec, result: dict) -> Path:
    """Write atomically (minidit.files): an interrupted run never leaves half a JSON."""
    path = result_path(out_dir, spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_json_atomic(path, result, indent=1)


def load_results(out_dir: str | Path) -> list[dict]:
    """Every cached result in ``out_dir`` (any settings), sorted by model then conditioning."""
    return load_results_of(sorted(Path(out_dir).glob("*.json")))


def load_results_of(paths: list[Path]) -> list[dict]:
    """The results in the files ``paths`` that exist and parse (a half-written file never does)."""
    out = []
    for p in paths:
        try:
            out.append(json.loads(p.read_text()))
        except (FileNotFoundError, json.JSONDecodeError):
            continue
    return out


def _differences(old: dict, new: dict) -> str:
    """The settings two spec dicts differ in, as ``name old -> new`` (the first four)."""
    keys = [k for k in dict.fromkeys([*old, *new]) if old.get(k) != new.get(k)]
    text = ", ".join(f"{k} {old.get(k)} -> {new.get(k)}" for k in keys[:4])
    return text + (f" and {len(keys) - 4} more" if len(keys) > 4 else "")


def check_overwrites(specs: list[RunSpec], out_dir: str | Path, keep_others: bool = False) -> None:
    """Refuse a grid that would overwrite a result, before anything trains.

    A run's file is named by ``RunSpec.key`` (model, space, conditioning, seed), not by its steps or
    recipe: a scaling run and the compute-matched run of the same model share a name. So two specs
    of one grid with one file name are refused, and (``keep_others``) so is a run whose file already
    holds a FINISHED run made with other settings -- in a folder the user named, that result is
    theirs. In minidit's own cache folders an old result is just stale and is replaced.
    """
    seen: dict[str, RunSpec] = {}
    for spec in specs:
        other = seen.setdefault(spec.key(), spec)
        if other is not spec and other.to_json() != spec.to_json():
            raise ValueError(f"two runs of this grid would both write {result_path(out_dir, spec).name} "
                             f"({_differences(other.to_json(), spec.to_json())}): run them into separate --out folders")
    if not keep_others:
        return
    for spec in seen.values():
        path = result_path(out_dir, spec)
        old = finished(load_results_of([path]))
        if old and old[0]["spec"] != spec.to_json():
            raise ValueError(f"{path} holds a finished run made with other settings "
                             f"({_differences(old[0]['spec'], spec.to_json())}); this grid would overwrite it. "
                             f"Keep both with another --out folder, or delete that file to replace it")


def finished(results: list[dict]) -> list[dict]:
    """The runs that reached their last step (a diverged run stops early and has no final FID)."""
    return [r for r in results if r["checkpoints"] and r["checkpoints"][-1]["step"] == r["spec"]["steps"]]


def _claim(out_dir: str | Path, spec: RunSpec) -> bool:
    """Claim ``spec`` for this process: create ``<key>.claim`` holding our pid, atomically.

    False if another live process holds it. A claim whose process is gone (killed, crashed) is
    taken over, so an interrupted grid resumes where it stopped.
    """
    path = result_path(out_dir, spec).with_suffix(".claim")
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(path.read_text() or 0)
                os.kill(pid, 0)                 # raises if no such process
                return pid == os.getpid()
            except (ValueError, ProcessLookupError, FileNotFoundError):
                path.unlink(missing_ok=True)    # a stale claim: take it over
                continue
            except PermissionError:             # alive, another user's
                return False
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True
    return False


def _release(out_dir: str | Path, spec: RunSpec) -> None:
    result_path(out_dir, spec).with_suffix(".claim").unlink(missing_ok=True)


# What a training step of these tiny models costs outside the model (the optimiser, the EMA, the
# batch), in forward Gflops per image of the model: timed on one CPU core over the frontier's
# models, a step takes about 15 ms plus 8 ms per forward MFLOP per image (DiT-A/4 17 ms, DiT-T/4 182 ms)
STEP_OVERHEAD_GFLOPS = 2e-3


def longest_first(specs: list[RunSpec]) -> list[RunSpec]:
    """``specs`` ordered by their estimated training time, longest first: steps x (the model's
    Gflops + STEP_OVERHEAD_GFLOPS). With one recipe (equal steps) that is the largest model first;
    at equal training compute, the smallest, which takes the most steps."""
    return sorted(specs, key=lambda s: -s.steps * (model_facts(s)["gflops"] + STEP_OVERHEAD_GFLOPS))


def _work(specs: list[RunSpec], out_dir: str | Path, progress=None, device="cpu") -> None:
    """Train every spec that is neither cached nor claimed by another process, in order."""
    for spec in specs:
        if load_result(out_dir, spec) is not None or not _claim(out_dir, spec):
            if progress is not None:
                progress.update(spec.steps)
            continue
        try:
            if load_result(out_dir, spec) is None:      # finished meanwhile by another process
                save_result(out_dir, spec, run_experiment(spec, progress=progress, device=device))
            elif progress is not None:
                progress.update(spec.steps)
        finally:
            _release(out_dir, spec)


def _worker(specs: list[RunSpec], out_dir: str, threads: int) -> None:
    configure_torch(torch.device("cpu"), threads)
    _work(specs, out_dir)


def run_grid(specs: list[RunSpec], out_dir: str | Path, desc: str, device="cpu", verbose: bool = True,
             workers: int = 1, keep_others: bool = False) -> list[dict]:
    """Run every spec not cached yet in ``out_dir`` (one tqdm bar over this process's training steps).

    ``workers > 1`` starts that many processes in all (this one included), each taking the next
    unclaimed run; one thread each is the fastest use of a CPU's cores for models this small.
    With several workers the longest runs go first (``longest_first``), so that they finish
    together. Several separate commands on one ``out_dir`` share the work the same way.
    ``keep_others``: refuse to overwrite a finished run of other settings (``check_overwrites``).
    """
    check_overwrites(specs, out_dir, keep_others)
    todo = [s for s in specs if load_result(out_dir, s) is None]
    if verbose:
        print(f"{desc}: {len(specs)} runs, {len(specs) - len(todo)} cached in {out_dir}, {len(todo)} to train"
              + (f", {workers} workers" if workers > 1 and todo else ""))
    if workers > 1:
        todo = longest_first(todo)
    procs = []
    if workers > 1 and len(todo) > 1:
        ctx = multiprocessing.get_context("spawn")
        for _ in range(min(workers, len(todo)) - 1):
            procs.append(ctx.Process(target=_worker, args=(todo, str(out_dir), torch.get_num_threads())))
            procs[-1].start()
    try:
        with tqdm(total=sum(s.steps for s in todo), desc=desc, disable=not todo or not verbose,
                  mininterval=2.0) as bar:
            _work(todo, out_dir, progress=bar, device=device)
        for proc in procs:
            proc.join()
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
    return [load_result(out_dir, s) for s in specs]
