"""The two pictures a run writes: a sample grid (one row per class) and the loss curves.

Both are written by rank 0 only, atomically (minidit/files.py), and are for people, not for
metrics (metrics.jsonl holds the numbers). matplotlib runs with its non-interactive ``Agg``
backend, so training works on a server with no display.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from minidit.diffusion import create_diffusion
from minidit.files import atomic_write
from minidit.generation import generate, grid_columns_for, grid_labels
from minidit.metrics.npz import to_uint8


def save_grid(images: torch.Tensor, path: str | Path, rows: int, min_side: int = 32) -> Path:
    """Save images ``(N, C, H, W)`` in [-1, 1] as one PNG with ``rows`` rows (row-major order).

    The trainer passes the samples class by class, so each row shows one class. Tiny images
    (digits are 8x8) are enlarged by an integer factor with nearest-neighbour so every image
    is at least ``min_side`` pixels wide and the pixels stay sharp. A 2-pixel white border
    separates the images.
    """
    n, c, h, w = images.shape
    if n == 0 or rows < 1 or n % rows != 0:
        raise ValueError(f"cannot lay out {n} images in {rows} equal rows")
    cols = n // rows
    scale = max(1, -(-min_side // max(h, w)))
    # (N, C, H, W) in [-1, 1] -> (N, H, W, C) uint8
    pics = to_uint8(images.detach().float().cpu())
    if scale > 1:
        pics = pics.repeat(scale, axis=1).repeat(scale, axis=2)
    ph, pw, pad = h * scale, w * scale, 2
    canvas = np.full((rows * (ph + pad) + pad, cols * (pw + pad) + pad, c), 255, dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, cols)
        top, left = pad + r * (ph + pad), pad + col * (pw + pad)
        canvas[top:top + ph, left:left + pw] = pics[i]
    path = Path(path)
    with atomic_write(path) as f:  # a reader never sees half a picture (it makes the folder too)
        Image.fromarray(canvas[..., 0] if c == 1 else canvas).save(f, format="PNG")
    return path


def write_sample_grid(ema, config, vae, shape, run_dir: Path, step: int, device) -> Path:
    """Sample a grid with the EMA weights (one row per class) without touching the training RNG streams."""
    columns = grid_columns_for(config.grid_columns, config.num_classes, device, vae, config.image_size)
    labels = grid_labels(config.num_classes, columns)
    diffusion = create_diffusion(str(config.num_sampling_steps), learn_sigma=config.learn_sigma)
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # sampling must not shift the training RNG
        torch.manual_seed(config.global_seed)
        gen = torch.Generator().manual_seed(config.global_seed)
        images = generate(ema, diffusion, labels, shape, config.num_classes, cfg_scale=config.cfg_scale,
                          sampler=config.sampler, device=device, vae=vae, generator=gen,
                          precision=config.precision)
    return save_grid(images, run_dir / f"samples_{step:07d}.png", rows=len(torch.unique(labels)))


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if len(values) < 3 or window <= 1:
        return values
    window = min(window, len(values))
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid")


def save_loss_curve(records: list[dict], path: str | Path, title: str = "") -> Path | None:
    """Plot ``mse`` (L_simple) and ``vb`` (L_vlb) against the step from the logged records.

    Two panels with their own log-scaled y axes: the vb term is orders of magnitude smaller
    than the mse term late in training, and on one axis it would look flat.
    """
    import matplotlib  # imported on first use: it takes a while, and most processes never plot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [r for r in records if "step" in r and "mse" in r]
    if not records:
        return None
    steps = np.array([r["step"] for r in records])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, key, label in ((axes[0], "mse", "mse (L_simple)"), (axes[1], "vb", "vb (L_vlb)")):
        vals = np.array([r.get(key, np.nan) for r in records], dtype=float)
        ax.plot(steps, vals, alpha=0.35, color="C0", label="per log interval")
        ax.plot(steps, _smooth(vals, 5), color="C0", label="smoothed")
        if np.all(vals[np.isfinite(vals)] > 0) and np.isfinite(vals).any():
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_write(path) as f:
            fig.savefig(f, format="png", dpi=100)
    finally:
        plt.close(fig)
    return path
