"""``digits``: scikit-learn's bundled 8x8 handwritten digits -- the offline default data set.

1,797 grey images of the digits 0-9 (about 180 per class), shipped inside scikit-learn, so the
first diffusion model a learner trains needs no download. Pixels are integers 0..16 (each is a
count of "on" pixels in a 4x4 block of the original 32x32 bitmap); we map them to [-1, 1].
"""
from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .base import ImageDataset, resize_square

# The train/test split is fixed once and for all (it does not follow ``seed``), so a model's test
# images are never in anybody's training set. 80 % train, 20 % test, by a seeded permutation.
SPLIT_SEED = 0
TRAIN_FRACTION = 0.8


def digits_split_indices(split: str) -> np.ndarray:
    """Indices of the sklearn digits array that belong to ``split`` ("train", "test" or "all")."""
    n = 1797
    if split == "all":
        return np.arange(n)
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    n_train = int(round(TRAIN_FRACTION * n))
    if split == "train":
        return np.sort(perm[:n_train])
    if split == "test":
        return np.sort(perm[n_train:])
    raise ValueError(f"digits: unknown split {split!r}; use 'train', 'test' or 'all'")


@lru_cache(maxsize=1)
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    """sklearn's (images (1797, 8, 8), targets (1797,)), parsed once per process.

    The data are read straight from the CSV that scikit-learn ships (64 pixel columns, then the
    label), which skips importing scikit-learn itself (seconds, with scipy); if that file is not
    where we expect it, we fall back to ``sklearn.datasets.load_digits``.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the 'digits' data set needs scikit-learn: pip install scikit-learn")
    csv = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "digits.csv.gz"
    if csv.exists():
        table = np.loadtxt(csv, delimiter=",", dtype=np.float64)          # (1797, 65)
        # (N, 64) -> (N, 8, 8)
        return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits
    bunch = load_digits()
    return bunch.images, bunch.target


class Digits(ImageDataset):
    """sklearn ``load_digits`` as ``(1, 8, 8)`` tensors in [-1, 1] (optionally resized)."""

    def __init__(self, split: str = "train", image_size: int | None = None, flip: bool = False,
                 num_samples: int | None = None):
        super().__init__(flip=flip)
        all_images, all_targets = _load_digits()
        idx = digits_split_indices(split)
        if num_samples is not None:
            if num_samples > len(idx):
                raise ValueError(f"digits ({split}) has {len(idx)} images, asked for num_samples={num_samples}")
            idx = idx[:num_samples]
        # (N, 8, 8) in 0..16 -> (N, 1, 8, 8) in [-1, 1];   x = pixel / 8 - 1
        images = torch.from_numpy(all_images[idx]).float().unsqueeze(1) / 8.0 - 1.0
        self.image_size = image_size or 8
        self.images = resize_square(images, self.image_size)
        self.labels = torch.from_numpy(all_targets[idx].astype(np.int64))
        self.num_classes, self.channels = 10, 1
        self.class_names = [str(d) for d in range(10)]
        self.split = split

    def __len__(self) -> int:
        return len(self.labels)

    def _get(self, index: int):
        return self.images[index], int(self.labels[index])
