"""``shapes``: a procedural, class-conditional RGB data set that minidit draws itself.

Ten classes of coloured shapes (circle, square, triangle, star, cross, ring, diamond, hexagon,
heart, stripes) on smooth two-colour backgrounds, each at a random position, size, rotation and
colour. It exists so the latent-diffusion chapter and the tiny autoencoder have a real RGB,
class-conditional task with no download: class identity lives in the *shape*, while colour,
pose and background are nuisance variation the model must learn to ignore (or reproduce).

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
               "ring", "diamond", "hexagon", "heart", "stripes"]
SUPERSAMPLE = 2  # each output pixel averages SUPERSAMPLE x SUPERSAMPLE point samples
SQRT3 = np.sqrt(3.0)


def _inside(name: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of the unit-size shape ``name`` at shape coordinates ``(u, v)``.

    ``(u, v)`` are pixel positions already moved to the shape's centre, rotated and divided by
    its radius, so every shape here fits in the unit disk.
    """
    r = np.sqrt(u * u + v * v)
    if name == "circle":
        return r <= 1.0
    if name == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.75
    if name == "triangle":  # equilateral, inscribed in the unit circle
        return (v <= 0.5) & (SQRT3 * u - v <= 1.0) & (-SQRT3 * u - v <= 1.0)
    if name == "star":  # five points: radius swings between 0.4 and 1.0 with the angle
        theta = np.arctan2(v, u)
        return r <= 0.4 + 0.6 * ((1.0 + np.cos(5.0 * theta)) / 2.0) ** 2
    if name == "cross":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 0.95)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 0.95))
    if name == "ring":
        return (r <= 1.0) & (r >= 0.55)
    if name == "diamond":
        return np.abs(u) / 0.75 + np.abs(v) <= 1.0
    if name == "hexagon":  # |projection| onto three directions 60 degrees apart
        h = 0.85
        return (np.abs(v) <= h) & (np.abs(SQRT3 / 2 * u + 0.5 * v) <= h) & (np.abs(SQRT3 / 2 * u - 0.5 * v) <= h)
    if name == "heart":  # the classic implicit heart (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0
        x, y = 1.15 * u, -1.15 * v + 0.25
        return (x * x + y * y - 1.0) ** 3 - x * x * y ** 3 <= 0.0
    if name == "stripes":  # a disk filled with three bands
        return (r <= 1.0) & (np.sin(3.0 * np.pi * u) > 0.0)
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
        rows.append(g.random(12))
    p = np.asarray(rows, dtype=np.float64).reshape(len(rows), 12)
    radius = 0.16 + 0.18 * p[:, 0]                     # fraction of the image side
    cx = radius + (1 - 2 * radius) * p[:, 1]           # keep the shape inside the frame
    cy = radius + (1 - 2 * radius) * p[:, 2]
    angle = 2 * np.pi * p[:, 3]
    fg = _hsv_to_rgb(p[:, 4], 0.55 + 0.45 * p[:, 5], 0.55 + 0.45 * p[:, 6])
    # background: dim when the shape is bright and vice versa, so the shape always stands out
    lum = fg @ np.array([0.299, 0.587, 0.114])
    bg_v = np.where(lum > 0.5, 0.05 + 0.3 * p[:, 7], 0.65 + 0.3 * p[:, 7])
    bg_a = _hsv_to_rgb(p[:, 8], 0.5 * p[:, 9], bg_v)
    bg_b = _hsv_to_rgb((p[:, 8] + 0.15) % 1.0, 0.5 * p[:, 9], np.clip(bg_v + 0.15 * (p[:, 10] - 0.5), 0, 1))
    bg_angle = 2 * np.pi * p[:, 11]
    return dict(radius=radius, cx=cx, cy=cy, angle=angle, fg=fg, bg_a=bg_a, bg_b=bg_b, bg_angle=bg_angle)


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
        dx = px - f32["cx"][sel, None, None]                          # (n_k, 1, s)
        dy = py - f32["cy"][sel, None, None]                          # (n_k, s, 1)
        c, sn = np.cos(f32["angle"][sel])[:, None, None], np.sin(f32["angle"][sel])[:, None, None]
        r = f32["radius"][sel, None, None]
        # rotate into the shape's frame and scale to unit radius: (n_k, s, s)
        u = (c * dx + sn * dy) / r
        v = (-sn * dx + c * dy) / r
        mask[sel] = _inside(CLASS_NAMES[k], u, v)
    # box-average the supersamples: (N, s, s) -> (N, S, S)
    alpha = mask.reshape(n, image_size, SUPERSAMPLE, image_size, SUPERSAMPLE).mean(axis=(2, 4))
    # background: linear gradient from colour a to colour b along a random direction
    tt = ((np.arange(image_size) + 0.5) / image_size).astype(np.float32)
    ga, gb = np.cos(f32["bg_angle"])[:, None, None], np.sin(f32["bg_angle"])[:, None, None]
    w = np.clip(0.5 + (tt[None, None, :] - 0.5) * ga + (tt[None, :, None] - 0.5) * gb, 0, 1)  # (N, S, S)
    bg = (1 - w[..., None]) * f32["bg_a"][:, None, None, :] + w[..., None] * f32["bg_b"][:, None, None, :]
    # composite: image = (1 - alpha) * background + alpha * colour, (N, S, S, 3)
    img = (1 - alpha[..., None]) * bg + alpha[..., None] * f32["fg"][:, None, None, :]
    # (N, S, S, 3) in [0, 1] -> (N, 3, S, S) in [-1, 1]
    return (img.transpose(0, 3, 1, 2) * 2.0 - 1.0).astype(np.float32)


class Shapes(ProceduralDataset):
    """``num_samples`` procedural shape images, drawn on access (or all at once with ``batch``)."""

    what, typical_size = "shapes", "32 or 64"

    def __init__(self, num_samples: int = 10_000, image_size: int = 32, seed: int = 0,
                 train: bool = True, flip: bool = False):
        super().__init__(num_samples, image_size, seed, train, flip, channels=3, class_names=CLASS_NAMES)

    def batch(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """Render many samples in one vectorised call (unflipped): ``(N, 3, S, S)``, ``(N,)``."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        labels = indices % self.num_classes
        x = render_shapes(labels, sample_params(self.seed, self.split, indices), self.image_size)
        return torch.from_numpy(x), torch.from_numpy(labels)
