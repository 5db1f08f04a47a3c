"""Evaluate a batch of samples: FID, sFID, IS, precision, recall (and class accuracy).

    python -m minidit.evaluate SAMPLES.npz REFERENCE.npz [--extractor digits|shapes|inception:PATH]
    python -m minidit.evaluate SAMPLES.npz --dataset digits [--json metrics.json]

Both files are ADM-format batches (``arr_0`` uint8 (N, H, W, C), optional ``arr_1`` labels; see
``minidit.metrics.npz``), so a batch written by the official DiT ``sample_ddp.py`` works here and
one written by ``minidit.metrics.save_samples_npz`` works with the official ADM evaluator. With
``--dataset`` the reference is the data set's training split (as ADM's reference batches are
drawn from the training set), quantised to uint8 exactly like samples.

What each number means (the DiT paper, Table 2, reports all five on 50K samples):

* FID   -- Fréchet distance of pooled features: realism and diversity together (lower is better);
* sFID  -- the same on spatial features: spatial structure (lower is better);
* IS    -- confident, varied class predictions of the samples alone (higher is better);
* precision / recall -- fraction of samples on the real manifold / of real data covered;
* class accuracy -- with the offline extractors and labelled samples: how often the classifier
  agrees with the label a sample was drawn for. Not with Inception, whose 1008 outputs are not
  ImageNet's class ids; nor sFID, whose intermediate map the TorchScript file does not expose.

Numbers are comparable only with the same extractor, the same N and the same reference batch:
the offline "digits"/"shapes" extractors give minidit-internal numbers, ``inception:PATH`` gives
numbers on the scale of published ImageNet results (up to the Fréchet implementation; see
``minidit.metrics.fid``).
"""
from __future__ import annotations

import argparse
import sys
import warnings

import numpy as np

from minidit.files import write_json_atomic
from minidit.errors import add_debug_flag, run_cli
from minidit.env import check_device
from minidit.metrics.classifier import _split_tensors
from minidit.metrics.features import FeatureExtractor, get_feature_extractor
from minidit.metrics.fid import feature_statistics, frechet_distance
from minidit.metrics.inception_score import inception_score
from minidit.metrics.npz import check_images_uint8, load_samples_npz, to_uint8
from minidit.metrics.precision_recall import precision_recall

IS_SPLIT_SIZE = 5000  # as the ADM evaluator: one IS split per 5000 samples


def dataset_reference(name: str, split: str = "train", num_samples: int | None = None):
    """The images (uint8 NHWC, quantised like samples) and labels of a minidit data set split."""
    kwargs = {"num_samples": num_samples} if num_samples else {}
    x, y = _split_tensors(name, split == "train", **kwargs)
    return to_uint8(x), y.numpy()


def infer_extractor(images: np.ndarray) -> str:
    """Guess the offline extractor from the image shape (8x8 grey: digits, 32x32 RGB: shapes)."""
    h, w, c = images.shape[1:]
    if (h, w, c) == (8, 8, 1):
        return "digits"
    if (h, w, c) == (32, 32, 3):
        return "shapes"
    raise ValueError(f"cannot guess a feature extractor for {h}x{w}x{c} images; pass --extractor "
                     "digits, shapes or inception:/path/to/inception-2015-12-05.pt")


