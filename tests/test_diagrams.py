"""The drawn diagrams say what they should: the labels of each block variant, every token index
in order, and the shapes of the latent pipeline."""
from __future__ import annotations

import pytest
from matplotlib.figure import Figure

from minidit.diagrams import dit_block_diagram, latent_pipeline_diagram, patchify_diagram


def texts(fig: Figure) -> list[str]:
    """Every string drawn on the figure: free texts, axes texts and axes titles."""
    found = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        found += [t.get_text() for t in ax.texts] + [ax.get_title()]
    return found


def test_block_diagram_shows_the_four_variants():
    fig = dit_block_diagram()
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    words = " ".join(texts(fig))
    for label in ("adaLN-Zero", "Cross-Attention", "In-Context", "adaLN\n(no gates)", "Multi-Head\nSelf-Attention",
                  "Pointwise\nFeedforward", "Scale  α₁", "Scale, Shift  γ₁, β₁", "Concatenate on\nsequence dim."):
        assert label in words, label
    # the gates α belong to adaLN-Zero only
    gated = [ax for ax in fig.axes if any("α₁" in t.get_text() for t in ax.texts)]
    assert [ax.get_title() for ax in gated] == ["DiT Block with adaLN-Zero"]
    # one residual sum per branch: two per block, three with cross-attention
    sums = [sum(t.get_text() == "+" for t in ax.texts) for ax in fig.axes]
    assert sums == [2, 3, 2, 2]


def test_block_diagram_can_show_one_variant_and_refuses_unknown_ones():
    assert len(dit_block_diagram(("adaLN-Zero",)).axes) == 1
    with pytest.raises(ValueError, match="unknown variant"):
        dit_block_diagram(("adaLN-One",))


@pytest.mark.parametrize("size,p,c", [(8, 2, 3), (8, 4, 1), (32, 2, 4)])
def test_patchify_diagram_numbers_the_tokens_row_major(size, p, c):
    fig = patchify_diagram(size, p, c)
    T, n = (size // p) ** 2, size // p
    grid_ax = fig.axes[0]
    numbered = {int(t.get_text()): t.get_position() for t in grid_ax.texts if t.get_text().isdigit()}
    assert sorted(numbered) == list(range(T))
    for k, (x, y) in numbered.items():   # token k sits in row k // n, column k % n
        assert (int(y // p), int(x // p)) == divmod(k, n)
    words = " ".join(texts(fig))
    assert f"= {T} tokens" in words and f"= {p * p * c} numbers" in words
    assert f"sequence ({T}, {p * p * c})" in words


def test_patchify_diagram_refuses_a_size_the_patches_do_not_tile():
    with pytest.raises(ValueError, match="not a multiple"):
        patchify_diagram(10, 4)


def test_latent_pipeline_diagram_has_the_shapes():
    words = texts(latent_pipeline_diagram())
    for label in ("VAE encoder", "VAE decoder", "DiT", "256×256×3", "32×32×4", "× 0.18215", "÷ 0.18215"):
        assert label in words, label
    assert "64×64×4" in texts(latent_pipeline_diagram(512))
