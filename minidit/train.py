"""Train a DiT: the command line ``python -m minidit.train`` and its loop (the pieces: minidit/training/).

With no arguments it trains the offline default -- a small class-conditional DiT on 8x8 digits
with learned sigma -- in about two minutes on two CPU cores (``--help`` lists the flags;
minidit/training/presets.py the presets). At full size it is the paper's
recipe (``--preset imagenet256-xl2 --data-path /data/imagenet/train``), on one GPU or many::

    torchrun --nproc_per_node 8 -m minidit.train --preset imagenet256-xl2 --data-path ... \\
        --precision bf16 --compile

The loop, in the official order (train.py of the DiT repository): draw a batch, encode it with
the VAE when training in latent space, then one training step (``minidit.training.step``: draw
``t ~ U{0..999}``, compute ``L_simple + L_vlb``, ``zero_grad -> backward -> step``, update the
EMA). minidit adds what a long run needs: exact resume, atomic checkpoints, NaN detection,
bf16/compile, throughput and MFU in the log.

Reading order: ``main`` (flags -> settings -> train), then ``train`` (build, loop, finish), then
the named steps it calls.
"""
from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path

import torch

from minidit.env import configure_torch
from minidit.flops import mfu
from minidit.impl import explain, restore_impl, use_impl
from minidit.training import checkpoint as ckpt_lib
from minidit.training.config import TrainConfig, parse_args, resolve
from minidit.training.distributed import (DistInfo, barrier, cleanup_distributed, init_distributed, min_over_ranks,
                                          parameters_in_sync)
from minidit.training.logger import append_jsonl, close_logger, format_log_line, progress_bar, read_jsonl
from minidit.training.optim import lr_at_step, set_lr
from minidit.training.plots import save_loss_curve, write_sample_grid
from minidit.training.setup import prepare
from minidit.training.state import Run, restore, save_checkpoint, start_run
from minidit.training.step import train_step

