"""The graded exercises inside minidit: found by reading the package's source, never by importing it.

A graded piece of code is marked in the package itself::

    def patchify(x, patch_size):
        \"\"\"...the specification...\"\"\"
        # BEGIN SOLUTION ch03 difficulty=1 minutes=15
        ...the reference answer...
        # END SOLUTION

The innermost function holding the marker is the *item* (``patchify``, or ``DiT.forward`` for a
method); the top-level function or class around it is what the chapter's exercise file holds.
``difficulty`` (1 easy, 2 medium, 3 hard) and ``minutes`` (a time estimate) are shown by
``tools/make_exercises.py --list`` and the notebooks.

Two readers share this module: ``tools/make_exercises.py`` (which writes ``exercises/`` and
``solutions/``) and ``minidit.impl`` (which runs the package on a student's files). It also
knows what an untouched stub looks like, so neither of them mistakes a student's work for one.
"""
from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

from minidit.chapters import CHAPTERS

PACKAGE = Path(__file__).resolve().parent
BEGIN = re.compile(r"^(\s*)# BEGIN SOLUTION ch(\d+)((?:\s+[a-z_]+=\S+)*)\s*$")
END = re.compile(r"^\s*# END SOLUTION\s*$")
STUB_PREFIX = "EXERCISE"  # every stub raises NotImplementedError("EXERCISE chNN.<item> ...")
DIFFICULTY = {1: "easy", 2: "medium", 3: "hard"}
# a class longer than this is emitted as a subclass of minidit's class holding only its graded
# methods (DiT, GaussianDiffusion): the exercise file stays short and the rest is inherited
SUBCLASS_LINES = 60


@dataclass(frozen=True)
class Item:
    """One graded function or method: ``ch05.DiT.forward``."""

    chapter: int
    module: str  # the module that defines it: "minidit.models.dit"
    qualname: str  # "DiT.forward"; a top-level function's qualname is its name
    difficulty: int
    minutes: int
    line: int  # of its BEGIN marker, in the package's source

    @property
    def top(self) -> str:
        """The top-level name the exercise file defines (``DiT`` for ``DiT.forward``)."""
        return self.qualname.split(".")[0]

    @property
    def is_method(self) -> bool:
        return "." in self.qualname

    @property
    def label(self) -> str:
        return f"ch{self.chapter:02d}.{self.qualname}"

    @property
    def level(self) -> str:
        """``medium, ~30 min``: what the notebooks and ``--list`` show."""
        return f"{DIFFICULTY[self.difficulty]}, ~{self.minutes} min"


@dataclass
class TopLevel:
    """A top-level function or class of the package that holds graded items (one chapter)."""

    path: Path
    module: str
    node: ast.AST
    lines: list[str]  # the whole source file's lines
    chapter: int
    items: list[Item] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def as_subclass(self) -> bool:
        """Emit only the graded methods, in a subclass of minidit's class (see ``SUBCLASS_LINES``)."""
        return (isinstance(self.node, ast.ClassDef) and all(i.is_method for i in self.items)
                and self.node.end_lineno - self.node.lineno + 1 > SUBCLASS_LINES)


