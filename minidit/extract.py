"""Encode a data set with the VAE once, so DiT training never runs the encoder again.

    python -m minidit.extract --data shapes --vae tiny --image-size 32 --out latents/shapes32
    python -m minidit.extract --data /data/imagenet/train --vae ema --image-size 256 --out latents/in256
    torchrun --nproc_per_node 8 -m minidit.extract ...            # one process per GPU

Why: the SD VAE encoder costs about 136 GMACs per 256x256 image (counted like the paper's
Gflops: 135.3 in its convolutions, 1.1 in its one attention layer) -- more than a whole DiT-XL/2
forward pass (118.6) and about six DiT-B/2 passes (23.0) -- and training encodes every image every
epoch. Encoding once makes training faster; the question is what to store.

What we store (and why it is more faithful than fast-DiT): for every image *and its horizontal
mirror*, the posterior ``mean`` and ``std``, already multiplied by the VAE scale factor, as
float arrays ``(n, 2, C, h, w)`` (axis 1: 0 = image, 1 = mirrored). The ``latents`` data set then
draws a fresh ``z = mean + std * eps`` and a random orientation on every access -- the same
distribution the official DiT code sees when it flips and encodes on the fly. fast-DiT stores one
sample of one orientation and reuses it every epoch, losing both augmentations.

Layout of ``--out DIR``::

    extract_config.json        the settings; a rerun with different settings refuses to mix
    shard_00000.safetensors    mean, std (n, 2, C, h, w); labels (n,); index (n,) data set positions
    shard_00001.safetensors    ...
    manifest.json              written last: vae, scale_factor, image_size, latent_shape, count,
                               class_names, shards [{file, start, count}], format_version

Resumable: a shard is written to a temporary name and renamed (``os.replace``) when complete, so
a shard file that exists is complete; a rerun skips those (and removes the temporary files a killed
run left). A run that failed before writing any shard leaves nothing that blocks a rerun with other
settings. The manifest's ``vae`` is the autoencoder's exact name (``"tiny:<cache key>"`` for the tiny
one), so training and sampling decode with that autoencoder and no other. Multi-process: rank ``r`` of ``W``
takes shards ``r, r + W, r + 2W, ...`` (names are shard indices, so no collisions); rank 0 writes
the manifest once every shard exists (after a barrier when ``torch.distributed`` is initialised,
otherwise by waiting for the files).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from minidit.files import atomic_path, stale_temps, write_json_atomic
from minidit.errors import add_debug_flag, run_cli
from minidit.data import DATASETS, get_dataset
from minidit.data.latents import FORMAT_VERSION
from minidit.env import pick_device
from minidit.vae import load_vae

DTYPES = {"float32": torch.float32, "float16": torch.float16}


def shard_name(k: int) -> str:
    return f"shard_{k:05d}.safetensors"


def dist_info() -> tuple[int, int]:
    """(rank, world_size) from torch.distributed if initialised, else from RANK/WORLD_SIZE."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _shard_complete(path: Path, count: int) -> bool:
    if not path.exists():
        return False
    try:
        with safe_open(str(path), framework="pt") as f:
            return int(f.metadata().get("count", -1)) == count
    except Exception:          # a foreign or damaged file: redo it
        return False


