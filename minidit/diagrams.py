"""Diagrams of DiT drawn with plain matplotlib: the block variants, patchify, the latent pipeline.

The notebooks show these pictures next to the code they explain (chapters 3, 4, 5 and 9). They
are drawn rather than stored as images so that they change with the code's names and shapes and
take no room in the repository. Every function returns a ``matplotlib.figure.Figure`` and draws
nothing on screen by itself; every label is a text artist, so a test can read what was drawn.

* ``dit_block_diagram``: the paper's Figure 3, right half -- one transformer block with each of
  the four ways of feeding in the condition ``c`` (adaLN-Zero, cross-attention, in-context
  tokens, plain adaLN), drawn bottom to top like the paper.
* ``patchify_diagram``: an ``I x I x C`` input cut into ``p x p`` patches, numbered in the
  row-major order ``patchify`` emits them, and the resulting sequence of ``T = (I/p)^2`` tokens of
  ``p*p*C`` numbers each.
* ``latent_pipeline_diagram``: image -> VAE encoder -> latent (times 0.18215) -> DiT -> VAE
  decoder, with the tensor shape at every arrow.
"""
from __future__ import annotations

from matplotlib.figure import Figure   # a bare Figure: no pyplot state, nothing shown until displayed
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Rectangle

# colours by role, the same in every diagram
COLORS = {"norm": "#fde9b6", "attn": "#f9c5c0", "mlp": "#c9e4f6", "mod": "#d7ecd0", "cond": "#e3d7f0",
          "io": "#eeeeee", "vae": "#f6d7b0", "dit": "#c9e4f6"}
BOX_W, BOX_H, STEP = 2.2, 0.55, 0.85   # block diagram: box size and vertical pitch, in axis units
DPI = 80                               # modest: each diagram is a PNG of well under 100 KB in a notebook

# one entry per row, bottom to top: (label, colour role); "+" is a residual sum
_VARIANTS = {
    "adaLN-Zero": ["Layer Norm", "Scale, Shift  γ₁, β₁", "Multi-Head\nSelf-Attention", "Scale  α₁", "+",
                   "Layer Norm", "Scale, Shift  γ₂, β₂", "Pointwise\nFeedforward", "Scale  α₂", "+"],
    "Cross-Attention": ["Layer Norm", "Multi-Head\nSelf-Attention", "+", "Layer Norm",
                        "Multi-Head\nCross-Attention", "+", "Layer Norm", "Pointwise\nFeedforward", "+"],
    "In-Context": ["Concatenate on\nsequence dim.", "Layer Norm", "Multi-Head\nSelf-Attention", "+", "Layer Norm",
                   "Pointwise\nFeedforward", "+", "drop the t, y\ntokens (last block)"],
    "adaLN": ["Layer Norm", "Scale, Shift  γ₁, β₁", "Multi-Head\nSelf-Attention", "+",
              "Layer Norm", "Scale, Shift  γ₂, β₂", "Pointwise\nFeedforward", "+"],
}
_TITLES = {"adaLN-Zero": "DiT Block with adaLN-Zero", "Cross-Attention": "DiT Block with Cross-Attention",
           "In-Context": "DiT Block with In-Context\nConditioning", "adaLN": "DiT Block with adaLN\n(no gates)"}


def _role(label: str) -> str:
    if "Norm" in label:
        return "norm"
    if "Attention" in label:
        return "attn"
    if "Feedforward" in label:
        return "mlp"
    if "Scale" in label:
        return "mod"
    return "io"


def _box(ax, x, y, label, role, w=BOX_W, h=BOX_H, fontsize=8):
    """A rounded box centred on (x, y) with its label."""
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                facecolor=COLORS[role], edgecolor="#444444", linewidth=0.8))
    ax.text(x, y, label, ha="center", va="center", fontsize=fontsize)


def _arrow(ax, start, end, **kw):
    kw.setdefault("color", "#444444")
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=9, linewidth=0.9,
                                 shrinkA=0, shrinkB=0, **kw))


