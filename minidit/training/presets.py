"""Named training recipes: each one only the flags where it departs from the defaults.

``python -m minidit.train --preset NAME`` starts from the defaults (``TrainConfig`` in
config.py: the official ``train.py``'s values), changes what ``PRESETS[NAME]`` names, and every
flag given on the command line changes it again. With no arguments at all the ``digits`` preset
runs. A key is the flag's name with ``_`` for ``-`` (``global_batch_size`` is
``--global-batch-size``).
"""
from __future__ import annotations

DEFAULT_PRESET = "digits"
OFFICIAL_PRESET = "official"  # what a command line with --data-path and no --preset runs

# The small offline data sets both have 10 classes, live in memory (no DataLoader workers) and
# train for a fixed number of steps (``max_steps``; ``epochs`` only has to be out of the way);
# their sample grids use 100 respaced DDPM steps instead of 250 (time budget).
_SMALL = dict(num_classes=10, epochs=100_000, ckpt_every=1000, num_workers=0, num_sampling_steps=100)

# The procedural 32x32 RGB shapes, in latent or pixel space (the two presets below).
_SHAPES = dict(_SMALL, dataset="shapes", image_size=32, global_batch_size=64, lr=5e-4, warmup_steps=200,
               ema_decay=0.999, max_steps=5000, sample_every=1000)

# The paper's ImageNet 256x256 recipe (Peebles & Xie section 4 and the official train.py), which the
# defaults already are: DiT-XL/2 on SD-VAE latents (ft-EMA decoder, 32x32x4 for 256x256 images),
# learned sigma, class dropout 0.1, AdamW lr 1e-4, no weight decay, no warm-up, constant lr, global
# batch 256, EMA decay 0.9999, random horizontal flips, logging and checkpoint cadence of the
# official script. The presets add the length: 400K steps (the paper's Table 4 and its scaling
# plots; its best XL/2 model trains for 7M), a kept milestone and a sample grid every 50K steps.
# fp32 is the paper's precision; add --precision bf16 --compile to train faster.
_IMAGENET256 = dict(max_steps=400_000, milestone_every=50_000, sample_every=50_000)

PRESETS: dict[str, dict] = {
    # The official train.py as it is: the defaults unchanged (DiT-XL/2 on 256x256 ImageFolder
    # images through the SD VAE (ft-EMA), 1000 classes, AdamW lr 1e-4 without weight decay, global
    # batch 256, EMA 0.9999, flips, 1400 epochs). ``--model DiT-S/8 --data-path DIR`` without a
    # preset runs this, as the same command line does with the official script.
    OFFICIAL_PRESET: dict(),
    # The paper's ImageNet 256x256 recipe for any model (``--model DiT-B/4``): the scaling grid of
    # Figures 2 and 8 (S, B, L, XL x patch 8, 4, 2) trains all 12 models with it, and
    # ``python -m minidit.experiments.scaling --gpu-grid`` prints those 12 commands.
    "imagenet256": dict(_IMAGENET256),
    # The same recipe under the name of its headline model (DiT-XL/2 is the default model).
    "imagenet256-xl2": dict(_IMAGENET256),
    # THE DEFAULT: a small DiT on sklearn's 8x8 digits, pixel space, class conditional, learned
    # sigma -- trains and samples in under 3 minutes on 2 CPU cores. benchmarks/default_quality.py
    # measures it (idle 2-core machine: 137 s wall; 500 samples at guidance 1.5: 99.2% classified
    # as the requested digit by an independent SVM, 98.8% by minidit's digits classifier,
    # within-class diversity 0.82 of the real digits'; 3,000 steps gave only 97.4% / 97.0%).
    # Why it differs from the paper:
    # * DiT-P/2 (2 blocks, width 64, 181K parameters): 8x8 pixels / patch 2 = 16 tokens. In the
    #   time budget, many cheap steps beat fewer steps of a wider model.
    # * lr 2e-3 with a 100-step warm-up and a cosine decay to 1e-5 over the run: we have 4,500
    #   steps, not 400K; the decay does for a short run what the EMA does for a long one.
    # * EMA decay 0.995: the EMA averages roughly the last 1 / (1 - decay) = 200 steps. With the
    #   paper's 0.9999 the average would reach back ~10,000 steps -- twice the whole run --
    #   so the EMA weights would still be mostly the random initialisation.
    # * no flips: a mirrored digit is not the same digit (a mirrored 3 is an E-like shape).
    # * the sample grid at the measured guidance 1.5 (the paper's figures use 4.0).
    "digits": dict(
        _SMALL, model="DiT-P/2", dataset="digits", image_size=8, vae=None, flip=False, global_batch_size=128,
        lr=2e-3, warmup_steps=100, decay_steps=4500, min_lr=1e-5, ema_decay=0.995, max_steps=4500,
        cfg_scale=1.5,
    ),
    # Latent diffusion offline: the shapes through minidit's tiny from-scratch autoencoder
    # (minidit/autoencoder.py); the DiT sees its 4x4x4 latent grid (f = 8), patch 1 -> 16 tokens.
    "shapes-latent": dict(_SHAPES, model="DiT-T/1", vae="tiny"),
    # The same shapes in pixel space (no autoencoder): 32x32x3 with patch 4 -> 64 tokens.
    "shapes-pixel": dict(_SHAPES, model="DiT-T/4", vae=None),
}
