"""Drawing images from a trained DiT: the official sampling recipe, and a model to sample from.

The library behind ``python -m minidit.sample`` (the command line) and the trainer's sample
grids. ``generate`` is the official ``sample.py`` loop: start from ``z ~ N(0, I)``; with guidance,
duplicate the batch, give the second half the null class and sample through ``forward_with_cfg``;
keep the first half; decode latents with the VAE; ``clip_denoised=False``. Two things differ on
purpose, both explained at ``generate``: the starting noise and the per-step noise come from two
seeded streams (the starting noise is the same on any device), and latents are decoded a few
at a time.

``model_from_checkpoint`` builds the model (and its VAE) from a loaded checkpoint: a minidit
training checkpoint says everything in its ``args``; an official one (the released
``DiT-XL-2-256x256.pt``, or a checkpoint of the official ``train.py``) holds only weights, which
``minidit.convert`` reads, and the caller names the model and image size, as with the official
``sample.py``.
"""
from __future__ import annotations

import contextlib
import math
import warnings

import torch
from torch import nn

from minidit.convert import check_state_dict, extract_state_dict, infer_config
from minidit.env import autocast_context
from minidit.models import get_model
from minidit.models.configs import config_name
from minidit.vae import HUB_ALIASES, load_vae, split_scale

# The classes of the official sample.py's example grid (ImageNet ids).
OFFICIAL_SAMPLE_CLASSES = [207, 360, 387, 974, 88, 979, 417, 279]

# Output pixels one VAE decode call may produce, [CPU, CUDA]: 4 (CPU) or 32 (GPU) images of 256x256.
DECODE_CHUNK_PIXELS = (4 * 256 * 256, 32 * 256 * 256)
# A sample grid decoded on a CPU through a VAE holds at most this many output pixels: 8 images of
# 256x256, as many as the official sample.py draws (SD's decoder costs 311 GMACs per 256x256 image).
CPU_GRID_PIXELS = 8 * 256 * 256


