"""Writing files so that a reader never sees half of one: atomic replace, whole-line appends, disk full.

Every file minidit writes (checkpoints, ``args.json``, pictures, sample batches, metrics) goes
through this module:

* ``atomic_write(path)`` (or ``atomic_path`` for writers that take a file name) writes to ``path.tmp.<pid>`` in the same folder, flushes it to disk
  (``fsync``) and renames it over ``path`` with ``os.replace`` -- atomic on POSIX and Windows, so a
  reader sees the old file or the complete new one, never a torn one. A crash half-way leaves at
  worst the temporary file, which ``remove_temp_files`` clears later.
* ``append_line(path, line)`` adds one whole line to a log-like file (``metrics.jsonl``) or nothing:
  a failed write is cut back off, so the file never ends in half a record.
* A full disk (``ENOSPC``, or ``EDQUOT`` for a full quota) becomes a ``DiskFullError`` whose
  message names the file and the space left: "disk full while writing <file>: N bytes free". The
  file that was there before is untouched.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

TEMP_MARK = ".tmp."  # "<name>.tmp.<pid>": a write in progress by process <pid>
_TEMP_NAME = re.compile(r"^.+\.tmp\.(\d+)$")
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


class DiskFullError(OSError):
    """No space left while writing a file; the message says which file and how much space is left."""


def free_bytes(path: str | Path) -> int:
    """Free bytes on the file system that holds ``path`` (or its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return -1


def disk_full_error(path: str | Path, cause: OSError) -> OSError:
    """``cause`` as a ``DiskFullError`` when it is ENOSPC/EDQUOT, else ``cause`` itself."""
    if isinstance(cause, DiskFullError) or cause.errno not in _NO_SPACE:
        return cause
    return DiskFullError(cause.errno, f"disk full while writing {path}: {free_bytes(path)} bytes free")


def temp_path(path: str | Path) -> Path:
    """Where ``atomic_write`` puts the bytes of ``path`` until they are complete."""
    path = Path(path)
    return path.with_name(f"{path.name}{TEMP_MARK}{os.getpid()}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """``with atomic_path(path) as tmp: save(tmp)`` -- for writers that take a file *name*
    (``safetensors.torch.save_file``): ``path`` appears complete, or stays as it was.

    The bytes go to ``temp_path(path)`` in the same folder (a rename is only atomic within one
    file system), are flushed to disk (``fsync``) before the rename makes them visible, then
    ``os.replace`` puts them in place. On any error the temporary file is removed and the error
    raised (a full disk as ``DiskFullError``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)  # first, so the free space in the message counts it
        full = disk_full_error(path, e)
        if full is e:
            raise
        raise full from e
    finally:
        tmp.unlink(missing_ok=True)
    fsync_folder(path.parent)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator:
    """``with atomic_write(path) as f: ...`` -- an open file whose content replaces ``path``
    atomically when the block ends without an error (see ``atomic_path``).

    Works with every writer that takes a file object: ``np.savez(f, ...)``,
    ``Image.save(f, format="PNG")``, ``torch.save(obj, f)``, ``fig.savefig(f, format="png")``.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"atomic_write: mode must be 'wb' or 'w', got {mode!r}")
    with atomic_path(path) as tmp:
        with open(tmp, mode) as f:
            yield f
            f.flush()


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write a whole text file atomically (see ``atomic_write``)."""
    with atomic_write(path, "w") as f:
        f.write(text)
    return Path(path)


def write_json_atomic(path: str | Path, obj, indent: int = 2) -> Path:
    """Replace ``path`` with ``obj`` as JSON atomically; the object is serialised first, so an
    unserialisable value fails before anything is written."""
    return write_text_atomic(path, json.dumps(obj, indent=indent) + "\n")


def fsync_folder(folder: str | Path) -> None:
    """Make a rename inside ``folder`` survive a power cut (where the OS allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # some file systems (and Windows) cannot fsync a folder; the rename still stands
        pass


def append_line(path: str | Path, line: str) -> None:
    """Append ``line`` (a newline is added) as a whole, or not at all.

    One ``os.write`` loop on a file opened for appending; if the disk fills up half-way, the file
    is truncated back to its old length, so it never ends in a partial line. Not fsynced: a log
    line lost to a power cut is acceptable, a torn one is not (readers skip a torn last line).
    """
    data = (line.rstrip("\n") + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        start = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError as e:
            os.ftruncate(fd, start)
            raise disk_full_error(path, e) from e
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def stale_temps(path: str | Path) -> list[Path]:
    """The temporary twins of ``path`` (``<name>.tmp.<pid>``, any pid) that killed writers left.
    Delete them only where no other process can be writing ``path`` at the same time."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    return sorted(p for p in path.parent.glob(f"{path.name}{TEMP_MARK}*") if _TEMP_NAME.match(p.name)
                  and p.name[len(path.name) + len(TEMP_MARK):].isdigit())


def remove_temp_files(folder: str | Path, only_dead: bool = True) -> list[Path]:
    """Delete the ``*.tmp.<pid>`` files ``atomic_write`` left in ``folder`` when a writer was killed.

    ``only_dead``: spare files whose process still runs (it may be writing now). Pass False when
    this process holds the folder's lock, so no one else can be writing there.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        m = _TEMP_NAME.match(p.name)
        if not m or not p.is_file():
            continue
        pid = int(m.group(1))
        if pid == os.getpid() or (only_dead and pid_alive(pid)):
            continue
        p.unlink(missing_ok=True)
        removed.append(p)
    return removed
