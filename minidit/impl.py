"""Run minidit on a student's code: every graded function and method dispatches to their version.

One switch for the notebooks, Python and the command lines::

    minidit.use_impl("exercises")             # your exercises/chNN_*.py, every chapter
    minidit.use_impl("exercises:ch01-ch05")   # your chapters 1-5, minidit's reference for the rest
    minidit.use_impl("minidit")               # off: the reference everywhere again
    MINIDIT_IMPL=exercises:ch01-ch06 jupyter lab            # the same, read by ``import minidit``
    python -m minidit.train --impl exercises:ch01-ch06      # and by the trainer and the sampler

A spec is ``NAME[:CHAPTERS]``. NAME is ``minidit`` (or ``reference``: the package itself, the
switch off), ``exercises`` or ``solutions`` (the folders of this repository) or a folder path;
CHAPTERS is a comma list of chapters and ranges (``ch01-ch04,ch06``), all chapters by default.
The grader (``pytest --impl=...``, tests/conftest.py) reads the same specs with ``parse_impl``.

How it works (and why it costs nothing when off): the graded items are found from the
``# BEGIN SOLUTION`` markers (``minidit.graded``). ``use_impl`` loads the chosen files afresh and
then, for each item,

* a function: every reference to minidit's function object in the globals of every loaded
  ``minidit`` module and of the loaded student files (and one level into dict-valued globals,
  like a registry) is replaced by the student's function -- so the student's chapter-6 loss
  calls their own chapter-1 ``noisy_sample`` when chapter 1 is in use too;
* a method: the student's function is set on minidit's class (``DiT.forward``), so every model
  built anywhere uses it.

Every change is recorded and undone by the next ``use_impl`` (``"minidit"`` restores the
package exactly). Nothing is wrapped: without the switch the package runs its own code, and with
it the student's functions are called directly.

An untouched stub raises ``NotImplementedError("EXERCISE ...")`` when it runs; ``explain`` turns
that into the one line the command lines print: which exercise, which file, and the ``--impl``
that keeps minidit's reference for that chapter.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from minidit.chapters import CHAPTERS, chapter_number, chapter_stem, notebook_path
from minidit.graded import STUB_PREFIX, Item, graded_items, unfinished

ROOT = Path(__file__).resolve().parents[1]  # the repository, when minidit runs from a clone
REFERENCE_NAMES = ("minidit", "reference")
CHAPTER_LIST = re.compile(r"^(ch)?\d+(-(ch)?\d+)?(,(ch)?\d+(-(ch)?\d+)?)*$", re.IGNORECASE)
_MISSING = object()


class ImplError(ValueError):
    """A spec, or a student's file, that the switch cannot use; the message is one line."""


@dataclass(frozen=True)
class ImplSpec:
    """A parsed spec: which folder (None: minidit's reference) for which chapters."""

    name: str  # "exercises", "solutions", "minidit" or the folder as given
    folder: Path | None
    chapters: tuple[int, ...]

    @property
    def is_reference(self) -> bool:
        return self.folder is None

    def file(self, chapter: int) -> Path:
        return self.folder / f"{chapter_stem(chapter)}.py"

    def __str__(self) -> str:
        if self.is_reference:
            return "minidit"
        every = tuple(ch for ch in CHAPTERS if (self.folder / f"{chapter_stem(ch)}.py").is_file())
        return self.name if self.chapters == every else f"{self.name}:{format_chapters(self.chapters)}"


def parse_chapters(text: str) -> tuple[int, ...]:
    """``"ch01-ch04,ch06"`` -> ``(1, 2, 3, 4, 6)``; an unknown chapter or a backwards range is an error."""
    chapters: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        try:
            a, b = chapter_number(lo), chapter_number(hi or lo)
        except ValueError as e:
            raise ImplError(f"{e} (in {text!r})") from None
        if b < a:
            raise ImplError(f"chapter range {part!r} runs backwards; write ch{b:02d}-ch{a:02d}")
        chapters.update(range(a, b + 1))
    return tuple(sorted(chapters))


