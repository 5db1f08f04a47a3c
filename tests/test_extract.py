"""Latent pre-extraction end to end: shards, manifest, resume, ranks, and the ``latents`` data set."""
from __future__ import annotations

import json
import re

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
    (out / f"{shard_name(2)}.tmp.999999").write_bytes(b"half a file")   # debris of the crash
    rep = _run(data, vae, out)
    assert (rep["shards_done"], rep["shards_skipped"], rep["images"]) == (2, 2, 14)
    assert not list(out.glob("*.tmp.*"))                              # the debris is gone
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


# ---------------------------------------------------------------------------- bad input, damaged files

def test_data_channels_must_match_the_autoencoder(tmp_path, vae):
    grey = get_dataset("digits", image_size=16)
    with pytest.raises(ValueError, match="1-channel images but the autoencoder 'tiny\\(custom\\)' takes 3"):
        _run(grey, vae, tmp_path / "lat")
    assert not (tmp_path / "lat").exists()                          # refused before writing anything
    for kw, match in ((dict(batch_size=0), "--batch-size"), (dict(shard_size=0), "--shard-size")):
        with pytest.raises(ValueError, match=match):
            extract_latents(get_dataset("shapes", num_samples=4, image_size=16), vae, tmp_path / "x",
                            progress=False, **kw)


def test_a_failed_run_does_not_block_a_rerun(tmp_path, vae, data):
    out = tmp_path / "lat"
    with pytest.raises(Crash):                                       # dies in its first shard
        _run(data, CrashingVAE(vae, limit=1), out, dtype="float16")
    assert (out / "extract_config.json").exists() and not list(out.glob("shard_*"))
    rep = _run(data, vae, out)                                       # other settings: the leftovers give way
    assert rep["shards_done"] == 4 and json.loads((out / "manifest.json").read_text())["dtype"] == "float32"
    with pytest.raises(ValueError, match="different settings.*dtype"):   # real shards are never mixed
        _run(data, vae, out, dtype="float16")


def test_damaged_files_are_named(tmp_path, vae, data):
    _run(data, vae, tmp_path)
    shard = tmp_path / shard_name(2)
    shard.write_bytes(shard.read_bytes()[:-100])                     # truncated
    with pytest.raises(ValueError, match=f"shard {shard} is truncated.*rerun the same"):
        get_dataset("latents", root=tmp_path)
    shard.write_bytes(b"\x05")                                       # not a safetensors file at all
    with pytest.raises(ValueError, match=f"shard {shard} is not a readable safetensors file"):
        get_dataset("latents", root=tmp_path)
    shard.unlink()
    with pytest.raises(FileNotFoundError, match=f"shard {shard} is missing"):
        get_dataset("latents", root=tmp_path)
    (tmp_path / "manifest.json").write_text('{"format_version": 1, "count"')
    with pytest.raises(ValueError, match="manifest.json is not readable"):
        get_dataset("latents", root=tmp_path)


