"""Multi-head attention: self-attention over the patch tokens, and cross-attention to a condition.

``Attention(X) = softmax(Q K^T / sqrt(d)) V`` per head, with ``Q, K, V`` from one fused linear
layer ``qkv`` whose output rows are ``[q; k; v]`` (the official DiT / timm layout, state-dict keys
``attn.qkv`` and ``attn.proj``). One fused matmul instead of three is also faster.

By default the softmax-attention itself runs through PyTorch's
``scaled_dot_product_attention`` (flash / memory-efficient kernels where available); with
``fused_attn=False`` the same maths is written out explicitly -- slower, but it is the equation you
can read, and tests check both agree.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d)) v`` for tensors shaped ``(N, heads, T, d)``, written out."""
    # (N, h, Tq, d) @ (N, h, d, Tk) -> (N, h, Tq, Tk)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    weights = scores.softmax(dim=-1)
    # (N, h, Tq, Tk) @ (N, h, Tk, d) -> (N, h, Tq, d)
    return weights @ v


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection (rows ``[q; k; v]``)."""

    def __init__(self, dim: int, num_heads: int, fused_attn: bool = True):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"hidden size {dim} is not divisible by num_heads={num_heads}; "
                             f"pick num_heads that divides it (head dim = hidden / heads)")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.fused_attn = fused_attn
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Multi-head self-attention over the tokens: ``x`` ``(N, T, D)`` -> ``(N, T, D)``.

        With ``h = self.num_heads`` heads of width ``d = self.head_dim = D / h``:

        1. ``self.qkv(x)`` has shape ``(N, T, 3D)``. Its last axis is ``[q; k; v]``, each ``D``
           wide, and each of them holds the ``h`` heads one after another: head ``i`` of ``q`` is
           features ``i*d .. (i+1)*d - 1`` of the first ``D`` (the official DiT / timm layout).
        2. For every head separately: ``softmax(q k^T / sqrt(d)) v``, the softmax over the key
           tokens. ``naive_attention`` (above) computes it for ``(N, h, T, d)`` tensors; PyTorch's
           ``F.scaled_dot_product_attention`` gives the same numbers faster (``self.fused_attn``
           chooses; either is accepted).
        3. The heads side by side again, head 0's ``d`` features first: ``(N, T, D)``; then the
           output projection ``self.proj``.
        """
        # BEGIN SOLUTION ch03 difficulty=3 minutes=40
        # (N, T, 3D) -> (N, T, 3, heads, d): output features are [q; k; v], each split into heads
        qkv = rearrange(self.qkv(x), "n t (three h d) -> n t three h d", three=3, h=self.num_heads)
        # 3 x (N, T, heads, d) -> 3 x (N, heads, T, d), all views. Splitting on the axis where
        # [q; k; v] lie in memory lets the backward pass stack the three gradients straight into
        # qkv's (N, T, 3D) layout (one copy less per block than splitting a permuted view).
        q, k, v = (z.transpose(1, 2) for z in qkv.unbind(2))
        if self.fused_attn:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = naive_attention(q, k, v)
        # (N, heads, T, d) -> (N, T, D)
        out = rearrange(out, "n h t d -> n t (h d)")
        return self.proj(out)
        # END SOLUTION


class CrossAttention(nn.Module):
    """Multi-head cross-attention: image tokens (queries) attend to a condition sequence.

    Used by the paper's cross-attention block variant (Figure 3): the condition is the 2-token
    sequence ``[t_emb, y_emb]``. Queries come from ``q``, keys/values from one fused ``kv``
    projection (rows ``[k; v]``).
    """

    def __init__(self, dim: int, num_heads: int, fused_attn: bool = True):
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"hidden size {dim} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.fused_attn = fused_attn
        self.q = nn.Linear(dim, dim, bias=True)
        self.kv = nn.Linear(dim, 2 * dim, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        # (N, T, D) -> (N, heads, T, d)
        q = rearrange(self.q(x), "n t (h d) -> n h t d", h=self.num_heads)
        # (N, S, 2D) -> 2 x (N, heads, S, d)
        k, v = rearrange(self.kv(context), "n s (two h d) -> two n h s d", two=2, h=self.num_heads)
        out = F.scaled_dot_product_attention(q, k, v) if self.fused_attn else naive_attention(q, k, v)
        # (N, heads, T, d) -> (N, T, D)
        return self.proj(rearrange(out, "n h t d -> n t (h d)"))
