"""python -m minidit.sample: .png grids and ADM .npz batches from minidit and official checkpoints."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from minidit import sample as sample_mod
from minidit import train as train_mod
from minidit.training.checkpoint import list_checkpoints


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A real (tiny) training checkpoint: DiT-P/2 on digits, 2 steps."""
    root = tmp_path_factory.mktemp("runs")
    run = train_mod.main(["--results-dir", str(root), "--model", "DiT-P/2", "--global-batch-size", "16",
                          "--max-steps", "2", "--num-sampling-steps", "2", "--grid-columns", "1"])
    return list_checkpoints(run / "checkpoints")[-1][1]


def test_png_grid_one_row_per_class(ckpt, tmp_path):
    out = tmp_path / "grid.png"
    sample_mod.main(["--ckpt", str(ckpt), "--out", str(out), "--num-samples", "20",
                     "--num-sampling-steps", "3", "--no-progress"])
    img = Image.open(out)
    # 10 classes x 2 samples: 10 rows of 2 images (8x8 enlarged to 32x32, 2-pixel borders)
    assert img.size == (2 * 34 + 2, 10 * 34 + 2)


def test_npz_batch_in_adm_format(ckpt, tmp_path):
    out = tmp_path / "samples.npz"
    sample_mod.main(["--ckpt", str(ckpt), "--out", str(out), "--num-samples", "30", "--batch-size", "7",
                     "--num-sampling-steps", "3", "--sampler", "ddim", "--no-progress"])
    with np.load(out) as data:
        images, labels = data["arr_0"], data["arr_1"]
    assert images.shape == (30, 8, 8, 1) and images.dtype == np.uint8
    assert labels.shape == (30,) and labels.dtype == np.int64
    assert np.bincount(labels, minlength=10).tolist() == [3] * 10  # balanced over the classes
    assert images.std() > 0


def test_generate_matches_the_official_cfg_recipe(ckpt):
    """Guided sampling == running the doubled batch through forward_with_cfg by hand."""
    from minidit.diffusion import create_diffusion

    model, args, vae = sample_mod.load_for_sampling(ckpt)
    assert vae is None and args["model"] == "DiT-P/2"
    diffusion = create_diffusion("2")
    labels = torch.tensor([3, 7])
    torch.manual_seed(0)
    got = sample_mod.generate(model, diffusion, labels, (1, 8, 8), 10, cfg_scale=2.0,
                              generator=torch.Generator().manual_seed(5))
    torch.manual_seed(0)
    z = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    z = torch.cat([z, z])
    y = torch.tensor([3, 7, 10, 10])
    ref = diffusion.p_sample_loop(model.forward_with_cfg, z.shape, z, clip_denoised=False,
                                  model_kwargs=dict(y=y, cfg_scale=2.0))[:2].clamp(-1, 1)
    torch.testing.assert_close(got, ref)


def test_ema_and_raw_weights_differ(ckpt):
    ema, _, _ = sample_mod.load_for_sampling(ckpt)
    raw, _, _ = sample_mod.load_for_sampling(ckpt, use_ema=False)
    assert not torch.equal(ema.blocks[0].attn.qkv.weight, raw.blocks[0].attn.qkv.weight)


def test_official_style_checkpoint(tmp_path):
    """A plain state dict (the released format) loads when --model/--image-size/--vae say what it is."""
    from minidit.models import get_model

    model = get_model("DiT-P/4", input_size=8, in_channels=3, num_classes=10)
    path = tmp_path / "official.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(ValueError, match="--model"):
        sample_mod.main(["--ckpt", str(path), "--out", str(tmp_path / "x.png")])
    out = tmp_path / "o.npz"
    sample_mod.main(["--ckpt", str(path), "--model", "DiT-P/4", "--image-size", "8", "--vae", "none",
                     "--num-classes", "10", "--num-samples", "4", "--num-sampling-steps", "2",
                     "--out", str(out), "--no-progress"])
    with np.load(out) as data:
        assert data["arr_0"].shape == (4, 8, 8, 3)  # the model's 3 channels, no VAE


@pytest.mark.parametrize("argv, match", [
    (["--out", "samples.jpg"], "use a .png"),
    (["--class-labels", "3,12"], r"\[12\] outside \[0, 9\]"),
    (["--class-labels", "a,b"], "comma-separated integers"),
    (["--num-samples", "0"], "at least 1"),
])
def test_bad_sampling_input(ckpt, tmp_path, argv, match):
    argv = [a if a != "samples.jpg" else str(tmp_path / a) for a in argv]
    base = ["--ckpt", str(ckpt), "--num-sampling-steps", "2", "--no-progress"]
    if "--out" not in argv:
        base += ["--out", str(tmp_path / "s.png")]
    with pytest.raises(ValueError, match=match):
        sample_mod.main(base + argv)


def test_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        sample_mod.main(["--ckpt", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "s.png")])
