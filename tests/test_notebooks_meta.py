"""The notebooks as files: one per chapter, the shared setup line first.

Running them is nbval's job (``pytest`` collects ``notebooks/`` with ``--nbval-lax``); these
checks keep the committed files uniform. They are committed executed (their outputs, clean run and
size are checked in ``test_notebook_outputs.py``).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from minidit.chapters import CHAPTERS, chapter_stem

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_notebook_names_follow_the_chapter_list():
    chapters = CHAPTERS
    assert len(NOTEBOOKS) == len(CHAPTERS)
    for nb in NOTEBOOKS:
        number, stem = int(nb.name[:2]), nb.stem[3:]
        assert number in chapters and chapters[number][0] == stem, f"{nb.name} is not a known chapter"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_starts_with_setup(nb):
    data = json.loads(nb.read_text())
    cells = data["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    first = "".join(code[0]["source"])
    assert first.startswith("from minidit.notebook import setup") and "SMOKE, device = setup()" in first, (
        f"{nb.name}: the first code cell must be the setup line")
    assert len(first.splitlines()) <= 2, f"{nb.name}: the setup cell is one or two lines"
    # the "try your version" cell calls the shared try_exercise on this chapter's exercise file
    stem = chapter_stem(int(nb.name[:2]))
    tries = [c for c in code if "try_exercise(" in "".join(c["source"])]
    assert len(tries) == 1 and f"exercises/{stem}.py" in "".join(tries[0]["source"]), nb.name
    assert f'try_exercise("ch{nb.name[:2]}"' in "".join(tries[0]["source"]), nb.name
    assert cells[0]["cell_type"] == "markdown" and "Chapter" in "".join(cells[0]["source"])
    text = "".join("".join(c["source"]) for c in cells)
    assert f"--impl=exercises" in text, f"{nb.name}: the closing section must say how to grade the exercises"
