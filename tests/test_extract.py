"""Latent pre-extraction end to end: shards, manifest, resume, ranks, and the ``latents`` data set."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from minidit.autoencoder import AutoencoderConfig, TinyAutoencoder
from minidit.data import get_dataset
from minidit.extract import extract_latents, main, shard_name
from minidit.vae import load_vae

N, SHARD = 30, 8          # 4 shards: 8, 8, 8, 6


@pytest.fixture(scope="module")
def vae():
    torch.manual_seed(0)
    return load_vae(TinyAutoencoder(AutoencoderConfig(channels=(8, 16))), scale_factor=0.5)


@pytest.fixture(scope="module")
def data():
    return get_dataset("shapes", num_samples=N, image_size=16)


def _run(ds, vae, out, **kw):
    return extract_latents(ds, vae, out, batch_size=5, shard_size=SHARD, data_desc="shapes16", progress=False, **kw)


def test_end_to_end(tmp_path, vae, data):
    rep = _run(data, vae, tmp_path)
    assert rep["images"] == N and rep["shards_done"] == 4 and rep["images_per_s"] > 0
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["count"] == N and m["latent_shape"] == [4, 4, 4] and m["image_size"] == 16
    assert m["scale_factor"] == 0.5 and m["vae"] == "tiny(custom)" and m["format_version"] == 1
    assert m["class_names"] == data.class_names and m["num_classes"] == 10
    assert [s["file"] for s in m["shards"]] == [shard_name(k) for k in range(4)]
    assert [s["count"] for s in m["shards"]] == [8, 8, 8, 6]
    # shard 1 holds images 8..15: mean/std of the image and of its mirror, scaled, and the labels
    t = load_file(str(tmp_path / shard_name(1)))
    x, y = data.batch(range(8, 16))
    mean, std = vae.encode_moments(x)
    mean_f, std_f = vae.encode_moments(x.flip(-1))
    assert t["mean"].shape == (8, 2, 4, 4, 4)
    torch.testing.assert_close(t["mean"][:, 0], mean)
    torch.testing.assert_close(t["std"][:, 0], std)
    torch.testing.assert_close(t["mean"][:, 1], mean_f)
    torch.testing.assert_close(t["std"][:, 1], std_f)
    assert torch.equal(t["labels"], y) and torch.equal(t["index"], torch.arange(8, 16))


def test_latents_dataset_flips_and_fresh_samples(tmp_path, vae, data):
    _run(data, vae, tmp_path)
    t = load_file(str(tmp_path / shard_name(2)))                    # samples 16..23
    det = get_dataset("latents", root=tmp_path, sample=False)
    assert len(det) == N and (det.channels, det.image_size, det.num_classes) == (4, 4, 10)
    z, y = det[17]
    assert z.shape == (4, 4, 4) and z.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(z, t["mean"][1, 0]) and int(y) == int(data[17][1])
    flips = get_dataset("latents", root=tmp_path, sample=False, flip=True)
    seen = {0 if torch.equal(flips[17][0], t["mean"][1, 0]) else 1 for _ in range(30)}
    assert seen == {0, 1}
    for _ in range(5):
        z = flips[17][0]
        assert any(torch.equal(z, t["mean"][1, k]) for k in (0, 1))
    fresh = get_dataset("latents", root=tmp_path)                   # sample=True by default
    a, b = fresh[17][0], fresh[17][0]
    assert not torch.equal(a, b)
    zs = torch.stack([fresh[17][0] for _ in range(400)])
    eps = (zs - t["mean"][1, 0]) / t["std"][1, 0]                    # must be standard normal noise
    assert abs(eps.mean().item()) < 0.05 and abs(eps.std().item() - 1) < 0.05
    assert len(get_dataset("latents", root=tmp_path, num_samples=7)) == 7
    with pytest.raises(ValueError, match="not image_size=64"):
        get_dataset("latents", root=tmp_path, image_size=64)


class Crash(Exception):
    pass


class CrashingVAE:
    """Delegates to a VAE but raises after ``limit`` encode calls: an interrupted extraction."""

    def __init__(self, vae, limit):
        self.vae, self.limit, self.calls = vae, limit, 0

    def __getattr__(self, name):
        return getattr(self.vae, name)

    def encode_moments(self, x):
        self.calls += 1
        if self.calls > self.limit:
            raise Crash("power cut")
        return self.vae.encode_moments(x)


def test_resume_after_interruption(tmp_path, vae, data):
    full = tmp_path / "full"
    _run(data, vae, full)
    out = tmp_path / "interrupted"
    with pytest.raises(Crash):
        _run(data, CrashingVAE(vae, limit=5), out)                  # 2 batches per shard: dies in shard 2
    assert sorted(p.name for p in out.glob("shard_*")) == [shard_name(0), shard_name(1)]
    assert not (out / "manifest.json").exists()
    with pytest.raises(FileNotFoundError, match="did not finish.*resume"):
        get_dataset("latents", root=out)
    (out / f".{shard_name(2)}.tmp0").write_bytes(b"half a file")   # debris of the crash
    rep = _run(data, vae, out)
    assert (rep["shards_done"], rep["shards_skipped"], rep["images"]) == (2, 2, 14)
    # deleting the last shard of a finished run: only that one is redone
    (out / shard_name(3)).unlink()
    rep = _run(data, vae, out)
    assert (rep["shards_done"], rep["shards_skipped"]) == (1, 3)
    for k in range(4):
        a, b = load_file(str(full / shard_name(k))), load_file(str(out / shard_name(k)))
        assert all(torch.equal(a[key], b[key]) for key in a)


def test_rerun_with_other_settings_refuses(tmp_path, vae, data):
    _run(data, vae, tmp_path)
    with pytest.raises(ValueError, match="different settings.*shard_size"):
        extract_latents(data, vae, tmp_path, shard_size=4, data_desc="shapes16", progress=False)
    with pytest.raises(ValueError, match="flip=False"):
        extract_latents(get_dataset("shapes", num_samples=4, image_size=16, flip=True), vae, tmp_path / "x", progress=False)


def test_ranks_take_strided_shards(tmp_path, vae, data):
    r1 = _run(data, vae, tmp_path, rank=1, world_size=2)
    assert sorted(p.name for p in tmp_path.glob("shard_*")) == [shard_name(1), shard_name(3)]
    assert "manifest" not in r1 and not (tmp_path / "manifest.json").exists()   # only rank 0 writes it
    r0 = _run(data, vae, tmp_path, rank=0, world_size=2)
    assert r0["shards_done"] == 2 and r0["manifest"]["count"] == N
    ds = get_dataset("latents", root=tmp_path, sample=False)
    assert torch.equal(ds.labels, torch.tensor([int(data[i][1]) for i in range(N)]))


def test_float16_storage(tmp_path, vae, data):
    _run(data, vae, tmp_path, dtype="float16")
    t = load_file(str(tmp_path / shard_name(0)))
    assert t["mean"].dtype == torch.float16
    z = get_dataset("latents", root=tmp_path, sample=False)[3][0]
    assert z.dtype == torch.float32 and torch.equal(z, t["mean"][3, 0].float())


def test_cli_with_a_diffusers_vae(tmp_path, capsys):
    from diffusers import AutoencoderKL
    torch.manual_seed(0)
    AutoencoderKL(block_out_channels=(8, 16), latent_channels=4, layers_per_block=1, norm_num_groups=8,
                  sample_size=32, down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2).save_pretrained(tmp_path / "kl")
    main(["--data", "shapes", "--vae", str(tmp_path / "kl"), "--image-size", "16", "--num-samples", "6",
          "--shard-size", "4", "--batch-size", "3", "--out", str(tmp_path / "lat")])
    printed = capsys.readouterr().out
    assert "images/s" in printed and "scale factor 0.18215" in printed
    ds = get_dataset("latents", root=tmp_path / "lat", flip=True)
    assert len(ds) == 6 and ds[5][0].shape == (4, 8, 8) and ds.scale_factor == 0.18215
