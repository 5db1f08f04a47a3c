"""Sample images from a trained DiT: ``python -m minidit.sample --ckpt PATH``.

Reads a minidit training checkpoint (its ``args`` say which model, image size, data set and VAE
it was trained with) or an official DiT checkpoint (then ``--model``, ``--image-size`` and
``--vae`` say it, as in the official ``sample.py``), and writes either

* a ``.png`` grid (one row per class when the labels are balanced; guidance 4.0 by default, the
  scale of the paper's sample figures), or
* an ADM ``.npz`` batch for FID (``arr_0`` uint8 (N, H, W, C), ``arr_1`` labels; guidance 1.5 by
  default, the scale of the paper's best FID).

Examples::

    python -m minidit.sample --ckpt results/000-DiT-N-2-digits/checkpoints/0002000.pt
    python -m minidit.sample --ckpt DiT-XL-2-256x256.pt --model DiT-XL/2 --image-size 256 --vae ema \\
        --num-samples 50000 --out samples.npz
    torchrun --nproc_per_node 8 -m minidit.sample --ckpt ... --out samples.npz   # ranks split the work

The sampling recipe is the official one: start from ``z ~ N(0, I)``; with guidance, duplicate
the batch, give the second half the null class and sample through ``forward_with_cfg``; keep the
first half; decode latents with the VAE; ``clip_denoised=False``.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch

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
    from minidit.training.objective import autocast_context

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


def balanced_labels(num_samples: int, num_classes: int) -> torch.Tensor:
    """``num_samples`` labels spread evenly over the classes, sorted (class 0 first)."""
    return torch.arange(num_samples) % num_classes if num_samples < num_classes else \
        torch.sort(torch.arange(num_samples) % num_classes).values


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


# ------------------------------------------------------------------------------------ loading

def model_input_shape(args: dict, vae=None) -> tuple[int, int, int]:
    """``(C, H, W)`` the model works in: the latent shape through a VAE, else the image shape."""
    if vae is not None:
        size = args["image_size"] // vae.downsample_factor
        return (vae.latent_channels, size, size)
    return (args["in_channels"], args["input_size"], args["input_size"])


def build_vae(name, device):
    """The VAE named in the run's args (None or "none": pixel space)."""
    if name in (None, "none", "None"):
        return None
    from minidit.vae import load_vae

    if str(name).startswith("tiny"):  # latents manifests record "tiny:<cache key>"
        name = "tiny"
    try:
        return load_vae(name, device=str(device))
    except RuntimeError as e:  # e.g. a hub id while offline: the message says how to fix it
        raise ValueError(f"cannot load the VAE {name!r}: {e}") from e


