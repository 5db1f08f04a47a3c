"""The tiny KL autoencoder itself, trained from scratch so latent diffusion runs offline (vae.py wraps it).

DiT never sees pixels: a frozen VAE encoder maps an image ``x`` (3, 256, 256) to a latent ``z``
(4, 32, 32) -- downsampling factor f = 8 -- the transformer learns to denoise ``z``, and the VAE
decoder maps the generated latent back to pixels. The paper uses Stable Diffusion's VAE
(``stabilityai/sd-vae-ft-ema``/``-mse``), a download of ~330 MB. This module is the same idea
at toy scale, small enough to train on a laptop CPU in a few minutes on the ``shapes`` data:

* a convolutional encoder (ResNet blocks + stride-2 convolutions, GroupNorm + SiLU, like SD's)
  that outputs the *moments* of a diagonal Gaussian posterior ``q(z | x) = N(mean, exp(logvar))``;
* a mirrored decoder (nearest-neighbour upsampling + convolutions);
* the loss of a KL-regularised autoencoder: reconstruction error plus a *small* weight times
  ``KL(q(z | x) || N(0, I))``. SD weights the KL by 1e-6: just enough to keep the latent space
  smooth and bounded, not enough to make it a good generative model by itself -- that is the
  diffusion model's job.

Defaults: f = 8 and 4 channels, as SD's VAE, so a 32x32 ``shapes`` image becomes a (4, 4, 4)
latent: 48x fewer numbers than the image, SD's ratio exactly (256x256x3 -> 32x32x4), and a 4x4
grid that a DiT with patch size 1 turns into 16 tokens. Why f = 8 rather than the gentler f = 4
(an 8x8x4 latent, 12x fewer numbers): measured on ``shapes``, the same small DiT trained for the
same 7,500 steps drew the requested class 97% of the time on the f = 8 latents against 74% on
the f = 4 ones, whose reconstructions were sharper (the classifier recognised 99.9% of them, 97.6%
at f = 8). The more the autoencoder compresses, the less the diffusion model has to learn -- the
trade-off the latent-diffusion paper measured, where f = 1 and 2 trained slowest.
(SD also wraps the moments in 1x1 "quant_conv"s; they add nothing here, so we leave them out.)

``python -m minidit.autoencoder --steps N`` trains one and reports the reconstruction error.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from minidit.data import get_dataset
from minidit.env import cache_dir, smoke


# ----------------------------------------------------------------------------- graded (ch09)

def reparameterize(mean: torch.Tensor, logvar: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Draw a posterior sample ``z ~ N(mean, exp(logvar))`` with the reparameterisation trick.

    ``z = mean + std * noise`` with ``std = exp(0.5 * logvar)`` and ``noise ~ N(0, I)`` given by
    the caller (so the result is a pure function of its inputs, and gradients flow to ``mean`` and
    ``logvar``). All three tensors have the same shape, e.g. ``(N, 4, 4, 4)``; returns that shape.
    """
    # BEGIN SOLUTION ch09 difficulty=1 minutes=10
    # std = exp(logvar / 2)
    std = torch.exp(0.5 * logvar)
    # z = mean + std * eps
    return mean + std * noise
    # END SOLUTION


