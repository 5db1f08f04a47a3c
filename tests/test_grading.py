"""The grading machinery itself: generated files in sync, stubs skip, wrong answers fail clearly."""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location("make_exercises", ROOT / "tools" / "make_exercises.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pytest(*args, cwd=ROOT):
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_exercises_and_solutions_are_up_to_date():
    proc = subprocess.run([sys.executable, "tools/make_exercises.py", "--check"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_chapters_one_to_six_have_at_least_three_exercises():
    by_chapter = _generator().scan()
    counts = {ch: len(by_chapter.get(ch, [])) for ch in range(1, 7)}
    assert all(n >= 3 for n in counts.values()), f"graded items per chapter: {counts}"


def test_every_chapter_with_exercises_has_a_test_file():
    gen = _generator()
    for ch in gen.scan():
        stem = gen.chapter_stem(ch)
        assert (ROOT / "tests" / "exercises" / f"test_{stem}.py").exists(), f"no tests for {stem}"


def test_exercise_stubs_name_the_exercise_and_the_file():
    gen = _generator()
    for ch, items in gen.scan().items():
        text = (ROOT / "exercises" / f"{gen.chapter_stem(ch)}.py").read_text()
        for g in items:
            assert f"EXERCISE ch{ch:02d}.{g.name}" in text
        assert "BEGIN SOLUTION" not in text, "solution markers leaked into exercises/"


def test_untouched_exercises_only_skip():
    """pytest --impl=exercises on the untouched stubs: every graded test skips, none fails or errors."""
    proc = _pytest("tests/exercises", "--impl=exercises", "-rs")
    out = proc.stdout + proc.stderr
    assert proc.returncode in (0, 5), out[-3000:]
    tail = out.strip().splitlines()[-1]
    assert "failed" not in tail and "error" not in tail, out[-3000:]
    assert "skipped" in tail, out[-3000:]
    assert "EXERCISE ch" in out and "exercises/ch" in out, "skip messages must say which exercise to do"


def test_a_wrong_answer_fails_with_a_helpful_message(tmp_path):
    """A student's wrong `modulate` (x * scale + shift, forgetting the 1 +) fails and says why."""
    impl = tmp_path / "student"
    shutil.copytree(ROOT / "solutions", impl)
    (ch04,) = impl.glob("ch04_*.py")
    ch04.write_text(ch04.read_text() + "\n\ndef modulate(x, shift, scale):\n"
                    "    return x * scale.unsqueeze(1) + shift.unsqueeze(1)\n")
    proc = _pytest("tests/exercises", "-m", "ch4", f"--impl={impl}", "-k", "modulate")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    assert "modulate" in out and "expected" in out, out[-3000:]
