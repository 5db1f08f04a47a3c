"""``shapes``: a procedural, class-conditional RGB data set that minidit draws itself.

Ten classes of upright coloured shapes (circle, square, triangle, star, cross, ring, diamond, bar,
bowl, stripes) on smooth two-colour backgrounds, each at a random position, size and colour. It
exists so the latent-diffusion chapter and the tiny autoencoder have a real RGB, class-conditional
task with no download: class identity lives in the *shape*, while colour, position, size and
background are nuisance variation the model must learn to ignore (or reproduce).

Why these ten, upright and large (version 2 of the data set): a small DiT trained for minutes on a
CPU draws the coarse silhouette long before the fine contour. The first version also had hexagons
and hearts, small (radius 0.16 to 0.34 of the side) and at any rotation; a latent DiT given ten CPU
minutes drew blobs that the classifier could not tell apart as circle, hexagon or heart (class
accuracy of its samples about 0.3 to 0.6), which measured the detail of a contour, not whether the
model learned the classes. Every class here differs from every other in its coarse layout: a
hole, a point, a flat edge, an orientation, an elongation, or bands.

Determinism: sample ``i`` is a pure function of ``(seed, split, i)`` -- its parameters come from
``numpy.random.default_rng([seed, split, i])`` -- so any ``num_samples`` works, index 17 is the
same image whichever other samples you ask for, and two runs with one seed match bit for bit.
The class is ``i % 10``, so every class has the same count (up to one).

Speed: rendering is vectorised numpy over a whole batch of images (no per-pixel Python loops);
shapes are implicit functions ``inside(u, v)`` evaluated on a 2x supersampled pixel grid and
box-averaged, which anti-aliases the edges.
"""
from __future__ import annotations

import numpy as np
import torch

from .base import ProceduralDataset

CLASS_NAMES = ["circle", "square", "triangle", "star", "cross",
               "ring", "diamond", "bar", "bowl", "stripes"]
SUPERSAMPLE = 2  # each output pixel averages SUPERSAMPLE x SUPERSAMPLE point samples
SQRT3 = np.sqrt(3.0)


