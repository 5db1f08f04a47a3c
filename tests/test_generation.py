"""minidit.generation: the two noise streams, the official guided recipe, labels and scales checked,
latents decoded a few at a time, grids sized for the device."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from minidit.diffusion import create_diffusion
from minidit.generation import (CPU_GRID_PIXELS, DECODE_CHUNK_PIXELS, check_cfg_scale, decode_in_chunks, generate,
                                grid_columns_for, grid_labels)
from minidit.models import DiT
from minidit.training.distributed import rank_seed

SHAPE = (1, 8, 8)


class ZeroDataOracle(nn.Module):
    """The exact eps of data that is all zeros (``x_t = sqrt(1 - alpha_bar_t) eps``), shifted a little
    by the class so guidance matters; the learned-sigma channel is 0. Samples stay well inside
    [-1, 1], so comparing them after generate's clamp is a real comparison."""

    in_channels, num_classes = 1, 10
    forward_with_cfg = DiT.forward_with_cfg  # minidit's (official) guidance on this model's forward

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # generate reads the device off the parameters
        self.alpha_bar = torch.tensor(create_diffusion("").alphas_cumprod, dtype=torch.float32)

    def forward(self, x, t, y):
        ab = self.alpha_bar[t].view(-1, 1, 1, 1)
        shift = torch.where(y < self.num_classes, 0.05 * y.float(), torch.zeros_like(y, dtype=torch.float))
        eps = x / (1 - ab).sqrt() + shift.view(-1, 1, 1, 1)
        return torch.cat([eps, torch.zeros_like(x)], dim=1)


@pytest.fixture
def step_noise(monkeypatch):
    """Every per-step noise tensor the samplers draw (they call torch.randn_like), in order."""
    drawn, real = [], torch.randn_like

    def spy(x, *args, **kwargs):
        out = real(x, *args, **kwargs)
        drawn.append(out.clone())
        return out

    monkeypatch.setattr(torch, "randn_like", spy)
    return drawn


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1])


def test_same_seed_for_both_streams_is_the_bug_this_fixes():
    """What minidit did before: torch.manual_seed(s) for the steps, Generator().manual_seed(s) for x_T.
    On a CPU both are the same Mersenne Twister from the same seed: the first step's noise IS x_T."""
    torch.manual_seed(7)
    first_step = torch.randn_like(torch.empty(4, *SHAPE))
    x_T = torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first_step, x_T)


def test_step_noise_is_independent_of_the_starting_noise_per_rank(step_noise):
    oracle, diffusion, n = ZeroDataOracle(), create_diffusion("4"), 16
    labels = torch.arange(n) % 10
    x_T, first = {}, {}
    for rank in (0, 1):                       # the seeds sample.py gives rank 0 and rank 1 of 2
        seed = rank_seed(7, 2, rank)
        x_T[rank] = torch.randn(n, *SHAPE, generator=torch.Generator().manual_seed(seed))
        before = torch.get_rng_state()
        step_noise.clear()
        generate(oracle, diffusion, labels, SHAPE, 10, cfg_scale=1.0, generator=torch.Generator().manual_seed(seed))
        assert len(step_noise) == 4           # one draw per DDPM step
        first[rank] = step_noise[0]
        assert torch.equal(torch.get_rng_state(), before)   # the caller's global stream is untouched
        # the first step's noise is neither x_T nor correlated with it (|r| ~ 0.03 for 1024 numbers)
        assert not torch.allclose(first[rank], x_T[rank])
        assert abs(_corr(first[rank], x_T[rank])) < 0.15
    # each rank its own starting noise and its own step noise
    assert abs(_corr(x_T[0], x_T[1])) < 0.15 and abs(_corr(first[0], first[1])) < 0.15
    assert abs(_corr(first[0], x_T[1])) < 0.15 and abs(_corr(first[1], x_T[0])) < 0.15


def test_each_batch_gets_fresh_step_noise(step_noise):
    oracle, diffusion = ZeroDataOracle(), create_diffusion("2")
    gen = torch.Generator().manual_seed(0)
    for _ in range(2):                        # two batches drawn with one generator, as sample.py does
        generate(oracle, diffusion, torch.arange(8), SHAPE, 10, cfg_scale=1.0, generator=gen)
    assert len(step_noise) == 4 and abs(_corr(step_noise[0], step_noise[2])) < 0.25


def test_generate_follows_the_documented_streams_and_the_official_cfg_recipe():
    """x_T from the generator, then a 63-bit seed from the same generator for the step noise; the
    guided batch built as the official sample.py: [z, z], labels + null class, forward_with_cfg,
    keep the first half, clip_denoised=False."""
    oracle, diffusion, labels = ZeroDataOracle(), create_diffusion("5"), torch.tensor([3, 7])
    got = generate(oracle, diffusion, labels, SHAPE, 10, cfg_scale=2.0, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    z = torch.randn(2, *SHAPE, generator=g)
    step_seed = int(torch.randint(0, 2**63 - 1, (), generator=g))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(step_seed)
        ref = diffusion.p_sample_loop(oracle.forward_with_cfg, (4, *SHAPE), torch.cat([z, z]), clip_denoised=False,
                                      model_kwargs=dict(y=torch.tensor([3, 7, 10, 10]), cfg_scale=2.0))
    torch.testing.assert_close(got, ref[:2].clamp(-1, 1))
    assert got.abs().max() < 0.9              # nothing clamped: the comparison above means something
    unguided = generate(oracle, diffusion, labels, SHAPE, 10, cfg_scale=1.0,
                        generator=torch.Generator().manual_seed(5))
    assert not torch.allclose(got, unguided)  # the scale reached the model


def test_without_a_generator_one_global_stream_as_the_official_scripts():
    """The official sample.py: torch.manual_seed(seed); z = torch.randn(...); p_sample_loop(...) --
    x_T first, then the step noise, all from the one global generator."""
    oracle, diffusion, labels = ZeroDataOracle(), create_diffusion("5"), torch.tensor([1, 2, 3])
    torch.manual_seed(3)
    got = generate(oracle, diffusion, labels, SHAPE, 10, cfg_scale=1.0)
    torch.manual_seed(3)
    z = torch.randn(3, *SHAPE)
    ref = diffusion.p_sample_loop(oracle, z.shape, z, clip_denoised=False, model_kwargs=dict(y=labels))
    torch.testing.assert_close(got, ref.clamp(-1, 1))


class FarOracle(nn.Module):
    """Predicts eps = -3 x_t (fixed variance): its x_0 estimate lies far outside [-1, 1]."""

    learn_sigma = False

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))   # where generate() finds the device

    def forward(self, x, t, y=None):
        return -3.0 * x


