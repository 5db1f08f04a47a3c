"""The DiT block and the paper's four ways of feeding the condition into it (Section 3.2, Figure 3).

Every block is a pre-norm transformer block: self-attention then an MLP, each wrapped in a
residual connection. They differ only in how the condition -- the timestep embedding and the
class embedding -- enters:

* ``DiTBlock`` (adaLN-Zero, the paper's choice and the default): ``c = t_emb + y_emb`` regresses
  a shift, a scale and a *gate* for each of the two sub-blocks; the regression layer starts at
  zero, so every block starts as the identity function. Best FID in Figure 5.
* ``AdaLNBlock`` (adaLN): the same shift/scale modulation of the LayerNorms, no gates, ordinary
  (non-zero) initialisation.
* ``CrossAttentionBlock``: an extra multi-head cross-attention layer after self-attention that
  attends to the 2-token sequence ``[t_emb, y_emb]`` (~15% more Gflops).
* ``InContextBlock``: a plain ViT block; the condition is given to the model as 2 extra tokens
  appended to the sequence (DiT.forward does that), like a ViT's cls token.

LayerNorms inside adaptive blocks have no learnable affine (``elementwise_affine=False``, eps 1e-6),
as in the official code: the condition supplies the scale and shift. The plain blocks keep a
learnable affine, as a standard ViT block does.
"""
from __future__ import annotations

import torch
from torch import nn

from .attention import Attention, CrossAttention
from .mlp import Mlp


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Adaptive LayerNorm's affine step: ``x * (1 + scale) + shift``, one shift/scale per sample.

    Args:
        x: normalised tokens, shape ``(N, T, D)``.
        shift, scale: shape ``(N, D)``, regressed from the condition; broadcast over the ``T``
            tokens of each sample.

    Returns:
        ``(N, T, D)``. Note ``1 + scale``: a zero scale means "leave the norm unchanged".
    """
    # BEGIN SOLUTION ch04 difficulty=1 minutes=10
    # (N, D) -> (N, 1, D) broadcasts over tokens;  x * (1 + scale) + shift
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)
    # END SOLUTION


class DiTBlock(nn.Module):
    """A DiT block with adaLN-Zero conditioning (the official DiT block; Figure 3, left).

    ``adaLN_modulation = Sequential(SiLU, Linear(D, 6D))`` maps the condition ``c`` to six
    ``(N, D)`` vectors, in this order (the official one): ``shift_msa, scale_msa, gate_msa,
    shift_mlp, scale_mlp, gate_mlp``. Then::

        x = x + gate_msa * Attention(modulate(norm1(x), shift_msa, scale_msa))
        x = x + gate_mlp * MLP(modulate(norm2(x), shift_mlp, scale_mlp))

    with the gates broadcast over tokens and ``modulate(h, shift, scale) = h * (1 + scale) + shift``.
    In the paper's symbols gate, shift, scale are alpha, beta, gamma (not the noise schedule's
    alpha and beta). ``DiT.initialize_weights`` zeroes ``adaLN_modulation``,
    so all gates are 0 at init and the block is the identity.
    """

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0, fused_attn: bool = True):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads, fused_attn=fused_attn)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size, bias=True))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``x``: tokens ``(N, T, D)``; ``c``: condition ``(N, D)``. Returns ``(N, T, D)``.

        The two equations of the class docstring, with the submodules built in ``__init__``. The
        six vectors come from ``self.adaLN_modulation(c)``, ``(N, 6D)``, in the order listed
        above; each is ``(N, D)``, one per sample, and acts on every token of its sample.
        """
        # BEGIN SOLUTION ch04 difficulty=2 minutes=25
        # (N, D) -> (N, 6D) -> six (N, D) vectors, in the official order
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c).chunk(6, dim=1)
        # x = x + alpha_1 * Attention(LN(x) * (1 + gamma_1) + beta_1)   (modulate; the paper writes gamma_1 * LN(x):
        #     the same layer with 1 + gamma_1 in place of gamma_1, as in the official code, so gamma_1 = 0 leaves LN(x))
        x = x + gate_msa.unsqueeze(1) * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        # x = x + alpha_2 * MLP(LN(x) * (1 + gamma_2) + beta_2)
        x = x + gate_mlp.unsqueeze(1) * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x
        # END SOLUTION


class AdaLNBlock(nn.Module):
    """adaLN block (Figure 3 ablation): shift/scale modulated LayerNorms, no gates.

    ``adaLN_modulation`` outputs ``4D``: ``shift_msa, scale_msa, shift_mlp, scale_mlp``. It keeps
    the ordinary Xavier initialisation (that is what distinguishes it from adaLN-Zero), so the
    block is NOT the identity at init.
    """

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0, fused_attn: bool = True):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads, fused_attn=fused_attn)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 4 * hidden_size, bias=True))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``x``: tokens ``(N, T, D)``; ``c``: condition ``(N, D)``. Returns ``(N, T, D)``.

        The adaLN-Zero block's two residual sub-blocks (``DiTBlock``) WITHOUT gates, with the four
        vectors of ``self.adaLN_modulation(c)`` in the order listed above.
        """
        # BEGIN SOLUTION ch11 difficulty=1 minutes=15
        # (N, D) -> four (N, D) vectors
        shift_msa, scale_msa, shift_mlp, scale_mlp = self.adaLN_modulation(c).chunk(4, dim=1)
        # x = x + Attention(LN(x) * (1 + gamma_1) + beta_1)
        x = x + self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        # x = x + MLP(LN(x) * (1 + gamma_2) + beta_2)
        return x + self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        # END SOLUTION


class CrossAttentionBlock(nn.Module):
    """Cross-attention block (Figure 3): self-attn, then cross-attn to ``[t_emb, y_emb]``, then MLP."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0, fused_attn: bool = True):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads, fused_attn=fused_attn)
        self.norm_cross = nn.LayerNorm(hidden_size, eps=1e-6)
        self.cross_attn = CrossAttention(hidden_size, num_heads, fused_attn=fused_attn)
        self.norm2 = nn.LayerNorm(hidden_size, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``c`` here is the condition *sequence* ``(N, 2, D)`` = ``[t_emb, y_emb]``.

        Three pre-norm residual sub-blocks, in this order: ``x + attn(norm1(x))``, then
        ``x + cross_attn(norm_cross(x), c)`` (queries from the tokens, keys/values from ``c``),
        then ``x + mlp(norm2(x))``. Returns ``(N, T, D)``.
        """
        # BEGIN SOLUTION ch11 difficulty=1 minutes=15
        x = x + self.attn(self.norm1(x))
        # x = x + CrossAttention(LN(x), [t_emb, y_emb])
        x = x + self.cross_attn(self.norm_cross(x), c)
        return x + self.mlp(self.norm2(x))
        # END SOLUTION


class InContextBlock(nn.Module):
    """Plain ViT block; the condition arrives as 2 extra tokens in ``x`` (``c`` is ignored)."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float = 4.0, fused_attn: bool = True):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, eps=1e-6)
        self.attn = Attention(hidden_size, num_heads, fused_attn=fused_attn)
        self.norm2 = nn.LayerNorm(hidden_size, eps=1e-6)
        self.mlp = Mlp(hidden_size, int(hidden_size * mlp_ratio))

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


# conditioning name -> block class; DiT(conditioning=...) picks from here
BLOCKS = {
    "adaLN-Zero": DiTBlock,
    "adaLN": AdaLNBlock,
    "cross-attention": CrossAttentionBlock,
    "in-context": InContextBlock,
}
