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
a shard file that exists is complete; a rerun skips those. Multi-process: rank ``r`` of ``W``
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

from minidit.data import DATASETS, get_dataset
from minidit.data.latents import FORMAT_VERSION

DTYPES = {"float32": torch.float32, "float16": torch.float16}


def shard_name(k: int) -> str:
    return f"shard_{k:05d}.safetensors"


def dist_info() -> tuple[int, int]:
    """(rank, world_size) from torch.distributed if initialised, else from RANK/WORLD_SIZE."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def _shard_complete(path: Path, count: int) -> bool:
    if not path.exists():
        return False
    try:
        with safe_open(str(path), framework="pt") as f:
            return int(f.metadata().get("count", -1)) == count
    except Exception:          # a foreign or damaged file: redo it
        return False


def extract_latents(dataset, vae, out, batch_size: int = 64, shard_size: int = 1024, dtype: str = "float32",
                    data_desc: str = "", num_workers: int = 0, rank: int | None = None,
                    world_size: int | None = None, progress: bool = True, wait_timeout: float = 24 * 3600) -> dict:
    """Encode ``dataset`` (unflipped, images in [-1, 1]) with ``vae`` into shards under ``out``.

    Returns a report: ``images`` encoded by this process, ``seconds``, ``images_per_s``,
    ``shards_done``/``shards_skipped`` and, on rank 0, the ``manifest``.
    """
    if rank is None or world_size is None:
        rank, world_size = dist_info()
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}: use one of {list(DTYPES)}")
    if getattr(dataset, "flip", False):
        raise ValueError("extract_latents: build the data set with flip=False; both orientations are stored anyway")
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
    cfg_path = out / "extract_config.json"
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        if old != config:
            diff = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))
            raise ValueError(f"extract: {out} holds an extraction with different settings ({', '.join(diff)}); "
                             "use another --out, or delete the folder to start over")
    else:
        _write_json_atomic(cfg_path, config)

    mine = list(range(rank, num_shards, world_size))
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
        path = out / shard_name(k)
        tmp = out / f".{path.name}.tmp{rank}"
        save_file(tensors, str(tmp), metadata={"shard": str(k), "start": str(start), "count": str(count)})
        os.replace(tmp, path)       # atomic: a shard file either is complete or does not exist
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
        _write_json_atomic(out / "manifest.json", manifest)
        report["manifest"] = manifest
    return report


def main(argv=None):
    ap = argparse.ArgumentParser(description="Pre-extract VAE latents (mean and std, plain and mirrored) into shards.")
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
    args = ap.parse_args(argv)

    world = int(os.environ.get("WORLD_SIZE", 1))
    if world > 1 and "MASTER_ADDR" in os.environ and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank, world = dist_info()
    from minidit.env import pick_device
    from minidit.vae import load_vae
    device = pick_device(args.device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))

    name = args.data if args.data.lower() in DATASETS else (args.dataset or "imagefolder")
    root = None if args.data.lower() in DATASETS else args.data
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
              f"{m['scale_factor']:.5g}, {len(m['shards'])} shard(s) in {args.out}")
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
