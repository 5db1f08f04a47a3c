"""Chapter 10 (measuring quality): the Fréchet distance, the Inception Score, precision/recall."""
import warnings

import numpy as np
import pytest
import torch
from grading import assert_close

from minidit.metrics.fid import frechet_distance as ref_frechet
from minidit.metrics.inception_score import inception_score as ref_is
from minidit.metrics.precision_recall import precision_recall as ref_pr

pytestmark = pytest.mark.ch10


def _stats(x):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return x.mean(0), np.cov(x, rowvar=False)


def _scalar(value, what):
    if not isinstance(value, (float, np.floating)):
        pytest.fail(f"{what} must return a Python float, got {type(value).__name__}")
    return torch.tensor(float(value), dtype=torch.float64)


def test_frechet_distance(impl):
    frechet = impl("ch10").frechet_distance
    rng = np.random.default_rng(0)
    # diagonal covariances: the closed form sum(s1 + s2 - 2 sqrt(s1 s2)) (frozen convention:
    # the SQUARED distance, no final square root)
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    assert_close(_scalar(frechet(mu1, np.diag(s1), mu2, np.diag(s2)), "frechet_distance"),
                 torch.tensor(5.0 + 1.0 + 1.0 + 4.0, dtype=torch.float64),
                 "frechet_distance(mu1=[0,1,2], diag(1,4,9), mu2=[1,1,0], diag(4,1,1))", atol=1e-9)
    # full covariances and a rank-deficient case (20 samples in 48-d): must stay finite and real
    for n, d in ((300, 8), (20, 48)):
        a, b = rng.normal(size=(n, d)), rng.normal(size=(n, d)) * 1.5 + 0.3
        (m1, c1), (m2, c2) = _stats(a), _stats(b)
        got = _scalar(frechet(m1, c1, m2, c2), "frechet_distance")
        assert_close(got, torch.tensor(ref_frechet(m1, c1, m2, c2), dtype=torch.float64),
                     f"frechet_distance on the statistics of {n} samples in {d}-d", atol=1e-6, rtol=1e-6)
    m, c = _stats(rng.normal(size=(200, 6)))
    assert_close(_scalar(frechet(m, c, m, c), "frechet_distance"), torch.tensor(0.0, dtype=torch.float64),
                 "frechet_distance(mu, sigma, mu, sigma) (identical Gaussians)", atol=1e-8)


def test_inception_score(impl):
    inception_score = impl("ch10").inception_score
    # frozen: 4 classes predicted with certainty, equally often -> IS = 4; one class -> IS = 1
    uniform = np.eye(4)[np.arange(12) % 4]
    assert_close(_scalar(inception_score(uniform), "inception_score"), torch.tensor(4.0, dtype=torch.float64),
                 "inception_score(one-hot predictions, 4 classes equally often)", atol=1e-9)
    assert_close(_scalar(inception_score(np.eye(4)[np.zeros(12, int)]), "inception_score"),
                 torch.tensor(1.0, dtype=torch.float64),
                 "inception_score(every image predicted as class 0)", atol=1e-9)
    probs = np.random.default_rng(1).dirichlet(np.full(5, 0.5), size=60)
    for splits in (1, 3):
        assert_close(_scalar(inception_score(probs, splits=splits), "inception_score"),
                     torch.tensor(ref_is(probs, splits=splits), dtype=torch.float64),
                     f"inception_score(60 random Dirichlet predictions, splits={splits})", atol=1e-9, rtol=1e-9)


def test_precision_recall(impl):
    precision_recall = impl("ch10").precision_recall
    # frozen conventions, by hand in 1-d with k=1: the radius of a point excludes the point
    # itself, and a point exactly ON a ball's boundary counts as inside (<=).
    real = np.array([[0.0], [1.0], [2.0], [3.0], [10.0]])    # 1-NN radii: 1, 1, 1, 1, 7
    fake = np.array([[0.5], [4.0], [5.0], [20.0]])           # 4.0 is exactly 1 away from 3.0
    got = precision_recall(real, fake, k=1)
    assert tuple(float(v) for v in got) == pytest.approx((0.75, 1.0)), (
        f"precision_recall(real=[0,1,2,3,10], fake=[0.5,4,5,20], k=1): expected (0.75, 1.0) -- "
        f"0.5, 4 and 5 lie in a real ball (4 exactly on the boundary of 3's ball of radius 1), "
        f"20 does not; got {got}")
    rng = np.random.default_rng(2)
    real = rng.normal(size=(60, 5)).astype(np.float32)
    fake = (rng.normal(size=(50, 5)) * 1.3 + 0.4).astype(np.float32)
    expected = ref_pr(real, fake, k=3)
    for batch_size in (1000, 16):
        got = precision_recall(real, fake, k=3, batch_size=batch_size)
        assert_close(torch.tensor([float(v) for v in got]), torch.tensor(expected),
                     f"precision_recall(60 real, 50 fake 5-d Gaussian features, k=3, batch_size={batch_size})",
                     atol=1e-9)
