"""Chapter 13 (full size): latent size, model FLOPs utilisation, GPU-hours."""
import pytest

from minidit.experiments.cost import gpu_hours as ref_gpu_hours
from minidit.flops import mfu as ref_mfu

pytestmark = pytest.mark.ch13


def test_latent_size(impl):
    f = impl("ch13").latent_size
    for image, factor, expected in ((256, 8, 32), (512, 8, 64), (32, 4, 8), (8, 1, 8)):
        got = f(image, factor)
        assert got == expected, f"latent_size({image}, {factor}): expected {expected}, got {got}"
    assert f(256) == 32, "the default downsample factor is 8 (the SD VAE)"
    with pytest.raises(ValueError) as err:
        f(250)
    msg = str(err.value)
    assert "250" in msg and "8" in msg and "256" in msg, (
        f"the error for 250 must name the size, the factor and a valid size (248 or 256); got: {msg!r}")
    with pytest.raises(ValueError):
        f(0)


def test_mfu(impl):
    f = impl("ch13").mfu
    # frozen: DiT-XL/2 (118.6 Gflops) at 550 images/s on an H100 (989 TFLOP/s bf16) is ~39.6% MFU
    got = f(550.0, 118.6, 989.0)
    assert got == pytest.approx(550 * 6 * 118.6e9 / 989e12), (
        f"mfu(550, 118.6, 989): 3 passes x 2 FLOPs per MAC -> expected {550 * 6 * 118.6e9 / 989e12:.4f}, got {got}")
    assert f(26.0, 118.6, 312.0) == pytest.approx(ref_mfu(26.0, 118.6, 312.0))
    got = f(550.0, 118.6, 989.0, passes=1)
    assert got == pytest.approx(550 * 2 * 118.6e9 / 989e12), (
        f"mfu(550, 118.6, 989, passes=1) (a forward pass alone, as in sampling): expected "
        f"{550 * 2 * 118.6e9 / 989e12:.4f}, got {got}")
    with pytest.raises(ValueError):
        f(100.0, 118.6, 0.0)


def test_gpu_hours(impl):
    f = impl("ch13").gpu_hours
    images = 400_000 * 256
    wall, total = f(images, 100.0, 8)
    assert total == pytest.approx(images / 100.0 / 3600), (
        f"GPU-hours of 102.4M images at 100 images/s per GPU: expected {images / 100 / 3600:.1f}, got {total}")
    assert wall == pytest.approx(total / 8), f"8 GPUs divide the wall clock by 8: expected {total / 8:.1f}, got {wall}"
    assert f(3600.0, 1.0) == pytest.approx((1.0, 1.0)), "num_gpus defaults to 1"
    assert f(images, 26.0, 4) == pytest.approx(ref_gpu_hours(images, 26.0, 4))
    for bad in ((100.0, 0.0, 1), (100.0, 1.0, 0)):
        with pytest.raises(ValueError):
            f(*bad)
