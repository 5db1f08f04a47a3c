"""``cifar10``: CIFAR-10 from its "python version" pickle batches (no torchvision needed).

Files (as in ``cifar-10-python.tar.gz``): ``data_batch_1`` .. ``data_batch_5`` (train, 10,000
images each), ``test_batch`` and ``batches.meta``; each batch is a pickled dict whose ``b"data"``
is a uint8 array ``(10000, 3072)`` -- 1024 red, then 1024 green, then 1024 blue values, row-major
-- and ``b"labels"`` a list of ints. ``root`` may be that folder or its parent.
"""
from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch

from .base import ImageDataset, resize_square
from .files import download

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
HELP = ("Put the python-version batches (data_batch_1..5, test_batch from cifar-10-python.tar.gz) in "
        "ROOT or ROOT/cifar-10-batches-py, or pass download=True when online.")


def _find(root: Path) -> Path | None:
    for cand in (root, root / "cifar-10-batches-py"):
        if (cand / "test_batch").exists() or (cand / "data_batch_1").exists():
            return cand
    return None


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


class CIFAR10(ImageDataset):
    """CIFAR-10 as ``(3, 32, 32)`` tensors in [-1, 1]; ``split`` is "train", "test" or "all"."""

    def __init__(self, root, split: str = "train", image_size: int | None = None, flip: bool = False,
                 num_samples: int | None = None, download_ok: bool = False):
        super().__init__(flip=flip)
        if root is None:
            raise ValueError(f"cifar10 needs root=PATH. {HELP}")
        root = Path(root)
        folder = _find(root)
        if folder is None and download_ok:
            archive = download(URL, root / "cifar-10-python.tar.gz", "cifar10", HELP)
            with tarfile.open(archive) as tar:
                tar.extractall(root, filter="data")
            folder = _find(root)
        if folder is None:
            raise FileNotFoundError(f"cifar10: no CIFAR-10 batches found in {root}. {HELP}")
        names = {"train": TRAIN_FILES, "test": ["test_batch"], "all": TRAIN_FILES + ["test_batch"]}[split]
        missing = [n for n in names if not (folder / n).exists()]
        if missing:
            raise FileNotFoundError(f"cifar10: {folder} lacks {missing}. {HELP}")
        data, labels = [], []
        for n in names:
            d = _unpickle(folder / n)
            data.append(np.asarray(d[b"data"], dtype=np.uint8))
            labels += list(d[b"labels"])
        # (N, 3072) -> (N, 3, 32, 32): channel planes, each row-major
        images = np.concatenate(data).reshape(-1, 3, 32, 32)
        if num_samples is not None:
            images, labels = images[:num_samples], labels[:num_samples]
        self.images = torch.from_numpy(images)             # uint8, converted per access
        self.labels = torch.tensor(labels, dtype=torch.int64)
        meta = folder / "batches.meta"
        self.class_names = ([s.decode() for s in _unpickle(meta)[b"label_names"]] if meta.exists() else list(CLASSES))
        self.num_classes, self.channels, self.image_size = len(self.class_names), 3, image_size or 32

    def __len__(self) -> int:
        return len(self.labels)

    def _get(self, index: int):
        # x = pixel / 127.5 - 1
        x = self.images[index].float() / 127.5 - 1.0
        return resize_square(x, self.image_size), int(self.labels[index])
