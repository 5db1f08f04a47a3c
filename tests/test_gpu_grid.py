"""The paper's 12-model grid on GPUs: the commands parse to the intended runs; the estimates are the closed form."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from minidit.experiments import gpu_grid, scaling
from minidit.training.config import resolve


@pytest.fixture(scope="module")
def plan():
    return gpu_grid.gpu_grid_plan(gpus=8, gpu="H100", mfu=0.4, latents="/data/in 256")


def train_flags(command: str) -> list[str]:
    """The flags after ``-m minidit.train`` in a torchrun line, as the shell would split them."""
    words = shlex.split(command)
    i = words.index("-m")
    assert words[0] == "torchrun" and words[i + 1] == "minidit.train"
    return words[i + 2:]


def test_twelve_models_in_the_papers_order(plan):
    assert [row["model"] for row in plan] == [
        "DiT-S/8", "DiT-S/4", "DiT-S/2", "DiT-B/8", "DiT-B/4", "DiT-B/2",
        "DiT-L/8", "DiT-L/4", "DiT-L/2", "DiT-XL/8", "DiT-XL/4", "DiT-XL/2"]


def test_each_command_parses_to_its_model_and_the_one_recipe(plan):
    recipe = ("global_batch_size", "lr", "weight_decay", "warmup_steps", "decay_steps", "ema_decay", "max_steps",
              "learn_sigma", "class_dropout_prob", "vae", "image_size", "num_classes", "flip", "global_seed")
    for row in plan:
        words = shlex.split(row["command"])
        assert words[:3] == ["torchrun", "--nproc_per_node", "8"]
        config = resolve(train_flags(row["command"]))  # minidit.train's own parser and layers
        assert config.model == row["model"] and config.preset == "imagenet256"
        assert config.latents == "/data/in 256" and config.dataset == "latents"  # quoted: one argument
        assert config.precision == "bf16"
        # the paper's recipe, the same for all 12
        assert (config.global_batch_size, config.lr, config.weight_decay, config.warmup_steps, config.decay_steps,
                config.ema_decay, config.max_steps, config.learn_sigma, config.class_dropout_prob, config.vae,
                config.image_size) == (256, 1e-4, 0.0, 0, None, 0.9999, 400_000, True, 0.1, "ema", 256)
        assert {k: getattr(config, k) for k in recipe} == {k: getattr(resolve(train_flags(plan[0]["command"])), k)
                                                           for k in recipe}
        assert (row["batch_size"], row["steps"]) == (256, 400_000)


def test_xl2_estimate_is_the_closed_form_and_the_total_is_the_sum(plan):
    xl2 = plan[-1]
    assert xl2["model"] == "DiT-XL/2" and xl2["gflops"] == pytest.approx(118.6, rel=1e-3)  # Table 4
    # by hand: 3 passes x 2 FLOPs per MAC x 118.6e9 MACs x 256 images x 400K steps,
    # at 40% of an H100's 989 TFLOP/s (bf16 dense), on 8 GPUs
    flops = 3 * 2 * 118.6e9 * 256 * 400_000
    gpu_h = flops / (989e12 * 0.4) / 3600
    assert gpu_h == pytest.approx(51.2, abs=0.05)
    assert xl2["train_flops"] == pytest.approx(flops, rel=1e-3)
    assert xl2["gpu_hours"] == pytest.approx(gpu_h, rel=1e-3)
    assert xl2["wall_hours"] == pytest.approx(gpu_h / 8, rel=1e-3)
    # exactly the closed form on the counted Gflops
    exact = 6 * xl2["gflops"] * 1e9 * 256 * 400_000 / (989e12 * 0.4) / 3600
    assert xl2["gpu_hours"] == pytest.approx(exact, rel=1e-12)
    text = gpu_grid.format_plan(plan, 8, "H100", 0.4)
    total_gpu = sum(row["gpu_hours"] for row in plan)
    total_wall = sum(row["wall_hours"] for row in plan)
    assert total_wall == pytest.approx(total_gpu / 8)
    assert f"| total | | {sum(r['train_flops'] for r in plan):.3g} | | | {total_gpu:,.1f} | {total_wall:,.1f} |" in text
    assert "ASSUMED 40% MFU" in text and all(row["mfu"] == 0.4 for row in plan)


def test_measured_throughput_replaces_the_assumed_mfu(tmp_path):
    """--throughput: each model's own measured images/s at the per-GPU batch (256 / GPUs)."""
    committed = gpu_grid.load_throughput("h200")
    assert committed["device"] == "NVIDIA H200" and committed["variant"] == "bf16-fused"
    assert set(committed["ips"]) == {(m, b) for m in gpu_grid.GRID_MODELS for b in (32, 256)}
    for gpus, per_gpu in ((8, 32), (1, 256)):
        plan = gpu_grid.gpu_grid_plan(gpus=gpus, throughput="h200")
        for row in plan:
            ips = committed["ips"][(row["model"], per_gpu)]
            assert row["images_per_second_per_gpu"] == ips
            # by hand: 102.4M images at gpus x ips images/s
            assert row["wall_hours"] == pytest.approx(256 * 400_000 / (gpus * ips) / 3600, rel=1e-12)
            assert row["gpu_hours"] == pytest.approx(gpus * row["wall_hours"], rel=1e-12)
            # the MFU of that speed against the H200's 989 TFLOP/s bf16
            assert row["mfu"] == pytest.approx(ips * 6 * row["gflops"] * 1e9 / 989e12, rel=1e-9)
    text = gpu_grid.format_plan(plan, 1, "H100", 0.4)
    assert "on 1 x NVIDIA H200 from the MEASURED images/s" in text and "ASSUMED" not in text
    # a file of the user's; a batch it does not hold; a file that is not there
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(dict(device="NVIDIA A100-SXM4-80GB", variant="fast", rows=[
        dict(model=m, batch_size=64, images_per_second=100.0) for m in gpu_grid.GRID_MODELS])))
    plan = gpu_grid.gpu_grid_plan(gpus=4, throughput=path)
    assert plan[0]["mfu"] == pytest.approx(100.0 * 6 * plan[0]["gflops"] * 1e9 / 312e12)  # an A100's peak
    with pytest.raises(ValueError, match=r"DiT-S/8 was measured at per-GPU batches \[64\], not 32 .*use --gpus 4"):
        gpu_grid.gpu_grid_plan(gpus=8, throughput=path)
    with pytest.raises(ValueError, match="no throughput file .*bench_gpu_grid.py --json"):
        gpu_grid.gpu_grid_plan(throughput=tmp_path / "none.json")