def kl_to_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mean, exp(logvar)) || N(0, I))`` per example, summed over all latent dimensions.

    For one dimension the closed form is ``0.5 * (mean^2 + exp(logvar) - 1 - logvar)``; sum it
    over every dimension except the first (the batch). Input shapes ``(N, ...)``; returns ``(N,)``.
    """
    # BEGIN SOLUTION ch09 difficulty=1 minutes=15
    # KL = 1/2 * sum(mean^2 + sigma^2 - 1 - log sigma^2)
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar)
    return kl.flatten(1).sum(dim=1)
    # END SOLUTION


def estimate_scale_factor(latents: torch.Tensor) -> torch.Tensor:
    """The latent scale factor ``1 / std(latents)`` over all elements of a batch of latents.

    Why: the diffusion forward process ``x_t = sqrt(alpha_bar_t) * x_0 + sqrt(1 - alpha_bar_t) * eps``
    assumes ``x_0`` has roughly unit variance, like the noise ``eps``. A VAE trained with a tiny
    KL weight is free to put its latents at any scale (SD's have a std of about 5.5), which would
    make the noise schedule far too gentle: at a given t the signal would still dominate. So latent
    diffusion multiplies the latents by ``1 / std`` before diffusion and divides by it before
    decoding. Stable Diffusion's ``0.18215`` is exactly this: one over the std of the latents of a
    batch of training images, computed once and then frozen; DiT reuses it unchanged.

    ``latents``: any shape, e.g. ``(N, 4, 4, 4)``. Returns a 0-dim tensor.
    """
    # BEGIN SOLUTION ch09 difficulty=1 minutes=10
    # s = 1 / std(z) over every element
    return 1.0 / latents.flatten().std()
    # END SOLUTION


# ----------------------------------------------------------------------------- the network

@dataclass
class AutoencoderConfig:
    in_channels: int = 3
    latent_channels: int = 4          # as in SD's VAE
    channels: tuple = (32, 64, 64)    # width per resolution; len(channels) downsamples -> f = 2**len (8, as SD)
    norm_groups: int = 8

    @property
    def downsample_factor(self) -> int:
        return 2 ** len(self.channels)


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv3x3, twice, plus a (1x1-projected) skip: SD's VAE block."""

    def __init__(self, c_in: int, c_out: int, groups: int):
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, c_in), nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(groups, c_out), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Encoder(nn.Module):
    """x (N, 3, H, W) -> moments (N, 2 * latent_channels, H / f, W / f): mean and logvar.

    Per level: halve H and W with a stride-2 convolution, then one ResNet block. (SD's encoder
    also puts ResNet blocks at full resolution; on a CPU those dominate the cost, so the tiny one
    does its work at the lower resolutions.)
    """

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        c = cfg.channels
        self.conv_in = nn.Conv2d(cfg.in_channels, c[0], 3, padding=1)
        blocks, c_prev = [], c[0]
        for width in c:
            # (N, c_prev, H, W) -> (N, c_prev, H / 2, W / 2) -> (N, width, H / 2, W / 2)
            blocks += [nn.Conv2d(c_prev, c_prev, 3, stride=2, padding=1), ResBlock(c_prev, width, cfg.norm_groups)]
            c_prev = width
        self.blocks = nn.Sequential(*blocks)
        self.norm_out = nn.GroupNorm(cfg.norm_groups, c_prev)
        self.conv_out = nn.Conv2d(c_prev, 2 * cfg.latent_channels, 3, padding=1)

    def forward(self, x):
        h = self.blocks(self.conv_in(x))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """z (N, latent_channels, h, w) -> x (N, 3, h * f, w * f); the mirror image of the encoder."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        c = list(reversed(cfg.channels))
        self.conv_in = nn.Conv2d(cfg.latent_channels, c[0], 3, padding=1)
        blocks, c_prev = [], c[0]
        for width in c:
            # ResNet block, then double H and W (nearest neighbour + conv, as in SD's decoder)
            blocks += [ResBlock(c_prev, width, cfg.norm_groups), nn.Upsample(scale_factor=2, mode="nearest"),
                       nn.Conv2d(width, width, 3, padding=1)]
            c_prev = width
        self.blocks = nn.Sequential(*blocks)
        self.norm_out = nn.GroupNorm(cfg.norm_groups, c_prev)
        self.conv_out = nn.Conv2d(c_prev, cfg.in_channels, 3, padding=1)

    def forward(self, z):
        h = self.blocks(self.conv_in(z))
        return self.conv_out(F.silu(self.norm_out(h)))


class TinyAutoencoder(nn.Module):
    """The KL autoencoder: ``encode`` gives the posterior moments, ``decode`` gives pixels."""

    def __init__(self, cfg: AutoencoderConfig | None = None):
        super().__init__()
        self.cfg = cfg or AutoencoderConfig()
        self.encoder, self.decoder = Encoder(self.cfg), Decoder(self.cfg)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (N, 3, H, W) in [-1, 1] -> (mean, logvar), each (N, latent_channels, H / f, W / f)."""
        moments = self.encoder(x)
        # (N, 2C, h, w) -> two (N, C, h, w)
        mean, logvar = moments.chunk(2, dim=1)
        # clamp as SD does, so exp(logvar) can neither overflow nor vanish
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z (N, latent_channels, h, w) -> reconstruction (N, 3, h * f, w * f), roughly in [-1, 1]."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None):
        mean, logvar = self.encode(x)
        z = reparameterize(mean, logvar, torch.randn_like(mean) if noise is None else noise)
        return self.decode(z), mean, logvar


def autoencoder_loss(model: TinyAutoencoder, x: torch.Tensor, kl_weight: float):
    """loss = mean_i [ sum_pixels (x - x_hat)^2 + kl_weight * KL_i ] / pixels_per_image.

    Summing both terms per image (as SD does) makes ``kl_weight`` mean the same thing at any
    resolution; dividing by the pixel count afterwards only rescales the learning rate, and keeps
    the reported number readable as a per-pixel MSE. Returns (loss, mse, kl per image).
    """
    x_hat, mean, logvar = model(x)
    rec = (x_hat - x).pow(2).flatten(1).sum(1)                  # (N,)
    kl = kl_to_standard_normal(mean, logvar)                    # (N,)
    pixels = x[0].numel()
    loss = (rec + kl_weight * kl).mean() / pixels
    return loss, rec.mean() / pixels, kl.mean()


