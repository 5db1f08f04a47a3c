"""The DiT model, one concept per module, in the paper's order.

patch_embed -> pos_embed -> timestep_embed -> label_embed -> attention -> mlp -> block ->
final_layer -> dit -> configs.
"""
from .attention import Attention, CrossAttention, naive_attention
from .block import AdaLNBlock, CrossAttentionBlock, DiTBlock, InContextBlock, modulate
from .configs import DiT_models, OFFICIAL_MODELS, get_model
from .configs import (DiT_B_2, DiT_B_4, DiT_B_8, DiT_L_2, DiT_L_4, DiT_L_8, DiT_S_2, DiT_S_4, DiT_S_8,
                      DiT_XL_2, DiT_XL_4, DiT_XL_8)
from .dit import CONDITIONINGS, DiT
from .final_layer import FinalLayer, PlainFinalLayer
from .label_embed import LabelEmbedder, drop_labels
from .mlp import Mlp
from .patch_embed import PatchEmbed, patchify, unpatchify
from .pos_embed import get_1d_sincos_pos_embed, get_2d_sincos_pos_embed
from .timestep_embed import TimestepEmbedder, timestep_embedding

__all__ = [
    "DiT", "DiT_models", "OFFICIAL_MODELS", "get_model", "CONDITIONINGS",
    "DiT_XL_2", "DiT_XL_4", "DiT_XL_8", "DiT_L_2", "DiT_L_4", "DiT_L_8",
    "DiT_B_2", "DiT_B_4", "DiT_B_8", "DiT_S_2", "DiT_S_4", "DiT_S_8",
    "PatchEmbed", "patchify", "unpatchify", "get_1d_sincos_pos_embed", "get_2d_sincos_pos_embed",
    "TimestepEmbedder", "timestep_embedding", "LabelEmbedder", "drop_labels",
    "Attention", "CrossAttention", "naive_attention", "Mlp",
    "modulate", "DiTBlock", "AdaLNBlock", "CrossAttentionBlock", "InContextBlock",
    "FinalLayer", "PlainFinalLayer",
]
