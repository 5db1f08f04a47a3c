"""The latent-vs-pixel study (minidit/experiments/latent.py, chapter 9): specs, equal compute, the
latent training path, and the committed results."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from minidit.autoencoder import AutoencoderConfig, TinyAutoencoder, cache_key
from minidit.data import Glyphs, Shapes
from minidit.experiments import common, grid, latent, measure, scaling
from minidit.vae import load_vae


@pytest.fixture
def fake_tiny_vae(monkeypatch):
    """An untrained tiny autoencoder (f = 8, 4 channels) instead of the cached one, and features
    that are 4x4-pooled pixels (no classifier): instant and deterministic. Records what the
    classifier and the training step were given."""
    torch.manual_seed(0)
    vae = load_vae(TinyAutoencoder(AutoencoderConfig(channels=(8, 8, 8), norm_groups=4)), scale_factor=1.0)
    seen = dict(classified=[], trained=[])

    def classify(images, dataset, batch_size=1000):
        seen["classified"].append(tuple(images.shape[1:]))
        n, c, s, _ = images.shape
        # (N, C, S, S) -> (N, C, S/4, 4, S/4, 4) -> (N, C * S/4 * S/4)
        return images.float().reshape(n, c, s // 4, 4, s // 4, 4).mean((3, 5)).flatten(1), torch.zeros(n, 10)

    step = common.train_step

    def train_step(model, diffusion, opt, ema_list, param_list, x_0, y, **kw):
        seen["trained"].append(tuple(x_0.shape[1:]))
        return step(model, diffusion, opt, ema_list, param_list, x_0, y, **kw)

    monkeypatch.setattr(measure, "tiny_vae", lambda: vae)
    monkeypatch.setattr(measure, "classify", classify)
    monkeypatch.setattr(common, "train_step", train_step)
    measure.latent_moments.cache_clear()
    measure.real_features.cache_clear()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield seen
    torch.set_num_threads(threads)
    measure.latent_moments.cache_clear()
    measure.real_features.cache_clear()


def test_latent_spec_validation_and_identity():
    spec = latent.RECIPE.spec("DiT-N/2", seed=3, latent=True)
    pixel = latent.RECIPE.spec("DiT-N/2", seed=3)
    assert spec.latent and not spec.clip_denoised          # latents are unbounded: never clipped
    assert pixel.clip_denoised and not pixel.latent
    assert spec.key() == "DiT-N_2-latent-adaLN-Zero-seed3" and pixel.key() == "DiT-N_2-adaLN-Zero-seed3"
    assert spec.to_json()["latent"] is True and "latent" not in pixel.to_json() and "vae" not in pixel.to_json()
    # a latent result names the autoencoder it was made on: one made on another never matches
    assert spec.vae == cache_key() and latent.RECIPE.spec("DiT-N/1", seed=1, latent=True).vae == spec.vae
    # and every run on a versioned data set names the version of its drawing (shapes: 2); the
    # glyphs and digits runs, version 1, are written as before versions existed
    assert spec.to_json()["data_version"] == pixel.to_json()["data_version"] == Shapes.version == 2
    assert "data_version" not in scaling.RECIPE.spec("DiT-N/2").to_json() and Glyphs.version == 1
    with pytest.raises(ValueError, match="dataset='shapes'"):
        scaling.RECIPE.spec("DiT-N/2", latent=True)
    with pytest.raises(ValueError, match="clip_denoised"):
        common.RunSpec(**dict(spec.to_json(), clip_denoised=True))
    # the committed pixel-space results still match their specs
    assert grid.load_result(scaling.RESULTS, scaling.RECIPE.spec("DiT-N/4", seed=0)) is not None


def test_equal_compute_specs(fake_tiny_vae):
    specs = latent.equal_compute_specs(latent.RECIPE, seeds=(0,))
    assert [(s.model, s.latent) for s in specs] == [("DiT-N/1", True), ("DiT-N/4", False), ("DiT-N/8", False)]
    models = [common.build_model(s) for s in specs]
    assert (models[0].in_channels, models[0].input_size) == (4, 4)        # the 4x4x4 latents
    assert [(m.in_channels, m.input_size) for m in models[1:]] == [(3, 32), (3, 32)]
    assert [m.pos_embed.shape[1] for m in models] == [16, 64, 16]          # tokens
    target = 3 * common.model_facts(specs[0])["gflops"] * specs[0].batch_size * specs[0].steps
    for s in specs[1:]:
        g = common.model_facts(s)["gflops"]
        compute = 3 * g * s.batch_size * s.steps
        # equal up to the rounding of the step count: within half a step's compute
        assert abs(compute - target) <= 0.5 * 3 * g * s.batch_size
        assert s.steps < specs[0].steps and s.checkpoints[-1] == s.steps


def test_a_latent_models_shape_comes_from_the_autoencoders_architecture_not_a_trained_copy(monkeypatch):
    # sizing a model (chapter 9 prints the study's facts) must never train the autoencoder: on a
    # cold cache that would print its progress into an output the notebook checks
    def no_training():
        raise AssertionError("build_model asked for the trained autoencoder")
    monkeypatch.setattr(measure, "tiny_vae", no_training)
    spec = latent.RECIPE.spec(latent.LATENT_MODEL, latent=True)
    model = common.build_model(spec)
    with torch.no_grad():
        mean, _ = TinyAutoencoder(AutoencoderConfig()).encode(torch.zeros(1, 3, 32, 32))    # (1, 4, 4, 4)
    assert (model.in_channels, model.input_size, model.input_size) == tuple(mean.shape[1:])
    assert common.model_facts(spec)["tokens"] == 16


def test_latent_run_trains_on_latents_and_measures_decoded_samples(fake_tiny_vae):
    recipe = dataclasses.replace(latent.SMOKE_RECIPE, steps=3, fractions=(1.0,), fid_samples=20, train_samples=64)
    spec = recipe.spec("DiT-P/1", seed=0, latent=True)
    result, ema = common.run_experiment(spec, return_model=True)
    assert set(fake_tiny_vae["trained"]) == {(4, 4, 4)}                    # trained on latents
    assert fake_tiny_vae["classified"][-1] == (3, 32, 32)                  # judged on decoded pixels
    assert ema.in_channels == 4 and result["tokens"] == 16
    assert [c["step"] for c in result["checkpoints"]] == [3] and "accuracy" in result["checkpoints"][0]
    # fresh posterior samples every step, but the run itself is reproducible
    again = common.run_experiment(spec)
    assert again["checkpoints"][0]["fid"] == result["checkpoints"][0]["fid"]


def test_the_study_command_trains_every_space_at_equal_compute_and_reports(fake_tiny_vae, tmp_path, capsys):
    argv = ["--smoke", "--seeds", "0", "--steps", "4", "--fid-samples", "20", "--sampling-steps", "2", "--out", str(tmp_path)]
    results = latent.main(argv)
    assert sorted(latent.label(r) for r in results) == ["DiT-N/1 latent", "DiT-N/4 pixel", "DiT-N/8 pixel"]
    steps = {latent.label(r): r["spec"]["steps"] for r in results}
    g = {latent.label(r): r["gflops"] for r in results}
    assert steps["DiT-N/1 latent"] == 4
    for name in ("DiT-N/4 pixel", "DiT-N/8 pixel"):   # the latent run's compute, to the nearest step
        assert steps[name] == max(2, round(4 * g["DiT-N/1 latent"] / g[name]))
    first = capsys.readouterr().out
    assert "| DiT-N/1 latent | 16 |" in first and "3 runs in" in first
    # cached: a second run trains nothing, and --report prints the same table
    assert [r["train_seconds"] for r in latent.main(argv)] == [r["train_seconds"] for r in results]
    capsys.readouterr()
    latent.main(["--report", "--out", str(tmp_path)])
    assert capsys.readouterr().out.strip() == latent.summarize(results).strip()
    # without --out, --report reads the committed study
    assert len(latent.main(["--report"])) == len(grid.load_results(latent.RESULTS)) > 0


def test_rendered_data_is_the_same_tensor_whether_rendered_or_read_back(tmp_path, monkeypatch):
    """A run that renders the data and a run that finds the file must train on identical tensors,
    strides included: a strided tensor goes through other kernels, and a grid's first runs (which
    render) then differ in the last bits from every later rerun (which reads the file)."""
    monkeypatch.setenv("MINIDIT_CACHE", str(tmp_path))
    x1, y1 = measure._rendered("shapes", 12, train=True)          # rendered and written
    x2, y2 = measure._rendered("shapes", 12, train=True)          # read back
    assert x1.is_contiguous() and x2.is_contiguous() and x1.stride() == x2.stride()
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
