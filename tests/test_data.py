"""The offline data sets: digits (sklearn), shapes and glyphs (procedural)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from minidit.data import DATASETS, get_dataset


def test_registry_names():
    for name in ("digits", "shapes", "glyphs"):
        assert name in DATASETS
    with pytest.raises(ValueError, match="unknown data set"):
        get_dataset("imagenet-but-misspelled")


def test_digits_shape_range_count_classes():
    from sklearn.datasets import load_digits
    train, test, full = get_dataset("digits"), get_dataset("digits", train=False), get_dataset("digits", split="all")
    assert len(full) == 1797
    assert len(train) == 1438 and len(test) == 359          # round(0.8 * 1797) = 1438
    assert (train.num_classes, train.channels, train.image_size) == (10, 1, 8)
    assert train.class_names == [str(i) for i in range(10)]
    x, y = train[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    xs = torch.stack([full[i][0] for i in range(len(full))])
    assert xs.min() == -1.0 and xs.max() == 1.0             # pixel 0 -> -1, pixel 16 -> +1
    # the split is a partition of the 1,797 images, and the pixels are sklearn's, rescaled
    raw = load_digits()
    expected = torch.from_numpy(raw.images[0]).float() / 8 - 1
    assert torch.equal(full[0][0][0], expected) and int(full[0][1]) == raw.target[0]
    ys = torch.stack([train[i][1] for i in range(len(train))] + [test[i][1] for i in range(len(test))])
    assert torch.equal(torch.bincount(ys, minlength=10), torch.from_numpy(np.bincount(raw.target)))


def test_digits_split_is_fixed_and_disjoint():
    from minidit.data.digits import digits_split_indices
    a, b = digits_split_indices("train"), digits_split_indices("test")
    assert len(set(a) & set(b)) == 0 and len(a) + len(b) == 1797
    assert np.array_equal(a, digits_split_indices("train"))


def test_digits_resize_and_num_samples():
    d = get_dataset("digits", image_size=16, num_samples=10)
    assert len(d) == 10 and d[3][0].shape == (1, 16, 16) and d.image_size == 16
    assert d[3][0].min() >= -1 and d[3][0].max() <= 1


def test_shapes_determinism_and_purity():
    a = get_dataset("shapes", num_samples=50, seed=3)
    b = get_dataset("shapes", num_samples=5000, seed=3)
    for i in (0, 7, 49):
        xa, ya = a[i]
        xb, yb = b[i]
        assert torch.equal(xa, xb) and ya == yb           # index i does not depend on num_samples
    c = get_dataset("shapes", num_samples=50, seed=4)
    assert not torch.equal(a[0][0], c[0][0])              # another seed, another image
    t = get_dataset("shapes", num_samples=50, seed=3, train=False)
    assert not torch.equal(a[0][0], t[0][0])              # the test split is a different stream
    xs, ys = a.batch(range(50))                           # the batched path draws the same images
    assert torch.equal(xs[7], a[7][0]) and ys[7] == a[7][1]


def test_shapes_classes_balance_range():
    d = get_dataset("shapes", num_samples=203)
    assert (d.num_classes, d.channels, d.image_size) == (10, 3, 32) and len(d.class_names) == 10
    xs, ys = d.batch(range(len(d)))
    assert xs.shape == (203, 3, 32, 32) and xs.dtype == torch.float32
    assert xs.min() >= -1 and xs.max() <= 1 and xs.std() > 0.3
    counts = torch.bincount(ys, minlength=10)
    assert counts.max() - counts.min() <= 1
    d64 = get_dataset("shapes", image_size=64, num_samples=10)
    assert d64[0][0].shape == (3, 64, 64)


def test_shape_masks_match_closed_forms():
    """Each shape's area (fraction of pixels inside, at unit radius) matches geometry."""
    from minidit.data.shapes import _inside
    t = (np.arange(1200) + 0.5) / 1200 * 2.2 - 1.1
    u, v = np.meshgrid(t, t)
    area = lambda name: _inside(name, u, v).mean() * 2.2 ** 2  # noqa: E731
    assert area("circle") == pytest.approx(np.pi, rel=2e-3)
    assert area("square") == pytest.approx(1.5 ** 2, rel=2e-3)
    assert area("ring") == pytest.approx(np.pi * (1 - 0.55 ** 2), rel=2e-3)
    assert area("triangle") == pytest.approx(3 * np.sqrt(3) / 4, rel=2e-3)     # inscribed in r=1
    assert area("diamond") == pytest.approx(2 * 0.75, rel=2e-3)
    assert area("bar") == pytest.approx(1.9 * 0.7, rel=2e-3)
    # bowl: the unit disk less its lens-shaped overlap with a disk of radius R at distance d
    d, R = 0.45, 0.8
    lens = (np.arccos((d * d + 1 - R * R) / (2 * d)) + R * R * np.arccos((d * d + R * R - 1) / (2 * d * R))
            - 0.5 * np.sqrt((-d + 1 + R) * (d + 1 - R) * (d - 1 + R) * (d + 1 + R)))
    assert area("bowl") == pytest.approx(np.pi - lens, rel=2e-3)
    # stripes: the disk where cos(3 pi u) > 0, i.e. |u| < 1/6 or 1/2 < |u| < 5/6;
    # a vertical strip a < u < b of the unit disk has area F(b) - F(a), F(u) = u sqrt(1 - u^2) + asin(u)
    F = lambda x: x * np.sqrt(1 - x * x) + np.arcsin(x)  # noqa: E731
    assert area("stripes") == pytest.approx(2 * F(1 / 6) + 2 * (F(5 / 6) - F(0.5)), rel=2e-3)


