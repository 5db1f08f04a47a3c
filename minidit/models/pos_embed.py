"""Fixed 2-D sine-cosine positional embeddings (DiT paper, Section 3.2; as in ViT / MAE).

Attention is permutation-invariant, so every token gets a fixed vector that says where its patch
sits on the grid. DiT uses the frequency-based sin-cos embedding (not learned) and stores it as a
*frozen* parameter ``pos_embed`` of shape ``(1, T, D)`` (so it appears in the state dict, as in
the official checkpoint).

Conventions, all as in the official DiT code:

* 1-D: for ``D/2`` frequencies ``omega_i = 1 / 10000^(i / (D/2))`` the embedding of position
  ``m`` is ``[sin(m * omega), cos(m * omega)]`` (sin first);
* 2-D: the first half of the channels encodes the *column* ``w`` of the patch, the second half the
  *row* ``h`` (the official code builds the grid with ``meshgrid(grid_w, grid_h)``, so "grid_h"
  there actually holds column indices);
* computed in float64, then cast to float32.
"""
from __future__ import annotations

import torch


def get_1d_sincos_pos_embed(embed_dim: int, positions: torch.Tensor) -> torch.Tensor:
    """Sin-cos embedding of a list of (possibly fractional) positions.

    Args:
        embed_dim: ``D``, even.
        positions: any shape with ``M`` elements (flattened).

    Returns:
        float64 tensor of shape ``(M, D)``: ``[sin(pos * omega), cos(pos * omega)]`` where
        ``omega_i = 1 / 10000^(i / (D/2))`` for ``i = 0 .. D/2 - 1`` (sin in the first ``D/2``
        columns, cos in the last ``D/2``). Compute in float64.
    """
    # BEGIN SOLUTION ch03 difficulty=2 minutes=20
    if embed_dim % 2 != 0:
        raise ValueError(f"embed_dim must be even for sin/cos pairs, got {embed_dim}")
    # omega_i = 1 / 10000^(i / (D/2)),  i = 0 .. D/2 - 1
    omega = torch.arange(embed_dim // 2, dtype=torch.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000 ** omega
    # (M,) x (D/2,) -> (M, D/2): angle of position m at frequency i
    angles = torch.outer(positions.reshape(-1).to(torch.float64), omega)
    # [sin, cos] -> (M, D)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    # END SOLUTION


def get_2d_sincos_pos_embed(embed_dim: int, grid_size: int) -> torch.Tensor:
    """2-D sin-cos embedding of a ``grid_size x grid_size`` patch grid.

    Args:
        embed_dim: ``D``, divisible by 4 (each axis gets ``D/2`` channels of sin/cos pairs).
        grid_size: number of patches per side, ``I / p``.

    Returns:
        float32 tensor of shape ``(grid_size**2, D)``; row ``t = i * grid_size + j`` is the token
        at grid row ``i``, column ``j``. Channels ``[:D/2]`` are
        ``get_1d_sincos_pos_embed(D/2, j)`` (the COLUMN), channels ``[D/2:]`` are
        ``get_1d_sincos_pos_embed(D/2, i)`` (the ROW) -- the official DiT order. Compute in
        float64 and cast to float32 at the end.
    """
    # BEGIN SOLUTION ch03 difficulty=2 minutes=25
    if embed_dim % 4 != 0:
        raise ValueError(f"embed_dim must be divisible by 4 for a 2-D sin-cos embedding, got {embed_dim}")
    coords = torch.arange(grid_size, dtype=torch.float64)
    # rows[i, j] = i, cols[i, j] = j, both (grid, grid) -> flattened row-major to (T,)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")
    emb_col = get_1d_sincos_pos_embed(embed_dim // 2, cols)  # (T, D/2)
    emb_row = get_1d_sincos_pos_embed(embed_dim // 2, rows)  # (T, D/2)
    # first half encodes the column w, second half the row h (as in the official DiT code)
    return torch.cat([emb_col, emb_row], dim=1).to(torch.float32)
    # END SOLUTION
