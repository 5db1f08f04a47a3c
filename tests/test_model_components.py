"""The DiT building blocks against naive references and frozen conventions."""
from __future__ import annotations

import math

import pytest
import torch

from minidit.models import (Attention, CrossAttention, LabelEmbedder, PatchEmbed, drop_labels,
                            get_1d_sincos_pos_embed, get_2d_sincos_pos_embed, modulate, patchify,
                            timestep_embedding, unpatchify)
from minidit.models.attention import naive_attention


def naive_patchify(x, p):
    """The slow obvious loop: token (i, j) holds x[n, c, i*p + a, j*p + b] at feature (a*p + b)*C + c."""
    n, c, h, w = x.shape
    out = torch.empty(n, (h // p) * (w // p), p * p * c)
    for i in range(h // p):
        for j in range(w // p):
            for a in range(p):
                for b in range(p):
                    for ch in range(c):
                        out[:, i * (w // p) + j, (a * p + b) * c + ch] = x[:, ch, i * p + a, j * p + b]
    return out


def test_patchify_matches_naive_loop_and_round_trips():
    x = torch.randn(2, 3, 8, 8)
    for p in (1, 2, 4):
        tokens = patchify(x, p)
        assert torch.equal(tokens, naive_patchify(x, p))
        assert torch.equal(unpatchify(tokens, p, 3), x)


def test_unpatchify_matches_official_einsum_convention():
    n, h, p, c = 2, 4, 2, 3
    tokens = torch.randn(n, h * h, p * p * c)
    # the official DiT: reshape to (n, h, w, p, q, c) and einsum('nhwpqc->nchpwq')
    ref = torch.einsum("nhwpqc->nchpwq", tokens.reshape(n, h, h, p, p, c)).reshape(n, c, h * p, h * p)
    assert torch.equal(unpatchify(tokens, p, c), ref)


def test_unpatchify_rejects_non_square_token_count():
    with pytest.raises(ValueError, match="square"):
        unpatchify(torch.randn(1, 12, 8), 2, 2)


def test_patch_conv_is_a_linear_map_on_patchified_tokens_with_cpq_weight_order():
    emb = PatchEmbed(patch_size=2, in_channels=3, hidden_size=16)
    x = torch.randn(2, 3, 8, 8)
    w = emb.proj.weight                                  # (D, C, p, q)
    w_pqc = w.permute(0, 2, 3, 1).reshape(16, -1)        # reorder to the (p, q, c) token order
    ref = patchify(x, 2) @ w_pqc.T + emb.proj.bias
    assert torch.allclose(emb(x), ref, atol=1e-5)
    # the conv's own flattening (c, p, q) is NOT the token order
    assert not torch.allclose(emb(x), patchify(x, 2) @ w.reshape(16, -1).T + emb.proj.bias, atol=1e-3)


def test_pos_embed_frozen_values_sin_first_column_first():
    pe = get_2d_sincos_pos_embed(8, 2)                   # 2x2 grid, 4 channels per axis, omega = [1, 1/100]
    assert pe.dtype == torch.float32 and pe.shape == (4, 8)
    s1, s01, c1, c01 = 0.8414709848, 0.0099998333, 0.5403023059, 0.9999500004
    expected = torch.tensor([
        [0, 0, 1, 1, 0, 0, 1, 1],                        # row 0, col 0
        [s1, s01, c1, c01, 0, 0, 1, 1],                  # row 0, col 1: first half = column
        [0, 0, 1, 1, s1, s01, c1, c01],                  # row 1, col 0: second half = row
        [s1, s01, c1, c01, s1, s01, c1, c01],
    ])
    assert torch.allclose(pe, expected, atol=1e-7)


def test_pos_embed_1d_is_float64_and_matches_formula():
    pos = torch.tensor([0.0, 3.0, 7.5])
    emb = get_1d_sincos_pos_embed(6, pos)
    assert emb.dtype == torch.float64 and emb.shape == (3, 6)
    for m, p in enumerate(pos.tolist()):
        for i in range(3):
            omega = 1 / 10000 ** (i / 3)
            assert emb[m, i].item() == pytest.approx(math.sin(p * omega), abs=1e-12)
            assert emb[m, 3 + i].item() == pytest.approx(math.cos(p * omega), abs=1e-12)


def test_pos_embed_in_model_matches_function():
    from minidit.models import DiT
    m = DiT(input_size=8, patch_size=2, hidden_size=32, depth=1, num_heads=4, num_classes=10)
    assert torch.equal(m.pos_embed[0], get_2d_sincos_pos_embed(32, 4))


def test_timestep_embedding_cos_first_against_float64_formula():
    t = torch.tensor([0.0, 1.0, 17.0, 999.0])
    emb = timestep_embedding(t, 256)
    assert emb.shape == (4, 256) and emb.dtype == torch.float32
    for n, tv in enumerate(t.tolist()):
        for i in (0, 1, 5, 64, 127):
            f = math.exp(-math.log(10000) * i / 128)     # /128, not /127 (diffusers' default shift)
            assert emb[n, i].item() == pytest.approx(math.cos(tv * f), abs=2e-4)
            assert emb[n, 128 + i].item() == pytest.approx(math.sin(tv * f), abs=2e-4)
    assert torch.equal(timestep_embedding(torch.tensor([0.0]), 4), torch.tensor([[1.0, 1.0, 0.0, 0.0]]))


def test_timestep_embedding_odd_dim_zero_padded():
    emb = timestep_embedding(torch.tensor([3.0, 4.0]), 7)
    assert emb.shape == (2, 7) and torch.equal(emb[:, -1], torch.zeros(2))
    assert torch.equal(emb[:, :6], timestep_embedding(torch.tensor([3.0, 4.0]), 6))


def test_drop_labels_semantics():
    y = torch.arange(8)
    assert torch.equal(drop_labels(y, 0.0, 10), y)
    assert torch.equal(drop_labels(y, 1.0, 10), torch.full((8,), 10))
    force = torch.tensor([1, 0, 0, 1, 0, 0, 0, 1])
    assert torch.equal(drop_labels(y, 0.0, 10, force), torch.tensor([10, 1, 2, 10, 4, 5, 6, 10]))
    assert torch.equal(y, torch.arange(8))               # input untouched
    dropped = (drop_labels(torch.zeros(20000, dtype=torch.long), 0.1, 10) == 10).float().mean()
    assert abs(dropped.item() - 0.1) < 0.01


def test_label_embedder_table_and_modes():
    emb = LabelEmbedder(10, 8, dropout_prob=0.1)
    assert emb.embedding_table.num_embeddings == 11     # last row = null class
    assert LabelEmbedder(10, 8, dropout_prob=0.0).embedding_table.num_embeddings == 10
    emb_all = LabelEmbedder(10, 8, dropout_prob=1.0)
    y = torch.tensor([1, 2, 3])
    emb_all.eval()
    assert torch.equal(emb_all(y), emb_all.embedding_table.weight[y])      # no dropping at eval
    emb_all.train()
    assert torch.equal(emb_all(y), emb_all.embedding_table.weight[[10, 10, 10]])
    emb_all.eval()
    forced = emb_all(y, force_drop_ids=torch.tensor([0, 1, 0]))
    assert torch.equal(forced, emb_all.embedding_table.weight[[1, 10, 3]])


def test_modulate_broadcasts_per_sample():
    x, shift, scale = torch.randn(2, 3, 4), torch.randn(2, 4), torch.randn(2, 4)
    out = modulate(x, shift, scale)
    for n in range(2):
        for t in range(3):
            assert torch.allclose(out[n, t], x[n, t] * (1 + scale[n]) + shift[n])


def test_fused_and_naive_attention_agree():
    attn = Attention(32, 4, fused_attn=True)
    x = torch.randn(2, 10, 32)
    fused = attn(x)
    attn.fused_attn = False
    assert torch.allclose(fused, attn(x), atol=1e-5)
    cross = CrossAttention(32, 4, fused_attn=True)
    ctx = torch.randn(2, 2, 32)
    a = cross(x, ctx)
    cross.fused_attn = False
    assert torch.allclose(a, cross(x, ctx), atol=1e-5)


def test_attention_qkv_rows_are_q_k_v():
    """Rows [0:D] of qkv make q, [D:2D] k, [2D:3D] v: check against a per-head written-out version."""
    D, H = 16, 2
    attn = Attention(D, H, fused_attn=False)
    x = torch.randn(1, 5, D)
    w, b = attn.qkv.weight, attn.qkv.bias
    q, k, v = (x @ w[i * D:(i + 1) * D].T + b[i * D:(i + 1) * D] for i in range(3))
    heads = []
    for h in range(H):
        sl = slice(h * D // H, (h + 1) * D // H)
        a = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(D // H), dim=-1)
        heads.append(a @ v[..., sl])
    ref = attn.proj(torch.cat(heads, dim=-1))
    assert torch.allclose(attn(x), ref, atol=1e-5)
    assert torch.allclose(naive_attention(q[:, None], k[:, None], v[:, None])[:, 0],
                          torch.softmax(q @ k.transpose(1, 2) / math.sqrt(D), -1) @ v, atol=1e-5)
