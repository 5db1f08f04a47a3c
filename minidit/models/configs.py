"""Named DiT configurations: the paper's 12 (Table 1) and small CPU-sized families.

Official (depth / hidden size D / heads), each with patch size 2, 4 or 8:

    S 12 / 384 / 6     B 12 / 768 / 12     L 24 / 1024 / 16     XL 28 / 1152 / 16

minidit adds three families small enough to train on a laptop CPU: P(ico) 2 / 64 / 2,
N(ano) 4 / 96 / 4, T(iny) 6 / 128 / 4, with patch sizes 1, 2, 4 (8x8 digits: 64, 16, 4 tokens)
and 8 (the scaling study's 16x16 glyphs take patches 8, 4, 2: 4, 16, 64 tokens, as the paper's
32x32 latents take 8, 4, 2 for 16, 64, 256). Their widths are at least p^2 C for every patch
size they are used with (P/8 on grey 16x16: 64 = 8 * 8 * 1), so no token is squeezed through a
residual stream narrower than its own pixels (the paper has D / (p^2 C) = 1.5 for DiT-S/8).
The rule is not taste: the model predicts the noise of every pixel, and a token's p^2 C noise
values cannot all pass through fewer than p^2 C numbers. Measured on the glyphs with the scaling
recipe: a width-32 model on 8x8 patches (2 blocks, 64 pixels a token) still had a training loss
of 0.56 and FID 916 (samples at chance class accuracy) after 56,000 steps; P/8 (width 64)
reaches 0.10 in 6,000.
Every constructor takes the official keyword arguments (``input_size``, ``in_channels``,
``num_classes``, ``learn_sigma``, ``class_dropout_prob``) and minidit's (``conditioning``,
``fused_attn``, ``grad_checkpointing``).

Two more, smaller still, exist for one experiment: F(emto) 2 / 32 / 2 and A(tto) 1 / 32 / 1
(patches 2 and 4). At the training compute a CPU affords, they are smaller than the
compute-optimal model, the regime of the paper's Figure 9 (experiments/frontier.py).
"""
from __future__ import annotations

import difflib

from .dit import DiT

# family -> (depth, hidden_size, num_heads)
FAMILIES = {
    "XL": (28, 1152, 16), "L": (24, 1024, 16), "B": (12, 768, 12), "S": (12, 384, 6),
    "T": (6, 128, 4), "N": (4, 96, 4), "P": (2, 64, 2), "F": (2, 32, 2), "A": (1, 32, 1),
}


def _make(family: str, patch_size: int):
    depth, hidden_size, num_heads = FAMILIES[family]

    def constructor(**kwargs) -> DiT:
        return DiT(depth=depth, hidden_size=hidden_size, patch_size=patch_size, num_heads=num_heads, **kwargs)
    constructor.__name__ = f"DiT_{family}_{patch_size}"
    constructor.__doc__ = (f"DiT-{family}/{patch_size}: depth {depth}, hidden size {hidden_size}, "
                           f"{num_heads} heads, patch size {patch_size}.")
    return constructor


