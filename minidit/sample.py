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

The official scripts' flags work as there: ``--vae`` defaults to ``mse`` for a ``.png`` (as
``sample.py``) and ``ema`` for a ``.npz`` (as ``sample_ddp.py``), TF32 is on unless ``--no-tf32``,
and ``sample_ddp.py``'s ``--per-proc-batch-size``, ``--num-fid-samples``, ``--global-seed`` and
``--sample-dir`` are accepted as other names for minidit's flags. ``--help`` says where minidit's
defaults differ, and why.

The sampling itself (the official recipe) and building the model from a checkpoint live in
``minidit.generation``; this module is the command line around them: flags, labels, the split
over processes and the output file.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm import tqdm

from minidit.diffusion import create_diffusion
from minidit.env import check_device
from minidit.errors import RunError, add_debug_flag, run_cli
from minidit.files import atomic_write
from minidit.generation import (balanced_labels, check_cfg_scale, generate, grid_columns_for, grid_labels, grid_rows,
                                model_from_checkpoint, model_input_shape)
from minidit.impl import explain, restore_impl, use_impl
from minidit.metrics.npz import save_samples_npz, to_uint8
from minidit.training.checkpoint import load_checkpoint
from minidit.training.distributed import cleanup_distributed, init_distributed, rank_seed
from minidit.training.plots import save_grid


def load_for_sampling(ckpt_path: str | Path, use_ema: bool = True, device="cpu", model_name: str | None = None,
                      image_size: int | None = None, vae_name: str | None = None, num_classes: int | None = None,
                      default_vae: str = "ema"):
    """Read a checkpoint file and build the model to sample from; returns ``(model, args, vae)``."""
    return model_from_checkpoint(load_checkpoint(ckpt_path), source=str(ckpt_path), use_ema=use_ema, device=device,
                                 model_name=model_name, image_size=image_size, vae_name=vae_name,
                                 num_classes=num_classes, default_vae=default_vae)


# ------------------------------------------------------------------------------------ the CLI

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m minidit.sample", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--ckpt", required=True, help="a minidit checkpoint .pt or an official DiT .pt "
                   "(required: minidit never downloads weights, unlike the official scripts)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--out", default="samples.png", help="a .png grid or an ADM .npz batch")
    p.add_argument("--num-samples", type=int, default=None,
                   help="how many (default: 8 per class for a .png -- fewer on a CPU when a big VAE must decode "
                        "them, down to one per class as the official sample.py; 50,000 for a .npz)")
    p.add_argument("--cfg-scale", type=float, default=None, help="guidance scale (default 4.0 for .png, 1.5 for "
                   ".npz, as the official sample.py / sample_ddp.py); 1 or less: no guidance")
    p.add_argument("--num-sampling-steps", type=int, default=250, help="respaced diffusion steps")
    p.add_argument("--sampler", choices=["ddpm", "ddim"], default="ddpm")
    p.add_argument("--class-labels", type=str, default=None,
                   help="comma-separated class ids, cycled to --num-samples (default: balanced over all classes; "
                        "the official sample_ddp.py draws them at random)")
    p.add_argument("--seed", type=int, default=0, help="rank r seeds its noise with seed * world_size + r")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass per process (the official "
                   "sample_ddp.py: 32; minidit keeps 64, the images of a seed depend on it)")
    p.add_argument("--no-ema", action="store_true", help="sample with the trained weights instead of the EMA")
    p.add_argument("--model", default=None, help="official checkpoints: the model name, e.g. DiT-XL/2 (the official "
                   "default DiT-XL/2 is not assumed; a minidit checkpoint names its own)")
    p.add_argument("--image-size", type=int, default=None, help="official checkpoints: 256 or 512")
    p.add_argument("--vae", default=None, help="ema | mse | a local folder | none; official checkpoints only "
                   "(default: mse for a .png as the official sample.py, ema for a .npz as sample_ddp.py); "
                   "a minidit checkpoint decodes with the VAE it was trained with")
    p.add_argument("--num-classes", type=int, default=None, help="official checkpoints: class count (default: "
                   "read off the weights; officially 1000)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--device", default=None)
    p.add_argument("--no-progress", action="store_true")
    # ---- the official scripts' flags, and minidit's additions to them
    S = argparse.SUPPRESS  # noqa: N806 -- aliases have no default of their own
    p.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=True,
                   help="TF32 matmuls and convolutions on Ampere+ GPUs, as the official scripts; --no-tf32 turns "
                        "both off (sample_ddp.py's only turns off matmuls)")
    p.add_argument("--per-proc-batch-size", dest="batch_size", type=int, default=S,
                   help="the official sample_ddp.py's name for --batch-size")
    p.add_argument("--num-fid-samples", dest="num_samples", type=int, default=S,
                   help="the official sample_ddp.py's name for --num-samples")
    p.add_argument("--global-seed", dest="seed", type=int, default=S,
                   help="the official sample_ddp.py's name for --seed")
    where.add_argument("--sample-dir", default=None, help="as sample_ddp.py: write DIR/<model>-<ckpt>-size-<S>-vae-<vae>-"
                   "cfg-<cfg>-seed-<seed>.npz, the official name (no folder of .png files first)")
    p.add_argument("--guidance-channels", choices=["official", "all"], default=None,
                   help="which output channels guidance acts on: official = the first 3, as the official "
                        "forward_with_cfg; all = every eps channel (default: official for 4-channel latents, "
                        "all otherwise; see DiT.forward_with_cfg)")
    p.add_argument("--impl", default=None, help="run on your own exercise code: exercises, exercises:ch01-ch07, "
                   "solutions or a folder (see exercises/README.md); default: minidit's own")
    add_debug_flag(p)
    return p


