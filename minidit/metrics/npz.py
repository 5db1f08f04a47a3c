"""Sample batches in the ADM ``.npz`` format, so minidit and the official evaluator interoperate.

The official DiT ``sample_ddp.py`` writes its 50K samples as one ``.npz`` file that the ADM
evaluation suite (openai/guided-diffusion, ``evaluations/evaluator.py``) reads; the reference
batches (``VIRTUAL_imagenet256_labeled.npz``) use the same layout:

* ``arr_0``: uint8 images, shape (N, H, W, 3), channels last (grey images: (N, H, W, 1) here);
* ``arr_1``: int class labels, shape (N,) -- only for class-conditional batches.

(``arr_0``/``arr_1`` are simply the names ``np.savez`` gives to positional arrays.)
"""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from minidit.files import atomic_write


def to_uint8(images) -> np.ndarray:
    """Images in [-1, 1] -> uint8 in [0, 255], with the official DiT rounding.

    The official ``sample_ddp.py`` does ``clamp(127.5 * x + 128, 0, 255)`` and then casts to
    uint8 (which truncates), i.e. rounds (x + 1) * 127.5 to the nearest integer, halves up.
    A float tensor/array in NCHW layout is returned as NHWC (the file layout); a 3-d input
    (C, H, W) is treated as one image.
    """
    x = torch.as_tensor(np.asarray(images) if not torch.is_tensor(images) else images)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"to_uint8 expects images (N, C, H, W) in [-1, 1], got shape {tuple(x.shape)}")
    # uint8 = floor(clamp(127.5 x + 128, 0, 255)) = round-half-up((x + 1) * 127.5), as in DiT
    x = torch.clamp(127.5 * x.double() + 128.0, 0, 255).to(torch.uint8)
    # (N, C, H, W) -> (N, H, W, C)
    return x.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def check_images_uint8(images, what: str = "images") -> np.ndarray:
    """Validate an ADM-style image array: uint8, (N, H, W, C) with C in {1, 3}."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        hint = ("convert floats in [-1, 1] with minidit.metrics.to_uint8(x), floats in [0, 1] with "
                "(x * 255).round().clip(0, 255).astype(np.uint8)")
        raise ValueError(f"{what}: expected dtype uint8, got {images.dtype}; {hint}")
    if images.ndim != 4:
        raise ValueError(f"{what}: expected 4 dimensions (N, H, W, C), got shape {images.shape}"
                         + ("; a single grey batch (N, H, W) needs a trailing channel axis: "
                            "images[..., None]" if images.ndim == 3 else ""))
    if images.shape[-1] not in (1, 3):
        hint = (" -- this looks channels-first (N, C, H, W); use images.transpose(0, 2, 3, 1)"
                if images.shape[1] in (1, 3) else "")
        raise ValueError(f"{what}: expected channels last with 1 or 3 channels (N, H, W, C), got "
                         f"shape {images.shape}{hint}")
    return images


def save_samples_npz(path, images, labels=None) -> Path:
    """Write an ADM-format batch: ``arr_0`` uint8 (N, H, W, C) and, if given, ``arr_1`` labels."""
    images = check_images_uint8(images, "save_samples_npz(images)")
    arrays = {"arr_0": images}
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be {len(images)} integers (shape ({len(images)},)), got "
                             f"shape {labels.shape} dtype {labels.dtype}")
        arrays["arr_1"] = labels.astype(np.int64)
    path = Path(path)
    if path.suffix != ".npz":  # as np.savez does with a file name
        path = path.with_name(path.name + ".npz")
    with atomic_write(path) as f:  # a reader (or a crash) never sees half a batch
        np.savez(f, **arrays)
    return path


def load_samples_npz(path) -> tuple[np.ndarray, np.ndarray | None]:
    """Read an ADM-format batch; returns (images uint8 (N, H, W, C), labels (N,) or None).

    Raises FileNotFoundError for a missing file and ValueError, naming the fix, for a missing
    ``arr_0``, a non-uint8 dtype, a wrong rank or channel count, or labels of the wrong length.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no sample batch at {path}; write one with "
                                "minidit.metrics.save_samples_npz(path, images_uint8)")
    try:
        with np.load(path) as data:
            names = list(data.keys())
            if "arr_0" not in names:
                raise ValueError(f"{path}: no array 'arr_0' (the ADM format stores the images as arr_0); "
                                 f"arrays present: {names}. Re-save with np.savez(path, images) or "
                                 "minidit.metrics.save_samples_npz")
            images = check_images_uint8(data["arr_0"], f"{path}: arr_0")
            labels = data["arr_1"] if "arr_1" in names else None
    except (zipfile.BadZipFile, EOFError, OSError, AttributeError, ValueError) as e:
        if isinstance(e, ValueError) and str(e).startswith(str(path)):
            raise                                      # one of the checks above
        raise ValueError(f"{path} is not a readable .npz batch (truncated or corrupt: {e}); write it again, "
                         f"e.g. with python -m minidit.sample --out {path.name}") from e
    if labels is not None:
        if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"{path}: arr_1 must hold one integer label per image, shape "
                             f"({len(images)},), got shape {labels.shape} dtype {labels.dtype}")
        labels = labels.astype(np.int64)
    return images, labels