def frechet_from(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, sigma_a = feature_statistics(a)
    mu_b, sigma_b = feature_statistics(b)
    return frechet_distance(mu_a, sigma_a, mu_b, sigma_b)


def evaluate(samples, reference, extractor: FeatureExtractor, labels=None, k: int = 3,
             progress: bool = True) -> dict:
    """All metrics of ``samples`` against ``reference`` (both uint8 NHWC or float NCHW in [-1, 1]).

    A metric the extractor cannot give is left out, and ``results["unavailable"]`` says why
    (sFID and class accuracy with the TorchScript Inception).
    """
    for what, imgs in (("samples", samples), ("reference", reference)):
        if len(imgs) < 2:
            raise ValueError(f"{what}: {len(imgs)} image(s); a covariance (FID) needs at least 2, and "
                             "meaningful FIDs need thousands")
    fake = extractor.extract(samples, progress=progress, desc="sample features")
    real = extractor.extract(reference, want=("features", "spatial"), progress=progress,
                             desc="reference features")
    n_fake, n_real = len(fake["features"]), len(real["features"])
    unavailable = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = {"extractor": extractor.name, "num_samples": n_fake, "num_reference": n_real,
                   "fid": frechet_from(fake["features"], real["features"])}
        if "spatial" in fake:
            results["sfid"] = frechet_from(fake["spatial"], real["spatial"])
        else:
            unavailable["sfid"] = extractor.no_spatial_reason
    for w in {str(c.message) for c in caught}:
        warnings.warn(w, stacklevel=2)
    results["inception_score"] = inception_score(fake["probs"],
                                                 splits=max(1, round(n_fake / IS_SPLIT_SIZE)))
    if min(n_fake, n_real) > k:
        results["precision"], results["recall"] = precision_recall(real["features"],
                                                                   fake["features"], k=k)
    else:
        warnings.warn(f"precision/recall skipped: need more than k={k} images in each set", stacklevel=2)
    if labels is not None:
        labels = np.asarray(labels)
        num_outputs = fake["probs"].shape[1]
        if not extractor.labels_are_class_ids:
            unavailable["class_accuracy"] = (f"the extractor's {num_outputs} outputs are not the data set's "
                                             f"class ids")
        elif labels.min() < 0 or labels.max() >= num_outputs:
            unavailable["class_accuracy"] = (f"the labels run from {labels.min()} to {labels.max()}, the "
                                             f"extractor knows classes 0..{num_outputs - 1}")
        else:
            results["class_accuracy"] = float((fake["probs"].argmax(axis=1) == labels).mean())
    if unavailable:
        results["unavailable"] = unavailable
    return results


def format_table(results: dict) -> str:
    """The metrics as a two-column text table, in the order of the paper's Table 2; a metric the
    extractor cannot give says why below the table."""
    rows = [("FID", "fid"), ("sFID", "sfid"), ("IS", "inception_score"),
            ("Precision", "precision"), ("Recall", "recall"), ("Class accuracy", "class_accuracy")]
    unavailable = results.get("unavailable", {})
    lines = [f"extractor: {results['extractor']}   samples: {results['num_samples']}   "
             f"reference: {results['num_reference']}", f"{'metric':<16}{'value':>12}", "-" * 28]
    notes = []
    for label, key in rows:
        value = results.get(key)
        if value is None and key in unavailable:
            notes.append(f"{label}: not available -- {unavailable[key]}")
        lines.append(f"{label:<16}{'n/a' if value is None else f'{value:.4f}':>12}")
    return "\n".join(lines + notes)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m minidit.evaluate",
                                 description="FID, sFID, IS, precision and recall of a sample batch.")
    ap.add_argument("samples", help="ADM-format .npz: arr_0 uint8 (N, H, W, C), optional arr_1 labels")
    ap.add_argument("reference", nargs="?", help="reference .npz in the same format")
    ap.add_argument("--dataset", help="use this minidit data set (digits, shapes) as the reference")
    ap.add_argument("--split", default="train", choices=["train", "test"],
                    help="data set split used as the reference (default: train, as ADM)")
    ap.add_argument("--num-reference", type=int, default=None,
                    help="how many reference images (procedural data sets; default: the data set's)")
    ap.add_argument("--extractor", default=None,
                    help="digits | shapes | inception:/path/to/inception-2015-12-05.pt "
                         "(default: the offline classifier matching the images; with Inception there is no "
                         "sFID and no class accuracy)")
    ap.add_argument("--batch-size", type=int, default=None, help="images per forward pass")
    ap.add_argument("--device", default=None, help="cpu, cuda, ... (default: cpu)")
    ap.add_argument("--json", help="also write the metrics to this JSON file (atomically)")
    ap.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    add_debug_flag(ap)
    args = ap.parse_args(argv)
    if (args.reference is None) == (args.dataset is None):
        ap.error("give exactly one reference: a REFERENCE.npz file or --dataset NAME")
    results = _evaluate_files(args)  # a bad file is one line and exit 2 (run_cli)
    print(format_table(results))
    if args.json:
        write_json_atomic(args.json, results)
        print(f"wrote {args.json}")
    return 0


def _evaluate_files(args) -> dict:
    for flag, value in (("--batch-size", args.batch_size), ("--num-reference", args.num_reference)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}")
    device = check_device(args.device) if args.device else None
    samples, labels = load_samples_npz(args.samples)
    if args.reference is not None:
        reference, _ = load_samples_npz(args.reference)
    else:
        reference, _ = dataset_reference(args.dataset, args.split, args.num_reference)
    reference = check_images_uint8(reference, "reference")
    if samples.shape[1:] != reference.shape[1:]:
        raise ValueError(f"samples are {samples.shape[1:]} (H, W, C) but the reference is "
                         f"{reference.shape[1:]}; compare images of the same size and channels")
    spec = args.extractor or (args.dataset if args.dataset in ("digits", "shapes", "glyphs")
                              else infer_extractor(samples))
    extractor = get_feature_extractor(spec, device=device)
    if args.batch_size:
        extractor.batch_size = args.batch_size
    return evaluate(samples, reference, extractor, labels=labels, progress=not args.no_progress)


if __name__ == "__main__":
    run_cli(main)
