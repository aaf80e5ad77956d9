"""Bitwise self-correction: teacher-forcing inputs built from deliberately wrong bits, labels re-quantized.

Port of FoundationVision/Infinity `infinity/models/bitwise_self_correction.py:flip_requant` (bitwise BSQ,
no spatial patchify, `noise_apply_requant=1`). Walking the scales coarse to fine, each scale's labels are
the BSQ bits of what is still missing between the raw encoder features and the codes accumulated so
far; then, on the first `noise_scales` scales, a fraction p ~ U{0, 0.01, ..., max_flip} of those bits is
flipped and the *flipped* codes are what gets accumulated. Later scales therefore see (as input) and
learn to correct (as label) the errors a sampler makes, which is how the paper trains the model to
recover from its own mistakes. With max_flip = 0 the result is plain teacher forcing, equal to the
bits and inputs of `BitwiseVAE.encode`.

Shapes: B images, d bits, (H, W) the latent grid, (h, w) one scale's grid, L all tokens of the schedule.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from infinity_core.vae.bsq import (bits_to_codes, downsample_residual, next_scale_input, quantize,
                                         upsample_codes)

STRENGTH_STEPS = 100   # the flip ratio is drawn in steps of 1 % (np.random.randint(0, 100 * strength + 1) * 0.01)


@dataclass(frozen=True)
class TeacherForcing:
    """What one training step of the transformer consumes."""

    next_inputs: torch.Tensor     # [B, L - 1, d] float32: inputs of scales 1.. (scale 0's input is the start token)
    labels: torch.Tensor          # [B, L, d] int64 0/1: the bits each token must predict


def flip_bits(bits: torch.Tensor, max_flip: float, generator: torch.Generator) -> torch.Tensor:
    """Bits [B, h, w, d] with a random share p ~ U{0, 1 %, ..., max_flip} of them flipped (one p per call)."""
    levels = int(round(STRENGTH_STEPS * max_flip))
    ratio = int(torch.randint(0, levels + 1, (1,), generator=generator)) / STRENGTH_STEPS
    flip = torch.rand(bits.shape, generator=generator) < ratio
    return torch.where(flip, 1 - bits, bits)


def flip_requant(raw_features: torch.Tensor, grids: tuple[tuple[int, int], ...], *, max_flip: float,
                 noise_scales: int, generator: torch.Generator) -> TeacherForcing:
    """Raw encoder features [B, d, H, W] -> teacher-forcing inputs and labels with bitwise self-correction."""
    target = raw_features.unsqueeze(2).float()                          # [B, d, 1, H, W]
    latent_grid = tuple(target.shape[-2:])
    summed = torch.zeros_like(target)                                   # [B, d, 1, H, W]
    inputs, labels = [], []
    for scale, grid in enumerate(grids):
        codes, bits = quantize(downsample_residual(target - summed, grid))   # [B, d, 1, h, w], [B, h, w, d]
        labels.append(bits.reshape(bits.shape[0], -1, bits.shape[-1]))      # [B, h*w, d]
        if scale < noise_scales and max_flip > 0:
            codes = bits_to_codes(flip_bits(bits, max_flip, generator))
        summed = summed + upsample_codes(codes, latent_grid)
        if scale + 1 < len(grids):
            inputs.append(next_scale_input(summed, grids[scale + 1], patchify=False))   # [B, h'*w', d]
    return TeacherForcing(torch.cat(inputs, dim=1), torch.cat(labels, dim=1).long())
