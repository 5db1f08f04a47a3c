"""Shared test setup: the grading switch (--impl), chapter markers, seeding, and reports that teach.

``--impl`` picks whose code the exercise tests grade; it takes the same specs as
``minidit.use_impl`` and ``python -m minidit.train --impl`` (one parser, ``minidit.impl.parse_impl``):

* ``solutions`` (default; ``minidit`` means the same here): the reference answers in ``solutions/``;
  everything must pass.
* ``exercises``: the student's files in ``exercises/``. An exercise that still raises its
  ``NotImplementedError("EXERCISE ...")`` stub is reported as *skipped* with a message that
  names the exercise and the file -- never as a failure or an error.
* a folder path: a copy of either (the grading tests use this to check that a wrong answer
  fails with a helpful message).
* any of them with chapters, ``exercises:ch01-ch04``: those chapters from the folder, the rest
  from ``solutions/``.

For anything but ``solutions`` a failure is reported briefly: the student's own lines, the error
and a one-line diagnosis, or the grader's message saying what was expected on which input --
without the frames of the grading code.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from minidit.chapters import CHAPTERS, chapter_number, chapter_stem  # noqa: E402  (after ROOT is importable)
from minidit.experiments import measure  # noqa: E402
from minidit.impl import ImplError, ImplSpec, load_file, parse_impl  # noqa: E402
from minidit.notebook import diagnose  # noqa: E402


def pytest_addoption(parser):
    parser.addoption("--impl", default="solutions",
                     help="whose exercise answers to grade: solutions (default), exercises, or a folder; "
                          "optionally with chapters, e.g. exercises:ch01-ch04")


def pytest_configure(config):
    for ch, (_, title) in CHAPTERS.items():
        config.addinivalue_line("markers", f"ch{ch}: exercises of chapter {ch} ({title})")


def graded_spec(config) -> ImplSpec:
    """The ``--impl`` spec; minidit's reference is graded through ``solutions/``."""
    try:
        spec = parse_impl(config.getoption("--impl"), root=ROOT)
    except ImplError as e:
        raise pytest.UsageError(str(e)) from None
    return parse_impl("solutions", root=ROOT) if spec.is_reference else spec


def _is_solutions(config) -> bool:
    spec = graded_spec(config)
    return spec.folder == (ROOT / "solutions").resolve()


_loaded: dict[Path, object] = {}


@pytest.fixture(scope="session")
def impl(request):
    """``impl("ch03")`` returns the chapter-3 module of the implementation being graded."""
    spec = graded_spec(request.config)

    def load(chapter: str):
        ch = chapter_number(chapter)
        folder = spec.folder if ch in spec.chapters else ROOT / "solutions"
        path = folder / f"{chapter_stem(ch)}.py"
        if not path.is_file():
            raise FileNotFoundError(f"no {path.name} in {folder}; the repository's exercises/ has a fresh copy")
        if path not in _loaded:
            _loaded[path] = load_file(path, tag="graded")
        return _loaded[path]

    return load


def _student_lines(excinfo, folder: Path) -> list[str]:
    """Where the error passed through the student's files: ``file:line in name`` and the line."""
    out = []
    for entry in excinfo.traceback:
        path = Path(str(entry.path)).resolve()
        if path.is_relative_to(folder):
            try:
                shown = path.relative_to(Path.cwd())
            except ValueError:
                shown = path
            out.append(f"{shown}:{entry.lineno + 1} in {entry.name}\n    {str(entry.statement).strip()}")
    return out[-3:]


def brief_report(excinfo, folder: Path) -> str:
    """A failure as a student should see it: their lines, the error, a diagnosis; no grader frames."""
    error = excinfo.value
    if isinstance(error, pytest.fail.Exception):  # the grader's own message: what differs, on which input
        return str(error)
    lines = _student_lines(excinfo, folder)
    if not lines:  # the error came up in the check itself, on what the student's code returned
        last = excinfo.traceback[-1]
        lines = [f"while checking what your code returned ({Path(str(last.path)).name}:{last.lineno + 1}):\n"
                 f"    {str(last.statement).strip()}"]
    lines.append(f"{type(error).__name__}: {error}")
    hint = diagnose(error)
    if hint:
        lines.append(f"diagnosis: {hint}")
    return "\n".join(lines)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """For a student's code: an untouched stub is a skip that says what to do; a failure is brief."""
    outcome = yield
    report = outcome.get_result()
    exc = call.excinfo
    if exc is None or "impl" not in getattr(item, "fixturenames", ()) or _is_solutions(item.config):
        return
    if exc.errisinstance(NotImplementedError) and str(exc.value).startswith("EXERCISE"):
        report.outcome = "skipped"
        report.longrepr = (str(item.path), item.location[1] or 0, f"Skipped: {exc.value}")
    elif report.failed:
        report.longrepr = brief_report(exc, graded_spec(item.config).folder)


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same RNG state, so failures reproduce."""
    torch.manual_seed(0)
    yield


@pytest.fixture
def pixel_features(monkeypatch):
    """For the experiment tests: FID on flattened pixels, deterministic, instant, no classifier.
    One thread: these models are tiny, and on a shared machine a second thread mostly waits (as
    the scripts' --threads 1)."""
    monkeypatch.setattr(measure, "classify", lambda images, dataset, batch_size=1000: (
        images.float().flatten(1), torch.zeros(len(images), 10)))
    measure.real_features.cache_clear()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    measure.real_features.cache_clear()