def format_chapters(chapters) -> str:
    """``(1, 2, 3, 4, 6)`` -> ``"ch01-ch04,ch06"``."""
    runs: list[list[int]] = []
    for ch in sorted(chapters):
        if runs and ch == runs[-1][1] + 1:
            runs[-1][1] = ch
        else:
            runs.append([ch, ch])
    return ",".join(f"ch{a:02d}" if a == b else f"ch{a:02d}-ch{b:02d}" for a, b in runs)


def parse_impl(spec: str, root: Path = ROOT) -> ImplSpec:
    """Read a spec (``exercises:ch01-ch05``, ``solutions``, ``/my/copy:ch03``, ``minidit``).

    Chapters not given: every chapter that has a file in the folder. Given: each must have one.
    """
    if isinstance(spec, ImplSpec):
        return spec
    text = str(spec).strip()
    name, sep, chapters_text = text.rpartition(":")
    if not sep or not CHAPTER_LIST.match(chapters_text) or not name:
        name, chapters_text = text, ""
    if not name:
        raise ImplError("empty --impl; use minidit, exercises, solutions or a folder, optionally with "
                        "chapters such as exercises:ch01-ch05")
    if name.lower() in REFERENCE_NAMES:
        if chapters_text:
            raise ImplError(f"{text!r}: minidit's reference needs no chapters; to mix, name your folder "
                            f"and its chapters, e.g. exercises:{chapters_text}")
        return ImplSpec("minidit", None, ())
    folder = root / name if name in ("exercises", "solutions") else Path(name).expanduser()
    if not folder.is_dir():
        raise ImplError(f"--impl {text}: there is no folder {folder}; use minidit, exercises, solutions "
                        f"or the path of a folder holding chNN_*.py files")
    folder = folder.resolve()
    if chapters_text:
        chapters = parse_chapters(chapters_text)
        missing = [chapter_stem(ch) + ".py" for ch in chapters if not (folder / f"{chapter_stem(ch)}.py").is_file()]
        if missing:
            raise ImplError(f"--impl {text}: {folder} has no {', '.join(missing)}")
    else:
        chapters = tuple(ch for ch in CHAPTERS if (folder / f"{chapter_stem(ch)}.py").is_file())
        if not chapters:
            raise ImplError(f"--impl {text}: {folder} holds no chapter files (chNN_<topic>.py)")
    return ImplSpec(name, folder, chapters)


def load_file(path: Path, tag: str = "impl"):
    """Execute ``path`` as a fresh module (never a cached copy) registered in ``sys.modules``."""
    safe = re.sub(r"\W", "_", str(path.parent))[-40:]
    name = f"_minidit_{tag}_{safe}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look their module up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _short(path: Path) -> str:
    for base in (Path.cwd(), ROOT):
        try:
            return str(path.relative_to(base))
        except ValueError:
            pass
    return str(path)


def _owner_and_name(module, qualname: str):
    """``(namespace, attribute)`` holding an item: ``(module, "patchify")`` or ``(DiT class, "forward")``."""
    *outer, last = qualname.split(".")
    owner = module
    for part in outer:
        owner = getattr(owner, part, None)
        if owner is None:
            return None, last
    return owner, last


