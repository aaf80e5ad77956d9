"""Tiled VAE decoding: decode overlapping latent tiles one at a time and blend them linearly.

Peak decoder memory then follows the tile size, not the image size (a 1024 px d32 decode holds ~1 GB of
activations in fp32 at once). The decoder's GroupNorms see one tile's statistics, so a tile differs from
the same region of a whole-image decode by a smooth, low-frequency tone; the linear cross-fade over the
overlap keeps that from ever showing as an edge. Use it when memory, not exactness, is the constraint.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class Tiling:
    tile: int = 32       # latents per tile side (512 px for a x16 VAE)
    overlap: int = 8     # latents shared by neighbouring tiles, cross-faded

    def __post_init__(self):
        if not 0 <= self.overlap < self.tile:
            raise ValueError(f"tile overlap must be in [0, tile); got tile={self.tile}, overlap={self.overlap}")


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles covering [0, length): stride tile - overlap, the last tile flush with the end."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, tile - overlap))
    return starts + [length - tile]


def _ramp(size: int, fade: int, fade_start: bool, fade_end: bool) -> torch.Tensor:
    """[size] weights: rising over the first `fade` samples / falling over the last, where a neighbour overlaps."""
    weights = torch.ones(size)
    ramp = (torch.arange(fade) + 0.5) / fade
    if fade_start and fade:
        weights[:fade] = ramp
    if fade_end and fade:
        weights[size - fade:] = ramp.flip(0)
    return weights


def decode_tiled(decode: Callable[[torch.Tensor], torch.Tensor], codes: torch.Tensor, scale: int,
                 tiling: Tiling) -> torch.Tensor:
    """codes [B, d, h, w] -> image [B, 3, h*scale, w*scale], decoding (tile x tile)-latent pieces."""
    B, _, h, w = codes.shape
    rows, cols = tile_starts(h, tiling.tile, tiling.overlap), tile_starts(w, tiling.tile, tiling.overlap)
    image = torch.zeros(B, 3, h * scale, w * scale, device=codes.device)
    total_weight = torch.zeros(1, 1, h * scale, w * scale, device=codes.device)
    fade = tiling.overlap * scale
    for top in rows:
        for left in cols:
            piece = codes[:, :, top:top + tiling.tile, left:left + tiling.tile]
            decoded = decode(piece).float()                                      # [B, 3, th*scale, tw*scale]
            th, tw = decoded.shape[-2:]
            weight = (_ramp(th, fade, top > 0, top + tiling.tile < h)[:, None]
                      * _ramp(tw, fade, left > 0, left + tiling.tile < w)[None, :]).to(codes.device)
            y, x = top * scale, left * scale
            image[:, :, y:y + th, x:x + tw] += decoded * weight
            total_weight[:, :, y:y + th, x:x + tw] += weight
    return image / total_weight
