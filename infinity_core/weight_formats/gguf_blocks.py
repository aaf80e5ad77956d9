"""GGUF's quantized block layouts: expanded in torch (at each use, on any device) and written in numpy.

A quantized row of K values is K / block_size blocks of `block_bytes` bytes each:
- Q8_0: 32 values in 34 bytes: an fp16 scale d, then 32 int8 q; value = d * q.
- Q4_K: 256 values in 144 bytes: fp16 d, fp16 dmin, 12 bytes packing eight 6-bit scales and eight 6-bit
  mins (one per 32-value sub-block), then 128 bytes of 4-bit q; value = d * scale * q - dmin * min.
  Byte j of the 32-byte group g holds q of sub-block 2g (low nibble) and 2g + 1 (high nibble).
- Q5_K: 256 values in 176 bytes: as Q4_K, plus 32 bytes after the scales whose bit s of byte j is the fifth
  (high) bit of value j of sub-block s; q runs 0..31.
The 12 scale bytes: bytes 0-3 hold scales 0-3 in their low 6 bits and the top 2 bits of scales 4-7 in their
top 2 bits; bytes 4-7 the same for the mins; bytes 8-11 hold the low 4 bits of scales 4-7 (low nibble) and of
mins 4-7 (high nibble). The layouts are ggml's (llama.cpp ggml-quants.c); the `gguf` package's numpy
`quants.dequantize` is the reference the tests compare against.
"""
from __future__ import annotations

import numpy as np
import torch

QK_K = 256            # values per K-quant super-block
K_SCALE_BYTES = 12    # packed 6-bit scales and mins of a K-quant super-block


