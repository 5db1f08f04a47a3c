"""``imagefolder``: your own images in the ImageNet layout, cropped exactly as the official DiT code.

Layout::

    root/
      n01440764/  img_0001.JPEG  img_0002.JPEG ...     <- one folder per class
      n01443537/  ...

Class ids follow the *sorted* folder names (``class_to_idx``), so the same folder always gives the
same ids; training saves this mapping with the run.

Unreadable files (truncated downloads, non-images with an image extension, ...) must not kill a
multi-day run at step 400k. They are found lazily: the first time a file fails to decode we warn
with its path, remember it, and return the next readable sample instead; later epochs skip it
silently. Each time a full epoch's worth of samples has been read in this process, a summary
warning gives the count. ``verify=True`` checks every file up front instead (slow on ImageNet).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from .base import ImageDataset, to_minus_one_one

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp", ".gif")
LAYOUT_HELP = ("expected the ImageNet layout: ROOT/<class_name>/<image>.jpg, one sub-folder per class "
               f"holding images with one of the extensions {', '.join(IMG_EXTENSIONS)}")


def center_crop_arr(pil_image: Image.Image, image_size: int) -> Image.Image:
    """The ADM centre crop (used by the official DiT code for ImageNet) of a PIL image.

    1. While the short side is at least ``2 * image_size``, halve the image with a BOX filter
       (an exact 2x2 average: cheap, and it avoids aliasing that one big bicubic step would cause).
    2. Resize with BICUBIC so the short side is exactly ``image_size``.
    3. Cut the central ``image_size x image_size`` square (offsets rounded down).
    """
    while min(pil_image.size) >= 2 * image_size:
        half = tuple(side // 2 for side in pil_image.size)
        pil_image = pil_image.resize(half, resample=Image.BOX)
    scale = image_size / min(pil_image.size)
    new_size = tuple(round(side * scale) for side in pil_image.size)
    pil_image = pil_image.resize(new_size, resample=Image.BICUBIC)
    arr = np.asarray(pil_image)
    top = (arr.shape[0] - image_size) // 2
    left = (arr.shape[1] - image_size) // 2
    return Image.fromarray(arr[top: top + image_size, left: left + image_size])


class ImageFolder(ImageDataset):
    """Images under ``root/<class>/``, ADM-cropped to ``image_size`` and mapped to [-1, 1]."""

    def __init__(self, root, image_size: int = 256, flip: bool = False, num_samples: int | None = None,
                 verify: bool = False):
        super().__init__(flip=flip)
        root = Path(root) if root is not None else None
        if root is None:
            raise ValueError(f"imagefolder needs root=PATH; {LAYOUT_HELP}")
        if not root.is_dir():
            raise FileNotFoundError(f"imagefolder: {root} does not exist or is not a folder; {LAYOUT_HELP}")
        classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not classes:
            raise FileNotFoundError(f"imagefolder: no class sub-folders in {root}; {LAYOUT_HELP}")
        self.class_to_idx = {c: i for i, c in enumerate(classes)}
        self.samples: list[tuple[Path, int]] = []
        for c in classes:
            files = sorted(p for p in (root / c).rglob("*") if p.suffix.lower() in IMG_EXTENSIONS and p.is_file())
            self.samples += [(p, self.class_to_idx[c]) for p in files]
        if not self.samples:
            raise FileNotFoundError(f"imagefolder: found class folders {classes[:5]} in {root} but no images; {LAYOUT_HELP}")
        if num_samples is not None:
            self.samples = self.samples[:num_samples]
        self.root, self.image_size, self.channels = root, image_size, 3
        self.class_names, self.num_classes = classes, len(classes)
        self.skipped: dict[str, str] = {}     # path -> why it could not be read
        self._reads = 0
        if verify:
            self.verify()

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, path: Path):
        with Image.open(path) as im:
            im = im.convert("RGB")   # grey, palette, CMYK and RGBA all become RGB
        arr = np.asarray(center_crop_arr(im, self.image_size))
        return to_minus_one_one(arr)

    def _mark_bad(self, path: Path, err: Exception) -> None:
        self.skipped[str(path)] = f"{type(err).__name__}: {err}"
        warnings.warn(f"imagefolder: skipping unreadable image {path} ({type(err).__name__}: {err}); "
                      f"{len(self.skipped)} skipped so far", RuntimeWarning, stacklevel=3)

    def _get(self, index: int):
        self._reads += 1
        if self._reads % len(self) == 0 and self.skipped:
            warnings.warn(self.summary(), RuntimeWarning, stacklevel=3)
        for step in range(len(self)):
            path, label = self.samples[(index + step) % len(self)]
            if str(path) in self.skipped:
                continue
            try:
                return self._load(path), label
            except Exception as err:  # PIL raises OSError, ValueError, SyntaxError, DecompressionBombError...
                self._mark_bad(path, err)
        raise RuntimeError(f"imagefolder: none of the {len(self)} images under {self.root} could be read; "
                           f"first error: {next(iter(self.skipped.items()))}")

    def verify(self) -> int:
        """Open and decode every file now; drop the unreadable ones (with one warning). Returns the count."""
        good = []
        for path, label in self.samples:
            try:
                with Image.open(path) as im:
                    im.convert("RGB")
                good.append((path, label))
            except Exception as err:
                self.skipped[str(path)] = f"{type(err).__name__}: {err}"
        if not good:
            raise RuntimeError(f"imagefolder: none of the {len(self.samples)} images under {self.root} could be read")
        dropped = len(self.samples) - len(good)
        self.samples = good
        if dropped:
            warnings.warn(self.summary(), RuntimeWarning, stacklevel=2)
        return dropped

    def summary(self) -> str:
        """One line: how many files were unreadable, and the first few of them."""
        names = ", ".join(list(self.skipped)[:5]) + (", ..." if len(self.skipped) > 5 else "")
        return (f"imagefolder: {len(self.skipped)} unreadable image(s) under {self.root} were skipped "
                f"(their slots were filled by the next readable image): {names}")
