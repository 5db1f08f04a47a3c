"""The tiny KL autoencoder: architecture, the KL/reparameterisation maths, training, the cache."""
from __future__ import annotations

import math

import pytest
import torch

from minidit import autoencoder as ae
from minidit.autoencoder import (AutoencoderConfig, TinyAutoencoder, TrainSettings, autoencoder_loss,
                                 estimate_scale_factor, kl_to_standard_normal, psnr, reparameterize)


def _conv(ci, co, k):
    return ci * co * k * k + co


def _rb(ci, co):
    return 2 * ci + _conv(ci, co, 3) + 2 * co + _conv(co, co, 3) + (_conv(ci, co, 1) if ci != co else 0)


def test_shapes_and_parameter_count():
    model = TinyAutoencoder()
    x = torch.randn(2, 3, 32, 32)
    mean, logvar = model.encode(x)
    assert mean.shape == logvar.shape == (2, 4, 4, 4)               # f = 8, 4 latent channels (SD's)
    assert model.decode(mean).shape == (2, 3, 32, 32)
    assert model.encode(torch.randn(1, 3, 64, 64))[0].shape == (1, 4, 8, 8)
    # counted by hand from the architecture described in the docstrings: per level a stride-2
    # conv and a ResNet block (encoder), a ResNet block and an upsampling conv (decoder)
    enc = (_conv(3, 32, 3) + _conv(32, 32, 3) + _rb(32, 32) + _conv(32, 32, 3) + _rb(32, 64)
           + _conv(64, 64, 3) + _rb(64, 64) + 2 * 64 + _conv(64, 8, 3))
    dec = (_conv(4, 64, 3) + _rb(64, 64) + _conv(64, 64, 3) + _rb(64, 64) + _conv(64, 64, 3)
           + _rb(64, 32) + _conv(32, 32, 3) + 2 * 32 + _conv(32, 3, 3))
    assert sum(p.numel() for p in model.encoder.parameters()) == enc
    assert sum(p.numel() for p in model.decoder.parameters()) == dec
    assert AutoencoderConfig(channels=(16, 32)).downsample_factor == 4


def test_kl_matches_torch_distributions():
    mean, logvar = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    q = torch.distributions.Normal(mean, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    expected = torch.distributions.kl_divergence(q, p).flatten(1).sum(1)
    torch.testing.assert_close(kl_to_standard_normal(mean, logvar), expected)


def test_reparameterize_distribution():
    mean, logvar = torch.full((200_000,), 1.5), torch.full((200_000,), math.log(0.25))
    z = reparameterize(mean, logvar, torch.randn(200_000))
    assert abs(z.mean().item() - 1.5) < 0.01 and abs(z.std().item() - 0.5) < 0.01


def test_scale_factor_and_psnr():
    z = 5.5 * torch.randn(64, 4, 8, 8)
    assert estimate_scale_factor(z).item() == pytest.approx(1 / 5.5, rel=0.02)
    assert (z * estimate_scale_factor(z)).std().item() == pytest.approx(1.0, abs=1e-5)
    assert psnr(0.01) == pytest.approx(10 * math.log10(400))


def test_a_few_steps_reduce_the_loss():
    from minidit.data import get_dataset
    x, _ = get_dataset("shapes", num_samples=8, image_size=16).batch(range(8))
    model = TinyAutoencoder(AutoencoderConfig(channels=(8, 16)))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    torch.manual_seed(0)
    first = autoencoder_loss(model, x, 1e-6)[0].item()
    for _ in range(15):
        loss = autoencoder_loss(model, x, 1e-6)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        last = autoencoder_loss(model, x, 1e-6)[0].item()
    assert last < 0.7 * first, (first, last)


def test_cached_copy_trains_once(monkeypatch, tmp_path):
    monkeypatch.setenv("MINIDIT_CACHE", str(tmp_path))
    s = TrainSettings(steps=2, batch_size=2, image_size=16, pool=8, test_samples=4)
    model, info = ae.load_tiny_autoencoder(s, verbose=False)
    assert info["steps"] == 2 and info["psnr"] > 0 and info["scale_factor"] > 0
    files = sorted(p.name for p in (tmp_path / "autoencoder").iterdir())
    assert files == [info["key"] + ".json", info["key"] + ".safetensors"]
    assert info["key"] == ae.cache_key(s) != ae.cache_key(TrainSettings(steps=3, batch_size=2, image_size=16, pool=8,
                                                                        test_samples=4))

    def no_training(*a, **k):
        raise AssertionError("the cached copy should have been loaded, not retrained")
    monkeypatch.setattr(ae, "train_autoencoder", no_training)
    again, info2 = ae.load_tiny_autoencoder(s, verbose=False)
    assert info2 == info
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    monkeypatch.setenv("MINIDIT_SMOKE", "1")
    assert ae.default_settings().steps < TrainSettings().steps        # smoke mode: a shorter recipe


def test_command_line_reports_the_error(capsys):
    report = ae.main(["--steps", "2", "--batch-size", "2", "--image-size", "16", "--pool", "8", "--test-samples", "4"])
    out = capsys.readouterr().out
    assert "MSE" in out and "PSNR" in out and report["steps"] == 2
    assert report["psnr"] == pytest.approx(psnr(report["mse"]))