# ----------------------------------------------------------------------------- training

@dataclass
class TrainSettings:
    dataset: str = "shapes"
    image_size: int = 32
    steps: int = 1500
    batch_size: int = 32
    lr: float = 1e-3
    kl_weight: float = 1e-6           # as in Stable Diffusion's VAE (there with LPIPS + GAN terms too)
    pool: int = 8192                  # training images rendered once and reused (shapes is procedural)
    test_samples: int = 1000          # held-out images for the reported reconstruction error
    seed: int = 0
    version: int = 3                  # bump when the architecture, the recipe or the data change (invalidates
                                      # caches); 2: the second version of the shapes data set; 3: f = 8


def psnr(mse: float, peak_to_peak: float = 2.0) -> float:
    """Peak signal-to-noise ratio in dB for images in [-1, 1]: 10 log10(range^2 / MSE)."""
    return 10.0 * math.log10(peak_to_peak ** 2 / max(mse, 1e-12))


@torch.no_grad()
def reconstruction_error(model: TinyAutoencoder, images: torch.Tensor, batch_size: int = 256) -> dict:
    """Held-out MSE and PSNR of ``decode(mean)`` (the deterministic reconstruction), in [-1, 1] units."""
    model.eval()
    se, n = 0.0, 0
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size]
        x_hat = model.decode(model.encode(x)[0]).clamp(-1, 1)
        se += (x_hat - x).pow(2).sum().item()
        n += x.numel()
    mse = se / n
    return {"mse": mse, "psnr": psnr(mse)}


