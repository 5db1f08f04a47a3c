"""Train a DiT: the command line ``python -m minidit.train`` and its loop (the pieces: minidit/training/).

With no arguments it trains the offline default -- a small class-conditional DiT on 8x8 digits
with learned sigma -- in about two minutes on two CPU cores (``--help`` lists the flags and where
each default comes from; minidit/training/presets.py the presets). The official command line
(``--model DiT-XL/2 --data-path /data/imagenet/train``) runs the official recipe; the paper's
400K-step run is ``--preset imagenet256-xl2``, on one GPU or many::

    torchrun --nproc_per_node 8 -m minidit.train --preset imagenet256-xl2 --data-path ... \\
        --precision bf16 --compile

The loop, in the official order (train.py of the DiT repository): draw a batch, encode it with
the VAE when training in latent space, then one training step (``minidit.training.step``: draw
``t ~ U{0..999}``, compute ``L_simple + L_vlb``, ``zero_grad -> backward -> step``, update the
EMA). minidit adds what a long run needs: exact resume, atomic checkpoints, NaN detection,
bf16/compile, throughput and MFU in the log -- and it fails safely: every error is one line (the
traceback with ``--debug``); under torchrun a failing process stops all of them, with the reason
printed once (minidit/training/distributed.py); SIGTERM and Ctrl-C save the step reached and
exit (stopping.py); a run folder has one process and one history (runfolder.py).

Reading order: ``main`` (flags -> settings -> train), then ``train`` (build, loop, finish), then
the named steps it calls.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

# Before torch loads OpenMP (it reads this once): threads waiting at a barrier sleep instead of
# spinning, so on a busy machine they do not burn the cores the other threads need (minidit/env.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402  (after the OpenMP setting)

from minidit.env import configure_torch  # noqa: E402
from minidit.errors import ReportedElsewhere, RunError, Stopped, describe, run_cli  # noqa: E402
from minidit.flops import mfu  # noqa: E402
from minidit.impl import explain, restore_impl, use_impl  # noqa: E402
from minidit.training.config import TrainConfig, parse_args, resolve  # noqa: E402
from minidit.training.distributed import (DistInfo, check_in, cleanup_distributed, init_distributed,  # noqa: E402
                                          min_over_ranks, peer_problem, on_every_rank, on_rank_zero,
                                          parameters_in_sync, reported_by_rank_zero)
from minidit.training.logger import append_jsonl, close_logger, format_log_line, progress_bar, read_jsonl  # noqa: E402
from minidit.training.optim import lr_at_step, set_lr  # noqa: E402
from minidit.training.plots import save_loss_curve, write_sample_grid  # noqa: E402
from minidit.training.setup import prepare  # noqa: E402
from minidit.training.state import Resume, Run, load_resume, save_checkpoint, start_run  # noqa: E402
from minidit.training.step import train_step  # noqa: E402
from minidit.training.stopping import StopSignals  # noqa: E402

NO_BAD_STEP = 2**62  # stands for "every loss was finite" when the ranks compare their first bad step


class NonFiniteLossError(RunError):
    """The loss became NaN or inf: the run stops, keeping its last good checkpoint."""


def main(argv: list[str] | None = None) -> Path | None:
    """Parse flags, combine them with the preset (and a resumed run's settings), train.

    Returns the run folder (rank 0) or None.
    """
    typed = parse_args(argv)
    with reported_by_rank_zero():  # every process reads the same flags and checkpoint: rank 0 speaks
        resume = load_resume(typed.resume, typed.results_dir or "results") if typed.resume else None
        if resume and typed.model and typed.model != resume.args.get("model"):
            raise ValueError(f"{resume.path} holds a {resume.args.get('model')} but --model {typed.model} was asked "
                             f"for; leave out --model to resume it, or start a new run without --resume")
        config = resolve(parsed=typed, checkpoint_args=resume.args if resume else None)
        info = init_distributed(config.device, config.dist_timeout)
    switch = use_impl(typed.impl) if typed.impl else None  # --impl: the student's code runs (minidit/impl.py)
    ok = False
    try:
        run_dir = train(config, info, resume)
        ok = True
        return run_dir
    except NotImplementedError as e:  # an unfinished exercise ran (--impl): one line that names it
        raise RunError(explain(e) or str(e)) from e
    except RuntimeError as e:
        problem = peer_problem(e, config.dist_timeout) if info.enabled and not isinstance(e, RunError) else None
        if problem:  # a collective lost its peer (that process says why) or waited too long for it
            raise ReportedElsewhere(problem) from e
        raise
    finally:
        cleanup_distributed(ok)  # a failed process does not wait for the others
        if switch is not None:
            restore_impl(switch.previous)


def train(config: TrainConfig, info: DistInfo, resume: Resume | None = None) -> Path | None:
    """Build everything, run the loop to ``max_steps``, then write the final grid and loss curve.

    Every rank moves through the loop in step: ``agreed_batches`` ends it on all of them together
    when any rank's data fails or a signal asks to stop (then a checkpoint is saved first).
    """
    configure_torch(info.device, config.threads, auto_threads=True)
    parts = on_every_rank(info, prepare, config, info)
    run = start_run(parts, info, resume)
    config = run.config  # on extracted latents it names the latents' own VAE
    run.logger.info(f"training to step {run.max_steps} ({run.loader.steps_per_epoch} steps per epoch)")
    run.wrapped.train()
    run.meter.restart_clock()
    try:
        with StopSignals() as stop, progress_bar(run.max_steps, run.step, info.is_main) as bar:
            for epoch, x, y in agreed_batches(run, stop):
                x_0, y = prepare_batch(run, x, y)
                set_lr(run.opt, lr_at_step(run.step, config.lr, config.warmup_steps, config.decay_steps or None,
                                           config.min_lr))
                losses = train_step(run.wrapped, run.parts.diffusion, run.opt, run.ema_params, run.params, x_0, y,
                                    ema_decay=config.ema_decay, precision=config.precision)
                run.step += 1
                bar.update(1)
                run.meter.add(losses, run.step)
                after_step(run, epoch)
        if stop.requested:
            stop_here(run, stop)
        finish(run)
    except Exception as e:
        if not isinstance(e, (ReportedElsewhere, Stopped)):
            run.logger.error(describe(e)[0], extra={"file_only": True})  # the terminal gets it from the CLI
        raise
    finally:
        close_logger(run.logger)
        if run.folder is not None:
            run.folder.release()
    return run.run_dir


def agreed_batches(run: Run, stop: StopSignals):
    """``(epoch, x, y)`` for the steps still to train; every rank stops at the same step.

    Each step, the ranks ``check_in``: if any rank could not load its batch, all stop (that rank
    prints why); if a signal asked any rank to stop, all leave the loop together.
    """
    source = run.loader.batches(run.step)
    while run.step < run.max_steps:
        batch, error = None, None
        try:
            batch = next(source)
        except Exception as e:  # e.g. a broken image file in this rank's share of the data
            # (DataLoader workers die of the same Ctrl-C: then stop as asked, with a checkpoint)
            error = None if stop.requested else e
        stop.beat()
        if check_in(run.info, error, stop.requested):
            return
        yield batch


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
        on_rank_zero(run.info, write_loss_curve, run)
    if config.sample_every and config.grid_columns > 0 and run.step % config.sample_every == 0 and not at_end:
        on_rank_zero(run.info, write_grid, run)  # the other ranks wait, and learn if it failed
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
    on_rank_zero(run.info, lambda: append_jsonl(run.run_dir / "metrics.jsonl", rec))


def check_finite(run: Run) -> None:
    """Stop, on every rank, if any rank's loss became NaN or inf (a sync: at log/checkpoint steps only)."""
    bad = run.meter.first_bad_step()
    bad = min_over_ranks(bad if bad >= 0 else NO_BAD_STEP, run.info)
    if bad == NO_BAD_STEP:
        return
    keep = f"the last good checkpoint is {run.last_good}" if run.last_good else "no checkpoint was written yet"
    msg = (f"the loss became NaN or inf at step {bad}; stopping ({keep}). Try a lower --lr, "
           f"--precision fp32, or resume from the checkpoint with --resume")
    raise NonFiniteLossError(msg)


def write_loss_curve(run: Run) -> None:
    """Rank 0: the loss curves from metrics.jsonl, as loss.png."""
    config = run.config
    save_loss_curve(read_jsonl(run.run_dir / "metrics.jsonl"), run.run_dir / "loss.png",
                    title=f"{config.model} on {config.dataset} ({config.preset})")


def write_grid(run: Run) -> Path:
    """Rank 0: a grid of EMA samples, one row per class, as samples_<step>.png."""
    path = write_sample_grid(run.ema, run.config, run.parts.sample_vae, run.parts.input_shape, run.run_dir,
                             run.step, run.info.device)
    run.logger.info(f"wrote {path}")
    return path


def stop_here(run: Run, stop: StopSignals) -> None:
    """A signal asked the run to stop: save the step it reached (if not saved yet), say so in one line."""
    if run.saved_step != run.step:
        save_checkpoint(run)
    where = f"saved checkpoint {run.last_good}" if run.last_good else "checkpoint saved by rank 0"
    msg = f"stopped by {stop.name} at step {run.step}: {where}; continue with --resume latest"
    run.logger.info(msg)
    raise Stopped(msg, stop.exit_code)


def finish(run: Run) -> None:
    """Check the ranks agree, draw the final sample grid and loss curve."""
    info, config = run.info, run.config
    in_sync = parameters_in_sync(run.model, info)
    if info.enabled:
        run.logger.info(f"ranks in sync: {in_sync} (parameter checksums of {info.world_size} ranks compared)")
        if not in_sync:
            raise RuntimeError("the ranks' weights differ after training: DDP lost synchronisation")
    on_rank_zero(info, final_pictures, run)  # the other ranks learn whether it worked


def final_pictures(run: Run) -> None:
    """Rank 0: the final sample grid (unless ``--grid-columns 0``) and loss curve."""
    config = run.config
    if config.grid_columns > 0:
        t0 = time.time()
        path = write_sample_grid(run.ema, config, run.parts.sample_vae, run.parts.input_shape, run.run_dir,
                                 run.step, run.info.device)
        run.logger.info(f"wrote {path} ({config.grid_columns} EMA samples per class, cfg {config.cfg_scale}, "
                        f"{config.num_sampling_steps} {config.sampler} steps, {time.time() - t0:.1f} s)")
    write_loss_curve(run)
    run.logger.info("done")


def cli() -> None:
    """``python -m minidit.train``: errors as one or two lines (``--debug``: the traceback)."""
    run_cli(main)


if __name__ == "__main__":
    cli()
