"""Binary spherical quantization (BSQ) on multi-scale latents: bits <-> codes, resizes, next-scale inputs.

Pure functions shared by the sampler (steps 7-8 of the inference loop) and the VAE encoder. Ports
FoundationVision/Infinity `BSQ.indices_to_codes(..., 'bit_label')` / `BSQ.quantize_new` and the
resize logic of `MultiScaleBSQ.forward` (infinity/models/bsq_vae/multiscale_bsq.py) and of
`Infinity.autoregressive_infer_cfg` (infinity/models/infinity.py:583-605).

Shapes: B batch, d bits per latent position (codebook_dim), (h, w) one scale's grid, (H, W) the
final latent grid. Codes live as 5-D [B, d, 1, h, w] tensors (a time axis of 1), because the official
resizes are `trilinear` / `area` calls on 5-D tensors and we keep the same calls to match to the bit.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# multiscale_bsq.py:234-235 (`z_interplote_up` / `z_interplote_down`). Codes are accumulated and the
# next scale's input is resized with UPSAMPLE_MODE (also downwards, infinity.py:598-600); only the
# encoder's residual is downsampled with DOWNSAMPLE_MODE.
UPSAMPLE_MODE = "trilinear"
DOWNSAMPLE_MODE = "area"

PATCHIFY_FACTOR = 2   # the 8B pairs 2x2 VAE latents into one token (infinity.py:583-590, 602-603)


def _code_scale(bits_per_code: int) -> float:
    """Magnitude of every coordinate of a BSQ code: the code is a corner of the unit d-cube scaled to norm 1."""
    return 1.0 / math.sqrt(bits_per_code)


def _resize(codes: torch.Tensor, grid: tuple[int, int], mode: str) -> torch.Tensor:
    """[B, d, 1, h, w] -> [B, d, 1, *grid]; skipped at equal size, as the official code does."""
    size = (1, int(grid[0]), int(grid[1]))
    if tuple(codes.shape[-3:]) == size:
        return codes
    # The official codes are a channels-last view (a permute of [B, 1, h, w, d]), and the trilinear
    # kernel for that layout rounds differently (~2e-7) from the contiguous one: use the same layout.
    return F.interpolate(codes.contiguous(memory_format=torch.channels_last_3d), size=size, mode=mode)


def bits_to_codes(bits: torch.Tensor) -> torch.Tensor:
    """Bits [B, h, w, d] (0/1, any dtype) -> codes [B, d, 1, h, w] float32 with entries +-1/sqrt(d).

    Same arithmetic as `indices_to_codes(bits, 'bit_label')`: bit*2s - s, then l2-normalised over d
    (numerically a no-op up to rounding, kept so the values match to the bit).
    """
    scale = _code_scale(bits.shape[-1])
    codes = bits.to(torch.float32) * scale * 2 - scale          # [B, h, w, d]
    codes = F.normalize(codes, dim=-1)                            # [B, h, w, d]
    return codes.unsqueeze(1).permute(0, 4, 1, 2, 3)              # [B, d, 1, h, w] (channels-last view)


def upsample_codes(codes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Codes [B, d, 1, h, w] -> [B, d, 1, H, W] (trilinear; returned as is when already at size)."""
    return _resize(codes, size, UPSAMPLE_MODE)


def accumulate_codes(summed_codes: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Summed codes [B, d, 1, H, W] + one scale's codes [B, d, 1, h, w] upsampled to (H, W) -> [B, d, 1, H, W].

    Start from zeros. The result is kept channels-last, the layout the official sum has (it starts
    as `0 + interpolate(channels-last codes)`); the decoder's convs round differently (~1e-5 on the
    tiny test VAE) for a contiguous input, so `decode(summed.squeeze(2))` then matches to the bit.
    """
    summed = summed_codes + upsample_codes(codes, tuple(summed_codes.shape[-2:]))
    return summed.contiguous(memory_format=torch.channels_last_3d)


def downsample_residual(residual: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Encoder residual [B, d, 1, H, W] -> [B, d, 1, h, w] (area average; as is when already at size)."""
    return _resize(residual, grid, DOWNSAMPLE_MODE)


def next_scale_input(summed_codes: torch.Tensor, grid: tuple[int, int], patchify: bool) -> torch.Tensor:
    """Summed codes [B, d, 1, H, W] -> the next scale's transformer input [B, h*w, d] ([B, h*w, 4d] with patchify).

    `grid` is the next scale's token grid (h, w); with patchify the VAE grid is (2h, 2w) and each
    2x2 block of latents is pixel-unshuffled into one token of 4d channels.
    """
    factor = PATCHIFY_FACTOR if patchify else 1
    latent_grid = (grid[0] * factor, grid[1] * factor)
    latents = _resize(summed_codes, latent_grid, UPSAMPLE_MODE).squeeze(-3)   # [B, d, fh, fw]
    if patchify:
        latents = F.pixel_unshuffle(latents, PATCHIFY_FACTOR)                  # [B, 4d, h, w]
    return latents.reshape(*latents.shape[:2], -1).permute(0, 2, 1)         # [B, h*w, d or 4d]


def unpatchify_bits(bits: torch.Tensor) -> torch.Tensor:
    """Token bits [B, h, w, 4d] -> latent bits [B, 2h, 2w, d] (pixel shuffle, channel c*4 + 2i + j -> offset (i, j))."""
    latents = F.pixel_shuffle(bits.permute(0, 3, 1, 2), PATCHIFY_FACTOR)   # [B, d, 2h, 2w]
    return latents.permute(0, 2, 3, 1)                                       # [B, 2h, 2w, d]


def patchify_bits(bits: torch.Tensor) -> torch.Tensor:
    """Latent bits [B, 2h, 2w, d] -> token bits [B, h, w, 4d]; inverse of `unpatchify_bits`."""
    tokens = F.pixel_unshuffle(bits.permute(0, 3, 1, 2), PATCHIFY_FACTOR)  # [B, 4d, h, w]
    return tokens.permute(0, 2, 3, 1)                                        # [B, h, w, 4d]


def quantize(residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Residual [B, d, 1, h, w] -> (codes [B, d, 1, h, w] float32, bits [B, h, w, d] uint8); bit = (code > 0).

    The residual is l2-normalised over d and snapped to +-1/sqrt(d). The official `quantize_new`
    returns x + (snapped - x) (a straight-through estimator), which is not exactly `snapped` in fp32;
    later scales quantize what is left after subtracting it, so the same sum is kept here.
    """
    unit = F.normalize(residual.permute(0, 2, 3, 4, 1).contiguous().float(), dim=-1)   # [B, 1, h, w, d]
    scale = _code_scale(unit.shape[-1])
    snapped = torch.where(unit > 0, scale, -scale).to(unit.dtype)                     # [B, 1, h, w, d]
    codes = unit + (snapped - unit)                                                   # [B, 1, h, w, d]
    bits = (codes > 0).to(torch.uint8).squeeze(1)                                     # [B, h, w, d]
    return codes.permute(0, 4, 1, 2, 3), bits                                         # [B, d, 1, h, w]