def test_clip_denoised_reaches_the_sampler_for_pixel_models():
    """clip_denoised=True is the sampler's own clipping (ADM's pixel sampler), step by step; the
    default stays the official DiT's False."""
    diffusion, labels = create_diffusion("5", learn_sigma=False), torch.tensor([1, 2, 3])
    got = {}
    for clip in (False, True):
        torch.manual_seed(3)
        got[clip] = generate(FarOracle(), diffusion, labels, SHAPE, 10, cfg_scale=1.0, clip_denoised=clip)
        torch.manual_seed(3)
        z = torch.randn(3, *SHAPE)
        ref = diffusion.p_sample_loop(FarOracle(), z.shape, z, clip_denoised=clip, model_kwargs=dict(y=labels))
        torch.testing.assert_close(got[clip], ref.clamp(-1, 1))
    assert not torch.allclose(got[False], got[True])   # the flag changed the samples
    torch.manual_seed(3)
    torch.testing.assert_close(generate(FarOracle(), diffusion, labels, SHAPE, 10, cfg_scale=1.0), got[False])


def test_guidance_channels_reach_forward_with_cfg():
    seen = []

    class Spy(ZeroDataOracle):
        def forward_with_cfg(self, x, t, y, cfg_scale, guidance_channels=None):
            seen.append(guidance_channels)
            return DiT.forward_with_cfg(self, x, t, y, cfg_scale, guidance_channels=guidance_channels)

    for choice in ("official", "all", None):
        generate(Spy(), create_diffusion("1"), torch.tensor([1]), SHAPE, 10, cfg_scale=3.0,
                 generator=torch.Generator().manual_seed(0), guidance_channels=choice)
    assert seen == ["official", "all", None]


@pytest.mark.parametrize("labels, match", [
    (torch.tensor([1.0, 2.7]), "integer class ids"),
    ([1.5, 2.0], "integer class ids"),
    (torch.tensor([[1, 2]]), "1-d"),
    (torch.tensor([3, 10]), r"\[0, 9\]"),
])
def test_bad_labels_are_refused_not_truncated(labels, match):
    with pytest.raises(ValueError, match=match):
        generate(ZeroDataOracle(), create_diffusion("1"), labels, SHAPE, 10, cfg_scale=1.0)


def test_cfg_scale_checks():
    for bad in (-1.0, float("nan"), float("inf"), "x"):
        with pytest.raises(ValueError, match="cfg scale"):
            check_cfg_scale(bad)
    with pytest.warns(UserWarning, match="between 0 and 1.*without guidance"):
        assert check_cfg_scale(0.5) == 0.5
    assert check_cfg_scale(0) == 0.0 and check_cfg_scale(1.5) == 1.5   # no warning


class CountingVAE:
    """Decodes by nearest upsampling and records how many latents each call decoded."""

    downsample_factor, latent_channels = 8, 4

    def __init__(self):
        self.calls = []

    def decode(self, z):
        self.calls.append(len(z))
        return z[:, :3].repeat_interleave(8, -1).repeat_interleave(8, -2)


def test_latents_are_decoded_a_few_at_a_time():
    vae = CountingVAE()
    z = torch.randn(10, 4, 32, 32)             # 256x256 images
    out = decode_in_chunks(vae, z, torch.device("cpu"))
    per_call = DECODE_CHUNK_PIXELS[0] // (256 * 256)
    assert per_call == 4 and vae.calls == [4, 4, 2]   # never more than 4 256x256 images per call on a CPU
    torch.testing.assert_close(out, CountingVAE().decode(z))   # the same images as one big call
    vae = CountingVAE()
    decode_in_chunks(vae, torch.randn(3, 4, 128, 128), torch.device("cpu"))   # 1024x1024: one at a time
    assert vae.calls == [1, 1, 1]


def test_grids_are_sized_for_the_device():
    vae = CountingVAE()
    # ImageNet 256 on a CPU: one image per class, 8 images -- the official sample.py's grid
    assert grid_columns_for(8, 1000, "cpu", vae, 256) == 1
    assert len(grid_labels(1000, grid_columns_for(8, 1000, "cpu", vae, 256))) * 256 ** 2 <= CPU_GRID_PIXELS
    assert grid_columns_for(8, 1000, "cuda", vae, 256) == 8       # a GPU keeps the full grid
    assert grid_columns_for(8, 10, "cpu", vae, 32) == 8           # the tiny autoencoder's 32x32 grids
    assert grid_columns_for(8, 10, "cpu", None, 256) == 8         # pixel space: nothing to decode
    assert grid_columns_for(8, 10, "cpu", vae, 128) == 3          # 10 rows of 128x128 in 8 x 256^2 pixels
    assert math.prod(grid_labels(10, 3).shape) == 30
