"""Loaders of files on disk: imagefolder (ADM crop, corrupt files), cifar10 pickles, MNIST IDX."""
from __future__ import annotations

import gzip
import pickle
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from minidit.data import center_crop_arr, get_dataset, read_idx


# ----------------------------------------------------------------------------- imagefolder

def _write_folder(root, sizes=((40, 30), (64, 48), (33, 33)), classes=("zebra", "apple", "mango")):
    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for j, (w, h) in enumerate(sizes):
            arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            ext = ".png" if j % 2 == 0 else ".jpg"
            Image.fromarray(arr).save(root / c / f"img{j}{ext}")
    return root


def _naive_center_crop(img: Image.Image, size: int) -> np.ndarray:
    """The ADM crop written out step by step, independently of minidit's code."""
    w, h = img.size
    while min(w, h) >= 2 * size:
        w, h = w // 2, h // 2
        img = img.resize((w, h), Image.BOX)
    s = size / min(w, h)
    w2, h2 = round(w * s), round(h * s)
    img = img.resize((w2, h2), Image.BICUBIC)
    left, top = (w2 - size) // 2, (h2 - size) // 2
    return np.array(img.crop((left, top, left + size, top + size)))


@pytest.mark.parametrize("wh,size", [((100, 60), 16), ((300, 500), 32), ((16, 16), 16), ((33, 70), 32), ((7, 9), 8)])
def test_center_crop_matches_independent_computation(wh, size):
    arr = np.random.default_rng(1).integers(0, 256, (wh[1], wh[0], 3), dtype=np.uint8)
    img = Image.fromarray(arr)
    out = center_crop_arr(img, size)
    assert out.size == (size, size)
    assert np.array_equal(np.asarray(out), _naive_center_crop(img, size))


def test_center_crop_halves_with_box_filter_first():
    # 4x4 blocks of constant colour: box-halving twice then a bicubic resize by 1 keeps them exact
    blocks = np.kron(np.arange(16, dtype=np.uint8).reshape(4, 4) * 16, np.ones((4, 4), np.uint8))
    img = Image.fromarray(np.stack([blocks] * 3, -1))   # 16x16 -> size 4: halve 16->8->4, no resize
    out = np.asarray(center_crop_arr(img, 4))[..., 0]
    assert np.array_equal(out, np.arange(16, dtype=np.uint8).reshape(4, 4) * 16)


def test_imagefolder_classes_shapes_range(tmp_path):
    root = _write_folder(tmp_path / "data")
    d = get_dataset("imagefolder", root=root, image_size=16)
    assert d.class_names == ["apple", "mango", "zebra"]               # sorted folder order
    assert d.class_to_idx == {"apple": 0, "mango": 1, "zebra": 2}
    assert len(d) == 9 and (d.num_classes, d.channels, d.image_size) == (3, 3, 16)
    x, y = d[0]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64 and int(y) == 0
    assert x.min() >= -1 and x.max() <= 1
    # pixels are exactly the ADM crop mapped to [-1, 1]
    path = d.samples[0][0]
    expected = torch.from_numpy(_naive_center_crop(Image.open(path).convert("RGB"), 16).copy()).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.equal(x, expected)
    assert int(d[8][1]) == 2


def test_imagefolder_flip(tmp_path):
    root = _write_folder(tmp_path / "data", classes=("a",), sizes=((20, 20),))
    plain = get_dataset("imagefolder", root=root, image_size=16)[0][0]
    d = get_dataset("imagefolder", root=root, image_size=16, flip=True)
    outs = [d[0][0] for _ in range(30)]
    assert any(torch.equal(o, plain) for o in outs) and any(torch.equal(o, plain.flip(-1)) for o in outs)
    assert all(torch.equal(o, plain) or torch.equal(o, plain.flip(-1)) for o in outs)