NO_BAD_STEP = 2**62  # stands for "every loss was finite" when the ranks compare their first bad step


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf: the run stops, keeping its last good checkpoint."""


def main(argv: list[str] | None = None) -> Path | None:
    """Parse flags, combine them with the preset (and a resumed run's settings), train.

    Returns the run folder (rank 0) or None.
    """
    typed = parse_args(argv)
    switch = use_impl(typed.impl) if typed.impl else None  # --impl: the student's code runs (minidit/impl.py)
    resume_path, resumed = None, None
    if typed.resume:
        results_dir = typed.results_dir or "results"
        resume_path = ckpt_lib.find_latest(results_dir) if typed.resume == "latest" else Path(typed.resume)
        resumed = ckpt_lib.load_checkpoint(resume_path)
        if "step" not in resumed or "args" not in resumed:
            raise ValueError(f"{resume_path} is not a minidit training checkpoint (no step/args); "
                             f"to fine-tune from official weights, load them into a new run instead")
    config = resolve(parsed=typed, checkpoint_args=resumed["args"] if resumed else None)
    info = init_distributed(config.device)
    try:
        return train(config, info, resumed, resume_path)
    finally:
        cleanup_distributed()
        if switch is not None:
            restore_impl(switch.previous)


def train(config: TrainConfig, info: DistInfo, resumed: dict | None = None,
          resume_path: Path | None = None) -> Path | None:
    """Build everything, run the loop to ``max_steps``, then write the final grid and loss curve."""
    configure_torch(info.device, config.threads)
    run = start_run(prepare(config, info), info, resume_path)
    config = run.config  # on extracted latents it names the latents' own VAE
    if resumed is not None:
        restore(run, resumed, resume_path)
    run.logger.info(f"training to step {run.max_steps} ({run.loader.steps_per_epoch} steps per epoch)")
    run.wrapped.train()
    run.meter.restart_clock()
    bar = progress_bar(run.max_steps, run.step, info.is_main)
    try:
        steps_left = max(0, run.max_steps - run.step)
        for epoch, x, y in itertools.islice(run.loader.batches(run.step), steps_left):
            x_0, y = prepare_batch(run, x, y)
            set_lr(run.opt, lr_at_step(run.step, config.lr, config.warmup_steps, config.decay_steps or None,
                                       config.min_lr))
            losses = train_step(run.wrapped, run.parts.diffusion, run.opt, run.ema_params, run.params, x_0, y,
                                ema_decay=config.ema_decay, precision=config.precision)
            run.step += 1
            bar.update(1)
            run.meter.add(losses, run.step)
            after_step(run, epoch)
    finally:
        bar.close()
    finish(run)
    return run.run_dir


def prepare_batch(run: Run, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_0, y)`` on the device: the images randomly mirrored and, in latent space, VAE-encoded."""
    device = run.info.device
    x = x.to(device, non_blocking=True)
    y = y.to(device, non_blocking=True)
    if run.flip:
        # random horizontal flip, p = 1/2 per image, drawn on the trainer's RNG
        mirror = torch.rand(x.shape[0], device=device) < 0.5
        x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
    if run.parts.vae is not None:
        with torch.no_grad():
            # x_0 = scale_factor * E(image): the diffusion runs in latent space
            x = run.parts.vae.encode(x)
    debug_step = run.config.debug_nan_at_step
    if debug_step is not None and run.step + 1 >= debug_step:
        x = x * float("nan")  # tests: a broken batch from this step on makes the loss NaN
    return x, y


def after_step(run: Run, epoch: int) -> None:
    """The official cadence: a log line every ``log_every`` steps, a checkpoint every ``ckpt_every``."""
    config, at_end = run.config, run.step >= run.max_steps
    if run.step % config.log_every == 0 or at_end:
        log_progress(run, epoch)
    if run.step % config.ckpt_every == 0 or at_end:
        check_finite(run)
        save_checkpoint(run)
        write_loss_curve(run)
    if config.sample_every and config.grid_columns > 0 and run.step % config.sample_every == 0 and not at_end:
        if run.info.is_main:
            path = write_sample_grid(run.ema, config, run.parts.sample_vae, run.parts.input_shape, run.run_dir,
                                     run.step, run.info.device)
            run.logger.info(f"wrote {path}")
        barrier(run.info)
        run.meter.restart_clock()  # drawing the grid is not training time


def log_progress(run: Run, epoch: int) -> None:
    """One log line and one metrics.jsonl record: the losses averaged since the last line, speed, lr, MFU."""
    check_finite(run)
    now = time.time()
    (loss, mse, vb), steps_per_s = run.meter.read(run.info, now)
    images_per_s = steps_per_s * run.config.global_batch_size
    rec = dict(step=run.step, epoch=epoch, loss=loss, mse=mse, vb=vb, steps_per_s=steps_per_s,
               images_per_s=images_per_s, lr=run.opt.param_groups[0]["lr"], time=now)
    if run.gflops:
        rec["mfu"] = mfu(images_per_s / run.info.world_size, run.gflops, run.peak)
    run.logger.info(format_log_line(rec))
    if run.info.is_main:
        append_jsonl(run.run_dir / "metrics.jsonl", rec)


def check_finite(run: Run) -> None:
    """Stop, on every rank, if any rank's loss became NaN or inf (a sync: at log/checkpoint steps only)."""
    bad = run.meter.first_bad_step()
    bad = min_over_ranks(bad if bad >= 0 else NO_BAD_STEP, run.info)
    if bad == NO_BAD_STEP:
        return
    keep = f"the last good checkpoint is {run.last_good}" if run.last_good else "no checkpoint was written yet"
    msg = (f"the loss became NaN or inf at step {bad}; stopping ({keep}). Try a lower --lr, "
           f"--precision fp32, or resume from the checkpoint with --resume")
    run.logger.info(f"error: {msg}")
    raise NonFiniteLossError(msg)


def write_loss_curve(run: Run) -> None:
    if run.info.is_main:
        config = run.config
        save_loss_curve(read_jsonl(run.run_dir / "metrics.jsonl"), run.run_dir / "loss.png",
                        title=f"{config.model} on {config.dataset} ({config.preset})")


def finish(run: Run) -> None:
    """Check the ranks agree, draw the final sample grid and loss curve, close the log."""
    info, config = run.info, run.config
    in_sync = parameters_in_sync(run.model, info)
    if info.enabled:
        run.logger.info(f"ranks in sync: {in_sync} (parameter checksums of {info.world_size} ranks compared)")
        if not in_sync:
            raise RuntimeError("the ranks' weights differ after training: DDP lost synchronisation")
    if info.is_main and config.grid_columns > 0:  # --grid-columns 0: no sample grid
        t0 = time.time()
        path = write_sample_grid(run.ema, config, run.parts.sample_vae, run.parts.input_shape, run.run_dir,
                                 run.step, info.device)
        run.logger.info(f"wrote {path} ({config.grid_columns} EMA samples per class, cfg {config.cfg_scale}, "
                        f"{config.num_sampling_steps} {config.sampler} steps, {time.time() - t0:.1f} s)")
    if info.is_main:
        write_loss_curve(run)
        run.logger.info("done")
    close_logger(run.logger)


def cli() -> None:
    try:
        main()
    except (ValueError, FileNotFoundError, NonFiniteLossError) as e:
        cleanup_distributed()
        sys.exit(f"error: {e}")
    except NotImplementedError as e:  # an unfinished exercise ran (--impl): one line, no traceback
        cleanup_distributed()
        if explain(e) is None:
            raise
        print(explain(e), file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    cli()
