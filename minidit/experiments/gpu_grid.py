"""The paper's full scaling grid on GPUs: 12 ``torchrun`` commands and what each one costs.

The paper's Figures 2 and 8 train 12 DiTs -- sizes S, B, L, XL x patch sizes 8, 4, 2 -- on
ImageNet 256x256 (SD-VAE latents, 32x32x4) with ONE recipe: AdamW lr 1e-4 constant, no weight
decay, batch 256, EMA 0.9999, learned sigma, class dropout 0.1, 400K steps. In minidit that recipe
is the ``imagenet256`` preset (minidit/training/presets.py) and only ``--model`` changes:

    torchrun --nproc_per_node 8 -m minidit.train --preset imagenet256 --model DiT-B/4 --latents DIR ...

``gpu_grid_plan`` builds the 12 commands, reads each one back through the trainer's own flag
parser (so the plan can only print commands ``minidit.train`` accepts, and it estimates what those
commands will actually run), and estimates the time from counted compute::

    training FLOPs      = 3 passes * 2 FLOPs per MAC * Gflops * 1e9 * batch * steps
    GPU-seconds         = training FLOPs / (peak FLOP/s * MFU)
    wall-clock seconds  = GPU-seconds / number of GPUs          (perfect data-parallel scaling)

Gflops are counted on the model itself (``minidit.flops.count_gflops``: 118.6 for DiT-XL/2, the
paper's Table 4). The MFU is an ASSUMPTION, and the estimate scales with 1 / MFU. Measured on one
H200, DiT-XL/2 reaches 43% with bf16 + compile + fused AdamW at batch 128 (``benchmarks/gpu_check.sh``),
so 40% is fair for it; the small models do not come near it (S/8: 0.36 Gflops per image, 1% even at
batch 256), so for them the counted estimate is a lower bound.

``throughput=`` replaces the assumption with measured images/s per model: the JSON file of
``benchmarks/bench_gpu_grid.py``, whose figures for one H200 are committed (``MEASURED_H200``: bf16
with fused AdamW, eager, per-GPU batches 32 -- the batch of 256 over 8 GPUs -- and 256). Those are
one GPU's speed: the estimate for several assumes the gradient all-reduce costs nothing, and a run
with ``--compile`` is faster than eager (1.3x for DiT-XL/2 at batch 64, measured).

    python -m minidit.experiments.scaling --gpu-grid --gpus 8 --gpu H100 --mfu 0.4 --latents DIR
    python -m minidit.experiments.scaling --gpu-grid --gpus 8 --throughput h200 --latents DIR
"""
from __future__ import annotations

import json
import shlex
from functools import lru_cache
from pathlib import Path

import torch

from minidit.flops import PEAK_TFLOPS_BF16, count_gflops, peak_throughput, peak_tflops_of, training_compute_gflops
from minidit.models import get_model
from minidit.training.config import resolve

from .cost import gpu_hours, latent_size

# The paper's grid, in its order: sizes S, B, L, XL, each at patch sizes 8, 4, 2 (Figure 2).
GRID_MODELS = tuple(f"DiT-{size}/{patch}" for size in ("S", "B", "L", "XL") for patch in (8, 4, 2))
PRESET = "imagenet256"
GPUS_PER_NODE = 8
# training images/s of each grid model on one H200, measured (benchmarks/bench_gpu_grid.py)
MEASURED_H200 = Path(__file__).resolve().parent / "results" / "gpu_throughput" / "h200.json"
MEASURED = {"h200": MEASURED_H200}  # names --throughput accepts besides a path


@lru_cache(maxsize=None)
def forward_gflops(model: str, input_size: int, num_classes: int, learn_sigma: bool) -> float:
    """Counted forward Gflops of one image of ``model`` on an ``input_size``-square 4-channel latent."""
    with torch.device("meta"):  # shapes only: no memory, no arithmetic
        net = get_model(model, input_size=input_size, in_channels=4, num_classes=num_classes, learn_sigma=learn_sigma)
    return count_gflops(net)


