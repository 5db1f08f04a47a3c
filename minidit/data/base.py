"""The common shape of every minidit data set: ``(x, y)`` pairs plus a few attributes.

Every loader in :mod:`minidit.data` returns a :class:`ImageDataset`, so training, metrics and
notebooks never need to know where the pixels came from:

* ``x`` -- float32 tensor ``(C, H, W)`` with values in ``[-1, 1]`` (the range the diffusion
  forward process assumes: ``x_0`` has roughly unit scale, like the Gaussian noise ``eps``);
* ``y`` -- int64 class id in ``[0, num_classes)``;
* attributes ``num_classes``, ``channels``, ``image_size``, ``class_names``.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset


def to_minus_one_one(images_uint8: np.ndarray) -> torch.Tensor:
    """uint8 images ``(..., H, W, C)`` in [0, 255] -> float32 ``(..., C, H, W)`` in [-1, 1].

    ``x = pixel / 127.5 - 1``: the same mapping as the official DiT code's
    ``Normalize(mean=0.5, std=0.5)`` after ``ToTensor``.
    """
    x = torch.from_numpy(np.array(images_uint8, dtype=np.uint8, copy=True)).float()
    # (..., H, W, C) -> (..., C, H, W)
    x = x.movedim(-1, -3)
    # x = pixel / 127.5 - 1
    return x / 127.5 - 1.0


def resize_square(x: torch.Tensor, image_size: int) -> torch.Tensor:
    """Resize a square ``(C, H, W)`` or ``(N, C, H, W)`` tensor to ``image_size`` (antialiased bicubic).

    Used when a small native data set (digits 8x8, MNIST 28x28, CIFAR 32x32) is asked for at
    another size, e.g. so the image side is divisible by the DiT patch size.
    """
    if x.shape[-1] == image_size and x.shape[-2] == image_size:
        return x
    batched = x.dim() == 4
    # (C, H, W) -> (1, C, H, W)
    x4 = x if batched else x.unsqueeze(0)
    out = F.interpolate(x4, size=(image_size, image_size), mode="bicubic", antialias=True,
                        align_corners=False).clamp(-1, 1)
    return out if batched else out[0]


class ImageDataset(Dataset):
    """Base class: subclasses implement ``_get(i) -> (x, y)``; this adds the random flip.

    ``flip=True`` mirrors each sample left-right with probability 1/2, drawn from torch's global
    RNG at access time (so DataLoader workers, which torch seeds differently, draw independent
    flips). The official DiT code trains with ``RandomHorizontalFlip`` on ImageNet.
    """

    num_classes: int
    channels: int
    image_size: int
    class_names: list[str]

    def __init__(self, flip: bool = False):
        self.flip = flip

    def __len__(self) -> int:  # pragma: no cover - subclasses override
        raise NotImplementedError

    def _get(self, index: int) -> tuple[torch.Tensor, int]:  # pragma: no cover
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a data set of {len(self)} samples")
        x, y = self._get(index)
        if self.flip and torch.rand(()) < 0.5:
            # (C, H, W): the last axis is the width, so this is a horizontal mirror
            x = x.flip(-1)
        return x, torch.tensor(y, dtype=torch.int64)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(n={len(self)}, channels={self.channels}, "
                f"image_size={self.image_size}, num_classes={self.num_classes}, flip={self.flip})")


class ProceduralDataset(ImageDataset):
    """Base class of the data sets minidit draws itself (``shapes``, ``glyphs``).

    Sample ``i`` is a pure function of ``(seed, split, i)``, its class is ``i % num_classes``
    (balanced classes), and a subclass draws a whole batch at once in ``batch(indices)``; one
    sample is a batch of one. ``what`` and ``typical_size`` name the set in error messages.
    """

    what = "procedural"
    typical_size = "16"
    version = 1  # bumped when the drawing changes: caches of rendered images and of models trained on them carry it

    def __init__(self, num_samples: int, image_size: int, seed: int, train: bool, flip: bool,
                 channels: int, class_names: list[str]):
        super().__init__(flip=flip)
        if image_size < 8:
            raise ValueError(f"{self.what}: image_size={image_size} is too small to draw; use 8 or more "
                             f"({self.typical_size} typical)")
        if num_samples < 1:
            raise ValueError(f"{self.what}: num_samples must be positive, got {num_samples}")
        self.num_samples, self.image_size, self.seed = num_samples, image_size, seed
        self.split = 0 if train else 1          # train and test draw from different streams
        self.num_classes, self.channels, self.class_names = len(class_names), channels, list(class_names)

    def __len__(self) -> int:
        return self.num_samples

    def label(self, index: int) -> int:
        return index % self.num_classes

    def batch(self, indices) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover - subclasses override
        raise NotImplementedError

    def _get(self, index: int):
        x, y = self.batch([index])
        return x[0], int(y[0])
