"""Train a DiT: ``python -m minidit.train`` (see ``--help``; presets in minidit/training/presets.py).

With no arguments it trains the offline default -- a small class-conditional DiT on 8x8 digits
with learned sigma -- in about two minutes on two CPU cores. At full size it is the paper's
recipe (``--preset imagenet256-xl2 --data-path /data/imagenet/train``), on one GPU or many::

    torchrun --nproc_per_node 8 -m minidit.train --preset imagenet256-xl2 --data-path ... \\
        --precision bf16 --compile

The loop, in the official order (train.py of the DiT repository): draw a batch, encode it with
the VAE when training in latent space, draw ``t ~ U{0..999}``, compute ``L_simple + L_vlb``,
``zero_grad -> backward -> step``, update the EMA. minidit adds what a long run needs: exact
resume, atomic checkpoints, NaN detection, bf16/compile, throughput and MFU in the log.

Reading order: ``main`` (flags -> checks -> train), then ``train``, the loop. Everything that can
fail is checked before the first step by ``prepare`` in minidit/training/setup.py.
"""
from __future__ import annotations

import sys
import time
from argparse import Namespace
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler

from minidit.training import checkpoint as ckpt_lib
from minidit.training.config import parse_args, resolve
from minidit.training.distributed import (DistInfo, all_reduce_mean, barrier, cleanup_distributed,
                                          init_distributed, parameters_in_sync)
from minidit.training.ema import create_ema, ema_pairs, update_ema
from minidit.training.logger import (append_jsonl, close_logger, create_logger, mfu, next_run_dir,
                                     peak_tflops, progress_bar, read_jsonl, write_json)
from minidit.training.objective import diffusion_loss
from minidit.training.optim import create_optimizer, lr_at_step, set_lr
from minidit.training.setup import SkipSampler, check_names, prepare, write_sample_grid