def train_autoencoder(dataset: str = "shapes", steps: int = 1500, image_size: int = 32, batch_size: int = 32,
                      lr: float = 1e-3, kl_weight: float = 1e-6, pool: int = 8192, test_samples: int = 1000,
                      seed: int = 0, cfg: AutoencoderConfig | None = None, device: str = "cpu", log_every: int = 0,
                      progress: bool = False) -> tuple[TinyAutoencoder, dict]:
    """Train a :class:`TinyAutoencoder` from a fixed seed; returns (model, report).

    ``report`` holds the loss curve (``losses``: mean loss every 50 steps), the held-out
    reconstruction error on ``test_samples`` held-out images of the data set, the estimated latent
    ``scale_factor`` and the wall time. Deterministic for a given seed on one machine.
    """
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    train = get_dataset(dataset, train=True, image_size=image_size, num_samples=pool, seed=seed)
    test = get_dataset(dataset, train=False, image_size=image_size, num_samples=test_samples, seed=seed)

    def all_images(ds):
        if hasattr(ds, "batch"):
            return ds.batch(range(len(ds)))[0]
        return torch.stack([ds[i][0] for i in range(len(ds))])

    t0 = time.time()
    x_train, x_test = all_images(train).to(device), all_images(test).to(device)
    cfg = cfg or AutoencoderConfig(in_channels=x_train.shape[1])
    model = TinyAutoencoder(cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    # cosine decay to 10 % of lr: a short run still ends with small steps
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / max(steps, 1))))
    g = torch.Generator().manual_seed(seed)
    losses, running = [], []
    model.train()
    for step in tqdm(range(steps), disable=not progress, desc="autoencoder"):
        idx = torch.randint(len(x_train), (batch_size,), generator=g)
        x = x_train[idx]
        # random horizontal flips: free data augmentation, and the latents of flipped images are
        # what pre-extraction stores for DiT's flip augmentation
        flip = torch.rand(batch_size, generator=g) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        loss, mse, kl = autoencoder_loss(model, x, kl_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running.append(loss.item())
        if len(running) == 50 or step == steps - 1:
            losses.append(sum(running) / len(running))
            running = []
        if log_every and (step + 1) % log_every == 0:
            print(f"step {step + 1}/{steps}  loss {loss.item():.5f}  mse {mse.item():.5f}  kl {kl.item():.1f}")
    model.eval()
    with torch.no_grad():
        means = model.encode(x_train[:1024])[0]
    report = dict(reconstruction_error(model, x_test), scale_factor=float(estimate_scale_factor(means)),
                  losses=losses, seconds=time.time() - t0, steps=steps)
    return model, report


# ----------------------------------------------------------------------------- the cached copy

def default_settings() -> TrainSettings:
    """The recipe of the cached autoencoder; smoke mode (MINIDIT_SMOKE=1) trains far fewer steps."""
    return TrainSettings(steps=200, pool=1024, test_samples=256) if smoke() else TrainSettings()


def cache_key(settings: TrainSettings | None = None) -> str:
    """The name of the cached autoencoder that ``settings`` (default: ``default_settings()``) train:
    every setting and the architecture's f and channels, so two recipes never share a cache entry
    (``load_vae("tiny").name`` is ``"tiny:" + cache_key()``)."""
    s, cfg = settings or default_settings(), AutoencoderConfig()
    return (f"tiny_ae_v{s.version}_{s.dataset}{s.image_size}_f{cfg.downsample_factor}_z{cfg.latent_channels}"
            f"_steps{s.steps}_bs{s.batch_size}_lr{s.lr:g}_kl{s.kl_weight:g}_pool{s.pool}_test{s.test_samples}_seed{s.seed}")


def load_tiny_autoencoder(settings: TrainSettings | None = None, device: str = "cpu",
                          verbose: bool = True) -> tuple[TinyAutoencoder, dict]:
    """The pretrained tiny autoencoder: trained once (seeded) on first use, then read from cache.

    The cache lives in ``minidit.env.cache_dir("autoencoder")`` as ``<key>.safetensors`` plus
    ``<key>.json`` (scale factor, held-out error, settings); the key encodes every setting, so
    smoke-mode and full-size copies never mix. Returns (model in eval mode, info dict).
    """
    from safetensors.torch import load_file, save_file

    s = settings or default_settings()
    cfg = AutoencoderConfig()
    key = cache_key(s)
    folder = cache_dir("autoencoder")
    weights, meta = folder / f"{key}.safetensors", folder / f"{key}.json"
    if weights.exists() and meta.exists():
        model = TinyAutoencoder(cfg)
        model.load_state_dict(load_file(str(weights)))
        info = json.loads(meta.read_text())
    else:
        if verbose:
            print(f"minidit: training the tiny autoencoder ({s.steps} steps on {s.dataset}); cached in {folder}")
        model, report = train_autoencoder(s.dataset, steps=s.steps, image_size=s.image_size,
                                          batch_size=s.batch_size, lr=s.lr, kl_weight=s.kl_weight,
                                          pool=s.pool, test_samples=s.test_samples, seed=s.seed, cfg=cfg,
                                          progress=verbose)
        info = dict(key=key, settings=asdict(s), config=asdict(cfg), **{k: v for k, v in report.items() if k != "losses"})
        info = json.loads(json.dumps(info))   # the same plain types whether trained now or read from cache
        # write to temporary names, then rename: a crash never leaves a half-written cache entry
        tmp = weights.with_suffix(f".tmp{os.getpid()}")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
        os.replace(tmp, weights)
        tmp_meta = meta.with_suffix(f".tmp{os.getpid()}")
        tmp_meta.write_text(json.dumps(info, indent=2))
        os.replace(tmp_meta, meta)
    return model.to(device).eval().requires_grad_(False), info


def main(argv=None):
    ap = argparse.ArgumentParser(description="Train the tiny KL autoencoder and report its reconstruction error.")
    ap.add_argument("--steps", type=int, default=TrainSettings.steps)
    ap.add_argument("--dataset", default="shapes")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=TrainSettings.batch_size)
    ap.add_argument("--lr", type=float, default=TrainSettings.lr)
    ap.add_argument("--kl-weight", type=float, default=TrainSettings.kl_weight)
    ap.add_argument("--pool", type=int, default=TrainSettings.pool, help="training images rendered once")
    ap.add_argument("--test-samples", type=int, default=TrainSettings.test_samples)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", action="store_true", help="train (or load) the cached copy used by load_vae('tiny')")
    args = ap.parse_args(argv)
    if args.cache:
        s = TrainSettings(dataset=args.dataset, image_size=args.image_size, steps=args.steps,
                          batch_size=args.batch_size, lr=args.lr, kl_weight=args.kl_weight, pool=args.pool,
                          test_samples=args.test_samples, seed=args.seed)
        _, info = load_tiny_autoencoder(s)
        report = info
    else:
        _, report = train_autoencoder(args.dataset, steps=args.steps, image_size=args.image_size,
                                      batch_size=args.batch_size, lr=args.lr, kl_weight=args.kl_weight,
                                      pool=args.pool, test_samples=args.test_samples, seed=args.seed,
                                      log_every=max(args.steps // 10, 1), progress=False)
    _print_report(report)
    return report


def _print_report(report):
    print(f"held-out reconstruction: MSE {report['mse']:.5f}  PSNR {report['psnr']:.2f} dB  "
          f"(images in [-1, 1]); scale factor {report['scale_factor']:.4f}; {report['seconds']:.0f} s")


if __name__ == "__main__":
    main()
