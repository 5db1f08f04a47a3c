"""Drawing images from a trained DiT: the official sampling recipe, and a model to sample from.

The library behind ``python -m minidit.sample`` (the command line) and the trainer's sample
grids. ``generate`` is the official ``sample.py`` loop: start from ``z ~ N(0, I)``; with guidance,
duplicate the batch, give the second half the null class and sample through ``forward_with_cfg``;
keep the first half; decode latents with the VAE; ``clip_denoised=False``.

``model_from_checkpoint`` builds the model (and its VAE) from a loaded checkpoint: a minidit
training checkpoint says everything in its ``args``; an official one (the released
``DiT-XL-2-256x256.pt``, or a checkpoint of the official ``train.py``) holds only weights, which
``minidit.convert`` reads, and the caller names the model and image size, as with the official
``sample.py``.
"""
from __future__ import annotations

import math
import sys

import torch
from torch import nn

from minidit.convert import check_state_dict, extract_state_dict, infer_config
from minidit.env import autocast_context
from minidit.models import get_model
from minidit.vae import load_vae

# The classes of the official sample.py's example grid (ImageNet ids).
OFFICIAL_SAMPLE_CLASSES = [207, 360, 387, 974, 88, 979, 417, 279]


@torch.no_grad()
def generate(model, diffusion, labels: torch.Tensor, shape: tuple[int, int, int], num_classes: int,
             cfg_scale: float = 4.0, sampler: str = "ddpm", device=None, vae=None,
             generator: torch.Generator | None = None, progress: bool = False,
             precision: str = "fp32") -> torch.Tensor:
    """Sample one batch: images (or decoded latents) ``(N, C, H, W)`` in [-1, 1] for ``labels``.

    ``shape`` is the model's input ``(C, H, W)`` (latent shape for latent models). With
    ``cfg_scale > 1`` the official guided recipe is used (as the official ``sample_ddp.py``:
    guidance only when the scale exceeds 1). The starting noise is drawn from ``generator``;
    the per-step noise of the sampler comes from the global RNG, so seed it for repeatability.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    n = len(labels)
    # z ~ N(0, I), (N, C, H, W)
    z = torch.randn(n, *shape, generator=generator).to(device)
    y = labels.to(device=device, dtype=torch.long)
    using_cfg = cfg_scale > 1.0
    if using_cfg:
        # first half conditional, second half the null class (id = num_classes)
        z = torch.cat([z, z], 0)
        y_null = torch.full_like(y, num_classes)
        y = torch.cat([y, y_null], 0)
        model_kwargs = dict(y=y, cfg_scale=cfg_scale)
        model_fn = model.forward_with_cfg
    else:
        model_kwargs = dict(y=y)
        model_fn = model.forward

    def fp32_model(x, t, **kw):
        with autocast_context(device, precision):
            return model_fn(x, t, **kw).float()

    if sampler == "ddpm":
        samples = diffusion.p_sample_loop(fp32_model, z.shape, z, clip_denoised=False,
                                          model_kwargs=model_kwargs, progress=progress, device=device)
    elif sampler == "ddim":
        samples = diffusion.ddim_sample_loop(fp32_model, z.shape, z, clip_denoised=False,
                                             model_kwargs=model_kwargs, progress=progress, device=device)
    else:
        raise ValueError(f"unknown sampler {sampler!r}: use 'ddpm' or 'ddim'")
    if using_cfg:
        samples, _ = samples.chunk(2, dim=0)  # drop the null-class half
    if vae is not None:
        samples = vae.decode(samples)
    return samples.float().clamp(-1, 1)


# ------------------------------------------------------------------------------------ labels

def balanced_labels(num_samples: int, num_classes: int) -> torch.Tensor:
    """``num_samples`` labels spread evenly over the classes, sorted (class 0 first)."""
    return torch.arange(num_samples) % num_classes if num_samples < num_classes else \
        torch.sort(torch.arange(num_samples) % num_classes).values


def grid_labels(num_classes: int, columns: int) -> torch.Tensor:
    """One row per class (all classes up to 16; the official example classes for ImageNet)."""
    if num_classes <= 16:
        classes = list(range(num_classes))
    elif num_classes == 1000:
        classes = OFFICIAL_SAMPLE_CLASSES
    else:
        classes = list(range(8))
    return torch.tensor(classes).repeat_interleave(columns)


def grid_rows(labels: torch.Tensor) -> int:
    """One row per class when every class appears equally often and in order; else ~square."""
    n = len(labels)
    classes = torch.unique_consecutive(labels)
    if len(classes) > 1 and len(torch.unique(labels)) == len(classes) and n % len(classes) == 0 \
            and bool((labels.view(len(classes), -1) == classes[:, None]).all()):
        return len(classes)
    rows = int(math.sqrt(n))
    while n % rows:
        rows -= 1
    return rows


# ------------------------------------------------------------------------------------ the model

def model_input_shape(args: dict, vae=None) -> tuple[int, int, int]:
    """``(C, H, W)`` the model works in: the latent shape through a VAE, else the image shape."""
    if vae is not None:
        size = args["image_size"] // vae.downsample_factor
        return (vae.latent_channels, size, size)
    return (args["in_channels"], args["input_size"], args["input_size"])


def build_vae(name, device):
    """The VAE named in a run's args (None or "none": pixel space)."""
    if name in (None, "none", "None"):
        return None
    if str(name).startswith("tiny"):  # latents manifests record "tiny:<cache key>"
        name = "tiny"
    try:
        return load_vae(name, device=str(device))
    except RuntimeError as e:  # e.g. a hub id while offline: the message says how to fix it
        raise ValueError(f"cannot load the VAE {name!r}: {e}") from e


