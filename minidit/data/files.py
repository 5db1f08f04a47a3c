"""Small file helpers for the on-disk data sets: gzip-or-not, and an opt-in, fail-fast download."""
from __future__ import annotations

import gzip
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path


def open_maybe_gz(path: Path):
    """Open ``path`` for binary reading, transparently un-gzipping ``*.gz``."""
    return gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")


def offline() -> bool:
    """True when the user said there is no network (``HF_HUB_OFFLINE=1`` or ``MINIDIT_OFFLINE=1``)."""
    return any(os.environ.get(k, "0").lower() in ("1", "true", "yes") for k in ("HF_HUB_OFFLINE", "MINIDIT_OFFLINE"))


def download(url: str, dest: Path, what: str, manual_help: str, timeout: float = 15.0) -> Path:
    """Fetch ``url`` to ``dest`` (atomically). Fails fast, with ``manual_help``, when offline."""
    if offline():
        raise RuntimeError(f"{what}: download=True but HF_HUB_OFFLINE/MINIDIT_OFFLINE is set. {manual_help}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as f:
            shutil.copyfileobj(response, f)
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"{what}: could not download {url} ({err}). {manual_help}") from err
    os.replace(tmp, dest)
    return dest
