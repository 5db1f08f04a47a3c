"""The course's chapters: number -> (file stem, title), the one table every exercise tool reads.

Chapter 3 is ``notebooks/03_tokens.ipynb``, its exercises ``exercises/ch03_tokens.py``, its
reference answers ``solutions/ch03_tokens.py``, its graded tests carry the pytest marker ``ch3``.
``tools/make_exercises.py`` generates the files from it, ``tests/conftest.py`` registers the
markers, and ``minidit.notebook`` finds a chapter's exercise file with it.
"""
from __future__ import annotations

CHAPTERS: dict[int, tuple[str, str]] = {
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


def chapter_number(chapter: int | str) -> int:
    """The number of a chapter given as 3, "3", "ch3", "ch03" or "ch03_tokens"."""
    text = str(chapter).lower().removeprefix("ch").split("_", 1)[0]
    if not text.isdigit() or int(text) not in CHAPTERS:
        raise ValueError(f"unknown chapter {chapter!r}; chapters are ch01 .. ch{max(CHAPTERS):02d}")
    return int(text)


def chapter_stem(chapter: int | str) -> str:
    """``ch03_tokens``: the name of a chapter's exercise and solution files (without ``.py``)."""
    ch = chapter_number(chapter)
    return f"ch{ch:02d}_{CHAPTERS[ch][0]}"


def notebook_path(chapter: int | str) -> str:
    """``notebooks/03_tokens.ipynb``, relative to the repository root."""
    ch = chapter_number(chapter)
    return f"notebooks/{ch:02d}_{CHAPTERS[ch][0]}.ipynb"
