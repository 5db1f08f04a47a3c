"""The grading machinery itself: generated files in sync, stubs skip, wrong answers fail clearly."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from repo_tools import load_tool

ROOT = Path(__file__).resolve().parents[1]


def _pytest(*args, cwd=ROOT):
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_exercises_and_solutions_are_up_to_date():
    proc = subprocess.run([sys.executable, "tools/make_exercises.py", "--check"], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_chapters_one_to_six_have_at_least_three_exercises():
    by_chapter = load_tool("make_exercises").scan()
    counts = {ch: len(by_chapter.get(ch, [])) for ch in range(1, 7)}
    assert all(n >= 3 for n in counts.values()), f"graded items per chapter: {counts}"


def test_every_chapter_with_exercises_has_a_test_file():
    gen = load_tool("make_exercises")
    for ch in gen.scan():
        stem = gen.chapter_stem(ch)
        assert (ROOT / "tests" / "exercises" / f"test_{stem}.py").exists(), f"no tests for {stem}"


def test_exercise_stubs_name_the_exercise_and_the_file():
    gen = load_tool("make_exercises")
    files, by_chapter = gen.expected_files()  # what the generator writes, whatever exercises/ holds now
    for ch, tops in by_chapter.items():
        text = files[ROOT / "exercises" / f"{gen.chapter_stem(ch)}.py"]
        for top in tops:
            for item in top.items:
                assert f"EXERCISE ch{ch:02d}.{item.qualname} is not done yet" in text
                assert item.level in text  # the file lists each exercise's difficulty and time
        assert "BEGIN SOLUTION" not in text, "solution markers leaked into exercises/"


def test_every_exercise_has_a_difficulty_and_a_time_and_list_shows_them(capsys):
    gen = load_tool("make_exercises")
    items = [it for tops in gen.scan().values() for t in tops for it in t.items]
    assert all(1 <= it.difficulty <= 3 and 1 <= it.minutes <= 90 for it in items)
    assert gen.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "DiT.forward" in out and "medium, ~30 min" in out and "GaussianDiffusion.training_losses" in out


def test_untouched_exercises_only_skip(tmp_path):
    """pytest on untouched stubs: every graded test skips, none fails or errors."""
    gen = load_tool("make_exercises")
    files, _ = gen.expected_files(root=tmp_path)
    gen.write({p: t for p, t in files.items() if p.parent.name == "exercises"}, tmp_path)
    proc = _pytest("tests/exercises", f"--impl={tmp_path / 'exercises'}", "-rs")
    out = proc.stdout + proc.stderr
    assert proc.returncode in (0, 5), out[-3000:]
    tail = out.strip().splitlines()[-1]
    assert "failed" not in tail and "error" not in tail and "passed" not in tail, out[-3000:]
    assert "skipped" in tail, out[-3000:]
    assert "EXERCISE ch" in out and "exercises/ch" in out, "skip messages must say which exercise to do"


def _finish(text: str, solution: str, name: str) -> str:
    """``text`` (an exercise file) with the top-level ``name`` replaced by its reference answer."""
    def block(src):
        start = src.index(f"\ndef {name}(") + 1 if f"\ndef {name}(" in src else src.index(f"\nclass {name}(") + 1
        end = src.find("\n\n\n", start)
        return src[start:end if end > 0 else None]
    return text.replace(block(text), block(solution))


def test_the_generator_never_overwrites_a_students_work(tmp_path, capsys):
    gen = load_tool("make_exercises")
    files, _ = gen.expected_files(root=tmp_path)
    assert gen.write(files, tmp_path) == []
    mine = tmp_path / "exercises" / "ch04_conditioning.py"
    solution = (tmp_path / "solutions" / "ch04_conditioning.py").read_text()
    finished = _finish(mine.read_text(), solution, "modulate")   # one exercise done, in the student's file
    assert finished != mine.read_text()
    mine.write_text(finished)
    # --check: a finished exercise is not "stale"
    assert gen.check(files, tmp_path) == []
    # a rerun keeps the file and names it
    capsys.readouterr()
    kept = gen.write(files, tmp_path)
    assert [p for p, _ in kept] == [mine] and mine.read_text() == finished
    assert gen.main([], root=tmp_path) == 1
    out = capsys.readouterr().out
    assert "kept exercises/ch04_conditioning.py" in out and "modulate" in out and "--force" in out
    # an untouched but outdated stub file is rewritten; a stale solutions file is reported
    other = tmp_path / "exercises" / "ch01_forward_process.py"
    other.write_text(other.read_text().replace("Fill in every", "Fill in all"))
    assert any("ch01_forward_process.py: out of date" in p for p in gen.check(files, tmp_path))
    gen.write(files, tmp_path)
    assert other.read_text() == files[other] and mine.read_text() == finished
    # a signature that changed under the student's work is reported without telling them to regenerate
    mine.write_text(finished.replace("def modulate(x: torch.Tensor, shift", "def modulate(x: torch.Tensor, shifts"))
    (problem,) = gen.check(files, tmp_path)
    assert "holds your work" in problem and "modulate" in problem and "make_exercises" not in problem
    # --force replaces it (the help says the edits are lost)
    assert gen.main(["--force"], root=tmp_path) == 0 and mine.read_text() == files[mine]


def test_no_message_tells_a_student_to_regenerate_their_exercises():
    """Regenerating would once have wiped their work: no doc or message may suggest it unguarded."""
    texts = {p: p.read_text() for p in [ROOT / "README.md", ROOT / "exercises" / "README.md",
                                        *(ROOT / "exercises").glob("*.py"), *(ROOT / "tests").rglob("*.py"),
                                        *(ROOT / "minidit").rglob("*.py"), *(ROOT / "notebooks").glob("*.ipynb")]}
    for path, text in texts.items():
        if path.name in ("test_grading.py",):
            continue
        assert "overwrites `exercises/`" not in text and "overwrites exercises/" not in text, path
        for line in text.splitlines():
            if "make_exercises.py" in line and "--force" in line:
                assert "lost" in line or "copy" in line, (path, line)


def test_a_students_error_shows_their_line_and_a_diagnosis_not_the_grader(tmp_path):
    impl = tmp_path / "student"
    shutil.copytree(ROOT / "solutions", impl)
    (ch04,) = impl.glob("ch04_*.py")
    ch04.write_text(ch04.read_text() + "\n\ndef modulate(x, shift, scale):\n"
                    "    return x * (1 + scale) + shift\n")   # forgets to broadcast over the tokens
    proc = _pytest("tests/exercises", "-m", "ch4", f"--impl={impl}", "-k", "modulate")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    assert "ch04_conditioning.py:" in out and "return x * (1 + scale) + shift" in out, out[-3000:]
    assert "diagnosis: two tensors combined elementwise differ in size" in out, out[-3000:]
    assert "test_ch04_conditioning.py:" not in out.split("short test summary")[0], out[-3000:]


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
