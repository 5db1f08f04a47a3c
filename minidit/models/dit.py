"""The Diffusion Transformer (DiT): patchify -> N blocks -> final layer -> unpatchify (Figure 3).

Read top to bottom, the forward pass is the paper's Section 3.2:

1. ``x_embedder`` cuts the ``(N, C, I, I)`` noisy latent ``x_t`` into ``T = (I/p)^2`` tokens of
   width ``D`` and the frozen 2-D sin-cos ``pos_embed`` is added;
2. the timestep and the class label are embedded and summed: ``c = t_emb + y_emb``
   (computed once per forward and shared by all blocks);
3. ``depth`` DiT blocks, conditioned on ``c`` (adaLN-Zero by default);
4. the final layer maps every token to ``p*p*out_channels`` numbers, and ``unpatchify`` puts them
   back on the grid: ``(N, out_channels, I, I)`` with ``out_channels = 2C`` when the model also
   predicts the variance (``learn_sigma``).

The default configuration reproduces the official DiT's state dict exactly (names, shapes, order),
so the released checkpoints load (see minidit/convert.py).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from minidit.diffusion.guidance import cfg_combine

from .block import BLOCKS
from .final_layer import FinalLayer, PlainFinalLayer
from .label_embed import LabelEmbedder
from .patch_embed import PatchEmbed, unpatchify
from .pos_embed import get_2d_sincos_pos_embed
from .timestep_embed import TimestepEmbedder

CONDITIONINGS = tuple(BLOCKS)


def append_condition_tokens(x: torch.Tensor, t_emb: torch.Tensor, y_emb: torch.Tensor) -> torch.Tensor:
    """In-context conditioning: append the timestep and class embeddings as two extra tokens.

    ``x``: image tokens ``(N, T, D)``; ``t_emb``, ``y_emb``: ``(N, D)`` each. Returns
    ``(N, T + 2, D)`` = ``[x_1 .. x_T, t_emb, y_emb]`` along the token axis (timestep token
    first, then the class token, both AFTER the image tokens, so ``out[:, :T]`` are the image
    tokens again -- which is how ``DiT.forward`` drops them after the last block).
    """
    # BEGIN SOLUTION ch11 difficulty=1 minutes=10
    # (N, D) -> (N, 1, D) each;  (N, T, D) -> (N, T + 2, D)
    return torch.cat([x, t_emb.unsqueeze(1), y_emb.unsqueeze(1)], dim=1)
    # END SOLUTION


class DiT(nn.Module):
    """Diffusion model with a Transformer backbone.

    Args (names and defaults as in the official DiT, plus three minidit options):
        input_size: side ``I`` of the (latent) input; 32 for 256x256 images through the SD VAE.
        patch_size: ``p``; ``T = (I/p)^2`` tokens.
        in_channels: ``C`` of the input (4 for SD-VAE latents, 1 for grayscale digits).
        hidden_size, depth, num_heads, mlp_ratio: the transformer's width ``D``, number of blocks,
            attention heads and MLP expansion.
        class_dropout_prob: label dropout for classifier-free guidance (adds the null class row).
        num_classes: number of real classes; the null class id is ``num_classes``.
        learn_sigma: also predict the variance -> ``out_channels = 2 * in_channels``.
        conditioning: ``"adaLN-Zero"`` (default, official), ``"adaLN"``, ``"cross-attention"`` or
            ``"in-context"`` -- the paper's Figure 3/5 block designs.
        fused_attn: use ``scaled_dot_product_attention`` (same numbers, faster) instead of the
            explicit softmax formula.
        grad_checkpointing: recompute each block's activations in the backward pass (saves memory
            at ~30% more compute); only active while gradients are being recorded.
    """

    def __init__(self, input_size: int = 32, patch_size: int = 2, in_channels: int = 4,
                 hidden_size: int = 1152, depth: int = 28, num_heads: int = 16, mlp_ratio: float = 4.0,
                 class_dropout_prob: float = 0.1, num_classes: int = 1000, learn_sigma: bool = True,
                 conditioning: str = "adaLN-Zero", fused_attn: bool = True, grad_checkpointing: bool = False):
        super().__init__()
        if conditioning not in BLOCKS:
            raise ValueError(f"unknown conditioning {conditioning!r}; choose one of {list(CONDITIONINGS)}")
        for name, value in (("input_size", input_size), ("patch_size", patch_size), ("in_channels", in_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if input_size % patch_size != 0:
            raise ValueError(f"input_size={input_size} is not divisible by patch_size={patch_size}; "
                             f"choose a patch size that divides the input side")
        if hidden_size % 4 != 0:
            raise ValueError(f"hidden_size={hidden_size} must be divisible by 4 (2-D sin-cos embedding)")
        # every constructor argument, so the same model can be rebuilt (convert.py, flops.py)
        self.config = dict(input_size=input_size, patch_size=patch_size, in_channels=in_channels,
                           hidden_size=hidden_size, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio,
                           class_dropout_prob=class_dropout_prob, num_classes=num_classes,
                           learn_sigma=learn_sigma, conditioning=conditioning, fused_attn=fused_attn,
                           grad_checkpointing=grad_checkpointing)
        self.input_size = input_size
        self.patch_size = patch_size
        self.in_channels = in_channels
        self.out_channels = in_channels * 2 if learn_sigma else in_channels
        self.learn_sigma = learn_sigma
        self.num_heads = num_heads
        self.num_classes = num_classes
        self.conditioning = conditioning
        self.grad_checkpointing = grad_checkpointing

        self.x_embedder = PatchEmbed(patch_size, in_channels, hidden_size)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.y_embedder = LabelEmbedder(num_classes, hidden_size, class_dropout_prob)
        num_patches = (input_size // patch_size) ** 2
        # fixed sin-cos embedding, stored as a frozen parameter (1, T, D) as in the official code
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches, hidden_size), requires_grad=False)
        block_cls = BLOCKS[conditioning]
        self.blocks = nn.ModuleList(
            [block_cls(hidden_size, num_heads, mlp_ratio=mlp_ratio, fused_attn=fused_attn) for _ in range(depth)])
        # the paper: "the final layer norm (adaptive if using adaLN)"
        final_cls = FinalLayer if conditioning in ("adaLN-Zero", "adaLN") else PlainFinalLayer
        self.final_layer = final_cls(hidden_size, patch_size, self.out_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """The official DiT initialisation (the only place weights are initialised).

        Xavier-uniform Linear weights and zero biases (as ViT); the patch conv is Xavier-initialised
        as the ``(D, C*p*p)`` matrix it really is; label table and timestep MLP ~ N(0, 0.02); every
        adaLN modulation and the final linear start at ZERO, so each adaLN-Zero block is the identity
        and the whole DiT outputs 0 at init. (The "adaLN" variant keeps Xavier modulations.)
        """
        def _basic_init(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        self.apply(_basic_init)

        grid = int(self.pos_embed.shape[1] ** 0.5)
        with torch.no_grad():
            # (T, D) -> (1, T, D); float64 maths, float32 storage
            self.pos_embed.copy_(get_2d_sincos_pos_embed(self.pos_embed.shape[-1], grid).unsqueeze(0))

        w = self.x_embedder.proj.weight
        # (D, C, p, p) viewed as (D, C*p*p) so fan_in/fan_out are those of a linear layer
        nn.init.xavier_uniform_(w.data.view(w.shape[0], -1))
        nn.init.zeros_(self.x_embedder.proj.bias)

        nn.init.normal_(self.y_embedder.embedding_table.weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)

        if self.conditioning == "adaLN-Zero":
            for block in self.blocks:
                nn.init.zeros_(block.adaLN_modulation[-1].weight)
                nn.init.zeros_(block.adaLN_modulation[-1].bias)
        if isinstance(self.final_layer, FinalLayer):
            nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
            nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def _check_inputs(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Clear errors for the usual mistakes; returns ``t`` as an ``(N,)`` tensor."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected x of shape (N, {self.in_channels}, {self.input_size}, {self.input_size}), "
                             f"got {tuple(x.shape)}")
        if x.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(f"this DiT was built for {self.input_size}x{self.input_size} inputs "
                             f"(input_size={self.input_size}, patch_size={self.patch_size}), got "
                             f"{x.shape[-2]}x{x.shape[-1]}; resize the input or build the model with "
                             f"input_size={x.shape[-1]} (must be divisible by the patch size)")
        n = x.shape[0]
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(n)  # one timestep for the whole batch
        if t.shape != (n,):
            raise ValueError(f"expected t of shape ({n},) (one timestep per image), got {tuple(t.shape)}")
        if not torch.is_tensor(y) or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            what = type(y).__name__ if not torch.is_tensor(y) else f"a {y.dtype} tensor"
            raise ValueError(f"y must be an integer tensor of class ids, got {what}; pass e.g. "
                             f"torch.tensor([3, 7]) (a float label would be silently truncated)")
        if y.shape != (n,):
            raise ValueError(f"expected y of shape ({n},) (one class id per image), got {tuple(y.shape)}")
        # value check on CPU only: on an accelerator it would force a host sync (and break torch.compile graphs)
        if y.device.type == "cpu" and not torch.compiler.is_compiling():
            top = self.y_embedder.embedding_table.num_embeddings - 1
            if y.numel() and (int(y.min()) < 0 or int(y.max()) > top):
                null = (f"; {self.num_classes} is the null (unconditional) class"
                        if top == self.num_classes else "")
                raise ValueError(f"class ids must lie in [0, {top}]{null}; got values from "
                                 f"{int(y.min())} to {int(y.max())}")
        return t

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Predict the noise (and variance) for noisy inputs ``x = x_t`` (the paper's Figure 3).

        Args:
            x: ``(N, C, I, I)`` noisy latents ``x_t``; t: ``(N,)`` timesteps; y: ``(N,)`` class ids
            (``num_classes`` = the null class).
        Returns:
            ``(N, out_channels, I, I)``: channels ``[:C]`` are ``eps``, ``[C:]`` the variance
            interpolation values when ``learn_sigma``.

        The steps, with the submodules built in ``__init__``:

        1. tokens: ``self.x_embedder`` turns ``x`` into ``(N, T, D)`` tokens, and the fixed
           positional embedding ``self.pos_embed`` ``(1, T, D)`` is added to every sample;
        2. the condition: ``c = t_emb + y_emb``, ``(N, D)``, from ``self.t_embedder(t)`` and
           ``self.y_embedder(y)`` (which drops labels to the null class while training);
        3. ``self.blocks`` in order, each ``(N, T, D), c -> (N, T, D)`` (with ``grad_checkpointing``
           the reference recomputes them in the backward pass to save memory: optional here);
        4. ``self.final_layer(tokens, c)``: ``(N, T, p*p*out_channels)``;
        5. back on the grid with ``unpatchify`` (``self.patch_size``, ``self.out_channels``).
        """
        t = self._check_inputs(x, t, y)
        if self.conditioning in ("cross-attention", "in-context"):
            return self._forward_condition_tokens(x, t, y)  # chapter 11's other two designs
        # BEGIN SOLUTION ch05 difficulty=2 minutes=30
        # (N, C, I, I) -> (N, T, D), plus the fixed position of each patch. The conv's output seen
        # as tokens is a transposed view (D-major in memory); one copy here makes the residual
        # stream token-major, else every LayerNorm and Linear of every block would copy it again.
        x = self.x_embedder(x).contiguous() + self.pos_embed
        t_emb = self.t_embedder(t)  # (N, D)
        y_emb = self.y_embedder(y)  # (N, D); labels dropped to the null class while training
        # c = t_emb + y_emb
        c = t_emb + y_emb
        for block in self.blocks:
            # (N, T, D) -> (N, T, D)
            x = checkpoint(block, x, c, use_reentrant=False) if self._checkpointing() else block(x, c)
        # (N, T, D) -> (N, T, p*p*out_channels)
        x = self.final_layer(x, c)
        # (N, T, p*p*out_channels) -> (N, out_channels, I, I)
        return unpatchify(x, self.patch_size, self.out_channels)
        # END SOLUTION

    def _checkpointing(self) -> bool:
        """Recompute block activations in the backward pass? Only while gradients are recorded."""
        return self.grad_checkpointing and torch.is_grad_enabled()

    def _forward_condition_tokens(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``forward`` for the cross-attention and in-context designs: the condition as tokens.

        Cross-attention blocks read the 2-token sequence ``[t_emb, y_emb]``; in-context, the two
        embeddings are appended to the image tokens and dropped again after the last block. The
        final layer is the plain one (it ignores ``c``).
        """
        x = self.x_embedder(x).contiguous() + self.pos_embed  # (N, C, I, I) -> (N, T, D)
        num_tokens = x.shape[1]
        t_emb, y_emb = self.t_embedder(t), self.y_embedder(y)  # (N, D) each
        if self.conditioning == "cross-attention":
            cond = torch.stack([t_emb, y_emb], dim=1)  # (N, 2, D): the sequence cross-attn reads
        else:
            # (N, T, D) -> (N, T + 2, D): the condition as two extra tokens
            x = append_condition_tokens(x, t_emb, y_emb)
            cond = None
        for block in self.blocks:
            x = checkpoint(block, x, cond, use_reentrant=False) if self._checkpointing() else block(x, cond)
        x = x[:, :num_tokens]  # in-context: (N, T + 2, D) -> (N, T, D), the condition tokens dropped
        # (N, T, D) -> (N, T, p*p*out_channels) -> (N, out_channels, I, I)
        return unpatchify(self.final_layer(x, None), self.patch_size, self.out_channels)

    def forward_with_cfg(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor, cfg_scale: float,
                         guide_all_channels: bool | None = None,
                         guidance_channels: str | None = None) -> torch.Tensor:
        """One classifier-free-guidance step on a doubled batch, as in the official DiT.

        The caller builds the batch: the first half conditional (real labels), the second half
        unconditional (``y = num_classes``, the null class), same ``x`` and ``t`` in both halves.
        As in the official code, the first half of ``x`` is used for both halves and the model runs
        ONCE on the doubled batch. Then, on the guided channels::

            eps = eps_uncond + cfg_scale * (eps_cond - eps_uncond)

        Which output channels are guided (``guidance_channels``):

        * ``"official"``: the first 3 OUTPUT channels, whatever the channel count -- literally the
          official ``model_out[:, :3]``. For 4-channel SD-VAE latents that is 3 of the 4 eps
          channels (an accident the authors acknowledged; their numbers were made with it). For
          other counts it is stranger: with C = 1 and learned sigma the output is (eps, v), so the
          variance channel v is guided too; with C = 1 and fixed sigma, the single eps channel.
        * ``"all"``: all ``in_channels`` eps channels, never the variance -- standard CFG.
        * ``None`` (minidit's default): ``"official"`` for ``in_channels == 4``, so results on
          latents match the paper's, and ``"all"`` for any other channel count, where copying the
          official slice would guide the wrong channels. ``guide_all_channels=True`` (the older
          spelling) means ``"all"``.

        Outside the guided channels the output passes through: each half keeps its own
        (learned-sigma) channels. Returns ``(2B, out_channels, I, I)`` with both halves holding
        the guided channels (as official).
        """
        if x.shape[0] % 2 != 0:
            raise ValueError(f"forward_with_cfg needs an even batch (conditional half + unconditional half), "
                             f"got {x.shape[0]}")
        if guidance_channels not in (None, "official", "all"):
            raise ValueError(f"guidance_channels must be 'official', 'all' or None (minidit's default), "
                             f"got {guidance_channels!r}")
        if guide_all_channels and guidance_channels == "official":
            raise ValueError("guide_all_channels=True asks for all channels, guidance_channels='official' "
                             "for the first 3: pass only one of them")
        if guidance_channels is None:
            official_quirk = self.in_channels == 4 and guide_all_channels is not True
            guidance_channels = "official" if official_quirk else "all"
        half = x[: len(x) // 2]
        # (B, C, I, I) -> (2B, C, I, I): the same x_t for the conditional and unconditional pass
        combined = torch.cat([half, half], dim=0)
        model_out = self.forward(combined, t, y)
        # official: model_out[:, :3] (at most out_channels of them); all: the eps channels
        guided = 3 if guidance_channels == "official" else self.in_channels
        eps, rest = model_out[:, :guided], model_out[:, guided:]
        cond_eps, uncond_eps = torch.split(eps, len(eps) // 2, dim=0)
        # eps = eps_uncond + s * (eps_cond - eps_uncond)
        half_eps = cfg_combine(cond_eps, uncond_eps, cfg_scale)
        eps = torch.cat([half_eps, half_eps], dim=0)
        return torch.cat([eps, rest], dim=1)
