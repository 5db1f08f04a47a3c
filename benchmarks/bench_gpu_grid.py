"""Training throughput of each of the paper's 12 grid models (S, B, L, XL x patch 8, 4, 2) on one GPU.

``python -m minidit.experiments.scaling --gpu-grid`` estimates each run's time from counted FLOPs
and an assumed MFU. This script measures what the assumption stands for: one training step
(``bench_train_step``'s step: loss, backward, AdamW, EMA) of every grid model on the ImageNet-256
latents' shape (32x32x4, 1000 classes), at each ``--batch-sizes`` per GPU. Batch 32 is the global
batch 256 of the ``imagenet256`` preset split over 8 GPUs; batch 256 is the whole batch on one GPU.

The variant defaults to ``bf16-fused`` (bf16 autocast + fused AdamW, eager): twelve compilations
would take longer than all the measurements together. ``bench_train_step --variants fast bf16-fused``
on one model gives the factor compile adds on top.

    python benchmarks/bench_gpu_grid.py --device cuda --json grid.json --out table.md
    python -m minidit.experiments.scaling --gpu-grid --throughput grid.json   # the plan from these figures

The JSON file holds one row per model and batch size: ``model``, ``gflops``, ``batch_size``,
``images_per_second`` and ``mfu``, with the GPU's name, torch's version and the variant beside them.
"""
from __future__ import annotations

import argparse
import json
from types import SimpleNamespace

import torch

from _common import emit, interleaved, machine_line, median, setup, table
from bench_train_step import VARIANTS, build_step, first_steps

from minidit.experiments.gpu_grid import GRID_MODELS, forward_gflops
from minidit.flops import mfu, peak_tflops


def measure(model: str, batch_size: int, args, device: torch.device) -> tuple[float, float, float]:
    """(images/s, first step s, peak memory MiB) of one training step of ``model`` at ``batch_size``."""
    spec = SimpleNamespace(model=model, batch_size=batch_size, input_size=args.input_size, in_channels=4,
                           num_classes=args.num_classes)
    step, net = build_step(args.variant, spec, device)
    first, memory = first_steps(step, device)
    times = interleaved({model: step}, device, args.reps, max(0, args.warmup - 2))[model]
    del step, net
    if VARIANTS[args.variant][1]:
        torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return batch_size / median(times), first, memory


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(GRID_MODELS))
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[32, 256])
    p.add_argument("--variant", default="bf16-fused", choices=list(VARIANTS))
    p.add_argument("--input-size", type=int, default=32, help="latent side (32: ImageNet 256x256 through the VAE)")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--reps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--peak-tflops", type=float, default=None)
    p.add_argument("--out", default=None, help="append the markdown table to this file")
    p.add_argument("--json", default=None, help="write the figures to this JSON file")
    args = p.parse_args(argv)
    device = setup(args)
    precision = VARIANTS[args.variant][0]
    peak = peak_tflops(device, precision, args.peak_tflops)
    emit(f"\n### Training throughput of the grid models ({args.variant}, "
         f"{args.input_size}x{args.input_size}x4 latents)\n\n{machine_line(device)}\n", args.out)
    rows, records = [], []
    for model in args.models:
        gflops = forward_gflops(model, args.input_size, args.num_classes, True)
        for batch in args.batch_sizes:
            try:
                ips, first, memory = measure(model, batch, args, device)
            except torch.OutOfMemoryError:
                print(f"{model} at batch {batch}: out of memory, left out", flush=True)
                torch.cuda.empty_cache()
                continue
            util = None if peak is None else mfu(ips, gflops, peak)
            print(f"{model} batch {batch}: {ips:,.1f} images/s (first step {first:.1f} s, {memory:,.0f} MiB)",
                  flush=True)
            rows.append([model, f"{gflops:.2f}", batch, ips, None if util is None else f"{100 * util:.1f}%",
                         f"{memory:,.0f} MiB"])
            records.append(dict(model=model, gflops=round(gflops, 4), batch_size=batch,
                                images_per_second=round(ips, 2), mfu=None if util is None else round(util, 4)))
    emit(table(["model", "Gflops", "batch per GPU", "images/s", "MFU", "peak memory"], rows) + "\n", args.out)
    if args.json:
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        with open(args.json, "w") as f:
            json.dump(dict(device=name, torch=torch.__version__, variant=args.variant, precision=precision,
                           input_size=args.input_size, rows=records), f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
