"""python -m minidit.train: the default preset end to end, flag/preset merging, bad input, NaN stop."""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from minidit import train as train_mod
from minidit.training.checkpoint import list_checkpoints, load_checkpoint
from minidit.training.config import DEFAULTS, TrainConfig, preset_config, resolve
from minidit.training.presets import PRESETS

# tiny and fast: the smallest model, a small batch, few sampling steps
FAST = ["--model", "DiT-P/2", "--global-batch-size", "16", "--num-sampling-steps", "3", "--grid-columns", "2"]


def test_default_preset_writes_the_run_folder(tmp_path):
    run = train_mod.main(["--results-dir", str(tmp_path), "--max-steps", "2", "--log-every", "1",
                          "--num-sampling-steps", "3", "--grid-columns", "3"])
    assert run.name == "000-DiT-P-2-digits"
    args = json.loads((run / "args.json").read_text())
    # the default job is the digits preset: class conditional, learned sigma, pixel space
    assert args["preset"] == "digits" and args["dataset"] == "digits" and args["model"] == "DiT-P/2"
    assert args["learn_sigma"] is True and args["num_classes"] == 10 and args["in_channels"] == 1
    records = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    for r in records:
        assert abs(r["loss"] - (r["mse"] + r["vb"])) < 1e-5 and r["images_per_s"] > 0
    log = (run / "log.txt").read_text()
    assert "(step=0000002) Train Loss:" in log and "done" in log
    ckpts = list_checkpoints(run / "checkpoints")
    assert [s for s, _ in ckpts] == [2]
    ck = load_checkpoint(ckpts[0][1])
    assert {"model", "ema", "opt", "args", "step", "epoch", "rng"} <= set(ck)
    assert ck["step"] == 2 and ck["args"]["model"] == "DiT-P/2"
    # the EMA moved (decay < 1) but is not the trained weights
    name = "blocks.0.attn.qkv.weight"
    assert not torch.equal(ck["ema"][name], ck["model"][name])
    # a sample grid: one row per class (10 rows of 3 digits, 8x8 enlarged 4x, 2-pixel borders)
    grid = Image.open(run / "samples_0000002.png")
    assert grid.size == (3 * (32 + 2) + 2, 10 * (32 + 2) + 2) and grid.mode == "L"
    assert Image.open(run / "loss.png").size[0] > 100


def test_flags_override_presets_and_defaults_follow_official():
    args = resolve(["--preset", "imagenet256-xl2", "--lr", "3e-4"])
    assert args.lr == 3e-4 and args.model == "DiT-XL/2" and args.ema_decay == 0.9999
    # the paper's recipe
    p = preset_config("imagenet256-xl2")
    assert (p.global_batch_size, p.lr, p.weight_decay, p.vae, p.image_size, p.flip,
            p.max_steps, p.log_every, p.ckpt_every) == (256, 1e-4, 0.0, "ema", 256, True, 400_000, 100, 50_000)
    # no arguments -> the digits preset; official train.py defaults underneath
    assert resolve([]).preset == "digits"
    assert (DEFAULTS["epochs"], DEFAULTS["global_seed"], DEFAULTS["results_dir"]) == (1400, 0, "results")
    # a resumed run keeps its recipe, typed flags still win
    args = resolve(["--max-steps", "9"], checkpoint_args=dict(preset="digits", lr=5e-4, max_steps=3, device="x"))
    assert args.lr == 5e-4 and args.max_steps == 9 and args.device is None


