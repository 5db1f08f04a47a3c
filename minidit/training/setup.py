"""Everything the trainer checks and builds before step 1: the data, the VAE and the model.

``prepare`` is where every error a user can cause with the data is raised -- a missing data
folder, an image size the model cannot take, more classes than ``--num-classes`` -- so a run
fails in seconds, not after its first checkpoint (the settings' own checks are ``TrainConfig``'s).
It returns the built parts as a typed ``Parts``; minidit/training/state.py turns them into a run.
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from minidit.data import get_dataset
from minidit.diffusion import create_diffusion
from minidit.generation import VAEUnavailableError, build_vae, check_latents_vae
from minidit.models import get_model
from minidit.training.config import TrainConfig
from minidit.training.distributed import DistInfo, rank_seed, split_global_batch

PIXEL_DATASETS_WITH_ROOT = ("imagefolder", "cifar10", "mnist")


@dataclass
class Parts:
    """What ``prepare`` builds: the data, the autoencoders and the model, all checked to fit together."""

    config: TrainConfig  # the settings; on pre-extracted latents ``vae`` names the latents' own VAE
    dataset: Dataset
    model: nn.Module  # the plain DiT on the device, initialised from this rank's seed
    diffusion: object  # the training diffusion: all 1000 steps
    vae: object | None  # encodes every batch (None: pixel space, or latents already encoded)
    sample_vae: object | None  # decodes the sample grids
    input_shape: tuple[int, int, int]  # (C, H, W) the model sees
    local_batch: int  # this rank's share of the global batch
    seed: int  # this rank's seed


def patch_size_of(model_name: str) -> int:
    return int(model_name.rsplit("/", 1)[1])


def build_data(config: TrainConfig) -> Dataset:
    """The training data set, with clear errors for a missing path."""
    if config.dataset == "latents":
        root = config.latents or config.data_path
        if not root or not Path(root).is_dir():
            raise FileNotFoundError(f"latents folder {root!r} does not exist; create it with "
                                    f"python -m minidit.extract --out DIR and pass --latents DIR")
        return get_dataset("latents", root=root, train=True, flip=config.flip)
    root = config.data_path
    if config.dataset in PIXEL_DATASETS_WITH_ROOT and not root:
        raise ValueError(f"--dataset {config.dataset} needs --data-path (the folder with the images)")
    if root is not None and not Path(root).exists():
        raise FileNotFoundError(f"--data-path {root} does not exist; check the path "
                                f"(for {config.dataset!r} it must be the data set's root folder)")
    # flips happen on the batch inside the trainer (deterministic under resume), not in the data set
    return get_dataset(config.dataset, root=root, train=True, image_size=config.image_size,
                       flip=False, num_samples=config.train_samples)


def latent_input(config: TrainConfig, vae, image: torch.Tensor) -> tuple[int, int, str]:
    """``(input size, channels, description)`` of the latents ``vae`` makes of the data's images."""
    factor = vae.downsample_factor
    takes = getattr(vae, "in_channels", None)
    if takes is not None and image.shape[0] != takes:
        raise ValueError(f"the data set yields {image.shape[0]}-channel images but the VAE {vae.name!r} takes "
                         f"{takes}-channel ones; pick a matching --vae (or --vae none: pixel space)")
    if image.shape[-1] != config.image_size:
        raise ValueError(f"the data set yields {image.shape[-1]}x{image.shape[-1]} images but --image-size "
                         f"is {config.image_size}; make them agree")
    if config.image_size % factor != 0:
        raise ValueError(f"--image-size {config.image_size} is not divisible by the VAE's downsampling "
                         f"factor {factor}")
    input_size = config.image_size // factor
    return input_size, vae.latent_channels, (f"the latent size {input_size} (= image size {config.image_size} "
                                             f"/ VAE factor {factor})")


def extracted_latents_vae(config: TrainConfig, dataset, info: DistInfo) -> tuple[TrainConfig, object | None]:
    """On pre-extracted latents: the settings naming the latents' own VAE, and that VAE for the grids."""
    manifest = getattr(dataset, "manifest", None) or {}
    extracted = manifest.get("image_size")
    if extracted is not None and int(extracted) != config.image_size:
        raise ValueError(f"the latents were extracted from {extracted}x{extracted} images but "
                         f"--image-size is {config.image_size}; pass --image-size {extracted}")
    if not manifest.get("vae"):
        return config, None
    config = dataclasses.replace(config, vae=manifest["vae"])
    if config.grid_columns <= 0:  # no sample grids: nothing is decoded, so no autoencoder is loaded or trained
        return config, None
    try:
        vae = build_vae(config.vae, info.device)  # the latents' own autoencoder, by its exact name
    except VAEUnavailableError as e:  # e.g. a hub id while offline: train anyway, grids show latents
        print(f"note: cannot load VAE {config.vae!r} to decode sample grids ({e})", file=sys.stderr)
        return config, None
    except ValueError as e:  # not the latents' own autoencoder: never decode with another one
        raise ValueError(f"{e} (or train without sample grids: --grid-columns 0)") from e
    check_latents_vae(manifest, vae, getattr(dataset, "root", "the latents"))
    return config, vae


def prepare(config: TrainConfig, info: DistInfo) -> Parts:
    """Build data, VAE and model, checking everything that could fail before step 1."""
    local_batch = split_global_batch(config.global_batch_size, info.world_size)
    dataset = build_data(config)
    if dataset.num_classes > config.num_classes:
        raise ValueError(f"the data set has {dataset.num_classes} classes but --num-classes is "
                         f"{config.num_classes}; pass --num-classes {dataset.num_classes} (or more)")
    image, _ = dataset[0]
    vae = sample_vae = None
    if config.dataset == "latents":
        config, sample_vae = extracted_latents_vae(config, dataset, info)
        input_size, in_channels = image.shape[-1], image.shape[0]
        what = f"the latent size {input_size}"
    else:
        vae = sample_vae = build_vae(config.vae, info.device)
        if vae is not None and config.vae == "tiny":  # record which tiny autoencoder: its cache key
            config = dataclasses.replace(config, vae=vae.name)
        if vae is not None:
            input_size, in_channels, what = latent_input(config, vae, image)
        else:
            input_size, in_channels = image.shape[-1], image.shape[0]
            if input_size != config.image_size:
                raise ValueError(f"the data set yields {input_size}x{input_size} images but --image-size is "
                                 f"{config.image_size}; pass --image-size {input_size}")
            what = f"the image size {input_size} (pixel space, no VAE)"
    patch = patch_size_of(config.model)
    if input_size % patch != 0:
        raise ValueError(f"{config.model} cannot take {what}: it is not divisible by the patch size {patch}; "
                         f"choose a model with patch size dividing {input_size} or another --image-size")
    diffusion = create_diffusion(timestep_respacing="", learn_sigma=config.learn_sigma)
    # each rank its own seed (official): global_seed * world_size + rank
    seed = rank_seed(config.global_seed, info.world_size, info.rank)
    torch.manual_seed(seed)
    model = get_model(config.model, input_size=input_size, in_channels=in_channels,
                      num_classes=config.num_classes, learn_sigma=config.learn_sigma,
                      class_dropout_prob=config.class_dropout_prob,
                      grad_checkpointing=bool(config.grad_checkpointing)).to(info.device)
    return Parts(config, dataset, model, diffusion, vae, sample_vae, (in_channels, input_size, input_size),
                 local_batch, seed)
