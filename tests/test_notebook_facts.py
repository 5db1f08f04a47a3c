"""The notebooks' checked facts: cells marked ``# NBVAL_CHECK_OUTPUT`` and what nbval does with them.

``pytest`` runs every notebook under nbval with ``--nbval-lax``: a cell's output is compared with
the committed one only where the cell holds the line ``# NBVAL_CHECK_OUTPUT``. Those cells print
one fact that is the same in smoke and normal mode and on every machine (parameter counts, Table
4's Gflops, shapes, schedule values...). These tests make sure there are enough of them, that
each prints one line and depends on nothing that changes between modes, and that nbval really
fails on a wrong fact. (While a notebook is committed without outputs, nbval has nothing to
compare a marked cell with and only runs it; the check bites once the executed outputs are in.)
"""
from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient   # the engine of nbconvert's ExecutePreprocessor

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MARK = "# NBVAL_CHECK_OUTPUT"
SANITIZE = ROOT / "notebooks" / "nbval_sanitize.cfg"
FASTEST = ROOT / "notebooks" / "03_tokens.ipynb"    # its marked cells run in well under a second


def marked_cells(nb_path: Path) -> list[dict]:
    cells = json.loads(nb_path.read_text())["cells"]
    return [c for c in cells if c["cell_type"] == "code"
            and MARK in [line.strip() for line in "".join(c["source"]).splitlines()]]


def stdout_of(cell: dict) -> str:
    return "".join("".join(o["text"]) for o in cell.get("outputs", []) if o.get("name") == "stdout")


def test_enough_checked_facts_in_every_chapter():
    counts = {nb.name: len(marked_cells(nb)) for nb in NOTEBOOKS}
    assert sum(counts.values()) >= 25, counts
    assert all(n >= 1 for n in counts.values()), f"a chapter without a checked fact: {counts}"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.name)
def test_checked_facts_are_one_line_and_mode_free(nb):
    for cell in marked_cells(nb):
        source = "".join(cell["source"])
        # nothing that differs between modes or machines: timings, the smoke switch, temporary
        # files, the notebook's `device` (torch.device("meta") is fine: no memory, no arithmetic)
        for pattern in (r"\btime\.", r"perf_counter", r"SMOKE", r"tempfile", r"(?<![.\w])device\b"):
            assert not re.search(pattern, source), f"{nb.name}: checked fact {cell['id']} must not use {pattern!r}"
        assert source.count("print(") == 1, f"{nb.name}: checked fact {cell['id']} prints one fact"
        text = stdout_of(cell)   # empty while the notebook is committed without outputs
        assert len(text.strip().splitlines()) <= 1, f"{nb.name}: cell {cell['id']} must print one line"


def run_nbval(path: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax", "--nbval-current-env",
           "--nbval-sanitize-with", str(SANITIZE), str(path)]
    env = dict(os.environ, MINIDIT_SMOKE="1", PYTHONPATH=str(ROOT))
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_nbval_fails_on_a_wrong_fact(tmp_path, monkeypatch):
    nb = nbformat.read(FASTEST, as_version=4)
    setup_cell = next(c for c in nb.cells if c.cell_type == "code")
    marked_ids = {c["id"] for c in marked_cells(FASTEST)}
    committed = {c["id"]: stdout_of(c) for c in marked_cells(FASTEST)}
    # a copy of the chapter with the setup line and its checked facts only, executed in smoke mode
    nb.cells = [setup_cell] + [c for c in nb.cells if c.get("id") in marked_ids]
    # and one marked cell that prints what the sanitize file must mask: a time, an address, a temporary path
    nb.cells.append(nbformat.v4.new_code_cell(f'{MARK}\nprint("took 1.5 s, object at 0x7f3a2c, file /tmp/abc/x.npz")',
                                              id="sanitized"))
    for c in nb.cells:
        c.outputs, c.execution_count = [], None
    monkeypatch.setenv("MINIDIT_SMOKE", "1")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    NotebookClient(nb, timeout=120, resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    executed = {c["id"]: stdout_of(c) for c in nb.cells if c["id"] in marked_ids}
    assert all(executed[i].strip() and len(executed[i].strip().splitlines()) == 1 for i in executed), executed
    # once the notebook is committed with its outputs, they are the facts a fresh smoke run prints
    assert all(executed[i] == committed[i] for i in committed if committed[i]), (executed, committed)

    masked = next(o for o in nb.cells[-1].outputs if o.get("name") == "stdout")
    masked["text"] = "took 27 s, object at 0x55d0e1, file /tmp/zzz/y.npz\n"   # another run, another machine
    good = tmp_path / "facts_ok.ipynb"
    nbformat.write(nb, good)
    result = run_nbval(good)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert f"{len(nb.cells)} passed" in result.stdout, result.stdout[-3000:]

    wrong = copy.deepcopy(nb)
    cell = next(c for c in wrong.cells if c.get("id") in marked_ids)
    out = next(o for o in cell.outputs if o.get("name") == "stdout")
    out["text"] = out["text"].replace("4", "5") if "4" in out["text"] else out["text"] + "!"
    bad = tmp_path / "facts_wrong.ipynb"
    nbformat.write(wrong, bad)
    result = run_nbval(bad)
    assert result.returncode != 0, "nbval accepted a wrong fact"
    assert "1 failed" in result.stdout and "Cell outputs differ" in result.stdout, result.stdout[-3000:]
