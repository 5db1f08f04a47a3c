"""The switch that runs minidit on a student's code (minidit/impl.py): specs, swapping, undoing, stubs."""
from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

import minidit
import minidit.diffusion.gaussian as gaussian
import minidit.diffusion.gaussian_diffusion as gaussian_diffusion
import minidit.models.patch_embed as patch_embed
from minidit.graded import graded_items
from minidit.impl import ImplError, active_impl, explain, format_chapters, parse_impl, use_impl
from minidit.models.dit import DiT
from repo_tools import load_tool

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def switched_off():
    """Every test starts and ends with minidit's own code."""
    use_impl("minidit")
    yield
    use_impl("minidit")


def snapshot() -> dict:
    """Every global of every loaded minidit module, and every attribute of the classes holding graded
    methods, by identity: what must be exactly the same again after the switch is turned off."""
    state = {}
    for name, module in list(sys.modules.items()):
        if (name == "minidit" or name.startswith("minidit.")) and name != "minidit.impl":
            for key, value in vars(module).items():
                state[(name, key)] = id(value)
                if type(value) is dict:
                    state.update({(name, key, k): id(v) for k, v in value.items()})
    for it in graded_items():
        if it.is_method:
            cls = getattr(sys.modules.get(it.module) or __import__(it.module, fromlist=["x"]), it.top)
            state.update({(it.module, it.top, k): id(v) for k, v in vars(cls).items()})
    return state


def stub_copy(tmp_path: Path) -> Path:
    """A student's folder of untouched stubs: the repository's generated exercise files."""
    gen = load_tool("make_exercises")
    files, _ = gen.expected_files(root=tmp_path)
    gen.write({p: t for p, t in files.items() if p.parent.name == "exercises"}, tmp_path)
    return tmp_path / "exercises"


def test_specs_name_a_folder_and_chapters():
    every = parse_impl("exercises")
    assert every.folder == (ROOT / "exercises").resolve() and every.chapters == tuple(range(1, 14))
    assert str(every) == "exercises"
    assert parse_impl("solutions:ch01-ch04,ch06").chapters == (1, 2, 3, 4, 6)
    assert parse_impl("exercises:3").chapters == (3,)
    assert parse_impl("exercises:ch2-ch3").chapters == (2, 3)
    assert str(parse_impl("exercises:ch01-ch05")) == "exercises:ch01-ch05"
    assert parse_impl("minidit").is_reference and parse_impl("reference").is_reference
    assert format_chapters((1, 2, 3, 4, 6, 8, 9)) == "ch01-ch04,ch06,ch08-ch09"
    copy = parse_impl(f"{ROOT / 'solutions'}:ch07")
    assert copy.folder == (ROOT / "solutions").resolve() and copy.chapters == (7,)


@pytest.mark.parametrize("spec, message", [
    ("exercises:ch99", "unknown chapter"),
    ("exercises:ch05-ch02", "runs backwards"),
    ("/no/such/folder", "there is no folder"),
    ("minidit:ch01", "needs no chapters"),
    ("", "empty --impl"),
])
def test_bad_specs_say_what_is_wrong(spec, message):
    with pytest.raises(ImplError, match=message):
        parse_impl(spec)


def test_a_folder_without_a_chapter_is_an_error(tmp_path):
    with pytest.raises(ImplError, match="holds no chapter files"):
        parse_impl(str(tmp_path))
    shutil.copy(ROOT / "solutions" / "ch01_forward_process.py", tmp_path)
    assert parse_impl(str(tmp_path)).chapters == (1,)
    with pytest.raises(ImplError, match="has no ch02_denoising.py, ch03_tokens.py"):
        parse_impl(f"{tmp_path}:ch01-ch03")


def test_switching_on_swaps_by_identity_and_off_restores_everything():
    before = snapshot()
    reference_forward, reference_noisy = DiT.__dict__["forward"], gaussian.noisy_sample
    switch = use_impl("solutions:ch01-ch06", verbose=False)
    student_noisy = switch.modules[1].noisy_sample
    # a function: every module that holds minidit's object now holds the student's
    assert gaussian.noisy_sample is student_noisy and gaussian_diffusion.noisy_sample is student_noisy
    assert student_noisy is not reference_noisy and student_noisy.__module__.startswith("_minidit_impl")
    # a method: set on minidit's class, so every model built anywhere uses it
    assert DiT.__dict__["forward"] is switch.modules[5].DiT.__dict__["forward"]
    # the student's files call each other: chapter 6's loss uses chapter 2's simple_loss
    assert switch.modules[6].simple_loss is switch.modules[2].simple_loss
    assert active_impl().chapters == (1, 2, 3, 4, 5, 6)
    use_impl("minidit")
    assert DiT.__dict__["forward"] is reference_forward and gaussian.noisy_sample is reference_noisy
    after = snapshot()  # (modules the switch imported come on top: they are minidit's own, untouched)
    assert {key: after.get(key) for key in before} == before and active_impl() is None


