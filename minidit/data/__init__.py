"""Data sets for minidit: one entry point, :func:`get_dataset`, for every source of images.

========== ====================================================== ==========================
name       what                                                    needs
========== ====================================================== ==========================
digits     sklearn's 8x8 handwritten digits, (1, 8, 8), 10 classes nothing (bundled)
shapes     procedural coloured shapes, (3, 32, 32), 10 classes     nothing (generated)
glyphs     digits typeset in 20 fonts, (1, 16, 16), 10 classes    nothing (generated)
imagefolder ImageNet layout ``root/<class>/<image>``, ADM crop     your images
cifar10    the python pickle batches                               a local copy (or download)
mnist      the IDX files                                           a local copy (or download)
latents    latents pre-extracted by ``python -m minidit.extract``  an extraction folder
========== ====================================================== ==========================

Every data set yields ``(x, y)``: ``x`` float32 ``(C, H, W)`` in ``[-1, 1]`` (for ``latents``:
the scaled VAE latent), ``y`` an int64 class id; and has ``num_classes``, ``channels``,
``image_size`` and ``class_names``.
"""
from __future__ import annotations

from typing import Callable

from .base import ImageDataset, resize_square, to_minus_one_one
from .cifar import CIFAR10
from .digits import Digits
from .glyphs import Glyphs
from .imagefolder import IMG_EXTENSIONS, ImageFolder, center_crop_arr
from .latents import Latents, memmap_safetensors, read_manifest
from .mnist import MNIST, read_idx
from .shapes import CLASS_NAMES as SHAPE_CLASS_NAMES
from .shapes import Shapes


def _split(train: bool, kw: dict) -> str:
    split = kw.pop("split", None)
    if split is None:
        return "train" if train else "test"
    if split not in ("train", "test", "all"):
        raise ValueError(f"split={split!r}: use 'train', 'test' or 'all'")
    return split


def _no_extra(name: str, kw: dict) -> None:
    if kw:
        raise TypeError(f"get_dataset({name!r}) got unexpected options {sorted(kw)}")


def _digits(root, train, image_size, flip, num_samples, seed, download, kw):
    split = _split(train, kw)
    _no_extra("digits", kw)
    return Digits(split=split, image_size=image_size, flip=flip, num_samples=num_samples)


def _shapes(root, train, image_size, flip, num_samples, seed, download, kw):
    _no_extra("shapes", kw)
    return Shapes(num_samples=10_000 if num_samples is None else num_samples,
                  image_size=image_size or 32, seed=seed, train=train, flip=flip)


def _glyphs(root, train, image_size, flip, num_samples, seed, download, kw):
    _no_extra("glyphs", kw)
    return Glyphs(num_samples=50_000 if num_samples is None else num_samples,
                  image_size=image_size or 16, seed=seed, train=train, flip=flip)


def _imagefolder(root, train, image_size, flip, num_samples, seed, download, kw):
    verify = kw.pop("verify", False)
    _no_extra("imagefolder", kw)
    # 256 is the paper's main resolution; there is no split: point root at the split you want
    return ImageFolder(root, image_size=image_size or 256, flip=flip, num_samples=num_samples, verify=verify)


def _cifar10(root, train, image_size, flip, num_samples, seed, download, kw):
    split = _split(train, kw)
    _no_extra("cifar10", kw)
    return CIFAR10(root, split=split, image_size=image_size, flip=flip, num_samples=num_samples,
                   download_ok=download)


def _mnist(root, train, image_size, flip, num_samples, seed, download, kw):
    split = _split(train, kw)
    _no_extra("mnist", kw)
    return MNIST(root, split=split, image_size=image_size, flip=flip, num_samples=num_samples,
                 download_ok=download)


def _latents(root, train, image_size, flip, num_samples, seed, download, kw):
    sample = kw.pop("sample", True)
    _no_extra("latents", kw)
    if root is None:
        raise ValueError("latents needs root=DIR, a folder written by `python -m minidit.extract`")
    ds = Latents(root, flip=flip, sample=sample, num_samples=num_samples)
    if image_size is not None and image_size not in (ds.image_size, ds.pixel_image_size):
        raise ValueError(f"latents in {root} were extracted from {ds.pixel_image_size}px images "
                         f"({ds.image_size}x{ds.image_size} latents), not image_size={image_size}")
    return ds


# name -> builder(root, train, image_size, flip, num_samples, seed, download, kw)
DATASETS: dict[str, Callable] = {
    "digits": _digits,
    "shapes": _shapes,
    "glyphs": _glyphs,
    "imagefolder": _imagefolder,
    "cifar10": _cifar10,
    "mnist": _mnist,
    "latents": _latents,
}


def get_dataset(name: str, root=None, train: bool = True, image_size: int | None = None,
                flip: bool = False, num_samples: int | None = None, seed: int = 0,
                download: bool = False, **kw) -> ImageDataset:
    """Build the data set ``name`` (one of :data:`DATASETS`).

    Args:
        name: "digits", "shapes", "glyphs", "imagefolder", "cifar10", "mnist" or "latents".
        root: where the files are (imagefolder, cifar10, mnist, latents); unused otherwise.
        train: the training split (True) or the held-out split (False). ``split="all"`` is also
            accepted by the data sets that have fixed splits (digits, cifar10, mnist).
        image_size: output side length; ``None`` means the data set's natural size
            (digits 8, shapes 32, glyphs 16, cifar10 32, mnist 28, imagefolder 256 as in the paper).
        flip: random horizontal flips (probability 1/2 per access), as in the official DiT
            training code.
        num_samples: keep only the first ``num_samples`` (shapes, glyphs: how many to generate,
            default 10,000 and 50,000).
        seed: the generator seed of procedural data (shapes, glyphs).
        download: allow fetching cifar10/mnist from the internet (off by default).
    """
    key = name.lower()
    if key not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {sorted(DATASETS)}")
    return DATASETS[key](root, train, image_size, flip, num_samples, seed, download, dict(kw))


__all__ = ["get_dataset", "DATASETS", "ImageDataset", "Digits", "Glyphs", "Shapes", "SHAPE_CLASS_NAMES",
           "ImageFolder", "center_crop_arr", "IMG_EXTENSIONS", "CIFAR10", "MNIST", "read_idx",
           "Latents", "memmap_safetensors", "read_manifest",
           "to_minus_one_one", "resize_square"]
