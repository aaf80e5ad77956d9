"""Small building blocks of the Infinity transformer: norms, adaptive norms, the FFN, a dtype-aware linear.

Ports of FoundationVision/Infinity `basic.py` (FastRMSNorm, FFN, AdaLNBeforeHead) and
`fused_op.py:fused_ada_layer_norm`. Norms and modulation always run in fp32; only the big matmuls
(`linear`) run in the weights' dtype, which may be bf16/fp16.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


ONEDNN_ROWS = 256   # rows per oneDNN call: as fast as one big call, without its 10s of MB of cached buffers


def matmul(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x @ weight.T + bias in the weight's dtype (x is cast to it); the result keeps that dtype.

    A weight prepacked for oneDNN (`cpu_kernels.prepack_for_cpu`) takes oneDNN's linear kernel. The
    dtype test and the direct N-d call matter at the few-token scales, where each avoided op is ~2 us."""
    if x.dtype != weight.dtype:
        x = x.to(weight.dtype)
    if not weight.is_mkldnn:
        return F.linear(x, weight, bias)
    if x.numel() <= ONEDNN_ROWS * x.shape[-1]:
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    # oneDNN caches a buffer per input shape; bounded row blocks keep that memory small
    rows = x.reshape(-1, x.shape[-1])                                   # [N, K]
    out = torch.cat([torch.ops.mkldnn._linear_pointwise(block, weight, bias, "none", [], "")
                     for block in rows.split(ONEDNN_ROWS)])
    return out.view(*x.shape[:-1], -1)


def linear(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """`layer(x)` through `matmul`."""
    return matmul(x, layer.weight, layer.bias)


def ada_layer_norm(x: torch.Tensor, scale_plus_one: torch.Tensor, shift: torch.Tensor, eps: float) -> torch.Tensor:
    """LayerNorm without affine in fp32, then modulate: LN(x) * (1 + scale) + shift.

    x [B, L, C] fp32; `scale_plus_one` (1 + scale, added once per generation) and `shift` [B, 1, C]."""
    return F.layer_norm(x, x.shape[-1:], eps=eps).mul_(scale_plus_one).add_(shift)


class RMSNorm(nn.Module):
    """RMS norm with a learned weight, computed in fp32 (the text features' `text_norm`)."""

    def __init__(self, channels: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True).add_(self.eps)) * self.weight


class FeedForward(nn.Module):
    """fc1 -> GELU(tanh) -> fc2."""

    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = linear(x, self.fc1)                                   # [B, l, hidden]: a scale's largest activation
        if hidden.requires_grad:
            hidden = F.gelu(hidden, approximate="tanh")
        else:                                                          # inference: no second buffer of that size
            hidden = torch.ops.aten.gelu_(hidden, approximate="tanh")
        return linear(hidden, self.fc2)


class AdaLNBeforeHead(nn.Module):
    """The head's own adaptive LayerNorm: scale and shift come from the start-token condition (not shared)."""

    def __init__(self, width: int, eps: float):
        super().__init__()
        self.eps = eps
        self.ada_lin = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))

    def modulation(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled text [B, C] -> (1 + scale, shift), [B, 1, C] each: constant for a generation."""
        scale, shift = self.ada_lin(cond.float()).view(-1, 1, 2, cond.shape[-1]).unbind(2)
        return scale + 1, shift

    def forward(self, x: torch.Tensor, scale_plus_one: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """x [B, l, C] fp32 with this head's `modulation` -> [B, l, C] fp32."""
        return ada_layer_norm(x, scale_plus_one, shift, self.eps)
