"""Every exercise is announced in its chapter's notebook: level, staged hints, a try cell; and the capstone cells."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from minidit.chapters import notebook_path
from minidit.graded import graded_items

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted({it.chapter for it in graded_items()})


def cells(chapter: int) -> list[dict]:
    data = json.loads((ROOT / notebook_path(chapter)).read_text())
    return [dict(kind=c["cell_type"], text="".join(c["source"])) for c in data["cells"]]


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_exercise_has_its_level_hints_and_a_try(chapter):
    all_cells = cells(chapter)
    (exercises,) = [c["text"] for c in all_cells if c["kind"] == "markdown" and "## Exercises" in c["text"]]
    section = exercises.split("## Exercises", 1)[1]
    (tries,) = [c["text"] for c in all_cells if c["kind"] == "code" and "try_exercise(" in c["text"]]
    tried = set(re.findall(rf'try_exercise\("ch{chapter:02d}", "([\w.]+)"', tries))
    for it in (it for it in graded_items() if it.chapter == chapter):
        block = section.split(f"**`{it.qualname}`** ({it.level})", 1)
        assert len(block) == 2, f"{notebook_path(chapter)}: no hints heading for {it.qualname} ({it.level})"
        own = block[1].split("**`", 1)[0]  # up to the next exercise's heading
        assert 2 <= own.count("<details><summary>Hint") <= 3, f"{it.qualname}: 2 or 3 staged hints"
        assert own.count("<details>") == own.count("</details>")
        assert f"| `{it.qualname}` |" in section and it.level in section
        assert it.qualname in tried or it.top in tried, f"{notebook_path(chapter)}: no try for {it.qualname}"


def test_the_capstone_cells():
    six = [c["text"] for c in cells(6) if c["kind"] == "code"]
    seven = [c["text"] for c in cells(7) if c["kind"] == "code"]
    assert "train_my_dit()" in six[-1] and "sample_my_dit()" in seven[-1]
    readme = (ROOT / "README.md").read_text()
    assert "--impl exercises:ch01-ch06" in readme and "--impl exercises:ch01-ch07" in readme


def test_the_readme_table_lists_every_chapter_and_its_exercises():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## The learning path", 1)[1].split("\n\n| # |", 1)[1].split("\n\n", 1)[0]
    cols = {int(line.split("|")[1]): re.split(r"(?<!\\)\|", line) for line in table.splitlines()[2:]}   # not at \|
    rows = {chapter: "|".join(c) for chapter, c in cols.items()}
    assert sorted(rows) == list(range(1, 14)) and ".venv/bin/jupyter lab notebooks/" in readme
    for it in graded_items():
        row = rows[it.chapter]
        assert f"`{Path(notebook_path(it.chapter)).stem}`" in row and f"`{it.qualname}`" in row, it.qualname
    for chapter, row in rows.items():   # an exercises column that lists more than the chapter holds is stale
        listed = re.findall(r"`([\w.]+)`", cols[chapter][4])
        assert sorted(listed) == sorted(it.qualname for it in graded_items() if it.chapter == chapter), chapter
