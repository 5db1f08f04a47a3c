"""A training run in progress: its typed state, how it starts, resumes and saves a checkpoint.

``start_run`` turns the parts ``prepare`` built (minidit/training/setup.py) into a ``Run``: the
run folder and its log, the DDP/compile wrappers, the EMA copy, AdamW and the data loader, as the
official train.py sets them up. It checks everything a resume could get wrong *before* it touches
the run folder, so a failed start changes nothing there (minidit/training/runfolder.py: the lock,
the roll-back). ``restore`` puts a checkpoint back (weights, EMA, optimizer, step, random
generators); ``save_checkpoint`` writes one. The loop that moves a run forward is minidit/train.py.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from minidit.files import DiskFullError
from minidit.flops import count_gflops, peak_tflops
from minidit.training import checkpoint as ckpt_lib
from minidit.training.config import TrainConfig
from minidit.training.distributed import DistInfo, gather_object, on_every_rank, on_rank_zero
from minidit.training.ema import create_ema, ema_pairs
from minidit.training.loader import TrainLoader, make_loader
from minidit.training.logger import LossMeter, create_logger, write_json
from minidit.training.optim import create_optimizer
from minidit.training.runfolder import SET_ASIDE, RunFolder, new_run_folder
from minidit.training.setup import Parts


@dataclass
class Resume:
    """A checkpoint to continue from, read and checked before anything else happens."""

    path: Path
    ckpt: dict
    notes: list[str] = field(default_factory=list)  # what the log should say about how it was found

    @property
    def step(self) -> int:
        return int(self.ckpt["step"])

    @property
    def args(self) -> dict:
        return self.ckpt["args"]


def load_resume(spec: str, results_dir: str) -> Resume:
    """``--resume PATH`` or ``--resume latest``: the newest readable checkpoint of the newest run.

    A newest checkpoint that cannot be read (a disk error, a copy cut short) is skipped for the one
    before it, and the log says so; the unreadable file is set aside with the rest of that branch.
    """
    notes = []
    if spec != "latest":
        path, ckpt = Path(spec), ckpt_lib.load_checkpoint(spec)
    else:
        candidates = ckpt_lib.latest_run_checkpoints(results_dir)
        for path in candidates:
            try:
                ckpt = ckpt_lib.load_checkpoint(path)
                break
            except ValueError as e:
                notes.append(f"note: {e}; resuming from the checkpoint before it")
        else:
            raise ValueError(f"--resume latest: no checkpoint of {candidates[0].parent} can be read "
                             f"({len(candidates)} tried); pass one with --resume PATH")
    if "step" not in ckpt or "args" not in ckpt:
        raise ValueError(f"{path} is not a minidit training checkpoint (no step/args); "
                         f"to fine-tune from official weights, load them into a new run instead")
    return Resume(path, ckpt, notes)


def run_folder_of(checkpoint: Path) -> Path | None:
    """The run folder a checkpoint belongs to (``<run>/checkpoints/N.pt``, also when set aside), or None."""
    if checkpoint.parent.name != "checkpoints":
        return None
    folder = checkpoint.parent.parent
    return folder.parent.parent if folder.parent.name == SET_ASIDE else folder


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
    folder: RunFolder | None  # rank 0 only: the locked run folder
    logger: logging.Logger
    run_args: dict  # the settings as saved in args.json and in every checkpoint
    max_steps: int
    gflops: float | None  # forward Gflops per image, when the peak is known (for MFU)
    peak: float | None  # the accelerator's peak TFLOP/s, when known
    meter: LossMeter
    step: int = 0
    saved_step: int = -1  # the step of the newest checkpoint (every rank knows it)
    last_good: Path | None = None  # rank 0: the newest checkpoint written (for the error messages)
    rng_note: str = ""  # set by restore when the random streams could not be continued
    flip: bool = field(init=False)

    def __post_init__(self):
        # random horizontal flips of the batch; pre-extracted latents carry their own mirror
        self.flip = bool(self.config.flip) and self.config.dataset != "latents"

    @property
    def run_dir(self) -> Path | None:
        return self.folder.path if self.folder else None


def check_resumable(resume: Resume, parts: Parts, max_steps: int) -> None:
    """Refuse a checkpoint of another model, or one already at or past the last step, with its reason."""
    want, have = parts.model.state_dict(), resume.ckpt["model"]
    if set(want) != set(have) or any(want[k].shape != have[k].shape for k in want):
        a, (c, size, _), config = resume.args, parts.input_shape, parts.config
        held = (f"{a.get('model')} on {a.get('in_channels')}x{a.get('input_size')}x{a.get('input_size')} inputs, "
                f"{a.get('num_classes')} classes, learn_sigma {a.get('learn_sigma')}")
        asked = f"{config.model} on {c}x{size}x{size} inputs, {config.num_classes} classes, learn_sigma {config.learn_sigma}"
        raise ValueError(f"{resume.path} holds a {held}, but this run asks for a {asked}; resume without the "
                         f"flags that change the model (or pass --model {a.get('model')}), or start a new run")
    if resume.step >= max_steps:
        raise ValueError(f"{resume.path} is at step {resume.step} and this run ends at step {max_steps}: nothing to "
                         f"train; pass --max-steps larger than {resume.step} to continue it")


def open_folder(config: TrainConfig, resume: Resume | None) -> RunFolder:
    """Rank 0's run folder, locked: the resumed run's own folder, else a new ``NNN-<model>-<preset>``."""
    existing = run_folder_of(resume.path) if resume else None
    path = existing or new_run_folder(config.results_dir, config.model, config.preset)
    return RunFolder(path).lock()


def start_history(folder: RunFolder, run_args: dict, resume: Resume | None) -> list[str]:
    """With the folder locked and the checkpoint restored: tidy the folder, branch its history, args.json."""
    notes = list(resume.notes) if resume else []
    removed = folder.remove_temp_files()
    if removed:
        notes.append(f"removed {len(removed)} temporary file(s) left by an interrupted write")
    if resume is not None and run_folder_of(resume.path) == folder.path:
        aside = folder.set_aside_after(resume.step)
        if aside is not None:
            notes.append(f"what this run wrote after step {resume.step} (later checkpoints, grids, metrics) "
                         f"is set aside in {aside}")
    write_json(folder.path / "args.json", run_args)
    return notes


def start_run(parts: Parts, info: DistInfo, resume: Resume | None = None) -> Run:
    """Check, then the run folder and log, the model as the official train.py wraps it, EMA, AdamW, loader."""
    config, model, device = parts.config, parts.model, info.device
    loader = make_loader(parts.dataset, parts.local_batch, info, config.global_seed, config.num_workers)
    max_steps = config.epochs * loader.steps_per_epoch
    if config.max_steps is not None:
        max_steps = min(config.max_steps, max_steps)
    if resume is not None:
        on_every_rank(info, check_resumable, resume, parts, max_steps)
    folder = on_rank_zero(info, open_folder, config, resume)  # every rank learns if rank 0 cannot
    try:
        wrapped = model
        if info.enabled:
            # DDP broadcasts rank 0's initial weights, so every replica starts equal
            wrapped = DDP(model, device_ids=[device] if device.type == "cuda" else None)
        ema = create_ema(model)  # after DDP: the EMA starts from the synchronised weights
        opt = create_optimizer(model, lr=config.lr, weight_decay=config.weight_decay)
        if config.compile:
            wrapped = torch.compile(wrapped)
        in_channels, input_size, _ = parts.input_shape
        run_args = dict(config.to_dict(), in_channels=in_channels, input_size=input_size, world_size=info.world_size)
        peak = peak_tflops(device, config.precision, config.peak_tflops)
        run = Run(config, info, parts, model, wrapped, ema, *ema_pairs(ema, model), opt, loader, folder,
                  create_logger(None, False), run_args, max_steps, count_gflops(model) if peak else None,
                  peak, LossMeter(device))
        if resume is not None:
            on_every_rank(info, restore, run, resume)
        notes = on_rank_zero(info, start_history, folder, run_args, resume) or []
    except BaseException:
        if folder is not None:
            folder.release()
        raise
    run.logger = create_logger(run.run_dir, info.is_main)
    log_start(run, notes, resume)
    return run


def log_start(run: Run, notes: list[str], resume: Resume | None) -> None:
    config, parts, info, device = run.config, run.parts, run.info, run.info.device
    n_params = sum(p.numel() for p in run.model.parameters())
    threads = f" ({torch.get_num_threads()} threads)" if device.type == "cpu" else ""
    run.logger.info(f"run folder {run.run_dir}; {config.model} ({n_params:,} parameters) on {config.dataset} "
                    f"({len(parts.dataset)} images, {parts.dataset.num_classes} classes), input {parts.input_shape}, "
                    f"{info.world_size} process(es) on {device}{threads}, global batch {config.global_batch_size}")
    for note in notes:
        run.logger.info(note)
    if resume is not None:
        epoch, batch_in_epoch = divmod(run.step, run.loader.steps_per_epoch)
        run.logger.info(f"resumed from {resume.path} at step {run.step} (epoch {epoch}, batch {batch_in_epoch})")
        if run.rng_note:
            run.logger.info(run.rng_note)


def restore(run: Run, resume: Resume) -> None:
    """Continue from a checkpoint: weights, EMA, optimizer, step, and every rank's random generators."""
    info, resumed = run.info, resume.ckpt
    run.model.load_state_dict(resumed["model"])
    run.ema.load_state_dict(resumed["ema"])
    run.opt.load_state_dict(resumed["opt"])
    run.step = run.saved_step = resume.step
    per_rank = resumed.get("rng_per_rank")
    if per_rank is not None and len(per_rank) == info.world_size:
        ckpt_lib.set_rng_state(per_rank[info.rank])
    elif info.world_size == 1:
        ckpt_lib.set_rng_state(resumed["rng"])
    else:
        torch.manual_seed(run.parts.seed + run.step)
        run.rng_note = "note: the world size changed, so the resumed run draws fresh random numbers"
    if run.run_dir is not None and run_folder_of(resume.path) == run.run_dir:
        run.last_good = resume.path


def save_checkpoint(run: Run) -> Path | None:
    """Write the checkpoint of the current step (rank 0), keep the newest few; every rank must call it."""
    rng_all = gather_object(ckpt_lib.rng_state(), run.info)  # each rank's generators, for an exact resume
    run.saved_step = run.step
    return on_rank_zero(run.info, write_checkpoint, run, rng_all)


def write_checkpoint(run: Run, rng_all: list | None) -> Path:
    ckpt = ckpt_lib.make_checkpoint(run.model, run.ema, run.opt, run.run_args, run.step,
                                    *divmod(run.step, run.loader.steps_per_epoch))
    if rng_all is not None:
        ckpt["rng_per_rank"] = rng_all
    folder = run.folder.checkpoints
    try:
        path = ckpt_lib.atomic_save(ckpt, ckpt_lib.checkpoint_path(folder, run.step))
    except DiskFullError as e:
        keep = f"the last good checkpoint is {run.last_good}" if run.last_good else "no checkpoint was written yet"
        raise DiskFullError(e.errno, f"{e.strerror}; {keep}") from e
    ckpt_lib.prune_checkpoints(folder, run.config.keep_last, run.config.milestone_every)
    run.last_good = path
    run.logger.info(f"saved checkpoint {path}")
    return path