def is_minidit_checkpoint(ckpt: dict) -> bool:
    """A minidit training checkpoint carries its run's ``args`` (a dict with the derived sizes)."""
    args = ckpt.get("args")
    return isinstance(args, dict) and "in_channels" in args and ("model" in ckpt or "ema" in ckpt)


def _minidit_weights(ckpt: dict, source: str, use_ema: bool, model_name, vae_name) -> tuple[dict, dict]:
    """``(args, state dict)`` of a minidit checkpoint; flags that would contradict it are noted."""
    args = dict(ckpt["args"])
    for key, val in (("model", model_name), ("vae", vae_name)):
        if val is not None and val != args.get(key):
            print(f"note: --{key} {val} ignored: the checkpoint was trained with {args.get(key)}", file=sys.stderr)
    key = "ema" if use_ema else "model"
    if key not in ckpt:
        raise ValueError(f"{source} has no {key!r} weights; try {'--no-ema' if use_ema else 'without --no-ema'}")
    return args, ckpt[key]


def _official_weights(ckpt: dict, source: str, use_ema: bool, model_name, image_size, vae_name, vae,
                      num_classes) -> tuple[dict, dict]:
    """``(args, state dict)`` of an official checkpoint: the flags name the model, the weights say the rest."""
    state = extract_state_dict(ckpt, prefer="ema" if use_ema else "model")
    found = infer_config(state)
    factor = vae.downsample_factor if vae is not None else 1
    if found["input_size"] != image_size // factor:
        raise ValueError(f"{source} holds a model for {found['input_size']}x{found['input_size']} inputs, but "
                         f"--image-size {image_size} gives {image_size // factor}x{image_size // factor} "
                         f"(VAE factor {factor}); pass --image-size {found['input_size'] * factor}")
    args = dict(model=model_name, image_size=image_size, vae=vae_name, num_classes=num_classes or found["num_classes"],
                in_channels=found["in_channels"], input_size=found["input_size"], learn_sigma=found["learn_sigma"],
                dataset="imagenet", class_dropout_prob=0.1)
    return args, state


def model_from_checkpoint(ckpt: dict, source: str = "checkpoint", use_ema: bool = True, device="cpu",
                          model_name: str | None = None, image_size: int | None = None,
                          vae_name: str | None = None, num_classes: int | None = None
                          ) -> tuple[nn.Module, dict, object]:
    """The model to sample from, its run's ``args`` and its VAE (or None), from a loaded checkpoint.

    A minidit checkpoint carries ``args`` (with the derived ``in_channels``/``input_size``); an
    official one does not, so ``model_name`` and ``image_size`` say what it is (its models are
    SD-VAE latent models: ``vae_name`` defaults to ``"ema"``; channels, classes and learned sigma
    are read off the weights). ``source`` names the checkpoint in error messages.
    """
    if is_minidit_checkpoint(ckpt):
        args, state = _minidit_weights(ckpt, source, use_ema, model_name, vae_name)
        vae = build_vae(args.get("vae"), device)
    else:
        if model_name is None or image_size is None:
            raise ValueError(f"{source} is not a minidit training checkpoint (no args inside); "
                             f"say what it is with --model (e.g. DiT-XL/2) and --image-size (256 or 512)")
        vae_name = vae_name or "ema"
        vae = build_vae(vae_name, device)
        args, state = _official_weights(ckpt, source, use_ema, model_name, image_size, vae_name, vae, num_classes)
    model = get_model(args["model"], input_size=args["input_size"], in_channels=args["in_channels"],
                      num_classes=args["num_classes"], learn_sigma=args.get("learn_sigma", True),
                      class_dropout_prob=args.get("class_dropout_prob", 0.1))
    check_state_dict(model, state, source=source)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), args, vae
