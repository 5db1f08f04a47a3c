"""FID, IS and precision/recall against closed forms, independent routes and naive references."""
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from minidit.metrics import (feature_statistics, fid_from_features, frechet_distance,
                             inception_score, pairwise_distances, precision_recall)


# ---------------------------------------------------------------- FID

def test_fid_diagonal_closed_form():
    rng = np.random.default_rng(0)
    d = 16
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = rng.uniform(0.1, 3.0, size=d), rng.uniform(0.1, 3.0, size=d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    got = frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
    assert isinstance(got, float)
    assert got == pytest.approx(expected, rel=1e-10)


def test_fid_commuting_covariances_exact():
    # same eigenvectors, different eigenvalues: sqrt(s1 s2) = Q diag(sqrt(a b)) Q^T exactly
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(12, 12)))
    a, b = rng.uniform(0.5, 2.0, 12), rng.uniform(0.5, 2.0, 12)
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    mu = np.zeros(12)
    assert frechet_distance(mu, s1, mu, s2) == pytest.approx(np.sum((np.sqrt(a) - np.sqrt(b)) ** 2), rel=1e-9)


def test_fid_of_identical_sets_is_zero():
    x = np.random.default_rng(2).normal(size=(500, 32)) * 3 + 1
    mu, sigma = feature_statistics(x)
    assert frechet_distance(mu, sigma, mu, sigma) <= 1e-6 * np.trace(sigma)
    assert fid_from_features(x, x) <= 1e-6 * np.trace(sigma)


def test_fid_rank_deficient_agrees_with_scipy_sqrtm():
    # 40 samples in 128-d: both covariances have rank 39 -- the case that breaks naive sqrtm
    rng = np.random.default_rng(3)
    a = rng.normal(size=(40, 128))
    b = rng.normal(size=(40, 128)) * 1.3 + 0.2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mu1, s1 = feature_statistics(a)
        mu2, s2 = feature_statistics(b)
    ours = frechet_distance(mu1, s1, mu2, s2)
    assert np.isfinite(ours) and isinstance(ours, float)
    # independent route 1: the eigenvalues of the non-symmetric product s1 s2
    eig = np.linalg.eigvals(s1 @ s2)
    tr_eig = np.sqrt(np.clip(eig.real, 0, None)).sum()
    ref_eig = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_eig
    # independent route 2: scipy's general matrix square root (real part, as pytorch-fid)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    ref_sqrtm = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real
    assert ours == pytest.approx(ref_eig, rel=1e-6)
    assert ours == pytest.approx(ref_sqrtm, rel=1e-4)