def test_official_flags_without_a_preset_mean_the_official_recipe(capsys):
    """``--model DiT-S/8 --data-path DIR`` is the official command line: it gets the official train.py's
    recipe on that folder, not the offline digits default."""
    c = resolve(["--model", "DiT-S/8", "--data-path", "/data/imagenet/train"])
    assert (c.preset, c.model, c.data_path, c.dataset) == ("official", "DiT-S/8", "/data/imagenet/train", "imagefolder")
    # image size 256 through the SD VAE (ft-EMA), 1000 classes, the paper's AdamW and EMA, batch 256, 1400 epochs
    assert (c.image_size, c.vae, c.num_classes, c.lr, c.weight_decay, c.ema_decay, c.global_batch_size,
            c.epochs, c.max_steps, c.flip, c.learn_sigma, c.warmup_steps, c.decay_steps) == \
        (256, "ema", 1000, 1e-4, 0.0, 0.9999, 256, 1400, None, True, True, 0, None)
    # without --data-path the offline default stays
    assert resolve(["--model", "DiT-S/8"]).preset == "digits"
    # --help says where each default comes from
    with pytest.raises(SystemExit):
        resolve(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "[default 0.002 (the digits preset); official recipe: 0.0001 (the paper's AdamW)]" in text
    assert "--global-seed GLOBAL_SEED seed; rank r uses global_seed * world_size + r [default 0 (official train.py)]" in text
    assert "(default: None)" not in text and "--debug" in text


def test_presets_name_only_what_they_change():
    assert PRESETS["official"] == {}  # the official train.py as it is: the defaults, unchanged
    for name, changes in PRESETS.items():
        assert changes or name == "official", name
        assert all(DEFAULTS[k] != v for k, v in changes.items()), f"{name} repeats a default"
        full = preset_config(name)
        assert all(getattr(full, k) == v for k, v in changes.items())
    # the two shapes presets share everything but the model and the autoencoder
    latent, pixel = PRESETS["shapes-latent"], PRESETS["shapes-pixel"]
    assert {k for k in latent if latent[k] != pixel.get(k)} == {"model", "vae"} and set(latent) == set(pixel)
    # one ImageNet-256 recipe for every model of the paper's grid; -xl2 names its default model
    assert PRESETS["imagenet256"] == PRESETS["imagenet256-xl2"]
    assert preset_config("imagenet256") == TrainConfig(**dict(preset_config("imagenet256-xl2").to_dict(),
                                                              preset="imagenet256"))
    assert resolve(["--preset", "imagenet256", "--model", "DiT-B/4"]).model == "DiT-B/4"
    # the default job's recipe, as benchmarks/default_quality.py measured it
    d = preset_config("digits")
    assert (d.model, d.max_steps, d.global_batch_size, d.lr, d.decay_steps, d.ema_decay, d.cfg_scale,
            d.class_dropout_prob, d.learn_sigma) == ("DiT-P/2", 4500, 128, 2e-3, 4500, 0.995, 1.5, 0.1, True)


def test_config_is_checked_once_when_made_and_cannot_change():
    with pytest.raises(ValueError, match="--log-every must be a positive integer"):
        TrainConfig(log_every=0)
    with pytest.raises(ValueError, match="--precision must be fp32 or bf16"):
        TrainConfig(precision="fp16")
    config = preset_config()
    with pytest.raises(AttributeError):
        config.vae = "tiny"  # prepare() derives a new config instead of changing this one


@pytest.mark.parametrize("argv, error, words", [
    (["--model", "DiT-Q/2"], ValueError, ["unknown model 'DiT-Q/2'", "DiT-XL/2", "DiT-N/2"]),
    (["--preset", "cifar-huge"], ValueError, ["unknown preset 'cifar-huge'", "digits", "imagenet256-xl2"]),
    (["--dataset", "imagefolder", "--data-path", "/no/such/folder"], FileNotFoundError, ["/no/such/folder", "does not exist"]),
    (["--dataset", "imagefolder"], ValueError, ["needs --data-path"]),
    (["--latents", "/no/such/latents"], FileNotFoundError, ["/no/such/latents", "minidit.extract"]),
    (["--model", "DiT-P/4", "--image-size", "10"], ValueError, ["DiT-P/4", "not divisible by the patch size 4"]),
    (["--num-classes", "5"], ValueError, ["10 classes", "--num-classes is 5"]),
    (["--global-batch-size", "0"], ValueError, ["--global-batch-size"]),
    (["--class-dropout-prob", "1.5"], ValueError, ["--class-dropout-prob must lie in [0, 1], got 1.5"]),
    (["--class-dropout-prob", "nan"], ValueError, ["--class-dropout-prob must lie in [0, 1], got nan"]),
    (["--epochs", "0"], ValueError, ["--epochs must be a positive integer, got 0"]),
    (["--warmup-steps", "-1"], ValueError, ["--warmup-steps must be an integer >= 0, got -1"]),
    (["--train-samples", "0"], ValueError, ["--train-samples must be a positive integer, got 0"]),
    (["--lr", "nan"], ValueError, ["--lr must be a positive number, got nan"]),
    (["--vae", "ema"], ValueError, ["--vae ema does not fit the default 'digits' preset", "--preset official"]),
    (["--preset", "digits", "--data-path", "/data/x"], ValueError, ["--data-path is not used", "--preset official"]),
    (["--device", "gpu0"], ValueError, ["--device 'gpu0' is not a device name", "cpu, cuda"]),
    (["--device", "cuda:7"], ValueError, ["--device cuda:7"]),
    (["--train-samples", "10"], ValueError, ["fewer than one batch of 16"]),
])
def test_bad_input_fails_before_training(tmp_path, argv, error, words):
    with pytest.raises(error) as info:
        train_mod.main(["--results-dir", str(tmp_path), *FAST, *argv])
    for w in words:
        assert w in str(info.value)
    assert not list(tmp_path.iterdir())  # no run folder: a run that fails its checks leaves nothing


def test_latent_size_not_divisible_by_patch(tmp_path, monkeypatch):
    class FakeVAE:  # a stand-in VAE: factor 4, 4 latent channels
        downsample_factor, latent_channels = 4, 4

    monkeypatch.setattr("minidit.training.setup.build_vae", lambda name, device: FakeVAE() if name else None)
    with pytest.raises(ValueError, match=r"latent size 2 .*not divisible by the patch size 4"):
        train_mod.main(["--results-dir", str(tmp_path), *FAST, "--model", "DiT-P/4", "--vae", "fake", "--preset", "digits"])


def test_nan_loss_stops_keeping_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    argv = ["--results-dir", str(tmp_path), *FAST, "--max-steps", "8", "--log-every", "1",
            "--ckpt-every", "2", "--debug-nan-at-step", "3", "--grid-columns", "0"]
    with pytest.raises(train_mod.NonFiniteLossError, match="NaN or inf at step 3"):
        train_mod.main(argv)
    ckpts = list_checkpoints(next(tmp_path.iterdir()) / "checkpoints")
    assert [s for s, _ in ckpts] == [2]
    ck = load_checkpoint(ckpts[0][1])
    assert all(torch.isfinite(v).all() for v in ck["model"].values())
    # the command line exits non-zero with the message, one line
    capsys.readouterr()
    monkeypatch.setattr("sys.argv", ["minidit.train", *argv])
    with pytest.raises(SystemExit) as info:
        train_mod.cli()
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1
    assert err.startswith("error: the loss became NaN or inf at step 3") and "last good checkpoint" in err


def test_bf16_autocast_and_grad_checkpointing_train_with_fp32_master_weights(tmp_path):
    run = train_mod.main(["--results-dir", str(tmp_path), *FAST, "--max-steps", "2", "--precision", "bf16",
                          "--grad-checkpointing"])
    ck = load_checkpoint(list_checkpoints(run / "checkpoints")[-1][1])
    assert all(v.dtype == torch.float32 for v in ck["model"].values())
    rec = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert torch.isfinite(torch.tensor(rec["loss"]))


def test_compiled_training_saves_plain_keys_and_resumes_without_compile(tmp_path):
    """``--compile`` wraps the model in ``torch.compile``; the checkpoint must still hold the plain
    module's keys (no ``_orig_mod.`` prefix), so an eager run, sampling or ``to_diffusers`` can load it."""
    from minidit.models import get_model

    run = train_mod.main(["--results-dir", str(tmp_path), *FAST, "--max-steps", "2", "--compile"])
    last = list_checkpoints(run / "checkpoints")[-1][1]
    ck = load_checkpoint(last)
    plain = get_model("DiT-P/2", input_size=8, in_channels=1, num_classes=10).state_dict()
    assert list(ck["model"]) == list(plain) and list(ck["ema"]) == list(plain)
    rec = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert torch.isfinite(torch.tensor(rec["loss"]))
    resumed = train_mod.main(["--results-dir", str(tmp_path), *FAST, "--resume", str(last), "--max-steps", "3"])
    assert resumed == run and [s for s, _ in list_checkpoints(run / "checkpoints")][-1] == 3


def test_threads_flag_sets_the_cpu_threads_and_is_not_part_of_the_recipe(tmp_path):
    before = torch.get_num_threads()
    try:
        run = train_mod.main(["--results-dir", str(tmp_path), *FAST, "--max-steps", "1", "--threads", "1"])
        assert torch.get_num_threads() == 1
        assert "1 process(es) on cpu (1 threads)" in (run / "log.txt").read_text()
    finally:
        torch.set_num_threads(before)
    # a runtime setting: a checkpoint's recipe never carries it into a resumed run
    from minidit.training.config import RUNTIME_KEYS
    assert "threads" in RUNTIME_KEYS


def test_without_threads_the_trainer_leaves_the_busy_cores_to_the_other_jobs(monkeypatch):
    """The default: the usable cores minus the load of other processes (at least 1); ``--threads`` and
    torchrun's ``OMP_NUM_THREADS`` win. (benchmarks/bench_busy_machine.py measures why.)"""
    import ast
    from pathlib import Path

    from minidit import env

    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(env, "usable_cores", lambda: 8)
    try:
        for load, threads in ((0.0, 8), (2.4, 6), (5.6, 2), (30.0, 1)):
            monkeypatch.setattr(env, "other_load", lambda load=load: load)
            assert env.configure_torch(torch.device("cpu"), None, auto_threads=True) == threads
        assert env.configure_torch(torch.device("cpu"), 3, auto_threads=True) == 3  # --threads
        monkeypatch.setenv("OMP_NUM_THREADS", "1")  # torchrun sets it: then torch's own choice stands
        torch.set_num_threads(2)
        assert env.configure_torch(torch.device("cpu"), None, auto_threads=True) == 2
        assert 0 <= env.other_load() < 10_000
    finally:
        torch.set_num_threads(before)
    # python -m minidit.train sets OpenMP's passive wait policy before torch is imported (OpenMP reads it once)
    tree = ast.parse(Path(train_mod.__file__).read_text())
    lines = {ast.unparse(node): node.lineno for node in tree.body}
    assert lines["os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')"] < lines["import torch"]
    assert min(n for code, n in lines.items() if code.startswith("from minidit")) > lines["import torch"]
