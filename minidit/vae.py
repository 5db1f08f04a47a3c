"""One VAE interface for latent diffusion, over the tiny autoencoder (autoencoder.py) or Stable Diffusion's.

DiT trains on ``z = scale_factor * E(x)`` and samples images as ``D(z / scale_factor)``. Whatever
the autoencoder behind it, a :class:`VAE` here offers:

* ``encode(images, sample=True)`` -- a posterior sample ``mean + std * eps`` (``sample=False``:
  the mean), already multiplied by ``scale_factor``. The official DiT training code uses a sample:
  ``vae.encode(x).latent_dist.sample().mul_(0.18215)``.
* ``encode_moments(images) -> (mean, std)`` -- both scaled; what pre-extraction stores so that
  training can still draw a fresh sample every step (:mod:`minidit.extract`).
* ``decode(latents)`` -- images in [-1, 1] (clamped), after dividing by ``scale_factor``.
* ``scale_factor``, ``latent_channels``, ``downsample_factor`` and ``name``.

``load_vae(spec)`` picks the backend: ``"tiny"`` (the cached from-scratch autoencoder of
:mod:`minidit.autoencoder`), a local folder with a diffusers ``AutoencoderKL``, or a Hugging Face
hub id (``"stabilityai/sd-vae-ft-ema"`` / ``"-mse"``, or the official code's shorthands ``"ema"``
and ``"mse"``). A hub id is looked up in the local Hugging Face cache first; offline it fails
fast with instructions instead of hanging on the network.

Latents must be decoded by the autoencoder that made them, so a VAE's ``name`` says exactly which
one it is and ``load_vae(vae.name)`` loads that one again: ``"tiny:<cache key>"`` for the tiny
autoencoder (the key spells out its whole recipe, so a smoke-mode copy and a full one never mix;
``load_vae("tiny")`` is the current default recipe's), and a ``"@<scale>"`` suffix when the scale
factor was overridden (``"tiny:<key>@0.5"``). Extraction manifests and training checkpoints store
this name.
"""
from __future__ import annotations

import math
import os
import re
import socket
import warnings
from pathlib import Path

import torch

from minidit.autoencoder import TinyAutoencoder, TrainSettings, load_tiny_autoencoder
from minidit.data import DATASETS
from minidit.env import cache_dir

