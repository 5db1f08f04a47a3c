"""The trainer's settings: one typed ``TrainConfig``, and how defaults, presets and flags combine.

Four layers, later ones win (nanoGPT's configurator, with argparse):

1. the defaults of ``TrainConfig`` -- the official ``train.py`` defaults where it has the flag;
2. the preset, ``PRESETS[--preset]`` (``digits`` when none is given): only what it changes;
3. with ``--resume``: the resumed run's own arguments (a resumed run keeps its recipe);
4. the flags actually typed on the command line.

Every flag therefore defaults to ``None`` in argparse ("not given"), which is how layer 4 knows
what to override. ``resolve`` combines the layers; the resulting ``TrainConfig`` checks itself
once, when it is made, so every later step can trust it.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, fields

from minidit.data import DATASETS
from minidit.models import DiT_models

from .presets import DEFAULT_PRESET, PRESETS

KNOWN_DATASETS = set(DATASETS) | {"latents", "imagefolder", "cifar10", "mnist"}


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run; the field names are the flags' (``--global-batch-size``)."""

    # as in the official train.py (its flags and defaults)
    data_path: str | None = None
    results_dir: str = "results"
    model: str = "DiT-XL/2"
    image_size: int = 256
    num_classes: int = 1000
    epochs: int = 1400
    global_batch_size: int = 256
    global_seed: int = 0
    vae: str | None = "ema"
    num_workers: int = 4
    log_every: int = 100
    ckpt_every: int = 50_000
    # minidit's additions
    preset: str = DEFAULT_PRESET
    dataset: str = "imagefolder"
    max_steps: int | None = None
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    decay_steps: int | None = None
    min_lr: float = 0.0
    ema_decay: float = 0.9999
    flip: bool = True
    resume: str | None = None
    precision: str = "fp32"
    compile: bool = False
    grad_checkpointing: bool = False
    sample_every: int = 0
    latents: str | None = None
    cfg_scale: float = 4.0
    num_sampling_steps: int = 250
    sampler: str = "ddpm"
    keep_last: int = 2
    milestone_every: int | None = None
    class_dropout_prob: float = 0.1
    learn_sigma: bool = True
    train_samples: int | None = None
    device: str | None = None
    peak_tflops: float | None = None
    grid_columns: int = 8
    debug_nan_at_step: int | None = None
    threads: int | None = None
    impl: str | None = None  # --impl: whose code runs (minidit/impl.py); None: minidit's own

    def __post_init__(self):
        """The checks that need no data: unknown names, impossible numbers (the data's come in setup.py)."""
        if self.model not in DiT_models:
            raise ValueError(f"unknown model {self.model!r}; valid models: {', '.join(DiT_models)}")
        if self.dataset not in KNOWN_DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose one of {', '.join(sorted(KNOWN_DATASETS))}")
        for key in ("global_batch_size", "log_every", "ckpt_every", "num_sampling_steps"):
            if getattr(self, key) is None or getattr(self, key) < 1:
                raise ValueError(f"--{key.replace('_', '-')} must be a positive integer, got {getattr(self, key)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"--max-steps must be at least 1, got {self.max_steps}")
        if not 0.0 <= self.ema_decay <= 1.0:
            raise ValueError(f"--ema-decay must lie in [0, 1], got {self.ema_decay}")
        if self.lr <= 0:
            raise ValueError(f"--lr must be positive, got {self.lr}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"--precision must be fp32 or bf16, got {self.precision!r}")
        if self.sampler not in ("ddpm", "ddim"):
            raise ValueError(f"--sampler must be ddpm or ddim, got {self.sampler!r}")

    def to_dict(self) -> dict:
        """Every setting by name (what args.json and a checkpoint's "args" hold)."""
        return asdict(self)


# The defaults as a dict (what a checkpoint's "args" may set, and what the tests read).
DEFAULTS: dict = {f.name: f.default for f in fields(TrainConfig)}

# Keys that describe *how this process runs*, not the recipe: never taken from a checkpoint.
RUNTIME_KEYS = {"resume", "device", "num_workers", "peak_tflops", "debug_nan_at_step", "compile", "threads", "impl"}


def _optional_int(text: str) -> int:
    """An int, or 0 for "none"/"off" (0 means "switched off" for these flags)."""
    return 0 if text.lower() in ("none", "off") else int(text)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m minidit.train",
        description="Train a DiT. With no arguments: the 'digits' preset (a small class-conditional "
                    "DiT on 8x8 digits, ~3 minutes on 2 CPU cores). Flags override the preset.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    S = argparse.SUPPRESS  # noqa: N806
    g = p.add_argument_group("as in the official train.py")
    g.add_argument("--data-path", type=str, help="data folder (imagefolder/cifar10/mnist root)")
    g.add_argument("--results-dir", type=str, help="where run folders NNN-<model>-<preset> go [results]")
    g.add_argument("--model", type=str, help="a name from minidit.models.DiT_models, e.g. DiT-XL/2, DiT-N/2")
    g.add_argument("--image-size", type=int, help="image side in pixels (the model sees image_size/8 with an SD VAE)")
    g.add_argument("--num-classes", type=int, help="class-embedding rows (+1 null class for guidance)")
    g.add_argument("--epochs", type=int, help="stop after this many epochs (or --max-steps, whichever first)")
    g.add_argument("--global-batch-size", type=int, help="images per step over all processes")
    g.add_argument("--global-seed", type=int, help="seed; rank r uses global_seed * world_size + r")
    g.add_argument("--vae", type=str, help="ema | mse (SD VAE), tiny, a local diffusers folder, or none (pixel space)")
    g.add_argument("--num-workers", type=int, help="DataLoader worker processes per rank")
    g.add_argument("--threads", type=int, help="CPU threads of this process (torch.set_num_threads); "
                   "1 is fastest for the tiny presets on a machine other jobs share")
    g.add_argument("--log-every", type=int, help="log every N steps")
    g.add_argument("--ckpt-every", type=int, help="checkpoint every N steps")
    g = p.add_argument_group("minidit")
    g.add_argument("--preset", type=str, help=f"a recipe: {', '.join(PRESETS)} [{DEFAULT_PRESET}]")
    g.add_argument("--dataset", type=str, help="digits | shapes | imagefolder | cifar10 | mnist | latents")
    g.add_argument("--latents", type=str, help="train on latents pre-extracted by python -m minidit.extract in DIR")
    g.add_argument("--train-samples", type=int, help="use only the first N training images")
    g.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    g.add_argument("--lr", type=float, help="peak learning rate (AdamW)")
    g.add_argument("--weight-decay", type=float, help="AdamW weight decay")
    g.add_argument("--warmup-steps", type=int, help="linear learning-rate warm-up steps")
    g.add_argument("--decay-steps", type=_optional_int, help="cosine-decay the lr to --min-lr by this step (0/none: constant lr)")
    g.add_argument("--min-lr", type=float, help="learning rate at the end of the cosine decay")
    g.add_argument("--ema-decay", type=float, help="EMA decay per step (paper: 0.9999)")
    g.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None, help="random horizontal flips")
    g.add_argument("--class-dropout-prob", type=float, help="label dropout for classifier-free guidance")
    g.add_argument("--learn-sigma", action=argparse.BooleanOptionalAction, default=None, help="learn the variance (hybrid loss)")
    g.add_argument("--resume", type=str, help="a checkpoint .pt to continue from, or 'latest'")
    g.add_argument("--precision", choices=["fp32", "bf16"], help="bf16 autocast keeps fp32 master weights")
    g.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the model")
    g.add_argument("--grad-checkpointing", action=argparse.BooleanOptionalAction, default=None,
                   help="recompute each block's activations in the backward pass (less memory)")
    g.add_argument("--sample-every", type=int, help="write a sample grid every N steps (0: only at the end)")
    g.add_argument("--cfg-scale", type=float, help="guidance scale of the sample grids")
    g.add_argument("--num-sampling-steps", type=int, help="respaced diffusion steps of the sample grids")
    g.add_argument("--sampler", choices=["ddpm", "ddim"], help="sampler of the sample grids")
    g.add_argument("--grid-columns", type=int, help="samples per class row in the grid (0: no sample grids)")
    g.add_argument("--keep-last", type=int, help="keep the newest K checkpoints (plus milestones; 0: keep all)")
    g.add_argument("--milestone-every", type=_optional_int, help="checkpoints at multiples of N are never deleted (0/none: no milestones)")
    g.add_argument("--device", type=str, help="cpu, cuda, cuda:1, ... (default: the best available)")
    g.add_argument("--peak-tflops", type=float, help="the accelerator's peak TFLOP/s for MFU (default: looked up by name)")
    g.add_argument("--impl", type=str, help="run on your own exercise code: exercises, exercises:ch01-ch06, "
                   "solutions or a folder (see exercises/README.md); default: minidit's own")
    g.add_argument("--debug-nan-at-step", type=int, help=S)  # tests: poison the loss at this step
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Just the typed flags (everything not given is None); ``resolve`` fills in the rest."""
    return build_parser().parse_args(argv)


def resolve(argv: list[str] | None = None, checkpoint_args: dict | None = None,
            parsed: argparse.Namespace | None = None) -> TrainConfig:
    """Combine defaults, preset, resumed arguments and typed flags into the run's ``TrainConfig``."""
    if parsed is None:
        parsed = parse_args(argv)
    typed = {k: v for k, v in vars(parsed).items() if v is not None}
    preset = typed.get("preset") or (checkpoint_args or {}).get("preset") or DEFAULT_PRESET
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    settings = dict(PRESETS[preset])
    if checkpoint_args:
        settings.update({k: v for k, v in checkpoint_args.items() if k in DEFAULTS and k not in RUNTIME_KEYS})
    settings.update(typed)
    settings["preset"] = preset
    if settings.get("latents"):
        settings["dataset"] = "latents"
    return TrainConfig(**settings)


def preset_config(name: str = DEFAULT_PRESET) -> TrainConfig:
    """The full settings of a preset (the defaults with the preset's changes)."""
    return resolve(["--preset", name])
