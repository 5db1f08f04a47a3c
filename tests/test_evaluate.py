"""``python -m minidit.evaluate`` end to end on small generated .npz batches."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from minidit.errors import run_cli
from minidit.evaluate import main
from minidit.metrics import save_samples_npz, to_uint8
from minidit.metrics.classifier import _split_tensors

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def digits_cache(tmp_path_factory):
    """Same private cache folder as test_features.py, so the classifier is trained once."""
    cache = Path(tmp_path_factory.getbasetemp()) / "minidit_cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINIDIT_CACHE", str(cache))
        yield cache


def test_evaluate_cli_against_dataset_and_npz(digits_cache, tmp_path, capsys):
    x, y = _split_tensors("digits", False)
    save_samples_npz(tmp_path / "real.npz", to_uint8(x), y.numpy())
    out_json = tmp_path / "m.json"
    assert main([str(tmp_path / "real.npz"), "--dataset", "digits", "--json", str(out_json),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    for label in ("FID", "sFID", "IS", "Precision", "Recall", "Class accuracy"):
        assert label in printed
    m = json.loads(out_json.read_text())
    assert m["extractor"] == "digits" and m["num_samples"] == len(x) and m["num_reference"] == 1438
    assert 0 < m["fid"] < 10 and m["sfid"] >= 0 and m["inception_score"] > 8
    assert m["precision"] > 0.8 and m["recall"] > 0.8 and m["class_accuracy"] > 0.95

    # two files: real test digits vs the same digits with heavy noise, labels absent
    noisy = (x + 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    save_samples_npz(tmp_path / "noisy.npz", to_uint8(noisy))
    assert main([str(tmp_path / "noisy.npz"), str(tmp_path / "real.npz"), "--json",
                 str(tmp_path / "n.json"), "--batch-size", "64", "--no-progress"]) == 0
    n = json.loads((tmp_path / "n.json").read_text())
    assert n["fid"] > m["fid"] + 5 and "class_accuracy" not in n


def test_evaluate_cli_with_inception_standin(tmp_path, capsys):
    from test_features import InceptionStandIn

    path = tmp_path / "inception-2015-12-05.pt"
    torch.jit.save(torch.jit.script(InceptionStandIn(dim=32)), str(path))  # small: fast FID
    rng = np.random.default_rng(0)
    save_samples_npz(tmp_path / "a.npz", rng.integers(0, 256, (12, 10, 10, 3), dtype=np.uint8),
                     labels=np.arange(12) % 4)               # ImageNet-style labels: not Inception's outputs
    save_samples_npz(tmp_path / "b.npz", rng.integers(0, 128, (12, 10, 10, 3), dtype=np.uint8))
    with pytest.warns(UserWarning, match="rank-deficient"):
        rc = main([str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--extractor",
                   f"inception:{path}", "--json", str(tmp_path / "m.json"), "--no-progress"])
    assert rc == 0
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["fid"] > 0 and "sfid" not in m and 1.0 <= m["inception_score"] <= 1008
    # no class-accuracy row comparing 1008 Inception outputs with class ids, and the table says why
    assert "class_accuracy" not in m and "not the data set's class ids" in m["unavailable"]["class_accuracy"]
    assert "mixed_6/conv" in m["unavailable"]["sfid"]
    printed = capsys.readouterr().out
    assert "sFID: not available" in printed and "Class accuracy: not available" in printed
    assert not list(tmp_path.glob("*.tmp.*"))                # the JSON was written atomically


def test_evaluate_cli_errors(tmp_path, capsys):
    good = tmp_path / "good.npz"
    save_samples_npz(good, np.zeros((4, 8, 8, 1), np.uint8))
    np.savez(tmp_path / "named.npz", samples=np.zeros((4, 8, 8, 1), np.uint8))
    np.savez(tmp_path / "float.npz", np.zeros((4, 8, 8, 1), np.float32))
    save_samples_npz(tmp_path / "one.npz", np.zeros((1, 8, 8, 1), np.uint8))
    save_samples_npz(tmp_path / "rgb.npz", np.zeros((4, 8, 8, 3), np.uint8))
    save_samples_npz(tmp_path / "odd.npz", np.zeros((4, 5, 5, 3), np.uint8))
    cases = [
        ([str(tmp_path / "named.npz"), str(good)], r"no array 'arr_0'.*\['samples'\]"),
        ([str(tmp_path / "float.npz"), str(good)], "expected dtype uint8.*to_uint8"),
        ([str(tmp_path / "one.npz"), str(good), "--extractor", "digits"], "at least 2"),
        ([str(tmp_path / "rgb.npz"), str(good)], "same size and channels"),
        ([str(tmp_path / "odd.npz"), str(tmp_path / "odd.npz")], "cannot guess a feature extractor"),
        ([str(good), str(good), "--extractor", "pytorch-fid:/x.pth"], "inception-2015-12-05.pt"),
        ([str(good), str(good), "--batch-size", "0"], "--batch-size must be at least 1"),
        ([str(good), str(good), "--batch-size", "-5"], "--batch-size must be at least 1"),
        ([str(good), str(good), "--device", "tpu"], "not a device name"),
        ([str(good), "--dataset", "digits", "--num-reference", "0"], "--num-reference must be at least 1"),
        ([str(tmp_path / "cut.npz"), str(good)], r"cut\.npz is not a readable \.npz batch"),
    ]
    (tmp_path / "cut.npz").write_bytes(good.read_bytes()[:200])
    import re
    for argv, pattern in cases:
        with pytest.raises(SystemExit) as info:
            run_cli(main, argv + ["--no-progress"])
        assert info.value.code == 2, argv
        err = capsys.readouterr().err
        assert re.search(pattern, err), (argv, err)
    with pytest.raises(ValueError, match="at least 1"):   # --debug: the exception itself
        main([str(good), str(good), "--batch-size", "0", "--debug"])
    with pytest.raises(SystemExit):
        main([str(good)])                       # neither a reference file nor --dataset
    with pytest.raises(SystemExit):
        main([str(good), str(good), "--dataset", "digits"])


def test_evaluate_runs_as_module(tmp_path):
    np.savez(tmp_path / "bad.npz", images=np.zeros((2, 8, 8, 1), np.uint8))
    proc = subprocess.run([sys.executable, "-m", "minidit.evaluate", str(tmp_path / "bad.npz"),
                           "--dataset", "digits"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "arr_0" in proc.stderr
