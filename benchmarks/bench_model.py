"""Model throughput: minidit's DiT vs ``diffusers.DiTTransformer2DModel`` on the same weights.

For each configuration and precision both models (the diffusers one made by
``minidit.convert.to_diffusers``, so weights and outputs are identical) are timed on the same
inputs, INTERLEAVED: after warm-up, each repetition runs minidit and diffusers once, alternating
which goes first, so a load spike on this shared machine hits both. Printed per row: the median
images/s of each and the median over repetitions of the time ratio minidit / diffusers
(below 1.0 = minidit is faster). On a GPU the MFU (from ``count_gflops``) is printed too.

Modes: ``fwdbwd`` = training-mode forward + backward of a mean-square of the output (what a
training step costs, minus the optimizer); ``fwd`` = inference forward under ``torch.inference_mode``.
bf16 = autocast with fp32 weights (as the trainer does), on CPU too.

First it prints the hardware's own answer for each precision: the GFLOP/s of one plain matrix product
shaped like the first model's QKV projection (all tokens of the batch x hidden size, times hidden size x
3 hidden size). Whether bf16 can speed a DiT up on a machine is decided there, not in the model code: on
a 2-core Xeon with AVX-512 and avx512_bf16 but no AMX oneDNN's bf16 product is slower than MKL's fp32 one.

    python benchmarks/bench_model.py                                    # CPU default: DiT-S/2, batch 8
    python benchmarks/bench_model.py --models DiT-XL/2 DiT-B/4 --batch-size 64 --precision bf16 --reps 20
"""
from __future__ import annotations

import argparse

import torch

from _common import (build_model, emit, interleaved, machine_line, median, minidit_only_without_diffusers,
                     paired_ratio, setup, table)

from minidit.convert import to_diffusers
from minidit.env import autocast_context
from minidit.flops import count_gflops, mfu, peak_tflops
from minidit.models.configs import FAMILIES


def build_pair(name: str, args, device: torch.device):
    """A minidit model with random non-zero weights and its diffusers twin; checks they agree.

    Without diffusers (``--no-diffusers``, or not installed) the twin is None and diff is NaN.
    """
    torch.manual_seed(0)
    model = build_model(name, device, input_size=args.input_size, in_channels=args.in_channels,
                        num_classes=args.num_classes)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad and not p.any():
                p.normal_(0, 0.02)  # zero-initialised adaLN / final layer: make the check meaningful
    x = torch.randn(args.batch_size, args.in_channels, args.input_size, args.input_size, device=device)
    t = torch.randint(0, 1000, (args.batch_size,), device=device)
    y = torch.randint(0, args.num_classes, (args.batch_size,), device=device)
    dm, diff = None, float("nan")
    model.eval()
    if not args.no_diffusers:
        dm = to_diffusers(model).to(device).eval()
        with torch.no_grad():
            diff = (model(x, t, y) - dm(x, timestep=t, class_labels=y).sample).abs().max().item()
    return model, dm, (x, t, y), diff, count_gflops(model)


