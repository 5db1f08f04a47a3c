"""What every chapter notebook calls: the setup line, and trying your exercise code against minidit's.

Every notebook starts with::

    from minidit.notebook import setup, try_exercise
    SMOKE, device = setup()

and its "try your version" cell calls ``try_exercise`` once per exercise, e.g.::

    try_exercise("ch03", "patchify", lambda patchify: patchify(x, 2))
    try_exercise("ch05", "DiT.forward", lambda forward: forward(model, x, t, y))   # a method

``try_exercise`` reads your ``exercises/ch03_tokens.py`` afresh every time the cell runs (edit,
save, re-run the cell), runs the function you name and the reference answer on the same input
with the same random numbers, and prints one line: not done yet, matches, or how it differs. A
bug in your code is shown in a few lines (your line, the error and a hint) and never stops the
notebook. ``diagnose`` (the hint) is shared with the grader (tests/conftest.py).
"""
from __future__ import annotations

import re
import sys
import traceback
from pathlib import Path

import numpy as np
import torch

import minidit
from minidit.chapters import chapter_stem
from minidit.env import pick_device, smoke
from minidit.impl import load_file

ROOT = Path(minidit.__file__).resolve().parents[1]  # the repository, when minidit runs from a clone


def setup() -> tuple[bool, torch.device]:
    """Make ``exercises/`` importable, read ``MINIDIT_SMOKE``, pick the device; print one line.

    Returns ``(SMOKE, device)``: the smoke switch (``MINIDIT_SMOKE=1`` runs a tiny configuration,
    as CI does) and the best device available (CUDA, then Apple MPS, then the CPU).
    """
    if (ROOT / "exercises").is_dir() and str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    smoke_mode, device = smoke(), pick_device()
    print(f"minidit from {ROOT / 'minidit'} | device: {device} | smoke mode: {smoke_mode}")
    return smoke_mode, device


def load_fresh(path: Path):
    """Execute ``path`` as a new module (never a cached copy), so the latest saved edits count."""
    return load_file(path, tag="try")


def try_exercise(chapter: str | int, name: str, run, impl: str = "exercises", label: str | None = None,
                 atol: float = 1e-5, rtol: float = 1e-4, seed: int = 0) -> bool | None:
    """Run ``run(yours)`` and ``run(reference)`` on the same random numbers; print how they compare.

    ``name`` is a top-level function or class of the chapter's exercise file; ``run`` gets that
    object (yours, then minidit's answer from ``solutions/``) and returns what to compare: tensors,
    arrays, numbers, or lists, tuples and dicts of them (close within ``atol``/``rtol``). It should
    build its inputs itself, so an exercise that changes them in place cannot spoil the other run.
    ``impl`` is ``exercises`` (yours), ``solutions`` or a folder. A dotted ``name``
    (``"DiT.forward"``) gives ``run`` the function itself, to call with an object of minidit's
    class as ``self``. Returns True (matches), False (differs or raised) or None (not done yet);
    it never raises for a bug in your file.
    """
    label = label or name
    folder = ROOT / impl if impl in ("exercises", "solutions") else Path(impl)
    path, reference = folder / f"{chapter_stem(chapter)}.py", ROOT / "solutions" / f"{chapter_stem(chapter)}.py"
    for needed in (path, reference):
        if not needed.is_file():
            print(f"{label}: there is no {needed}; run the notebook in a clone of the minidit repository")
            return None
    # the reference first: a broken check fails loudly, even while the exercise is still a stub
    expected = _run_seeded(run, _lookup(load_fresh(reference), name), seed)
    try:
        yours = _lookup(load_fresh(path), name)
        got = _run_seeded(run, yours, seed)
    except NotImplementedError as e:
        if not str(e).startswith("EXERCISE"):
            _show_error(label, e, path)
            return False
        needed = re.match(r"EXERCISE ch\d+\.([\w.]+)", str(e))
        if needed and needed.group(1) != name and not needed.group(1).startswith(name + "."):  # another of yours
            print(f"{label}: waits for {needed.group(1)}, which is not done yet (write it in {_short(path)})")
        else:
            print(f"{label}: not done yet (write it in {_short(path)})")
        return None
    except Exception as e:  # a bug in the student's file: show it, never stop the notebook
        _show_error(label, e, path)
        return False
    why = difference(got, expected, atol, rtol)
    print(f"{label}: matches minidit" if why is None else f"{label}: does NOT match minidit yet: {why}")
    return why is None


