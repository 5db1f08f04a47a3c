"""Generate ``exercises/`` and ``solutions/`` from the graded code in ``minidit/``.

There is one source of truth: the finished package. A graded piece of code is a top-level
function or class in ``minidit/`` whose body holds a marked region::

    def patchify(x, p):
        \"\"\"...\"\"\"
        # BEGIN SOLUTION ch03
        ...the reference answer...
        # END SOLUTION

For every chapter this script writes two files with the same name:

* ``solutions/chNN_<topic>.py`` -- the graded functions and classes, bodies kept;
* ``exercises/chNN_<topic>.py`` -- the same, each marked region replaced by
  ``raise NotImplementedError("EXERCISE chNN.<name> ...")`` that says what to do and where.

Each file starts with the imports its code uses -- taken from the modules the code came from,
plus an import from ``minidit`` of every other module-level name the code uses -- so a student's
file uses the finished package for everything outside the chapter's own exercises (one bug does
not cascade). An exercise file, whose marked regions are stubs, imports only what is left.
The chapters (numbers, file stems, titles) come from ``minidit/chapters.py``.

Usage::

    python tools/make_exercises.py          # (re)write exercises/ and solutions/
    python tools/make_exercises.py --check  # exit 1 if either is stale (CI runs this)
    python tools/make_exercises.py --list   # print the exercises, chapter by chapter

Running it overwrites ``exercises/``: students keep their work in their own copy.
"""
from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "minidit"
sys.path.insert(0, str(ROOT))  # this checkout's minidit, whatever else is installed

from minidit.chapters import CHAPTERS, chapter_stem, notebook_path  # noqa: E402

