"""Patch embedding: an image (or latent) becomes a sequence of tokens (DiT paper, Section 3.2, Figure 4).

A spatial input of shape ``(N, C, I, I)`` is cut into non-overlapping ``p x p`` patches. Each patch
is one token, so the sequence has ``T = (I / p)^2`` tokens. Halving ``p`` quadruples ``T`` and hence
the Gflops -- the paper's main scaling knob besides depth and width.

Two ways to say the same thing live here:

* ``patchify`` / ``unpatchify``: pure reshapes, the mental model (and the exercise);
* ``PatchEmbed``: what the model runs -- one ``Conv2d`` with kernel = stride = ``p``, which is a
  linear map applied to every patch (state-dict key ``x_embedder.proj``, as in the official code).

Feature order inside a token. ``patchify`` orders a token's ``p*p*C`` features as ``(p, q, c)``
(row inside the patch, column inside the patch, channel) -- the order the official DiT's
``unpatchify`` (``einsum('nhwpqc->nchpwq')``) reads the final linear layer's output in. The conv's
weight ``(D, C, p, p)`` flattens in a *different* order, ``(c, p, q)``; so
``conv(x) == patchify(x) @ W.permute(0, 2, 3, 1).reshape(D, -1).T + b``. Both are correct as long
as each side is consistent; tests/test_models.py checks the identity.
"""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn


def patchify(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut images into non-overlapping patches and flatten each patch into one token.

    Args:
        x: images or latents, shape ``(N, C, H, W)``; ``H`` and ``W`` divisible by ``patch_size``.
        patch_size: ``p``, the side of a square patch.

    Returns:
        tokens of shape ``(N, T, p*p*C)`` with ``T = (H/p) * (W/p)``. Tokens are in row-major
        order over the patch grid (token ``i * (W/p) + j`` is the patch in grid row ``i``,
        column ``j``). Inside a token the features are ordered ``(p, q, c)``: first by the row
        inside the patch, then the column inside the patch, then the channel -- i.e. feature
        ``(a * p + b) * C + c`` is ``x[n, c, i*p + a, j*p + b]``. This is the official DiT order.
        Use ``einops.rearrange``.
    """
    # BEGIN SOLUTION ch03 difficulty=2 minutes=20
    # (N, C, H, W) -> (N, T, p*p*C), T = (H/p)(W/p), features ordered (p, q, c)
    return rearrange(x, "n c (h p) (w q) -> n (h w) (p q c)", p=patch_size, q=patch_size)
    # END SOLUTION


def unpatchify(tokens: torch.Tensor, patch_size: int, channels: int) -> torch.Tensor:
    """Inverse of ``patchify``: put the tokens back on the square image grid.

    Args:
        tokens: shape ``(N, T, p*p*C)``, ``T`` a perfect square, tokens row-major over the grid
            and features ordered ``(p, q, c)``, exactly as ``patchify`` produces them (the
            official DiT's order). Raise ``ValueError`` if ``T`` is not a perfect square.
        patch_size: ``p``.
        channels: ``C``, the number of channels of the output image.

    Returns:
        images of shape ``(N, C, H, W)`` with ``H = W = sqrt(T) * p``, such that
        ``unpatchify(patchify(x, p), p, C) == x``. Use ``einops.rearrange``.
    """
    # BEGIN SOLUTION ch03 difficulty=2 minutes=15
    h = w = int(round(tokens.shape[1] ** 0.5))
    if h * w != tokens.shape[1]:
        raise ValueError(f"unpatchify needs a square number of tokens, got T={tokens.shape[1]}")
    # (N, T, p*p*C) -> (N, C, H, W), T = h*w, H = h*p, W = w*p
    return rearrange(tokens, "n (h w) (p q c) -> n c (h p) (w q)",
                     h=h, w=w, p=patch_size, q=patch_size, c=channels)
    # END SOLUTION


class PatchEmbed(nn.Module):
    """Linearly embed every ``p x p`` patch into a ``D``-dimensional token (one strided conv).

    A ``Conv2d`` with ``kernel_size = stride = p`` applies the same ``(D, C*p*p)`` matrix to every
    patch -- exactly a linear layer on ``patchify(x)``, but without materialising the patches.
    The attribute is named ``proj`` so the state-dict key is ``x_embedder.proj`` as in the
    official checkpoint. Note the conv weight flattens in ``(c, p, q)`` order, unlike the
    ``(p, q, c)`` token order of ``patchify``/``unpatchify`` (see the module docstring).
    """

    def __init__(self, patch_size: int, in_channels: int, hidden_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, hidden_size, kernel_size=patch_size, stride=patch_size, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed every patch: images ``(N, C, H, W)`` -> tokens ``(N, T, D)``, ``T = (H/p) * (W/p)``.

        ``self.proj`` (the strided convolution) gives one ``D``-vector per patch, laid out on the
        patch grid as ``(N, D, H/p, W/p)``. The transformer wants a sequence instead: token
        ``i * (W/p) + j`` is the patch in grid row ``i``, column ``j`` (row-major, the order of
        ``patchify``), with its ``D`` features on the last axis.
        """
        # BEGIN SOLUTION ch03 difficulty=1 minutes=10
        # (N, C, H, W) -> (N, D, H/p, W/p)
        x = self.proj(x)
        # (N, D, h, w) -> (N, T, D), tokens row-major over the patch grid
        return rearrange(x, "n d h w -> n (h w) d")
        # END SOLUTION