def load_for_sampling(ckpt_path: str | Path, use_ema: bool = True, device="cpu",
                      model_name: str | None = None, image_size: int | None = None,
                      vae_name: str | None = None, num_classes: int | None = None):
    """Load a checkpoint for sampling; returns ``(model, args, vae)``.

    A minidit checkpoint carries ``args`` (with the derived ``in_channels``/``input_size``); an
    official one does not, so the flags describe it (its models are 4-channel SD-VAE latent
    models with 1000 classes, ``input_size = image_size / 8``).
    """
    from minidit.models import get_model
    from minidit.training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(ckpt_path)
    is_minidit = "args" in ckpt and ("model" in ckpt or "ema" in ckpt) and isinstance(ckpt["args"], dict) \
        and "in_channels" in ckpt["args"]
    if is_minidit:
        args = dict(ckpt["args"])
        for key, val in (("model", model_name), ("vae", vae_name)):
            if val is not None and val != args.get(key):
                print(f"note: --{key} {val} ignored: the checkpoint was trained with {args.get(key)}", file=sys.stderr)
        key = "ema" if use_ema else "model"
        if key not in ckpt:
            raise ValueError(f"{ckpt_path} has no {key!r} weights; try {'--no-ema' if use_ema else 'without --no-ema'}")
        state = ckpt[key]
    else:
        if model_name is None or image_size is None:
            raise ValueError(f"{ckpt_path} is not a minidit training checkpoint (no args inside); "
                             f"say what it is with --model (e.g. DiT-XL/2) and --image-size (256 or 512)")
        vae_name = vae_name or "ema"
        state = _official_state_dict(ckpt, use_ema)
        vae_probe = build_vae(vae_name, "cpu")
        factor = vae_probe.downsample_factor if vae_probe is not None else 1
        # the weights say the rest: (D, C, p, p) patch conv; num_classes + 1 label rows (null class)
        channels = state["x_embedder.proj.weight"].shape[1] if "x_embedder.proj.weight" in state else 4
        table = state.get("y_embedder.embedding_table.weight")
        classes = num_classes or (table.shape[0] - 1 if table is not None else 1000)
        args = dict(model=model_name, image_size=image_size, vae=vae_name, num_classes=classes,
                    in_channels=channels, input_size=image_size // factor, learn_sigma=True,
                    dataset="imagenet", class_dropout_prob=0.1)
    model = get_model(args["model"], input_size=args["input_size"], in_channels=args["in_channels"],
                      num_classes=args["num_classes"], learn_sigma=args.get("learn_sigma", True),
                      class_dropout_prob=args.get("class_dropout_prob", 0.1))
    model.load_state_dict(state, strict=True)
    model = model.to(device).eval()
    vae = build_vae(args.get("vae"), device)
    return model, args, vae


def _official_state_dict(ckpt: dict, use_ema: bool) -> dict:
    """The weights inside an official file: a plain state dict, or a dict with "ema"/"model"."""
    if use_ema and "ema" in ckpt:
        return ckpt["ema"]
    if "model" in ckpt and isinstance(ckpt["model"], dict):
        return ckpt["model"]
    return ckpt


# ------------------------------------------------------------------------------------ the CLI

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m minidit.sample", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt", required=True, help="a minidit checkpoint .pt or an official DiT .pt")
    p.add_argument("--out", default="samples.png", help="a .png grid or an ADM .npz batch")
    p.add_argument("--num-samples", type=int, default=None,
                   help="how many (default: 8 per class for a .png, 50,000 for a .npz)")
    p.add_argument("--cfg-scale", type=float, default=None, help="guidance scale (default 4.0 for .png, 1.5 for .npz)")
    p.add_argument("--num-sampling-steps", type=int, default=250, help="respaced diffusion steps")
    p.add_argument("--sampler", choices=["ddpm", "ddim"], default="ddpm")
    p.add_argument("--class-labels", type=str, default=None,
                   help="comma-separated class ids, cycled to --num-samples (default: balanced over all classes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass per process")
    p.add_argument("--no-ema", action="store_true", help="sample with the trained weights instead of the EMA")
    p.add_argument("--model", default=None, help="official checkpoints: the model name, e.g. DiT-XL/2")
    p.add_argument("--image-size", type=int, default=None, help="official checkpoints: 256 or 512")
    p.add_argument("--vae", default=None, help="official checkpoints: ema | mse | a local folder")
    p.add_argument("--num-classes", type=int, default=None, help="official checkpoints: class count [1000]")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--device", default=None)
    p.add_argument("--no-progress", action="store_true")
    return p


