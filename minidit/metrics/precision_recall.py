"""Improved precision and recall (Kynkäänniemi et al., 2019), as in the ADM evaluation suite.

FID mixes two failure modes into one number. Precision and recall separate them:

* precision: the fraction of GENERATED samples that land on the manifold of REAL ones
  (are the samples realistic?);
* recall: the fraction of REAL samples that land on the manifold of GENERATED ones
  (is every kind of real image being produced? a collapsed model has low recall).

A "manifold" is estimated from a finite set of feature vectors as a union of balls: every point
gets a ball whose radius is the distance to its k-th nearest neighbour in the same set (k = 3,
the point itself not counted). A query point is inside the manifold if it lies in ANY ball:

    inside(q, S) = exists s in S with ||q - s|| <= r_k(s)

As in the ADM evaluator we compare SQUARED distances (same order, no square roots) and use
``<=``. For N = M = 50K points the full N x M distance matrix would need 10 GB in float32, so
everything is computed in (batch_size x batch_size) blocks: the k-NN radii keep a running
"k+1 smallest so far" per row, the membership test keeps a running "inside any ball" flag.
"""
from __future__ import annotations

import numpy as np
import torch


def pairwise_distances(a, b, squared: bool = False) -> torch.Tensor:
    """Euclidean distances between the rows of ``a`` (N, D) and ``b`` (M, D): a (N, M) tensor.

    Uses ||a - b||^2 = ||a||^2 - 2 a.b + ||b||^2 (one matrix product instead of an (N, M, D)
    difference tensor), clamped at 0 against round-off. ``squared=True`` skips the square root.
    Inputs may be numpy arrays or tensors; the result is on ``a``'s device, in float32 unless
    ``a`` is float64.
    """
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    dtype = torch.float64 if a.dtype == torch.float64 else torch.float32
    a, b = a.to(dtype), b.to(device=a.device, dtype=dtype)
    # ||a_i - b_j||^2 = ||a_i||^2 - 2 a_i . b_j + ||b_j||^2        (N, 1) + (N, M) + (1, M)
    d2 = (a * a).sum(1, keepdim=True) - 2.0 * (a @ b.T) + (b * b).sum(1)[None, :]
    d2 = d2.clamp_min(0.0)
    return d2 if squared else d2.sqrt()


def precision_recall(real_features, fake_features, k: int = 3,
                     batch_size: int = 2048) -> tuple[float, float]:
    """k-NN precision and recall of ``fake_features`` (M, D) against ``real_features`` (N, D).

    1. radii: for every point of a set, r_k = squared distance to its k-th nearest neighbour in
       the SAME set, not counting itself (sort the distances of a row: index 0 is the point
       itself at distance 0, index k is the k-th neighbour). Real and fake sets get their own.
    2. precision = fraction of fake points f with  d(f, r)^2 <= r_k(r)^2  for ANY real r.
       recall    = fraction of real points r with  d(r, f)^2 <= r_k(f)^2  for ANY fake f.

    Work in blocks of ``batch_size`` rows and ``batch_size`` columns of the distance matrix
    (use ``pairwise_distances(..., squared=True)``), so memory is O(batch_size^2), never N x M.
    Returns (precision, recall) as Python floats in [0, 1].
    Needs more than k points in each set.
    """
    # BEGIN SOLUTION ch10 difficulty=3 minutes=40
    real = torch.as_tensor(np.asarray(real_features), dtype=torch.float32)
    fake = torch.as_tensor(np.asarray(fake_features), dtype=torch.float32)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"precision_recall needs two (N, D) feature matrices with the same D, got "
                         f"{tuple(real.shape)} and {tuple(fake.shape)}")
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"each set needs more than k={k} points, got {len(real)} real and "
                         f"{len(fake)} fake")

    def knn_radii(x):
        # squared distance to the k-th neighbour: keep the k+1 smallest per row (self included)
        radii = torch.empty(len(x))
        for i in range(0, len(x), batch_size):
            best = None                                        # (B, <= k+1) smallest so far
            for j in range(0, len(x), batch_size):
                d2 = pairwise_distances(x[i:i + batch_size], x[j:j + batch_size], squared=True)
                best = d2 if best is None else torch.cat([best, d2], dim=1)
                best = best.topk(min(k + 1, best.shape[1]), dim=1, largest=False).values
            radii[i:i + batch_size] = best[:, k]             # index 0 is the point itself
        return radii

    def fraction_inside(queries, points, radii):
        # inside(q) = any_j ||q - p_j||^2 <= r_j
        count = 0
        for i in range(0, len(queries), batch_size):
            inside = torch.zeros(len(queries[i:i + batch_size]), dtype=torch.bool)
            for j in range(0, len(points), batch_size):
                d2 = pairwise_distances(queries[i:i + batch_size], points[j:j + batch_size],
                                        squared=True)
                inside |= (d2 <= radii[None, j:j + batch_size]).any(dim=1)
            count += int(inside.sum())
        return count / len(queries)

    precision = fraction_inside(fake, real, knn_radii(real))
    recall = fraction_inside(real, fake, knn_radii(fake))
    return float(precision), float(recall)
    # END SOLUTION
