"""The capstone: the default digits DiT trained on your own code (chapter 6), sampled with your own
sampler and judged by the offline digits classifier (chapter 7).

Chapter 6's notebook calls ``train_my_dit()``: ``python -m minidit.train`` -- the default job, a
class-conditional DiT-P/2 on 8x8 digits -- with every graded function of chapters 1-6 taken from
``exercises/`` (the switch of ``minidit/impl.py``): your noise schedule, ``noisy_sample``, your
patch embedding, attention, embeddings, blocks and ``DiT.forward``, your loss, EMA, learning-rate
schedule and training step. Chapter 7's notebook calls ``sample_my_dit()``: 500 samples at
guidance 1.5 from the EMA weights with your chapters 1-7 (your respacing, ``p_sample`` and
``p_sample_loop``, classifier-free guidance), scored by the fraction the digits classifier assigns
to the requested class. minidit's own code scores about 0.99 on this job.

An exercise you have not done yet does not stop the capstone: minidit's reference runs in its
place, and the first lines printed name every such exercise. The same from the shell::

    python -m minidit.train --impl exercises:ch01-ch06 --results-dir results/capstone
    python -m minidit.sample --impl exercises:ch01-ch07 --num-samples 500 --out capstone.npz \\
        --ckpt results/capstone/000-DiT-P-2-digits/checkpoints/0004500.pt
    python -m minidit.evaluate capstone.npz --dataset digits

(from the shell an unfinished exercise stops the run with a message saying which one.)
``MINIDIT_SMOKE=1`` makes both tiny: a few training steps and a few samples, to check the wiring.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from minidit.diffusion import create_diffusion
from minidit.env import cache_dir, smoke
from minidit.generation import balanced_labels, generate, model_input_shape
from minidit.impl import ROOT, ImplSpec, parse_impl, restore_impl, use_impl
from minidit.metrics import class_accuracy, get_feature_extractor
from minidit.sample import load_for_sampling
from minidit.train import main as train_main
from minidit.training.checkpoint import list_checkpoints

# CI sizes: enough steps to run every piece, nothing more
SMOKE_TRAIN = ["--max-steps", "30", "--global-batch-size", "32", "--warmup-steps", "5", "--decay-steps", "30",
               "--ema-decay", "0.9", "--log-every", "10", "--ckpt-every", "30", "--grid-columns", "0",
               "--num-sampling-steps", "10", "--threads", "1"]
SMOKE_SAMPLES = 20
REFERENCE_ACCURACY = 0.99  # minidit's own code on the default job (benchmarks/default_quality.py)


def default_results_dir(smoke_mode: bool) -> Path:
    """``results/capstone`` in the repository; in smoke mode a scratch folder of the cache."""
    return cache_dir("capstone-smoke") if smoke_mode else ROOT / "results" / "capstone"


def _within(spec: str | ImplSpec, last: int) -> ImplSpec:
    """``spec`` restricted to chapters 1..``last`` (the training needs no chapter 7 and beyond)."""
    parsed = parse_impl(spec)
    if parsed.is_reference:
        return parsed
    return ImplSpec(parsed.name, parsed.folder, tuple(ch for ch in parsed.chapters if ch <= last))


def train_my_dit(impl: str = "exercises", smoke_mode: bool | None = None, results_dir: str | Path | None = None,
                 extra_args: list[str] | None = None) -> Path:
    """Train the default digits DiT with your chapters 1-6 (``impl``'s chapters up to 6); returns the run folder.

    Unfinished exercises fall back to minidit's reference (named in the first lines printed).
    ``smoke_mode`` (default: ``MINIDIT_SMOKE``) trains a few steps only; ``extra_args`` go to
    ``python -m minidit.train`` as they are (e.g. ``["--threads", "1"]``).
    """
    smoke_mode = smoke() if smoke_mode is None else smoke_mode
    results_dir = Path(results_dir) if results_dir is not None else default_results_dir(smoke_mode)
    spec = _within(impl, 6)
    args = ["--results-dir", str(results_dir)] + (SMOKE_TRAIN if smoke_mode else []) + list(extra_args or [])
    switch = use_impl(spec, on_stub="reference")
    start, cpu, threads = time.time(), time.process_time(), torch.get_num_threads()
    try:
        run_dir = train_main(args)
    finally:
        restore_impl(switch.previous)
        torch.set_num_threads(threads)  # --threads is for the run, not for the caller afterwards
    print(f"capstone: trained in {time.time() - start:.0f} s ({time.process_time() - cpu:.0f} s of CPU time) "
          f"on {spec}; the run folder is {run_dir}")
    return run_dir


def latest_checkpoint(results_dir: Path) -> Path | None:
    """The newest checkpoint of the newest run folder in ``results_dir`` (None: nothing trained yet)."""
    runs = sorted(p for p in Path(results_dir).glob("[0-9][0-9][0-9]-*") if p.is_dir()) if Path(results_dir).is_dir() else []
    for run in reversed(runs):
        checkpoints = list_checkpoints(run / "checkpoints")
        if checkpoints:
            return checkpoints[-1][1]
    return None


def sample_my_dit(impl: str = "exercises", smoke_mode: bool | None = None, results_dir: str | Path | None = None,
                  ckpt: str | Path | None = None, num_samples: int | None = None, cfg_scale: float = 1.5,
                  seed: int = 1) -> dict:
    """Sample the capstone model with your chapters 1-7 and judge the samples.

    Takes the newest checkpoint in ``results_dir`` (chapter 6's run; trained first if there is
    none) unless ``ckpt`` is given; draws ``num_samples`` class-balanced digits (500; smoke: 20)
    with the run's sampler settings at guidance ``cfg_scale`` from the EMA weights, and returns
    ``{"accuracy", "samples", "labels", "seconds", "cpu_seconds", "ckpt"}``; the accuracy is the
    fraction the offline digits classifier assigns to the requested class.
    """
    smoke_mode = smoke() if smoke_mode is None else smoke_mode
    results_dir = Path(results_dir) if results_dir is not None else default_results_dir(smoke_mode)
    ckpt = Path(ckpt) if ckpt is not None else latest_checkpoint(results_dir)
    if ckpt is None:
        print(f"capstone: no trained model in {results_dir} yet; training one first (chapter 6's train_my_dit)")
        train_my_dit(impl, smoke_mode, results_dir)
        ckpt = latest_checkpoint(results_dir)
    n = num_samples or (SMOKE_SAMPLES if smoke_mode else 500)
    spec = _within(impl, 7)
    switch = use_impl(spec, on_stub="reference")
    start, cpu = time.time(), time.process_time()
    try:
        model, args, vae = load_for_sampling(ckpt)
        diffusion = create_diffusion(str(args["num_sampling_steps"]), learn_sigma=args.get("learn_sigma", True))
        labels = balanced_labels(n, args["num_classes"])
        torch.manual_seed(seed)  # the sampler's per-step noise
        samples = generate(model, diffusion, labels, model_input_shape(args, vae), args["num_classes"],
                           cfg_scale=cfg_scale, generator=torch.Generator().manual_seed(seed))
    finally:
        restore_impl(switch.previous)
    seconds, cpu = time.time() - start, time.process_time() - cpu
    accuracy = class_accuracy(samples, labels, get_feature_extractor("digits"))  # minidit's own judge
    print(f"capstone: {n} samples ({args['num_sampling_steps']} DDPM steps, guidance {cfg_scale}) in "
          f"{seconds:.0f} s ({cpu:.0f} s of CPU time) with {spec}: class accuracy {accuracy:.3f} "
          f"(minidit's own code: about {REFERENCE_ACCURACY:.2f} after the full default job)")
    return dict(accuracy=accuracy, samples=samples, labels=labels, seconds=seconds, cpu_seconds=cpu, ckpt=ckpt)