def matmul_ceiling(name: str, args, device: torch.device, clock: str) -> str:
    """GFLOP/s of one plain matmul per precision, shaped like ``name``'s QKV projection."""
    hidden = FAMILIES[name.split("-")[1].split("/")[0]][1]
    patch = int(name.split("/")[1])
    tokens = args.batch_size * (args.input_size // patch) ** 2
    parts = []
    for precision in args.precision:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        a = torch.randn(tokens, hidden, device=device, dtype=dtype)  # (N*T, D)
        b = torch.randn(hidden, 3 * hidden, device=device, dtype=dtype)  # (D, 3D)
        times = interleaved({precision: lambda: a @ b}, device, max(args.reps, 5), 2, clock)[precision]
        parts.append(f"{precision} {2 * tokens * hidden * 3 * hidden / median(times) / 1e9:,.0f}")
    return (f"plain matmul ({tokens} x {hidden}) @ ({hidden} x {3 * hidden}), GFLOP/s: " + ", ".join(parts)
            + ("" if device.type == "cuda" else f" ({torch.get_num_threads()} threads)"))


def step_fns(model, dm, inputs, mode: str, precision: str, device: torch.device):
    x, t, y = inputs

    def run_minidit():
        return model(x, t, y)

    def run_diffusers():
        return dm(x, timestep=t, class_labels=y).sample

    def make(run, module):
        if mode == "fwd":
            def f():
                with torch.inference_mode(), autocast_context(device, precision):
                    run()
        else:
            def f():
                with autocast_context(device, precision):
                    out = run()
                out.float().square().mean().backward()
                module.zero_grad(set_to_none=True)
        return f

    model.train(mode == "fwdbwd")
    fns = {"minidit": make(run_minidit, model)}
    if dm is not None:
        dm.train(mode == "fwdbwd")
        fns["diffusers"] = make(run_diffusers, dm)
    return fns


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["DiT-S/2"])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--modes", nargs="+", default=["fwdbwd", "fwd"], choices=["fwdbwd", "fwd"])
    p.add_argument("--input-size", type=int, default=32, help="latent side (32 = 256x256 images via the SD VAE)")
    p.add_argument("--in-channels", type=int, default=4)
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--reps", type=int, default=7, help="timed repetitions per model (after --warmup)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                   help="wall time, or this process's CPU time (steadier on a loaded machine; use --threads 1)")
    p.add_argument("--peak-tflops", type=float, default=None, help="override the GPU's peak bf16 TFLOP/s for MFU")
    p.add_argument("--out", default=None, help="also append the markdown table to this file")
    p.add_argument("--no-diffusers", action="store_true",
                   help="time minidit only (automatic when diffusers is not installed)")
    args = p.parse_args(argv)
    minidit_only_without_diffusers(args)
    device = setup(args)
    emit(f"\n### Model throughput, minidit vs diffusers (batch {args.batch_size}, "
         f"{args.input_size}x{args.input_size}x{args.in_channels} input)\n\n{machine_line(device, args.clock)}\n", args.out)
    emit(matmul_ceiling(args.models[0], args, device, args.clock) + "\n", args.out)
    rows = []
    for name in args.models:
        model, dm, inputs, diff, gflops = build_pair(name, args, device)
        print(f"{name}: {gflops:.2f} Gflops/image, max |minidit - diffusers| = {diff:.2e} (fp32, same weights)",
              flush=True)
        for precision in args.precision:
            peak = peak_tflops(device, precision, args.peak_tflops)
            for mode in args.modes:
                fns = step_fns(model, dm, inputs, mode, precision, device)
                times = interleaved(fns, device, args.reps, args.warmup, args.clock)
                ips = {k: args.batch_size / median(v) for k, v in times.items()}
                ratio = paired_ratio(times["minidit"], times["diffusers"]) if "diffusers" in times else None
                passes = 3 if mode == "fwdbwd" else 1
                util = None if peak is None else mfu(ips["minidit"], gflops, peak, passes=passes)
                rows.append([name, precision, "fwd+bwd" if mode == "fwdbwd" else "fwd",
                             ips["minidit"], ips.get("diffusers"), ratio,
                             None if util is None else f"{100 * util:.1f}%"])
                print(f"  {precision} {mode}: minidit {ips['minidit']:.2f} img/s"
                      + (f", diffusers {ips['diffusers']:.2f} img/s, time ratio {ratio:.3f}" if ratio else ""),
                      flush=True)
        del model, dm
        if device.type == "cuda":
            torch.cuda.empty_cache()
    emit(table(["model", "precision", "pass", "minidit img/s", "diffusers img/s",
                "time ratio minidit/diffusers (median)", "minidit MFU"], rows) + "\n", args.out)


if __name__ == "__main__":
    main()
