"""The default job's training loop (``python -m minidit.train``, the digits preset): images/s and
the share of the loop's time spent OUTSIDE the model.

It runs the real trainer (``minidit.train.main``), unmodified, with timers slipped in around the
pieces its training step (``minidit.training.step.train_step``) calls: the "model step" is from
the start of ``diffusion_loss`` (forward) to the end of ``AdamW.step`` (so it includes
``zero_grad`` and ``backward``); the EMA update is timed on its own; everything else in a step's cycle -- fetching the next batch from the DataLoader, moving it
to the device, the learning-rate schedule, the loss bookkeeping, logging, checkpoints -- is the
rest. A cycle is the time between the starts of two consecutive model steps, so the sum over
cycles is the loop's time; the first cycle (warm-up) is left out. The final sample grid written
after the loop is not part of the loop and is not counted. Target: outside < 10%.

On a GPU the timers synchronise the device (otherwise asynchronous kernels would be billed to
whoever waits next); on CPU nothing needs synchronising.

    python benchmarks/bench_default_preset.py                   # 500 steps of the default preset
    python benchmarks/bench_default_preset.py --max-steps 2000  # the whole default run
    python benchmarks/bench_default_preset.py -- --precision bf16   # extra flags go to minidit.train
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from _common import emit, machine_line, table

import minidit.train as trainer
from minidit.env import pick_device
from minidit.training import state, step


class Timers:
    def __init__(self, device_type: str):
        self.cuda = device_type == "cuda"
        self.starts: list[tuple[float, float]] = []   # (wall, cpu) at each model-step start
        self.model: list[tuple[float, float]] = []    # durations of each model step
        self.ema: list[tuple[float, float]] = []
        self._t0 = None

    def now(self) -> tuple[float, float]:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter(), time.process_time()

    def step_start(self):
        self._t0 = self.now()
        self.starts.append(self._t0)

    def step_end(self):
        t = self.now()
        self.model.append((t[0] - self._t0[0], t[1] - self._t0[1]))


def run(train_argv: list[str], device_type: str) -> tuple[Timers, dict]:
    timers = Timers(device_type)
    loss_fn, ema_fn, make_opt = step.diffusion_loss, step.update_ema, state.create_optimizer

    def timed_loss(*a, **k):
        timers.step_start()
        return loss_fn(*a, **k)

    def timed_ema(*a, **k):
        t0 = timers.now()
        ema_fn(*a, **k)
        t1 = timers.now()
        timers.ema.append((t1[0] - t0[0], t1[1] - t0[1]))

    def timed_optimizer(*a, **k):
        opt = make_opt(*a, **k)
        opt.register_step_post_hook(lambda *_: timers.step_end())
        return opt

    step.diffusion_loss, step.update_ema, state.create_optimizer = timed_loss, timed_ema, timed_optimizer
    try:
        run_dir = trainer.main(train_argv)
        run_args = json.loads((run_dir / "args.json").read_text())
    finally:
        step.diffusion_loss, step.update_ema, state.create_optimizer = loss_fn, ema_fn, make_opt
    return timers, run_args


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-steps", type=int, default=500,
                   help="optimizer steps (the preset runs 4,500; 500 keeps its log/checkpoint cadence)")
    p.add_argument("--preset", default="digits")
    p.add_argument("--threads", type=int, default=None,
                   help="the trainer's --threads (on a CPU shared with other jobs, 1 is far faster)")
    p.add_argument("--out", default=None)
    p.add_argument("train_args", nargs="*", help="after --: more flags for minidit.train")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        train_argv = ["--preset", args.preset, "--max-steps", str(args.max_steps), "--results-dir", tmp,
                      *(["--threads", str(args.threads)] if args.threads else []), *args.train_args]
        device = pick_device(next((a.split("=", 1)[1] for a in train_argv if a.startswith("--device=")), None))
        timers, run_args = run(train_argv, device.type)
    # cycles between consecutive model-step starts, the first (warm-up) one dropped
    n = len(timers.starts)
    if n < 3:
        raise SystemExit("need at least 3 steps to measure the loop; raise --max-steps")
    rows = []
    for k, clock in enumerate(("wall", "cpu")):
        cycle = timers.starts[-1][k] - timers.starts[1][k]          # cycles 1 .. n-1
        model = sum(m[k] for m in timers.model[1:n - 1])            # model steps inside those cycles
        ema = sum(e[k] for e in timers.ema[1:n - 1])
        rest = cycle - model - ema
        steps = n - 2
        rows.append([clock, steps, cycle, model / cycle, ema / cycle, rest / cycle, (ema + rest) / cycle])
    batch = run_args["global_batch_size"]
    wall_cycle, steps = rows[0][2], rows[0][1]
    emit(f"\n### Default preset training loop ({args.preset}, {args.max_steps} steps, batch {batch})\n\n"
         f"{machine_line(device)}\n\nloop throughput {steps * batch / wall_cycle:,.0f} images/s "
         f"({steps / wall_cycle:.1f} steps/s, wall clock)\n", args.out)
    emit(table(["clock", "steps timed", "loop seconds", "model step share", "EMA share",
                "data + logging + checkpoints share", "outside the model"],
               [[r[0], r[1], r[2], f"{100 * r[3]:.1f}%", f"{100 * r[4]:.1f}%", f"{100 * r[5]:.1f}%",
                 f"{100 * r[6]:.1f}%"] for r in rows]) + "\n", args.out)


if __name__ == "__main__":
    main()
