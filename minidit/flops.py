"""A DiT's compute in the paper's convention, in one place: Gflops, training and sampling compute, MFU.

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

From the Gflops of one forward pass follow the other compute figures minidit reports: the
training compute of a run (the paper's Figure 9), the sampling compute per image (Figure 10),
and the model FLOPs utilisation (MFU) of a GPU, with the dense peak throughput of common GPUs.
One multiply-accumulate is 2 FLOPs, and a backward pass costs about twice the forward, so a
training step costs 3 forward passes::

    training compute  = 3 * Gflops * batch * steps                 (Gflops, the paper's unit)
    MFU               = images/s * 3 * 2 * Gflops * 1e9 / peak FLOP/s
"""
from __future__ import annotations

import torch
from torch import nn

from .models.attention import Attention, CrossAttention
from .models.dit import DiT

# Dense peak TFLOP/s by device name (bf16 tensor cores; fp32 runs use TF32, half of it), from the
# vendors' data sheets. Used for MFU; the trainer's and benchmarks' --peak-tflops override it.
# The most specific names come first ("H100 SXM" before "H100").
PEAK_TFLOPS_BF16 = {
    "H200": 989.0, "H100 SXM": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.0,
    "GH200": 989.0, "B200": 2250.0, "A100": 312.0, "A800": 312.0, "L40S": 362.0, "L40": 181.0,
    "L4": 121.0, "A10G": 70.0, "A10": 125.0, "RTX 4090": 165.0, "RTX 3090": 71.0, "V100": 125.0,
    "T4": 65.0,
}


# ------------------------------------------------------------------------------ one forward pass


def num_patches(input_size: int, patch_size: int) -> int:
    """Number of tokens ``T = (I / p)^2`` for an ``I x I`` input cut into ``p x p`` patches.

    Raise ``ValueError`` if ``input_size`` is not divisible by ``patch_size``.
    """
    # BEGIN SOLUTION ch05 difficulty=1 minutes=5
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
    # BEGIN SOLUTION ch05 difficulty=2 minutes=20
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


# ------------------------------------------------------------------------------ a run's compute

def training_compute_gflops(gflops_per_image: float, batch_size: int, steps: int) -> float:
    """Total training compute in the paper's units (Figure 9): ``Gflops x batch x steps x 3``.

    ``gflops_per_image`` is the forward cost of one image (``count_gflops``). A training step runs
    the forward pass and the backward pass, and the backward pass costs about twice the forward
    (gradients with respect to both the activations and the weights), hence the factor 3.
    Returns a float in Gflops (multiply-accumulates, the paper's convention).
    """
    # BEGIN SOLUTION ch12 difficulty=1 minutes=10
    # C_train = 3 * G * B * S  (forward + backward ~ 3 forward passes per image)
    return 3.0 * gflops_per_image * batch_size * steps
    # END SOLUTION


def sampling_compute_gflops(gflops_per_image: float, num_steps: int, cfg: bool = True) -> float:
    """Gflops to sample ONE image with ``num_steps`` denoising steps (the paper's Figure 10 x-axis).

    Every step runs the model once; with classifier-free guidance (``cfg=True``) the model runs on
    a doubled batch (conditional + unconditional half), so each step costs two forward passes.
    Returns ``gflops_per_image * num_steps * (2 if cfg else 1)`` as a float.
    """
    # BEGIN SOLUTION ch12 difficulty=1 minutes=10
    passes = 2 if cfg else 1
    return float(gflops_per_image) * num_steps * passes
    # END SOLUTION


# ------------------------------------------------------------------------------ utilisation

def mfu(images_per_second: float, gflops_per_image: float, peak_tflops: float, passes: int = 3) -> float:
    """Model FLOPs utilisation: the fraction of the GPU's peak the model really uses.

    ``gflops_per_image`` is the paper's forward Gflops (multiply-accumulates, 118.6 for DiT-XL/2).
    A MAC is 2 FLOPs and a training step costs ``passes = 3`` forward passes (the backward pass ~
    2x the forward; ``passes=1`` measures a forward pass alone, as in sampling), so::

        MFU = images_per_second * passes * 2 * gflops_per_image * 1e9 / (peak_tflops * 1e12)

    Returns a float (0.4 means 40%). ``peak_tflops`` is the dense peak of the precision used
    (989 for an H100 SXM in bf16). Raise ``ValueError`` if ``peak_tflops`` is not positive.
    """
    # BEGIN SOLUTION ch13 difficulty=1 minutes=10
    if peak_tflops <= 0:
        raise ValueError(f"peak_tflops must be positive, got {peak_tflops}")
    # FLOP/s achieved = images/s * passes (3: fwd + bwd) * 2 (FLOPs per MAC) * Gflops * 1e9
    achieved = images_per_second * passes * 2 * gflops_per_image * 1e9
    return achieved / (peak_tflops * 1e12)
    # END SOLUTION


def peak_throughput(gflops_per_image: float, peak_tflops: float) -> float:
    """Training images/s at 100% MFU: the physical ceiling (``mfu`` is linear in the throughput)."""
    return 1.0 / mfu(1.0, gflops_per_image, peak_tflops)


def peak_tflops(device: torch.device, precision: str, override: float | None = None) -> float | None:
    """The device's dense peak TFLOP/s for ``precision``, or None when unknown (CPU included)."""
    if override:
        return float(override)
    if device.type != "cuda":
        return None
    return peak_tflops_of(torch.cuda.get_device_name(device), precision)


def peak_tflops_of(name: str, precision: str = "bf16") -> float | None:
    """The dense peak TFLOP/s of the GPU called ``name`` ("H100", "NVIDIA A100-SXM4-80GB"), or None."""
    for key, tflops in PEAK_TFLOPS_BF16.items():
        if key in name:
            # fp32 matmuls run on TF32 tensor cores (allowed by configure_torch): half the bf16 rate
            return tflops if precision == "bf16" else tflops / 2
    return None