class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf: the run stops, keeping its last good checkpoint."""


# ------------------------------------------------------------------------------ the loop

def main(argv: list[str] | None = None) -> Path | None:
    """Parse flags, check them, train; returns the run folder (rank 0) or None."""
    typed = parse_args(argv)
    resume_path, resumed = None, None
    if typed.resume:
        results_dir = typed.results_dir or "results"
        resume_path = ckpt_lib.find_latest(results_dir) if typed.resume == "latest" else Path(typed.resume)
        resumed = ckpt_lib.load_checkpoint(resume_path)
        if "step" not in resumed or "args" not in resumed:
            raise ValueError(f"{resume_path} is not a minidit training checkpoint (no step/args); "
                             f"to fine-tune from official weights, load them into a new run instead")
    args = resolve(parsed=typed, checkpoint_args=resumed["args"] if resumed else None)
    check_names(args)
    info = init_distributed(args.device)
    try:
        return train(args, info, resumed, resume_path)
    finally:
        cleanup_distributed()


def train(args: Namespace, info: DistInfo, resumed: dict | None, resume_path: Path | None) -> Path | None:
    if args.threads:
        # PyTorch's OpenMP threads spin at barriers when the cores are busy with other jobs; tiny
        # models also gain little from a second thread (benchmarks/README.md measures both)
        torch.set_num_threads(args.threads)
    if info.device.type == "cuda":
        # TF32 matmuls and convolutions on Ampere+ (the official code allows them too)
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    setup = prepare(args, info)
    model, diffusion, vae, dataset = setup["model"], setup["diffusion"], setup["vae"], setup["dataset"]
    raw_model, device, local_batch = model, info.device, setup["local_batch"]
    shape = (setup["in_channels"], setup["input_size"], setup["input_size"])

    # ---- the run folder (rank 0): reuse the resumed run's folder, else a new NNN-model-preset
    run_dir = None
    if info.is_main:
        if resume_path is not None and resume_path.parent.name == "checkpoints":
            run_dir = resume_path.parent.parent
        else:
            run_dir = next_run_dir(args.results_dir, args.model, args.preset)
    logger = create_logger(run_dir, info.is_main)
    run_args = dict(vars(args), in_channels=setup["in_channels"], input_size=setup["input_size"],
                    world_size=info.world_size)
    if info.is_main:
        write_json(run_dir / "args.json", run_args)
    n_params = sum(p.numel() for p in raw_model.parameters())
    logger.info(f"run folder {run_dir}; {args.model} ({n_params:,} parameters) on {args.dataset} "
                f"({len(dataset)} images, {dataset.num_classes} classes), input {tuple(shape)}, "
                f"{info.world_size} process(es) on {device}"
                f"{f' ({torch.get_num_threads()} threads)' if device.type == 'cpu' else ''}, "
                f"global batch {args.global_batch_size}")

    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        # DDP broadcasts rank 0's initial weights, so every replica starts equal
        model = DDP(raw_model, device_ids=[device] if device.type == "cuda" else None)
    ema = create_ema(raw_model)  # after DDP: the EMA starts from the synchronised weights
    opt = create_optimizer(raw_model, lr=args.lr, weight_decay=args.weight_decay)
    if args.compile:
        model = torch.compile(model)
    ema_list, param_list = ema_pairs(ema, raw_model)

    sampler = DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                 seed=args.global_seed, drop_last=True)
    steps_per_epoch = len(sampler) // local_batch
    if steps_per_epoch == 0:
        raise ValueError(f"the data set has {len(dataset)} images: fewer than one batch of {local_batch} per "
                         f"process; lower --global-batch-size")
    skipper = SkipSampler(sampler)
    loader_gen = torch.Generator()
    loader = DataLoader(dataset, batch_size=local_batch, sampler=skipper, drop_last=True,
                        num_workers=args.num_workers, pin_memory=device.type == "cuda",
                        persistent_workers=args.num_workers > 0, generator=loader_gen)

    step, epoch, batch_in_epoch = 0, 0, 0
    if resumed is not None:
        raw_model.load_state_dict(resumed["model"])
        ema.load_state_dict(resumed["ema"])
        opt.load_state_dict(resumed["opt"])
        step = int(resumed["step"])
        epoch, batch_in_epoch = divmod(step, steps_per_epoch)
        per_rank = resumed.get("rng_per_rank")
        if per_rank is not None and len(per_rank) == info.world_size:
            ckpt_lib.set_rng_state(per_rank[info.rank])
        elif info.world_size == 1:
            ckpt_lib.set_rng_state(resumed["rng"])
        else:
            torch.manual_seed(setup["seed"] + step)
            logger.info("note: the world size changed, so the resumed run draws fresh random numbers")
        logger.info(f"resumed from {resume_path} at step {step} (epoch {epoch}, batch {batch_in_epoch})")

    max_steps = args.max_steps if args.max_steps is not None else args.epochs * steps_per_epoch
    max_steps = min(max_steps, args.epochs * steps_per_epoch)
    gflops = None
    peak = peak_tflops(device, args.precision, args.peak_tflops)
    if peak:
        from minidit.flops import count_gflops

        gflops = count_gflops(raw_model)
    last_good = ckpt_lib.list_checkpoints(run_dir / "checkpoints")[-1][1] if (
        info.is_main and ckpt_lib.list_checkpoints(run_dir / "checkpoints")) else None

    def save(step_now: int) -> Path | None:
        nonlocal last_good
        rng_all = _gather_rng(info)
        if not info.is_main:
            return None
        ck = ckpt_lib.make_checkpoint(raw_model, ema, opt, run_args, step_now, *divmod(step_now, steps_per_epoch))
        if rng_all is not None:
            ck["rng_per_rank"] = rng_all
        path = ckpt_lib.atomic_save(ck, ckpt_lib.checkpoint_path(run_dir / "checkpoints", step_now))
        ckpt_lib.prune_checkpoints(run_dir / "checkpoints", args.keep_last, args.milestone_every)
        last_good = path
        logger.info(f"saved checkpoint {path}")
        return path

    def stop_if_bad(bad_step: torch.Tensor) -> None:
        bad = int(bad_step.item())  # a sync, but only at log/checkpoint steps
        if info.enabled:
            t = torch.tensor([bad if bad >= 0 else 2**62], device=device)
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
            bad = int(t.item()) if int(t.item()) < 2**62 else -1
        if bad >= 0:
            keep = f"the last good checkpoint is {last_good}" if last_good else "no checkpoint was written yet"
            msg = (f"the loss became NaN or inf at step {bad}; stopping ({keep}). Try a lower --lr, "
                   f"--precision fp32, or resume from the checkpoint with --resume")
            logger.info(f"error: {msg}")
            raise NonFiniteLossError(msg)

    model.train()
    flip = bool(args.flip) and args.dataset != "latents"
    running = torch.zeros(3, device=device)  # sums of loss, mse, vb since the last log
    bad_step = torch.full((), -1, dtype=torch.long, device=device)
    log_count, t_log = 0, time.time()
    bar = progress_bar(max_steps, step, info.is_main)
    logger.info(f"training to step {max_steps} ({steps_per_epoch} steps per epoch)")
    try:
        while step < max_steps:
            sampler.set_epoch(epoch)
            skipper.skip = batch_in_epoch * local_batch
            loader_gen.manual_seed(args.global_seed * 100_003 + epoch)
            for x, y in loader:
                x = x.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
                if flip:
                    # random horizontal flip, p = 1/2 per image, drawn on the trainer's RNG
                    mirror = torch.rand(x.shape[0], device=device) < 0.5
                    x = torch.where(mirror[:, None, None, None], x.flip(-1), x)
                if vae is not None:
                    with torch.no_grad():
                        # x_0 = scale_factor * E(image): the diffusion runs in latent space
                        x = vae.encode(x)
                set_lr(opt, lr_at_step(step, args.lr, args.warmup_steps, args.decay_steps or None, args.min_lr))
                losses = diffusion_loss(diffusion, model, x, y, precision=args.precision)
                loss = losses["loss"]
                if args.debug_nan_at_step is not None and step + 1 >= args.debug_nan_at_step:
                    loss = loss * float("nan")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                update_ema(ema_list, param_list, args.ema_decay)
                step += 1
                batch_in_epoch += 1
                bar.update(1)
                # device-side bookkeeping only: no .item() here
                detached = loss.detach()
                running += torch.stack([detached, losses.get("mse", detached).detach(),
                                        losses.get("vb", torch.zeros_like(detached)).detach()])
                bad_step = torch.where(torch.isfinite(detached) | (bad_step >= 0), bad_step,
                                       torch.full_like(bad_step, step))
                log_count += 1
                at_end = step >= max_steps
                if step % args.log_every == 0 or at_end:
                    stop_if_bad(bad_step)
                    now = time.time()
                    means = (all_reduce_mean(running, info) / log_count).tolist()
                    steps_s = log_count / max(now - t_log, 1e-9)
                    rec = dict(step=step, epoch=epoch, loss=means[0], mse=means[1], vb=means[2],
                               steps_per_s=steps_s, images_per_s=steps_s * args.global_batch_size,
                               lr=opt.param_groups[0]["lr"], time=now)
                    util = mfu(rec["images_per_s"] / info.world_size, gflops, peak) if gflops else None
                    line = (f"(step={step:07d}) Train Loss: {means[0]:.4f} (mse {means[1]:.4f}, vb {means[2]:.4f}), "
                            f"Train Steps/Sec: {steps_s:.2f}, images/s {rec['images_per_s']:.1f}, lr {rec['lr']:.2e}")
                    if util is not None:
                        rec["mfu"] = util
                        line += f", MFU {100 * util:.1f}%"
                    logger.info(line)
                    if info.is_main:
                        append_jsonl(run_dir / "metrics.jsonl", rec)
                    running.zero_()
                    log_count, t_log = 0, time.time()
                if step % args.ckpt_every == 0 or at_end:
                    stop_if_bad(bad_step)
                    save(step)
                    _write_loss_curve(run_dir, args, info)
                if args.sample_every and args.grid_columns > 0 and step % args.sample_every == 0 and not at_end:
                    if info.is_main:
                        p = write_sample_grid(ema, args, setup["vae_for_samples"], shape, run_dir, step, device)
                        logger.info(f"wrote {p}")
                    barrier(info)
                    t_log = time.time()
                if at_end:
                    break
            else:
                epoch += 1
                batch_in_epoch = 0
                continue
            break
    finally:
        bar.close()

    in_sync = parameters_in_sync(raw_model, info)
    if info.enabled:
        logger.info(f"ranks in sync: {in_sync} (parameter checksums of {info.world_size} ranks compared)")
        if not in_sync:
            raise RuntimeError("the ranks' weights differ after training: DDP lost synchronisation")
    if info.is_main and args.grid_columns > 0:  # --grid-columns 0: no sample grid
        t0 = time.time()
        p = write_sample_grid(ema, args, setup["vae_for_samples"], shape, run_dir, step, device)
        logger.info(f"wrote {p} ({args.grid_columns} EMA samples per class, cfg {args.cfg_scale}, "
                    f"{args.num_sampling_steps} {args.sampler} steps, {time.time() - t0:.1f} s)")
    if info.is_main:
        _write_loss_curve(run_dir, args, info)
        logger.info("done")
    close_logger(logger)
    return run_dir


def _gather_rng(info: DistInfo):
    """Every rank's RNG state, on rank 0 (so a resumed multi-process run draws the same numbers)."""
    if not info.enabled:
        return None
    states = [None] * info.world_size
    torch.distributed.all_gather_object(states, ckpt_lib.rng_state())
    return states


def _write_loss_curve(run_dir: Path | None, args: Namespace, info: DistInfo) -> None:
    if not info.is_main:
        return
    from minidit.training.plots import save_loss_curve

    save_loss_curve(read_jsonl(run_dir / "metrics.jsonl"), run_dir / "loss.png",
                    title=f"{args.model} on {args.dataset} ({args.preset})")


def cli() -> None:
    try:
        main()
    except (ValueError, FileNotFoundError, NonFiniteLossError) as e:
        cleanup_distributed()
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    cli()