def test_imagefolder_corrupt_file_is_skipped_with_warning(tmp_path):
    root = _write_folder(tmp_path / "data", classes=("a", "b"), sizes=((20, 20), (24, 24)))
    bad = root / "a" / "img0b_broken.png"
    bad.write_bytes(b"this is not a png")
    d = get_dataset("imagefolder", root=root, image_size=8)
    assert len(d) == 5
    idx = [str(p) for p, _ in d.samples].index(str(bad))
    with pytest.warns(RuntimeWarning, match="img0b_broken.png") as rec:
        x, y = d[idx]                              # the next readable sample stands in
    assert x.shape == (3, 8, 8) and int(y) == d.samples[idx + 1][1]
    assert "1 skipped so far" in str(rec[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")             # known-bad files are skipped silently later
        d[idx]
    # a full pass never crashes and ends with a summary count
    with pytest.warns(RuntimeWarning, match=r"1 unreadable image\(s\)"):
        for i in range(len(d)):
            d[i]
    # verify=True removes it up front
    with pytest.warns(RuntimeWarning, match="1 unreadable"):
        v = get_dataset("imagefolder", root=root, image_size=8, verify=True)
    assert len(v) == 4 and str(bad) in v.skipped


def test_imagefolder_missing_and_empty(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*ROOT/<class_name>/<image>"):
        get_dataset("imagefolder", root=tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no class sub-folders"):
        get_dataset("imagefolder", root=tmp_path / "empty")
    (tmp_path / "noimg" / "cls").mkdir(parents=True)
    (tmp_path / "noimg" / "cls" / "readme.txt").write_text("hi")
    with pytest.raises(FileNotFoundError, match="no images"):
        get_dataset("imagefolder", root=tmp_path / "noimg")
    with pytest.raises(ValueError, match="root=PATH"):
        get_dataset("imagefolder")


# ----------------------------------------------------------------------------- cifar10

def _write_cifar(folder, n_per_batch=4):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n_per_batch).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": name.encode()}, f)
        batches[name] = (data, labels)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, f)
    return batches


def test_cifar10_pickle_batches(tmp_path):
    batches = _write_cifar(tmp_path / "cifar-10-batches-py")
    train = get_dataset("cifar10", root=tmp_path)                     # finds the sub-folder
    test = get_dataset("cifar10", root=tmp_path / "cifar-10-batches-py", train=False)
    assert len(train) == 20 and len(test) == 4 and len(get_dataset("cifar10", root=tmp_path, split="all")) == 24
    assert train.class_names[0] == "airplane" and train.num_classes == 10 and train.channels == 3
    data, labels = batches["data_batch_2"]
    x, y = train[4 + 1]                                               # 2nd image of the 2nd batch
    # the 3072 bytes are R plane, G plane, B plane, each 32x32 row-major
    r = data[1, :1024].reshape(32, 32)
    assert torch.equal(x[0], torch.from_numpy(r).float() / 127.5 - 1) and int(y) == labels[1]
    assert torch.equal(x[2], torch.from_numpy(data[1, 2048:].reshape(32, 32)).float() / 127.5 - 1)
    assert get_dataset("cifar10", root=tmp_path, image_size=16)[0][0].shape == (3, 16, 16)


def test_cifar10_missing_fails_fast_offline(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        get_dataset("cifar10", root=tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="download=True but HF_HUB_OFFLINE"):
        get_dataset("cifar10", root=tmp_path, download=True)


# ----------------------------------------------------------------------------- mnist

def _idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def test_mnist_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    tr_x, tr_y = rng.integers(0, 256, (6, 28, 28)), rng.integers(0, 10, 6)
    te_x, te_y = rng.integers(0, 256, (3, 28, 28)), rng.integers(0, 10, 3)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx_bytes(tr_x))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(tr_y))
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:   # gzipped works too
        f.write(_idx_bytes(te_x))
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(_idx_bytes(te_y))
    train, test = get_dataset("mnist", root=tmp_path), get_dataset("mnist", root=tmp_path, train=False)
    assert len(train) == 6 and len(test) == 3 and train.channels == 1 and train.image_size == 28
    x, y = test[2]
    assert x.shape == (1, 28, 28) and torch.equal(x[0], torch.from_numpy(te_x[2]).float() / 127.5 - 1)
    assert int(y) == te_y[2]
    assert get_dataset("mnist", root=tmp_path, image_size=32)[0][0].shape == (1, 32, 32)
    assert np.array_equal(read_idx(tmp_path / "train-labels-idx1-ubyte"), tr_y)


def test_mnist_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        get_dataset("mnist", root=tmp_path)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + b"\x00" * 3)
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "short")


def test_mnist_download_when_online(tmp_path, monkeypatch):
    """download=True fetches the four .gz files (the network is faked with local bytes)."""
    import io
    import urllib.request
    rng = np.random.default_rng(0)
    files = {"train-images-idx3-ubyte": rng.integers(0, 256, (4, 28, 28)), "train-labels-idx1-ubyte": np.arange(4),
             "t10k-images-idx3-ubyte": rng.integers(0, 256, (2, 28, 28)), "t10k-labels-idx1-ubyte": np.arange(2)}
    fetched = []

    def fake_urlopen(url, timeout=None):
        name = url.rsplit("/", 1)[-1].removesuffix(".gz")
        fetched.append(url)
        return io.BytesIO(gzip.compress(_idx_bytes(files[name])))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    d = get_dataset("mnist", root=tmp_path / "mnist", download=True, split="all")
    assert len(d) == 6 and len(fetched) == 4 and all(u.endswith(".gz") for u in fetched)
    assert (tmp_path / "mnist" / "train-images-idx3-ubyte.gz").exists()
