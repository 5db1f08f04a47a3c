"""minidit.notebook: the one-line setup, and try_exercise on a student's file (fresh each call, never raising)."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

from minidit import notebook
from minidit.chapters import chapter_stem
from repo_tools import load_tool

ROOT = Path(__file__).resolve().parents[1]
STEM = chapter_stem(3)  # ch03_tokens: patchify


def run_patchify(patchify):
    return patchify(torch.randn(2, 4, 8, 8), 2)


@pytest.fixture
def student(tmp_path):
    """A student's exercises folder: a copy of the reference answers, to be edited by the test."""
    folder = tmp_path / "mine"
    folder.mkdir()
    shutil.copy(ROOT / "solutions" / f"{STEM}.py", folder / f"{STEM}.py")
    return folder / f"{STEM}.py"


def test_setup_prints_one_line_and_makes_exercises_importable(capsys, monkeypatch):
    monkeypatch.setenv("MINIDIT_SMOKE", "1")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(ROOT)])
    smoke, device = notebook.setup()
    assert smoke is True and isinstance(device, torch.device)
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "smoke mode: True" in out and f"device: {device}" in out
    assert str(ROOT) in sys.path  # `import exercises` works from a notebook in notebooks/


def stubs(tmp_path: Path, chapter: int) -> Path:
    """A folder holding the generated, untouched exercise file of ``chapter`` (whatever exercises/ holds)."""
    gen = load_tool("make_exercises")
    files, _ = gen.expected_files(root=tmp_path)
    folder = tmp_path / "stubs"
    folder.mkdir()
    name = f"{chapter_stem(chapter)}.py"
    (folder / name).write_text(files[tmp_path / "exercises" / name])
    return folder


def test_untouched_stub_is_not_done_yet(tmp_path, capsys):
    assert notebook.try_exercise("ch03", "patchify", run_patchify, impl=str(stubs(tmp_path, 3))) is None
    assert "patchify: not done yet" in capsys.readouterr().out


def test_methods_by_dotted_name_and_a_stub_one_calls(tmp_path, capsys):
    """``"DiT.forward"`` hands over the function; a finished exercise that calls an unfinished one waits."""
    from minidit.models.dit import DiT
    model = DiT(input_size=4, patch_size=2, in_channels=1, hidden_size=8, depth=1, num_heads=2, num_classes=3)
    x, t, y = torch.randn(2, 1, 4, 4), torch.tensor([1, 2]), torch.tensor([0, 1])
    run = lambda forward: forward(model, x, t, y)  # noqa: E731
    assert notebook.try_exercise("ch05", "DiT.forward", run, impl=str(ROOT / "solutions")) is True
    folder = stubs(tmp_path, 4)
    path = folder / f"{chapter_stem(4)}.py"
    solution = (ROOT / "solutions" / path.name).read_text()
    start = solution.index("class DiTBlock(")
    path.write_text(path.read_text() + "\n\n" + solution[start:solution.index("\n\n\n", start)])
    capsys.readouterr()
    block = lambda Block: Block(8, 2)(torch.randn(2, 3, 8), torch.randn(2, 8))  # noqa: E731
    assert notebook.try_exercise("ch04", "DiTBlock", block, impl=str(folder)) is None
    assert "DiTBlock: waits for modulate, which is not done yet" in capsys.readouterr().out


def test_a_right_answer_matches_and_a_wrong_one_says_where(student, capsys):
    assert notebook.try_exercise("ch03", "patchify", run_patchify, impl=str(student.parent)) is True
    assert "patchify: matches minidit" in capsys.readouterr().out
    # the file is read again on every call: an edit counts without restarting anything
    student.write_text(student.read_text() + "\n\ndef patchify(x, patch_size):\n    return x.flatten(2).transpose(1, 2)\n")
    assert notebook.try_exercise("ch03", "patchify", run_patchify, impl=str(student.parent)) is False
    assert "does NOT match minidit yet: expected shape (2, 16, 16), got shape (2, 64, 4)" in capsys.readouterr().out


def test_a_bug_shows_the_students_line_not_the_graders(student, capsys):
    student.write_text(student.read_text() + "\n\ndef patchify(x, patch_size):\n"
                       "    n, c, h, w = x.shape\n    return x.reshape(n, c, h // patch_size, 3)\n")
    assert notebook.try_exercise("ch03", "patchify", run_patchify, impl=str(student.parent)) is False
    out = capsys.readouterr().out
    assert "patchify: your code raised RuntimeError" in out
    assert "return x.reshape(n, c, h // patch_size, 3)" in out and f"{STEM}.py, line" in out
    assert "notebook.py" not in out and len(out.splitlines()) <= 4
    # a syntax error: the line and the message, and still no exception
    student.write_text("def patchify(x, patch_size:\n    pass\n")
    assert notebook.try_exercise("ch03", "patchify", run_patchify, impl=str(student.parent)) is False
    out = capsys.readouterr().out
    assert "SyntaxError" in out and "line 1" in out


def test_both_runs_see_the_same_random_numbers_and_the_callers_rng_is_untouched(student, capsys):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    assert notebook.try_exercise("ch03", "patchify", run_patchify, impl=str(student.parent)) is True
    assert torch.equal(torch.get_rng_state(), before)


def test_difference_names_what_differs():
    assert notebook.difference([1.0, 2.0], [1.0, 2.0]) is None
    assert "largest difference 0.5 at index (1,)" in notebook.difference(torch.tensor([1.0, 2.5]), torch.tensor([1.0, 2.0]))
    assert notebook.difference({"a": 1.0}, {"a": 1.0, "b": 2.0}).startswith("expected a dict with keys")
    assert notebook.difference(["x", "y"], ["y", "x"]) == "item 0: expected 'y', got 'x'"
    assert notebook.difference((torch.ones(2), 3.0), (torch.ones(2), 3.0)) is None
