"""The DiT model: exact parameter counts, the official state dict, init identities, shapes, errors."""
from __future__ import annotations

import pytest
import torch

from minidit.models import (DiT, DiT_models, OFFICIAL_MODELS, DiTBlock, get_model)

# measured on the official DiT code (input 32, 1000 classes, learn_sigma), pos_embed included
PARAMS = {
    "DiT-XL/2": 675_129_632, "DiT-XL/4": 675_074_432, "DiT-XL/8": 675_683_072,
    "DiT-L/2": 458_102_816, "DiT-L/4": 458_053_760, "DiT-L/8": 458_594_816,
    "DiT-B/2": 130_512_416, "DiT-B/4": 130_475_648, "DiT-B/8": 130_881_536,
    "DiT-S/2": 32_963_360, "DiT-S/4": 32_945_024, "DiT-S/8": 33_148_160,
}


def tiny(**kw) -> DiT:
    """A small DiT on 8x8 inputs; non-default options through kw."""
    args = dict(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2, num_heads=4,
                num_classes=10)
    args.update(kw)
    return DiT(**args)


def randomize(model: DiT, std: float = 0.1) -> DiT:
    """Non-zero weights everywhere (except the frozen pos_embed), so outputs are non-trivial."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name != "pos_embed":
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


def test_registry_has_official_and_cpu_families():
    assert OFFICIAL_MODELS == list(PARAMS)
    for fam in ("T", "N", "P"):
        for p in (1, 2, 4):
            assert f"DiT-{fam}/{p}" in DiT_models


@pytest.mark.parametrize("name", list(PARAMS))
def test_exact_parameter_counts(name):
    with torch.device("meta"):
        model = DiT_models[name]()
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name]


def test_cpu_family_shapes():
    with torch.device("meta"):
        for name, (depth, dim, heads) in {"DiT-P/2": (2, 64, 2), "DiT-N/2": (4, 96, 4),
                                          "DiT-T/2": (6, 128, 4)}.items():
            m = get_model(name, input_size=8, in_channels=1, num_classes=10)
            assert len(m.blocks) == depth and m.pos_embed.shape == (1, 16, dim)
            assert m.blocks[0].attn.num_heads == heads


def expected_state_dict(depth, D, C, p, T, num_classes, out_channels):
    """The official DiT's state dict, written out by hand from its naming (in registration order)."""
    keys = [("pos_embed", (1, T, D)),
            ("x_embedder.proj.weight", (D, C, p, p)), ("x_embedder.proj.bias", (D,)),
            ("t_embedder.mlp.0.weight", (D, 256)), ("t_embedder.mlp.0.bias", (D,)),
            ("t_embedder.mlp.2.weight", (D, D)), ("t_embedder.mlp.2.bias", (D,)),
            ("y_embedder.embedding_table.weight", (num_classes + 1, D))]
    for i in range(depth):
        b = f"blocks.{i}."
        keys += [(b + "attn.qkv.weight", (3 * D, D)), (b + "attn.qkv.bias", (3 * D,)),
                 (b + "attn.proj.weight", (D, D)), (b + "attn.proj.bias", (D,)),
                 (b + "mlp.fc1.weight", (4 * D, D)), (b + "mlp.fc1.bias", (4 * D,)),
                 (b + "mlp.fc2.weight", (D, 4 * D)), (b + "mlp.fc2.bias", (D,)),
                 (b + "adaLN_modulation.1.weight", (6 * D, D)), (b + "adaLN_modulation.1.bias", (6 * D,))]
    keys += [("final_layer.linear.weight", (p * p * out_channels, D)),
             ("final_layer.linear.bias", (p * p * out_channels,)),
             ("final_layer.adaLN_modulation.1.weight", (2 * D, D)),
             ("final_layer.adaLN_modulation.1.bias", (2 * D,))]
    return keys


def test_state_dict_matches_official_naming_and_shapes():
    with torch.device("meta"):
        model = DiT_models["DiT-S/2"]()
    got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert got == expected_state_dict(12, 384, 4, 2, 256, 1000, 8)
    assert not model.pos_embed.requires_grad


def test_output_shapes_and_learn_sigma():
    x = torch.randn(3, 4, 8, 8)
    t, y = torch.tensor([0, 10, 999]), torch.tensor([0, 3, 10])
    assert tiny()(x, t, y).shape == (3, 8, 8, 8)
    assert tiny(learn_sigma=False)(x, t, y).shape == (3, 4, 8, 8)
    m1 = tiny(in_channels=1, patch_size=1)
    assert m1(torch.randn(2, 1, 8, 8), torch.tensor([5, 6]), torch.tensor([1, 2])).shape == (2, 2, 8, 8)


