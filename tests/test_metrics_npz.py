"""ADM-format sample batches: round trip, the official rounding, and every bad-input error."""
import numpy as np
import pytest
import torch

from minidit.metrics import load_samples_npz, save_samples_npz, to_uint8


def test_to_uint8_matches_official_dit_rounding():
    x = torch.rand(3, 3, 5, 4) * 2.4 - 1.2                      # includes out-of-range values
    # the official sample_ddp.py line, on (N, C, H, W)
    official = torch.clamp(127.5 * x + 128.0, 0, 255).permute(0, 2, 3, 1).to(torch.uint8).numpy()
    got = to_uint8(x)
    assert got.dtype == np.uint8 and got.shape == (3, 5, 4, 3)
    np.testing.assert_array_equal(got, official)
    # nearest integer of (x + 1) * 127.5: 0.49 -> 0, 0.51 -> 1, 127.49 -> 127, 127.51 -> 128
    v = torch.tensor([0.0, 0.49, 0.51, 127.49, 127.51, 254.6, 255.0], dtype=torch.float64)
    edge = (v / 127.5 - 1).view(1, 1, 1, -1)
    np.testing.assert_array_equal(to_uint8(edge).ravel(), [0, 0, 1, 127, 128, 255, 255])


def test_npz_round_trip_rgb_and_grey(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(6, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(6) % 3
    save_samples_npz(tmp_path / "rgb.npz", rgb, labels)
    images, got_labels = load_samples_npz(tmp_path / "rgb.npz")
    np.testing.assert_array_equal(images, rgb)
    np.testing.assert_array_equal(got_labels, labels)
    with np.load(tmp_path / "rgb.npz") as f:           # exactly the ADM names
        assert sorted(f.keys()) == ["arr_0", "arr_1"]
    grey = rng.integers(0, 256, size=(4, 8, 8, 1), dtype=np.uint8)
    save_samples_npz(tmp_path / "grey.npz", grey)
    images, got_labels = load_samples_npz(tmp_path / "grey.npz")
    np.testing.assert_array_equal(images, grey)
    assert got_labels is None


def test_npz_reads_plain_np_savez(tmp_path):
    # what the official DiT sample_ddp.py writes: np.savez(path, arr_0=samples)
    rgb = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    np.savez(tmp_path / "official.npz", arr_0=rgb)
    images, labels = load_samples_npz(tmp_path / "official.npz")
    assert images.shape == (2, 4, 4, 3) and labels is None


def test_npz_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="no sample batch"):
        load_samples_npz(tmp_path / "missing.npz")
    np.savez(tmp_path / "named.npz", images=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match=r"no array 'arr_0'.*\['images'\]"):
        load_samples_npz(tmp_path / "named.npz")
    np.savez(tmp_path / "float.npz", np.zeros((2, 4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="uint8.*to_uint8"):
        load_samples_npz(tmp_path / "float.npz")
    np.savez(tmp_path / "nchw.npz", np.zeros((2, 3, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="channels-first.*transpose"):
        load_samples_npz(tmp_path / "nchw.npz")
    np.savez(tmp_path / "rank3.npz", np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"4 dimensions.*\[\.\.\., None\]"):
        load_samples_npz(tmp_path / "rank3.npz")
    np.savez(tmp_path / "labels.npz", np.zeros((2, 4, 4, 3), np.uint8), np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="arr_1"):
        load_samples_npz(tmp_path / "labels.npz")
    with pytest.raises(ValueError, match="dtype uint8"):
        save_samples_npz(tmp_path / "x.npz", np.zeros((2, 4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="labels"):
        save_samples_npz(tmp_path / "x.npz", np.zeros((2, 4, 4, 3), np.uint8), labels=[0.5, 1.5])
