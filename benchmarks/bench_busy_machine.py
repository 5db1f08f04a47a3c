"""A busy machine slows the default job down; it must not stall it. Idle and loaded, side by side.

Runs the default job (``python -m minidit.train``, no flags but the results folder) as a user
would -- a fresh process, so the trainer chooses its CPU threads and OpenMP wait policy itself --
once on the machine as it is ("idle") and once while ``--load`` busy-loop processes (default:
twice the usable cores) compete for the cores ("loaded"), and prints wall and CPU time and the
loaded/idle ratio. Target: at most about 3x.

``--before DIR`` runs the same two jobs with another checkout of minidit (``PYTHONPATH=DIR``,
e.g. a worktree of an older commit) for a before/after table; ``--timeout`` bounds every job
(one that does not finish is reported as such). ``--max-steps N`` shortens the job.

    python benchmarks/bench_busy_machine.py                           # the whole default job
    python benchmarks/bench_busy_machine.py --max-steps 500 --before ../minidit-old

Measure when nothing else runs (``uptime``): the load average before each job is printed, and
the "idle" row is only idle if the machine was.
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from minidit.env import usable_cores  # the count the trainer's thread choice starts from

ROOT = Path(__file__).resolve().parents[1]
BUSY_LOOP = "while True: pass"


def run_job(code_dir: Path, extra: list[str], timeout: float) -> dict:
    """The default job in a fresh process: wall and CPU seconds, the threads it chose, whether it finished."""
    results = Path(tempfile.mkdtemp(prefix="busy-"))
    cmd = [sys.executable, "-m", "minidit.train", "--results-dir", str(results), *extra]
    env = dict(os.environ, PYTHONPATH=str(code_dir))
    env.pop("OMP_NUM_THREADS", None)
    env.pop("OMP_WAIT_POLICY", None)
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    try:
        subprocess.run(cmd, cwd=code_dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=timeout, check=True)
        finished = True
    except subprocess.TimeoutExpired:
        finished = False
    wall = time.time() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    logs = list(results.glob("*/log.txt"))
    found = re.search(r"on cpu \((\d+) threads\)", logs[0].read_text()) if logs else None
    return dict(wall=wall, cpu=(after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
                threads=found.group(1) if found else "?", finished=finished, load=load)


def busy_loops(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(n)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--load", type=int, default=2 * usable_cores(), help="busy-loop processes [2 x usable cores]")
    p.add_argument("--max-steps", type=int, default=None, help="shorten the default job (default: all of it)")
    p.add_argument("--before", type=Path, default=None, help="another minidit checkout to compare with")
    p.add_argument("--timeout", type=float, default=1800, help="seconds a job may take [1800]")
    args = p.parse_args()
    extra = ["--max-steps", str(args.max_steps)] if args.max_steps else []
    codes = [("this checkout", ROOT)] + ([("before", args.before.resolve())] if args.before else [])
    print(f"{usable_cores()} usable cores; the default job{' to step ' + str(args.max_steps) if extra else ''}; "
          f"loaded = {args.load} busy-loop processes\n", flush=True)
    rows = []
    for name, code in codes:
        idle = run_job(code, extra, args.timeout)
        loops = busy_loops(args.load)
        try:
            time.sleep(2)  # let the loops get going
            loaded = run_job(code, extra, args.timeout)
        finally:
            for proc in loops:
                proc.kill()
                proc.wait()
        rows.append((name, idle, loaded))
        time.sleep(5)
    print("| code | load avg before (idle / loaded) | threads | idle wall s | idle CPU s | loaded wall s "
          "| loaded CPU s | loaded / idle wall |")
    print("|---|---|---|---|---|---|---|---|")
    for name, idle, loaded in rows:
        loaded_wall = f"{loaded['wall']:.0f}" if loaded["finished"] else f"> {args.timeout:.0f} (unfinished)"
        ratio = f"{loaded['wall'] / idle['wall']:.2f}x" if loaded["finished"] else f"> {args.timeout / idle['wall']:.1f}x"
        print(f"| {name} | {idle['load']:.1f} / {loaded['load']:.1f} | {idle['threads']} / {loaded['threads']} "
              f"| {idle['wall']:.0f} | {idle['cpu']:.0f} | {loaded_wall} | {loaded['cpu']:.0f} | {ratio} |")


if __name__ == "__main__":
    main()
