"""A matmul weight kept as its file stores it (1 byte or a GGUF block per value), expanded at each use.

`QuantizedTensor` is what a format reader hands the loader for a quantized weight; `QuantizedLinear` is
the layer that holds one in place of an `nn.Linear`. Its `weight` is the expanded matrix in the compute
dtype, made when read and dropped after the matmul, so the model code (which reads `layer.weight` and
`layer.bias`) runs unchanged and the model holds only the packed bytes: about a quarter of fp32's for the
1-byte formats, an eighth for Q4_K.

Kinds:
- "scaled": `data` [N, K] int8 or float8 and `scale` fp32, one per tensor [] or one per output row [N, 1];
  value = data * scale (ComfyUI's float8_e4m3fn / float8_e5m2 / int8_tensorwise layers).
- "Q8_0", "Q4_K", "Q5_K": `data` [N, K / block * bytes] uint8 GGUF blocks (gguf_blocks.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .gguf_blocks import BLOCK_LAYOUTS, dequantize_blocks

SCALED = "scaled"
KINDS = (SCALED, *BLOCK_LAYOUTS)
SCALED_DTYPES = (torch.int8, torch.float8_e4m3fn, torch.float8_e5m2)


def dequantize(kind: str, data: torch.Tensor, scale: torch.Tensor | None, shape: tuple[int, ...],
               dtype: torch.dtype) -> torch.Tensor:
    """The values of a quantized weight, of `shape`, in `dtype` (each rounded once from the exact product)."""
    if kind == SCALED:
        expanded = data.to(dtype)        # int8 and float8 values are exact in fp32, bf16 and fp16 alike
        return expanded.mul_(scale) if scale is not None else expanded
    return dequantize_blocks(data, kind, shape, dtype)


@dataclass(frozen=True)
class QuantizedTensor:
    """A quantized weight as read from a file: its packed data, scale, and logical shape [N, K]."""

    kind: str
    data: torch.Tensor
    scale: torch.Tensor | None
    shape: tuple[int, ...]

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"quantized kind must be one of {KINDS}, got {self.kind!r}")

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return dequantize(self.kind, self.data, self.scale, self.shape, dtype)

    def to(self, device: torch.device) -> "QuantizedTensor":
        scale = None if self.scale is None else self.scale.to(device)
        return QuantizedTensor(self.kind, self.data.to(device), scale, self.shape)

    @property
    def nbytes(self) -> int:
        return self.data.nbytes + (0 if self.scale is None else self.scale.nbytes)


class QuantizedLinear(nn.Module):
    """y = x @ W.T + b with W held quantized (`QuantizedTensor`) and expanded in `compute_dtype` at each use.

    Buffers `weight_data` and `weight_scale` move with the module (`.to(device)`); the bias is a parameter in
    the compute dtype, as an `nn.Linear`'s would be."""

    def __init__(self, weight: QuantizedTensor, bias: torch.Tensor | None, compute_dtype: torch.dtype):
        super().__init__()
        self.kind = weight.kind
        self.out_features, self.in_features = weight.shape
        self.compute_dtype = compute_dtype
        self.register_buffer("weight_data", weight.data)
        self.register_buffer("weight_scale", weight.scale)
        self.bias = None if bias is None else nn.Parameter(bias, requires_grad=False)

    @property
    def weight(self) -> torch.Tensor:
        """The expanded weight [N, K] in the compute dtype (a new tensor at each read)."""
        return dequantize(self.kind, self.weight_data, self.weight_scale, (self.out_features, self.in_features),
                          self.compute_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight
        return F.linear(x.to(weight.dtype), weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, kind={self.kind}, "
                f"data={str(self.weight_data.dtype).removeprefix('torch.')}, compute={self.compute_dtype}")


def quantized_bytes(module: nn.Module) -> int:
    """Bytes of `module`'s parameters and buffers: what its weights occupy (packed, for quantized layers)."""
    return sum(t.nbytes for t in module.parameters()) + sum(t.nbytes for t in module.buffers())
