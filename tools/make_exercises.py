"""Generate ``exercises/`` and ``solutions/`` from the graded code in ``minidit/``.

There is one source of truth: the finished package. A graded piece of code is a function or
method in ``minidit/`` whose body holds a marked region (``minidit/graded.py`` finds them)::

    def patchify(x, p):
        \"\"\"...the specification...\"\"\"
        # BEGIN SOLUTION ch03 difficulty=2 minutes=20
        ...the reference answer...
        # END SOLUTION

For every chapter this script writes two files with the same name:

* ``solutions/chNN_<topic>.py`` -- the graded functions and classes, bodies kept;
* ``exercises/chNN_<topic>.py`` -- the same, each marked region replaced by
  ``raise NotImplementedError("EXERCISE chNN.<name> ...")`` that says what to do and where.

A big class (``DiT``, ``GaussianDiffusion``) appears as a subclass of minidit's class holding only
its graded methods, so the file shows what to write and nothing else. Each file starts with the
imports the answers use, taken from the modules the code came from, so a student's file uses the
finished package for everything outside the chapter's own exercises (one bug does not cascade)
and every name its docstrings mention is at hand.
The chapters (numbers, file stems, titles) come from ``minidit/chapters.py``.

A student's work is never overwritten: an exercise file whose code differs from the stubs
(anything but comments, docstrings and imports) is left alone and named; ``--force`` replaces it.

Usage::

    python tools/make_exercises.py          # (re)write solutions/ and the untouched exercises/
    python tools/make_exercises.py --check  # exit 1 if either is stale (CI runs this)
    python tools/make_exercises.py --list   # the exercises, with difficulty and a time estimate
"""
from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's minidit, whatever else is installed

from minidit.chapters import CHAPTERS, chapter_stem, notebook_path  # noqa: E402
from minidit.graded import BEGIN, END, PACKAGE, TopLevel, edits, find_def, innermost_def, scan  # noqa: E402

KINDS = ("exercises", "solutions")


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


def source_names(top: TopLevel) -> tuple[dict[str, str], set[str]]:
    """The source module's imports (name -> statement) and its own top-level definitions."""
    tree = ast.parse("\n".join(top.lines))
    is_pkg = top.path.name == "__init__.py"
    bindings, defined = {}, set()
    for node in tree.body:
        bindings.update(import_bindings(node, top.module, is_pkg))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined |= {t.id for t in targets if isinstance(t, ast.Name)}
    return bindings, defined


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


def stub_message(chapter: int, where: str) -> str:
    stem, nb = chapter_stem(chapter), notebook_path(chapter)
    return (f"EXERCISE ch{chapter:02d}.{where} is not done yet: write it in exercises/{stem}.py "
            f"(chapter {chapter}, {CHAPTERS[chapter][1]}; {nb} explains it), then run "
            f"pytest -m ch{chapter} --impl=exercises")


def render_lines(top: TopLevel, first: int, last: int, exercise: bool) -> list[str]:
    """Source lines ``first..last`` (1-based) of ``top``'s file, marked regions kept or stubbed."""
    out, inside = [], False
    for number in range(first, last + 1):
        text = top.lines[number - 1]
        m = BEGIN.match(text)
        if m:
            inside = True
            if exercise:
                msg = stub_message(top.chapter, innermost_def(top.node, number))
                out.append(f"{m.group(1)}raise NotImplementedError(\n{m.group(1)}    {msg!r})")
            continue
        if END.match(text):
            inside = False
            continue
        if not (inside and exercise):
            out.append(text)
    return out


def base_alias(top: TopLevel) -> tuple[str, str]:
    """For a subclass: the module alias (``dit``) and its import (``from minidit.models import dit``)."""
    package, _, alias = top.module.rpartition(".")
    return alias, f"from {package} import {alias}"


