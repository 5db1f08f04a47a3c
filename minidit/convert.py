"""Loading the official DiT checkpoints, and converting to / from diffusers.

``load_official_checkpoint`` reads the released ``DiT-XL-2-256x256.pt`` (a plain state dict), a
training checkpoint of the official ``train.py`` or of minidit (a dict with ``"ema"`` and/or
``"model"``; the EMA weights are preferred, they are the ones to sample with) or a ``.safetensors``
file. minidit's default DiT has exactly the official parameter names and shapes, so no renaming is
needed. Everything is validated *before* ``load_state_dict``: a mismatch raises one error listing
the missing, unexpected and mis-shaped keys and the configuration the checkpoint looks like, and the
model is left untouched.

``to_diffusers`` / ``from_diffusers`` convert to and from ``diffusers.DiTTransformer2DModel``.
The layouts differ in three ways, all handled here:

* diffusers splits the fused ``qkv`` into ``to_q``, ``to_k``, ``to_v`` (our rows ``[q; k; v]``);
* diffusers recomputes the conditioning inside EVERY block (each ``transformer_blocks.i.norm1.emb``
  owns a copy of the timestep MLP and the label table; the final layer reuses block 0's), where
  minidit computes ``c = t_emb + y_emb`` once per forward -- we copy our single embedder into
  every block, and ``from_diffusers`` checks the copies agree;
* diffusers' timestep projection ``Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=1)``
  divides the frequency exponent by ``half - 1 = 127``; the official DiT divides by ``half = 128``
  (``downscale_freq_shift=0``). Left at 1 the outputs differ by up to ~0.3, so ``to_diffusers``
  sets it to 0 on every block. This attribute is not part of the diffusers config: a model saved
  with ``save_pretrained`` and reloaded gets 1 again -- call ``use_official_timestep_frequencies``
  on it after loading.

The diffusers model is also built with ``norm_eps=1e-6`` (its default 1e-5 applies to the MLP's
LayerNorm; the official DiT uses 1e-6 everywhere).
"""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import torch
from torch import nn

from .models.configs import FAMILIES, config_name
from .models.dit import DiT

_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel and torch.compile wrappers


# --- reading a checkpoint ---------------------------------------------------------------------------

def _read(path: Path) -> object:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # the official train.py also pickles its argparse.Namespace of args
        if "Namespace" not in str(err):
            raise
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)


def extract_state_dict(checkpoint: object, prefer: str = "ema") -> dict[str, torch.Tensor]:
    """The model weights inside a checkpoint: ``"ema"`` if present, else ``"model"``, else itself.

    ``prefer="model"`` looks for the trained weights first (sampling without the EMA).
    """
    if not isinstance(checkpoint, dict):
        raise ValueError(f"expected a state dict or a dict with 'ema'/'model', got {type(checkpoint).__name__}")
    if prefer not in ("ema", "model"):
        raise ValueError(f"prefer must be 'ema' or 'model', got {prefer!r}")
    for key in (prefer, "model" if prefer == "ema" else "ema", "state_dict"):
        if isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    state_dict = {}
    for k, v in checkpoint.items():
        if not torch.is_tensor(v):
            raise ValueError(f"checkpoint entry {k!r} is a {type(v).__name__}, not a tensor; this does not look "
                             f"like a DiT state dict (expected keys such as 'pos_embed', 'blocks.0.attn.qkv.weight')")
        for prefix in _PREFIXES:
            if k.startswith(prefix):
                k = k[len(prefix):]
        state_dict[k] = v
    return state_dict


