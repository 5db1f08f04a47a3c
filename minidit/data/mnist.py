"""``mnist``: MNIST from its IDX files (optionally gzipped), no torchvision needed.

IDX format: two zero bytes, a type byte (0x08 = unsigned byte), the number of dimensions, then
each dimension as a big-endian int32, then the data. Images: ``(N, 28, 28)``; labels: ``(N,)``.
Searched in ``root``, ``root/raw`` and ``root/MNIST/raw`` (torchvision's layout).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import ImageDataset, resize_square
from .files import download, open_maybe_gz

MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
HELP = ("Put train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
        "t10k-labels-idx1-ubyte (each optionally .gz) in ROOT, or pass download=True when online.")
IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file into a numpy array (checks the magic number)."""
    with open_maybe_gz(path) as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise ValueError(f"mnist: {path} is not an IDX file (bad magic number {raw[:4]!r})")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=IDX_DTYPES[raw[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"mnist: {path} is truncated: header says {dims}, found {data.size} values")
    return data.reshape(dims)


def _locate(root: Path, name: str) -> Path | None:
    for folder in (root, root / "raw", root / "MNIST" / "raw"):
        for cand in (folder / name, folder / f"{name}.gz"):
            if cand.exists():
                return cand
    return None


class MNIST(ImageDataset):
    """MNIST as ``(1, 28, 28)`` tensors in [-1, 1] (or resized to ``image_size``)."""

    def __init__(self, root, split: str = "train", image_size: int | None = None, flip: bool = False,
                 num_samples: int | None = None, download_ok: bool = False):
        super().__init__(flip=flip)
        if root is None:
            raise ValueError(f"mnist needs root=PATH. {HELP}")
        root = Path(root)
        images, labels = [], []
        for part in (["train", "test"] if split == "all" else [split]):
            paths = []
            for name in FILES[part]:
                p = _locate(root, name)
                if p is None and download_ok:
                    p = download(MIRROR + name + ".gz", root / f"{name}.gz", "mnist", HELP)
                if p is None:
                    raise FileNotFoundError(f"mnist: {name}[.gz] not found under {root}. {HELP}")
                paths.append(p)
            images.append(read_idx(paths[0]))
            labels.append(read_idx(paths[1]))
        images, labels = np.concatenate(images), np.concatenate(labels)
        if len(images) != len(labels):
            raise ValueError(f"mnist: {len(images)} images but {len(labels)} labels under {root}")
        if num_samples is not None:
            images, labels = images[:num_samples], labels[:num_samples]
        self.images = torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8))
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.num_classes, self.channels, self.image_size = 10, 1, image_size or 28
        self.class_names = [str(d) for d in range(10)]

    def __len__(self) -> int:
        return len(self.labels)

    def _get(self, index: int):
        # (28, 28) uint8 -> (1, 28, 28) in [-1, 1]
        x = self.images[index].float().unsqueeze(0) / 127.5 - 1.0
        return resize_square(x, self.image_size), int(self.labels[index])