def _labels_for(args, num_classes: int, is_png: bool) -> torch.Tensor:
    if args.class_labels:
        try:
            ids = [int(s) for s in args.class_labels.split(",") if s.strip()]
        except ValueError:
            raise ValueError(f"--class-labels {args.class_labels!r}: give comma-separated integers, e.g. 0,1,2") from None
        bad = [i for i in ids if not 0 <= i < num_classes]
        if not ids or bad:
            raise ValueError(f"--class-labels: {bad or 'nothing given'} outside [0, {num_classes - 1}] "
                             f"(the model has {num_classes} classes)")
        n = args.num_samples or (8 * len(ids) if is_png else 50_000)
        per = -(-n // len(ids))
        return torch.tensor(ids).repeat_interleave(per)[:n]
    if args.num_samples is None:
        n = 8 * num_classes if (is_png and num_classes <= 16) else (64 if is_png else 50_000)
    else:
        n = args.num_samples
    if is_png and num_classes > 16 and args.num_samples is None and num_classes == 1000:
        return torch.tensor(OFFICIAL_SAMPLE_CLASSES).repeat_interleave(8)
    return balanced_labels(n, num_classes)


def main(argv: list[str] | None = None) -> Path | None:
    from minidit.diffusion import create_diffusion
    from minidit.training.distributed import cleanup_distributed, init_distributed, rank_seed
    from minidit.training.plots import save_grid

    args = build_parser().parse_args(argv)
    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".npz"):
        raise ValueError(f"--out {out}: use a .png (a picture grid) or a .npz (an ADM sample batch for FID)")
    is_png = out.suffix.lower() == ".png"
    if args.num_samples is not None and args.num_samples < 1:
        raise ValueError("--num-samples must be at least 1")
    cfg_scale = args.cfg_scale if args.cfg_scale is not None else (4.0 if is_png else 1.5)
    info = init_distributed(args.device)
    device = info.device
    try:
        model, run_args, vae = load_for_sampling(args.ckpt, use_ema=not args.no_ema, device=device,
                                                 model_name=args.model, image_size=args.image_size,
                                                 vae_name=args.vae, num_classes=args.num_classes)
        num_classes = run_args["num_classes"]
        labels = _labels_for(args, num_classes, is_png)
        diffusion = create_diffusion(str(args.num_sampling_steps), learn_sigma=run_args.get("learn_sigma", True))
        shape = model_input_shape(run_args, vae)
        # each rank its own slice of the samples and its own seed (as the official sample_ddp.py)
        mine = torch.arange(info.rank, len(labels), info.world_size)
        seed = rank_seed(args.seed, info.world_size, info.rank)
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        chunks = []
        batches = list(torch.split(mine, args.batch_size)) if len(mine) else []
        show = info.is_main and not args.no_progress
        from tqdm import tqdm
        for idx in tqdm(batches, desc=f"sampling {len(labels)} images", disable=not show or len(batches) < 2):
            imgs = generate(model, diffusion, labels[idx], shape, num_classes, cfg_scale=cfg_scale,
                            sampler=args.sampler, device=device, vae=vae, generator=gen,
                            progress=show and len(batches) == 1, precision=args.precision)
            chunks.append(imgs.cpu())
        local = torch.cat(chunks) if chunks else torch.zeros(0, *shape)
        images = _gather(local, mine, len(labels), out, info)
        if info.is_main:
            if is_png:
                save_grid(images, out, rows=grid_rows(labels))
            else:
                from minidit.metrics.npz import save_samples_npz, to_uint8

                save_samples_npz(out, to_uint8(images), labels.numpy())
            print(f"wrote {len(labels)} samples (cfg {cfg_scale}, {args.num_sampling_steps} {args.sampler} steps) to {out}")
        return out if info.is_main else None
    finally:
        cleanup_distributed()


def _gather(local: torch.Tensor, mine: torch.Tensor, n: int, out: Path, info) -> torch.Tensor | None:
    """Rank 0 collects every rank's samples in the original order (through files: cheap on memory)."""
    if not info.enabled:
        return local
    import torch.distributed as dist

    shard = out.with_name(f".{out.name}.rank{info.rank}.pt")
    torch.save({"images": local, "index": mine}, shard)
    dist.barrier()
    images = None
    if info.is_main:
        parts = [torch.load(out.with_name(f".{out.name}.rank{r}.pt")) for r in range(info.world_size)]
        images = torch.zeros(n, *local.shape[1:])
        for part in parts:
            images[part["index"]] = part["images"]
    dist.barrier()
    shard.unlink(missing_ok=True)
    return images


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