def test_fresh_dit_is_identity_per_block_and_outputs_zero():
    model = tiny(depth=3)
    x, c = torch.randn(2, 16, 32), torch.randn(2, 32)
    for block in model.blocks:
        assert torch.equal(block(x, c), x)
    out = model(torch.randn(2, 4, 8, 8), torch.tensor([1, 500]), torch.tensor([2, 3]))
    assert torch.equal(out, torch.zeros_like(out))


def test_initialization_statistics():
    model = DiT_models["DiT-S/2"](input_size=16)
    w = model.blocks[0].mlp.fc1.weight                       # Xavier-uniform: bound sqrt(6/(fan_in+fan_out))
    bound = (6 / (w.shape[0] + w.shape[1])) ** 0.5
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    assert torch.count_nonzero(model.blocks[0].attn.qkv.bias) == 0
    conv = model.x_embedder.proj.weight                      # Xavier on (D, C*p*p)
    assert conv.abs().max() <= (6 / (384 + 16)) ** 0.5
    for t in (model.y_embedder.embedding_table.weight, model.t_embedder.mlp[0].weight):
        assert abs(t.std().item() - 0.02) < 0.002
    assert torch.count_nonzero(model.final_layer.linear.weight) == 0


def test_gradient_checkpointing_gives_same_grads():
    torch.manual_seed(0)
    a = randomize(tiny())
    b = tiny(grad_checkpointing=True)
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    x, t, y = torch.randn(2, 4, 8, 8), torch.tensor([3, 7]), torch.tensor([1, 2])
    a(x, t, y).square().sum().backward()
    b(x, t, y).square().sum().backward()
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        if pa.grad is not None:
            assert torch.allclose(pa.grad, pb.grad, atol=1e-6), n


def test_condition_computed_once_and_dropout_only_in_training():
    model = randomize(tiny(class_dropout_prob=1.0))      # drop every label while training
    x, t = torch.randn(2, 4, 8, 8), torch.tensor([3, 7])
    null = torch.full((2,), 10)
    model.train()
    torch.manual_seed(0)
    assert torch.allclose(model(x, t, torch.tensor([1, 2])), model(x, t, null))
    model.eval()
    assert not torch.allclose(model(x, t, torch.tensor([1, 2])), model(x, t, null))


# --- classifier-free guidance ----------------------------------------------------------------------

def cfg_setup(**kw):
    model = randomize(tiny(**kw)).eval()
    c = model.in_channels
    half = torch.randn(2, c, 8, 8)
    x = torch.cat([half, half])
    t = torch.tensor([5, 9, 5, 9])
    y = torch.tensor([1, 2, 10, 10])
    out = model(x, t, y)
    return model, x, t, y, out[:2], out[2:]


def test_cfg_default_guides_first_three_channels_of_four():
    model, x, t, y, cond, uncond = cfg_setup()
    s = 4.0
    got = model.forward_with_cfg(x, t, y, s)
    guided = uncond[:, :3] + s * (cond[:, :3] - uncond[:, :3])
    assert torch.allclose(got[:2, :3], guided, atol=1e-5)
    assert torch.allclose(got[2:, :3], guided, atol=1e-5)          # both halves hold the guided eps
    full = torch.cat([cond, uncond])
    assert torch.equal(got[:, 3:], full[:, 3:])                   # channel 3 and sigma: unguided
    assert not torch.allclose(got[:2, 3], cond[:, 3] * s, atol=1e-3)


def test_cfg_guide_all_channels_option():
    model, x, t, y, cond, uncond = cfg_setup()
    s = 2.5
    got = model.forward_with_cfg(x, t, y, s, guide_all_channels=True)
    guided = uncond[:, :4] + s * (cond[:, :4] - uncond[:, :4])
    assert torch.allclose(got[:2, :4], guided, atol=1e-5)
    assert torch.equal(got[:, 4:], torch.cat([cond, uncond])[:, 4:])  # sigma never guided