def _draw_block(ax, variant: str) -> None:
    """One block, bottom (input tokens) to top (output tokens), with its conditioning input."""
    rows = _VARIANTS[variant]
    ys = [STEP * (i + 1) for i in range(len(rows))]
    _box(ax, 0, 0, "Input Tokens", "io")
    # where the current residual branch starts (in-context: after the condition tokens are appended)
    last_input = ys[0] if rows[0].startswith("Concatenate") else 0.0
    prev_top = BOX_H / 2                   # top edge of the element below
    for label, y in zip(rows, ys):
        _arrow(ax, (0, prev_top), (0, y - (0.18 if label == "+" else BOX_H / 2)))
        if label == "+":
            ax.add_patch(Circle((0, y), 0.18, facecolor="white", edgecolor="#444444", linewidth=0.8))
            ax.text(0, y, "+", ha="center", va="center", fontsize=10)
            # the residual connection: from the branch input around the left side into the sum
            start = last_input + (0.3 if last_input else BOX_H / 2 + 0.08)
            ax.plot([0, -1.45, -1.45], [start, start, y], color="#888888", linewidth=0.8)
            _arrow(ax, (-1.45, y), (-0.18, y), color="#888888")
            last_input = y
        else:
            _box(ax, 0, y, label, _role(label))
        prev_top = y + (0.18 if label == "+" else BOX_H / 2)
    top = ys[-1] + STEP
    _arrow(ax, (0, prev_top), (0, top - 0.05))
    ax.text(0, top, "Output Tokens", ha="center", va="bottom", fontsize=8)
    # the condition c = embed(t) + embed(y) (or its tokens), drawn on the right
    cx = 2.25
    if variant in ("adaLN-Zero", "adaLN"):
        _box(ax, cx, 0, "Conditioning\nc = t + y", "cond", w=1.6)
        _box(ax, cx, STEP, "MLP", "cond", w=1.6)
        _arrow(ax, (cx, BOX_H / 2), (cx, STEP - BOX_H / 2))
        gates = "γ₁, β₁, α₁, γ₂, β₂, α₂" if variant == "adaLN-Zero" else "γ₁, β₁, γ₂, β₂"
        ax.text(cx, STEP + 0.45, gates, ha="center", va="bottom", fontsize=7)
        for label, y in zip(rows, ys):
            if label.startswith("Scale"):
                _arrow(ax, (cx, STEP + 0.75), (BOX_W / 2, y), color="#7a5ea8", connectionstyle="arc3,rad=0.15")
        if variant == "adaLN-Zero":
            ax.text(cx, ys[-1] - 0.2, "α starts at 0:\nthe block starts\nas the identity", ha="center",
                    fontsize=7, color="#7a5ea8")
    elif variant == "Cross-Attention":
        y = ys[rows.index("Multi-Head\nCross-Attention")]
        _box(ax, cx, y - STEP, "Conditioning\ntokens t, y", "cond", w=1.6)
        _arrow(ax, (cx, y - STEP + BOX_H / 2), (BOX_W / 2, y), color="#7a5ea8")
    else:
        _box(ax, cx, 0, "Conditioning\ntokens t, y", "cond", w=1.6)
        _arrow(ax, (cx, BOX_H / 2), (BOX_W / 2, ys[0]), color="#7a5ea8")
    ax.set_title(_TITLES[variant], fontsize=9)
    ax.set_xlim(-1.8, 3.2)
    ax.set_ylim(-0.5, STEP * (max(len(r) for r in _VARIANTS.values()) + 1) + 0.4)   # one scale for all
    ax.set_aspect("equal")
    ax.axis("off")


def dit_block_diagram(variants=("adaLN-Zero", "Cross-Attention", "In-Context", "adaLN")) -> Figure:
    """The DiT block with each way of conditioning on ``c``, side by side (the paper's Figure 3).

    Symbols follow the paper: γ, β are the scale and shift that adaLN regresses from ``c`` and α
    the per-channel gate of adaLN-Zero -- not the noise schedule's α and β. ``Scale, Shift`` is
    ``modulate(x, shift, scale) = x * (1 + scale) + shift`` in ``minidit.models.block``, so a zero
    ``scale`` (``γ``) leaves the normalised tokens unchanged.
    """
    unknown = [v for v in variants if v not in _VARIANTS]
    if unknown:
        raise ValueError(f"dit_block_diagram: unknown variant(s) {unknown}; choose from {list(_VARIANTS)}")
    fig = Figure(figsize=(2.7 * len(variants), 6.0), dpi=DPI)
    axes = fig.subplots(1, len(variants), squeeze=False)[0]
    for ax, variant in zip(axes, variants):
        _draw_block(ax, variant)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.93, bottom=0.01, wspace=0.05)
    return fig