def infer_config(state_dict: dict[str, torch.Tensor]) -> dict:
    """DiT constructor arguments read off a state dict's shapes (and its likely registry name).

    depth from the number of blocks, hidden size / patch size / input channels from
    ``x_embedder.proj``, input size from ``pos_embed``, output channels from ``final_layer.linear``,
    num_classes from the label table (its last row is the null class), the conditioning variant from
    the block keys. The number of heads is not stored in a state dict: it is taken from the matching
    family (e.g. XL -> 16) or ``hidden_size // 64``.
    """
    needed = ("x_embedder.proj.weight", "pos_embed", "final_layer.linear.weight", "y_embedder.embedding_table.weight")
    absent = [k for k in needed if k not in state_dict]
    if absent:
        raise ValueError(f"not a DiT state dict: missing {absent}")
    hidden, in_channels, patch, _ = state_dict["x_embedder.proj.weight"].shape
    tokens = state_dict["pos_embed"].shape[1]
    grid = int(round(tokens ** 0.5))
    depth = len({k.split(".")[1] for k in state_dict if k.startswith("blocks.")})
    out_channels = state_dict["final_layer.linear.weight"].shape[0] // (patch * patch)
    if "blocks.0.cross_attn.q.weight" in state_dict:
        conditioning = "cross-attention"
    elif "blocks.0.adaLN_modulation.1.weight" not in state_dict:
        conditioning = "in-context"
    elif state_dict["blocks.0.adaLN_modulation.1.weight"].shape[0] == 4 * hidden:
        conditioning = "adaLN"
    else:
        conditioning = "adaLN-Zero"
    mlp_hidden = state_dict.get("blocks.0.mlp.fc1.weight", torch.empty(4 * hidden, 0)).shape[0]
    heads = next((h for d, D, h in FAMILIES.values() if (d, D) == (depth, hidden)), max(1, hidden // 64))
    config = dict(input_size=grid * patch, patch_size=patch, in_channels=in_channels, hidden_size=hidden,
                  depth=depth, num_heads=heads, mlp_ratio=mlp_hidden / hidden, class_dropout_prob=0.1,
                  num_classes=state_dict["y_embedder.embedding_table.weight"].shape[0] - 1,
                  learn_sigma=out_channels == 2 * in_channels, conditioning=conditioning)
    return config


def _describe(config: dict) -> str:
    name = config_name(config["depth"], config["hidden_size"], config["patch_size"])
    args = ", ".join(f"{k}={config[k]!r}" for k in ("input_size", "in_channels", "num_classes", "learn_sigma"))
    if config["conditioning"] != "adaLN-Zero":
        args += f", conditioning={config['conditioning']!r}"
    if name:
        return f"{name}({args})"
    return (f"DiT(depth={config['depth']}, hidden_size={config['hidden_size']}, "
            f"patch_size={config['patch_size']}, {args})")


def _list(title: str, items: list[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit]) + (f", ... and {len(items) - limit} more" if len(items) > limit else "")
    return f"\n  {title} ({len(items)}): {shown}"


def check_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Raise one ValueError listing every missing, unexpected and mis-shaped key (nothing is loaded)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    misshaped = [f"{k} {tuple(state_dict[k].shape)} in the checkpoint vs {tuple(v.shape)} in the model"
                 for k, v in expected.items() if k in state_dict and state_dict[k].shape != v.shape]
    if not (missing or unexpected or misshaped):
        return
    msg = f"{source} does not fit this model; nothing was loaded."
    if missing:
        msg += _list("missing keys", missing)
    if unexpected:
        msg += _list("unexpected keys", unexpected)
    if misshaped:
        msg += _list("mis-shaped keys", misshaped, limit=6)
    try:
        guess = _describe(infer_config(state_dict))
        msg += (f"\nThe checkpoint looks like {guess}. Build that model, or call "
                f"load_official_checkpoint(path) without a model to build it from the checkpoint.")
    except ValueError:
        msg += "\nThe checkpoint does not look like a DiT state dict at all."
    raise ValueError(msg)


def load_official_checkpoint(path: str | Path, model: DiT | None = None) -> DiT:
    """Load DiT weights from ``path`` into ``model`` (or into a new DiT built from the checkpoint).

    Accepts the released ``DiT-XL-2-256x256.pt`` (plain state dict), a training checkpoint dict
    with ``"ema"`` (preferred) and/or ``"model"``, or ``.safetensors``. A model built here is
    returned in eval mode (sampling is what a released checkpoint is for, and training mode would
    drop 10% of the labels); a model passed in keeps its mode.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; download DiT-XL-2-256x256.pt from the official "
                                f"release or pass the path of a minidit training checkpoint")
    state_dict = extract_state_dict(_read(path))
    if model is None:
        model = DiT(**infer_config(state_dict)).eval()
    check_state_dict(model, state_dict, source=f"checkpoint {path}")
    model.load_state_dict(state_dict)
    return model


# --- diffusers ------------------------------------------------------------------------------------

def use_official_timestep_frequencies(dit_transformer: nn.Module) -> nn.Module:
    """Make a diffusers DiT embed timesteps like the official DiT (``downscale_freq_shift=0``)."""
    for block in dit_transformer.transformer_blocks:
        block.norm1.emb.time_proj.downscale_freq_shift = 0
    return dit_transformer


def to_diffusers(model: DiT):
    """A ``diffusers.DiTTransformer2DModel`` with minidit's weights and identical outputs.

    Only the official architecture converts (adaLN-Zero, ``mlp_ratio=4``). Call the result as
    ``dm(x, timestep=t, class_labels=y).sample``.
    """
    from diffusers import DiTTransformer2DModel

    cfg = model.config
    if cfg["conditioning"] != "adaLN-Zero" or cfg["mlp_ratio"] != 4.0:
        raise ValueError("diffusers' DiTTransformer2DModel only has the official architecture "
                         "(conditioning='adaLN-Zero', mlp_ratio=4); this model has "
                         f"conditioning={cfg['conditioning']!r}, mlp_ratio={cfg['mlp_ratio']}")
    D, heads = cfg["hidden_size"], cfg["num_heads"]
    dm = DiTTransformer2DModel(
        num_attention_heads=heads, attention_head_dim=D // heads, in_channels=cfg["in_channels"],
        out_channels=model.out_channels, num_layers=cfg["depth"], sample_size=cfg["input_size"],
        patch_size=cfg["patch_size"], activation_fn="gelu-approximate", num_embeds_ada_norm=cfg["num_classes"],
        norm_type="ada_norm_zero", norm_elementwise_affine=False, norm_eps=1e-6)
    use_official_timestep_frequencies(dm)

    src = {k: v.detach() for k, v in model.state_dict().items()}
    table = src["y_embedder.embedding_table.weight"]
    if table.shape[0] == cfg["num_classes"]:
        # diffusers always has the null-class row; a model trained without label dropout never uses it
        table = torch.cat([table, torch.zeros_like(table[:1])])
    sd = {"pos_embed.proj.weight": src["x_embedder.proj.weight"], "pos_embed.proj.bias": src["x_embedder.proj.bias"],
          "proj_out_1.weight": src["final_layer.adaLN_modulation.1.weight"],
          "proj_out_1.bias": src["final_layer.adaLN_modulation.1.bias"],
          "proj_out_2.weight": src["final_layer.linear.weight"], "proj_out_2.bias": src["final_layer.linear.bias"]}
    for i in range(cfg["depth"]):
        d, b = f"transformer_blocks.{i}.", f"blocks.{i}."
        emb = d + "norm1.emb."
        for kind in ("weight", "bias"):
            # the shared conditioning, copied into every diffusers block
            sd[emb + f"timestep_embedder.linear_1.{kind}"] = src[f"t_embedder.mlp.0.{kind}"]
            sd[emb + f"timestep_embedder.linear_2.{kind}"] = src[f"t_embedder.mlp.2.{kind}"]
            # same chunk order: shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp
            sd[d + f"norm1.linear.{kind}"] = src[b + f"adaLN_modulation.1.{kind}"]
            # fused rows [q; k; v] -> three separate projections
            q, k, v = src[b + f"attn.qkv.{kind}"].chunk(3, dim=0)
            sd[d + f"attn1.to_q.{kind}"], sd[d + f"attn1.to_k.{kind}"], sd[d + f"attn1.to_v.{kind}"] = q, k, v
            sd[d + f"attn1.to_out.0.{kind}"] = src[b + f"attn.proj.{kind}"]
            sd[d + f"ff.net.0.proj.{kind}"] = src[b + f"mlp.fc1.{kind}"]
            sd[d + f"ff.net.2.{kind}"] = src[b + f"mlp.fc2.{kind}"]
        sd[emb + "class_embedder.embedding_table.weight"] = table
    dm.load_state_dict({k: v.clone() for k, v in sd.items()}, strict=True)
    dm = dm.to(model.pos_embed.device)
    if model.pos_embed.dtype != torch.float32:
        dm = dm.to(dtype=model.pos_embed.dtype)
    return dm.train(model.training)


def from_diffusers(dit_transformer, class_dropout_prob: float = 0.1, **dit_kwargs) -> DiT:
    """A minidit ``DiT`` from a ``diffusers.DiTTransformer2DModel`` (exact inverse of ``to_diffusers``).

    ``class_dropout_prob=0`` drops diffusers' null-class row. Extra keyword arguments
    (``fused_attn``, ``grad_checkpointing``) go to the DiT constructor.
    """
    cfg = dit_transformer.config
    if cfg.norm_type != "ada_norm_zero" or cfg.activation_fn != "gelu-approximate":
        raise ValueError(f"only adaLN-Zero DiTs with tanh-GELU convert; got norm_type={cfg.norm_type!r}, "
                         f"activation_fn={cfg.activation_fn!r}")
    if abs(cfg.norm_eps - 1e-6) > 1e-12:
        warnings.warn(f"the diffusers model uses norm_eps={cfg.norm_eps} in its MLP LayerNorm; minidit (like "
                      f"the official DiT) uses 1e-6, so outputs will differ slightly", stacklevel=2)
    blocks = dit_transformer.transformer_blocks
    if blocks[0].norm1.emb.time_proj.downscale_freq_shift != 0:
        warnings.warn("the diffusers model embeds timesteps with downscale_freq_shift=1 (frequencies /127); "
                      "minidit uses the official /128, so outputs will differ", stacklevel=2)
    in_channels, out_channels = cfg.in_channels, dit_transformer.out_channels
    if out_channels not in (in_channels, 2 * in_channels):
        raise ValueError(f"out_channels={out_channels} must equal in_channels or 2*in_channels")
    D = cfg.num_attention_heads * cfg.attention_head_dim
    ff_hidden = blocks[0].ff.net[0].proj.out_features
    model = DiT(input_size=cfg.sample_size, patch_size=cfg.patch_size, in_channels=in_channels, hidden_size=D,
                depth=cfg.num_layers, num_heads=cfg.num_attention_heads, mlp_ratio=ff_hidden / D,
                class_dropout_prob=class_dropout_prob, num_classes=cfg.num_embeds_ada_norm,
                learn_sigma=out_channels == 2 * in_channels, **dit_kwargs)

    src = {k: v.detach() for k, v in dit_transformer.state_dict().items()}
    emb0 = "transformer_blocks.0.norm1.emb."
    for i in range(1, cfg.num_layers):
        for name in ("timestep_embedder.linear_1.weight", "timestep_embedder.linear_2.weight",
                     "class_embedder.embedding_table.weight"):
            if not torch.equal(src[f"transformer_blocks.{i}.norm1.emb.{name}"], src[emb0 + name]):
                raise ValueError(f"block {i} of the diffusers model has its own {name}; minidit shares one "
                                 f"conditioning embedder across blocks, so this model cannot be converted exactly")
    table = src[emb0 + "class_embedder.embedding_table.weight"]
    sd = {"pos_embed": model.pos_embed.detach(),
          "x_embedder.proj.weight": src["pos_embed.proj.weight"], "x_embedder.proj.bias": src["pos_embed.proj.bias"],
          "y_embedder.embedding_table.weight": table[: model.y_embedder.embedding_table.num_embeddings],
          "final_layer.adaLN_modulation.1.weight": src["proj_out_1.weight"],
          "final_layer.adaLN_modulation.1.bias": src["proj_out_1.bias"],
          "final_layer.linear.weight": src["proj_out_2.weight"], "final_layer.linear.bias": src["proj_out_2.bias"]}
    for kind in ("weight", "bias"):
        sd[f"t_embedder.mlp.0.{kind}"] = src[emb0 + f"timestep_embedder.linear_1.{kind}"]
        sd[f"t_embedder.mlp.2.{kind}"] = src[emb0 + f"timestep_embedder.linear_2.{kind}"]
        for i in range(cfg.num_layers):
            d, b = f"transformer_blocks.{i}.", f"blocks.{i}."
            sd[b + f"adaLN_modulation.1.{kind}"] = src[d + f"norm1.linear.{kind}"]
            # three projections -> one fused qkv with rows [q; k; v]
            sd[b + f"attn.qkv.{kind}"] = torch.cat([src[d + f"attn1.to_{x}.{kind}"] for x in "qkv"], dim=0)
            sd[b + f"attn.proj.{kind}"] = src[d + f"attn1.to_out.0.{kind}"]
            sd[b + f"mlp.fc1.{kind}"] = src[d + f"ff.net.0.proj.{kind}"]
            sd[b + f"mlp.fc2.{kind}"] = src[d + f"ff.net.2.{kind}"]
    check_state_dict(model, sd, source="converted diffusers model")
    model.load_state_dict({k: v.clone() for k, v in sd.items()})
    weight = src["pos_embed.proj.weight"]
    return model.to(device=weight.device, dtype=weight.dtype).train(dit_transformer.training)
