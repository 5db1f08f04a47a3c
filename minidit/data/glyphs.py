"""``glyphs``: the digits 0-9 typeset in 20 fonts, each under a random pose -- the scaling study's data.

Why another digits set: the paper's scaling claims are about *tokens* as much as about model size
(a DiT-XL/2 sees 256 tokens of a 32x32 latent, an XL/8 only 16). sklearn's 8x8 digits are too
small for that ladder (a 4x4 patch is a quarter of the image), and the shapes set carries its class
in a small object among colour and background nuisance that a CPU-sized model cannot learn in a
few thousand steps. ``glyphs`` is MNIST-like -- one centred grey digit on black -- but at any
resolution, with real fine detail (serifs, italics, stroke contrast) that a 2x2 patch can draw and
an 8x8 patch cannot, and with as many samples as you ask for (no memorisation).

How a sample is drawn, all from ``numpy.random.default_rng([seed, split, i, 7])``:

* the font: one of the 20 TrueType fonts bundled with matplotlib (DejaVu Sans / Serif / Mono,
  STIX, Computer Modern; regular, bold, italic), rasterised once per process to a 64x64 master
  per digit (4x supersampled, even-odd fill, so the holes of 0, 4, 6, 8, 9 stay holes);
* the stroke weight: the master thinned by one pixel, kept, or thickened by one or two;
* a pose: scale 0.75-1.1, rotation +-15 degrees, shear +-0.25, shift +-12% of the side;
* the brightness of the stroke: 0.7-1.

The image is resampled from the master at 4x the output resolution and box-averaged (which
anti-aliases it). The class is ``i % 10``, so the classes are balanced; sample ``i`` is the same
whichever other samples you ask for. Rendering costs about 3 ms of CPU per 16x16 image.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .base import ProceduralDataset

FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
         "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
         "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf",
         "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
         "cmr10.ttf", "cmss10.ttf", "cmtt10.ttf", "cmb10.ttf", "cmti10.ttf")
MASTER = 64        # side of each glyph's master raster
SUPERSAMPLE = 4    # point samples per output pixel along each axis
CLASS_NAMES = [str(d) for d in range(10)]


@lru_cache(maxsize=1)
def masters() -> torch.Tensor:
    """``(20, 10, 64, 64)`` coverage masks in [0, 1]: each digit of each font, its bounding box
    centred and 0.8 of the side high."""
    import matplotlib
    from matplotlib.font_manager import FontProperties
    from matplotlib.path import Path as MplPath
    from matplotlib.textpath import TextPath

    root = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    n = MASTER * SUPERSAMPLE
    t = (np.arange(n) + 0.5) / n
    gx, gy = np.meshgrid(t, t)
    points = np.stack([gx.ravel(), 1.0 - gy.ravel()], 1)  # (n*n, 2); paths have y pointing up
    out = np.zeros((len(FONTS), 10, MASTER, MASTER), np.float32)
    for fi, name in enumerate(FONTS):
        prop = FontProperties(fname=str(root / name))
        for d in range(10):
            path = TextPath((0, 0), str(d), size=1.0, prop=prop)
            lo, hi = path.vertices.min(0), path.vertices.max(0)
            # centre the bounding box, height 0.8 of the master's side
            verts = (path.vertices - (lo + hi) / 2) * (0.8 / (hi[1] - lo[1])) + 0.5
            inside = np.zeros(len(points), bool)
            for poly in MplPath(verts, path.codes).to_polygons(closed_only=True):
                inside ^= MplPath(poly).contains_points(points)   # even-odd: holes stay empty
            # box-average the supersamples: (n, n) -> (MASTER, MASTER)
            mask = inside.reshape(n, n).astype(np.float32)
            out[fi, d] = mask.reshape(MASTER, SUPERSAMPLE, MASTER, SUPERSAMPLE).mean((1, 3))
    return torch.from_numpy(out)


def sample_params(seed: int, split: int, indices) -> np.ndarray:
    """``(N, 8)`` uniforms per sample: font, stroke, scale, rotation, shear, shift x, shift y, brightness."""
    rows = [np.random.default_rng([seed, split, int(i), 7]).random(8) for i in indices]
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), 8)


def render_glyphs(indices, image_size: int = 16, seed: int = 0, split: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(N, 1, S, S)`` float32 in [-1, 1] and labels ``(N,)`` (``index % 10``)."""
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    labels = indices % 10
    p = sample_params(seed, split, indices)
    font = torch.from_numpy((p[:, 0] * len(FONTS)).astype(np.int64))
    src = masters()[font, torch.from_numpy(labels)].unsqueeze(1)      # (N, 1, MASTER, MASTER)
    # stroke weight: -1 thins (min-pool), 1 and 2 thicken (max-pool) by that many master pixels
    weight = np.floor(p[:, 1] * 4).astype(int) - 1
    for k in (1, 2):
        sel = torch.from_numpy(np.where(weight == k)[0])
        if len(sel):
            src[sel] = F.max_pool2d(src[sel], 2 * k + 1, 1, k)
    sel = torch.from_numpy(np.where(weight == -1)[0])
    if len(sel):
        src[sel] = -F.max_pool2d(-src[sel], 3, 1, 1)
    # the pose, as the map from output to source coordinates (both normalised to [-1, 1]):
    # source = A @ (out - shift), A = (rotation @ shear) / scale
    scale = 0.75 + 0.35 * p[:, 2]
    rot = np.deg2rad(-15 + 30 * p[:, 3])
    shear = -0.25 + 0.5 * p[:, 4]
    tx, ty = -0.12 + 0.24 * p[:, 5], -0.12 + 0.24 * p[:, 6]
    c, s = np.cos(rot), np.sin(rot)
    a11, a12 = c / scale, (c * shear - s) / scale
    a21, a22 = s / scale, (s * shear + c) / scale
    theta = np.stack([np.stack([a11, a12, -(a11 * tx + a12 * ty)], 1),
                      np.stack([a21, a22, -(a21 * tx + a22 * ty)], 1)], 1)   # (N, 2, 3)
    big = image_size * SUPERSAMPLE
    grid = F.affine_grid(torch.from_numpy(theta).float(), [len(indices), 1, big, big], align_corners=False)
    x = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # anti-alias: (N, 1, big, big) -> (N, 1, S, S)
    x = F.avg_pool2d(x, SUPERSAMPLE)
    brightness = torch.from_numpy(0.7 + 0.3 * p[:, 7]).float().view(-1, 1, 1, 1)
    # [0, 1] coverage x brightness -> [-1, 1]
    x = (x.clamp(0, 1) * brightness) * 2 - 1
    return x.contiguous(), torch.from_numpy(labels)


class Glyphs(ProceduralDataset):
    """``num_samples`` procedural glyph images ``(1, S, S)``, drawn on access (or at once with ``batch``)."""

    what, typical_size = "glyphs", "16"

    def __init__(self, num_samples: int = 50_000, image_size: int = 16, seed: int = 0,
                 train: bool = True, flip: bool = False):
        super().__init__(num_samples, image_size, seed, train, flip, channels=1, class_names=CLASS_NAMES)

    def batch(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """Render many samples in one vectorised call (unflipped): ``(N, 1, S, S)``, ``(N,)``."""
        return render_glyphs(indices, self.image_size, self.seed, self.split)
