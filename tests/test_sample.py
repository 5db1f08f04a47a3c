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


def test_sample_cli_draws_step_noise_apart_from_the_starting_noise(ckpt, tmp_path, monkeypatch):
    """minidit.sample used to seed torch.manual_seed(seed) and its x_T generator with the same seed, so
    on a CPU the first DDPM step's noise was x_T itself. Now: separate streams, and per rank."""
    from minidit.training.distributed import DistInfo, rank_seed

    drawn, real = [], torch.randn_like
    monkeypatch.setattr(torch, "randn_like", lambda x, *a, **k: drawn.append(real(x, *a, **k)) or drawn[-1])
    for rank in (0, 1):
        drawn.clear()
        monkeypatch.setattr(sample_mod, "init_distributed", lambda device, r=rank: DistInfo(rank=r, world_size=2))
        monkeypatch.setattr(sample_mod, "_gather", lambda local, mine, n, *a: torch.zeros(n, *local.shape[1:]))
        monkeypatch.setattr(sample_mod, "cleanup_distributed", lambda: None)
        sample_mod.main(["--ckpt", str(ckpt), "--out", str(tmp_path / "s.npz"), "--num-samples", "64",
                         "--cfg-scale", "1", "--num-sampling-steps", "3", "--seed", "4", "--no-progress"])
        # this rank's 32 samples start from its own generator, seeded seed * world_size + rank
        x_T = torch.randn(32, 1, 8, 8, generator=torch.Generator().manual_seed(rank_seed(4, 2, rank)))
        first_step = drawn[0]
        assert first_step.shape == x_T.shape and not torch.allclose(first_step, x_T)
        r = torch.corrcoef(torch.stack([first_step.flatten(), x_T.flatten()]))[0, 1]
        assert abs(float(r)) < 0.15


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
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--per-proc-batch-size", "-2"], "--batch-size must be at least 1"),
    (["--num-sampling-steps", "0"], "--num-sampling-steps must be at least 1"),
    (["--cfg-scale", "-1"], "finite number >= 0"),
    (["--cfg-scale", "nan"], "finite number >= 0"),
    (["--device", "gpu7"], "not a device name"),
    (["--model", "DiT-S/2"], "holds a DiT-P/2 model.*--model DiT-S/2 was asked for"),
    (["--image-size", "16"], "trained with image_size 8.*--image-size 16"),
    (["--vae", "ema"], "trained with vae .*--vae ema was asked for"),
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


def test_out_and_sample_dir_exclude_each_other(ckpt, tmp_path, capsys):
    with pytest.raises(SystemExit):
        sample_mod.main(["--ckpt", str(ckpt), "--out", str(tmp_path / "s.npz"), "--sample-dir", str(tmp_path)])
    assert "not allowed with argument --out" in capsys.readouterr().err


def test_cfg_scale_between_0_and_1_warns(ckpt, tmp_path):
    with pytest.warns(UserWarning, match="between 0 and 1"):
        sample_mod.main(["--ckpt", str(ckpt), "--out", str(tmp_path / "s.npz"), "--num-samples", "2",
                         "--cfg-scale", "0.5", "--num-sampling-steps", "1", "--no-progress"])


def test_official_flags_are_aliases(ckpt, tmp_path):
    """sample_ddp.py's --per-proc-batch-size, --num-fid-samples, --global-seed and --sample-dir (its .npz is
    f"{sample_dir}/{model}-{ckpt}-size-{image_size}-vae-{vae}-cfg-{cfg_scale}-seed-{global_seed}.npz")."""
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        official = sample_mod.main(["--ckpt", str(ckpt), "--sample-dir", str(tmp_path / "samples"),
                                    "--num-fid-samples", "6", "--per-proc-batch-size", "4", "--global-seed", "3",
                                    "--num-sampling-steps", "2", "--no-progress", "--no-tf32"])
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (False, False)
        ours = sample_mod.main(["--ckpt", str(ckpt), "--out", str(tmp_path / "ours.npz"), "--num-samples", "6",
                                "--batch-size", "4", "--seed", "3", "--num-sampling-steps", "2", "--no-progress"])
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (True, True)  # default on
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    assert official == tmp_path / "samples" / f"DiT-P-2-{ckpt.stem}-size-8-vae-none-cfg-1.5-seed-3.npz"
    with np.load(official) as a, np.load(ours) as b:
        assert a["arr_0"].shape == (6, 8, 8, 1) and np.array_equal(a["arr_0"], b["arr_0"])
    assert sorted(p.name for p in tmp_path.rglob("*.tmp.*")) == []    # written atomically: no leftovers
    args = sample_mod.build_parser().parse_args(["--ckpt", "x"])
    assert (args.batch_size, args.num_samples, args.seed, args.tf32) == (64, None, 0, True)


@pytest.mark.parametrize("out, official_default", [("grid.png", "mse"), ("batch.npz", "ema")])
def test_vae_default_follows_the_official_script(out, official_default, tmp_path, monkeypatch):
    """Official: sample.py (a picture) --vae default mse, sample_ddp.py (an FID batch) --vae default ema."""
    from minidit import generation
    from minidit.models import get_model

    asked = []
    monkeypatch.setattr(generation, "build_vae", lambda name, device: asked.append(name))   # no VAE: pixels
    path = tmp_path / "official.pt"
    torch.save(get_model("DiT-P/4", input_size=8, in_channels=1, num_classes=10).state_dict(), path)
    sample_mod.main(["--ckpt", str(path), "--model", "DiT-P/4", "--image-size", "8", "--num-samples", "2",
                     "--num-sampling-steps", "1", "--out", str(tmp_path / out), "--no-progress"])
    assert asked == [official_default]


def test_official_checkpoint_of_another_model(tmp_path):
    from minidit.models import get_model

    path = tmp_path / "official.pt"
    torch.save(get_model("DiT-P/4", input_size=8, in_channels=3, num_classes=10).state_dict(), path)
    with pytest.raises(ValueError, match=r"holds DiT-P/4 weights, but --model DiT-P/2 was asked for; pass --model DiT-P/4"):
        sample_mod.main(["--ckpt", str(path), "--model", "DiT-P/2", "--image-size", "8", "--vae", "none",
                         "--out", str(tmp_path / "x.png")])
    with pytest.raises(ValueError, match="10 classes, but --num-classes 1000"):
        sample_mod.main(["--ckpt", str(path), "--model", "DiT-P/4", "--image-size", "8", "--vae", "none",
                         "--num-classes", "1000", "--out", str(tmp_path / "x.png")])


def test_corrupt_checkpoint_names_the_file(ckpt, tmp_path):
    bad = tmp_path / "cut.pt"
    bad.write_bytes(ckpt.read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"cannot read checkpoint .*cut\.pt"):
        sample_mod.main(["--ckpt", str(bad), "--out", str(tmp_path / "s.png")])


def test_cli_errors_are_one_line_unless_debug(tmp_path):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "minidit.sample", "--ckpt", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "s.png")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: checkpoint") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = subprocess.run(cmd + ["--debug"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "FileNotFoundError" in proc.stderr