@pytest.mark.parametrize("argv, match", [
    (["--data", "/no/such/folder"], "no such data set name or folder"),
    (["--data", "shapes", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["--data", "shapes", "--device", "cuda:99"], "--device cuda:99"),
    (["--data", "shapes", "--scale-factor", "nan"], "--scale-factor must be a positive number"),
])
def test_cli_bad_input(tmp_path, argv, match):
    with pytest.raises(ValueError if "folder" not in match else FileNotFoundError, match=match):
        main(argv + ["--out", str(tmp_path / "lat")])


def test_cli_errors_are_one_line(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "minidit.extract", "--data", str(tmp_path / "nowhere"),
                           "--out", str(tmp_path / "lat")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: --data") and "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------- latents remember their autoencoder

@pytest.fixture(scope="module")
def recipe_cache(tmp_path_factory):
    """A private cache holding a tiny-autoencoder recipe that trains in a second (not today's default)."""
    from minidit.autoencoder import TrainSettings, load_tiny_autoencoder

    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINIDIT_CACHE", str(cache))
        model, info = load_tiny_autoencoder(TrainSettings(steps=3, pool=64, test_samples=16, seed=1), verbose=False)
    return cache, model, info["key"]


@pytest.fixture
def small_recipe(recipe_cache, monkeypatch):
    cache, model, key = recipe_cache
    monkeypatch.setenv("MINIDIT_CACHE", str(cache))
    return None, model, key


def test_tiny_autoencoder_is_loaded_by_its_key(small_recipe, tmp_path):
    from minidit.env import cache_dir

    settings, model, key = small_recipe
    vae = load_vae(f"tiny:{key}")
    assert vae.name == f"tiny:{key}"
    assert all(torch.equal(a, b) for a, b in zip(vae.model.state_dict().values(), model.state_dict().values()))
    # not in the cache any more: the recipe the key spells out is retrained (seeded), the same weights
    for f in cache_dir("autoencoder").glob(f"{key}.*"):
        f.unlink()
    again = load_vae(f"tiny:{key}")
    assert all(torch.equal(a, b) for a, b in zip(again.model.state_dict().values(), model.state_dict().values()))
    scaled = load_vae(f"tiny:{key}@0.5")                             # a hand-chosen scale factor travels along
    assert scaled.scale_factor == 0.5 and load_vae(scaled.name).scale_factor == 0.5
    with pytest.raises(ValueError, match="version 99 of the tiny-autoencoder recipe"):
        load_vae("tiny:" + re.sub(r"^tiny_ae_v\d+_", "tiny_ae_v99_", key))
    with pytest.raises(ValueError, match="not a tiny-autoencoder key"):
        load_vae("tiny:my_own_autoencoder")
    with pytest.raises(ValueError, match="no name to be loaded by"):
        load_vae("tiny(custom)")


def test_trainer_and_sampler_decode_with_the_extraction_autoencoder(small_recipe, tmp_path, monkeypatch):
    from minidit import sample as sample_mod
    from minidit import train as train_mod
    from minidit.training import setup
    from minidit.training.checkpoint import list_checkpoints

    _, _, key = small_recipe
    build_vae = setup.build_vae
    out = tmp_path / "lat"
    extract_latents(get_dataset("shapes", num_samples=12, image_size=32), load_vae(f"tiny:{key}"), out,
                    shard_size=8, progress=False)
    assert json.loads((out / "manifest.json").read_text())["vae"] == f"tiny:{key}"
    fast = ["--results-dir", str(tmp_path / "runs"), "--latents", str(out), "--image-size", "32", "--model", "DiT-P/2",
            "--global-batch-size", "4", "--max-steps", "1", "--num-sampling-steps", "2"]
    # nothing to decode (no grids): no autoencoder is loaded, let alone trained
    monkeypatch.setattr(setup, "build_vae", lambda *a: pytest.fail("an autoencoder was loaded"))
    train_mod.main(fast + ["--grid-columns", "0"])
    monkeypatch.setattr(setup, "build_vae", build_vae)
    run = train_mod.main(fast + ["--grid-columns", "1"])
    assert (run / "samples_0000001.png").exists()
    ckpt = list_checkpoints(run / "checkpoints")[-1][1]
    model, args, vae = sample_mod.load_for_sampling(ckpt)
    assert args["vae"] == vae.name == f"tiny:{key}"                   # the extraction's, not today's default
    # latents whose autoencoder cannot be rebuilt: the trainer refuses to decode them with another one
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps(dict(manifest, vae="tiny(custom)")))
    with pytest.raises(ValueError, match="no name to be loaded by.*--grid-columns 0"):
        train_mod.main(fast + ["--grid-columns", "1"])


def test_trainer_refuses_data_the_autoencoder_cannot_encode(small_recipe, tmp_path, monkeypatch):
    from minidit import train as train_mod
    from minidit.training import setup

    _, _, key = small_recipe
    monkeypatch.setattr(setup, "build_vae", lambda name, device: load_vae(f"tiny:{key}"))
    with pytest.raises(ValueError, match="1-channel images but the VAE 'tiny:.*' takes 3-channel ones"):
        train_mod.main(["--results-dir", str(tmp_path), "--preset", "digits", "--vae", "tiny", "--image-size", "8", "--max-steps", "1"])
