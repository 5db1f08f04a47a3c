"""``latents``: read what ``python -m minidit.extract`` wrote, with near-zero overhead.

Each shard ``shard_00000.safetensors`` holds ``mean`` and ``std`` of shape ``(n, 2, C, h, w)``
-- index 0 of the second axis is the image, index 1 its horizontal mirror -- plus ``labels``
``(n,)``. Both are already multiplied by the VAE scale factor.

Every access draws a *fresh* posterior sample ``z = mean + std * eps`` and (with ``flip=True``)
picks the mirrored or the plain latent at random, so training sees exactly the distribution the
official DiT code feeds its model (it encodes every batch on the fly: random flip, then
``latent_dist.sample() * 0.18215``). fast-DiT stores a single sample of a single orientation and
trains on those forever -- the same latent every epoch; storing both orientations' moments avoids
that fidelity loss for twice the disk.

Speed: the shards are memory-mapped (numpy ``memmap`` over the safetensors payload), so opening
an ImageNet-size extraction is instant, RAM holds only what the OS caches, and one access costs a
small copy plus one ``randn``.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import torch

from .base import ImageDataset

FORMAT_VERSION = 1
_NP_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32}


RERUN = "rerun the same `python -m minidit.extract ...` command: it redoes just the missing shards"
REDO = f"delete it and {RERUN}"


def read_safetensors_header(path: Path) -> tuple[int, dict]:
    """``(header length, JSON header)`` of a safetensors file, checked against the file's size: a
    truncated or foreign file is a ValueError naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"latents: shard {path} is missing; {RERUN}")
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            if header_len > size - 8:
                raise ValueError(f"a header of {header_len} bytes in a file of {size}")
            header = json.loads(f.read(header_len))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
        end = max((info["data_offsets"][1] for name, info in header.items() if name != "__metadata__"), default=0)
    except (struct.error, ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError) as e:
        raise ValueError(f"latents: shard {path} is not a readable safetensors file ({e}); {REDO}") from None
    if 8 + header_len + end > size:
        raise ValueError(f"latents: shard {path} is truncated ({size} bytes, its header promises "
                         f"{8 + header_len + end}); {REDO}")
    return header_len, header


def memmap_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Memory-map every tensor of a safetensors file (layout: u64 header size, JSON header, bytes)."""
    header_len, header = read_safetensors_header(path)
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in _NP_DTYPES:
            raise ValueError(f"{path}: tensor {name} has dtype {info['dtype']}, which cannot be memory-mapped")
        begin, end = info["data_offsets"]
        shape = tuple(info["shape"])
        if end == begin:
            out[name] = np.zeros(shape, dtype=_NP_DTYPES[info["dtype"]])
            continue
        out[name] = np.memmap(path, dtype=_NP_DTYPES[info["dtype"]], mode="r", offset=8 + header_len + begin, shape=shape)
    return out


def read_manifest(root) -> dict:
    root = Path(root)
    path = root / "manifest.json"
    if not path.exists():
        partial = sorted(root.glob("shard_*.safetensors")) if root.is_dir() else []
        hint = (f"{len(partial)} shard(s) exist but no manifest: the extraction did not finish -- rerun the same "
                "`python -m minidit.extract ...` command to resume it" if partial else
                "create one with `python -m minidit.extract --data ... --vae ... --out DIR`")
        raise FileNotFoundError(f"latents: no manifest.json in {root}; {hint}")
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"latents: {path} is not readable ({e}); rerun the same `python -m minidit.extract ...` "
                         "command to write it again (finished shards are kept)") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"latents: {path} has format_version {manifest.get('format_version')}, this minidit reads "
                         f"{FORMAT_VERSION}; re-extract with this version")
    return manifest


class Latents(ImageDataset):
    """Pre-extracted latents: yields ``(z (C, h, w) float32, y)``.

    ``flip``: choose the stored mirrored latent with probability 1/2. ``sample``: draw
    ``mean + std * eps`` (True, default) or return the posterior mean (False).
    """

    def __init__(self, root, flip: bool = False, sample: bool = True, num_samples: int | None = None):
        super().__init__(flip=False)          # a latent is not mirrored by flipping its tensor
        self.root = Path(root)
        self.manifest = m = read_manifest(self.root)
        self.random_flip, self.sample = flip, sample
        self.shards = [memmap_safetensors(self.root / s["file"]) for s in m["shards"]]
        for info, shard in zip(m["shards"], self.shards):
            shape = tuple(shard["mean"].shape[2:]) if "mean" in shard else None
            if "labels" not in shard or shape != tuple(m["latent_shape"]):
                raise ValueError(f"latents: shard {self.root / info['file']} does not hold this extraction's "
                                 f"mean {tuple(m['latent_shape'])} and labels; {REDO}")
        counts = [len(s["labels"]) for s in self.shards]
        if sum(counts) != m["count"]:
            raise ValueError(f"latents: the shards in {self.root} hold {sum(counts)} samples, the manifest says "
                             f"{m['count']}; re-run the extraction")
        self.offsets = np.cumsum([0] + counts)
        self.labels = torch.from_numpy(np.concatenate([np.asarray(s["labels"]) for s in self.shards]).astype(np.int64))
        self.length = m["count"] if num_samples is None else min(num_samples, m["count"])
        self.channels, self.image_size = m["latent_shape"][0], m["latent_shape"][1]
        self.class_names = list(m["class_names"])
        self.num_classes = len(self.class_names)
        self.scale_factor, self.pixel_image_size, self.vae_name = m["scale_factor"], m["image_size"], m["vae"]
        self.has_std = "std" in self.shards[0]

    def __len__(self) -> int:
        return self.length

    def _get(self, index: int):
        s = int(np.searchsorted(self.offsets, index, side="right")) - 1
        j = index - int(self.offsets[s])
        shard = self.shards[s]
        f = int(torch.randint(2, ())) if self.random_flip else 0
        # (C, h, w) copied out of the memory map
        mean = torch.from_numpy(np.array(shard["mean"][j, f], dtype=np.float32))
        if self.sample and self.has_std:
            std = torch.from_numpy(np.array(shard["std"][j, f], dtype=np.float32))
            # z = mean + std * eps: a fresh posterior sample on every access
            return mean + std * torch.randn_like(mean), int(self.labels[index])
        return mean, int(self.labels[index])

    def __repr__(self) -> str:
        return (f"Latents(n={len(self)}, latent_shape={(self.channels, self.image_size, self.image_size)}, "
                f"vae={self.vae_name!r}, flip={self.random_flip}, sample={self.sample})")