def patchify_diagram(input_size: int = 8, patch_size: int = 2, channels: int = 3) -> Figure:
    """An ``I x I x C`` input, its ``p x p`` patches numbered in token order, and the token sequence.

    ``patchify`` reads patches row by row (row-major, like the official ``PatchEmbed``): token
    ``k`` is the patch in row ``k // (I/p)`` and column ``k % (I/p)``. Each token is the patch's
    ``p*p*C`` numbers, so the sequence is ``(T, p*p*C)`` with ``T = (I/p)^2``.
    """
    if input_size % patch_size:
        raise ValueError(f"patchify_diagram: input_size {input_size} is not a multiple of patch_size {patch_size}")
    n = input_size // patch_size                 # patches per side
    T, d = n * n, patch_size * patch_size * channels
    fig = Figure(figsize=(10, 4.2), dpi=DPI)
    ax_img, ax_seq = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.5]})
    # left: the pixel grid (thin lines) and the patch grid (thick lines), tokens numbered
    for i in range(input_size + 1):
        lw = 1.6 if i % patch_size == 0 else 0.3
        ax_img.plot([0, input_size], [i, i], color="#333333", linewidth=lw)
        ax_img.plot([i, i], [0, input_size], color="#333333", linewidth=lw)
    for k in range(T):
        row, col = divmod(k, n)
        ax_img.add_patch(Rectangle((col * patch_size, row * patch_size), patch_size, patch_size,
                                   facecolor=COLORS["mlp"] if (row + col) % 2 else COLORS["norm"], zorder=0))
        ax_img.text((col + 0.5) * patch_size, (row + 0.5) * patch_size, str(k), ha="center", va="center",
                    fontsize=9, color="#b00000", fontweight="bold")
    ax_img.set_xlim(-0.2, input_size + 0.2)
    ax_img.set_ylim(input_size + 0.2, -0.2)      # row 0 at the top, like an image
    ax_img.set_aspect("equal")
    ax_img.axis("off")
    ax_img.set_title(f"input {input_size}×{input_size}×{channels}, patches p×p = {patch_size}×{patch_size}",
                     fontsize=9)
    # right: the sequence, one column per token, tokens in order
    shown = list(range(T)) if T <= 16 else list(range(6)) + [None] + list(range(T - 3, T))
    for j, k in enumerate(shown):
        if k is None:
            ax_seq.text(j + 0.5, 0.5, "…", ha="center", va="center", fontsize=12)
            continue
        row, col = divmod(k, n)
        ax_seq.add_patch(Rectangle((j + 0.05, 0), 0.9, 1, facecolor=COLORS["mlp"] if (row + col) % 2
                                   else COLORS["norm"], edgecolor="#333333", linewidth=0.8))
        ax_seq.text(j + 0.5, 0.5, str(k), ha="center", va="center", fontsize=8, color="#b00000")
    ax_seq.annotate("", xy=(len(shown), -0.35), xytext=(0, -0.35), arrowprops={"arrowstyle": "<->"})
    ax_seq.text(len(shown) / 2, -0.45, f"T = (I/p)² = ({input_size}/{patch_size})² = {T} tokens",
                ha="center", va="top", fontsize=9)
    ax_seq.text(len(shown) / 2, -0.95, f"each token: p·p·C = {patch_size}·{patch_size}·{channels} = {d} numbers",
                ha="center", va="top", fontsize=9)
    ax_seq.set_xlim(-0.3, len(shown) + 0.2)
    ax_seq.set_ylim(-1.4, 2.0)
    ax_seq.set_aspect("equal")
    ax_seq.axis("off")
    ax_seq.set_title(f"sequence ({T}, {d}), row-major order", fontsize=9)
    fig.text(0.415, 0.5, "patchify →", ha="center", va="center", fontsize=11)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.9, bottom=0.02, wspace=0.25)
    return fig


def latent_pipeline_diagram(image_size: int = 256, channels: int = 4, downsample: int = 8,
                            scale_factor: float = 0.18215) -> Figure:
    """Image -> VAE encoder -> scaled latent -> DiT -> VAE decoder -> image, with every shape.

    Training (top row) encodes once and diffuses the scaled latent; sampling (bottom row) starts
    from noise of the latent's shape, denoises with DiT and decodes. The VAE is frozen in both.
    """
    s = image_size // downsample
    img, lat = f"{image_size}×{image_size}×3", f"{s}×{s}×{channels}"
    fig = Figure(figsize=(12, 3.8), dpi=DPI)
    ax = fig.subplots()
    rows = [
        (1.0, "training", [("image x", img, "io"), ("VAE encoder", f"downsample ×{downsample}", "vae"),
                           ("latent z", lat, "io"), (f"× {scale_factor}", "≈ unit variance", "mod"),
                           ("add noise: z_t", f"t ∼ U{{0..999}}, {lat}", "io"),
                           ("DiT", f"predicts ε, Σ: {s}×{s}×{2 * channels}", "dit")]),
        (0.0, "sampling", [("noise z_T", f"N(0, I), {lat}", "io"), ("DiT", "denoise step by step", "dit"),
                           ("z_0", lat, "io"), (f"÷ {scale_factor}", "undo the scale", "mod"),
                           ("VAE decoder", f"upsample ×{downsample}", "vae"), ("image", img, "io")]),
    ]
    w, gap = 1.55, 0.45
    for y, name, chain in rows:
        ax.text(-0.25, y, name, ha="right", va="center", fontsize=10, fontweight="bold")
        for i, (label, shape, role) in enumerate(chain):
            x = i * (w + gap) + w / 2
            _box(ax, x, y, label, role, w=w, h=0.42, fontsize=9)
            ax.text(x, y - 0.3, shape, ha="center", va="top", fontsize=7.5, color="#333333")
            if i:
                _arrow(ax, (x - w / 2 - gap, y), (x - w / 2, y))
    ax.text(0, -0.85, "the VAE is frozen: its encoder runs once per image (latents can be extracted ahead of "
            "training), its decoder once per sample", fontsize=8, color="#555555")
    ax.set_xlim(-1.3, 6 * (w + gap))
    ax.set_ylim(-1.0, 1.45)
    ax.axis("off")
    fig.subplots_adjust(left=0.01, right=0.99, top=0.98, bottom=0.02)
    return fig
