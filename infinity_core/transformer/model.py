"""The Infinity transformer: text -> start token and per-block text keys, then blocks -> bit logits.

Port of FoundationVision/Infinity `infinity.py:Infinity` and `basic.py:CrossAttnBlock` with the
flags of every published model fixed (shared AdaLN, cos-attention, 2D RoPE normalised by h/w, level
embedding before the first block only, bit-label head, fused-norm path). The per-scale step used by
the sampler is `forward_scale`; `forward_teacher` is the block-causal whole-sequence pass (training,
and the reference the KV-cached path is tested against).

Shapes: B batch, l tokens of one scale, L tokens of a whole schedule, C width, Lt text tokens,
Ct5 text channels, d bits per token, V = 2d bit logits.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import TransformerConfig
from ..schedules import Schedule
from ..text import TextCondition
from .attention import CrossAttention, SelfAttention, SelfAttentionConstants, TextAttentivePool
from .kv_cache import KVCache, TextKV
from .layers import AdaLNBeforeHead, FeedForward, RMSNorm, ada_layer_norm
from .rope import rope_table


# The big per-block matmuls (everything else in a block is a norm, a modulation table or a bias):
# they take the low-precision compute dtype, and on CPUs oneDNN's prepacked layout (cpu_kernels.py).
BLOCK_MATMULS = ("sa.mat_qkv", "sa.proj", "ca.mat_q", "ca.mat_kv", "ca.proj", "ffn.fc1", "ffn.fc2")


@dataclass(frozen=True)
class BlockContext:
    """What one block reads at every scale that no image token changes, built once per generation."""

    gamma1: torch.Tensor          # [B, 1, C] gate of the self-attention branch
    gamma2: torch.Tensor          # [B, 1, C] gate of the FFN branch
    scale1: torch.Tensor          # [B, 1, C] 1 + AdaLN scale before the self-attention
    scale2: torch.Tensor          # [B, 1, C] 1 + AdaLN scale before the FFN
    shift1: torch.Tensor          # [B, 1, C]
    shift2: torch.Tensor          # [B, 1, C]
    self_attention: SelfAttentionConstants
    text_kv: TextKV               # cross-attention keys/values [B, H, Lt, hd]

    def rows(self, batch: int) -> "BlockContext":
        return BlockContext(self.gamma1[:batch], self.gamma2[:batch], self.scale1[:batch], self.scale2[:batch],
                            self.shift1[:batch], self.shift2[:batch], self.self_attention, self.text_kv.rows(batch))


@dataclass(frozen=True)
class TextContext:
    """What the blocks need from the text, computed once per generation."""

    cond: torch.Tensor            # [B, C] pooled text (the start token's content; also the head's AdaLN input)
    blocks: list[BlockContext]
    head_scale: torch.Tensor      # [B, 1, C] 1 + the head's AdaLN scale
    head_shift: torch.Tensor      # [B, 1, C]

    def rows(self, batch: int) -> "TextContext":
        """The first `batch` samples (the conditional half once the unconditional one is no longer needed)."""
        if batch == self.cond.shape[0]:
            return self
        return TextContext(self.cond[:batch], [block.rows(batch) for block in self.blocks],
                           self.head_scale[:batch], self.head_shift[:batch])


class CrossAttnBlock(nn.Module):
    """x += g1 * SA(adaLN(x)); x += CA(LN(x), text); x += g2 * FFN(adaLN(x))."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        C = config.width
        self.eps = config.norm_eps
        self.ada_gss = nn.Parameter(torch.zeros(1, 1, 6, C))
        self.sa = SelfAttention(C, config.num_heads)
        self.ca = CrossAttention(C, config.num_heads)
        self.ca_norm = nn.LayerNorm(C, eps=config.norm_eps)
        self.ffn = FeedForward(C, config.ffn_hidden)

    def context(self, ada: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor | None) -> BlockContext:
        """Shared AdaLN output [B, 1, 6, C] and projected text [B, Lt, C] -> this block's constants."""
        gamma1, gamma2, scale1, scale2, shift1, shift2 = (self.ada_gss + ada).unbind(2)   # [B, 1, C] each
        return BlockContext(gamma1, gamma2, scale1 + 1, scale2 + 1, shift1, shift2, self.sa.constants(),
                            self.ca.text_kv(text, text_mask))

    def forward(self, x: torch.Tensor, context: BlockContext, rotation: torch.Tensor | None, *,
                cache: KVCache | None = None, block: int = 0, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, l, C] fp32 -> [B, l, C] fp32 (a low-precision branch output is promoted by the residual add)."""
        attended = self.sa(ada_layer_norm(x, context.scale1, context.shift1, self.eps), rotation,
                           context.self_attention, cache=cache, block=block, mask=mask)
        x = x + attended * context.gamma1
        x = x + self.ca(self.ca_norm(x), context.text_kv)
        return x + self.ffn(ada_layer_norm(x, context.scale2, context.shift2, self.eps)) * context.gamma2


class InfinityTransformer(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        C, Ct5 = config.width, config.text_channels
        self.cfg_uncond = nn.Parameter(torch.zeros(config.text_maxlen, Ct5))   # learned "no prompt" text
        self.text_norm = RMSNorm(Ct5, eps=config.norm_eps)
        self.text_pool = TextAttentivePool(Ct5, C, config.pool_heads)
        self.text_proj = nn.Sequential(nn.Linear(Ct5, C), nn.GELU(approximate="tanh"), nn.Linear(C, C))
        self.pos_start = nn.Parameter(torch.zeros(1, 1, C))
        # explicit weight: Embedding's own random init on the meta device imports ~800 modules (75 MB of RSS)
        self.lvl_embed = nn.Embedding(config.num_levels, C, _weight=torch.zeros(config.num_levels, C))
        self.word_embed = nn.Linear(config.bits_per_token, C)
        self.shared_ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(C, 6 * C))
        self.blocks = nn.ModuleList(CrossAttnBlock(config) for _ in range(config.depth))
        self.head_nm = AdaLNBeforeHead(C, eps=config.norm_eps)
        self.head = nn.Linear(C, config.num_bit_logits)

    @property
    def device(self) -> torch.device:
        return self.pos_start.device

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype of the block matmul weights, hence of the activations and the KV cache."""
        return self.blocks[0].sa.mat_qkv.weight.dtype

    # --- text ----------------------------------------------------------------------------------------
    def unconditional_text(self, lengths: tuple[int, ...]) -> TextCondition:
        """The learned unconditional embedding, cut to each prompt's length (infinity.py:488-493)."""
        if max(lengths) > self.cfg_uncond.shape[0]:
            raise ValueError(f"a prompt has {max(lengths)} tokens; this model's unconditional text holds "
                             f"{self.cfg_uncond.shape[0]}")
        return TextCondition.from_features([self.cfg_uncond[:n].float() for n in lengths])

    def prepare_text(self, text: TextCondition) -> TextContext:
        """Start-token condition, shared AdaLN parameters and every block's per-generation constants."""
        features, mask = text.to(self.device).padded()       # [B, Lt, Ct5], [B, 1, 1, Lt]
        normed = self.text_norm(features)
        cond = self.text_pool(normed, mask)                              # [B, C]
        projected = self.text_proj(normed)                               # [B, Lt, C]
        ada = self.shared_ada_lin(cond).view(cond.shape[0], 1, 6, -1)    # [B, 1, 6, C] shared gamma/scale/shift
        return TextContext(cond, [block.context(ada, projected, mask) for block in self.blocks],
                           *self.head_nm.modulation(cond))

    # --- image tokens --------------------------------------------------------------------------------
    def start_tokens(self, context: TextContext) -> torch.Tensor:
        """The first scale's input: pooled text + learned position, [B, 1, C]."""
        return context.cond.unsqueeze(1) + self.pos_start

    def embed_bits_input(self, next_input: torch.Tensor) -> torch.Tensor:
        """Next-scale input codes [B, l, d] -> tokens [B, l, C]."""
        return self.word_embed(next_input.float())

    def forward_scale(self, x: torch.Tensor, scale_index: int, rotation: torch.Tensor | None,
                      context: TextContext, cache: KVCache) -> torch.Tensor:
        """One scale's tokens x [b, l, C] through every block, attending to all cached scales -> [b, l, C].

        `rotation` [l, hd/2] is the scale's RoPE table, None when it is the identity (the 1x1 scale);
        `context` has the b rows of x (`TextContext.rows`)."""
        x = x + self.lvl_embed.weight[scale_index]
        for index, block in enumerate(self.blocks):
            x = block(x, context.blocks[index], rotation, cache=cache, block=index)
        return x

    def logits(self, hidden: torch.Tensor, context: TextContext) -> torch.Tensor:
        """Hidden states [b, l, C] and the context of those b rows -> bit logits [b, l, V] (fp32)."""
        normed = self.head_nm(hidden.float(), context.head_scale, context.head_shift)
        return nn.functional.linear(normed, self.head.weight.float(), self.head.bias.float())

    def forward_teacher(self, text: TextCondition, next_inputs: torch.Tensor, schedule: Schedule) -> torch.Tensor:
        """Teacher-forced logits [B, L, V] for a whole schedule.

        `next_inputs` [B, L - l0, d] are the inputs of scales 1.. (the start token is scale 0's input);
        a token of scale s sees every token of scales <= s (infinity.py:416-418)."""
        context = self.prepare_text(text)
        tokens = torch.cat([self.start_tokens(context), self.embed_bits_input(next_inputs)], dim=1)   # [B, L, C]
        device = tokens.device
        scale_of_token = torch.cat([torch.full((h * w,), s, device=device) for s, (h, w) in enumerate(schedule.grids)])
        x = tokens + self.lvl_embed(scale_of_token)
        mask = scale_of_token[:, None] >= scale_of_token[None, :]                                     # [L, L]
        rotation = rope_table(schedule, self.config.head_dim).to(device)                               # [L, hd/2]
        for index, block in enumerate(self.blocks):
            x = block(x, context.blocks[index], rotation, mask=mask)
        return self.logits(x, context)
