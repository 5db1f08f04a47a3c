"""Everything the trainer checks and builds before step 1, and its sample grids.

``prepare`` is where every error a user can cause is raised -- unknown names, a missing data
folder, an image size the model cannot take, more classes than ``--num-classes`` -- so a run
fails in seconds, not after its first checkpoint. ``SkipSampler`` lets a resumed run continue on
exactly the next batch. ``write_sample_grid`` draws the per-class grids with the EMA weights.
The loop that uses all this is ``minidit/train.py``.
"""
from __future__ import annotations

import sys
from argparse import Namespace
from pathlib import Path

import torch
from torch.utils.data import DistributedSampler, Sampler

from minidit.training.distributed import DistInfo, rank_seed, split_global_batch

PIXEL_DATASETS_WITH_ROOT = ("imagefolder", "cifar10", "mnist")

# ------------------------------------------------------------------------------ data position

class SkipSampler(Sampler):
    """Wraps the DistributedSampler to start ``skip`` indices into the epoch (for exact resume).

    The DistributedSampler's order depends only on (seed, epoch), so skipping the batches a
    stopped run already consumed puts a resumed run on exactly the next batch.
    """

    def __init__(self, base: DistributedSampler):
        self.base, self.skip = base, 0

    def __iter__(self):
        it = iter(self.base)
        for _ in range(self.skip):
            next(it)
        yield from it

    def __len__(self):
        return len(self.base) - self.skip


# ------------------------------------------------------------------------------ checks + setup

def patch_size_of(model_name: str) -> int:
    return int(model_name.rsplit("/", 1)[1])


def check_names(args: Namespace) -> None:
    """Errors that need no data: unknown names, impossible numbers."""
    from minidit.data import DATASETS
    from minidit.models import DiT_models

    if args.model not in DiT_models:
        raise ValueError(f"unknown model {args.model!r}; valid models: {', '.join(DiT_models)}")
    known = set(DATASETS) | {"latents", "imagefolder", "cifar10", "mnist"}
    if args.dataset not in known:
        raise ValueError(f"unknown dataset {args.dataset!r}; choose one of {', '.join(sorted(known))}")
    for key in ("global_batch_size", "log_every", "ckpt_every", "num_sampling_steps"):
        if getattr(args, key) is None or getattr(args, key) < 1:
            raise ValueError(f"--{key.replace('_', '-')} must be a positive integer, got {getattr(args, key)}")
    if args.max_steps is not None and args.max_steps < 1:
        raise ValueError(f"--max-steps must be at least 1, got {args.max_steps}")
    if not 0.0 <= args.ema_decay <= 1.0:
        raise ValueError(f"--ema-decay must lie in [0, 1], got {args.ema_decay}")
    if args.lr <= 0:
        raise ValueError(f"--lr must be positive, got {args.lr}")


def build_data(args: Namespace):
    """The training data set, with clear errors for a missing path."""
    from minidit.data import get_dataset

    if args.dataset == "latents":
        root = args.latents or args.data_path
        if not root or not Path(root).is_dir():
            raise FileNotFoundError(f"latents folder {root!r} does not exist; create it with "
                                    f"python -m minidit.extract --out DIR and pass --latents DIR")
        return get_dataset("latents", root=root, train=True, flip=args.flip)
    root = args.data_path
    if args.dataset in PIXEL_DATASETS_WITH_ROOT:
        if not root:
            raise ValueError(f"--dataset {args.dataset} needs --data-path (the folder with the images)")
    if root is not None and not Path(root).exists():
        raise FileNotFoundError(f"--data-path {root} does not exist; check the path "
                                f"(for {args.dataset!r} it must be the data set's root folder)")
    # flips happen on the batch inside the trainer (deterministic under resume), not in the data set
    return get_dataset(args.dataset, root=root, train=True, image_size=args.image_size,
                       flip=False, num_samples=args.train_samples)


