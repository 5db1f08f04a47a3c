"""One full training step -- diffusion loss, backward, AdamW, EMA -- with and without each speed-up.

The step makes the trainer's calls (``minidit.training.step.train_step``): ``diffusion_loss`` (t ~
U{0..999}, L_simple + L_vlb, bf16 autocast when asked), ``zero_grad -> backward -> AdamW step -> EMA
update``, with the optimizer and the EMA implementation swappable. Variants:

    baseline        fp32, eager, AdamW(foreach), EMA with torch._foreach ops (the trainer on CPU)
    naive-optim     AdamW as a per-tensor for-loop and a per-tensor EMA loop (the official code's way)
    fused-adamw     AdamW(fused=True) (the trainer's choice on CUDA)
    bf16            bf16 autocast, fp32 master weights, fp32 loss
    grad-ckpt       activation checkpointing per block (memory for compute)
    compile         torch.compile(model)
    bf16-fused      bf16 + fused AdamW, eager (``fast`` without compile: isolates what compile adds)
    fast            bf16 + compile + fused AdamW (what to use on a GPU)
    fast-ckpt       fast + gradient checkpointing (for a batch whose activations do not fit otherwise)
    official        the official train.py's per-step work: fp32, eager, AdamW(foreach), a per-tensor
                    EMA loop, and the Stable Diffusion VAE encoding the 8x larger images EVERY step
                    (an AutoencoderKL of SD's shape with random weights: the same cost, no download;
                    needs diffusers and --in-channels 4). The anchor to compare the fast path with.

Printed per variant: images/s (median), the median time ratio to the baseline (same repetition,
so the same load), peak memory, and on a GPU the MFU from ``count_gflops``. Memory: on CUDA
``max_memory_allocated`` during the variant's steps (variants run one after another there); on
CPU the peak resident-set growth of one step above the process's size before it (Linux VmHWM,
reset through /proc/self/clear_refs; freed heap returned with malloc_trim first) -- a good
estimate of the step's transient memory (activations, gradients, optimizer state on the first step).
On CPU the variants are interleaved (A B C ..., then reversed) because the machine is shared.

    python benchmarks/bench_train_step.py                       # CPU default: DiT-S/4, batch 8, no compile
    python benchmarks/bench_train_step.py --variants baseline compile   # + torch.compile (minutes to compile)
    python benchmarks/bench_train_step.py --model DiT-XL/2 --batch-size 32 --reps 10   # a GPU
"""
from __future__ import annotations

import argparse
import ctypes
from pathlib import Path

import torch

from _common import (build_model, emit, has_diffusers, interleaved, machine_line, median, paired_ratio, rss_mib, setup,
                     sync, table, timed)

from minidit.diffusion import create_diffusion
from minidit.flops import count_gflops, mfu, peak_tflops
from minidit.models import get_model
from minidit.training.ema import create_ema, ema_pairs, update_ema
from minidit.training.objective import diffusion_loss

VARIANTS = {
    # name: (precision, compile, grad checkpointing, optimizer implementation, EMA implementation)
    "baseline": ("fp32", False, False, "foreach", "foreach"),
    "naive-optim": ("fp32", False, False, "for-loop", "loop"),
    "fused-adamw": ("fp32", False, False, "fused", "foreach"),
    "bf16": ("bf16", False, False, "foreach", "foreach"),
    "grad-ckpt": ("fp32", False, True, "foreach", "foreach"),
    "compile": ("fp32", True, False, "foreach", "foreach"),
    "bf16-fused": ("bf16", False, False, "fused", "foreach"),
    "fast": ("bf16", True, False, "fused", "foreach"),
    "fast-ckpt": ("bf16", True, True, "fused", "foreach"),
    "official": ("fp32", False, False, "foreach", "loop"),
}
ENCODES_IMAGES = {"official"}  # variants that run the VAE encoder on images every step


def sd_shaped_vae(device: torch.device):
    """An ``AutoencoderKL`` with Stable Diffusion's layout (sd-vae-ft-ema's config: 4 levels of
    128/256/512/512 channels, 2 ResNet blocks each, 4 latent channels), randomly initialised."""
    from diffusers import AutoencoderKL  # optional dependency: only the "official" variant needs it

    with torch.device(device):
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
                            block_out_channels=(128, 256, 512, 512), norm_num_groups=32,
                            down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
    return vae.eval().requires_grad_(False)


def loop_ema(ema_params, params, decay):
    """The official code's EMA: one multiply and one add per tensor (2 x 300+ kernels on XL/2)."""
    with torch.no_grad():
        for e, p in zip(ema_params, params):
            e.mul_(decay).add_(p, alpha=1 - decay)