def render(top: TopLevel, exercise: bool) -> str:
    """The code of one graded top-level function or class, as the chapter's file holds it."""
    node = top.node
    if not top.as_subclass:
        start = min([node.lineno] + [d.lineno for d in node.decorator_list])
        return "\n".join(render_lines(top, start, node.end_lineno, exercise))
    alias, _ = base_alias(top)
    methods = [it.qualname.split(".", 1)[1] for it in top.items]
    rel = top.path.relative_to(ROOT)
    out = [f"class {top.name}({alias}.{top.name}):",
           f'    """minidit\'s ``{top.name}`` ({rel}), with the graded method{"s" if len(methods) > 1 else ""} '
           f'{", ".join(f"``{m}``" for m in methods)} below.',
           "",
           "    Everything else is inherited from minidit's class: only what is below is yours to write.",
           '    """']
    for child in node.body:
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and child.name in methods:
            start = min([child.lineno] + [d.lineno for d in child.decorator_list])
            out += [""] + render_lines(top, start, child.end_lineno, exercise)
    return "\n".join(out)


def imports_for(tops: list[TopLevel], codes: list[str]) -> list[str]:
    """The imports the rendered ``codes`` need, each name resolved in its source module: that
    module's own import of it, or (a top-level name of the module) an import from the module."""
    ours = {t.name for t in tops}
    statements, bound = [], {}
    for top, code in zip(tops, codes):
        bindings, defined = source_names(top)
        used = names_used(code) - ours
        needed = []
        if top.as_subclass:
            alias, statement = base_alias(top)
            if alias in bindings or alias in defined:
                raise SystemExit(f"{top.module}: the module alias {alias!r} clashes with a name of the module")
            needed.append((alias, statement))
            used.discard(alias)
        needed += [(name, st) for name, st in bindings.items() if name in used]
        needed += [(name, f"from {top.module} import {name}") for name in sorted(used & defined - set(bindings))]
        for name, statement in needed:
            if bound.setdefault(name, statement) != statement:
                raise SystemExit(f"chapter {top.chapter}: {name!r} is {bound[name]!r} for one graded item and "
                                 f"{statement!r} for another; rename one of them")
            if statement not in statements:
                statements.append(statement)
    return merge_imports(statements)


def render_file(ch: int, tops: list[TopLevel], exercise: bool) -> str:
    title = CHAPTERS[ch][1]
    items = [it for t in tops for it in t.items]
    names = ", ".join(it.qualname for it in items)
    if exercise:
        todo = "\n".join(f"    {it.qualname:<34s} {it.level}" for it in items)
        head = (f'"""Chapter {ch} ({title}): exercises.\n\n'
                f"Fill in every `raise NotImplementedError(...)` below:\n\n{todo}\n\n"
                f"The notebook {notebook_path(ch)} explains each one and offers hints; the\n"
                f"docstrings give the specification. Grade yourself with\n\n"
                f"    pytest -m ch{ch} --impl=exercises\n\n"
                f"Generated by tools/make_exercises.py from minidit/ -- see exercises/README.md.\n"
                f'"""')
    else:
        head = (f'"""Chapter {ch} ({title}): reference solutions for {names}.\n\n'
                f"Generated by tools/make_exercises.py from minidit/; do not edit by hand.\n"
                f'"""')
    body = "\n\n\n".join(render(t, exercise) for t in tops)
    # an exercise file imports what the answers need, so the names its docstrings use just work
    imports = "".join(line + "\n" for line in imports_for(tops, [render(t, False) for t in tops]))
    return f"{head}\nfrom __future__ import annotations\n\n{imports}\n\n{body}\n"


def expected_files(root: Path = ROOT, package: Path = PACKAGE) -> tuple[dict[Path, str], dict]:
    """``{path under root: text}`` of every generated file, and the graded nodes by chapter."""
    files = {}
    by_chapter = scan(package)
    for kind in KINDS:
        files[root / kind / "__init__.py"] = f'"""{kind.capitalize()} for the minidit chapters (generated)."""\n'
        for ch in sorted(by_chapter):
            files[root / kind / f"{chapter_stem(ch)}.py"] = render_file(ch, by_chapter[ch], kind == "exercises")
    return files, by_chapter


