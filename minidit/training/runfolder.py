"""The run folder: a new one for every run, one process at a time in it, and one history.

* ``new_run_folder`` picks the next ``NNN-<model>-<preset>`` under a short lock on the results
  folder, so two runs started at the same moment never get the same number or folder.
* ``RunFolder.lock`` makes sure only one process trains in a folder: an OS lock (``flock``) on the
  folder, released by the OS even when the process is killed, and a ``.lock`` file naming the
  holder, so a second process stops with "run folder ... is in use by process <pid>".
* ``set_aside_after(step)``: resuming from a checkpoint older than the newest (a roll-back) starts
  a new branch of the run's history. What the old branch wrote after that step -- checkpoints,
  sample grids, metrics records -- moves to ``set-aside/<time>-after-step-<step>/`` (never deleted),
  so ``--resume latest``, checkpoint pruning, ``metrics.jsonl`` and the loss curve follow the new
  branch, and every step appears in ``metrics.jsonl`` once.
"""
from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from minidit.errors import RunError
from minidit.files import pid_alive, remove_temp_files
from minidit.training import checkpoint as ckpt_lib
from minidit.training.logger import read_jsonl, write_jsonl

try:  # POSIX: locks the OS releases when the holder dies
    import fcntl
except ImportError:  # Windows: an exclusive-create lock file, stale when its process is gone
    fcntl = None

LOCK_NAME = ".lock"
SET_ASIDE = "set-aside"
GRID_NAME = re.compile(r"^samples_(\d{7,})\.png$")


class RunFolderBusy(RunError):
    """Another process is training in this run folder."""


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """Hold the OS lock of ``folder`` for the ``with`` block (blocking: for short critical sections)."""
    if fcntl is None:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def new_run_folder(results_dir: str | Path, model: str, preset: str) -> Path:
    """Create ``results_dir/NNN-<model>-<preset>`` with NNN one more than the highest index there."""
    results_dir = Path(results_dir)
    if results_dir.exists() and not results_dir.is_dir():
        raise NotADirectoryError(f"--results-dir {results_dir} is a file, not a folder; pass a folder")
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(e.errno, f"cannot create --results-dir {results_dir}: {e.strerror}") from None
    with _folder_lock(results_dir):  # two runs starting together take turns here
        indices = [int(p.name.split("-")[0]) for p in results_dir.iterdir()
                   if p.is_dir() and p.name.split("-")[0].isdigit()]
        # "DiT-XL/2" -> "DiT-XL-2" (the official code does the same)
        path = results_dir / f"{max(indices, default=-1) + 1:03d}-{model.replace('/', '-')}-{preset}"
        (path / "checkpoints").mkdir(parents=True, exist_ok=False)
    return path


@dataclass
class RunFolder:
    """A run folder this process trains in (rank 0 only); ``lock`` before writing anything."""

    path: Path
    _fd: int | None = field(default=None, repr=False)

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def lock(self) -> RunFolder:
        """Take the folder for this process, or raise ``RunFolderBusy`` naming the process that has it."""
        lock_file = self.path / LOCK_NAME
        if fcntl is None:
            self._lock_file_only(lock_file)
            return self
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunFolderBusy(self._busy_message(lock_file)) from None
        self._fd = fd
        lock_file.write_text(f"{os.getpid()} {socket.gethostname()}\n")
        return self

    def _lock_file_only(self, lock_file: Path) -> None:
        if lock_file.exists():
            pid = int((lock_file.read_text().split() or ["0"])[0])
            if pid_alive(pid):
                raise RunFolderBusy(self._busy_message(lock_file))
            lock_file.unlink()  # left by a process that is gone
        fd = os.open(lock_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        os.close(fd)

    def _busy_message(self, lock_file: Path) -> str:
        try:
            pid, host = (lock_file.read_text().split() + ["?", "?"])[:2]
        except OSError:
            pid, host = "?", "?"
        return (f"run folder {self.path} is in use by process {pid} (on {host}); wait for it to finish or stop it, "
                f"then resume with --resume latest")

    def release(self) -> None:
        """Give the folder back (the OS does it too if this process dies)."""
        (self.path / LOCK_NAME).unlink(missing_ok=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def remove_temp_files(self) -> list[Path]:
        """Delete the temporary files of writes a killed process never finished (we hold the lock)."""
        return remove_temp_files(self.checkpoints, only_dead=False) + remove_temp_files(self.path, only_dead=False)

    def set_aside_after(self, step: int) -> Path | None:
        """Move everything written after ``step`` to ``set-aside/``; returns that folder (None: nothing)."""
        ckpts = [p for s, p in ckpt_lib.list_checkpoints(self.checkpoints) if s > step]
        grids = [p for p in self.path.iterdir() if GRID_NAME.match(p.name) and int(GRID_NAME.match(p.name)[1]) > step]
        metrics = self.path / "metrics.jsonl"
        records = read_jsonl(metrics)
        keep = {r["step"]: r for r in records if r.get("step", 0) <= step}  # each step once: its newest record
        later = [r for r in records if r.get("step", 0) > step]
        if not (ckpts or grids or later):
            if len(keep) < len(records):  # duplicates only
                write_jsonl(metrics, list(keep.values()))
            return None
        dest = self.path / SET_ASIDE / f"{time.strftime('%Y%m%d-%H%M%S')}-after-step-{step:07d}"
        (dest / "checkpoints").mkdir(parents=True, exist_ok=False)
        for p in ckpts:
            os.replace(p, dest / "checkpoints" / p.name)
        for p in grids:
            os.replace(p, dest / p.name)
        if later:
            write_jsonl(dest / "metrics.jsonl", later)
        write_jsonl(metrics, list(keep.values()))
        return dest

