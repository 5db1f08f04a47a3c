"""The helpers every command line shares: atomic writes, one-line errors with --debug, device checks."""
from __future__ import annotations

import errno
import json

import numpy as np
import pytest
import torch

from minidit import files as atomic
from minidit.errors import add_debug_flag, describe, run_cli
from minidit.env import check_device, pick_device


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    path = tmp_path / "sub" / "a.npz"
    with atomic.atomic_write(path) as f:
        np.savez(f, arr_0=np.arange(3))
    with np.load(path) as d:
        assert d["arr_0"].tolist() == [0, 1, 2]
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="half-way"):
        with atomic.atomic_write(path) as f:
            f.write(b"garbage")
            raise RuntimeError("killed half-way")
    assert path.read_bytes() == before                    # the old file, untouched
    assert list(path.parent.iterdir()) == [path]          # no temporary file left behind
    atomic.write_json_atomic(tmp_path / "m.json", {"fid": 1.5})
    assert json.loads((tmp_path / "m.json").read_text()) == {"fid": 1.5}
    with pytest.raises(TypeError):                        # unserialisable: fails before writing
        atomic.write_json_atomic(tmp_path / "m.json", {"x": object()})
    assert json.loads((tmp_path / "m.json").read_text()) == {"fid": 1.5}


def test_disk_full_names_the_file(tmp_path, monkeypatch):
    path = tmp_path / "big.npz"

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(atomic.DiskFullError, match=r"disk full while writing .*big\.npz: \d+ bytes free"):
        with atomic.atomic_write(path) as f:
            f.write(b"x")
            full()
    assert not path.exists() and not atomic.stale_temps(path)


def test_stale_temps_are_found_by_name(tmp_path):
    path = tmp_path / "shard_00000.safetensors"
    for name in ("shard_00000.safetensors.tmp.123", "shard_00000.safetensors.tmp.x", "other.tmp.5"):
        (tmp_path / name).write_text("")
    assert [p.name for p in atomic.stale_temps(path)] == ["shard_00000.safetensors.tmp.123"]


def _main_raising(err):
    def main(argv):
        raise err
    return main


@pytest.mark.parametrize("err, code, text", [
    (ValueError("--batch-size must be at least 1"), 2, "error: --batch-size must be at least 1\n"),
    (FileNotFoundError("no such file x.npz"), 2, "error: no such file x.npz\n"),
    (KeyError("boom"), 1, "error: KeyError: 'boom'\n(an unexpected error; rerun with --debug"),
])
def test_run_cli_prints_one_line(err, code, text, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(_main_raising(err), [])
    assert exit_info.value.code == code
    captured = capsys.readouterr()
    assert captured.err.startswith(text) and "Traceback" not in captured.err
    assert len(captured.err.strip().splitlines()) <= 2


def test_run_cli_debug_and_return_codes(capsys, monkeypatch):
    with pytest.raises(KeyError):                        # --debug: the real exception, with its traceback
        run_cli(_main_raising(KeyError("boom")), ["--debug"])
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda argv: 3, [])
    assert exit_info.value.code == 3
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert describe(ValueError("bad")) == ("error (rank 1): bad", 2)
    import argparse
    p = argparse.ArgumentParser()
    add_debug_flag(p)
    assert p.parse_args(["--debug"]).debug is True


def test_check_device():
    assert check_device("cpu") == torch.device("cpu") == pick_device("cpu")
    with pytest.raises(ValueError, match="not a device name"):
        check_device("gpu0")
    with pytest.raises(ValueError, match="cpu, cuda or mps"):
        check_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU is visible.*--device cpu"):
            check_device("cuda")
    else:
        with pytest.raises(ValueError, match="GPU\\(s\\) visible"):
            check_device(f"cuda:{torch.cuda.device_count()}")