@torch.no_grad()
def generate(model, diffusion, labels: torch.Tensor, shape: tuple[int, int, int], num_classes: int,
             cfg_scale: float = 4.0, sampler: str = "ddpm", device=None, vae=None,
             generator: torch.Generator | None = None, progress: bool = False,
             precision: str = "fp32", guidance_channels: str | None = None,
             clip_denoised: bool = False) -> torch.Tensor:
    """Sample one batch: images (or decoded latents) ``(N, C, H, W)`` in [-1, 1] for ``labels``.

    ``shape`` is the model's input ``(C, H, W)`` (latent shape for latent models). With
    ``cfg_scale > 1`` the official guided recipe is used (as the official ``sample_ddp.py``:
    guidance only when the scale exceeds 1); ``guidance_channels`` ("official", "all" or None,
    minidit's default) is passed to ``forward_with_cfg``. ``clip_denoised`` clips each step's
    predicted ``x_0`` to [-1, 1]: off as in the official DiT (latents are unbounded), on for
    pixel-space models, as ADM's pixel sampler (a young pixel model otherwise drifts far outside
    [-1, 1] and most pixels of its samples saturate).

    Two noise streams, never the same numbers: the starting noise ``x_T`` is drawn from
    ``generator``; the per-step noise of the sampler comes from torch's global RNG, which is
    re-seeded, inside this call only, from a number drawn from ``generator`` right after ``x_T``
    (so every batch gets fresh step noise, each rank its own when each rank's generator is seeded
    with its rank seed, and the caller's global RNG is left as it was). Seeding both with the same
    seed -- as minidit did before -- made the first DDPM step's noise equal to ``x_T`` on a CPU.
    The official scripts draw both from one global stream in turn; with ``generator=None`` this
    function does the same.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    labels = check_labels(labels, num_classes)
    cfg_scale = check_cfg_scale(cfg_scale)
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
        if guidance_channels is not None:
            model_kwargs["guidance_channels"] = guidance_channels
        model_fn = model.forward_with_cfg
    else:
        model_kwargs = dict(y=y)
        model_fn = model.forward
    if sampler not in ("ddpm", "ddim"):
        raise ValueError(f"unknown sampler {sampler!r}: use 'ddpm' or 'ddim'")
    loop = diffusion.p_sample_loop if sampler == "ddpm" else diffusion.ddim_sample_loop

    def fp32_model(x, t, **kw):
        with autocast_context(device, precision):
            return model_fn(x, t, **kw).float()

    with step_noise_stream(generator, device):
        samples = loop(fp32_model, z.shape, z, clip_denoised=clip_denoised, model_kwargs=model_kwargs,
                       progress=progress, device=device)
    if using_cfg:
        samples, _ = samples.chunk(2, dim=0)  # drop the null-class half
    if vae is not None:
        samples = decode_in_chunks(vae, samples, device)
    return samples.float().clamp(-1, 1)


@contextlib.contextmanager
def step_noise_stream(generator: torch.Generator | None, device: torch.device):
    """The sampler's per-step noise on its own stream, seeded from ``generator`` (see ``generate``).

    The global RNG of the CPU and of ``device`` is saved and restored around the block. Without a
    generator nothing changes: the steps continue the global stream (the official behaviour).
    """
    if generator is None:
        yield
        return
    # a 63-bit seed for the step stream: the next number of the x_T stream, never x_T itself
    step_seed = int(torch.randint(0, 2**63 - 1, (), generator=generator))
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(step_seed)
        yield


def decode_in_chunks(vae, latents: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``x = D(z / s)`` a few images at a time, so memory stays bounded however many are decoded.

    A VAE decoder's activations dwarf its output: SD's decoder needs about 200 MB per 256x256
    image on a CPU, so a 64-image grid in one call took 14 GB. Each call decodes at most
    ``DECODE_CHUNK_PIXELS`` output pixels (at least one image).
    """
    side = latents.shape[-1] * vae.downsample_factor
    per_call = max(1, DECODE_CHUNK_PIXELS[device.type == "cuda"] // (side * side))
    # (N, c, h, w) -> chunks of per_call latents -> (N, C, H, W)
    return torch.cat([vae.decode(part) for part in torch.split(latents, per_call)])


def check_cfg_scale(cfg_scale) -> float:
    """The guidance scale as a float: NaN, inf or negative is an error; between 0 and 1 a warning."""
    try:
        scale = float(cfg_scale)
    except (TypeError, ValueError):
        raise ValueError(f"cfg scale {cfg_scale!r} is not a number; use e.g. 4.0 (grids) or 1.5 (FID)") from None
    if not math.isfinite(scale) or scale < 0:
        raise ValueError(f"cfg scale {cfg_scale}: must be a finite number >= 0 (1 or less: no guidance; "
                         f"4.0 for pictures, 1.5 for FID as in the paper)")
    if 0 < scale < 1:
        warnings.warn(f"cfg scale {scale} is between 0 and 1: guidance is used only above 1 (as in the official "
                      f"sample_ddp.py), so this samples without guidance, exactly as 1.0 would", stacklevel=3)
    return scale


def check_labels(labels, num_classes: int) -> torch.Tensor:
    """Class ids as an int64 ``(N,)`` tensor in ``[0, num_classes)``; floats are refused, not truncated."""
    t = torch.as_tensor(labels)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"labels must be integer class ids, got dtype {t.dtype} (a float label such as 3.7 "
                         f"would be silently truncated); pass e.g. torch.tensor([3, 7])")
    if t.ndim != 1:
        raise ValueError(f"labels must be a 1-d sequence of class ids, got shape {tuple(t.shape)}")
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes - 1}] (the model has {num_classes} classes), "
                         f"got values from {int(t.min())} to {int(t.max())}")
    return t.long()


# ------------------------------------------------------------------------------------ labels

def balanced_labels(num_samples: int, num_classes: int) -> torch.Tensor:
    """``num_samples`` labels spread evenly over the classes, sorted (class 0 first)."""
    return torch.arange(num_samples) % num_classes if num_samples < num_classes else \
        torch.sort(torch.arange(num_samples) % num_classes).values


def grid_classes(num_classes: int) -> list[int]:
    """The rows of a sample grid: all classes up to 16; the official example classes for ImageNet."""
    if num_classes <= 16:
        return list(range(num_classes))
    if num_classes == 1000:
        return list(OFFICIAL_SAMPLE_CLASSES)
    return list(range(8))


def grid_labels(num_classes: int, columns: int) -> torch.Tensor:
    """One row per class (see ``grid_classes``), ``columns`` samples each, class by class."""
    return torch.tensor(grid_classes(num_classes)).repeat_interleave(columns)