def module_name(path: Path) -> str:
    """``minidit/models/dit.py`` -> ``minidit.models.dit`` (a package's ``__init__`` -> the package)."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def innermost_def(node: ast.AST, line: int) -> str:
    """Qualified name of the innermost def/class (``node`` itself or inside it) containing ``line``."""
    name = []
    while True:
        name.append(node.name)
        inner = [c for c in ast.iter_child_nodes(node)
                 if isinstance(c, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                 and c.lineno <= line <= c.end_lineno]
        if not inner:
            return ".".join(name)
        node = inner[0]


def _metadata(text: str, where: str) -> tuple[int, int]:
    meta = dict(kv.split("=", 1) for kv in text.split())
    try:
        difficulty, minutes = int(meta.pop("difficulty")), int(meta.pop("minutes"))
    except (KeyError, ValueError):
        raise ValueError(f"{where}: the BEGIN SOLUTION marker needs difficulty=1..3 minutes=N, "
                         f"e.g. '# BEGIN SOLUTION ch03 difficulty=2 minutes=20'") from None
    if meta or difficulty not in DIFFICULTY or minutes < 1:
        raise ValueError(f"{where}: bad marker metadata {text.strip()!r}; use difficulty=1..3 minutes=N")
    return difficulty, minutes


def scan_file(path: Path) -> list[TopLevel]:
    """The graded top-level nodes of one source file, with their items, in source order."""
    text = path.read_text()
    if "# BEGIN SOLUTION" not in text:
        return []
    lines, tree, module = text.splitlines(), ast.parse(text), module_name(path)
    found = []
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        items: dict[str, Item] = {}
        for i in range(node.lineno - 1, node.end_lineno):
            m = BEGIN.match(lines[i])
            if not m:
                continue
            where = f"{path}:{i + 1}"
            chapter, qualname = int(m.group(2)), innermost_def(node, i + 1)
            if chapter not in CHAPTERS:
                raise ValueError(f"{where}: unknown chapter ch{chapter:02d}")
            if qualname in items:  # a second region in the same function: metadata optional
                continue
            items[qualname] = Item(chapter, module, qualname, *_metadata(m.group(3), where), line=i + 1)
        if not items:
            continue
        chapters = {it.chapter for it in items.values()}
        if len(chapters) > 1:
            raise ValueError(f"{path}:{node.lineno}: {node.name} has markers for chapters "
                             f"{sorted(chapters)}; use one chapter per function/class")
        found.append(TopLevel(path, module, node, lines, chapters.pop(), list(items.values())))
    return found


def scan(package: Path = PACKAGE) -> dict[int, list[TopLevel]]:
    """Every graded top-level node of the package, grouped by chapter, easy ones first (then in
    the order of the files and of the source)."""
    by_chapter: dict[int, list[TopLevel]] = {}
    for path in sorted(package.rglob("*.py")):
        for top in scan_file(path):
            by_chapter.setdefault(top.chapter, []).append(top)
    return {ch: sorted(tops, key=lambda t: min(it.difficulty for it in t.items)) for ch, tops in by_chapter.items()}


@functools.lru_cache(maxsize=4)
def _items(package: Path) -> tuple[Item, ...]:
    return tuple(it for ch, tops in sorted(scan(package).items()) for top in tops for it in top.items)


def graded_items(package: Path = PACKAGE) -> list[Item]:
    """Every graded item, chapter by chapter (read once per process: the package does not change)."""
    return list(_items(package))


# ------------------------------------------------------------------ stubs and students' edits

def is_stub_raise(node: ast.AST) -> bool:
    """``raise NotImplementedError("EXERCISE ...")``: the line a stub holds where the answer goes."""
    if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
        return False
    call = node.exc
    return (isinstance(call.func, ast.Name) and call.func.id == "NotImplementedError" and call.args
            and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str)
            and call.args[0].value.startswith(STUB_PREFIX))


def find_def(tree: ast.Module, qualname: str) -> ast.AST | None:
    """The def or class ``A.b`` at the top of ``tree`` (the last one of that name, as Python keeps), or None."""
    body, node = tree.body, None
    for part in qualname.split("."):
        node = next((n for n in reversed(body) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                     and n.name == part), None)
        if node is None:
            return None
        body = node.body
    return node


def unfinished(tree: ast.Module, qualnames) -> list[str]:
    """Those of ``qualnames`` whose def in ``tree`` still holds its stub (or is missing)."""
    out = []
    for q in qualnames:
        node = find_def(tree, q)
        if node is None or any(is_stub_raise(n) for n in ast.walk(node)):
            out.append(q)
    return out


class _Normalise(ast.NodeTransformer):
    """Drop docstrings, and make every stub raise the same: what remains is code a person wrote."""

    def _strip_docstring(self, node):
        self.generic_visit(node)
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = visit_Module = _strip_docstring

    def visit_Raise(self, node):
        if is_stub_raise(node):
            node.exc.args = [ast.Constant(STUB_PREFIX)]
        return node


def _normalised(tree: ast.Module) -> dict[str, str]:
    """Top-level statement name (or position) -> its normalised dump; imports are left out."""
    tree = _Normalise().visit(tree)
    out = {}
    for i, node in enumerate(tree.body):
        if isinstance(node, (ast.Import, ast.ImportFrom)) or \
                (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
            continue
        out[getattr(node, "name", f"statement {i}")] = ast.dump(node)
    return out


def edits(existing: str, stub: str) -> list[str]:
    """What a person changed in an exercise file compared with the generated ``stub`` text.

    Comments, docstrings, imports and the wording of stub messages do not count; any other
    difference does (an answer, a started answer, a helper function). Returns the changed
    top-level names (``["DiT", "patchify"]``), ``["(the file does not parse)"]``, or ``[]``
    for an untouched file.
    """
    try:
        mine = _normalised(ast.parse(existing))
    except SyntaxError:
        return ["(the file does not parse)"]
    theirs = _normalised(ast.parse(stub))
    # only what the file holds counts: a def the stub has and the file lacks is a new exercise
    return [name for name in mine if mine[name] != theirs.get(name)]