def graded_qualnames(stub_text: str) -> list[str]:
    """The graded defs of a generated exercise file: those holding a stub."""
    tree = ast.parse(stub_text)
    found = []

    def visit(body, prefix):
        for node in body:
            if isinstance(node, ast.ClassDef):
                visit(node.body, prefix + node.name + ".")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if any(isinstance(n, ast.Raise) and "EXERCISE" in ast.dump(n) for n in ast.walk(node)):
                    found.append(prefix + node.name)
    visit(tree.body, "")
    return found


def signature_changes(existing: str, stub: str) -> list[str]:
    """Graded defs whose signature in ``existing`` differs from the generated stub's (or are missing)."""
    try:
        mine = ast.parse(existing)
    except SyntaxError:
        return []  # a half-edited file is the student's business, not staleness
    theirs = ast.parse(stub)
    changed = []
    for q in graded_qualnames(stub):
        a, b = find_def(mine, q), find_def(theirs, q)
        if a is None or ast.dump(a.args) != ast.dump(b.args):
            changed.append(q)
    return changed


def check(files: dict[Path, str], root: Path) -> list[str]:
    """Problems that make ``--check`` fail; an exercise file with the student's work in it is stale
    only if a graded signature changed (finished exercises are not stale)."""
    problems = []
    for path, text in files.items():
        rel = path.relative_to(root)
        if not path.exists():
            problems.append(f"{rel}: missing (run `python tools/make_exercises.py`)")
            continue
        current = path.read_text()
        if current == text:
            continue
        if rel.parts[0] == "solutions" or path.name == "__init__.py" or not edits(current, text):
            problems.append(f"{rel}: out of date (run `python tools/make_exercises.py`)")
        elif changed := signature_changes(current, text):
            problems.append(f"{rel}: holds your work, but minidit changed the signature of "
                            f"{', '.join(changed)}; edit those lines by hand (the generator keeps this file)")
    for extra in sorted((root / "solutions").glob("ch*.py")):
        if extra not in files:
            problems.append(f"{extra.relative_to(root)}: no longer generated (run `python tools/make_exercises.py`)")
    return problems


def write(files: dict[Path, str], root: Path, force: bool = False) -> list[tuple[Path, list[str]]]:
    """Write the generated files; returns the exercise files kept because they hold work."""
    kept = []
    for extra in sorted((root / "solutions").glob("ch*.py")):
        if extra not in files:
            extra.unlink()
            print("removed", extra.relative_to(root))
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            current = path.read_text()
            if current == text:
                continue
            if path.parent.name == "exercises" and path.name != "__init__.py" and not force:
                work = edits(current, text)
                if work:
                    kept.append((path, work))
                    continue
        path.write_text(text)
        print("wrote", path.relative_to(root))
    return kept


def list_exercises(by_chapter: dict) -> None:
    for ch in sorted(by_chapter):
        items = [it for t in by_chapter[ch] for it in t.items]
        total = sum(it.minutes for it in items)
        print(f"ch{ch:02d} {CHAPTERS[ch][1]} ({len(items)} exercises, ~{total} min; {notebook_path(ch)})")
        for it in items:
            print(f"    {it.qualname:<38s} {it.level}")


def main(argv=None, root: Path = ROOT) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="fail if exercises/ or solutions/ is stale")
    ap.add_argument("--list", action="store_true", help="list the exercises per chapter, with difficulty and time")
    ap.add_argument("--force", action="store_true",
                    help="also overwrite exercise files that hold edits (the edits are lost)")
    args = ap.parse_args(argv)
    files, by_chapter = expected_files(root)
    if args.list:
        list_exercises(by_chapter)
        return 0
    if args.check:
        problems = check(files, root)
        for p in problems:
            print("stale:", p)
        if not problems:
            print(f"exercises/ and solutions/ are up to date ({sum(len(t.items) for v in by_chapter.values() for t in v)}"
                  f" graded items in {len(by_chapter)} chapters)")
        return 1 if problems else 0
    kept = write(files, root, force=args.force)
    for path, work in kept:
        print(f"kept {path.relative_to(root)}: it holds edits ({', '.join(work)}), so it was not regenerated")
    if kept:
        print("Your work in those files is safe. To replace one with fresh stubs anyway (its edits are lost),\n"
              "copy it somewhere first, then run this script with --force.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
