"""GPU correctness checks that CPU CI cannot run (called by gpu_check.sh; not timed).

1. minidit == diffusers on the GPU (fp32, TF32 off): max |diff| <= 1e-4.
2. bf16 autocast vs fp32: relative error of the output < 5% (bf16 has 8 mantissa bits).
3. torch.compile(model) == eager (fp32, TF32 off) to 1e-4, forward and the input gradient.
4. No host-device synchronisation in a training step: forward + loss + backward + fused AdamW +
   EMA run under ``torch.cuda.set_sync_debug_mode("error")`` (any ``.item()``, ``nonzero`` or
   CPU copy raises).
5. Gradient checkpointing gives the same gradients as the plain backward.

Prints one line per check and exits non-zero if any fails. ``--device cpu`` runs 1-3 and 5 on
tiny sizes (the dry run of gpu_check.sh).
"""
from __future__ import annotations

import argparse
import sys

import torch

from _common import build_model, has_diffusers

from minidit.convert import to_diffusers
from minidit.diffusion import create_diffusion
from minidit.env import pick_device
from minidit.training.ema import create_ema, ema_pairs, update_ema
from minidit.training.objective import diffusion_loss
from minidit.training.optim import create_optimizer


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default=None)
    p.add_argument("--model", default="DiT-B/4")
    p.add_argument("--input-size", type=int, default=32)
    p.add_argument("--in-channels", type=int, default=4)
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--no-compile", action="store_true")
    args = p.parse_args(argv)
    device = pick_device(args.device)
    if device.type == "cuda":  # exact fp32 for the comparisons (the trainer allows TF32)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    results = []

    def check(name, ok, detail):
        results.append(ok)
        print(f"[{'PASS' if ok else 'FAIL'}] {name}: {detail}", flush=True)

    torch.manual_seed(0)
    kw = dict(input_size=args.input_size, in_channels=args.in_channels, num_classes=args.num_classes)
    model = build_model(args.model, device, **kw)
    with torch.no_grad():
        for prm in model.parameters():
            if prm.requires_grad and not prm.any():
                prm.normal_(0, 0.02)
    model = model.to(device).eval()
    n = args.batch_size
    x = torch.randn(n, args.in_channels, args.input_size, args.input_size, device=device)
    t = torch.randint(0, 1000, (n,), device=device)
    y = torch.randint(0, args.num_classes, (n,), device=device)
    with torch.no_grad():
        ref = model(x, t, y)
    if has_diffusers():
        with torch.no_grad():
            dm = to_diffusers(model).to(device).eval()
            diff = (dm(x, timestep=t, class_labels=y).sample - ref).abs().max().item()
            del dm
        check("minidit == diffusers", diff <= 1e-4, f"max |diff| {diff:.2e} (fp32)")
    else:
        print("[SKIP] minidit == diffusers: diffusers is not installed (carry its wheel: gpu_check.sh)", flush=True)

    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
        low = model(x, t, y).float()
    rel = ((low - ref).norm() / ref.norm()).item()
    check("bf16 autocast ~ fp32", rel < 0.05, f"relative error {rel:.2e}")

    if not args.no_compile:
        compiled = torch.compile(model)
        xg = x.clone().requires_grad_(True)
        out_c = compiled(xg, t, y)
        g_c, = torch.autograd.grad(out_c.square().mean(), xg)
        xe = x.clone().requires_grad_(True)
        out_e = model(xe, t, y)
        g_e, = torch.autograd.grad(out_e.square().mean(), xe)
        d_out = (out_c - out_e).abs().max().item()
        d_grad = ((g_c - g_e).norm() / g_e.norm()).item()
        check("torch.compile == eager", d_out <= 1e-4 and d_grad <= 1e-3,
              f"max |out diff| {d_out:.2e}, relative grad diff {d_grad:.2e}")

    ckpt_model = build_model(args.model, device, grad_checkpointing=True, **kw)
    ckpt_model.load_state_dict(model.state_dict())
    grads = []
    for net in (model, ckpt_model):
        net.train()
        torch.manual_seed(1)  # same label dropout in both
        net.zero_grad(set_to_none=True)
        net(x, t, y).square().mean().backward()
        grads.append(torch.cat([q.grad.flatten() for q in net.parameters() if q.grad is not None]))
    gdiff = ((grads[0] - grads[1]).norm() / grads[0].norm()).item()
    check("grad checkpointing == plain backward", gdiff <= 1e-5, f"relative grad diff {gdiff:.2e}")
    del ckpt_model, grads

    if device.type == "cuda":
        model.train()
        diffusion = create_diffusion("", learn_sigma=True)
        opt = create_optimizer(model, lr=1e-4)
        ema = create_ema(model)
        ema_list, param_list = ema_pairs(ema, model)

        def step():
            losses = diffusion_loss(diffusion, model, x, y, precision="bf16")
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            opt.step()
            update_ema(ema_list, param_list, 0.9999)

        step()  # the first step allocates optimizer state
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            step()
            ok, detail = True, "bf16 loss + backward + fused AdamW + foreach EMA ran with sync debug mode 'error'"
        except RuntimeError as e:
            ok, detail = False, f"a host-device sync: {str(e).splitlines()[0]}"
        finally:
            torch.cuda.set_sync_debug_mode(0)
        check("no host-device sync in the training step", ok, detail)
    print(f"{sum(results)}/{len(results)} checks passed", flush=True)
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
