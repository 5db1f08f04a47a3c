"""Latents vs pixels at equal training compute (chapter 9): ``python -m minidit.experiments.latent``.

The paper trains DiT in the latent space of a pretrained VAE (section 3.2) because it is the
cheaper place to spend compute: a 256x256x3 image is 196,608 numbers, its SD latent 4,096, and
the transformer's cost grows with the number of tokens. This study measures that claim at CPU
scale on the 32x32 RGB ``shapes``: the same DiT family is trained

* on the tiny autoencoder's 4x4x4 latents (``load_vae("tiny")``, f = 8 and 4 channels as SD's VAE), and
* on the 32x32x3 pixels themselves,

with one recipe, and each pixel model gets exactly the latent model's **training compute**
(forward Gflops x 3 x batch x steps, the paper's Figure 9 axis): a pixel model that costs k times
more per image trains k times fewer steps. Every model is judged the same way, on pixels: its
samples (the latent model's decoded by the autoencoder) go through the offline shapes classifier
(chapter 10; 100 % accurate on 2,000 held-out images), whose 64-d features give FID against 5,000
held-out images and whose predictions give the class accuracy of the samples (does the model
draw the class it was asked for?).

Not counted in the training compute: the autoencoder. Its encoder runs once per training image
(``latent_moments``, what ``python -m minidit.extract`` does on disk) and its decoder once per
sample, as in the paper, whose Gflops are the DiT's alone.

The measured runs are committed in ``minidit/experiments/results/latent``; ``--report`` reads them.

    python -m minidit.experiments.latent --smoke
    python -m minidit.experiments.latent --workers 2           # the committed runs
    python -m minidit.experiments.latent --report              # their table
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from minidit.errors import run_cli

from . import claims, cli
from .common import Recipe, RunSpec, model_facts
from .grid import finished

# the latent model and the pixel models it is compared with (all of the N family: 4 blocks,
# width 96): DiT-N/1 on the 4x4 latents and DiT-N/8 on the 32x32 pixels both see 16 tokens,
# DiT-N/4 on pixels 64
LATENT_MODEL = "DiT-N/1"
PIXEL_MODELS = ("DiT-N/4", "DiT-N/8")
SEEDS = (0, 1)
RESULTS = Path(__file__).resolve().parent / "results" / "latent"

# the scaling study's optimiser settings (scaling.py says why), on shapes; samples are drawn with
# classifier-free guidance 4.0 (the scale of the paper's sample figures), FID and accuracy alike.
# 5,000 steps: about 8 minutes on one CPU thread, inside the 10 minutes chapter 9 allows its live run
RECIPE = Recipe(dataset="shapes", steps=5000, fractions=(0.25, 0.5, 1.0), batch_size=64, lr=5e-3,
                warmup_steps=100, ema_decay=0.995, fid_samples=500, sampling_steps=50, cfg_scale=4.0,
                sweep_steps=(), lr_schedule="cosine", beta2=0.99, clip_denoised=True)
SMOKE_RECIPE = dataclasses.replace(RECIPE, steps=12, warmup_steps=3, batch_size=8, fid_samples=40,
                                   sampling_steps=4, train_samples=256)


def equal_compute_specs(recipe: Recipe = RECIPE, seeds=SEEDS, latent_model: str = LATENT_MODEL,
                        pixel_models=PIXEL_MODELS) -> list[RunSpec]:
    """The latent run of every seed and, for each pixel model, a run with the same training
    compute: ``steps_pixel = round(steps * gflops_latent / gflops_pixel)`` (the checkpoints at the
    same fractions of it, so they line up in compute too)."""
    g_latent = model_facts(recipe.spec(latent_model, latent=True))["gflops"]
    pixel_recipes = {model: recipe.at_compute_of(g_latent, model_facts(recipe.spec(model))["gflops"])
                     for model in pixel_models}
    specs = []
    for seed in seeds:
        specs.append(recipe.spec(latent_model, seed=seed, latent=True))
        specs += [pixel_recipes[model].spec(model, seed=seed) for model in pixel_models]
    return specs


def label(result: dict) -> str:
    """``"DiT-N/2 latent"`` / ``"DiT-N/4 pixel"``."""
    return f"{result['spec']['model']} {'latent' if result['spec'].get('latent') else 'pixel'}"


def grouped(results: list[dict]) -> dict[str, list[dict]]:
    """label -> its finished runs (latent first, then pixel models by Gflops)."""
    out: dict[str, list[dict]] = {}
    for r in sorted(finished(results), key=lambda r: (not r["spec"].get("latent"), r["gflops"], r["spec"]["seed"])):
        out.setdefault(label(r), []).append(r)
    return out


def summary_rows(results: list[dict]) -> list[dict]:
    """One row per model and space (latent first): its facts, the training compute and steps, and
    the final FID and class accuracy as mean and standard deviation over the seeds."""
    stats = claims.seed_stats(results, key=label)
    return [dict(label=name, tokens=s["tokens"], params=s["params"], gflops=s["gflops"], steps=s["steps"][-1],
                 compute=s["compute"][-1], train_seconds=s["train_seconds"], seeds=len(s["seeds"]),
                 fid_mean=s["fid_mean"][-1], fid_std=s["fid_std"][-1], acc_mean=s["acc_mean"], acc_std=s["acc_std"])
            for name, s in sorted(stats.items(), key=lambda kv: (not kv[0].endswith("latent"), kv[1]["gflops"]))]


def summarize(results: list[dict]) -> str:
    """Markdown: per model and space, its cost and its final FID and class accuracy (seed means)."""
    rows = summary_rows(results)
    if not rows:
        return "(no results)"
    spec = results[0]["spec"]
    lines = [f"shapes 32x32, batch {spec['batch_size']}, AdamW lr {spec['lr']:g} (beta2 {spec['beta2']}, "
             f"{spec['lr_schedule']}), EMA {spec['ema_decay']}; every model gets the latent model's training "
             f"compute. Samples: {spec['fid_samples']}, {spec['sampling_steps']} DDPM steps, cfg "
             f"{spec['cfg_scale']:g}; FID and accuracy by the shapes classifier on pixels.", "",
             "| model | tokens | params | Gflops (x1e-3) | steps | training Gflops | train s | FID | class accuracy |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['tokens']} | {r['params']:,} | {r['gflops'] * 1e3:.2f} | {r['steps']} | "
                     f"{r['compute']:.0f} | {r['train_seconds']:.0f} | {r['fid_mean']:.1f} +- {r['fid_std']:.1f} | "
                     f"{r['acc_mean']:.3f} +- {r['acc_std']:.3f} |")
    lines.append(f"\n(mean +- std over {max(r['seeds'] for r in rows)} seeds)")
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    p = cli.build_parser("python -m minidit.experiments.latent",
                         "latent vs pixel DiT on 32x32 shapes at equal training compute", RECIPE, seeds="0,1")
    args = p.parse_args(argv)
    if args.report:
        return cli.report(args, RESULTS, summarize)
    smoke, out = cli.start(args, "latent")
    recipe = cli.recipe_from_args(args, SMOKE_RECIPE if smoke else RECIPE)
    specs = equal_compute_specs(recipe, seeds=cli.seeds_of(args))
    return cli.run_and_report(specs, out, summarize, desc="latent vs pixel", workers=args.workers)


if __name__ == "__main__":
    run_cli(main)