def test_cfg_one_channel_model_guides_all_noise_channels():
    model, x, t, y, cond, uncond = cfg_setup(in_channels=1)
    got = model.forward_with_cfg(x, t, y, 3.0)
    assert torch.allclose(got[:2, :1], uncond[:, :1] + 3.0 * (cond[:, :1] - uncond[:, :1]), atol=1e-5)
    assert torch.equal(got[:, 1:], torch.cat([cond, uncond])[:, 1:])


def test_cfg_scale_one_is_conditional_output():
    model, x, t, y, cond, uncond = cfg_setup()
    got = model.forward_with_cfg(x, t, y, 1.0, guide_all_channels=True)
    assert torch.allclose(got[:2, :4], cond[:, :4], atol=1e-6)


# --- clear errors ----------------------------------------------------------------------------------

def test_unknown_model_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"Did you mean 'DiT-XL/2'.*DiT-S/8"):
        get_model("DiT-XL2")


def test_wrong_input_size_and_bad_labels_and_t_shape():
    model = tiny()
    t, y = torch.tensor([1, 2]), torch.tensor([1, 2])
    with pytest.raises(ValueError, match="built for 8x8 inputs"):
        model(torch.randn(2, 4, 16, 16), t, y)
    with pytest.raises(ValueError, match=r"class ids must lie in \[0, 10\].*null"):
        model(torch.randn(2, 4, 8, 8), t, torch.tensor([1, 11]))
    with pytest.raises(ValueError, match=r"class ids"):
        model(torch.randn(2, 4, 8, 8), t, torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match=r"expected t of shape \(2,\)"):
        model(torch.randn(2, 4, 8, 8), torch.tensor([1, 2, 3]), y)
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        DiT(input_size=9, patch_size=2, hidden_size=32, depth=1, num_heads=4)
    with pytest.raises(ValueError, match="unknown conditioning"):
        tiny(conditioning="film")


# --- conditioning variants (Figure 3 / 5) ----------------------------------------------------------

@pytest.mark.parametrize("conditioning", ["adaLN-Zero", "adaLN", "cross-attention", "in-context"])
def test_conditioning_variants_run_and_train(conditioning):
    model = tiny(conditioning=conditioning)
    x, t, y = torch.randn(2, 4, 8, 8), torch.tensor([3, 7]), torch.tensor([1, 2])
    out = model(x, t, y)
    assert out.shape == (2, 8, 8, 8)
    assert torch.count_nonzero(out) == 0      # final linear zero-initialised in every variant
    out.sum().backward()
    assert model.final_layer.linear.weight.grad.abs().sum() > 0
    # with non-zero weights the label reaches the output through the variant's conditioning path
    randomize(model).eval()
    assert not torch.allclose(model(x, t, y), model(x, t, torch.tensor([5, 6])))


def test_adaln_zero_blocks_identity_but_adaln_blocks_not():
    x, c = torch.randn(2, 16, 32), torch.randn(2, 32)
    assert torch.equal(tiny(conditioning="adaLN-Zero").blocks[0](x, c), x)
    assert not torch.allclose(tiny(conditioning="adaLN").blocks[0](x, c), x)
    assert tiny(conditioning="adaLN").blocks[0].adaLN_modulation[1].weight.abs().sum() > 0


def test_in_context_extra_tokens_reach_the_blocks():
    model = tiny(conditioning="in-context")
    seen = []
    model.blocks[0].register_forward_hook(lambda m, a, o: seen.append(a[0].shape))
    model(torch.randn(2, 4, 8, 8), torch.tensor([3, 7]), torch.tensor([1, 2]))
    assert seen == [torch.Size([2, 16 + 2, 32])]


def test_block_matches_written_out_equations():
    """DiTBlock.forward against the adaLN-Zero equations written out with plain tensor ops."""
    block = DiTBlock(32, 4)
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(std=0.2)
    x, c = torch.randn(2, 5, 32), torch.randn(2, 32)
    mod = block.adaLN_modulation[1](torch.nn.functional.silu(c))
    s1, sc1, g1, s2, sc2, g2 = [mod[:, i * 32:(i + 1) * 32, None].transpose(1, 2) for i in range(6)]

    def ln(v):
        return (v - v.mean(-1, keepdim=True)) / torch.sqrt(v.var(-1, unbiased=False, keepdim=True) + 1e-6)

    h = x + g1 * block.attn(ln(x) * (1 + sc1) + s1)
    h = h + g2 * block.mlp(ln(h) * (1 + sc2) + s2)
    assert torch.allclose(block(x, c), h, atol=1e-5)
