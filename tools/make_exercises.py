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

Each file starts with the imports of the modules the code came from, plus an import from
``minidit`` of every other module-level name the code uses, so a student's file uses the
finished package for everything outside the chapter's own exercises (one bug does not cascade).

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

# chapter number -> (file/notebook stem, title). Notebooks are notebooks/NN_<stem>.ipynb.
CHAPTERS = {
    1: ("forward_process", "The forward process"),
    2: ("denoising", "Learning to denoise"),
    3: ("tokens", "Images as token sequences"),
    4: ("conditioning", "Conditioning"),
    5: ("dit", "The Diffusion Transformer"),
    6: ("training", "Training a DiT"),
    7: ("sampling", "Sampling"),
    8: ("learned_variance", "Learned variance and the hybrid loss"),
    9: ("latent_diffusion", "Latent diffusion"),
    10: ("metrics", "Measuring quality"),
    11: ("conditioning_ablation", "Conditioning ablation"),
    12: ("scaling", "Scaling"),
    13: ("full_size", "Full size"),
}

BEGIN = re.compile(r"^(\s*)# BEGIN SOLUTION ch(\d+)\s*$")
END = re.compile(r"^\s*# END SOLUTION\s*$")


def chapter_stem(ch: int) -> str:
    return f"ch{ch:02d}_{CHAPTERS[ch][0]}"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def absolute_import(node: ast.ImportFrom, mod: str, is_pkg: bool) -> str:
    """Rewrite ``from .x import y`` in module ``mod`` as ``from minidit.<...>.x import y``."""
    if node.level == 0:
        return ast.unparse(node)
    base = mod.split(".")
    if not is_pkg:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    target = ".".join(base + ([node.module] if node.module else []))
    names = ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in node.names)
    return f"from {target} import {names}"


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

    def __init__(self, path, mod, is_pkg, node, lines, chapter, imports, module_names):
        self.path, self.mod, self.node, self.chapter = path, mod, node, chapter
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        self.lines = lines[start - 1: node.end_lineno]
        self.first = start
        self.imports = imports
        used = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        self.needs = sorted(used & module_names - {node.name})
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
                    nb = f"notebooks/{self.chapter:02d}_{CHAPTERS[self.chapter][0]}.ipynb"
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
        imports = []
        module_names = set()
        for node in tree.body:
            if isinstance(node, ast.Import):
                imports.append(ast.unparse(node))
            elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
                imports.append(absolute_import(node, mod, is_pkg))
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
            by_chapter.setdefault(ch, []).append(
                Graded(path, mod, is_pkg, node, lines, ch, imports, module_names))
    return by_chapter


def render_file(ch: int, items: list[Graded], exercise: bool) -> str:
    title = CHAPTERS[ch][1]
    stem = chapter_stem(ch)
    names = ", ".join(g.name for g in items)
    if exercise:
        head = (f'"""Chapter {ch} ({title}): exercises.\n\n'
                f"Fill in every `raise NotImplementedError(...)` below: {names}.\n"
                f"The notebook notebooks/{ch:02d}_{CHAPTERS[ch][0]}.ipynb explains each one; the\n"
                f"docstrings give the equations and shapes. Grade yourself with\n\n"
                f"    pytest -m ch{ch} --impl=exercises\n\n"
                f"Generated by tools/make_exercises.py from minidit/ -- see exercises/README.md.\n"
                f'"""')
    else:
        head = (f'"""Chapter {ch} ({title}): reference solutions for {names}.\n\n'
                f"Generated by tools/make_exercises.py from minidit/; do not edit by hand.\n"
                f'"""')
    imports, seen = [], set()
    ours = {g.name for g in items}
    for g in items:
        for imp in g.imports:
            if imp not in seen:
                seen.add(imp)
                imports.append(imp)
    for g in items:
        need = [n for n in g.needs if n not in ours]
        if need:
            imp = f"from {g.mod} import {', '.join(need)}"
            if imp not in seen:
                seen.add(imp)
                imports.append(imp)
    body = "\n\n\n".join(g.render(exercise) for g in items)
    return f"{head}\nfrom __future__ import annotations\n\n" + "\n".join(imports) + "\n\n\n" + body + "\n"


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