def _labels_for(args, num_classes: int, is_png: bool, columns: int = 8) -> torch.Tensor:
    """The class of every sample; ``columns`` = samples per class of a default .png grid."""
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
    if is_png and args.num_samples is None and (num_classes <= 16 or num_classes == 1000):
        return grid_labels(num_classes, columns)   # one row per class (the official classes for ImageNet)
    if args.num_samples is None:
        n = 8 * columns if is_png else 50_000
    else:
        n = args.num_samples
    return balanced_labels(n, num_classes)


def check_args(args) -> None:
    """Every flag checked before anything is loaded: bad input costs a second, not a model load
    (``main`` checks ``--cfg-scale`` once it has chosen the default for the output's kind)."""
    for flag, value in (("--batch-size", args.batch_size), ("--num-samples", args.num_samples),
                        ("--num-sampling-steps", args.num_sampling_steps)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")
    if args.device is not None:
        check_device(args.device)


def official_npz_name(args, run_args: dict, cfg_scale: float) -> str:
    """The official sample_ddp.py's name for its .npz: model, checkpoint, size, VAE, guidance, seed."""
    ckpt = Path(args.ckpt).name.replace(".pt", "")
    vae = str(run_args.get("vae") or "none").replace("/", "-")
    return (f"{run_args['model'].replace('/', '-')}-{ckpt}-size-{run_args['image_size']}-vae-{vae}-"
            f"cfg-{cfg_scale}-seed-{args.seed}.npz")


def set_tf32(enabled: bool) -> None:
    """TF32 for CUDA matmuls and cuDNN convolutions (Ampere and later; no effect elsewhere)."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def main(argv: list[str] | None = None) -> Path | None:
    args = build_parser().parse_args(argv)
    check_args(args)
    out = Path(args.out) if args.sample_dir is None else None
    if out is not None and out.suffix.lower() not in (".png", ".npz"):
        raise ValueError(f"--out {out}: use a .png (a picture grid) or a .npz (an ADM sample batch for FID)")
    is_png = out is not None and out.suffix.lower() == ".png"
    cfg_scale = check_cfg_scale(args.cfg_scale if args.cfg_scale is not None else (4.0 if is_png else 1.5))
    set_tf32(args.tf32)
    info = init_distributed(args.device)
    device = info.device
    switch = use_impl(args.impl) if args.impl else None  # --impl: the student's code runs (minidit/impl.py)
    try:
        model, run_args, vae = load_for_sampling(args.ckpt, use_ema=not args.no_ema, device=device,
                                                 model_name=args.model, image_size=args.image_size,
                                                 vae_name=args.vae, num_classes=args.num_classes,
                                                 default_vae="mse" if is_png else "ema")
        if out is None:
            out = Path(args.sample_dir) / official_npz_name(args, run_args, cfg_scale)
        num_classes = run_args["num_classes"]
        columns = grid_columns_for(8, num_classes, device, vae, run_args.get("image_size"))
        labels = _labels_for(args, num_classes, is_png, columns)
        diffusion = create_diffusion(str(args.num_sampling_steps), learn_sigma=run_args.get("learn_sigma", True))
        shape = model_input_shape(run_args, vae)
        # each rank its own slice of the samples and its own seed (as the official sample_ddp.py);
        # the per-step noise is a second stream that generate() seeds from this generator
        mine = torch.arange(info.rank, len(labels), info.world_size)
        gen = torch.Generator().manual_seed(rank_seed(args.seed, info.world_size, info.rank))
        chunks = []
        batches = list(torch.split(mine, args.batch_size)) if len(mine) else []
        show = info.is_main and not args.no_progress
        for idx in tqdm(batches, desc=f"sampling {len(labels)} images", disable=not show or len(batches) < 2):
            imgs = generate(model, diffusion, labels[idx], shape, num_classes, cfg_scale=cfg_scale,
                            sampler=args.sampler, device=device, vae=vae, generator=gen,
                            progress=show and len(batches) == 1, precision=args.precision,
                            guidance_channels=args.guidance_channels)
            chunks.append(imgs.cpu())
        local = torch.cat(chunks) if chunks else torch.zeros(0, *shape)
        images = _gather(local, mine, len(labels), out, info)
        if info.is_main:
            if is_png:
                save_grid(images, out, rows=grid_rows(labels))
            else:
                save_samples_npz(out, to_uint8(images), labels.numpy())
            print(f"wrote {len(labels)} samples (cfg {cfg_scale}, {args.num_sampling_steps} {args.sampler} steps) to {out}")
        return out if info.is_main else None
    except NotImplementedError as e:  # an unfinished exercise ran (--impl): one line that names it
        raise RunError(explain(e) or str(e)) from e
    finally:
        cleanup_distributed()
        if switch is not None:
            restore_impl(switch.previous)


def _gather(local: torch.Tensor, mine: torch.Tensor, n: int, out: Path, info) -> torch.Tensor | None:
    """Rank 0 collects every rank's samples in the original order (through files: cheap on memory)."""
    if not info.enabled:
        return local
    shard = out.with_name(f".{out.name}.rank{info.rank}.pt")
    with atomic_write(shard) as f:
        torch.save({"images": local, "index": mine}, f)
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
    run_cli(main)