def _lookup(module, name: str):
    """``module.name``, or for ``"DiT.forward"`` the function ``forward`` of the class ``DiT``."""
    top, *rest = name.split(".")
    obj = getattr(module, top)
    for part in rest:
        obj = obj.__dict__[part] if isinstance(obj, type) and part in obj.__dict__ else getattr(obj, part)
    return obj


def _run_seeded(run, obj, seed: int):
    """``run(obj)`` with torch's and numpy's global generators seeded, and put back afterwards."""
    numpy_state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed)
        try:
            return run(obj)
        finally:
            np.random.set_state(numpy_state)


def _short(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _show_error(label: str, error: BaseException, path: Path) -> None:
    """The exception and the lines of the student's file it passed through (no grader frames)."""
    print(f"{label}: your code raised {type(error).__name__}: {error}")
    if isinstance(error, SyntaxError) and error.lineno:
        print(f"  {_short(path)}, line {error.lineno}: {(error.text or '').strip()}")
        return
    frames = [f for f in traceback.extract_tb(error.__traceback__) if Path(f.filename).resolve() == path.resolve()]
    for frame in frames[-3:]:
        print(f"  {_short(path)}, line {frame.lineno}, in {frame.name}: {frame.line}")
    hint = diagnose(error)
    if hint:
        print(f"  hint: {hint}")



def difference(got, expected, atol: float = 1e-5, rtol: float = 1e-4) -> str | None:
    """None when ``got`` equals ``expected`` (numbers within tolerance), else what differs, briefly."""
    if isinstance(expected, dict):
        if not isinstance(got, dict) or set(got) != set(expected):
            return f"expected a dict with keys {sorted(expected)}, got {_kind(got)}"
        return next((f"[{k!r}] {d}" for k in expected if (d := difference(got[k], expected[k], atol, rtol))), None)
    if isinstance(expected, (list, tuple)) and not _is_numeric(expected):
        if not isinstance(got, (list, tuple)) or len(got) != len(expected):
            return f"expected a sequence of length {len(expected)}, got {_kind(got)}"
        return next((f"item {i}: {d}" for i, (g, e) in enumerate(zip(got, expected))
                     if (d := difference(g, e, atol, rtol))), None)
    if _is_numeric(expected):
        got, expected = (v.detach().cpu() if torch.is_tensor(v) else v for v in (got, expected))  # no autograd
        try:
            g, e = torch.as_tensor(np.asarray(got, dtype=np.float64)), torch.as_tensor(np.asarray(expected, np.float64))
        except (TypeError, ValueError):
            return f"expected numbers, got {_kind(got)}"
        if g.shape != e.shape:
            return f"expected shape {tuple(e.shape)}, got shape {tuple(g.shape)}"
        if not torch.allclose(g, e, atol=atol, rtol=rtol, equal_nan=True):
            err = (g - e).abs().nan_to_num(float("inf"))
            where = tuple(int(i) for i in torch.unravel_index(err.argmax(), err.shape)) if err.ndim else ()
            return f"largest difference {err.max().item():.3g} at index {where}"
        return None
    return None if got == expected else f"expected {expected!r}, got {got!r}"


def _is_numeric(x) -> bool:
    if torch.is_tensor(x) or isinstance(x, np.ndarray):
        return True
    if isinstance(x, (bool, int, float, np.number)):
        return True
    return isinstance(x, (list, tuple)) and len(x) > 0 and all(isinstance(v, (int, float, np.number)) for v in x)


def _kind(x) -> str:
    return f"{type(x).__name__} of shape {tuple(x.shape)}" if hasattr(x, "shape") else type(x).__name__


# The usual errors in exercise code, and what each usually means (first match wins).
_DIAGNOSES = [
    (r"The size of tensor a \((\d+)\) must match the size of tensor b \((\d+)\) at non-singleton dimension (\d+)",
     "two tensors combined elementwise differ in size on dimension {2} ({0} vs {1}): print their .shape "
     "just before this line; a per-sample vector (N, D) needs .unsqueeze(1) to act on every token of (N, T, D)"),
    (r"mat1 and mat2 shapes cannot be multiplied",
     "a Linear layer got an input whose last dimension is not its in_features: check the shape you feed "
     "it (tokens are (N, T, D), features last)"),
    (r"shape '\[.*\]' is invalid for input of size",
     "a view/reshape asks for a different number of elements than the tensor has: check the sizes you computed"),
    (r"view size is not compatible with input tensor's size and stride",
     "the tensor is not contiguous (after a transpose/permute): use .reshape, or .contiguous() before .view"),
    (r"Expected all tensors to be on the same device",
     "a tensor you created lives on another device: create it with device=x.device"),
    (r"expected (scalar type|m1 and m2 to have the same dtype)|must have the same dtype|Found dtype",
     "two tensors have different dtypes: create new tensors with dtype=x.dtype, or cast with .to(x.dtype)"),
    (r"does not require grad and does not have a grad_fn",
     "the loss carries no gradient: was it computed under torch.no_grad(), or detached?"),
    (r"Trying to backward through the graph a second time",
     "backward() ran twice through the same graph: compute the loss afresh for each step"),
    (r"Dimension out of range",
     "you used a dimension the tensor does not have: print x.ndim and x.shape"),
    (r"'NoneType' object (has no attribute|is not subscriptable|is not iterable)",
     "something is None: does a function you wrote end without `return`?"),
    (r"missing \d+ required positional argument",
     "a call lacks an argument: compare it with the signature of the function it calls"),
    (r"(not enough|too many) values to unpack",
     "unpacking got a different number of pieces than names: e.g. x.chunk(6, dim=1) gives 6"),
    (r"rearrange-reduction pattern|Shape mismatch|Identifiers only on one side|can't divide axis",
     "an einops pattern does not fit the tensor: the names on the left must match its dimensions, and "
     "the sizes you pass must divide them"),
]


def diagnose(error: BaseException) -> str | None:
    """One line on what a common error in exercise code usually means (None when there is no rule)."""
    if isinstance(error, NameError) and getattr(error, "name", None):
        statement = _import_for(error.name)
        if statement:
            return f"{error.name} is not imported in your file: add `{statement}` at its top"
        return f"{error.name} is not defined: a typo, or an import missing at the top of your file?"
    text = str(error)
    for pattern, advice in _DIAGNOSES:
        m = re.search(pattern, text)
        if m:
            return advice.format(*m.groups())
    return None


_COMMON_IMPORTS = {"torch": "import torch", "np": "import numpy as np", "math": "import math",
                   "F": "import torch.nn.functional as F", "nn": "from torch import nn",
                   "rearrange": "from einops import rearrange"}


def _import_for(name: str) -> str | None:
    """The import statement that binds ``name``: a common library, or the minidit module defining it."""
    if name in _COMMON_IMPORTS:
        return _COMMON_IMPORTS[name]
    for module_name in sorted(sys.modules):
        if module_name.startswith("minidit."):
            obj = getattr(sys.modules[module_name], name, None)
            if obj is not None and getattr(obj, "__module__", None) == module_name:
                return f"from {module_name} import {name}"
    return None
