"""The committed notebooks carry the outputs of their current code: a clean run, small, fresh.

A reader on GitHub sees the stored outputs, so they must come from the code above them. The check is
a hash of the code cells that ``tools/execute_notebooks.py`` stores when it executes a notebook.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from repo_tools import load_tool

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
TOOL = load_tool("execute_notebooks")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_outputs_come_from_the_current_code(path):
    why = TOOL.stale_reason(path)
    assert why is None, (f"{path.relative_to(ROOT)}: {why}; refresh its outputs with "
                         f"`{TOOL.REFRESH} {path.relative_to(ROOT)}`")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_a_clean_top_to_bottom_run_without_errors(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), "execution counts must run 1, 2, 3..."
    errors = [o.get("ename") for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"stored error outputs: {errors}"
    assert nb.metadata["minidit"]["mode"] == "normal"
    assert path.stat().st_size <= TOOL.MAX_NOTEBOOK_BYTES


def test_all_notebooks_together_stay_small():
    assert sum(p.stat().st_size for p in NOTEBOOKS) <= TOOL.MAX_TOTAL_BYTES


def test_the_hash_sees_code_not_prose():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# a"), nbformat.v4.new_code_cell("x = 1")])
    before = TOOL.code_hash(nb)
    nb.cells[0].source = "# a different title"
    nb.cells[1].source = "x = 1   \n\n"                 # trailing spaces and blank lines do not count
    assert TOOL.code_hash(nb) == before
    nb.cells[1].source = "x = 2"
    assert TOOL.code_hash(nb) != before
    nb.cells.append(nbformat.v4.new_code_cell(""))
    assert TOOL.code_hash(nb) != TOOL.code_hash(nbformat.v4.new_notebook(cells=nb.cells[:2]))