def prepare(args: Namespace, info: DistInfo) -> dict:
    """Build data, VAE and model, checking everything that could fail before step 1."""
    from minidit.diffusion import create_diffusion
    from minidit.models import get_model
    from minidit.sample import build_vae

    check_names(args)
    local_batch = split_global_batch(args.global_batch_size, info.world_size)
    dataset = build_data(args)
    if dataset.num_classes > args.num_classes:
        raise ValueError(f"the data set has {dataset.num_classes} classes but --num-classes is "
                         f"{args.num_classes}; pass --num-classes {dataset.num_classes} (or more)")
    x0, _ = dataset[0]
    patch = patch_size_of(args.model)
    latent_mode = args.dataset == "latents"
    vae = None if latent_mode else build_vae(args.vae, info.device)
    vae_for_samples = vae
    if vae is not None:
        factor = vae.downsample_factor
        if x0.shape[-1] != args.image_size:
            raise ValueError(f"the data set yields {x0.shape[-1]}x{x0.shape[-1]} images but --image-size "
                             f"is {args.image_size}; make them agree")
        if args.image_size % factor != 0:
            raise ValueError(f"--image-size {args.image_size} is not divisible by the VAE's downsampling "
                             f"factor {factor}")
        input_size, in_channels = args.image_size // factor, vae.latent_channels
        what = f"the latent size {input_size} (= image size {args.image_size} / VAE factor {factor})"
    else:
        input_size, in_channels = x0.shape[-1], x0.shape[0]
        if latent_mode:
            manifest = getattr(dataset, "manifest", None) or {}
            extracted = manifest.get("image_size")
            if extracted is not None and int(extracted) != args.image_size:
                raise ValueError(f"the latents were extracted from {extracted}x{extracted} images but "
                                 f"--image-size is {args.image_size}; pass --image-size {extracted}")
            what = f"the latent size {input_size}"
            if manifest.get("vae"):
                # the sample grids decode with the VAE the latents came from
                args.vae = manifest["vae"]
                try:
                    vae_for_samples = build_vae(args.vae, info.device)
                except Exception as e:  # e.g. a hub id while offline: train anyway, grids show latents
                    print(f"note: cannot load VAE {args.vae!r} to decode sample grids ({e})", file=sys.stderr)
        else:
            if input_size != args.image_size:
                raise ValueError(f"the data set yields {input_size}x{input_size} images but --image-size is "
                                 f"{args.image_size}; pass --image-size {input_size}")
            what = f"the image size {input_size} (pixel space, no VAE)"
    if input_size % patch != 0:
        raise ValueError(f"{args.model} cannot take {what}: it is not divisible by the patch size {patch}; "
                         f"choose a model with patch size dividing {input_size} or another --image-size")
    diffusion = create_diffusion(timestep_respacing="", learn_sigma=args.learn_sigma)
    # each rank its own seed (official): global_seed * world_size + rank
    seed = rank_seed(args.global_seed, info.world_size, info.rank)
    torch.manual_seed(seed)
    model = get_model(args.model, input_size=input_size, in_channels=in_channels,
                      num_classes=args.num_classes, learn_sigma=args.learn_sigma,
                      class_dropout_prob=args.class_dropout_prob,
                      grad_checkpointing=bool(args.grad_checkpointing)).to(info.device)
    return dict(dataset=dataset, vae=vae, vae_for_samples=vae_for_samples, model=model, diffusion=diffusion,
                local_batch=local_batch,
                input_size=input_size, in_channels=in_channels, seed=seed)


def grid_labels(num_classes: int, columns: int) -> torch.Tensor:
    """One row per class (all classes up to 16; the official example classes for ImageNet)."""
    from minidit.sample import OFFICIAL_SAMPLE_CLASSES

    if num_classes <= 16:
        classes = list(range(num_classes))
    elif num_classes == 1000:
        classes = OFFICIAL_SAMPLE_CLASSES
    else:
        classes = list(range(8))
    return torch.tensor(classes).repeat_interleave(columns)


def write_sample_grid(ema, args: Namespace, vae, shape, run_dir: Path, step: int, device) -> Path:
    """Sample a grid with the EMA weights without touching the training RNG streams."""
    from minidit.diffusion import create_diffusion
    from minidit.sample import generate
    from minidit.training.plots import save_grid

    labels = grid_labels(args.num_classes, args.grid_columns)
    diffusion = create_diffusion(str(args.num_sampling_steps), learn_sigma=args.learn_sigma)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # sampling must not shift the training RNG
        torch.manual_seed(args.global_seed)
        gen = torch.Generator().manual_seed(args.global_seed)
        images = generate(ema, diffusion, labels, shape, args.num_classes, cfg_scale=args.cfg_scale,
                          sampler=args.sampler, device=device, vae=vae, generator=gen,
                          precision=args.precision)
    return save_grid(images, run_dir / f"samples_{step:07d}.png", rows=len(torch.unique(labels)))
