"""Writing a file so that a reader sees the old file or the complete new one, never half of one.

Every file minidit writes for a user (sample ``.npz`` batches, images, metrics JSON, latent
shards, checkpoints) goes through :func:`atomic_path` or :func:`atomic_write`:

1. write to a temporary name next to the target, ``<name>.tmp.<pid>`` (a rename is atomic only
   within one file system, so the temporary file must live in the same folder);
2. flush and ``fsync`` it, so the bytes are on disk before the new name makes them visible;
3. ``os.replace`` it over the final name (atomic on POSIX and Windows), then ``fsync`` the folder
   so the new name survives a power cut.

A crash or a SIGKILL half-way leaves at worst a stray temporary file (:func:`stale_temps` finds
them), never a truncated file under the real name. A full disk becomes :class:`DiskFullError`,
whose message names the file and the bytes left.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from pathlib import Path
from typing import Iterator

TMP_INFIX = ".tmp."  # <name>.tmp.<pid>: the temporary twin of <name>


class DiskFullError(OSError):
    """No space left while writing a file: "disk full while writing <file>: N bytes free"."""

    def __str__(self) -> str:
        return self.args[0] if self.args else "disk full"


def temp_path(path: str | Path) -> Path:
    """The temporary name this process writes ``path`` under: ``<name>.tmp.<pid>`` in the same folder."""
    path = Path(path)
    return path.with_name(f"{path.name}{TMP_INFIX}{os.getpid()}")


def stale_temps(path: str | Path) -> list[Path]:
    """Temporary twins of ``path`` left by killed writers (any pid). Delete them only where no other
    process can be writing ``path`` at the same time."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    return sorted(p for p in path.parent.glob(f"{path.name}{TMP_INFIX}*")
                  if p.name[len(path.name) + len(TMP_INFIX):].isdigit())


def _fsync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # some file systems (and Windows) cannot fsync a folder; the rename still stands
        pass


def _disk_full(path: Path, err: OSError) -> DiskFullError:
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = "unknown"
    return DiskFullError(f"disk full while writing {path}: {free} bytes free; free some space and run again")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content to (for writers that want a file NAME,
    e.g. ``safetensors.torch.save_file``); on success it is fsynced and renamed to ``path``.
    On an error the temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        if err.errno == errno.ENOSPC and not isinstance(err, DiskFullError):
            raise _disk_full(path, err) from err
        raise
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_folder(path.parent)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator:
    """``with atomic_write(path) as f:`` -- an open file (``mode`` "wb" or "w") whose content
    replaces ``path`` atomically when the block ends without an error.

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
    """Replace ``path`` with ``text`` atomically."""
    with atomic_write(path, "w") as f:
        f.write(text)
    return Path(path)


def write_json_atomic(path: str | Path, obj, indent: int = 2) -> Path:
    """Replace ``path`` with ``obj`` as JSON atomically (the object is serialised first, so an
    unserialisable value fails before anything is written)."""
    return write_text_atomic(path, json.dumps(obj, indent=indent) + "\n")