# Stable Diffusion's latent scale: 1 / std of its VAE's latents on training images (see
# minidit.autoencoder.estimate_scale_factor). DiT uses the same constant.
SD_SCALE_FACTOR = 0.18215
HUB_ALIASES = {"ema": "stabilityai/sd-vae-ft-ema", "mse": "stabilityai/sd-vae-ft-mse"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class VAE:
    """Backend-independent wrapper; subclasses supply ``_moments`` (unscaled) and ``_decode``."""

    def __init__(self, name: str, scale_factor: float, latent_channels: int, downsample_factor: int,
                 device="cpu", in_channels: int = 3):
        self.name, self.scale_factor = name, float(scale_factor)
        self.latent_channels, self.downsample_factor = latent_channels, downsample_factor
        self.in_channels = in_channels  # image channels the encoder takes (3: RGB)
        self.device = torch.device(device)

    def _moments(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def _decode(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def _check(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4:
            raise ValueError(f"{self.name}: expected images of shape (N, C, H, W), got {tuple(images.shape)}")
        if images.shape[1] != self.in_channels:
            raise ValueError(f"{self.name}: the images have {images.shape[1]} channel(s) but this autoencoder "
                             f"takes {self.in_channels}; use data with {self.in_channels}-channel images (digits and "
                             f"mnist are grey: train them in pixel space with --vae none)")
        h, w = images.shape[-2:]
        if h % self.downsample_factor or w % self.downsample_factor:
            raise ValueError(f"{self.name}: image size {h}x{w} is not divisible by the VAE's downsampling "
                             f"factor {self.downsample_factor}; resize or crop the images first")
        return images.to(self.device, torch.float32)

    @torch.no_grad()
    def encode_moments(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (N, C, H, W) in [-1, 1] -> scaled posterior (mean, std), each (N, c, H / f, W / f)."""
        mean, std = self._moments(self._check(images))
        # z = s * E(x): scaling a Gaussian scales its mean and its std alike
        return mean * self.scale_factor, std * self.scale_factor

    @torch.no_grad()
    def encode(self, images: torch.Tensor, sample: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
        """images (N, C, H, W) in [-1, 1] -> scaled latents (N, c, H / f, W / f)."""
        mean, std = self.encode_moments(images)
        if not sample:
            return mean
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        # z = mean + std * eps  (the reparameterisation of minidit.autoencoder.reparameterize)
        return mean + std * eps

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """scaled latents (N, c, h, w) -> images (N, C, h * f, w * f) in [-1, 1]."""
        # x = D(z / s)
        x = self._decode(latents.to(self.device, torch.float32) / self.scale_factor)
        return x.clamp(-1, 1) if clamp else x

    def to(self, device) -> "VAE":
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, scale_factor={self.scale_factor:.5g}, "
                f"latent_channels={self.latent_channels}, downsample_factor={self.downsample_factor})")


class TinyVAE(VAE):
    """minidit's from-scratch :class:`~minidit.autoencoder.TinyAutoencoder` behind the interface."""

    def __init__(self, model, scale_factor: float, name: str = "tiny", device="cpu"):
        super().__init__(name, scale_factor, model.cfg.latent_channels, model.cfg.downsample_factor, device,
                         in_channels=model.cfg.in_channels)
        self.model = model.to(self.device).eval().requires_grad_(False)

    def _moments(self, images):
        mean, logvar = self.model.encode(images)
        # std = exp(logvar / 2)
        return mean, torch.exp(0.5 * logvar)

    def _decode(self, z):
        return self.model.decode(z)


class DiffusersVAE(VAE):
    """A diffusers ``AutoencoderKL`` (Stable Diffusion's VAE, as in the paper) behind the interface."""

    def __init__(self, model, name: str, scale_factor: float | None = None, device="cpu"):
        cfg = model.config
        if scale_factor is None:
            # diffusers stores SD's constant in the config; older configs lack it -> SD's value
            scale_factor = getattr(cfg, "scaling_factor", None) or SD_SCALE_FACTOR
        super().__init__(name, scale_factor, cfg.latent_channels, 2 ** (len(cfg.block_out_channels) - 1), device,
                         in_channels=cfg.in_channels)
        self.model = model.to(self.device).eval().requires_grad_(False)

    def _moments(self, images):
        dist = self.model.encode(images).latent_dist
        return dist.mean, dist.std

    def _decode(self, z):
        return self.model.decode(z).sample


def _offline() -> bool:
    return any(os.environ.get(k, "0").lower() in ("1", "true", "yes") for k in ("HF_HUB_OFFLINE", "MINIDIT_OFFLINE"))


def _can_reach(host: str = "huggingface.co", port: int = 443, timeout: float = 3.0) -> bool:
    """A quick TCP probe, so an unreachable hub fails in seconds instead of after long retries."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _offline_help(repo: str) -> str:
    local = repo.split("/")[-1]
    return (f"load_vae({repo!r}): the VAE is not in the local Hugging Face cache and the hub cannot be "
            f"reached ({'HF_HUB_OFFLINE is set' if _offline() else 'no network'}). To use it offline, on a "
            f"machine with internet run\n    hf download {repo} --local-dir {local}\n"
            f"(or: python -c \"from diffusers import AutoencoderKL; AutoencoderKL.from_pretrained('{repo}')"
            f".save_pretrained('{local}')\"), copy the folder here and call load_vae('path/to/{local}') "
            f"(or --vae path/to/{local}); or pre-fill the Hugging Face cache (HF_HOME). "
            f"For a fully offline run use load_vae('tiny').")


def _load_diffusers(spec: str, device, scale_factor):
    try:
        from diffusers import AutoencoderKL
    except ImportError as e:  # pragma: no cover - diffusers is in requirements.txt
        raise ImportError("loading a diffusers VAE needs diffusers: pip install diffusers") from e
    path = Path(spec).expanduser()
    if path.exists():
        if (path / "config.json").exists():
            model = AutoencoderKL.from_pretrained(str(path))
        elif (path / "vae" / "config.json").exists():        # a whole Stable Diffusion pipeline folder
            model = AutoencoderKL.from_pretrained(str(path), subfolder="vae")
        else:
            raise FileNotFoundError(f"load_vae({spec!r}): {path} has no config.json (nor vae/config.json); "
                                    "expected a diffusers AutoencoderKL folder written by save_pretrained "
                                    "(config.json + diffusion_pytorch_model.safetensors)")
        return DiffusersVAE(model, name=str(path), scale_factor=scale_factor, device=device)
    repo = HUB_ALIASES.get(spec, spec)
    if not _HUB_ID.match(repo):
        raise FileNotFoundError(f"load_vae({spec!r}): no such folder, and not a hub id (owner/name). Use 'tiny', "
                                "a folder holding a diffusers AutoencoderKL, or e.g. 'stabilityai/sd-vae-ft-ema'")
    try:   # 1) the local Hugging Face cache: never touches the network
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = AutoencoderKL.from_pretrained(repo, local_files_only=True)
    except Exception:
        if _offline() or not _can_reach():
            raise RuntimeError(_offline_help(repo)) from None
        try:   # 2) online: download into the cache
            model = AutoencoderKL.from_pretrained(repo)
        except Exception as err:
            raise RuntimeError(f"load_vae({repo!r}) failed to download: {err}\n{_offline_help(repo)}") from err
    return DiffusersVAE(model, name=repo, scale_factor=scale_factor, device=device)


def load_vae(spec="tiny", device="cpu", scale_factor: float | None = None) -> VAE:
    """Load a VAE by ``spec`` (see the module docstring); ``scale_factor`` overrides the default.

    Defaults: 0.18215 for diffusers/SD VAEs (or the config's ``scaling_factor``); for ``"tiny"``
    the factor estimated from its training latents. ``spec`` may also be a
    :class:`~minidit.autoencoder.TinyAutoencoder` instance (then ``scale_factor`` is required), or
    the ``name`` of a loaded VAE (``"tiny:<key>"``, ``"...@<scale>"``), which loads that very one.
    """
    if isinstance(spec, TinyAutoencoder):
        if scale_factor is None:
            raise ValueError("load_vae(<TinyAutoencoder>): pass scale_factor= (e.g. from estimate_scale_factor)")
        return TinyVAE(spec, scale_factor, name="tiny(custom)", device=device)
    spec, named_scale = split_scale(str(spec))
    if named_scale is not None and scale_factor is not None and not math.isclose(named_scale, scale_factor):
        raise ValueError(f"load_vae({spec}@{named_scale}): the name says scale factor {named_scale}, "
                         f"scale_factor={scale_factor} says otherwise")
    scale_factor = named_scale if scale_factor is None else scale_factor
    if spec == "tiny(custom)":
        raise ValueError("'tiny(custom)' is a TinyAutoencoder that was passed to load_vae as an object: it has no "
                         "name to be loaded by, so what it encoded cannot be decoded here. Encode with "
                         "--vae tiny (the cached autoencoder), or decode with load_vae(<that autoencoder>, "
                         "scale_factor=...)")
    if spec == "tiny":
        model, info = load_tiny_autoencoder(device=device)
        vae = TinyVAE(model, scale_factor or info["scale_factor"], name=f"tiny:{info['key']}", device=device)
    elif spec.startswith("tiny:"):
        vae = _tiny_by_key(spec[len("tiny:"):], device, scale_factor)
    else:
        vae = _load_diffusers(spec, device, scale_factor)
    if named_scale is not None or scale_factor is not None:
        vae.name = f"{vae.name}@{vae.scale_factor:.9g}"  # a factor chosen by hand: the name keeps it
    return vae


def split_scale(spec: str) -> tuple[str, float | None]:
    """``"tiny:<key>@0.5"`` -> ``("tiny:<key>", 0.5)``; a spec without a numeric suffix -> ``(spec, None)``."""
    base, sep, tail = spec.rpartition("@")
    if sep and base:
        try:
            return base, float(tail)
        except ValueError:
            pass
    return spec, None


def tiny_settings_from_key(key: str) -> TrainSettings | None:
    """The recipe a tiny-autoencoder cache key spells out (see ``load_tiny_autoencoder``), or None.

    ``tiny_ae_v3_shapes32_f8_z4_steps1500_bs32_lr0.001_kl1e-06_pool8192_test1000_seed0``: the
    data set name and the image size are written together, so a split is accepted only where the
    name is one of minidit's data sets.
    """
    m = re.fullmatch(r"tiny_ae_v(\d+)_(\w+?)_f\d+_z\d+_steps(\d+)_bs(\d+)_lr([^_]+)_kl([^_]+)"
                     r"_pool(\d+)_test(\d+)_seed(\d+)", key)
    if not m:
        return None
    version, data_size, steps, bs, lr, kl, pool, test, seed = m.groups()
    splits = [(data_size[:i], data_size[i:]) for i in range(1, len(data_size))
              if data_size[:i] in DATASETS and data_size[i:].isdigit()]
    if len(splits) != 1:
        return None
    try:
        return TrainSettings(dataset=splits[0][0], image_size=int(splits[0][1]), steps=int(steps), batch_size=int(bs),
                             lr=float(lr), kl_weight=float(kl), pool=int(pool), test_samples=int(test), seed=int(seed),
                             version=int(version))
    except ValueError:
        return None


def _tiny_by_key(key: str, device, scale_factor: float | None) -> TinyVAE:
    """The tiny autoencoder with this cache key: from the cache, or retrained (seeded) from the recipe the
    key spells out -- never another one."""
    settings = tiny_settings_from_key(key)
    cached = (cache_dir("autoencoder") / f"{key}.safetensors").is_file()
    how = ("re-extract the latents with this minidit (python -m minidit.extract --vae tiny ...) or copy that "
           "autoencoder's files into the cache")
    if settings is None:
        raise ValueError(f"'tiny:{key}' is not a tiny-autoencoder key this minidit can read, so the autoencoder "
                         f"that made these latents cannot be rebuilt; {how}")
    if not cached and settings.version != TrainSettings().version:
        raise ValueError(f"'tiny:{key}' was made by version {settings.version} of the tiny-autoencoder recipe "
                         f"(this minidit trains version {TrainSettings().version}) and is not in the cache "
                         f"{cache_dir('autoencoder')}; {how}")
    model, info = load_tiny_autoencoder(settings, device=device)
    if info["key"] != key:
        raise ValueError(f"'tiny:{key}': this minidit builds that recipe as '{info['key']}', another "
                         f"autoencoder; {how}")
    return TinyVAE(model, scale_factor or info["scale_factor"], name=f"tiny:{key}", device=device)