def DiT_XL_2(**kwargs) -> DiT: return _make("XL", 2)(**kwargs)
def DiT_XL_4(**kwargs) -> DiT: return _make("XL", 4)(**kwargs)
def DiT_XL_8(**kwargs) -> DiT: return _make("XL", 8)(**kwargs)
def DiT_L_2(**kwargs) -> DiT: return _make("L", 2)(**kwargs)
def DiT_L_4(**kwargs) -> DiT: return _make("L", 4)(**kwargs)
def DiT_L_8(**kwargs) -> DiT: return _make("L", 8)(**kwargs)
def DiT_B_2(**kwargs) -> DiT: return _make("B", 2)(**kwargs)
def DiT_B_4(**kwargs) -> DiT: return _make("B", 4)(**kwargs)
def DiT_B_8(**kwargs) -> DiT: return _make("B", 8)(**kwargs)
def DiT_S_2(**kwargs) -> DiT: return _make("S", 2)(**kwargs)
def DiT_S_4(**kwargs) -> DiT: return _make("S", 4)(**kwargs)
def DiT_S_8(**kwargs) -> DiT: return _make("S", 8)(**kwargs)
def DiT_T_8(**kwargs) -> DiT: return _make("T", 8)(**kwargs)
def DiT_T_1(**kwargs) -> DiT: return _make("T", 1)(**kwargs)
def DiT_T_2(**kwargs) -> DiT: return _make("T", 2)(**kwargs)
def DiT_T_4(**kwargs) -> DiT: return _make("T", 4)(**kwargs)
def DiT_N_8(**kwargs) -> DiT: return _make("N", 8)(**kwargs)
def DiT_N_1(**kwargs) -> DiT: return _make("N", 1)(**kwargs)
def DiT_N_2(**kwargs) -> DiT: return _make("N", 2)(**kwargs)
def DiT_N_4(**kwargs) -> DiT: return _make("N", 4)(**kwargs)
def DiT_P_8(**kwargs) -> DiT: return _make("P", 8)(**kwargs)
def DiT_P_1(**kwargs) -> DiT: return _make("P", 1)(**kwargs)
def DiT_P_2(**kwargs) -> DiT: return _make("P", 2)(**kwargs)
def DiT_P_4(**kwargs) -> DiT: return _make("P", 4)(**kwargs)
def DiT_F_2(**kwargs) -> DiT: return _make("F", 2)(**kwargs)
def DiT_F_4(**kwargs) -> DiT: return _make("F", 4)(**kwargs)
def DiT_A_2(**kwargs) -> DiT: return _make("A", 2)(**kwargs)
def DiT_A_4(**kwargs) -> DiT: return _make("A", 4)(**kwargs)


DiT_models = {
    "DiT-XL/2": DiT_XL_2, "DiT-XL/4": DiT_XL_4, "DiT-XL/8": DiT_XL_8,
    "DiT-L/2": DiT_L_2, "DiT-L/4": DiT_L_4, "DiT-L/8": DiT_L_8,
    "DiT-B/2": DiT_B_2, "DiT-B/4": DiT_B_4, "DiT-B/8": DiT_B_8,
    "DiT-S/2": DiT_S_2, "DiT-S/4": DiT_S_4, "DiT-S/8": DiT_S_8,
    # minidit's CPU-sized families
    "DiT-T/1": DiT_T_1, "DiT-T/2": DiT_T_2, "DiT-T/4": DiT_T_4, "DiT-T/8": DiT_T_8,
    "DiT-N/1": DiT_N_1, "DiT-N/2": DiT_N_2, "DiT-N/4": DiT_N_4, "DiT-N/8": DiT_N_8,
    "DiT-P/1": DiT_P_1, "DiT-P/2": DiT_P_2, "DiT-P/4": DiT_P_4, "DiT-P/8": DiT_P_8,
    # below P, for the compute-optimal frontier (experiments/frontier.py); patches 2 and 4 only,
    # since an 8x8 patch of 16x16 glyphs (64 numbers) would not fit their width of 32 (the
    # module's docstring has the measured cost)
    "DiT-F/2": DiT_F_2, "DiT-F/4": DiT_F_4, "DiT-A/2": DiT_A_2, "DiT-A/4": DiT_A_4,
}

# the 12 configurations of the paper, in Table 4 order
OFFICIAL_MODELS = [name for name in DiT_models if name.split("-")[1].split("/")[0] in ("XL", "L", "B", "S")]


def get_model(name: str, **kwargs) -> DiT:
    """Build the named configuration, e.g. ``get_model("DiT-S/2", input_size=8, in_channels=1)``."""
    if name not in DiT_models:
        guess = difflib.get_close_matches(name, list(DiT_models), n=1)
        hint = f" Did you mean {guess[0]!r}?" if guess else ""
        raise ValueError(f"unknown model {name!r}.{hint} Valid names: {', '.join(DiT_models)}")
    return DiT_models[name](**kwargs)


def config_name(depth: int, hidden_size: int, patch_size: int) -> str | None:
    """The registry name for a (depth, D, p) triple, or None -- used to name checkpoints' configs."""
    for family, (d, h, _) in FAMILIES.items():
        if (d, h) == (depth, hidden_size) and f"DiT-{family}/{patch_size}" in DiT_models:
            return f"DiT-{family}/{patch_size}"
    return None