def test_shapes_are_upright_and_mirror_symmetric():
    """Every class is symmetric about the vertical axis (the classifier's mirror augmentation relies
    on it), the star and the triangle point up (v grows downwards), and the bowl opens up."""
    from minidit.data.shapes import CLASS_NAMES, _inside
    t = (np.arange(400) + 0.5) / 400 * 2.2 - 1.1
    u, v = np.meshgrid(t, t)
    for name in CLASS_NAMES:
        assert np.array_equal(_inside(name, u, v), _inside(name, -u, v)), name
    assert _inside("star", np.array(0.0), np.array(-0.95)) and not _inside("star", np.array(0.0), np.array(0.95))
    assert _inside("triangle", np.array(0.0), np.array(-0.95)) and not _inside("triangle", np.array(0.0), np.array(0.95))
    assert _inside("bowl", np.array(0.0), np.array(0.9)) and not _inside("bowl", np.array(0.0), np.array(-0.9))


@pytest.mark.parametrize("name", ["shapes", "glyphs"])
def test_procedural_batches_are_contiguous(name):
    """A transposed view would reach the networks as strided memory, which takes other kernels
    (and the rendered-data cache relies on it: a file read back is contiguous)."""
    x, y = get_dataset(name, num_samples=4).batch(range(4))
    assert x.is_contiguous() and y.is_contiguous() and x.dtype == torch.float32


def test_flip_is_a_mirror():
    torch.manual_seed(0)
    d = get_dataset("shapes", num_samples=4, flip=True)
    plain = get_dataset("shapes", num_samples=4)
    seen = set()
    for _ in range(40):
        x = d[1][0]
        if torch.equal(x, plain[1][0]):
            seen.add("same")
        else:
            assert torch.equal(x, plain[1][0].flip(-1))
            seen.add("flipped")
    assert seen == {"same", "flipped"}


def test_glyphs_shape_range_determinism_and_splits():
    from minidit.data.glyphs import FONTS, masters, render_glyphs
    ds = get_dataset("glyphs")
    assert (len(ds), ds.image_size, ds.channels, ds.num_classes) == (50_000, 16, 1, 10)
    x, y = ds.batch(range(30))
    assert x.shape == (30, 1, 16, 16) and x.dtype == torch.float32 and y.tolist() == [i % 10 for i in range(30)]
    assert x.min() == -1.0 and x.max() <= 1.0 and x.max() > 0.3   # black background, a bright stroke
    # sample i does not depend on which other samples are drawn with it
    torch.testing.assert_close(ds.batch([17])[0][0], x[17], rtol=0, atol=0)
    xi, yi = ds[17]
    torch.testing.assert_close(xi, x[17], rtol=0, atol=0)
    assert int(yi) == 7
    # the held-out stream and another seed are different images of the same classes
    test = get_dataset("glyphs", train=False).batch(range(30))[0]
    other = get_dataset("glyphs", seed=1).batch(range(30))[0]
    assert (test - x).abs().amax((1, 2, 3)).min() > 0.1 and (other - x).abs().amax((1, 2, 3)).min() > 0.1
    # the masters: 20 fonts x 10 digits, the holes of 0 stay holes (even-odd fill), every glyph inked
    m = masters()
    assert m.shape == (len(FONTS), 10, 64, 64) == (20, 10, 64, 64)
    assert float(m.amin()) == 0.0 and float(m.amax()) == 1.0 and (m.sum((2, 3)) > 100).all()
    # the middle of a zero is empty (even-odd fill), except where a font marks it (the monospace
    # DejaVu zeros carry a dot or slash)
    empty = (m[:, 0, 30:34, 30:34] == 0).flatten(1).all(1)
    assert empty.sum() == 17, empty
    # other resolutions, and a clear error below 8
    assert render_glyphs(range(3), image_size=32)[0].shape == (3, 1, 32, 32)
    with pytest.raises(ValueError, match="image_size=4 is too small"):
        get_dataset("glyphs", image_size=4)
