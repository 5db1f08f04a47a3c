"""The VAE wrapper: a tiny random diffusers AutoencoderKL as oracle, the tiny autoencoder, offline hub ids."""
from __future__ import annotations

import time

import pytest
import torch

from minidit.autoencoder import AutoencoderConfig, TinyAutoencoder
from minidit.vae import SD_SCALE_FACTOR, load_vae


@pytest.fixture(scope="module")
def kl_folder(tmp_path_factory):
    from diffusers import AutoencoderKL
    torch.manual_seed(0)
    model = AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(8, 16), latent_channels=4,
                          layers_per_block=1, norm_num_groups=8, sample_size=32,
                          down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    path = tmp_path_factory.mktemp("vae") / "tiny-kl"
    model.save_pretrained(path)
    return path, model.eval()


def test_diffusers_folder_matches_raw_latent_dist(kl_folder):
    path, raw = kl_folder
    vae = load_vae(str(path))
    assert vae.scale_factor == SD_SCALE_FACTOR == 0.18215
    assert (vae.latent_channels, vae.downsample_factor) == (4, 2)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        dist = raw.encode(x).latent_dist
    mean, std = vae.encode_moments(x)
    assert mean.shape == (2, 4, 16, 16)
    torch.testing.assert_close(mean, dist.mean * 0.18215)
    torch.testing.assert_close(std, dist.std * 0.18215)
    torch.testing.assert_close(vae.encode(x, sample=False), dist.mean * 0.18215)
    # a sample is mean + std * eps with the same eps diffusers would draw
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    z = vae.encode(x, generator=g1)
    eps = torch.randn(mean.shape, generator=g2)
    torch.testing.assert_close(z, (dist.mean + dist.std * eps) * 0.18215)
    assert not torch.equal(vae.encode(x), vae.encode(x))            # fresh noise each call
    # decode divides by the scale factor first and clamps to [-1, 1]
    with torch.no_grad():
        expected = raw.decode(dist.mean).sample.clamp(-1, 1)
    out = vae.decode(dist.mean * 0.18215)
    assert out.shape == (2, 3, 32, 32)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-4)


def test_scale_factor_override(kl_folder):
    path, raw = kl_folder
    vae = load_vae(str(path), scale_factor=0.5)
    x = torch.zeros(1, 3, 32, 32)
    with torch.no_grad():
        m = raw.encode(x).latent_dist.mean
    torch.testing.assert_close(vae.encode(x, sample=False), m * 0.5)


def test_pipeline_folder_with_vae_subfolder(kl_folder, tmp_path):
    import shutil
    path, _ = kl_folder
    shutil.copytree(path, tmp_path / "pipe" / "vae")
    assert load_vae(str(tmp_path / "pipe")).latent_channels == 4
    (tmp_path / "junk").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_vae(str(tmp_path / "junk"))


@pytest.mark.parametrize("spec", ["stabilityai/sd-vae-ft-ema", "ema", "mse"])
def test_hub_id_offline_fails_fast_with_help(spec, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))            # an empty cache
    t = time.time()
    with pytest.raises(RuntimeError, match="hf download stabilityai/sd-vae-ft-") as err:
        load_vae(spec)
    assert "load_vae('path/to/sd-vae-ft-" in str(err.value)
    assert time.time() - t < 20                                     # fails fast, no network wait


def test_bad_spec_is_explained():
    with pytest.raises(FileNotFoundError, match="not a hub id"):
        load_vae("no such thing")
    with pytest.raises(ValueError, match="scale_factor"):
        load_vae(TinyAutoencoder())


def test_tiny_backend_shapes_and_scaling():
    ae = TinyAutoencoder(AutoencoderConfig(channels=(8, 16)))
    vae = load_vae(ae, scale_factor=2.0)
    assert (vae.latent_channels, vae.downsample_factor) == (4, 4)
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    mean, std = vae.encode_moments(x)
    with torch.no_grad():
        m_raw, logvar = ae.encode(x)
    torch.testing.assert_close(mean, 2.0 * m_raw)
    torch.testing.assert_close(std, 2.0 * torch.exp(0.5 * logvar))
    assert vae.decode(mean).shape == (3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(vae.decode(mean, clamp=False), ae.decode(m_raw))
    with pytest.raises(ValueError, match="not divisible"):
        vae.encode(torch.zeros(1, 3, 30, 30))
