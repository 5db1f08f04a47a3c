"""Shared test setup: the grading switch (--impl), chapter markers, and seeding.

``--impl`` picks whose code the exercise tests grade:

* ``solutions`` (default): the reference answers in ``solutions/``; everything must pass.
* ``exercises``: the student's files in ``exercises/``. An exercise that still raises its
  ``NotImplementedError("EXERCISE ...")`` stub is reported as *skipped* with a message that
  names the exercise and the file -- never as a failure or an error.
* a directory path: a copy of either (the grading tests use this to check that a wrong answer
  fails with a helpful message).
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from minidit.chapters import CHAPTERS, chapter_stem  # noqa: E402  (after ROOT is importable)


def pytest_addoption(parser):
    parser.addoption("--impl", default="solutions",
                     help="whose exercise answers to grade: solutions (default), exercises, or a directory")


def pytest_configure(config):
    for ch, (_, title) in CHAPTERS.items():
        config.addinivalue_line("markers", f"ch{ch}: exercises of chapter {ch} ({title})")


def _impl_dir(config) -> Path:
    which = config.getoption("--impl")
    path = ROOT / which if which in ("solutions", "exercises") else Path(which).resolve()
    if not path.is_dir():
        raise pytest.UsageError(f"--impl={which}: no such directory {path}")
    return path


_loaded: dict[Path, object] = {}


@pytest.fixture(scope="session")
def impl(request):
    """``impl("ch03")`` returns the chapter-3 module of the implementation being graded."""
    base = _impl_dir(request.config)

    def load(chapter: str):
        path = base / f"{chapter_stem(chapter)}.py"
        if not path.is_file():
            raise FileNotFoundError(f"no {path.name} in {base}; run python tools/make_exercises.py")
        if path not in _loaded:
            name = f"_graded_{abs(hash(str(base)))}_{path.stem}"
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
            _loaded[path] = module
        return _loaded[path]

    return load


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With --impl=exercises, an untouched exercise stub is a skip that says what to do."""
    outcome = yield
    report = outcome.get_result()
    exc = call.excinfo
    if (exc is not None and item.config.getoption("--impl") != "solutions"
            and exc.errisinstance(NotImplementedError) and str(exc.value).startswith("EXERCISE")):
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, f"Skipped: {exc.value}")


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same RNG state, so failures reproduce."""
    torch.manual_seed(0)
    yield