BEGIN = re.compile(r"^(\s*)# BEGIN SOLUTION ch(\d+)\s*$")
END = re.compile(r"^\s*# END SOLUTION\s*$")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def module_of(node: ast.ImportFrom, mod: str, is_pkg: bool) -> str:
    """The absolute module of ``from .x import y`` written in module ``mod``."""
    if node.level == 0:
        return node.module
    base = mod.split(".")
    if not is_pkg:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_bindings(node: ast.stmt, mod: str, is_pkg: bool) -> list[tuple[str, str]]:
    """``(bound name, import statement)`` for every name a top-level import binds, one statement each.

    ``import torch.nn as nn`` binds ``nn``; ``import os.path`` binds ``os``; relative imports
    become absolute (``from .x import y`` in minidit/models/dit.py: ``from minidit.models.x import y``).
    """
    if isinstance(node, ast.Import):
        return [(a.asname or a.name.split(".")[0], f"import {a.name}" + (f" as {a.asname}" if a.asname else ""))
                for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.module != "__future__":
        target = module_of(node, mod, is_pkg)
        return [(a.asname or a.name, f"from {target} import {a.name}" + (f" as {a.asname}" if a.asname else ""))
                for a in node.names]
    return []


def names_used(code: str) -> set[str]:
    """The free names ``code`` reads: ``np.asarray`` reads ``np``; annotations and defaults count,
    a function's parameters and local variables do not (they need no import)."""
    free: set[str] = set()

    def bound_in(fn) -> set[str]:
        a = fn.args
        names = {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs + [a.vararg, a.kwarg] if x}
        for n in ast.walk(fn):
            if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
                names.add(n.id)
            elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n is not fn:
                names.add(n.name)
            elif isinstance(n, ast.alias):
                names.add(n.asname or n.name.split(".")[0])
        return names

    def visit(node: ast.AST, scope: set[str]) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            # decorators, defaults and annotations belong to the enclosing scope, the body to the function's
            outer = [node.args, *getattr(node, "decorator_list", []), getattr(node, "returns", None)]
            for child in filter(None, outer):
                visit(child, scope)
            inner = scope | bound_in(node)
            for child in (node.body if isinstance(node.body, list) else [node.body]):
                visit(child, inner)
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in scope:
            free.add(node.id)
        for child in ast.iter_child_nodes(node):
            visit(child, scope)

    visit(ast.parse(code), set())
    return free


def merge_imports(statements: list[str]) -> list[str]:
    """Standard library, then third party, then minidit (each sorted by module), with
    ``from m import a`` + ``from m import b`` merged into ``from m import a, b``."""
    merged: dict[str, list[str]] = {}
    for st in statements:
        key, _, name = st.partition(" import ") if st.startswith("from ") else (st, "", "")
        merged.setdefault(key, [])
        if name and name not in merged[key]:
            merged[key].append(name)

    def order(key: str) -> tuple[int, str]:
        module = key.split()[1]
        top = module.split(".")[0]
        return (0 if top in sys.stdlib_module_names else 2 if top == "minidit" else 1, module)

    return [f"{key} import {', '.join(names)}" if names else key for key, names in sorted(merged.items(),
                                                                                         key=lambda kv: order(kv[0]))]


def innermost_def(tree_node: ast.AST, line: int) -> str:
    """Qualified name of the innermost def/class (inside ``tree_node``) that contains ``line``."""
    name = []
    node = tree_node
    while True:
        name.append(node.name)
        inner = [c for c in ast.iter_child_nodes(node)
                 if isinstance(c, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                 and c.lineno <= line <= c.end_lineno]
        if not inner:
            return ".".join(name)
        node = inner[0]


class Graded:
    """One graded top-level function or class, with its source and where it came from."""

    def __init__(self, path, mod, node, lines, chapter, bindings, module_names):
        self.path, self.mod, self.node, self.chapter = path, mod, node, chapter
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        self.lines = lines[start - 1: node.end_lineno]
        self.first = start
        self.bindings = bindings  # name -> import statement, from the source module's top level
        self.module_names = module_names  # the source module's own top-level definitions
        self.name = node.name

    def render(self, exercise: bool) -> str:
        out, inside = [], False
        for offset, text in enumerate(self.lines):
            m = BEGIN.match(text)
            if m:
                inside = True
                if exercise:
                    where = innermost_def(self.node, self.first + offset)
                    stem = chapter_stem(self.chapter)
                    nb = notebook_path(self.chapter)
                    msg = (f"EXERCISE ch{self.chapter:02d}.{where} is not done yet: write it in "
                           f"exercises/{stem}.py (chapter {self.chapter}, "
                           f"{CHAPTERS[self.chapter][1]}; {nb} explains it), then run "
                           f"pytest -m ch{self.chapter} --impl=exercises")
                    out.append(f"{m.group(1)}raise NotImplementedError(\n{m.group(1)}    {msg!r})")
                continue
            if END.match(text):
                inside = False
                continue
            if inside and exercise:
                continue
            out.append(text)
        return "\n".join(out)


def scan():
    """Find every graded top-level node in minidit/, grouped by chapter."""
    by_chapter: dict[int, list[Graded]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        if "# BEGIN SOLUTION" not in text:
            continue
        lines = text.splitlines()
        tree = ast.parse(text)
        mod, is_pkg = module_name(path), path.name == "__init__.py"
        bindings: dict[str, str] = {}
        module_names = set()
        for node in tree.body:
            bindings.update(import_bindings(node, mod, is_pkg))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                module_names.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                module_names |= {t.id for t in targets if isinstance(t, ast.Name)}
        for node in tree.body:
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            chapters = set()
            for i in range(node.lineno - 1, node.end_lineno):
                m = BEGIN.match(lines[i])
                if m:
                    chapters.add(int(m.group(2)))
            if not chapters:
                continue
            if len(chapters) > 1 or not chapters <= CHAPTERS.keys():
                raise SystemExit(f"{path}:{node.lineno}: {node.name} has markers for chapters "
                                 f"{sorted(chapters)}; use one known chapter per function/class")
            ch = chapters.pop()
            by_chapter.setdefault(ch, []).append(Graded(path, mod, node, lines, ch, bindings, module_names))
    return by_chapter


def render_file(ch: int, items: list[Graded], exercise: bool) -> str:
    title = CHAPTERS[ch][1]
    stem = chapter_stem(ch)
    names = ", ".join(g.name for g in items)
    if exercise:
        head = (f'"""Chapter {ch} ({title}): exercises.\n\n'
                f"Fill in every `raise NotImplementedError(...)` below: {names}.\n"
                f"The notebook {notebook_path(ch)} explains each one; the\n"
                f"docstrings give the equations and shapes. Grade yourself with\n\n"
                f"    pytest -m ch{ch} --impl=exercises\n\n"
                f"Generated by tools/make_exercises.py from minidit/ -- see exercises/README.md.\n"
                f'"""')
    else:
        head = (f'"""Chapter {ch} ({title}): reference solutions for {names}.\n\n'
                f"Generated by tools/make_exercises.py from minidit/; do not edit by hand.\n"
                f'"""')
    codes = [g.render(exercise) for g in items]
    body = "\n\n\n".join(codes)
    imports = "".join(line + "\n" for line in imports_for(items, codes))
    return f"{head}\nfrom __future__ import annotations\n\n{imports}\n\n{body}\n"


def imports_for(items: list[Graded], codes: list[str]) -> list[str]:
    """The imports the rendered ``codes`` of ``items`` need, each name resolved in its source module:
    that module's own import of it, or (a top-level name of the module) an import from the module."""
    ours = {g.name for g in items}
    statements, bound = [], {}
    for g, code in zip(items, codes):
        used = names_used(code) - ours
        needed = [(name, st) for name, st in g.bindings.items() if name in used]
        needed += [(name, f"from {g.mod} import {name}") for name in sorted(used & g.module_names - set(g.bindings))]
        for name, statement in needed:
            if bound.setdefault(name, statement) != statement:
                raise SystemExit(f"chapter {g.chapter}: {name!r} is {bound[name]!r} for one graded item and "
                                 f"{statement!r} for another; rename one of them")
            if statement not in statements:
                statements.append(statement)
    return merge_imports(statements)


def expected_files():
    files = {}
    by_chapter = scan()
    for kind in ("exercises", "solutions"):
        files[ROOT / kind / "__init__.py"] = f'"""{kind.capitalize()} for the minidit chapters (generated)."""\n'
        for ch in sorted(by_chapter):
            files[ROOT / kind / f"{chapter_stem(ch)}.py"] = render_file(
                ch, by_chapter[ch], exercise=(kind == "exercises"))
    return files, by_chapter


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="fail if exercises/ or solutions/ is stale")
    ap.add_argument("--list", action="store_true", help="list the exercises per chapter")
    args = ap.parse_args(argv)
    files, by_chapter = expected_files()
    if args.list:
        for ch in sorted(by_chapter):
            print(f"ch{ch:02d} {CHAPTERS[ch][1]}: " + ", ".join(g.name for g in by_chapter[ch]))
        return 0
    generated = {p for p in files}
    stale_extra = [p for kind in ("exercises", "solutions") for p in (ROOT / kind).glob("ch*.py")
                   if p not in generated]
    if args.check:
        stale = [p for p, text in files.items() if not p.exists() or p.read_text() != text]
        stale += stale_extra
        if stale:
            print("stale (run `python tools/make_exercises.py`):")
            for p in stale:
                print("  ", p.relative_to(ROOT))
            return 1
        print(f"exercises/ and solutions/ are up to date ({sum(len(v) for v in by_chapter.values())} "
              f"graded items in {len(by_chapter)} chapters)")
        return 0
    for p in stale_extra:
        p.unlink()
    for p, text in files.items():
        p.parent.mkdir(exist_ok=True)
        if not p.exists() or p.read_text() != text:
            p.write_text(text)
            print("wrote", p.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
