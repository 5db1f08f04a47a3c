"""Does the default job (``python -m minidit.train``, no arguments) deliver? Wall time and quality.

Runs the default job exactly as a user would (a subprocess, the run folder in a temporary
results dir), then loads its final checkpoint and samples 500 class-balanced digits (50 per
class) with the EMA weights at guidance 1.5, and prints:

* wall time of the job (training + its sample grid), and the CPU time it used;
* the final logged training loss;
* class accuracy of the samples under two judges:
    - an independent scikit-learn classifier (an RBF SVM on the 64 raw pixels, trained on the
      real training digits; its accuracy on the real held-out digits is printed too), and
    - minidit's own offline digits classifier (minidit.metrics.classifier);
* the within-class diversity ratio: the mean pairwise L2 distance between samples of the same
  class, divided by the same for the real digits of that class, averaged over classes
  (1.0 = as varied as the data; a collapsed model tends to 0).

Targets: wall <= 180 s on 2 CPU cores, accuracy >= 0.97, diversity ratio >= 0.7.

    python benchmarks/default_quality.py                   # the default job
    python benchmarks/default_quality.py --ckpt PATH       # only evaluate an existing checkpoint
    python benchmarks/default_quality.py -- --max-steps 1500 --model DiT-P/2   # try a variant
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minidit.data import get_dataset  # noqa: E402  (after ROOT is importable)
from minidit.diffusion import create_diffusion  # noqa: E402
from minidit.generation import balanced_labels, generate, model_input_shape  # noqa: E402
from minidit.metrics import get_feature_extractor  # noqa: E402
from minidit.sample import load_for_sampling  # noqa: E402


def run_default_job(extra: list[str], results_dir: Path) -> tuple[float, float, Path]:
    cmd = [sys.executable, "-m", "minidit.train", "--results-dir", str(results_dir), *extra]
    print("$", " ".join(cmd), flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    subprocess.run(cmd, check=True, cwd=ROOT)
    wall = time.time() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    run_dir = sorted(p for p in results_dir.iterdir() if p.is_dir())[-1]
    return wall, cpu, run_dir


def sklearn_judge():
    """An RBF SVM on raw pixels (x in [-1, 1], as minidit's digits), trained on the train split."""
    from sklearn.svm import SVC  # scikit-learn: only this independent judge needs it

    tr, te = get_dataset("digits", train=True), get_dataset("digits", train=False)
    clf = SVC(C=10.0, gamma="scale").fit(tr.images.flatten(1).numpy(), tr.labels.numpy())
    test_acc = float((clf.predict(te.images.flatten(1).numpy()) == te.labels.numpy()).mean())
    return clf, test_acc


def project_classifier_predict(images: torch.Tensor) -> np.ndarray:
    """minidit's own offline digits classifier's predicted classes."""
    probs = get_feature_extractor("digits").probs(images)
    return np.asarray(torch.as_tensor(probs).argmax(1))


def within_class_diversity(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> np.ndarray:
    """Mean pairwise L2 distance between images of the same class, per class."""
    out = []
    for c in range(num_classes):
        xc = x[y == c].flatten(1).double()
        d = torch.cdist(xc, xc)
        n = len(xc)
        out.append(float(d.sum() / (n * (n - 1))))
    return np.array(out)


def evaluate(ckpt: Path, num_samples: int, cfg_scale: float, steps: int | None, sampler: str, seed: int) -> dict:
    model, args, vae = load_for_sampling(ckpt)
    steps = steps or args["num_sampling_steps"]
    diffusion = create_diffusion(str(steps), learn_sigma=args.get("learn_sigma", True))
    labels = balanced_labels(num_samples, args["num_classes"])
    torch.manual_seed(seed)
    t0 = time.time()
    images = generate(model, diffusion, labels, model_input_shape(args, vae), args["num_classes"],
                      cfg_scale=cfg_scale, sampler=sampler, generator=torch.Generator().manual_seed(seed))
    sample_s = time.time() - t0
    clf, judge_test_acc = sklearn_judge()
    pred = clf.predict(images.flatten(1).numpy())
    acc = float((pred == labels.numpy()).mean())
    own_acc = float((project_classifier_predict(images) == labels.numpy()).mean())
    real = get_dataset("digits", split="all")
    div_s = within_class_diversity(images, labels, args["num_classes"])
    div_r = within_class_diversity(real.images, real.labels, args["num_classes"])
    return dict(num_samples=num_samples, cfg_scale=cfg_scale, sampling_steps=steps, sampler=sampler,
                sample_seconds=sample_s, sklearn_judge_test_acc=judge_test_acc, accuracy_sklearn=acc,
                accuracy_project=own_acc, diversity_ratio=float((div_s / div_r).mean()),
                diversity_ratio_min_class=float((div_s / div_r).min()),
                per_class_acc=[float((pred[labels.numpy() == c] == c).mean()) for c in range(args["num_classes"])])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ckpt", type=Path, help="evaluate this checkpoint instead of running the job")
    p.add_argument("--num-samples", type=int, default=500)
    p.add_argument("--cfg-scale", type=float, default=1.5)
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the run's preset)")
    p.add_argument("--sampler", default="ddpm")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("train_args", nargs="*", help="extra flags for minidit.train (after --)")
    a = p.parse_args()
    result = {}
    if a.ckpt is None:
        with tempfile.TemporaryDirectory() as tmp:
            wall, cpu, run_dir = run_default_job(a.train_args, Path(tmp))
            records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
            ckpt = sorted((run_dir / "checkpoints").glob("*.pt"))[-1]
            result.update(job_wall_seconds=wall, job_cpu_seconds=cpu, final_loss=records[-1]["loss"],
                          final_mse=records[-1]["mse"], final_vb=records[-1]["vb"], steps=records[-1]["step"],
                          train_args=a.train_args, load_average=os.getloadavg())
            result.update(evaluate(ckpt, a.num_samples, a.cfg_scale, a.steps, a.sampler, a.seed))
    else:
        result.update(evaluate(a.ckpt, a.num_samples, a.cfg_scale, a.steps, a.sampler, a.seed))
    for k, v in result.items():
        print(f"{k:28s} {v:.4f}" if isinstance(v, float) else f"{k:28s} {v}")
    if a.json:
        a.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
