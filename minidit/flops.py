"""Counting a DiT's compute in the paper's convention (Gflops, Table 4 / Figure 6).

The paper measures model complexity in "Gflops" of ONE forward pass for one image, counting
multiply-accumulates (MACs) of the layers that do matrix products: every linear layer, the patch
convolution, and the two attention matmuls ``Q K^T`` and ``A V``. Softmax, LayerNorm, activations
and additions are not counted (they are negligible, and the fvcore counter the authors used does the
same). So DiT-XL/2's "118.6 Gflops" are 118.6e9 multiply-adds ~= 237e9 floating-point operations.

Per block, with ``T`` tokens of width ``D`` (the dominant term of the whole model)::

    qkv 3TD^2 + attention 2T^2D + proj TD^2 + MLP 2*T*D*(4D) + adaLN 6D^2

``count_gflops`` measures a real model instead of trusting the formula: it builds an empty copy
on PyTorch's ``meta`` device (shapes only, no memory, no arithmetic), runs one forward pass with
hooks that add up the MACs of every Linear, Conv2d and attention layer, and so works for every
configuration and conditioning variant.
"""
from __future__ import annotations

import torch
from torch import nn

from .models.attention import Attention, CrossAttention


def num_patches(input_size: int, patch_size: int) -> int:
    """Number of tokens ``T = (I / p)^2`` for an ``I x I`` input cut into ``p x p`` patches.

    Raise ``ValueError`` if ``input_size`` is not divisible by ``patch_size``.
    """
    # BEGIN SOLUTION ch05
    if input_size % patch_size != 0:
        raise ValueError(f"input_size={input_size} is not divisible by patch_size={patch_size}")
    # T = (I / p)^2
    return (input_size // patch_size) ** 2
    # END SOLUTION


def block_gflops(hidden_size: int, num_tokens: int, mlp_ratio: float = 4.0) -> float:
    """Gflops (10^9 multiply-accumulates) of one adaLN-Zero DiT block for one image, by hand.

    With ``D = hidden_size``, ``T = num_tokens`` and MLP width ``H = int(D * mlp_ratio)``, count:
    the qkv projection ``T*D*3D``, the attention matmuls ``Q K^T`` (``T*T*D``) and ``A V``
    (``T*T*D``), the output projection ``T*D*D``, the MLP ``T*D*H + T*H*D``, and the adaLN
    modulation ``D*6D`` (once per image, not per token). Return the sum divided by 1e9.
    """
    # BEGIN SOLUTION ch05
    D, T, H = hidden_size, num_tokens, int(hidden_size * mlp_ratio)
    qkv = T * D * 3 * D
    attention = 2 * T * T * D      # Q K^T and A V
    proj = T * D * D
    mlp = T * D * H + T * H * D    # fc1 and fc2
    adaln = D * 6 * D              # one modulation vector per image
    return (qkv + attention + proj + mlp + adaln) / 1e9
    # END SOLUTION


def count_macs(model: nn.Module, *inputs: torch.Tensor) -> int:
    """Multiply-accumulates of ``model(*inputs)`` (Linear, Conv2d, attention matmuls), summed."""
    total = 0

    def linear_hook(module, args, out):
        nonlocal total
        # every output element costs in_features multiply-adds
        total += out.numel() * module.in_features

    def conv_hook(module, args, out):
        nonlocal total
        kh, kw = module.kernel_size
        total += out.numel() * (module.in_channels // module.groups) * kh * kw

    def attention_hook(module, args, out):
        nonlocal total
        x = args[0]
        context = args[1] if len(args) > 1 else x
        n, t_q, d = x.shape
        t_k = context.shape[1]
        # Q K^T: (t_q x d) @ (d x t_k), A V: (t_q x t_k) @ (t_k x d), per image, all heads together
        total += 2 * n * t_q * t_k * d

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
        elif isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, (Attention, CrossAttention)):
            handles.append(m.register_forward_hook(attention_hook))
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
    return total


def count_gflops(model: nn.Module) -> float:
    """Forward Gflops of a minidit ``DiT`` for ONE image, in the paper's convention.

    The counting pass runs on a ``meta``-device copy built from ``model.config`` (or on the model
    itself if it already lives on ``meta``), so it is fast even for DiT-XL/2 and never touches real
    weights. Counts in multiply-accumulates (see the
    module docstring), e.g. 118.6 for DiT-XL/2.
    """
    config = getattr(model, "config", None)
    if config is None:
        raise ValueError("count_gflops expects a minidit DiT (it reads model.config); "
                         f"got {type(model).__name__}")
    from .models.dit import DiT

    with torch.device("meta"):
        on_meta = all(p.device.type == "meta" for p in model.parameters())
        shadow = model if on_meta else DiT(**config)
        size = config["input_size"]
        x = torch.empty(1, config["in_channels"], size, size)
        t = torch.zeros(1)
        y = torch.zeros(1, dtype=torch.long)
    was_training = shadow.training
    shadow.eval()
    try:
        return count_macs(shadow, x, t, y) / 1e9
    finally:
        shadow.train(was_training)