class Switch:
    """The active switch: what it changed (to undo it) and which items are still stubs.

    Also a context manager: ``with minidit.use_impl("exercises"):`` puts back what ran before.
    """

    def __init__(self, spec: ImplSpec, previous: "Switch | None"):
        self.spec, self.previous = spec, previous
        self.items: list[Item] = []
        self.stubs: list[Item] = []  # untouched stubs in the chosen files
        self.kept_reference: list[Item] = []  # stubs for which minidit's reference stays
        self.modules: dict[int, object] = {}
        self._stubbed: dict[int, set[str]] = {}  # chapter -> qualnames still holding their stub
        self._undo: list[tuple] = []
        self._back: dict[int, tuple] = {}  # id(new) -> (new, reference): for modules imported later

    # -------------------------------------------------------------- apply and undo
    def apply(self, on_stub: str) -> None:
        chapters = set(self.spec.chapters)
        items = [it for it in graded_items() if it.chapter in chapters]
        swap: dict[int, tuple[object, object]] = {}  # id(old) -> (old, new) for functions
        methods: list[tuple[type, str, object]] = []
        fallback: set[int] = set()  # ids of minidit's functions standing in for unfinished ones
        for ch in sorted(chapters):
            self.modules[ch] = self._load(ch)
        for it in items:
            ref_owner, attr = _owner_and_name(importlib.import_module(it.module), it.qualname)
            reference = ref_owner.__dict__[attr] if it.is_method else getattr(ref_owner, attr)
            mine_owner, _ = _owner_and_name(self.modules[it.chapter], it.qualname)
            mine = (mine_owner.__dict__.get(attr) if isinstance(mine_owner, type) else getattr(mine_owner, attr, None)) \
                if mine_owner is not None else None
            path = self.spec.file(it.chapter)
            if mine is None:
                raise ImplError(f"{_short(path)} has no {it.qualname}; put it back (minidit's "
                                f"{it.module}.{it.qualname} shows the signature)")
            self.items.append(it)
            if it.qualname in self._stubbed[it.chapter]:
                self.stubs.append(it)
                if on_stub == "reference":
                    self.kept_reference.append(it)
                    if not it.is_method:
                        swap[id(mine)] = (mine, reference)  # the student's own files call minidit's
                        fallback.add(id(reference))
                    continue
            if it.is_method:
                if "__class__" in getattr(getattr(mine, "__code__", None), "co_freevars", ()):
                    raise ImplError(f"{_short(path)}: {it.qualname} calls super() without arguments, which "
                                    f"cannot work once it runs on minidit's class; call what you need directly")
                methods.append((ref_owner, attr, mine))
            else:
                swap[id(reference)] = (reference, mine)
        for cls, attr, new in methods:
            self._undo.append(("attr", cls, attr, cls.__dict__.get(attr, _MISSING)))
            setattr(cls, attr, new)
        self._replace(swap, list(self.modules.values()))
        # what a module imported from now on may copy: the student's functions, to be put back
        self._back = {id(new): (new, old) for old, new in swap.values() if id(new) not in fallback}

    def _load(self, chapter: int):
        path = self.spec.file(chapter)
        try:
            source = path.read_text()
            tree = ast.parse(source, filename=str(path))
            module = load_file(path)
        except SyntaxError as e:
            raise ImplError(f"{_short(path)}, line {e.lineno}: SyntaxError: {e.msg}") from None
        except Exception as e:  # the student's file fails while loading: say where, in one line
            raise ImplError(f"{_short(path)} fails to load: {type(e).__name__}: {e}") from None
        names = [it.qualname for it in graded_items() if it.chapter == chapter]
        self._stubbed[chapter] = set(unfinished(tree, names))
        return module

    def _replace(self, swap: dict, extra_modules: list) -> None:
        """Swap function objects by identity in module globals (and dicts one level down)."""
        if not swap:
            return
        for module in [m for n, m in list(sys.modules.items()) if n == "minidit" or n.startswith("minidit.")] \
                + extra_modules:
            namespace = getattr(module, "__dict__", None)
            if namespace is None:
                continue
            for key, value in list(namespace.items()):
                hit = swap.get(id(value))
                if hit is not None and hit[0] is value:
                    self._undo.append(("item", namespace, key, value))
                    namespace[key] = hit[1]
                elif type(value) is dict and key != "__builtins__":
                    for k, v in list(value.items()):
                        hit = swap.get(id(v))
                        if hit is not None and hit[0] is v:
                            self._undo.append(("item", value, k, v))
                            value[k] = hit[1]

    def undo(self) -> None:
        for kind, target, key, old in reversed(self._undo):
            if kind == "attr":
                if old is _MISSING:
                    delattr(target, key)
                else:
                    setattr(target, key, old)
            else:
                target[key] = old
        # modules imported while the switch was on copied the student's functions: put them back
        leftovers, self._back = self._back, {}
        self._replace(leftovers, [])
        self._undo.clear()
        for module in self.modules.values():
            sys.modules.pop(module.__name__, None)

    # -------------------------------------------------------------- reporting
    def summary(self) -> str:
        where = _short(self.spec.folder)
        line = (f"minidit: using {where}/ for {format_chapters(self.spec.chapters)} "
                f"({len(self.items)} graded functions); minidit's reference for the rest")
        if self.stubs:
            names = "; ".join(_stub_names(self.stubs, self.items))
            if self.kept_reference:
                line += f"\nminidit: not done yet, so minidit's reference runs instead: {names}"
            else:
                line += f"\nminidit: not done yet (running one stops with a message): {names}"
        return line

    # -------------------------------------------------------------- context manager
    def __enter__(self) -> "Switch":
        return self

    def __exit__(self, *exc) -> None:
        restore_impl(self.previous)