def check_inputs(dataset, vae, batch_size: int, shard_size: int, dtype: str) -> None:
    """Everything that can be wrong with the inputs, checked before a file is written."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}: use one of {list(DTYPES)}")
    for name, value in (("--batch-size", batch_size), ("--shard-size", shard_size)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if getattr(dataset, "flip", False):
        raise ValueError("extract_latents: build the data set with flip=False; both orientations are stored anyway")
    if len(dataset) == 0:
        raise ValueError("extract: the data set is empty; check --data and --num-samples")
    takes = getattr(vae, "in_channels", None)
    if takes is not None and dataset.channels != takes:
        raise ValueError(f"extract: the data has {dataset.channels}-channel images but the autoencoder "
                         f"{vae.name!r} takes {takes}-channel ones; pick data and --vae that match "
                         f"(grey digits/mnist train in pixel space: python -m minidit.train --vae none)")
    if dataset.image_size % vae.downsample_factor:
        raise ValueError(f"extract: image size {dataset.image_size} is not divisible by the autoencoder's "
                         f"downsampling factor {vae.downsample_factor}; pick another --image-size")


def claim_folder(out: Path, config: dict) -> None:
    """Write ``extract_config.json``, or check that the folder's extraction has these settings.

    Shards of other settings are never mixed in: a folder holding any is refused. A folder that
    holds only a failed run's config (no shard, no manifest) is taken over.
    """
    cfg_path = out / "extract_config.json"
    if cfg_path.exists():
        try:
            old = json.loads(cfg_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            old = None
        if old != config:
            if not any(out.glob("shard_*.safetensors")) and not (out / "manifest.json").exists():
                write_json_atomic(cfg_path, config)        # only a failed run's leftovers: start afresh
                return
            diff = (sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
                    if isinstance(old, dict) else ["unreadable extract_config.json"])
            raise ValueError(f"extract: {out} holds an extraction with different settings ({', '.join(diff)}); "
                             "use another --out, or delete the folder to start over")
    else:
        write_json_atomic(cfg_path, config)


def extract_latents(dataset, vae, out, batch_size: int = 64, shard_size: int = 1024, dtype: str = "float32",
                    data_desc: str = "", num_workers: int = 0, rank: int | None = None,
                    world_size: int | None = None, progress: bool = True, wait_timeout: float = 24 * 3600) -> dict:
    """Encode ``dataset`` (unflipped, images in [-1, 1]) with ``vae`` into shards under ``out``.

    Returns a report: ``images`` encoded by this process, ``seconds``, ``images_per_s``,
    ``shards_done``/``shards_skipped`` and, on rank 0, the ``manifest``.
    """
    if rank is None or world_size is None:
        rank, world_size = dist_info()
    check_inputs(dataset, vae, batch_size, shard_size, dtype)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n = len(dataset)
    num_shards = (n + shard_size - 1) // shard_size
    f = vae.downsample_factor
    latent_shape = [vae.latent_channels, dataset.image_size // f, dataset.image_size // f]
    config = dict(format_version=FORMAT_VERSION, data=data_desc, vae=vae.name, scale_factor=vae.scale_factor,
                  image_size=dataset.image_size, latent_shape=latent_shape, count=n, shard_size=shard_size,
                  dtype=dtype, class_names=list(dataset.class_names), stores=["mean", "std"],
                  flips="axis 1 of mean/std: 0 = image, 1 = horizontally mirrored image")
    claim_folder(out, config)

    mine = list(range(rank, num_shards, world_size))
    for k in mine:  # only this rank writes shard k: a temporary file of it is a killed run's debris
        for debris in stale_temps(out / shard_name(k)) + [out / f".{shard_name(k)}.tmp{rank}"]:
            debris.unlink(missing_ok=True)
    todo = [k for k in mine if not _shard_complete(out / shard_name(k), min(shard_size, n - k * shard_size))]
    images, t0 = 0, time.time()
    bar = tqdm(total=sum(min(shard_size, n - k * shard_size) for k in todo), unit="img", disable=not progress,
               desc=f"extract (rank {rank})" if world_size > 1 else "extract")
    for k in todo:
        start, count = k * shard_size, min(shard_size, n - k * shard_size)
        loader = DataLoader(Subset(dataset, range(start, start + count)), batch_size=batch_size,
                            shuffle=False, num_workers=num_workers)
        means, stds, labels = [], [], []
        for x, y in loader:
            # encode the image and its mirror: (B, 3, H, W) -> (2B, 3, H, W)
            both = torch.cat([x, x.flip(-1)])
            mean, std = vae.encode_moments(both)
            # (2B, C, h, w) -> (B, 2, C, h, w): axis 1 is the orientation
            means.append(torch.stack(mean.chunk(2), dim=1).to("cpu", DTYPES[dtype]))
            stds.append(torch.stack(std.chunk(2), dim=1).to("cpu", DTYPES[dtype]))
            labels.append(y.to(torch.int64))
            images += len(x)
            bar.update(len(x))
        tensors = {"mean": torch.cat(means).contiguous(), "std": torch.cat(stds).contiguous(),
                   "labels": torch.cat(labels).contiguous(),
                   "index": torch.arange(start, start + count, dtype=torch.int64)}
        with atomic_path(out / shard_name(k)) as tmp:   # a shard file either is complete or does not exist
            save_file(tensors, str(tmp), metadata={"shard": str(k), "start": str(start), "count": str(count)})
    bar.close()
    seconds = time.time() - t0
    report = dict(images=images, seconds=seconds, images_per_s=images / seconds if images else 0.0,
                  shards_done=len(todo), shards_skipped=len(mine) - len(todo), rank=rank, world_size=world_size)

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
    if rank == 0:
        shards = [dict(file=shard_name(k), start=k * shard_size, count=min(shard_size, n - k * shard_size))
                  for k in range(num_shards)]
        deadline = time.time() + wait_timeout
        while not all((out / s["file"]).exists() for s in shards):   # other ranks without a process group
            if time.time() > deadline:
                raise TimeoutError(f"extract: shards still missing in {out} after {wait_timeout:.0f} s")
            time.sleep(2.0)
        manifest = dict(config, shards=shards, num_classes=len(dataset.class_names))
        manifest.pop("shard_size")
        write_json_atomic(out / "manifest.json", manifest)
        report["manifest"] = manifest
    return report


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m minidit.extract",
                                 description="Pre-extract VAE latents (mean and std, plain and mirrored) into shards.")
    ap.add_argument("--data", required=True, help=f"a data set name ({', '.join(n for n in DATASETS if n != 'latents')}) or a path")
    ap.add_argument("--dataset", default=None, help="the loader for a path: imagefolder (default), cifar10, mnist")
    ap.add_argument("--vae", default="tiny", help="tiny, a diffusers AutoencoderKL folder, a hub id, or ema/mse")
    ap.add_argument("--image-size", type=int, default=None)
    ap.add_argument("--out", required=True)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--shard-size", type=int, default=1024)
    ap.add_argument("--num-samples", type=int, default=None)
    ap.add_argument("--split", default="train", choices=["train", "test", "all"])
    ap.add_argument("--scale-factor", type=float, default=None)
    ap.add_argument("--dtype", default="float32", choices=list(DTYPES))
    ap.add_argument("--num-workers", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None)
    add_debug_flag(ap)
    args = ap.parse_args(argv)
    for flag, value in (("--batch-size", args.batch_size), ("--shard-size", args.shard_size),
                        ("--num-samples", args.num_samples), ("--image-size", args.image_size)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")
    if args.scale_factor is not None and not (args.scale_factor > 0 and args.scale_factor < float("inf")):
        raise ValueError(f"--scale-factor must be a positive number, got {args.scale_factor}")
    device = pick_device(args.device)   # a --device that does not exist fails here, before any work

    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and "MASTER_ADDR" in os.environ and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        _extract(args, device)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _extract(args, device) -> None:
    rank, world = dist_info()
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    name = args.data if args.data.lower() in DATASETS else (args.dataset or "imagefolder")
    root = None if args.data.lower() in DATASETS else args.data
    if root is not None and not Path(root).exists():
        raise FileNotFoundError(f"--data {root}: no such data set name or folder; use one of "
                                f"{', '.join(n for n in DATASETS if n != 'latents')} or an existing path")
    kw = {} if name in ("shapes", "imagefolder") else {"split": args.split}
    dataset = get_dataset(name, root=root, train=args.split != "test", image_size=args.image_size, flip=False,
                          num_samples=args.num_samples, seed=args.seed, **kw)
    vae = load_vae(args.vae, device=device, scale_factor=args.scale_factor)
    desc = f"{name}:{root or ''} split={args.split} seed={args.seed} num_samples={args.num_samples}"
    report = extract_latents(dataset, vae, args.out, batch_size=args.batch_size, shard_size=args.shard_size,
                             dtype=args.dtype, data_desc=desc, num_workers=args.num_workers, rank=rank,
                             world_size=world, progress=rank == 0)
    print(f"rank {rank}: encoded {report['images']} images (x2 with mirrors) in {report['seconds']:.1f} s = "
          f"{report['images_per_s']:.1f} images/s; {report['shards_done']} shard(s) written, "
          f"{report['shards_skipped']} already done")
    if rank == 0:
        m = report["manifest"]
        print(f"manifest: {m['count']} latents of shape {tuple(m['latent_shape'])}, scale factor "
              f"{m['scale_factor']:.5g}, {len(m['shards'])} shard(s) in {args.out} (autoencoder {m['vae']})")


if __name__ == "__main__":
    run_cli(main)
