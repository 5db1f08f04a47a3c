"""Sampling throughput: images/s for 250 DDPM steps with classifier-free guidance, and DDIM 50.

minidit's DiT and ``diffusers.DiTTransformer2DModel`` (same weights, via ``to_diffusers``) run
the same sampler (``minidit.diffusion.sample_with_guidance``: the official recipe, one model
call per step on the doubled conditional/unconditional batch), interleaved, so the ratio
compares the networks under the same load. Images/s counts the guided images returned (the
doubled batch is an implementation detail of guidance).

    python benchmarks/bench_sampling.py                      # CPU default: DiT-S/8, 4 images
    python benchmarks/bench_sampling.py --model DiT-XL/2 --num-samples 64 --precision bf16   # a GPU
"""
from __future__ import annotations

import argparse

import torch
from torch import nn

from _common import (build_model, emit, interleaved, machine_line, median, minidit_only_without_diffusers,
                     paired_ratio, setup, table)

from minidit.convert import to_diffusers
from minidit.diffusion import create_diffusion, guided_forward, sample_with_guidance
from minidit.env import autocast_context


class DiffusersAsDiT(nn.Module):
    """``model(x, t, y)`` and ``forward_with_cfg`` around a diffusers DiT (the sampler's interface)."""

    def __init__(self, dm, num_classes: int, in_channels: int):
        super().__init__()
        self.dm, self.num_classes, self.in_channels = dm, num_classes, in_channels

    def forward(self, x, t, y):
        return self.dm(x, timestep=t, class_labels=y).sample

    def forward_with_cfg(self, x, t, y, cfg_scale):
        # the official (and minidit's default) channel choice, so both models do the same work
        return guided_forward(self, x, t, y, cfg_scale, guide_channels=3 if self.in_channels == 4 else None)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="DiT-S/8")
    p.add_argument("--num-samples", type=int, default=4, help="guided images per run (the model sees twice as many)")
    p.add_argument("--input-size", type=int, default=32)
    p.add_argument("--in-channels", type=int, default=4)
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--cfg-scale", type=float, default=4.0)
    p.add_argument("--samplers", nargs="+", default=["ddpm250", "ddim50"], choices=["ddpm250", "ddim50"])
    p.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    p.add_argument("--no-diffusers", action="store_true", help="time minidit only")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1, help="warm-up runs of 5 steps each")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    device = setup(args)
    minidit_only_without_diffusers(args)
    torch.manual_seed(0)
    model = build_model(args.model, device, input_size=args.input_size, in_channels=args.in_channels,
                        num_classes=args.num_classes)
    with torch.no_grad():
        for prm in model.parameters():
            if prm.requires_grad and not prm.any():
                prm.normal_(0, 0.02)
    models = {"minidit": model.eval()}  # built on the device already
    if not args.no_diffusers:
        models["diffusers"] = DiffusersAsDiT(to_diffusers(model).to(device).eval(), args.num_classes,
                                             args.in_channels)
    shape = (args.num_samples, args.in_channels, args.input_size, args.input_size)
    labels = torch.arange(args.num_samples, device=device) % args.num_classes
    noise = torch.randn(*shape, device=device)
    emit(f"\n### Sampling: {args.model}, {args.num_samples} images of {args.input_size}x{args.input_size}x"
         f"{args.in_channels}, guidance {args.cfg_scale}\n\n{machine_line(device, args.clock)}\n", args.out)
    rows = []
    for precision in args.precision:
        for spec in args.samplers:
            kind, steps = ("ddpm", spec[4:]) if spec.startswith("ddpm") else ("ddim", spec[4:])
            diffusion = create_diffusion(steps)
            warm = create_diffusion("5")

            def make(net, diff):
                def run():
                    with autocast_context(device, precision):
                        sample_with_guidance(diff, net, labels, args.cfg_scale, shape, sampler=kind, noise=noise)
                return run

            for _ in range(args.warmup):
                for net in models.values():
                    make(net, warm)()
            times = interleaved({k: make(net, diffusion) for k, net in models.items()}, device,
                                args.reps, 0, args.clock)
            ips = {k: args.num_samples / median(v) for k, v in times.items()}
            ratio = paired_ratio(times["minidit"], times["diffusers"]) if "diffusers" in times else None
            rows.append([f"{kind.upper()} {steps} steps, cfg {args.cfg_scale}", precision, ips["minidit"],
                         ips.get("diffusers"), ratio, median(times["minidit"])])
            print(rows[-1], flush=True)
    emit(table(["sampler", "precision", "minidit img/s", "diffusers img/s", "time ratio minidit/diffusers",
                "minidit s per batch"], rows) + "\n", args.out)


if __name__ == "__main__":
    main()