def test_steps_nodes_and_bad_input():
    plan = gpu_grid.gpu_grid_plan(gpus=16, steps=1000, precision="fp32")
    row = plan[-1]
    assert shlex.split(row["command"])[:4] == ["torchrun", "--nnodes", "2", "--node_rank"]
    config = resolve(train_flags(row["command"]))
    assert config.max_steps == 1000 and config.precision == "fp32"
    # fp32 runs on TF32 tensor cores: half the bf16 peak
    assert row["gpu_hours"] == pytest.approx(6 * row["gflops"] * 1e9 * 256 * 1000 / (989e12 / 2 * 0.4) / 3600)
    with pytest.raises(ValueError, match="unknown GPU 'Z80'"):
        gpu_grid.gpu_grid_plan(gpu="Z80")
    with pytest.raises(ValueError, match="whole nodes"):
        gpu_grid.gpu_grid_plan(gpus=12)
    with pytest.raises(ValueError, match="does not split over 3 GPUs"):
        gpu_grid.gpu_grid_plan(gpus=3)
    with pytest.raises(ValueError, match=r"MFU must lie in \(0, 1\]"):
        gpu_grid.gpu_grid_plan(mfu=40)


def test_cli_prints_the_plan(capsys):
    plan = scaling.main(["--gpu-grid", "--gpus", "8", "--gpu", "H100", "--mfu", "0.4", "--latents", "/lat"])
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("torchrun")] == [row["command"] for row in plan]
    assert "| DiT-XL/2 | 118.6" in out
    with pytest.raises(SystemExit, match="unknown GPU"):
        scaling.main(["--gpu-grid", "--gpu", "Z80"])


def test_readme_shows_the_plans_commands_and_numbers():
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("### The paper's scaling grid")[1].split("\n### ")[0]
    plan = gpu_grid.gpu_grid_plan(gpus=8, gpu="H100", mfu=0.4, latents="/data/in256-latents")
    commands = section.replace("\\\n    ", "").splitlines()
    for row in (plan[0], plan[-1]):
        assert row["command"] in commands
    cells = [c.strip() for line in section.splitlines() if line.startswith("| DiT-") for c in line.split("|")]
    for row in plan:
        i = cells.index(row["model"])
        assert cells[i + 1:i + 4] == [f"{row['gflops']:.2f}", f"{row['gpu_hours']:.1f}", f"{row['wall_hours']:.1f}"]
    flops = f"{sum(r['train_flops'] for r in plan):.3g}".replace("e+", "e")
    assert (f"{flops} training FLOPs, {sum(r['gpu_hours'] for r in plan):.1f} "
            f"GPU-hours, {sum(r['wall_hours'] for r in plan):.1f} hours") in section


def test_readme_states_the_measured_grid_times_of_the_committed_figures():
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = " ".join(text.split("### The paper's scaling grid")[1].split("\n### ")[0].split())
    eight = gpu_grid.gpu_grid_plan(gpus=8, throughput="h200")
    one = gpu_grid.gpu_grid_plan(gpus=1, throughput="h200")
    assert (f"**{sum(r['gpu_hours'] for r in eight):.0f} GPU-hours ({sum(r['wall_hours'] for r in eight):.0f} hours) "
            f"with 8 GPUs per run**") in section
    assert f"but {sum(r['gpu_hours'] for r in one):.0f} GPU-hours with each model alone on one GPU" in section
    assert f"XL/2 alone {one[-1]['wall_hours']:.0f} hours" in section