def test_fid_bad_inputs():
    with pytest.raises(ValueError, match="same length"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        frechet_distance(np.zeros(3), np.eye(4), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="at least 2 samples"):
        feature_statistics(np.zeros((1, 5)))
    with pytest.raises(ValueError, match="2-d"):
        feature_statistics(np.zeros(5))
    with pytest.warns(UserWarning, match="rank-deficient"):
        feature_statistics(np.random.default_rng(0).normal(size=(4, 8)))
    with pytest.raises(ValueError, match="same feature extractor"):
        fid_from_features(np.random.rand(10, 3), np.random.rand(10, 4))


def test_fid_refuses_moments_that_are_not_a_gaussians():
    rng = np.random.default_rng(0)
    mu, sigma = feature_statistics(rng.normal(size=(50, 6)))
    nan_mu, nan_sigma = mu.copy(), sigma.copy()
    nan_mu[2], nan_sigma[1, 1] = np.nan, np.inf
    with pytest.raises(ValueError, match="first Gaussian.*NaN or inf"):
        frechet_distance(nan_mu, sigma, mu, sigma)
    with pytest.raises(ValueError, match="second Gaussian.*NaN or inf"):
        frechet_distance(mu, sigma, mu, nan_sigma)
    not_psd = sigma - 2 * np.linalg.eigvalsh(sigma)[-1] * np.outer(np.eye(6)[0], np.eye(6)[0])
    with pytest.raises(ValueError, match="not positive semi-definite"):
        frechet_distance(mu, not_psd, mu, sigma)
    skew = sigma + np.triu(np.ones((6, 6)), 1) * 0.1
    with pytest.raises(ValueError, match="not symmetric"):
        frechet_distance(mu, sigma, mu, skew)
    # what np.cov leaves -- round-off asymmetry, tiny negative eigenvalues of a singular covariance -- passes
    a = rng.normal(size=(3, 40))
    cov = np.cov(a, rowvar=False)                                   # rank 2 in 40-d
    assert frechet_distance(a.mean(0), cov, a.mean(0), cov) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(mu, sigma.astype(np.float32), mu, sigma) == pytest.approx(0.0, abs=1e-5)


def test_feature_statistics_matches_numpy():
    x = np.random.default_rng(4).normal(size=(50, 6)).astype(np.float32)
    mu, sigma = feature_statistics(x)
    assert mu.dtype == np.float64 and sigma.dtype == np.float64
    np.testing.assert_allclose(mu, x.astype(np.float64).mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-12)


# ---------------------------------------------------------------- IS

@pytest.mark.parametrize("k", [2, 10, 100])
def test_inception_score_uniform_one_hot_is_k(k):
    probs = np.eye(k)[np.arange(5 * k) % k]
    assert inception_score(probs) == pytest.approx(k, rel=1e-12)
    assert inception_score(probs, splits=5) == pytest.approx(k, rel=1e-12)


def test_inception_score_single_class_is_one():
    probs = np.eye(7)[np.full(30, 3)]
    assert inception_score(probs) == pytest.approx(1.0)
    # identical soft predictions: p(y|x) = p(y), KL = 0
    assert inception_score(np.full((20, 4), 0.25)) == pytest.approx(1.0)


def test_inception_score_splits_is_mean_of_chunk_scores():
    rng = np.random.default_rng(5)
    probs = rng.dirichlet(np.full(6, 0.3), size=90)
    chunks = np.array_split(probs, 3)
    assert inception_score(probs, splits=3) == pytest.approx(np.mean([inception_score(c) for c in chunks]))

    def naive(p):  # the formula, written out per sample
        py = p.mean(0)
        return np.exp(np.mean([np.sum(pi * np.log(pi / py)) for pi in p]))
    assert inception_score(probs) == pytest.approx(naive(probs), rel=1e-12)
    with pytest.raises(ValueError, match="splits"):
        inception_score(probs, splits=0)


# ---------------------------------------------------------------- precision / recall

def test_pairwise_distances_matches_naive():
    a, b = torch.randn(7, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    naive = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    torch.testing.assert_close(pairwise_distances(a, b, squared=True), naive)
    torch.testing.assert_close(pairwise_distances(a, b), naive.sqrt())


def naive_precision_recall(real, fake, k):
    """The definition, with full distance matrices and sorting."""
    def radii(x):
        d = ((x[:, None] - x[None]) ** 2).sum(-1)
        return np.sort(d, axis=1)[:, k]
    def inside(q, p, r):
        d = ((q[:, None] - p[None]) ** 2).sum(-1)
        return (d <= r[None]).any(1).mean()
    return inside(fake, real, radii(real)), inside(real, fake, radii(fake))


def test_precision_recall_identical_sets():
    x = np.random.default_rng(6).normal(size=(200, 8))
    assert precision_recall(x, x.copy()) == (1.0, 1.0)


def test_precision_recall_far_apart_sets():
    rng = np.random.default_rng(7)
    assert precision_recall(rng.normal(size=(100, 8)), rng.normal(size=(100, 8)) + 100.0) == (0.0, 0.0)


def test_precision_recall_collapsed_fake_set():
    # the fake set covers one small corner of the real distribution: realistic but not diverse
    rng = np.random.default_rng(8)
    real = rng.normal(size=(400, 4))
    fake = rng.normal(size=(400, 4)) * 0.05 + real[0]
    precision, recall = precision_recall(real, fake)
    assert precision > 0.95 and recall < 0.1


def test_precision_recall_batched_equals_unbatched_and_naive():
    rng = np.random.default_rng(9)
    real = rng.normal(size=(150, 6)).astype(np.float32)
    fake = (rng.normal(size=(130, 6)) * 1.4 + 0.3).astype(np.float32)
    full = precision_recall(real, fake, k=3, batch_size=10_000)
    assert precision_recall(real, fake, k=3, batch_size=7) == full
    expected = naive_precision_recall(real.astype(np.float64), fake.astype(np.float64), 3)
    assert full == pytest.approx(expected, abs=1.0 / 130)
    assert 0.0 < full[0] < 1.0 and 0.0 < full[1] < 1.0


def test_precision_recall_bad_inputs():
    with pytest.raises(ValueError, match="same D"):
        precision_recall(np.zeros((10, 3)), np.zeros((10, 4)))
    with pytest.raises(ValueError, match="more than k=3"):
        precision_recall(np.zeros((3, 2)), np.zeros((10, 2)))
