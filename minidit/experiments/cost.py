"""What training DiT at full size costs: latent size, FLOPs, utilisation, GPU-hours (chapter 13).

The paper's headline model, DiT-XL/2 at 256x256, runs on SD-VAE latents: 256 / 8 = 32, so the
transformer sees a 32x32x4 latent cut into 2x2 patches, T = 256 tokens. One forward pass costs
118.6 Gflops in the paper's convention, which counts multiply-accumulates (MACs; see
minidit/flops.py). Converting to the FLOPs a GPU's spec sheet counts::

    forward FLOPs per image   = 2 * 118.6e9             (one MAC = a multiply and an add)
    training FLOPs per image  = 3 * 2 * 118.6e9 = 712e9 (backward ~ 2x forward)

The paper trains for 400K steps at batch 256 (its scaling figures), i.e. 102.4M images seen.
These few functions turn such numbers into the two quantities that decide whether a run is
affordable: how well the GPU is used (MFU, computed in minidit/flops.py with the rest of the
compute accounting) and how many GPU-hours the run takes. Everything is plain arithmetic on Python
floats so it can be checked by hand.
"""
from __future__ import annotations

from minidit.flops import mfu, peak_throughput

# The paper's DiT-XL/2 at 256x256 (Table 4) and its training recipe (400K steps, batch 256).
DIT_XL2_GFLOPS = 118.6
PAPER_STEPS = 400_000
PAPER_BATCH = 256

# Throughput anchors for DiT-XL/2 at 256^2 (images/s per A100, as reported for each code base):
# the official train.py (fp32, VAE every step) and fast-DiT (fp16, pre-extracted latents,
# gradient checkpointing). Measured numbers of minidit on a GPU come from benchmarks/.
REFERENCE_THROUGHPUT = {
    "official train.py, A100, fp32": 26.0,
    "fast-DiT, A100, fp16 + latents": 107.0,
}


def latent_size(image_size: int, downsample_factor: int = 8) -> int:
    """Side of the VAE latent for a square ``image_size`` image: ``image_size / downsample_factor``.

    The SD VAE that DiT uses downsamples by 8 (256 -> 32, 512 -> 64). An image size that is not
    a multiple of the factor has no exact latent grid: raise ``ValueError`` naming both numbers and
    the nearest valid sizes (the multiples of the factor just below and above), so the user can
    resize. Non-positive sizes or factors are also a ``ValueError``.
    """
    # BEGIN SOLUTION ch13 difficulty=1 minutes=5
    if image_size <= 0 or downsample_factor <= 0:
        raise ValueError(f"image_size ({image_size}) and downsample_factor ({downsample_factor}) "
                         f"must be positive")
    if image_size % downsample_factor != 0:
        below = (image_size // downsample_factor) * downsample_factor
        above = below + downsample_factor
        raise ValueError(f"image_size={image_size} is not divisible by the VAE's downsample factor "
                         f"{downsample_factor}; resize to {below or above} or {above}")
    # I_latent = I_image / f
    return image_size // downsample_factor
    # END SOLUTION


def gpu_hours(num_images_seen: float, images_per_second_per_gpu: float, num_gpus: int = 1) -> tuple[float, float]:
    """How long a run takes: ``(wall_clock_hours, gpu_hours)``.

    With perfect data-parallel scaling ``num_gpus`` GPUs process
    ``num_gpus * images_per_second_per_gpu`` images per second, so::

        wall_clock_hours = num_images_seen / (num_gpus * images_per_second_per_gpu) / 3600
        gpu_hours        = wall_clock_hours * num_gpus

    GPU-hours (what a cluster bills) do not depend on ``num_gpus``; the wall clock does. Raise
    ``ValueError`` if the throughput or ``num_gpus`` is not positive.
    """
    # BEGIN SOLUTION ch13 difficulty=1 minutes=10
    if images_per_second_per_gpu <= 0 or num_gpus < 1:
        raise ValueError(f"need images_per_second_per_gpu > 0 and num_gpus >= 1, got "
                         f"{images_per_second_per_gpu} and {num_gpus}")
    wall = num_images_seen / (num_gpus * images_per_second_per_gpu) / 3600.0
    return wall, wall * num_gpus
    # END SOLUTION


def cost_table(gflops_per_image: float = DIT_XL2_GFLOPS, steps: int = PAPER_STEPS,
               batch_size: int = PAPER_BATCH, num_gpus: int = 8,
               throughputs: dict[str, float] | None = None, peak_tflops: float = 989.0) -> list[dict]:
    """One row per throughput: MFU (against ``peak_tflops``), wall-clock hours and GPU-hours.

    Defaults: the paper's DiT-XL/2 run (400K steps x batch 256) on 8 GPUs, the reference
    throughputs above plus the 100%-MFU ceiling and a 40%-MFU target on an H100 (989 TFLOP/s
    dense bf16). Note the A100 rows are compared with the H100's peak only to put them on one
    scale; on an A100 (312 TFLOP/s bf16) their MFU is ~3x higher.
    """
    images = steps * batch_size
    if throughputs is None:
        ceiling = peak_throughput(gflops_per_image, peak_tflops)
        throughputs = dict(REFERENCE_THROUGHPUT)
        throughputs["40% MFU on an H100 (a good target)"] = 0.4 * ceiling
        throughputs["100% MFU on an H100 (ceiling)"] = ceiling
    rows = []
    for name, ips in throughputs.items():
        wall, total = gpu_hours(images, ips, num_gpus)
        rows.append(dict(setup=name, images_per_second_per_gpu=ips,
                         mfu_vs_peak=mfu(ips, gflops_per_image, peak_tflops),
                         wall_clock_hours=wall, gpu_hours=total))
    return rows