def load_throughput(source: str | Path) -> dict:
    """Measured training throughput: ``{"device", "variant", "ips": {(model, batch per GPU): images/s}}``
    from a ``bench_gpu_grid.py --json`` file (``source``: its path, or a name in ``MEASURED``)."""
    path = MEASURED.get(str(source).lower(), Path(source))
    if not path.is_file():
        raise ValueError(f"no throughput file {path}: write one with benchmarks/bench_gpu_grid.py --json FILE "
                         f"on the GPU, or name one of {', '.join(MEASURED)}")
    data = json.loads(path.read_text())
    ips = {(r["model"], r["batch_size"]): r["images_per_second"] for r in data["rows"]}
    return dict(device=data["device"], variant=data["variant"], ips=ips)


def torchrun_prefix(gpus: int) -> list[str]:
    """``torchrun`` for ``gpus`` GPUs: one node up to 8, else nodes of 8 (the same command on each)."""
    if gpus <= GPUS_PER_NODE:
        return ["torchrun", "--nproc_per_node", str(gpus)]
    if gpus % GPUS_PER_NODE:
        raise ValueError(f"--gpus {gpus}: more than {GPUS_PER_NODE} GPUs must be whole nodes of "
                         f"{GPUS_PER_NODE} (16, 24, 32, ...)")
    return ["torchrun", "--nnodes", str(gpus // GPUS_PER_NODE), "--node_rank", "$NODE_RANK", "--nproc_per_node",
            str(GPUS_PER_NODE), "--rdzv_backend", "c10d", "--rdzv_endpoint", "$MASTER_ADDR:29500"]


def train_argv(model: str, latents: str, steps: int | None = None, precision: str = "bf16",
               results_dir: str = "results/gpu-grid") -> list[str]:
    """The ``minidit.train`` flags of one grid point: the preset, the model and where things are.

    bf16 and compile change the speed, not the recipe (bf16 autocast keeps fp32 master weights);
    ``--max-steps`` appears only when it differs from the preset's 400K.
    """
    argv = ["--preset", PRESET, "--model", model, "--latents", latents]
    if steps is not None and steps != resolve(["--preset", PRESET]).max_steps:
        argv += ["--max-steps", str(steps)]
    if precision != "fp32":
        argv += ["--precision", precision, "--compile"]
    return argv + ["--results-dir", results_dir]


def gpu_grid_plan(gpus: int = 8, gpu: str = "H100", mfu: float = 0.4, steps: int | None = None,
                  latents: str = "/data/in256-latents", precision: str = "bf16",
                  results_dir: str = "results/gpu-grid", throughput: str | Path | None = None) -> list[dict]:
    """The 12 runs of the paper's grid (S, B, L, XL x 8, 4, 2), each with its command and time estimate.

    ``gpus`` GPUs called ``gpu`` (a name in ``minidit.flops.PEAK_TFLOPS_BF16``) train one model at a
    time at an assumed model FLOPs utilisation ``mfu``; ``steps`` (None: the preset's 400K) is the
    run length. ``throughput`` (a ``load_throughput`` source) takes each model's measured images/s
    at the per-GPU batch instead of the assumed MFU, and the GPU it was measured on instead of
    ``gpu``. Returns one dict per model, in the paper's order: ``model``, ``gflops`` (forward,
    counted), ``argv`` (the ``minidit.train`` flags), ``command`` (the full torchrun line),
    ``batch_size`` and ``steps`` (read back from the parsed command), ``train_flops``,
    ``images_per_second_per_gpu``, ``mfu`` (assumed, or that of the measured speed), ``gpu_hours``,
    ``wall_hours``, ``gpu`` and ``measured`` (the measured variant, or None when ``mfu`` is assumed).
    """
    measured = load_throughput(throughput) if throughput is not None else None
    if measured is not None:
        gpu = measured["device"]
    peak = peak_tflops_of(gpu, precision)
    if peak is None:
        raise ValueError(f"unknown GPU {gpu!r}: name one of {', '.join(PEAK_TFLOPS_BF16)}")
    if not 0 < mfu <= 1:
        raise ValueError(f"the assumed MFU must lie in (0, 1], got {mfu} (0.4 means 40%)")
    prefix = torchrun_prefix(gpus)
    plan = []
    for model in GRID_MODELS:
        argv = train_argv(model, latents, steps, precision, results_dir)
        config = resolve(argv)  # exactly what minidit.train will run
        if config.global_batch_size % gpus:
            raise ValueError(f"the global batch {config.global_batch_size} does not split over {gpus} GPUs; "
                             f"use a divisor of it (1, 2, 4, 8, 16, 32, ...)")
        gflops = forward_gflops(config.model, latent_size(config.image_size), config.num_classes, config.learn_sigma)
        # C = 3 * G * B * S in Gflops (multiply-accumulates); 2 FLOPs per MAC
        train_flops = 2 * training_compute_gflops(gflops, config.global_batch_size, config.max_steps) * 1e9
        if measured is None:
            # images/s of one GPU at the assumed MFU (peak_throughput is the 100%-MFU ceiling)
            ips, util = mfu * peak_throughput(gflops, peak), mfu
        else:
            per_gpu = config.global_batch_size // gpus
            if (model, per_gpu) not in measured["ips"]:
                have = sorted({b for m, b in measured["ips"] if m == model})
                raise ValueError(f"{model} was measured at per-GPU batches {have}, not {per_gpu} "
                                 f"({config.global_batch_size} over {gpus} GPUs): use --gpus "
                                 f"{' or '.join(str(config.global_batch_size // b) for b in have)}")
            ips = measured["ips"][(model, per_gpu)]
            util = ips / peak_throughput(gflops, peak)
        wall, total = gpu_hours(config.global_batch_size * config.max_steps, ips, gpus)
        # the prefix stays unquoted (its $NODE_RANK is for the shell to fill in); the flags are quoted
        command = " ".join(prefix + ["-m", "minidit.train", shlex.join(argv)])
        plan.append(dict(model=model, gflops=gflops, argv=argv, command=command, batch_size=config.global_batch_size,
                         steps=config.max_steps, train_flops=train_flops, images_per_second_per_gpu=ips,
                         mfu=util, gpu_hours=total, wall_hours=wall, gpu=gpu,
                         measured=None if measured is None else measured["variant"]))
    return plan


def format_plan(plan: list[dict], gpus: int, gpu: str, mfu: float) -> str:
    """The commands, then a markdown table of the estimates with the total (a plan from measured
    speeds names its GPU and variant itself)."""
    lines = [f"# The paper's 12-model grid, one recipe (--preset {PRESET}); run one after the other:", ""]
    lines += [row["command"] for row in plan]
    if plan[0]["measured"] is None:
        basis = (f"Estimated time on {gpus} x {gpu} at an ASSUMED {mfu:.0%} MFU (training FLOPs = 3 x 2 x forward "
                 f"Gflops x batch x steps; the times scale with 1 / MFU; the small models will not reach that "
                 f"MFU, so their times are lower bounds):")
    else:
        basis = (f"Estimated time on {gpus} x {plan[0]['gpu']} from the MEASURED images/s of one GPU "
                 f"({plan[0]['measured']}, eager; --compile is faster) at the per-GPU batch, with a free "
                 f"all-reduce:")
    lines += ["", basis, "",
              "| model | Gflops | training FLOPs | img/s per GPU | MFU | GPU-hours | wall hours |",
              "|---|---|---|---|---|---|---|"]
    for row in plan:
        lines.append(f"| {row['model']} | {row['gflops']:.2f} | {row['train_flops']:.3g} | "
                     f"{row['images_per_second_per_gpu']:,.0f} | {row['mfu']:.1%} | {row['gpu_hours']:,.1f} | "
                     f"{row['wall_hours']:,.1f} |")
    lines.append(f"| total | | {sum(r['train_flops'] for r in plan):.3g} | | | "
                 f"{sum(r['gpu_hours'] for r in plan):,.1f} | {sum(r['wall_hours'] for r in plan):,.1f} |")
    return "\n".join(lines)
