"""The package's import graph: one direction, no circles, minidit's own imports at the top of files.

Layers, top to bottom: the command lines (``minidit.train``, ``sample``, ``extract``, ``evaluate``)
and the capstone that drives them (``minidit.capstone``),
then ``minidit.training`` and ``minidit.experiments``, then the core (models, diffusion, data,
metrics, flops, generation, ...). A module may import from its own layer or below, never above;
the graph of minidit modules has no cycle; and a minidit import inside a function is allowed only
to keep an optional dependency optional, saying so in a comment (``# optional dependency``).
The checker reads the source with ``ast`` (nothing is imported), so a circle that a local import
hides at import time still shows.
"""
from __future__ import annotations

import ast
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# module-name prefix -> layer (higher may import lower); anything else is the core, layer 0
LAYERS = {"minidit.train": 2, "minidit.sample": 2, "minidit.extract": 2, "minidit.evaluate": 2, "minidit.capstone": 2,
          "minidit.training": 1, "minidit.experiments": 1}
LOCAL_IMPORT_MARK = "optional dependency"


def layer_of(module: str, layers: dict[str, int]) -> int:
    return max((lvl for prefix, lvl in layers.items() if module == prefix or module.startswith(prefix + ".")),
               default=0)


def module_names(package: Path) -> dict[str, Path]:
    """``{"minidit.models.dit": path, "minidit.models": .../__init__.py, ...}`` for a package folder."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imported_modules(node: ast.AST, module: str, is_package: bool, known: dict[str, Path]) -> list[str]:
    """The package's modules an ``import`` / ``from ... import`` statement loads."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in known]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target not in known:
        return []
    # ``from minidit.training import state`` loads the module minidit.training.state
    found = [f"{target}.{a.name}" if f"{target}.{a.name}" in known else target for a in node.names]
    return sorted(set(found), key=found.index)


def import_problems(package: Path, layers: dict[str, int]) -> list[str]:
    """Every upward import, circle and uncommented local import of the package at ``package``."""
    known = module_names(package)
    graph: dict[str, set[str]] = {m: set() for m in known}
    problems = []
    for module, path in known.items():
        source = path.read_text()
        lines = source.splitlines()
        tree = ast.parse(source)
        top_level = {id(n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))}
        for node in ast.walk(tree):
            targets = imported_modules(node, module, path.name == "__init__.py", known)
            for target in targets:
                if target == module:
                    continue
                graph[module].add(target)
                # importing a.b.c first runs the package a.b (unless the importer lives inside it)
                parts = target.split(".")
                for i in range(2, len(parts)):
                    parent = ".".join(parts[:i])
                    if parent in known and parent != module and not module.startswith(parent + "."):
                        graph[module].add(parent)
                if layer_of(target, layers) > layer_of(module, layers):
                    problems.append(f"{module} imports {target} from a higher layer "
                                    f"({layer_of(module, layers)} -> {layer_of(target, layers)})")
            if targets and id(node) not in top_level and not any(
                    n.module == "__future__" for n in [node] if isinstance(n, ast.ImportFrom)):
                context = " ".join(lines[max(0, node.lineno - 2): node.end_lineno])
                if LOCAL_IMPORT_MARK not in context:
                    problems.append(f"{module}:{node.lineno} imports {', '.join(targets)} inside a block; move it "
                                    f"to the top of the file (or say '# {LOCAL_IMPORT_MARK}: ...' if it must stay)")
    problems += [f"import circle: {' -> '.join(c)}" for c in cycles(graph)]
    return problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One example path per cycle found by a depth-first search (each cycle reported once)."""
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "active"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "active":
                cycle = stack[stack.index(nxt):] + [nxt]
                if not any(set(cycle) == set(c) for c in found):
                    found.append(cycle)
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_minidit_imports_run_one_way_without_circles():
    problems = import_problems(ROOT / "minidit", LAYERS)
    assert not problems, "\n".join(problems)


def test_the_checker_catches_each_kind_of_violation(tmp_path):
    """A small package with one planted violation of each rule: every one is reported, nothing else."""
    pkg = tmp_path / "pkg"
    files = {
        "__init__.py": "",
        "core.py": "import json\n\nfrom pkg.util_mod import util\n",      # fine: same layer, at the top
        "util_mod.py": "def util():\n    from pkg import core  # a local import hiding a circle\n    return core\n",
        "lazy.py": "def f():\n    # optional dependency: pkg.big is heavy\n    from pkg import big\n    return big\n",
        "big.py": "from . import core\n",
        "up.py": "from pkg.cli import main\n",                              # core -> CLI: upward
        "cli.py": "from pkg import core\n\n\ndef main():\n    pass\n",
        "sub/__init__.py": "from .a import x\n",
        "sub/a.py": "from . import b\nx = 1\n",
        "sub/b.py": "y = 2\n",
    }
    for name, text in files.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(textwrap.dedent(text))
    problems = import_problems(pkg, {"pkg.cli": 1})
    joined = "\n".join(problems)
    assert any("pkg.up imports pkg.cli from a higher layer" in p for p in problems), joined
    assert any(p.startswith("pkg.util_mod:2 imports pkg.core inside a block") for p in problems), joined
    assert any("import circle" in p and "pkg.core" in p and "pkg.util_mod" in p for p in problems), joined
    # the commented optional import, the package importing its own submodules, and cli -> core pass
    assert not any("pkg.lazy" in p or "pkg.sub" in p or p.startswith("pkg.cli") for p in problems), joined
    assert len(problems) == 3, joined
