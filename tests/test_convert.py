"""Official checkpoints in, diffusers out and back: equal outputs, exact round trips, clear errors."""
from __future__ import annotations

import argparse

import pytest
import torch

from minidit.convert import infer_config, load_official_checkpoint
from minidit.models import DiT, get_model
from test_models import randomize, tiny


def digits_model(name="DiT-P/2"):
    return get_model(name, input_size=8, in_channels=1, num_classes=10)


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# --- loading checkpoints ----------------------------------------------------------------------------

def test_load_plain_state_dict_infers_config(tmp_path):
    src = randomize(digits_model())
    torch.save(src.state_dict(), tmp_path / "dit.pt")
    model = load_official_checkpoint(tmp_path / "dit.pt")
    assert model.config == {**src.config}
    assert not model.training
    assert_same_weights(model, src)


def test_load_training_checkpoint_prefers_ema(tmp_path):
    ema, raw = randomize(digits_model()), digits_model()
    args = argparse.Namespace(model="DiT-P/2", lr=1e-4)      # the official train.py pickles its args
    torch.save({"model": raw.state_dict(), "ema": ema.state_dict(), "opt": {}, "args": args}, tmp_path / "c.pt")
    target = digits_model()
    out = load_official_checkpoint(tmp_path / "c.pt", model=target)
    assert out is target and target.training
    assert_same_weights(target, ema)
    torch.save({"model": raw.state_dict()}, tmp_path / "m.pt")
    assert_same_weights(load_official_checkpoint(tmp_path / "m.pt"), raw)


def test_load_strips_ddp_and_compile_prefixes_and_reads_safetensors(tmp_path):
    from safetensors.torch import save_file
    src = randomize(digits_model())
    torch.save({"ema": {"module." + k: v for k, v in src.state_dict().items()}}, tmp_path / "ddp.pt")
    assert_same_weights(load_official_checkpoint(tmp_path / "ddp.pt"), src)
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(tmp_path / "w.safetensors"))
    assert_same_weights(load_official_checkpoint(tmp_path / "w.safetensors"), src)


def test_infer_config_names_official_shapes_and_variants():
    with torch.device("meta"):
        xl = get_model("DiT-XL/2")
        cfg = infer_config(xl.state_dict())
    assert cfg == {k: v for k, v in xl.config.items() if k in cfg}
    assert cfg["num_heads"] == 16 and cfg["input_size"] == 32 and cfg["num_classes"] == 1000
    for cond in ("adaLN", "cross-attention", "in-context"):
        assert infer_config(tiny(conditioning=cond).state_dict())["conditioning"] == cond


def test_mismatched_checkpoint_lists_keys_names_config_and_loads_nothing(tmp_path):
    sd = randomize(digits_model("DiT-P/2")).state_dict()
    sd["extra.weight"] = torch.zeros(3)
    torch.save(sd, tmp_path / "p2.pt")
    target = digits_model("DiT-N/2")                             # depth 4, D 96: everything differs
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ValueError) as err:
        load_official_checkpoint(tmp_path / "p2.pt", model=target)
    msg = str(err.value)
    assert "missing keys (20)" in msg and "blocks.2.attn.qkv.weight" in msg
    assert "unexpected keys (1): extra.weight" in msg
    assert "mis-shaped keys" in msg and "pos_embed (1, 16, 64) in the checkpoint vs (1, 16, 96) in the model" in msg
    assert "looks like DiT-P/2(input_size=8, in_channels=1, num_classes=10, learn_sigma=True)" in msg
    assert "nothing was loaded" in msg
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_missing_checkpoint_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_official_checkpoint(tmp_path / "nope.pt")
    torch.save({"ema": {"foo": torch.zeros(1)}}, tmp_path / "foo.pt")
    with pytest.raises(ValueError, match="not look like a DiT"):
        load_official_checkpoint(tmp_path / "foo.pt", model=digits_model())


# --- diffusers ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [dict(), dict(in_channels=1, patch_size=1, learn_sigma=False)])
def test_to_diffusers_same_outputs_and_exact_round_trip(kw):
    from minidit.convert import from_diffusers, to_diffusers
    model = randomize(tiny(**kw), std=0.2).eval()
    dm = to_diffusers(model).eval()
    c = model.in_channels
    x, t, y = torch.randn(3, c, 8, 8), torch.tensor([0, 417, 999]), torch.tensor([0, 5, 10])
    with torch.no_grad():
        ours = model(x, t, y)
        theirs = dm(x, timestep=t, class_labels=y).sample
    assert ours.abs().max() > 1.0                                # a non-trivial output
    assert (ours - theirs).abs().max() <= 1e-5
    back = from_diffusers(dm)
    assert back.config == model.config
    assert_same_weights(back, model)
    # diffusers' default timestep frequencies (/127 instead of /128) change the output
    for block in dm.transformer_blocks:
        block.norm1.emb.time_proj.downscale_freq_shift = 1
    with torch.no_grad():
        assert (model(x, t, y) - dm(x, timestep=t, class_labels=y).sample).abs().max() > 1e-3


def test_diffusers_conversion_errors():
    from minidit.convert import from_diffusers, to_diffusers
    with pytest.raises(ValueError, match="only has the official architecture"):
        to_diffusers(tiny(conditioning="in-context"))
    dm = to_diffusers(randomize(tiny()))
    with torch.no_grad():
        dm.transformer_blocks[1].norm1.emb.class_embedder.embedding_table.weight.add_(1.0)
    with pytest.raises(ValueError, match="block 1 .* own class_embedder"):
        from_diffusers(dm)


def test_model_without_label_dropout_exports_with_a_null_row():
    from minidit.convert import from_diffusers, to_diffusers
    model = randomize(tiny(class_dropout_prob=0.0)).eval()
    dm = to_diffusers(model).eval()
    x, t, y = torch.randn(2, 4, 8, 8), torch.tensor([3, 9]), torch.tensor([0, 9])
    with torch.no_grad():
        assert (model(x, t, y) - dm(x, timestep=t, class_labels=y).sample).abs().max() <= 1e-5
    assert_same_weights(from_diffusers(dm, class_dropout_prob=0.0), model)
