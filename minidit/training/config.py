"""The trainer's settings: one typed ``TrainConfig``, and how defaults, presets and flags combine.

Four layers, later ones win (nanoGPT's configurator, with argparse):

1. the defaults of ``TrainConfig`` -- the official ``train.py`` defaults where it has the flag;
2. the preset, ``PRESETS[--preset]``: only what it changes. When none is given: ``official``
   (the defaults as they are: the official recipe) if ``--data-path`` names a data folder, as on
   the official command line, else ``digits`` (the offline default job);
3. with ``--resume``: the resumed run's own arguments (a resumed run keeps its recipe);
4. the flags actually typed on the command line.

Every flag therefore defaults to ``None`` in argparse ("not given"), which is how layer 4 knows
what to override. ``resolve`` combines the layers; the resulting ``TrainConfig`` checks itself
once, when it is made, so every later step can trust it.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass, fields

from minidit.data import DATASETS
from minidit.errors import add_debug_flag
from minidit.models import DiT_models

from .presets import DEFAULT_PRESET, OFFICIAL_PRESET, PRESETS

KNOWN_DATASETS = set(DATASETS) | {"latents", "imagefolder", "cifar10", "mnist"}
BUILT_IN_DATASETS = ("digits", "shapes", "glyphs")  # made in memory: no --data-path


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
    dist_timeout: float | None = None
    impl: str | None = None  # --impl: whose code runs (minidit/impl.py); None: minidit's own

    def __post_init__(self):
        """The checks that need no data: unknown names, impossible numbers (the data's come in setup.py)."""
        if self.model not in DiT_models:
            raise ValueError(f"unknown model {self.model!r}; valid models: {', '.join(DiT_models)}")
        if self.dataset not in KNOWN_DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose one of {', '.join(sorted(KNOWN_DATASETS))}")
        if self.dataset in BUILT_IN_DATASETS and self.data_path:
            raise ValueError(f"--data-path is not used by the built-in {self.dataset!r} data set; drop it, or train "
                             f"on the images in {self.data_path} with --preset {OFFICIAL_PRESET} (or --dataset imagefolder)")
        for key in ("global_batch_size", "log_every", "ckpt_every", "num_sampling_steps", "epochs", "image_size",
                    "num_classes"):
            _check_at_least(key, getattr(self, key), 1)
        for key in ("max_steps", "train_samples", "threads"):  # None: not set
            if getattr(self, key) is not None:
                _check_at_least(key, getattr(self, key), 1)
        for key in ("warmup_steps", "num_workers", "keep_last", "sample_every", "grid_columns"):
            _check_at_least(key, getattr(self, key), 0)
        for key in ("decay_steps", "milestone_every"):  # 0 or None: off
            if getattr(self, key) is not None:
                _check_at_least(key, getattr(self, key), 0)
        for key in ("ema_decay", "class_dropout_prob"):
            if not 0.0 <= getattr(self, key) <= 1.0:  # also refuses NaN
                raise ValueError(f"--{_flag(key)} must lie in [0, 1], got {getattr(self, key)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"--lr must be a positive number, got {self.lr}")
        for key in ("weight_decay", "min_lr", "cfg_scale"):
            if not (getattr(self, key) >= 0 and math.isfinite(getattr(self, key))):
                raise ValueError(f"--{_flag(key)} must be a number >= 0, got {getattr(self, key)}")
        if self.dist_timeout is not None and not self.dist_timeout > 0:
            raise ValueError(f"--dist-timeout must be a positive number of seconds, got {self.dist_timeout}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"--precision must be fp32 or bf16, got {self.precision!r}")
        if self.sampler not in ("ddpm", "ddim"):
            raise ValueError(f"--sampler must be ddpm or ddim, got {self.sampler!r}")

    def to_dict(self) -> dict:
        """Every setting by name (what args.json and a checkpoint's "args" hold)."""
        return asdict(self)


def _flag(key: str) -> str:
    return key.replace("_", "-")


def _check_at_least(key: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        what = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ValueError(f"--{_flag(key)} must be {what}, got {value}")


# The defaults as a dict (what a checkpoint's "args" may set, and what the tests read).
DEFAULTS: dict = {f.name: f.default for f in fields(TrainConfig)}

# Keys that describe *how this process runs*, not the recipe: never taken from a checkpoint.
RUNTIME_KEYS = {"resume", "device", "num_workers", "peak_tflops", "debug_nan_at_step", "compile", "threads",
                "dist_timeout", "impl"}

# Where each default comes from, for --help: the official train.py's own flags ...
OFFICIAL_FLAGS = {"data_path", "results_dir", "model", "image_size", "num_classes", "epochs", "global_batch_size",
                  "global_seed", "vae", "num_workers", "log_every", "ckpt_every"}
# ... values the paper or the official code fix without a train.py flag; everything else is minidit's.
PAPER_VALUES = {"lr": "the paper's AdamW", "weight_decay": "the paper's AdamW", "ema_decay": "the paper",
                "flip": "official train.py", "class_dropout_prob": "the paper", "learn_sigma": "the paper",
                "cfg_scale": "the paper's figures", "num_sampling_steps": "official sample.py",
                "sampler": "official sample.py", "dataset": "official train.py's ImageFolder"}


def _optional_int(text: str) -> int:
    """An int, or 0 for "none"/"off" (0 means "switched off" for these flags)."""
    return 0 if text.lower() in ("none", "off") else int(text)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m minidit.train",
        description="Train a DiT. With no arguments: the 'digits' preset (a small class-conditional DiT on "
                    "8x8 digits, ~3 minutes on 2 CPU cores). With --data-path and no --preset: the official "
                    "recipe ('official': DiT-XL/2, 256x256 images through the SD VAE, 1000 classes, AdamW lr 1e-4, "
                    "EMA 0.9999) on that folder. Flags override the preset; [brackets] give each default and "
                    "where it comes from.")
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
    g.add_argument("--threads", type=int, help="CPU threads of this process (torch.set_num_threads); the "
                   "weights differ in the last bits between thread counts, so pass it for bit-identical reruns "
                   "[default: the cores other jobs leave free (minidit.env.default_threads)]")
    g.add_argument("--log-every", type=int, help="log every N steps")
    g.add_argument("--ckpt-every", type=int, help="checkpoint every N steps")
    g = p.add_argument_group("minidit")
    g.add_argument("--preset", type=str, help=f"a recipe: {', '.join(PRESETS)} [default {DEFAULT_PRESET}; "
                   f"{OFFICIAL_PRESET} when --data-path is given]")
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
    g.add_argument("--device", type=str, help="cpu, cuda, cuda:1, mps [default: the best available]")
    g.add_argument("--dist-timeout", type=float, help="seconds a process waits for the others at a collective "
                   "before giving up [default: 1800, torch's default for gloo]")
    g.add_argument("--peak-tflops", type=float, help="the accelerator's peak TFLOP/s for MFU [default: looked up by name]")
    g.add_argument("--impl", type=str, help="run on your own exercise code: exercises, exercises:ch01-ch06, "
                   "solutions or a folder (see exercises/README.md) [default: minidit's own]")
    g.add_argument("--debug-nan-at-step", type=int, help=S)  # tests: poison the loss at this step
    add_debug_flag(g)
    for action in p._actions:
        if action.dest in DEFAULTS and action.help not in (None, S) and "default" not in action.help:
            action.help += " " + default_source(action.dest)
    return p


def default_source(key: str) -> str:
    """``[default X (source)]`` for --help: the digits preset's value when it sets one, and the official one."""
    official = "not set" if DEFAULTS[key] is None else DEFAULTS[key]
    source = "official train.py" if key in OFFICIAL_FLAGS else PAPER_VALUES.get(key, "minidit")
    text = f"official recipe: {official} ({source})"
    digits = PRESETS[DEFAULT_PRESET]
    if key in digits:
        return f"[default {digits[key]} (the {DEFAULT_PRESET} preset); {text}]"
    return f"[default {official} ({source})]"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Just the typed flags (everything not given is None); ``resolve`` fills in the rest."""
    return build_parser().parse_args(argv)


def resolve(argv: list[str] | None = None, checkpoint_args: dict | None = None,
            parsed: argparse.Namespace | None = None) -> TrainConfig:
    """Combine defaults, preset, resumed arguments and typed flags into the run's ``TrainConfig``."""
    if parsed is None:
        parsed = parse_args(argv)
    typed = {k: v for k, v in vars(parsed).items() if v is not None and k in DEFAULTS}
    preset = typed.get("preset") or (checkpoint_args or {}).get("preset") or implied_preset(typed)
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


def implied_preset(typed: dict) -> str:
    """The preset of a command line without ``--preset``: the official recipe on ``--data-path``, else digits.

    An autoencoder makes no sense for the digits (8x8 pixels: a latent of 1x1): ``--vae`` without
    a preset stops with the presets to choose from instead of failing later.
    """
    if typed.get("data_path"):
        return OFFICIAL_PRESET
    if typed.get("latents") or typed.get("dataset", "digits") != "digits":
        return DEFAULT_PRESET
    digits = PRESETS[DEFAULT_PRESET]
    if str(typed.get("vae", "none")).lower() != str(digits["vae"]).lower():
        raise ValueError(f"--vae {typed['vae']} does not fit the default '{DEFAULT_PRESET}' preset (8x8 digits, pixel space); "
                         f"for the official recipe pass --preset {OFFICIAL_PRESET} --data-path DIR, for latents "
                         f"offline --preset shapes-latent")
    return DEFAULT_PRESET


def preset_config(name: str = DEFAULT_PRESET) -> TrainConfig:
    """The full settings of a preset (the defaults with the preset's changes)."""
    return resolve(["--preset", name])