def _inside(name: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of the unit-size shape ``name`` at shape coordinates ``(u, v)``.

    ``(u, v)`` are pixel positions already moved to the shape's centre and divided by its radius,
    so every shape here fits in the unit disk; ``v`` grows downwards (image rows), so "up" is
    ``-v``. Every shape is mirror-symmetric about the vertical axis (``u -> -u``).
    """
    r = np.sqrt(u * u + v * v)
    if name == "circle":
        return r <= 1.0
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.75
    if name == "triangle":  # equilateral, inscribed in the unit circle
        return (v <= 0.5) & (SQRT3 * u - v <= 1.0) & (-SQRT3 * u - v <= 1.0)
    if name == "star":  # five points, one pointing up: radius swings between 0.45 and 1.0 with the angle
        theta = np.arctan2(u, -v)  # angle from the upward direction
        return r <= 0.45 + 0.55 * ((1.0 + np.cos(5.0 * theta)) / 2.0) ** 2
    if name == "cross":
        return ((np.abs(u) <= 0.35) & (np.abs(v) <= 0.95)) | ((np.abs(v) <= 0.35) & (np.abs(u) <= 0.95))
    if name == "ring":
        return (r <= 1.0) & (r >= 0.55)
    if name == "diamond":
        return np.abs(u) / 0.75 + np.abs(v) <= 1.0
    if name == "bar":  # a horizontal bar, almost the full width, a third as tall
        return (np.abs(u) <= 0.95) & (np.abs(v) <= 0.35)
    if name == "bowl":  # the unit disk less a disk of radius 0.8 above its centre: a crescent opening up
        return (r <= 1.0) & (u * u + (v + 0.45) ** 2 > 0.8 ** 2)
    if name == "stripes":  # a disk filled with three vertical bands
        return (r <= 1.0) & (np.cos(3.0 * np.pi * u) > 0.0)
    raise ValueError(f"unknown shape {name!r}; known: {CLASS_NAMES}")


def _hsv_to_rgb(h, s, v):
    """Vectorised HSV -> RGB, all arrays in [0, 1]; returns (..., 3)."""
    k = (np.stack([5.0, 3.0, 1.0], -1) + h[..., None] * 6.0) % 6.0
    return v[..., None] - v[..., None] * s[..., None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def sample_params(seed: int, split: int, indices) -> dict[str, np.ndarray]:
    """The random parameters of samples ``indices``: one generator per sample, keyed by (seed, split, i)."""
    rows = []
    for i in indices:
        g = np.random.default_rng([seed, split, int(i)])
        rows.append(g.random(11))
    p = np.asarray(rows, dtype=np.float64).reshape(len(rows), 11)
    radius = 0.26 + 0.14 * p[:, 0]                     # fraction of the image side: 8 to 13 pixels at 32x32
    cx = radius + (1 - 2 * radius) * p[:, 1]           # keep the shape inside the frame
    cy = radius + (1 - 2 * radius) * p[:, 2]
    fg = _hsv_to_rgb(p[:, 3], 0.55 + 0.45 * p[:, 4], 0.55 + 0.45 * p[:, 5])
    # background: dim when the shape is bright and vice versa, so the shape always stands out
    lum = fg @ np.array([0.299, 0.587, 0.114])
    bg_v = np.where(lum > 0.5, 0.05 + 0.3 * p[:, 6], 0.65 + 0.3 * p[:, 6])
    bg_a = _hsv_to_rgb(p[:, 7], 0.5 * p[:, 8], bg_v)
    bg_b = _hsv_to_rgb((p[:, 7] + 0.15) % 1.0, 0.5 * p[:, 8], np.clip(bg_v + 0.15 * (p[:, 9] - 0.5), 0, 1))
    bg_angle = 2 * np.pi * p[:, 10]
    return dict(radius=radius, cx=cx, cy=cy, fg=fg, bg_a=bg_a, bg_b=bg_b, bg_angle=bg_angle)


def render_shapes(labels: np.ndarray, params: dict[str, np.ndarray], image_size: int) -> np.ndarray:
    """Draw a batch: returns float32 ``(N, 3, S, S)`` in [-1, 1]."""
    n, s = len(labels), image_size * SUPERSAMPLE
    f32 = {k: np.asarray(v, dtype=np.float32) for k, v in params.items()}   # float32: half the memory traffic
    # pixel centres in [0, 1]: (s,)
    t = ((np.arange(s) + 0.5) / s).astype(np.float32)
    py, px = t[None, :, None], t[None, None, :]                       # (1, s, 1), (1, 1, s)
    mask = np.empty((n, s, s), dtype=np.float32)
    for k in np.unique(labels):                                       # one vectorised call per class
        sel = labels == k
        r = f32["radius"][sel, None, None]
        # move to the shape's centre and scale to unit radius: (n_k, 1, s) and (n_k, s, 1)
        u = (px - f32["cx"][sel, None, None]) / r
        v = (py - f32["cy"][sel, None, None]) / r
        mask[sel] = _inside(CLASS_NAMES[k], u, v)                     # broadcasts to (n_k, s, s)
    # box-average the supersamples: (N, s, s) -> (N, S, S)
    alpha = mask.reshape(n, image_size, SUPERSAMPLE, image_size, SUPERSAMPLE).mean(axis=(2, 4))
    # background: linear gradient from colour a to colour b along a random direction
    tt = ((np.arange(image_size) + 0.5) / image_size).astype(np.float32)
    ga, gb = np.cos(f32["bg_angle"])[:, None, None], np.sin(f32["bg_angle"])[:, None, None]
    w = np.clip(0.5 + (tt[None, None, :] - 0.5) * ga + (tt[None, :, None] - 0.5) * gb, 0, 1)  # (N, S, S)
    bg = (1 - w[..., None]) * f32["bg_a"][:, None, None, :] + w[..., None] * f32["bg_b"][:, None, None, :]
    # composite: image = (1 - alpha) * background + alpha * colour, (N, S, S, 3)
    img = (1 - alpha[..., None]) * bg + alpha[..., None] * f32["fg"][:, None, None, :]
    # (N, S, S, 3) in [0, 1] -> (N, 3, S, S) in [-1, 1], laid out contiguously (a transposed view
    # would send the networks that read it through other, slower and not bit-identical, kernels)
    return np.ascontiguousarray(img.transpose(0, 3, 1, 2) * 2.0 - 1.0, dtype=np.float32)


class Shapes(ProceduralDataset):
    """``num_samples`` procedural shape images, drawn on access (or all at once with ``batch``)."""

    what, typical_size = "shapes", "32 or 64"
    version = 2  # upright, larger, bar and bowl instead of hexagon and heart (see the module's docstring)

    def __init__(self, num_samples: int = 10_000, image_size: int = 32, seed: int = 0,
                 train: bool = True, flip: bool = False):
        super().__init__(num_samples, image_size, seed, train, flip, channels=3, class_names=CLASS_NAMES)

    def batch(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """Render many samples in one vectorised call (unflipped): ``(N, 3, S, S)``, ``(N,)``."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        labels = indices % self.num_classes
        x = render_shapes(labels, sample_params(self.seed, self.split, indices), self.image_size)
        return torch.from_numpy(x), torch.from_numpy(labels)