def _stub_names(stubs: list[Item], items: list[Item]) -> list[str]:
    """``["ch01 (all 4)", "ch03: patchify, Attention.forward"]``: the unfinished items, per chapter."""
    out = []
    for ch in sorted({it.chapter for it in stubs}):
        mine = [it.qualname for it in stubs if it.chapter == ch]
        total = sum(it.chapter == ch for it in items)
        out.append(f"ch{ch:02d} (all {total})" if len(mine) == total else f"ch{ch:02d}: {', '.join(mine)}")
    return out


_ACTIVE: Switch | None = None
_LAST: ImplSpec | None = None  # the latest student code switched on (``explain`` after a ``with`` block)


def active_impl() -> ImplSpec | None:
    """The spec in use (None when minidit runs its own code)."""
    return _ACTIVE.spec if _ACTIVE is not None else None


def use_impl(spec: str | ImplSpec = "exercises", on_stub: str = "raise", verbose: bool = True) -> Switch | None:
    """Run minidit on the code named by ``spec`` (see the module docstring); returns the switch.

    ``on_stub``: what an untouched stub does -- ``"raise"`` (stop with a message when it runs; the
    command lines) or ``"reference"`` (minidit's reference runs in its place; the capstone).
    ``verbose`` prints which folder and chapters are in use and which exercises are unfinished.
    Use it as a context manager to put back what ran before; ``use_impl("minidit")`` switches off.
    """
    global _ACTIVE, _LAST
    if on_stub not in ("raise", "reference"):
        raise ValueError(f"on_stub must be 'raise' or 'reference', got {on_stub!r}")
    parsed = parse_impl(spec)
    previous = _ACTIVE
    if _ACTIVE is not None:
        _ACTIVE.undo()
        _ACTIVE = None
    if parsed.is_reference:
        return Switch(parsed, previous)
    switch = Switch(parsed, previous)
    try:
        switch.apply(on_stub)
    except BaseException:
        switch.undo()
        raise
    _ACTIVE, _LAST = switch, parsed
    if verbose and os.environ.get("RANK", "0") == "0":
        print(switch.summary(), flush=True)
    return switch


def restore_impl(switch: Switch | None) -> None:
    """Put back the state of ``switch`` (None: minidit's reference), e.g. after a ``with`` block."""
    global _ACTIVE
    if _ACTIVE is not None:
        _ACTIVE.undo()
        _ACTIVE = None
    if switch is not None and not switch.spec.is_reference:
        use_impl(switch.spec, on_stub="reference" if switch.kept_reference else "raise", verbose=False)


def explain(error: BaseException) -> str | None:
    """The one line for an untouched stub that ran (None for any other error).

    ``EXERCISE ch05.DiT.forward is not done yet: write it in exercises/ch05_dit.py
    (notebooks/05_dit.ipynb explains it), or keep minidit's reference for chapter 5 with
    --impl exercises:ch01-ch04,ch06-ch13 (MINIDIT_IMPL=... in notebooks)``
    """
    text = str(error)
    m = re.match(rf"{STUB_PREFIX} ch(\d+)\.([\w.]+)", text)
    if not isinstance(error, NotImplementedError) or m is None:
        return None
    chapter, name = int(m.group(1)), m.group(2)
    spec = active_impl() or _LAST
    if spec is None or chapter not in spec.chapters:
        return text.splitlines()[0] if text else None
    rest = [ch for ch in spec.chapters if ch != chapter]
    keep = f"{spec.name}:{format_chapters(rest)}" if rest else "minidit"
    return (f"EXERCISE ch{chapter:02d}.{name} is not done yet: write it in {_short(spec.file(chapter))} "
            f"({notebook_path(chapter)} explains it), or keep minidit's reference for chapter {chapter} "
            f"with --impl {keep} (MINIDIT_IMPL={keep} in notebooks)")