# type name -> (values per block, bytes per block)
BLOCK_LAYOUTS: dict[str, tuple[int, int]] = {
    "Q8_0": (32, 34),
    "Q4_K": (QK_K, 2 + 2 + K_SCALE_BYTES + QK_K // 2),
    "Q5_K": (QK_K, 2 + 2 + K_SCALE_BYTES + QK_K // 8 + QK_K // 2),
}


def _fp16(raw: torch.Tensor) -> torch.Tensor:
    """Two bytes per row [n, 2] uint8 -> their little-endian fp16 value as fp32 [n, 1]."""
    return raw.contiguous().view(torch.float16).float()


def _k_scales_mins(packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The 12 packed bytes [n, 12] uint8 -> eight 6-bit scales and eight 6-bit mins, each [n, 8] fp32."""
    low, mid, high = packed[:, 0:4], packed[:, 4:8], packed[:, 8:12]
    scales = torch.cat([low & 0x3F, (high & 0x0F) | ((low >> 2) & 0x30)], dim=1)
    mins = torch.cat([mid & 0x3F, (high >> 4) | ((mid >> 2) & 0x30)], dim=1)
    return scales.float(), mins.float()


def _nibbles(packed: torch.Tensor) -> torch.Tensor:
    """[n, 128] uint8 (4 groups of 32 bytes) -> [n, 8, 32] 4-bit values, sub-block 2g from group g's low nibbles."""
    groups = packed.view(-1, 4, 1, 32)
    both = torch.cat([groups & 0x0F, groups >> 4], dim=2)               # [n, 4, 2, 32]
    return both.view(-1, 8, 32)


def _dequantize_q8_0(blocks: torch.Tensor) -> torch.Tensor:
    return blocks[:, 2:].contiguous().view(torch.int8).float() * _fp16(blocks[:, :2])


def _dequantize_k(blocks: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """value = d * scale * q - dmin * min per 32-value sub-block; q [n, 8, 32] -> [n, 256]."""
    d, dmin = _fp16(blocks[:, 0:2]), _fp16(blocks[:, 2:4])                  # [n, 1]
    scales, mins = _k_scales_mins(blocks[:, 4:4 + K_SCALE_BYTES])          # [n, 8]
    out = (d * scales).unsqueeze(-1) * q.float() - (dmin * mins).unsqueeze(-1)
    return out.view(-1, QK_K)


def _dequantize_q4_k(blocks: torch.Tensor) -> torch.Tensor:
    return _dequantize_k(blocks, _nibbles(blocks[:, 4 + K_SCALE_BYTES:]))


def _dequantize_q5_k(blocks: torch.Tensor) -> torch.Tensor:
    start = 4 + K_SCALE_BYTES
    high_bits = blocks[:, start:start + QK_K // 8].view(-1, 1, 32)           # [n, 1, 32]
    shifts = torch.arange(8, dtype=torch.uint8, device=blocks.device).view(1, 8, 1)
    fifth = (high_bits >> shifts) & 1                                        # [n, 8, 32]
    return _dequantize_k(blocks, _nibbles(blocks[:, start + QK_K // 8:]) | (fifth << 4))


_DEQUANTIZERS = {"Q8_0": _dequantize_q8_0, "Q4_K": _dequantize_q4_k, "Q5_K": _dequantize_q5_k}


def dequantize_blocks(data: torch.Tensor, kind: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """Packed rows [..., K / block * bytes] uint8 of GGUF type `kind` -> values of `shape` in `dtype`
    (expanded in fp32, then cast once)."""
    _, block_bytes = BLOCK_LAYOUTS[kind]
    values = _DEQUANTIZERS[kind](data.reshape(-1, block_bytes))
    return values.view(shape).to(dtype)


# --- writing (numpy; used by tools/convert_checkpoint.py) ------------------------------------------

def _pack_k_scales(scales: np.ndarray, mins: np.ndarray) -> np.ndarray:
    """Eight 6-bit scales and mins per block [n, 8] uint8 -> the 12 packed bytes [n, 12]."""
    packed = np.empty((scales.shape[0], K_SCALE_BYTES), dtype=np.uint8)
    packed[:, 0:4] = (scales[:, :4] & 0x3F) | ((scales[:, 4:] >> 4) << 6)
    packed[:, 4:8] = (mins[:, :4] & 0x3F) | ((mins[:, 4:] >> 4) << 6)
    packed[:, 8:12] = (scales[:, 4:] & 0x0F) | ((mins[:, 4:] & 0x0F) << 4)
    return packed


def _fit_k(values: np.ndarray, levels: int) -> tuple[np.ndarray, ...]:
    """values [n, 8, 32] fp32 -> (d, dmin [n] fp16, scales, mins [n, 8] uint8, q [n, 8, 32] uint8) with
    value ~ d * scale * q - dmin * min: each sub-block's range [min(lo, 0), hi] spread over `levels` steps."""
    low = np.minimum(values.min(axis=-1), 0.0)                               # [n, 8]
    step = (values.max(axis=-1) - low) / (levels - 1)                          # [n, 8]
    d = (step.max(axis=-1) / 63).astype(np.float16)                            # [n]
    dmin = (-low.min(axis=-1) / 63).astype(np.float16)
    d32, dmin32 = d.astype(np.float32)[:, None], dmin.astype(np.float32)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        scales = np.where(d32 > 0, np.rint(step / d32), 0).clip(0, 63)
        mins = np.where(dmin32 > 0, np.rint(-low / dmin32), 0).clip(0, 63)
        sub_step = (d32 * scales)[..., None]                                    # [n, 8, 1]
        sub_min = (dmin32 * mins)[..., None]
        q = np.where(sub_step > 0, np.rint((values + sub_min) / sub_step), 0).clip(0, levels - 1)
    return d, dmin, scales.astype(np.uint8), mins.astype(np.uint8), q.astype(np.uint8)


def quantize_k(rows: np.ndarray, kind: str) -> np.ndarray:
    """fp32 rows [N, K] (K a multiple of 256) -> packed Q4_K or Q5_K bytes [N, K / 256 * block_bytes]."""
    n_rows, width = rows.shape
    values = rows.astype(np.float32).reshape(-1, 8, 32)                         # [blocks, 8, 32]
    d, dmin, scales, mins, q = _fit_k(values, 16 if kind == "Q4_K" else 32)
    head = [d.view(np.uint8).reshape(-1, 2), dmin.view(np.uint8).reshape(-1, 2), _pack_k_scales(scales, mins)]
    low = (q & 0x0F).reshape(-1, 4, 2, 32)                                     # [blocks, group, nibble, 32]
    nibbles = (low[:, :, 0] | (low[:, :, 1] << 4)).reshape(-1, QK_K // 2)
    if kind == "Q4_K":
        packed = np.concatenate(head + [nibbles], axis=1)
    elif kind == "Q5_K":
        fifth = (q >> 4).astype(np.uint8)                                      # [blocks, 8, 32]
        high = np.zeros((q.shape[0], 32), dtype=np.uint8)
        for sub in range(8):
            high |= fifth[:, sub] << sub
        packed = np.concatenate(head + [high, nibbles], axis=1)
    else:
        raise ValueError(f"quantize_k writes Q4_K or Q5_K, not {kind}")
    return packed.reshape(n_rows, width // QK_K * BLOCK_LAYOUTS[kind][1])