def grid_columns_for(columns: int, num_classes: int, device, vae=None, image_size: int | None = None) -> int:
    """How many samples per class a grid can afford here: ``columns``, except on a CPU through a VAE.

    There a grid holds at most ``CPU_GRID_PIXELS`` decoded pixels (and at least one image per
    class): at 256x256 with 8 ImageNet classes that is one column, 8 images -- the official
    sample.py's grid -- instead of 64 images whose decoding alone took 20 minutes on two cores.
    Pixel-space grids and the tiny autoencoder's 32x32 grids keep every column.
    """
    if vae is None or not image_size or torch.device(device).type == "cuda":
        return columns
    rows = len(grid_classes(num_classes))
    return max(1, min(columns, CPU_GRID_PIXELS // (rows * image_size * image_size)))


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


class VAEUnavailableError(ValueError):
    """The named VAE exists but cannot be fetched here (e.g. a hub id while offline)."""


def build_vae(name, device):
    """The VAE named in a run's args or a latents manifest (None or "none": pixel space).

    The name is the VAE's own (``vae.name``): ``"tiny:<cache key>"`` loads exactly the tiny
    autoencoder that encoded the data, never today's default one (see ``minidit.vae``).
    """
    if name in (None, "none", "None"):
        return None
    try:
        return load_vae(name, device=str(device))
    except RuntimeError as e:  # e.g. a hub id while offline: the message says how to fix it
        raise VAEUnavailableError(f"cannot load the VAE {name!r}: {e}") from e


def check_latents_vae(manifest: dict, vae, where="the latents") -> None:
    """Refuse to decode extracted latents with an autoencoder other than the one that made them."""
    if vae is None:
        return
    recorded = manifest.get("vae")
    scale = manifest.get("scale_factor")
    channels = (manifest.get("latent_shape") or [None])[0]
    if recorded is not None and split_scale(vae.name)[0] != split_scale(str(recorded))[0]:
        raise ValueError(f"{where} were encoded by the autoencoder {recorded!r}, not {vae.name!r}; decode them "
                         f"with that one (it is loaded by that name)")
    if scale is not None and not math.isclose(vae.scale_factor, float(scale), rel_tol=1e-6):
        raise ValueError(f"{where} were scaled by {scale} at extraction but the autoencoder {vae.name!r} divides "
                         f"by {vae.scale_factor}; the latents and the autoencoder do not belong together")
    if channels is not None and channels != vae.latent_channels:
        raise ValueError(f"{where} have {channels} channels but the autoencoder {vae.name!r} decodes "
                         f"{vae.latent_channels}-channel latents")


def is_minidit_checkpoint(ckpt: dict) -> bool:
    """A minidit training checkpoint carries its run's ``args`` (a dict with the derived sizes)."""
    args = ckpt.get("args")
    return isinstance(args, dict) and "in_channels" in args and ("model" in ckpt or "ema" in ckpt)


def same_vae(asked: str | None, recorded: str | None) -> bool:
    """Whether ``--vae asked`` names the VAE a run recorded (``"ema"`` is the hub's sd-vae-ft-ema,
    ``"tiny"`` any tiny autoencoder: the recorded key then decides which)."""
    def canonical(name):
        name = "none" if name in (None, "None") else str(name)
        base, scale = split_scale(name)
        return HUB_ALIASES.get(base, base), scale
    (a, a_scale), (r, r_scale) = canonical(asked), canonical(recorded)
    if a == "tiny" and a_scale is None:
        return r == "tiny" or r.startswith("tiny:")
    return a == r and a_scale == r_scale


def _minidit_weights(ckpt: dict, source: str, use_ema: bool, asked: dict) -> tuple[dict, dict]:
    """``(args, state dict)`` of a minidit checkpoint; a flag that contradicts it is an error."""
    args = dict(ckpt["args"])
    for key, val in asked.items():
        if val is None:
            continue
        held = args.get(key)
        if not (same_vae(val, held) if key == "vae" else val == held):
            flag = "--" + key.replace("_", "-")
            raise ValueError(f"{source} holds a {args.get('model')} model trained with {key} {held!r}, but {flag} "
                             f"{val} was asked for; drop {flag} (a minidit checkpoint says its own) or pass the "
                             f"checkpoint of the model you meant")
    key = "ema" if use_ema else "model"
    if key not in ckpt:
        raise ValueError(f"{source} has no {key!r} weights; try {'--no-ema' if use_ema else 'without --no-ema'}")
    return args, ckpt[key]


def _official_weights(ckpt: dict, source: str, use_ema: bool, model_name, image_size, vae_name, vae,
                      num_classes) -> tuple[dict, dict]:
    """``(args, state dict)`` of an official checkpoint: the flags name the model, the weights say the rest."""
    state = extract_state_dict(ckpt, prefer="ema" if use_ema else "model")
    found = infer_config(state)
    held = config_name(found["depth"], found["hidden_size"], found["patch_size"])
    if held is not None and held != model_name:
        raise ValueError(f"{source} holds {held} weights, but --model {model_name} was asked for; "
                         f"pass --model {held}")
    factor = vae.downsample_factor if vae is not None else 1
    if found["input_size"] != image_size // factor:
        raise ValueError(f"{source} holds a model for {found['input_size']}x{found['input_size']} inputs, but "
                         f"--image-size {image_size} gives {image_size // factor}x{image_size // factor} "
                         f"(VAE factor {factor}); pass --image-size {found['input_size'] * factor}")
    if vae is not None and vae.latent_channels != found["in_channels"]:
        raise ValueError(f"{source} holds a model of {found['in_channels']}-channel inputs, but the VAE "
                         f"{vae.name!r} makes {vae.latent_channels}-channel latents; pass the VAE it was "
                         f"trained with (--vae)")
    if num_classes is not None and num_classes != found["num_classes"]:
        raise ValueError(f"{source} holds a model of {found['num_classes']} classes, but --num-classes "
                         f"{num_classes} was asked for; pass --num-classes {found['num_classes']} or leave it out")
    args = dict(model=model_name, image_size=image_size, vae=vae_name, num_classes=found["num_classes"],
                in_channels=found["in_channels"], input_size=found["input_size"], learn_sigma=found["learn_sigma"],
                dataset="imagenet", class_dropout_prob=0.1)
    return args, state


def model_from_checkpoint(ckpt: dict, source: str = "checkpoint", use_ema: bool = True, device="cpu",
                          model_name: str | None = None, image_size: int | None = None,
                          vae_name: str | None = None, num_classes: int | None = None,
                          default_vae: str = "ema") -> tuple[nn.Module, dict, object]:
    """The model to sample from, its run's ``args`` and its VAE (or None), from a loaded checkpoint.

    A minidit checkpoint carries ``args`` (with the derived ``in_channels``/``input_size`` and the
    exact name of its VAE), and a flag that contradicts them is an error. An official one does
    not, so ``model_name`` and ``image_size`` say what it is (its models are SD-VAE latent models:
    ``vae_name`` defaults to ``default_vae``; channels, classes and learned sigma are read off the
    weights). ``source`` names the checkpoint in error messages.
    """
    if is_minidit_checkpoint(ckpt):
        asked = dict(model=model_name, image_size=image_size, num_classes=num_classes, vae=vae_name)
        args, state = _minidit_weights(ckpt, source, use_ema, asked)
        vae = build_vae(args.get("vae"), device)
    else:
        if model_name is None or image_size is None:
            raise ValueError(f"{source} is not a minidit training checkpoint (no args inside); "
                             f"say what it is with --model (e.g. DiT-XL/2) and --image-size (256 or 512)")
        vae_name = vae_name or default_vae
        vae = build_vae(vae_name, device)
        args, state = _official_weights(ckpt, source, use_ema, model_name, image_size, vae_name, vae, num_classes)
    model = get_model(args["model"], input_size=args["input_size"], in_channels=args["in_channels"],
                      num_classes=args["num_classes"], learn_sigma=args.get("learn_sigma", True),
                      class_dropout_prob=args.get("class_dropout_prob", 0.1))
    check_state_dict(model, state, source=source)
    model.load_state_dict(state, strict=True)
    if vae is not None and vae.latent_channels != args["in_channels"]:
        raise ValueError(f"{source}: the model takes {args['in_channels']}-channel inputs but its VAE {vae.name!r} "
                         f"makes {vae.latent_channels}-channel latents")
    return model.to(device).eval(), args, vae
