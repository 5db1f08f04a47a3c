"""Fréchet distance between two Gaussians: the core of FID and sFID.

FID (Heusel et al., 2017) summarises each set of images by the mean ``mu`` and covariance
``sigma`` of their features (Inception pool features for FID-50K, the first 7 channels of an
intermediate Inception map for sFID) and reports the squared Fréchet / Wasserstein-2 distance
between the two Gaussians with those moments:

    FID = ||mu1 - mu2||^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))

Everything here is float64 numpy: covariances of 2048-d features are ill-conditioned and float32
loses several digits in the trace term, which is a *difference* of large numbers.

Reading order: ``frechet_distance`` (the formula, graded in chapter 10), ``feature_statistics``
(mean and covariance of a feature matrix), ``fid_from_features`` (both together).
"""
from __future__ import annotations

import warnings

import numpy as np


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

        d^2 = ||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2))

    Args:
        mu1, mu2: mean vectors, shape (D,).
        sigma1, sigma2: covariance matrices, shape (D, D), symmetric positive SEMI-definite
            (a covariance of N <= D samples is singular; that must still work).

    Returns:
        A Python float >= 0.

    How to compute tr((sigma1 sigma2)^(1/2)) robustly -- the only hard part:

    * The product ``sigma1 @ sigma2`` is not symmetric, so its matrix square root is a general
      (non-symmetric) problem. ``scipy.linalg.sqrtm`` solves it with a Schur decomposition and,
      for nearly singular products (few samples in 2048-d), returns small *imaginary* parts and
      loses accuracy; pytorch-fid and the ADM evaluator then add ``eps * I`` to both covariances
      and drop the imaginary part, which changes the answer.
    * We never need the square-root *matrix*, only its trace, i.e. the sum of the square roots
      of the eigenvalues of sigma1 sigma2. Write A = sigma1^(1/2) (symmetric, from ``eigh``).
      Then sigma1 sigma2 = A (A sigma2) is similar to (A sigma2) A = A sigma2 A, a SYMMETRIC
      positive semi-definite matrix with the same eigenvalues. So

          tr((sigma1 sigma2)^(1/2)) = sum_i sqrt(lambda_i(A sigma2 A)),

      computed with the symmetric eigensolver ``eigh``: real by construction, tiny negative
      round-off eigenvalues clamped to 0, exact for commuting covariances (for diagonal
      covariances it reduces to sum_i sqrt(s1_i s2_i)), finite for rank-deficient ones.

    Hint: ``np.linalg.eigh`` returns (eigenvalues, eigenvectors) of a symmetric matrix;
    sigma^(1/2) = V diag(sqrt(max(w, 0))) V^T.
    """
    check_gaussian(mu1, sigma1, "first")
    check_gaussian(mu2, sigma2, "second")
    # BEGIN SOLUTION ch10 difficulty=2 minutes=30
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    sigma1, sigma2 = np.asarray(sigma1, dtype=np.float64), np.asarray(sigma2, dtype=np.float64)
    if mu1.ndim != 1 or mu1.shape != mu2.shape:
        raise ValueError(f"frechet_distance: means must be vectors of the same length, got shapes "
                         f"{mu1.shape} and {mu2.shape}")
    d = mu1.shape[0]
    if sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"frechet_distance: covariances must be ({d}, {d}) to match the means, got "
                         f"{sigma1.shape} and {sigma2.shape}")
    # sigma1^(1/2) = V diag(sqrt(w)) V^T   (sigma1 = V diag(w) V^T; round-off w < 0 clamped to 0)
    w, v = np.linalg.eigh((sigma1 + sigma1.T) / 2)
    sqrt_sigma1 = (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T
    # M = sigma1^(1/2) sigma2 sigma1^(1/2): symmetric PSD, same eigenvalues as sigma1 sigma2
    m = sqrt_sigma1 @ sigma2 @ sqrt_sigma1
    eig_m = np.linalg.eigvalsh((m + m.T) / 2)
    # tr((sigma1 sigma2)^(1/2)) = sum_i sqrt(lambda_i(M))
    tr_covmean = np.sqrt(np.clip(eig_m, 0.0, None)).sum()
    # d^2 = ||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2))
    diff = mu1 - mu2
    fid = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean
    # a squared distance is >= 0; only round-off (~1e-12 relative) can push it below
    return float(max(fid, 0.0))
    # END SOLUTION


def check_gaussian(mu, sigma, which: str = "") -> None:
    """Refuse moments that are not a Gaussian's: NaN/inf, a non-symmetric or a clearly not positive
    semi-definite covariance (a FID computed from them would be a number, but a meaningless one).

    Round-off is allowed: asymmetry up to 1e-6 and negative eigenvalues down to -1e-6 of the
    largest one, what ``np.cov`` of features of any size leaves.
    """
    name = f"frechet_distance ({which} Gaussian)" if which else "frechet_distance"
    mu, sigma = np.asarray(mu, dtype=np.float64), np.asarray(sigma, dtype=np.float64)
    if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sigma))):
        raise ValueError(f"{name}: the mean or covariance holds NaN or inf; check the features they came from")
    if sigma.ndim != 2 or sigma.shape[0] != sigma.shape[1]:
        return                                  # the shape checks of frechet_distance say what is wrong
    scale = max(float(np.abs(sigma).max(initial=0.0)), 1e-300)
    if np.abs(sigma - sigma.T).max(initial=0.0) > 1e-6 * scale:
        raise ValueError(f"{name}: the covariance is not symmetric; pass np.cov(features, rowvar=False)")
    lowest = float(np.linalg.eigvalsh((sigma + sigma.T) / 2)[0]) if sigma.size else 0.0
    if lowest < -1e-6 * scale:
        raise ValueError(f"{name}: the covariance is not positive semi-definite (eigenvalue {lowest:.3g}); "
                         f"a covariance matrix never is -- pass np.cov(features, rowvar=False)")


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64) of a feature matrix of shape (N, D).

    The covariance is the unbiased one (divides by N - 1), as ``np.cov`` in pytorch-fid and the
    ADM evaluator. With N < 2 there is no covariance at all (ValueError). With N <= D the
    covariance has rank at most N - 1 < D: FID is still defined (``frechet_distance`` handles
    singular matrices) but it is strongly biased upwards for small N, so compare FIDs only at
    equal N -- that is why papers fix N = 50K ("FID-50K").
    """
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"features must be a 2-d array (N, D), got shape {features.shape}; "
                         "flatten each sample's features first")
    n, d = features.shape
    if n < 2:
        raise ValueError(f"need at least 2 samples to estimate a covariance, got N={n}; "
                         "FID is only meaningful with thousands of samples")
    if not np.all(np.isfinite(features)):
        raise ValueError("features contain NaN or inf; check the images fed to the extractor")
    if n <= d:
        warnings.warn(f"only N={n} samples for {d}-d features: the covariance is rank-deficient "
                      f"and FID is biased upwards; compare FIDs only at equal N", stacklevel=2)
    mu = features.mean(axis=0)
    sigma = np.cov(features, rowvar=False)
    return mu, sigma


def fid_from_features(features_a, features_b) -> float:
    """FID between two feature matrices (N1, D) and (N2, D): fit a Gaussian to each, compare."""
    mu_a, sigma_a = feature_statistics(features_a)
    mu_b, sigma_b = feature_statistics(features_b)
    if mu_a.shape != mu_b.shape:
        raise ValueError(f"feature dimensions differ ({mu_a.shape[0]} vs {mu_b.shape[0]}): both sets "
                         "must come from the same feature extractor")
    return frechet_distance(mu_a, sigma_a, mu_b, sigma_b)
