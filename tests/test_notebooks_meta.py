"""The notebooks as files: one per chapter, outputs stripped, the shared setup cell first.

Running them is nbval's job (``pytest`` collects ``notebooks/`` with ``--nbval-lax``); these
checks keep the committed files clean and uniform.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _chapters():
    spec = importlib.util.spec_from_file_location("make_exercises", ROOT / "tools" / "make_exercises.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CHAPTERS


def test_notebook_names_follow_the_chapter_list():
    chapters = _chapters()
    for nb in NOTEBOOKS:
        number, stem = int(nb.name[:2]), nb.stem[3:]
        assert number in chapters and chapters[number][0] == stem, f"{nb.name} is not a known chapter"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_clean_and_starts_with_setup(nb):
    data = json.loads(nb.read_text())
    cells = data["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    for c in code:
        assert not c.get("outputs"), f"{nb.name}: outputs must be stripped before committing"
        assert c.get("execution_count") is None, f"{nb.name}: execution counts must be stripped"
    first = "".join(code[0]["source"])
    assert "from minidit.env import smoke, pick_device" in first, f"{nb.name}: first code cell must be the setup cell"
    assert cells[0]["cell_type"] == "markdown" and "Chapter" in "".join(cells[0]["source"])
    text = "".join("".join(c["source"]) for c in cells)
    assert f"--impl=exercises" in text, f"{nb.name}: the closing section must say how to grade the exercises"
    assert nb.stat().st_size < 1_000_000, f"{nb.name}: too big for a stripped notebook"