def build_step(name: str, args, device: torch.device):
    """Model, optimizer, EMA and inputs of one variant; returns a function doing one training step."""
    precision, compiled, ckpt, optim, ema_kind = VARIANTS[name]
    torch.manual_seed(0)
    model = build_model(args.model, device, input_size=args.input_size, in_channels=args.in_channels,
                        num_classes=args.num_classes, grad_checkpointing=ckpt)
    ema = create_ema(model)
    ema_list, param_list = ema_pairs(ema, model)
    params = [p for p in model.parameters() if p.requires_grad]
    kw = {"fused": dict(fused=True), "foreach": dict(foreach=True), "for-loop": dict(foreach=False)}[optim]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0, **kw)
    ema_update = update_ema if ema_kind == "foreach" else loop_ema
    net = torch.compile(model) if compiled else model
    diffusion = create_diffusion("", learn_sigma=True)
    g = torch.Generator(device="cpu").manual_seed(1)
    x = torch.randn(args.batch_size, args.in_channels, args.input_size, args.input_size, generator=g).to(device)
    encode = None
    if name in ENCODES_IMAGES:
        if args.in_channels != 4:
            raise SystemExit(f"variant {name!r} encodes images with a 4-channel VAE: use --in-channels 4")
        vae = sd_shaped_vae(device)
        side = 8 * args.input_size  # the VAE downsamples 8x: 32x32 latents <- 256x256 images
        # (N, 3, 8H, 8W) images in [-1, 1]
        images = (torch.rand(args.batch_size, 3, side, side, generator=g) * 2 - 1).to(device)

        def encode():
            with torch.no_grad():
                # z = 0.18215 * a sample of the VAE posterior, as the official loop does every step
                return vae.encode(images).latent_dist.sample().mul_(0.18215)
    y = torch.randint(0, args.num_classes, (args.batch_size,), generator=g).to(device)
    model.train()

    def step():
        losses = diffusion_loss(diffusion, net, x if encode is None else encode(), y, precision=precision)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        opt.step()
        ema_update(ema_list, param_list, 0.9999)

    return step, model


def _malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def first_steps(step, device: torch.device) -> tuple[float, float]:
    """Run the first step (compiles if needed) and a second one; returns (first step s, memory MiB).

    CUDA: ``max_memory_allocated`` over both steps (weights, EMA, optimizer state, activations).
    CPU: how far the resident set grows above its size before the SECOND step (the optimizer
    state exists by then), i.e. the step's activations and gradients.
    """
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        seconds = timed(step, device)
        step()
        sync(device)
        return seconds, torch.cuda.max_memory_allocated(device) / 2**20
    seconds = timed(step, device)
    _malloc_trim()
    ok = _reset_peak_rss()
    before = rss_mib()
    step()
    return seconds, (_peak_rss_mib() - before) if ok else float("nan")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="DiT-S/4")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--input-size", type=int, default=32)
    p.add_argument("--in-channels", type=int, default=4)
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--variants", nargs="+", default=None, choices=list(VARIANTS),
                   help="default: all on a GPU; on CPU those without compile or the VAE (each compile "
                        "takes a minute or more on a 2-core CPU: add them by name)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2,
                   help="untimed steps per variant, at least 2 (the first compiles, the second measures memory)")
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    p.add_argument("--interleave", action=argparse.BooleanOptionalAction, default=None,
                   help="alternate the variants (default: on CPU yes, on GPU no -- there each variant's "
                        "peak memory is measured alone and all variants need not fit at once)")
    p.add_argument("--peak-tflops", type=float, default=None)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    device = setup(args)
    if args.variants is None:
        args.variants = [v for v in VARIANTS if device.type == "cuda" or not (VARIANTS[v][1] or v in ENCODES_IMAGES)]
    if not has_diffusers() and any(v in ENCODES_IMAGES for v in args.variants):
        print(f"diffusers is not installed: leaving out {sorted(ENCODES_IMAGES)} (they need its AutoencoderKL)")
        args.variants = [v for v in args.variants if v not in ENCODES_IMAGES]
    interleave = args.interleave if args.interleave is not None else device.type != "cuda"
    with torch.device("meta"):
        gflops = count_gflops(get_model(args.model, input_size=args.input_size, in_channels=args.in_channels,
                                        num_classes=args.num_classes))
    emit(f"\n### Training step: {args.model}, batch {args.batch_size}, "
         f"{args.input_size}x{args.input_size}x{args.in_channels} input ({gflops:.2f} Gflops/image)\n\n"
         f"{machine_line(device, args.clock)}\n", args.out)

    steps, first, memory, times = {}, {}, {}, {}
    for name in args.variants:
        step, model = build_step(name, args, device)
        first[name], memory[name] = first_steps(step, device)
        print(f"{name}: first step {first[name]:.1f} s, peak memory {memory[name]:.0f} MiB", flush=True)
        if interleave:
            steps[name] = step
        else:
            times.update(interleaved({name: step}, device, args.reps, max(0, args.warmup - 2), args.clock))
            print(f"  {args.batch_size / median(times[name]):.2f} images/s", flush=True)
            del step, model
            if VARIANTS[name][1]:
                torch._dynamo.reset()  # drop the compiled graphs (and what they hold) before the next variant
            if device.type == "cuda":
                torch.cuda.empty_cache()
    if interleave:
        times = interleaved(steps, device, args.reps, max(0, args.warmup - 2), args.clock)
    rows = []
    base = "baseline" if "baseline" in times else args.variants[0]
    for name in args.variants:
        precision, compiled, ckpt, optim, ema_kind = VARIANTS[name]
        ips = args.batch_size / median(times[name])
        ratio = paired_ratio(times[name], times[base]) if interleave else median(times[name]) / median(times[base])
        peak = peak_tflops(device, precision, args.peak_tflops)
        util = None if peak is None else mfu(ips, gflops, peak)
        mem = "peak" if device.type == "cuda" else "RSS +"
        rows.append([name, precision, "yes" if compiled else "no", "yes" if ckpt else "no", optim, ema_kind,
                     ips, ratio, f"{mem} {memory[name]:,.0f} MiB", f"{first[name]:.1f}",
                     None if util is None else f"{100 * util:.1f}%"])
    emit(table(["variant", "precision", "compile", "grad ckpt", "AdamW", "EMA", "images/s",
                f"time / {base}", "memory (see above)", "first step s", "MFU"], rows) + "\n", args.out)


if __name__ == "__main__":
    main()
