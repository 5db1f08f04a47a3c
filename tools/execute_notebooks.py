"""Execute the chapters top to bottom in normal mode and store their outputs, so a reader sees them.

    python tools/execute_notebooks.py                      # every notebook in notebooks/
    python tools/execute_notebooks.py notebooks/07*.ipynb  # some of them
    python tools/execute_notebooks.py --check              # which notebooks are stale (no execution)

The notebooks are committed executed: GitHub and nbviewer then show the figures and tables the prose
talks about. Each one is run in a fresh kernel from the ``notebooks/`` folder, in normal mode
(``MINIDIT_SMOKE`` is removed from the environment), and saved with

* execution counts 1, 2, 3, ... (a clean top-to-bottom run: no cell skipped or run twice);
* no per-cell timing metadata (it would change every run and bloat the diffs);
* paths inside this checkout or the home folder written relative to them;
* ``metadata.minidit``: a hash of the notebook's code cells, a hash of the ``minidit/`` package it
  ran on, and the mode. ``tests/test_notebook_outputs.py`` recomputes the first: a notebook whose
  code changed after its outputs were made fails the tests with the command that refreshes it.

Limits kept by this script (and checked by the test): every notebook at most 2 MB, all together at
most 15 MB -- figures are PNGs at the inline backend's modest resolution.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
MAX_NOTEBOOK_BYTES = 2 * 1024 * 1024
MAX_TOTAL_BYTES = 15 * 1024 * 1024
REFRESH = "python tools/execute_notebooks.py"


def code_hash(nb) -> str:
    """SHA-256 of the code cells' sources, in order (trailing spaces and blank lines ignored).

    Markdown edits do not make outputs stale; any change to what runs does."""
    h = hashlib.sha256()
    for cell in nb.cells:
        if cell.cell_type == "code":
            source = "\n".join(line.rstrip() for line in cell.source.strip().splitlines())
            h.update(source.encode() + b"\0")
    return h.hexdigest()


def package_hash(root: Path = ROOT) -> str:
    """SHA-256 of every ``minidit/**/*.py`` file (names and contents): what the outputs came from."""
    h = hashlib.sha256()
    for path in sorted((root / "minidit").rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def stale_reason(path: Path) -> str | None:
    """Why ``path``'s stored outputs do not belong to its code (None: they do)."""
    nb = nbformat.read(path, as_version=4)
    stored = nb.metadata.get("minidit", {}).get("code_sha256")
    if stored is None:
        return "it was never executed by this script"
    if stored != code_hash(nb):
        return "its code cells changed after its outputs were made"
    return None


def relative_paths(nb) -> None:
    """Write this checkout's, the cache's and the home folder's absolute paths in the outputs as
    relative ones (``./minidit``, ``~/.cache/minidit``): the stored outputs then read the same from
    any clone."""
    home = str(Path.home())
    cache = os.environ.get("MINIDIT_CACHE")  # a cache elsewhere reads as the default one
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            fields = [("text", out)] if "text" in out else []
            fields += [(k, out["data"]) for k in ("text/plain", "text/html") if k in out.get("data", {})]
            for key, holder in fields:
                text = holder[key] if isinstance(holder[key], str) else "".join(holder[key])
                if cache:
                    text = text.replace(str(Path(cache).expanduser()), "~/.cache/minidit")
                text = text.replace(f"{ROOT}/", "./").replace(str(ROOT), ".")
                holder[key] = text.replace(f"{home}/", "~/") if home != "/" else text


def execute(path: Path, timeout: int) -> float:
    """Run ``path`` in a fresh kernel in normal mode and save it in place; returns the seconds taken."""
    nb = nbformat.read(path, as_version=4)
    env = {k: v for k, v in os.environ.items() if k != "MINIDIT_SMOKE"}
    start = time.perf_counter()
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute(env=env)  # the kernel's environment: this one without MINIDIT_SMOKE
    seconds = time.perf_counter() - start
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    relative_paths(nb)
    nb.metadata["minidit"] = {"code_sha256": code_hash(nb), "package_sha256": package_hash(),
                              "mode": "normal", "refresh": f"{REFRESH} {path.relative_to(ROOT)}"}
    nbformat.write(nb, path)
    return seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("notebooks", nargs="*", type=Path, help="notebooks to execute [default: all of notebooks/]")
    ap.add_argument("--check", action="store_true", help="only list the notebooks whose outputs are stale")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds one cell may run [default: 1800]")
    args = ap.parse_args(argv)
    paths = [p.resolve() for p in args.notebooks] or sorted(NOTEBOOKS.glob("*.ipynb"))
    if args.check:
        stale = [(p, stale_reason(p)) for p in paths]
        stale = [(p, why) for p, why in stale if why]
        for p, why in stale:
            print(f"stale: {p.relative_to(ROOT)}: {why}; refresh with `{REFRESH} {p.relative_to(ROOT)}`")
        return 1 if stale else 0
    for p in paths:
        print(f"executing {p.relative_to(ROOT)} ...", flush=True)
        seconds = execute(p, args.timeout)
        size = p.stat().st_size
        print(f"  {seconds:.0f} s, {size / 1e6:.2f} MB", flush=True)
        if size > MAX_NOTEBOOK_BYTES:
            print(f"  too large: {size} bytes > {MAX_NOTEBOOK_BYTES}; make its figures smaller", file=sys.stderr)
            return 1
    total = sum(p.stat().st_size for p in NOTEBOOKS.glob("*.ipynb"))
    print(f"all notebooks: {total / 1e6:.2f} MB")
    return 1 if total > MAX_TOTAL_BYTES else 0


if __name__ == "__main__":
    sys.exit(main())
