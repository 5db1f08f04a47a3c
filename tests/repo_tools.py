"""The scripts of ``tools/`` as modules, for the tests that call their functions.

``tools/`` is a folder of scripts, not a package, so a test loads one from its file; each call
runs the script's top level afresh (nothing is cached in ``sys.modules``).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_tool(name: str) -> ModuleType:
    """``tools/<name>.py`` as a module (``load_tool("make_exercises")``)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
