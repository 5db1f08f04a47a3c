"""Chapter 12 (scaling): Pearson correlation, training compute, sampling compute."""
import numpy as np
import pytest

from minidit.flops import sampling_compute_gflops as ref_sampling
from minidit.flops import training_compute_gflops as ref_training

pytestmark = pytest.mark.ch12


def test_pearson_correlation(impl):
    f = impl("ch12").pearson_correlation
    rng = np.random.default_rng(1)
    for n in (2, 3, 12, 100):
        x, y = rng.normal(size=n), rng.normal(size=n) + 0.5 * np.arange(n)
        got, expected = f(x, y), float(np.corrcoef(x, y)[0, 1])
        assert got == pytest.approx(expected, abs=1e-10), (
            f"pearson_correlation of {n} random pairs: numpy.corrcoef says {expected:.8f}, got {got:.8f}")
    got = f([1, 2, 3, 4], [8, 6, 4, 2])
    assert got == pytest.approx(-1.0), f"y = 10 - 2x is perfectly anti-correlated: expected -1.0, got {got}"
    got = f([1.0, 2.0, 3.0], [1.0, 4.0, 9.0])  # lists, not arrays
    assert got == pytest.approx(float(np.corrcoef([1, 2, 3], [1, 4, 9])[0, 1]), abs=1e-12)
    assert isinstance(got, float), f"return a Python float, got {type(got).__name__}"
    for bad in (([1, 2, 3], [1, 2]), ([1.0], [2.0]), ([2, 2, 2], [1, 2, 3])):
        with pytest.raises(ValueError):
            f(*bad)


def test_training_compute_gflops(impl):
    f = impl("ch12").training_compute_gflops
    # frozen: the paper's DiT-XL/2 run, 118.6 Gflops x 256 images x 400K steps x 3 = 3.64e10 Gflops
    got = f(118.6, 256, 400_000)
    assert got == pytest.approx(3 * 118.6 * 256 * 400_000), (
        f"training_compute_gflops(118.6, 256, 400000): expected {3 * 118.6 * 256 * 400_000:.4g}, got {got:.4g}")
    for args in ((0.0075, 64, 800), (1.0, 1, 1)):
        assert f(*args) == pytest.approx(ref_training(*args)), f"training_compute_gflops{args}"


def test_sampling_compute_gflops(impl):
    f = impl("ch12").sampling_compute_gflops
    got = f(118.6, 250, cfg=True)
    assert got == pytest.approx(59_300.0), (
        f"250 guided steps of DiT-XL/2: 118.6 x 250 x 2 = 59300 Gflops per image, got {got}")
    got = f(118.6, 250, cfg=False)
    assert got == pytest.approx(29_650.0), f"without guidance one pass per step: expected 29650, got {got}"
    assert f(2.0, 10) == pytest.approx(ref_sampling(2.0, 10)), "cfg defaults to True"
