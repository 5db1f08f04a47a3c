"""The machinery the paper's experiments share: train one DiT, measure FID along the way.

Every run of the ablation (chapter 11) and of the scaling study (chapter 12) is the same
``Recipe`` with one knob turned: the model name (size x patch size) or the conditioning variant.
A run is described by a ``RunSpec``; ``run_experiment`` trains it with the trainer's own step
(``minidit.training.step.train_step``: loss, backward, AdamW, EMA) and lr schedule and, at each
checkpoint step, measures FID of the EMA model (measure.py: the data sets, and FID on the data
set's offline classifier). The result is a plain dict (grid.py caches it as one JSON file per
config and seed).

Why a compact loop here rather than ``python -m minidit.train``: the experiments need FID at
several points *during* one run and thousands of short runs' worth of bookkeeping that the full
trainer (checkpoint files, logs, sample grids, DDP) would only slow down.

A ``RunSpec`` with ``latent=True`` trains on the tiny autoencoder's latents of the images
(``load_vae("tiny")``, 4x4x4 for 32x32x3) and decodes its samples before they are measured, so
both spaces are judged on pixels by one classifier. Running many runs -- the JSON cache, worker
processes -- is grid.py's job.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace

import torch

from minidit.autoencoder import AutoencoderConfig, cache_key
from minidit.diffusion import create_diffusion
from minidit.flops import count_gflops, sampling_compute_gflops, training_compute_gflops
from minidit.models import get_model
from minidit.training.ema import create_ema, ema_pairs
from minidit.training.optim import create_optimizer, lr_at_step, set_lr
from minidit.training.step import train_step

from . import measure   # its functions called as measure.f(): a stand-in put into measure reaches here too
from .measure import DATA, DATA_VERSION, LATENT_DATASET, NUM_CLASSES


@dataclass(frozen=True)
class Recipe:
    """The one training-and-FID recipe every run of an experiment uses (only the knob differs).

    The defaults are a plain small run on 8x8 digits: batch 64, AdamW lr 1e-3 after a 100-step
    warm-up (then constant, as the paper), EMA 0.995, 800 steps with FID of the EMA model at
    25/50/100% of them (500 class-balanced samples, 50 respaced DDPM steps, no guidance) and, at
    the end, FID with 10, 25 and 50 sampling steps (Figure 10). The two studies use
    ``scaling.RECIPE`` (glyphs, 1,500 steps, cosine lr; scaling.py says why) and its smoke twin.
    """

    steps: int = 800
    fractions: tuple[float, ...] = (0.25, 0.5, 1.0)  # FID checkpoints, as fractions of ``steps``
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 100
    ema_decay: float = 0.995
    fid_samples: int = 500
    sampling_steps: int = 50
    cfg_scale: float = 1.0
    sweep_steps: tuple[int, ...] = (10, 25, 50)  # sampling-step counts tried on the final model
    dataset: str = "digits"            # "digits" (8x8) or "glyphs" (16x16)
    lr_schedule: str = "constant"      # after the warm-up: "constant" (the paper's) or "cosine" (to 0)
    beta2: float = 0.999               # AdamW's second-moment decay (PyTorch's and the paper's default)
    clip_denoised: bool = False        # clip the sampler's predicted x_0 to [-1, 1] (pixel-space models)
    train_samples: int | None = None   # procedural data: how many training images (None: DATA's)

    def at_compute_of(self, gflops_reference: float, gflops: float) -> "Recipe":
        """This recipe for a model of ``gflops`` forward Gflops, with as many steps as it takes to
        spend the training compute of ``steps`` steps of a model of ``gflops_reference``
        (``round(steps * gflops_reference / gflops)``, at least 2; the warm-up at most half the
        run), so the two runs line up in compute (the checkpoints at the same fractions)."""
        steps = max(2, round(self.steps * gflops_reference / gflops))
        return replace(self, steps=steps, warmup_steps=min(self.warmup_steps, steps // 2))

    def spec(self, model: str, conditioning: str = "adaLN-Zero", seed: int = 0, latent: bool = False) -> "RunSpec":
        """The run of ``model`` with ``conditioning`` and ``seed`` under this recipe (on the tiny
        autoencoder's latents when ``latent``)."""
        return RunSpec(model=model, conditioning=conditioning, steps=self.steps,
                       checkpoints=checkpoint_steps(self.steps, self.fractions), batch_size=self.batch_size,
                       lr=self.lr, warmup_steps=self.warmup_steps, ema_decay=self.ema_decay, seed=seed,
                       fid_samples=self.fid_samples, sampling_steps=self.sampling_steps, cfg_scale=self.cfg_scale,
                       sweep_steps=self.sweep_steps, dataset=self.dataset, lr_schedule=self.lr_schedule,
                       beta2=self.beta2, clip_denoised=self.clip_denoised and not latent,
                       train_samples=self.train_samples, latent=latent, vae=cache_key() if latent else "",
                       data_version=DATA_VERSION[self.dataset])


@dataclass
class RunSpec:
    """One training run of an experiment grid: everything that changes its result (``Recipe.spec``)."""

    model: str
    conditioning: str
    steps: int
    checkpoints: tuple[int, ...]
    batch_size: int
    lr: float
    warmup_steps: int
    ema_decay: float
    seed: int
    fid_samples: int
    sampling_steps: int
    cfg_scale: float
    # extra sampling-step counts evaluated at the final checkpoint (the paper's Figure 10)
    sweep_steps: tuple[int, ...]
    dataset: str = "digits"
    lr_schedule: str = "constant"
    beta2: float = 0.999
    clip_denoised: bool = False
    train_samples: int | None = None
    latent: bool = False  # train on the tiny autoencoder's latents (data set "shapes" only)
    vae: str = ""         # latent runs: that autoencoder's cache key (a result of another one never matches)
    data_version: int = 1  # the version of the data set's drawing (a result on an older drawing never matches)
    fid_batch: int = 500  # images per sampling batch (memory, not the result)

    def __post_init__(self):
        self.checkpoints = tuple(sorted(set(int(c) for c in self.checkpoints)))
        self.sweep_steps = tuple(int(s) for s in self.sweep_steps)
        if not self.checkpoints or self.checkpoints[-1] != self.steps or self.checkpoints[0] < 1:
            raise ValueError(f"checkpoints {self.checkpoints} must be positive and end at steps={self.steps}")
        if self.fid_samples < 20:
            raise ValueError(f"fid_samples={self.fid_samples} is too few for a covariance; use at least 20")
        if self.dataset not in DATA:
            raise ValueError(f"dataset={self.dataset!r}: the experiments know {sorted(DATA)}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule={self.lr_schedule!r}: use 'constant' or 'cosine'")
        if self.latent and self.dataset != LATENT_DATASET:
            raise ValueError(f"latent=True needs dataset={LATENT_DATASET!r}, the data the tiny autoencoder "
                             f"was trained on (got {self.dataset!r})")
        if self.latent and self.clip_denoised:
            raise ValueError("clip_denoised clips to the pixel range [-1, 1]; latents are unbounded (use False)")

    def key(self) -> str:
        """File-name-safe identity: model, space, conditioning and seed (the JSON holds the rest)."""
        space = "-latent" if self.latent else ""
        return f"{self.model.replace('/', '_')}{space}-{self.conditioning}-seed{self.seed}"

    def to_json(self) -> dict:
        d = asdict(self)
        d["checkpoints"], d["sweep_steps"] = list(self.checkpoints), list(self.sweep_steps)
        if not self.latent:
            # pixel runs are written without the key, so the results committed before latent runs
            # existed still match their specs (grid.load_result compares the whole dict)
            del d["latent"], d["vae"]
        if self.data_version == 1:
            del d["data_version"]  # likewise: the results made before data sets had versions
        return d


def checkpoint_steps(steps: int, fractions: tuple[float, ...]) -> tuple[int, ...]:
    """``fractions`` of ``steps`` as integer steps, always ending with ``steps`` itself."""
    return tuple(sorted({max(1, int(round(f * steps))) for f in fractions} | {steps}))


def ema_decay_at(step: int, decay: float) -> float:
    """EMA decay with a warm-up: ``min(decay, (1 + step) / (10 + step))``.

    The official code uses a constant 0.9999 over 400K steps. Our runs are ~1000 steps and are
    measured already at 25% of them, when a constant decay would still hold much of the random
    initialisation; the warm-up makes the EMA a plain average of the few steps seen so far early on.
    """
    return min(decay, (1.0 + step) / (10.0 + step))


def build_model(spec: RunSpec):
    size, channels, _, _ = DATA[spec.dataset]
    if spec.latent:  # the tiny autoencoder's latents: f = 8, 4 channels. Read from its architecture,
        cfg = AutoencoderConfig()  # not from the trained copy: a model's shape never trains anything
        size, channels = size // cfg.downsample_factor, cfg.latent_channels
    return get_model(spec.model, input_size=size, in_channels=channels, num_classes=NUM_CLASSES, learn_sigma=True,
                     class_dropout_prob=0.1, conditioning=spec.conditioning)


def model_facts(spec: RunSpec) -> dict:
    """Parameters, forward Gflops (paper convention) and token count of the spec's model."""
    model = build_model(spec)
    return dict(params=sum(p.numel() for p in model.parameters() if p.requires_grad),
                gflops=count_gflops(model), tokens=model.pos_embed.shape[1])


def run_experiment(spec: RunSpec, progress=None, device="cpu", return_model: bool = False):
    """Train ``spec`` from scratch and measure FID of the EMA model at every checkpoint.

    ``progress`` (optional) is a tqdm bar advanced by one per training step. Returns the result
    dict that ``save_result`` writes: the spec, the model's facts, one record per checkpoint
    (step, FID, mean training loss since the previous checkpoint, training compute, seconds) and,
    at the final checkpoint, the sampling-steps sweep. ``return_model``: return ``(result, ema)``,
    the trained EMA model too (a notebook shows its samples).
    """
    facts = model_facts(spec)
    images, labels = measure.real_data(spec.dataset, spec.train_samples)
    measure.real_features(spec.dataset)  # the classifier and the reference features, before the clock starts
    vae = measure.tiny_vae() if spec.latent else None
    if spec.latent:
        z_mean, z_std = measure.latent_moments(spec.dataset, spec.train_samples)
    torch.manual_seed(spec.seed)
    model = build_model(spec).to(device)
    ema = create_ema(model)
    ema_list, param_list = ema_pairs(ema, model)
    opt = create_optimizer(model, lr=spec.lr, betas=(0.9, spec.beta2))
    decay_steps = spec.steps if spec.lr_schedule == "cosine" else None
    diffusion = create_diffusion("", learn_sigma=True)
    gen = torch.Generator().manual_seed(spec.seed)  # the data order
    order, pos = torch.randperm(len(images), generator=gen), 0

    result = dict(spec=spec.to_json(), **facts, checkpoints=[], sweep=[])
    train_seconds = eval_seconds = 0.0
    running, count = 0.0, 0
    model.train()
    t0 = time.time()
    for step in range(spec.steps):
        if pos + spec.batch_size > len(order):  # a new epoch: reshuffle, drop the ragged tail
            order, pos = torch.randperm(len(images), generator=gen), 0
        idx = order[pos:pos + spec.batch_size]
        pos += spec.batch_size
        if spec.latent:
            # a fresh posterior sample of each latent every time it is drawn: z = mean + std * eps
            x_0 = z_mean[idx] + z_std[idx] * torch.randn(z_std[idx].shape, generator=gen)
        else:
            x_0 = images[idx]
        x_0, y = x_0.to(device), labels[idx].to(device)
        set_lr(opt, lr_at_step(step, spec.lr, spec.warmup_steps, decay_steps))
        loss = train_step(model, diffusion, opt, ema_list, param_list, x_0, y,
                          ema_decay=ema_decay_at(step, spec.ema_decay))["loss"]
        running += float(loss.detach())
        count += 1
        if not math.isfinite(running):
            # a diverged run is a result too (recorded, not fatal for the rest of the grid)
            result["diverged_at_step"] = step + 1
            break
        if progress is not None:
            progress.update(1)
        done = step + 1
        if done in spec.checkpoints:
            train_seconds += time.time() - t0
            t1 = time.time()
            fid, acc = measure.fid_of_model(ema, spec.fid_samples, spec.sampling_steps, spec.cfg_scale, seed=spec.seed,
                                    batch_size=spec.fid_batch, dataset=spec.dataset,
                                    clip_denoised=spec.clip_denoised, with_accuracy=True, vae=vae)
            result["checkpoints"].append(dict(
                step=done, fid=fid, accuracy=acc, loss=running / count, images_seen=done * spec.batch_size,
                train_compute_gflops=training_compute_gflops(facts["gflops"], spec.batch_size, done),
                train_seconds=train_seconds))
            running, count = 0.0, 0
            if progress is not None:
                progress.set_postfix_str(f"{spec.model} {spec.conditioning} step {done}: FID {fid:.2f}")
            if done == spec.steps:
                for n in spec.sweep_steps:
                    f = fid if n == spec.sampling_steps else measure.fid_of_model(
                        ema, spec.fid_samples, n, spec.cfg_scale, seed=spec.seed, batch_size=spec.fid_batch,
                        dataset=spec.dataset, clip_denoised=spec.clip_denoised, vae=vae)
                    result["sweep"].append(dict(
                        num_steps=n, fid=f,
                        sampling_gflops=sampling_compute_gflops(facts["gflops"], n, cfg=spec.cfg_scale > 1)))
            eval_seconds += time.time() - t1
            t0 = time.time()
    result.update(train_seconds=train_seconds, eval_seconds=eval_seconds,
                  images_per_second=spec.steps * spec.batch_size / max(train_seconds, 1e-9),
                  torch_threads=torch.get_num_threads())
    return (result, ema) if return_model else result
