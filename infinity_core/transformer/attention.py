"""Attention layers: block-causal cosine self-attention with 2D RoPE, cross-attention over the text,
and the attentive pool that turns the text into the start token.

Ports of FoundationVision/Infinity `basic.py:SelfAttention` (cos_attn=True, KV caching) and
`basic.py:CrossAttention` (also used `for_attn_pool` by `infinity.py:TextAttentivePool`). Upstream
attends over packed variable-length text with flash-attn; here the text is padded per sample and
masked, and every attention is torch SDPA, so neither flash-attn nor a GPU is required.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .kv_cache import KVCache, TextKV
from .layers import linear, matmul
from .rope import apply_rope

MAX_LOG_ATTN_SCALE = math.log(100.0)   # cos-attention temperature is clamped at 100 (basic.py:222)


def _with_zero_key_bias(q_bias: torch.Tensor | None, v_bias: torch.Tensor) -> torch.Tensor:
    """Bias of a fused [q|k|v] or [k|v] projection: keys never get a bias (upstream's zero_k_bias buffer)."""
    zeros = torch.zeros_like(v_bias)
    return torch.cat((zeros, v_bias) if q_bias is None else (q_bias, zeros, v_bias))


@dataclass(frozen=True)
class SelfAttentionConstants:
    """Tensors a self-attention derives from its parameters alone, built once per generation."""

    qkv_bias: torch.Tensor    # [3C] q bias, zero key bias, v bias, in the weights' dtype
    qk_scale: torch.Tensor    # [2, 1, H, 1, 1]: q's learned per-head temperature (clamped at 100), 1 for k


class SelfAttention(nn.Module):
    """Multi-head cosine attention: q, k L2-normalised per head, q scaled by a learned per-head temperature."""

    def __init__(self, width: int, num_heads: int):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, width // num_heads
        self.mat_qkv = nn.Linear(width, 3 * width, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(width))
        self.v_bias = nn.Parameter(torch.zeros(width))
        self.scale_mul_1H11 = nn.Parameter(torch.full((1, num_heads, 1, 1), math.log(4.0)))
        self.proj = nn.Linear(width, width)

    def constants(self) -> SelfAttentionConstants:
        temperature = self.scale_mul_1H11.clamp_max(MAX_LOG_ATTN_SCALE).exp().float()   # [1, H, 1, 1]
        return SelfAttentionConstants(
            qkv_bias=_with_zero_key_bias(self.q_bias, self.v_bias).to(self.mat_qkv.weight.dtype),
            qk_scale=torch.stack((temperature, torch.ones_like(temperature))))

    def forward(self, x: torch.Tensor, rotation: torch.Tensor | None, constants: SelfAttentionConstants, *,
                cache: KVCache | None = None, block: int = 0, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, l, C] -> [B, l, C].  With `cache`, x is one scale and attends to every cached scale and
        itself (no mask); without, x is a whole sequence and `mask` [l, l] (True = attend) applies.
        `rotation` None: every token sits at RoPE position (0, 0), whose rotation is the identity."""
        B, l, C = x.shape
        qkv = matmul(x, self.mat_qkv.weight, constants.qkv_bias)
        qkv = qkv.view(B, l, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)   # [3, B, H, l, hd]
        qk = qkv[:2] if qkv.dtype == torch.float32 else qkv[:2].float()
        # q and k together: l2-normalise per head (as F.normalize), scale q, rotate; [2, B, H, l, hd]
        qk = qk.div(torch.linalg.vector_norm(qk, dim=-1, keepdim=True).clamp_min(1e-12)).mul_(constants.qk_scale)
        if rotation is not None:
            qk = apply_rope(qk, rotation)
        if qkv.dtype != torch.float32:
            qk = qk.to(qkv.dtype)
        (q, k), v = qk.unbind(0), qkv[2]                                             # [B, H, l, hd] each
        if cache is not None:
            k, v = cache.store(block, k, v)                                          # [B, H, L_seen, hd]
        if k.shape[2] == 1:     # the one visible key (the 1x1 scale's own) has softmax weight exactly 1
            out = v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)  # [B, H, l, hd]
        return linear(out.transpose(1, 2).reshape(B, l, C), self.proj)


class CrossAttention(nn.Module):
    """Image tokens attend to the text tokens of their own sample (standard 1/sqrt(hd) softmax scale)."""

    def __init__(self, width: int, num_heads: int):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, width // num_heads
        self.mat_q = nn.Linear(width, width)
        self.mat_kv = nn.Linear(width, 2 * width, bias=False)
        self.v_bias = nn.Parameter(torch.zeros(width))
        self.proj = nn.Linear(width, width)

    def text_kv(self, text: torch.Tensor, mask: torch.Tensor | None) -> TextKV:
        """Keys/values of projected text [B, Lt, C] (computed once per generation and block)."""
        B, Lt, _ = text.shape
        weight = self.mat_kv.weight
        kv = matmul(text, weight, _with_zero_key_bias(None, self.v_bias).to(weight.dtype))
        keys, values = kv.view(B, Lt, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        return TextKV(keys, values, mask)                                              # [B, H, Lt, hd]

    def forward(self, x: torch.Tensor, text: TextKV) -> torch.Tensor:
        """x [B, l, C] -> [B, l, C]."""
        B, l, C = x.shape
        q = linear(x, self.mat_q).view(B, l, self.num_heads, self.head_dim).transpose(1, 2)   # [B, H, l, hd]
        out = F.scaled_dot_product_attention(q, text.keys, text.values, attn_mask=text.mask)
        return linear(out.transpose(1, 2).reshape(B, l, C), self.proj)


class TextAttentivePool(nn.Module):
    """One learned query per head attends over a sample's text tokens; the result is the start token."""

    def __init__(self, text_channels: int, width: int, num_heads: int):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, width // num_heads
        self.mat_q = nn.Parameter(torch.zeros(1, num_heads, self.head_dim))
        self.mat_kv = nn.Linear(text_channels, 2 * width, bias=False)
        self.v_bias = nn.Parameter(torch.zeros(width))
        self.proj = nn.Linear(width, width)

    def forward(self, text: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Normalised text [B, Lt, Ct5] (mask [B, 1, 1, Lt]) -> pooled condition [B, C] (fp32)."""
        B, Lt, _ = text.shape
        kv = F.linear(text.float(), self.mat_kv.weight.float(), _with_zero_key_bias(None, self.v_bias).float())
        keys, values = kv.view(B, Lt, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        query = self.mat_q.float().unsqueeze(2).expand(B, -1, -1, -1)                # [B, H, 1, hd]
        pooled = F.scaled_dot_product_attention(query, keys, values, attn_mask=mask)  # [B, H, 1, hd]
        return F.linear(pooled.reshape(B, -1), self.proj.weight.float(), self.proj.bias.float())