def test_chapter_ranges_and_the_context_manager():
    reference_patchify, reference_noisy = patch_embed.patchify, gaussian.noisy_sample
    with use_impl("solutions:ch03", verbose=False):
        assert patch_embed.patchify is not reference_patchify
        assert gaussian.noisy_sample is reference_noisy  # chapter 1 is not in the range
        with use_impl("solutions:ch01", verbose=False):
            assert patch_embed.patchify is reference_patchify and gaussian.noisy_sample is not reference_noisy
        assert patch_embed.patchify is not reference_patchify  # the outer switch is back
    assert patch_embed.patchify is reference_patchify and active_impl() is None


def test_registries_and_modules_imported_while_on_are_restored():
    reference = gaussian.noisy_sample
    registry = types.ModuleType("minidit._test_registry")
    registry.SCHEDULES = {"noisy": reference}
    sys.modules[registry.__name__] = registry
    try:
        switch = use_impl("solutions:ch01", verbose=False)
        assert registry.SCHEDULES["noisy"] is switch.modules[1].noisy_sample  # one level into a dict
        late = types.ModuleType("minidit._test_late")  # as if imported now: it copies the student's function
        late.noisy_sample = gaussian.noisy_sample
        sys.modules[late.__name__] = late
        use_impl("minidit")
        assert registry.SCHEDULES["noisy"] is reference and late.noisy_sample is reference
    finally:
        sys.modules.pop("minidit._test_registry", None)
        sys.modules.pop("minidit._test_late", None)


def test_an_untouched_stub_stops_with_one_line_naming_the_exercise_and_the_way_out(tmp_path):
    stubs = stub_copy(tmp_path)
    use_impl(f"{stubs}:ch01-ch02", verbose=False)
    with pytest.raises(NotImplementedError) as caught:
        gaussian.noisy_sample(torch.zeros(1), torch.ones(1), torch.zeros(1))
    line = explain(caught.value)
    assert "\n" not in line and line.startswith("EXERCISE ch01.noisy_sample is not done yet")
    assert "ch01_forward_process.py" in line and f"--impl {stubs}:ch02" in line
    assert explain(ValueError("something else")) is None


def test_unfinished_exercises_can_fall_back_to_the_reference(tmp_path, capsys):
    stubs = stub_copy(tmp_path)
    reference = gaussian.noisy_sample
    switch = use_impl(f"{stubs}:ch01", on_stub="reference")
    assert gaussian.noisy_sample is reference and len(switch.kept_reference) == 4
    assert "minidit's reference runs instead: ch01 (all 4)" in capsys.readouterr().out
    # and a finished one runs, while its unfinished neighbours stay minidit's
    text = (stubs / "ch01_forward_process.py").read_text()
    solution = (ROOT / "solutions" / "ch01_forward_process.py").read_text()
    start = solution.index("def snr(")
    end = solution.find("\n\n\ndef ", start)
    (stubs / "ch01_forward_process.py").write_text(text + "\n\n" + solution[start:end if end > 0 else None])
    switch = use_impl(f"{stubs}:ch01", on_stub="reference", verbose=False)
    assert [it.qualname for it in switch.stubs] == ["noisy_sample", "linear_beta_schedule", "cosine_beta_schedule"]
    assert gaussian.noisy_sample is reference
    import minidit.diffusion.schedules as schedules
    assert schedules.snr is switch.modules[1].snr


def test_student_files_that_cannot_run_say_why_in_one_line(tmp_path):
    shutil.copy(ROOT / "solutions" / "ch04_conditioning.py", tmp_path)
    path = tmp_path / "ch04_conditioning.py"
    path.write_text(path.read_text().replace("    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:",
                                             "    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:\n"
                                             "        super().forward\n", 1))
    with pytest.raises(ImplError, match="calls super"):
        use_impl(str(tmp_path), verbose=False)
    assert active_impl() is None
    path.write_text("def modulate(x, shift, scale:\n    pass\n")
    with pytest.raises(ImplError, match=r"ch04_conditioning.py, line 1: SyntaxError"):
        use_impl(str(tmp_path), verbose=False)


def test_off_by_default_and_on_from_the_environment(monkeypatch, capsys):
    # off: importing minidit loads no model, no torch, and swaps nothing (a cheap process: no torch)
    code = "import sys, minidit; print(sorted(m for m in sys.modules if m.startswith('minidit')), 'torch' in sys.modules)"
    env = {k: v for k, v in os.environ.items() if k != "MINIDIT_IMPL"}
    off = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    assert off.stdout.strip() == "['minidit', 'minidit.chapters', 'minidit.graded', 'minidit.impl'] False", off.stderr
    reference = gaussian.noisy_sample
    assert reference.__code__.co_filename == gaussian.__file__  # minidit's own function, nothing wrapped
    # on: MINIDIT_IMPL is read when the package is imported
    monkeypatch.setenv("MINIDIT_IMPL", "solutions:ch01")
    importlib.reload(minidit)
    assert "using solutions/ for ch01" in capsys.readouterr().out
    assert gaussian.noisy_sample is not reference and str(active_impl()) == "solutions:ch01"
