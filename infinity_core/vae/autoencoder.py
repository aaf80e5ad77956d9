"""The multi-scale BSQ autoencoder ("visual tokenizer"): image <-> summed multi-scale codes.

Last step of generation (summed codes -> image) and, for image-to-image, the encoder with its residual
multi-scale quantization. Port of FoundationVision/Infinity `infinity/models/bsq_vae/flux_vqgan.py`
(`Encoder`, `Decoder`, `ResnetBlock`, `Downsample`, `Upsample`, `Normalize`, `AutoEncoder.encode/decode`)
and the inference part of `MultiScaleBSQ.forward` (`multiscale_bsq.py`), for the published
configuration only: 2-D convs, group norm, no mid attention, no KL branch (`use_vae=False`).
Parameter names follow `weights.official_to_internal_vae` (plain Conv2d / GroupNorm, no wrapper level).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import VAEConfig
from ..errors import InfinityError
from .bsq import downsample_residual, quantize, upsample_codes
from .tiling import Tiling, decode_tiled

IMAGE_CHANNELS = 3
GROUP_NORM_EPS = 1e-6
GROUP_NORM_GROUPS = (32, 24)   # the first that divides the channel count (flux_vqgan.py:19-30)
# Decode memory beyond the activations `Decoder.forward` holds: oneDNN's CPU convs' blocked-layout copies
# and the allocator's slack (a factor on the activations), plus scratch and primitive caches (a fixed
# amount). Set from the peak RSS of the bench VAE's decode at 0.06M-1M, less the library code the first
# decode pages in (tools/measure_sampling_memory.py prints both).
DECODE_ACTIVATION_OVERHEAD = 1.1
DECODE_FIXED_BYTES = 20 * 2**20


def group_norm(channels: int) -> nn.GroupNorm:
    groups = next((g for g in GROUP_NORM_GROUPS if channels % g == 0), None)
    if groups is None:
        raise InfinityError(f"VAE layer width {channels} is divisible by none of {GROUP_NORM_GROUPS} GroupNorm group counts")
    return nn.GroupNorm(groups, channels, eps=GROUP_NORM_EPS, affine=True)


def swish_(x: torch.Tensor) -> torch.Tensor:
    """x * sigmoid(x), written into x (a fresh norm output nothing else holds): one full-size tensor fewer
    than the official out-of-place form, same values (sigmoid is taken before the product)."""
    return x.mul_(torch.sigmoid(x))


def conv3x3(in_channels: int, out_channels: int, stride: int = 1, padding: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=padding)


class ResnetBlock(nn.Module):
    """norm -> swish -> conv, twice, plus a skip (1x1 conv when the width changes)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = conv3x3(in_channels, out_channels)
        self.norm2 = group_norm(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:    # [B, C_in, h, w] -> [B, C_out, h, w]
        h = self.conv1(swish_(self.norm1(x)))
        h = self.conv2(swish_(self.norm2(h)))
        skip = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return h.add_(skip)          # = skip + h (addition commutes exactly), without a third full-size tensor


class Downsample(nn.Module):
    """Halve the resolution: pad one row/column at the bottom/right, then a 3x3 stride-2 conv."""

    PAD = (0, 1, 0, 1)   # (left, right, top, bottom)

    def __init__(self, channels: int):
        super().__init__()
        self.conv = conv3x3(channels, channels, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:    # [B, C, h, w] -> [B, C, h/2, w/2]
        return self.conv(F.pad(x, self.PAD, mode="constant", value=0))


class Upsample(nn.Module):
    """Double the resolution: nearest-neighbour x2, then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = conv3x3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:    # [B, C, h, w] -> [B, C, 2h, 2w]
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


def res_blocks(in_channels: int, out_channels: int, num_blocks: int) -> nn.ModuleList:
    """`num_blocks` ResnetBlocks; the first one changes the width."""
    widths = [in_channels] + [out_channels] * num_blocks
    return nn.ModuleList(ResnetBlock(c_in, c_out) for c_in, c_out in zip(widths, widths[1:]))


class EncoderLevel(nn.Module):
    """One encoder resolution: ResnetBlocks, then (except on the lowest level) a Downsample."""

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int, downsample: bool):
        super().__init__()
        self.block = res_blocks(in_channels, out_channels, num_blocks)
        self.downsample = Downsample(out_channels) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class DecoderLevel(nn.Module):
    """One decoder resolution: ResnetBlocks, then (except on the full-resolution level) an Upsample."""

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int, upsample: bool):
        super().__init__()
        self.block = res_blocks(in_channels, out_channels, num_blocks)
        self.upsample = Upsample(out_channels) if upsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block:
            x = block(x)
        return x if self.upsample is None else self.upsample(x)


class MidBlocks(nn.Module):
    """Two ResnetBlocks at the lowest resolution (the official optional attention is off)."""

    def __init__(self, channels: int):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels)
        self.block_2 = ResnetBlock(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.block_1(x))


class Encoder(nn.Module):
    """Image [B, 3, H, W] -> features [B, d, H/f, W/f]; levels from full resolution down."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        base, mults = config.base_channels, config.channel_mult
        num_downsamples = int(math.log2(config.downsample))
        self.conv_in = conv3x3(IMAGE_CHANNELS, base)
        self.down = nn.ModuleList()
        width = base
        for i, mult in enumerate(mults):
            self.down.append(EncoderLevel(width, base * mult, config.num_res_blocks, downsample=i < num_downsamples))
            width = base * mult
        self.mid = MidBlocks(width)
        self.norm_out = group_norm(width)
        self.conv_out = conv3x3(width, config.codebook_dim)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(image)                                 # [B, base, H, W]
        for level in self.down:
            h = level(h)
        h = self.mid(h)                                         # [B, C_top, H/f, W/f]
        return self.conv_out(swish_(self.norm_out(h)))           # [B, d, H/f, W/f]


class Decoder(nn.Module):
    """Codes [B, d, h, w] -> image [B, 3, h*f, w*f] (unclamped); levels built and run from the top down."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        base, mults = config.base_channels, config.channel_mult
        num_upsamples = int(math.log2(config.downsample))
        width = base * mults[-1]
        self.conv_in = conv3x3(config.codebook_dim, width)
        self.mid = MidBlocks(width)
        levels = []
        for i in reversed(range(len(mults))):
            levels.insert(0, DecoderLevel(width, base * mults[i], config.num_res_blocks + 1,
                                          upsample=1 <= i <= num_upsamples))   # up.{i} is level i, as officially
            width = base * mults[i]
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(width)
        self.conv_out = conv3x3(width, IMAGE_CHANNELS)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(codes))                       # [B, C_top, h, w]
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(swish_(self.norm_out(h)))           # [B, 3, h*f, w*f]


def decoder_peak_elements(config: VAEConfig, height: int, width: int) -> int:
    """Most activation elements alive at once in one image's decode of a (height x width)-latent grid.

    Walks the decoder as `Decoder.forward` runs it. A ResnetBlock holds its input, a norm output and two conv
    outputs (c_in + 3 c_out: swish and the residual add work in place); a level's (and the mid blocks') input
    stays alive under the blocks after the first, held by the caller; an Upsample holds its input and the
    doubled map twice (interpolated and convolved); the head holds its input, a norm output and the image."""
    base, mults = config.base_channels, config.channel_mult
    num_upsamples = int(math.log2(config.downsample))
    channels = base * mults[-1]
    area = height * width
    peak = area * (config.codebook_dim + channels)                     # conv_in
    peak = max(peak, area * 5 * channels)                              # mid: its input + block 2's input + 3
    for i in reversed(range(len(mults))):
        out, level_input = base * mults[i], channels
        for block in range(config.num_res_blocks + 1):
            held = level_input if block > 0 else 0
            peak = max(peak, area * (held + channels + 3 * out))
            channels = out
        if 1 <= i <= num_upsamples:
            peak = max(peak, area * (level_input + channels * (1 + 2 * 4)))
            area *= 4
    return max(peak, area * (2 * channels + IMAGE_CHANNELS))


def decode_memory(config: VAEConfig, latent_grid: tuple[int, int], tiling: Tiling | None = None, *,
                  batch_size: int = 1, dtype: torch.dtype = torch.float32) -> int:
    """Bytes `BitwiseVAE.decode` needs besides its weights for `batch_size` images of `latent_grid` (h, w)
    decoded at once: the decoder's activation peak in `dtype` (of one tile with `tiling`) with its overheads,
    plus the fp32 output (clamped copy included; with tiling also the blended image and its weights)."""
    height, width = latent_grid
    pixels = height * width * config.downsample ** 2
    output = 2 * IMAGE_CHANNELS * pixels * 4
    if tiling is not None and max(height, width) > tiling.tile:
        height, width = min(height, tiling.tile), min(width, tiling.tile)
        tile_pixels = height * width * config.downsample ** 2
        output += (pixels + 2 * IMAGE_CHANNELS * tile_pixels) * 4       # weight map, weighted tile
    activations = decoder_peak_elements(config, height, width) * torch.finfo(dtype).bits // 8
    return DECODE_FIXED_BYTES + batch_size * (int(DECODE_ACTIVATION_OVERHEAD * activations) + output)


@dataclass(frozen=True)
class EncodeResult:
    """What `BitwiseVAE.encode` returns (d = codebook_dim, (h, w) = latent grid of each scale)."""

    raw_features: torch.Tensor      # [B, d, H, W] float32 encoder output before quantization
    bits: list[torch.Tensor]        # per scale [B, h, w, d] uint8, the bit labels the transformer predicts
    summed_codes: torch.Tensor      # [B, d, H, W] float32 sum of upsampled per-scale codes (official `z`)


class BitwiseVAE(nn.Module):
    """Encoder + decoder around the multi-scale BSQ latent; `with_encoder=False` builds the decoder only."""

    def __init__(self, config: VAEConfig, *, with_encoder: bool = True):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config) if with_encoder else None
        self.decoder = Decoder(config)

    @property
    def dtype(self) -> torch.dtype:
        return self.decoder.conv_in.weight.dtype

    def decode(self, summed_codes: torch.Tensor, tiling: Tiling | None = None) -> torch.Tensor:
        """Summed codes [B, d, h, w] -> RGB image [B, 3, h*f, w*f] float32 in [-1, 1].

        The input's memory layout is kept: convs round differently (~1e-5) on channels-last input, which
        is what the official generation path decodes (and what `accumulate_codes` builds). With `tiling`,
        grids larger than a tile are decoded tile by tile (bounded memory, see tiling.py).
        """
        def run(codes: torch.Tensor) -> torch.Tensor:
            return self.decoder(codes.to(self.dtype))
        h, w = summed_codes.shape[-2:]
        if tiling is not None and max(h, w) > tiling.tile:
            image = decode_tiled(run, summed_codes, self.config.downsample, tiling)
        else:
            image = run(summed_codes)
        return image.clamp(-1, 1).float()

    def encode(self, image: torch.Tensor, grids: list[tuple[int, int]]) -> EncodeResult:
        """RGB image [B, 3, H, W] in [-1, 1] -> features and residual-quantized bits for each grid (h, w).

        `grids` run from coarse to fine and must end at the latent grid (H/f, W/f). Each scale
        quantizes the area-downsampled residual of the previous ones (`MultiScaleBSQ.forward`).
        """
        if self.encoder is None:
            raise InfinityError("this VAE was built without its encoder (with_encoder=False), so it cannot encode images")
        if not grids:
            raise InfinityError("encode needs at least one scale grid (h, w)")
        features = self.encoder(image.to(self.encoder.conv_in.weight.dtype)).float()   # [B, d, H, W]
        latent_grid = tuple(features.shape[-2:])
        if tuple(grids[-1]) != latent_grid:
            raise InfinityError(f"the last scale grid {tuple(grids[-1])} must equal the latent grid {latent_grid} "
                                f"of a {tuple(image.shape[-2:])} image (downsampling x{self.config.downsample})")
        residual = features.unsqueeze(2)                        # [B, d, 1, H, W]
        summed = torch.zeros_like(residual)                     # [B, d, 1, H, W]
        bits = []
        for grid in grids:
            codes, scale_bits = quantize(downsample_residual(residual, grid))   # [B, d, 1, h, w], [B, h, w, d]
            codes = upsample_codes(codes, latent_grid)          # [B, d, 1, H, W]
            residual = residual - codes
            summed = summed + codes
            bits.append(scale_bits)
        # contiguous like the official `z`, so decode(summed_codes) takes the same conv path as decode(z)
        return EncodeResult(raw_features=features, bits=bits, summed_codes=summed.squeeze(2).contiguous())
