"""minidit/files.py and minidit/errors.py: atomic writes, whole-line appends, disk full, one-line CLI errors."""
from __future__ import annotations

import errno
import os

import pytest

from minidit import errors, files


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_atomic_write_keeps_the_old_file_and_names_a_full_disk(tmp_path):
    path = tmp_path / "args.json"
    files.write_text_atomic(path, "old")
    with pytest.raises(files.DiskFullError) as info:
        with files.atomic_write(path, "w") as f:
            f.write("half of the new")
            no_space()
    message = str(info.value)
    assert f"disk full while writing {path}: " in message and message.endswith(" bytes free")
    free = int(message.rsplit(": ", 1)[1].split()[0])
    assert abs(free - files.free_bytes(tmp_path)) < 2**26  # the real free space (other writers may move it a bit)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["args.json"]  # no temporary file left
    # any other error: the same, raised as it is
    with pytest.raises(ZeroDivisionError):
        with files.atomic_write(path, "w") as f:
            f.write("x")
            1 / 0
    assert path.read_text() == "old" and len(list(tmp_path.iterdir())) == 1


def test_append_line_adds_a_whole_line_or_nothing(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    files.append_line(path, '{"step": 1}')
    real_write = os.write

    def half_then_full(fd, data):  # the disk fills up in the middle of the line
        if len(data) > 4:
            return real_write(fd, bytes(data[:4]))
        no_space()

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(files.DiskFullError, match="disk full while writing .*metrics.jsonl"):
        files.append_line(path, '{"step": 2, "loss": 0.5}')
    monkeypatch.undo()
    assert path.read_text() == '{"step": 1}\n'  # cut back: no half record
    files.append_line(path, '{"step": 2}')
    assert path.read_text().splitlines() == ['{"step": 1}', '{"step": 2}']


def test_remove_temp_files_spares_live_writers(tmp_path):
    dead = tmp_path / f"0000004.pt{files.TEMP_MARK}999999999"  # no such process
    alive = tmp_path / f"0000006.pt{files.TEMP_MARK}1"  # pid 1 always runs
    keep = tmp_path / "0000002.pt"
    for p in (dead, alive, keep):
        p.write_bytes(b"x")
    assert files.remove_temp_files(tmp_path) == [dead]
    assert files.remove_temp_files(tmp_path, only_dead=False) == [alive]  # we hold the folder's lock
    assert [p.name for p in tmp_path.iterdir()] == ["0000002.pt"]


@pytest.mark.parametrize("error, expected, code", [
    (ValueError("--lr must be positive"), "error: --lr must be positive", 2),
    (FileNotFoundError("checkpoint x.pt does not exist"), "error: checkpoint x.pt does not exist", 2),
    (PermissionError(errno.EACCES, "Permission denied", "/root/x"), "error: Permission denied: /root/x", 2),
    (files.DiskFullError(errno.ENOSPC, "disk full while writing a: 0 bytes free"),
     "error: disk full while writing a: 0 bytes free", 2),
    (errors.RunError("the loss became NaN at step 3"), "error: the loss became NaN at step 3", 2),
    (KeyError("bug"), "error: KeyError: 'bug'\n(an unexpected error; rerun with --debug or MINIDIT_DEBUG=1 for the full "
                      "traceback)", 1),
    (KeyboardInterrupt(), "interrupted", 130),
    (errors.ReportedElsewhere(), "", 1),
    (errors.Stopped("stopped by SIGTERM", 143), "", 143),
])
def test_cli_errors_are_one_or_two_lines(error, expected, code, capsys, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)

    def main(argv):
        raise error

    with pytest.raises(SystemExit) as info:
        errors.run_cli(main, [])
    assert info.value.code == code
    assert capsys.readouterr().err == (expected + "\n" if expected else "")
    # --debug (or MINIDIT_DEBUG=1): the exception itself, for its traceback
    if not isinstance(error, (errors.Stopped, errors.ReportedElsewhere)):
        with pytest.raises(type(error)):
            errors.run_cli(main, ["--debug"])
        monkeypatch.setenv(errors.DEBUG_ENV, "1")
        with pytest.raises(type(error)):
            errors.run_cli(main, [])
