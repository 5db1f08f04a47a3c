"""A training run in progress: its typed state, how it starts, resumes and saves a checkpoint.

``start_run`` turns the parts ``prepare`` built (minidit/training/setup.py) into a ``Run``: the
run folder and its log, the DDP/compile wrappers, the EMA copy, AdamW and the data loader, as the
official train.py sets them up. ``restore`` puts a checkpoint back (weights, EMA, optimizer, step,
random generators); ``save_checkpoint`` writes one. The loop that moves a run forward is
minidit/train.py.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from minidit.flops import count_gflops, peak_tflops
from minidit.training import checkpoint as ckpt_lib
from minidit.training.config import TrainConfig
from minidit.training.distributed import DistInfo, gather_object
from minidit.training.ema import create_ema, ema_pairs
from minidit.training.loader import TrainLoader, make_loader
from minidit.training.logger import LossMeter, create_logger, next_run_dir, write_json
from minidit.training.optim import create_optimizer
from minidit.training.setup import Parts


@dataclass
class Run:
    """Everything a training run holds between two steps."""

    config: TrainConfig
    info: DistInfo
    parts: Parts  # the data set, the diffusion, the VAEs and the input shape
    model: nn.Module  # the plain DiT: what checkpoints and the EMA see
    wrapped: nn.Module  # ``model`` as the loop calls it: inside DDP and torch.compile when used
    ema: nn.Module
    ema_params: list[torch.Tensor]  # the (EMA, trained) tensor pairs update_ema averages
    params: list[torch.Tensor]
    opt: torch.optim.Optimizer
    loader: TrainLoader
    run_dir: Path | None  # rank 0 only
    logger: logging.Logger
    run_args: dict  # the settings as saved in args.json and in every checkpoint
    max_steps: int
    gflops: float | None  # forward Gflops per image, when the peak is known (for MFU)
    peak: float | None  # the accelerator's peak TFLOP/s, when known
    meter: LossMeter
    step: int = 0
    last_good: Path | None = None  # the newest checkpoint written (for the NaN message)
    flip: bool = field(init=False)

    def __post_init__(self):
        # random horizontal flips of the batch; pre-extracted latents carry their own mirror
        self.flip = bool(self.config.flip) and self.config.dataset != "latents"


def run_folder(config: TrainConfig, info: DistInfo, resume_path: Path | None) -> Path | None:
    """Rank 0's run folder: the resumed run's own folder, else a new ``NNN-<model>-<preset>``."""
    if not info.is_main:
        return None
    if resume_path is not None and resume_path.parent.name == "checkpoints":
        return resume_path.parent.parent
    return next_run_dir(config.results_dir, config.model, config.preset)


def start_run(parts: Parts, info: DistInfo, resume_path: Path | None = None) -> Run:
    """The run folder and log, then the model as the official train.py wraps it, EMA, AdamW, loader."""
    config, model, device = parts.config, parts.model, info.device
    run_dir = run_folder(config, info, resume_path)
    logger = create_logger(run_dir, info.is_main)
    in_channels, input_size, _ = parts.input_shape
    run_args = dict(config.to_dict(), in_channels=in_channels, input_size=input_size,
                    world_size=info.world_size)
    if info.is_main:
        write_json(run_dir / "args.json", run_args)
    n_params = sum(p.numel() for p in model.parameters())
    threads = f" ({torch.get_num_threads()} threads)" if device.type == "cpu" else ""
    logger.info(f"run folder {run_dir}; {config.model} ({n_params:,} parameters) on {config.dataset} "
                f"({len(parts.dataset)} images, {parts.dataset.num_classes} classes), input {parts.input_shape}, "
                f"{info.world_size} process(es) on {device}{threads}, global batch {config.global_batch_size}")
    wrapped = model
    if info.enabled:
        # DDP broadcasts rank 0's initial weights, so every replica starts equal
        wrapped = DDP(model, device_ids=[device] if device.type == "cuda" else None)
    ema = create_ema(model)  # after DDP: the EMA starts from the synchronised weights
    opt = create_optimizer(model, lr=config.lr, weight_decay=config.weight_decay)
    if config.compile:
        wrapped = torch.compile(wrapped)
    ema_params, params = ema_pairs(ema, model)
    loader = make_loader(parts.dataset, parts.local_batch, info, config.global_seed, config.num_workers)
    max_steps = config.epochs * loader.steps_per_epoch
    if config.max_steps is not None:
        max_steps = min(config.max_steps, max_steps)
    peak = peak_tflops(device, config.precision, config.peak_tflops)
    gflops = count_gflops(model) if peak else None
    checkpoints = ckpt_lib.list_checkpoints(run_dir / "checkpoints") if info.is_main else []
    return Run(config, info, parts, model, wrapped, ema, ema_params, params, opt, loader, run_dir, logger,
               run_args, max_steps, gflops, peak, LossMeter(device),
               last_good=checkpoints[-1][1] if checkpoints else None)


def restore(run: Run, resumed: dict, resume_path: Path) -> None:
    """Continue from a checkpoint: weights, EMA, optimizer, step, and every rank's random generators."""
    info = run.info
    run.model.load_state_dict(resumed["model"])
    run.ema.load_state_dict(resumed["ema"])
    run.opt.load_state_dict(resumed["opt"])
    run.step = int(resumed["step"])
    per_rank = resumed.get("rng_per_rank")
    if per_rank is not None and len(per_rank) == info.world_size:
        ckpt_lib.set_rng_state(per_rank[info.rank])
    elif info.world_size == 1:
        ckpt_lib.set_rng_state(resumed["rng"])
    else:
        torch.manual_seed(run.parts.seed + run.step)
        run.logger.info("note: the world size changed, so the resumed run draws fresh random numbers")
    epoch, batch_in_epoch = divmod(run.step, run.loader.steps_per_epoch)
    run.logger.info(f"resumed from {resume_path} at step {run.step} (epoch {epoch}, batch {batch_in_epoch})")


def save_checkpoint(run: Run) -> Path | None:
    """Write the checkpoint of the current step (rank 0), keep the newest few; every rank must call it."""
    rng_all = gather_object(ckpt_lib.rng_state(), run.info)  # each rank's generators, for an exact resume
    if not run.info.is_main:
        return None
    ckpt = ckpt_lib.make_checkpoint(run.model, run.ema, run.opt, run.run_args, run.step,
                                    *divmod(run.step, run.loader.steps_per_epoch))
    if rng_all is not None:
        ckpt["rng_per_rank"] = rng_all
    folder = run.run_dir / "checkpoints"
    path = ckpt_lib.atomic_save(ckpt, ckpt_lib.checkpoint_path(folder, run.step))
    ckpt_lib.prune_checkpoints(folder, run.config.keep_last, run.config.milestone_every)
    run.last_good = path
    run.logger.info(f"saved checkpoint {path}")
    return path
