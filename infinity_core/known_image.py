"""The picture a generation starts from: image-to-image (`init_scales`) and inpainting (`mask`).

Image-to-image is the official `gt_leak` hook (infinity.py:585-587, 609-610): the scales below K take
the encoded image's bits instead of sampled ones, so the coarse layout comes from the image and the
finer scales are drawn by the model.

Inpainting follows VAR's zero-shot editing, on Infinity's residual scales:
- A mask pixel >= 0.5 asks for a redraw. A token of the final grid is redrawn when any pixel of its 16 x 16
  footprint is; a token of a coarser scale when any final token under it (adaptive max pooling) is. So a
  token that straddles the edge is redrawn, and at the coarsest scales, where every token touches the
  mask, everything is sampled.
- From scale K on, the kept tokens take the image's bits and the redrawn ones are sampled, conditioned on
  the rest through attention.
- The image's bits at one scale encode the residual left by its own coarser scales, which differ from the
  sampled ones under the mask. So after every scale the summed codes outside the redrawn tokens are set to
  the image's own partial sum: the kept region is exactly the image's residual chain at every scale (the
  transformer's next input sees it), and at the end it is the VAE's reconstruction of the image.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from .arrays import as_tensor
from .config import TransformerConfig
from .errors import InfinityError
from .schedules import PIXELS_PER_TOKEN, Schedule
from .vae.bsq import PATCHIFY_FACTOR, patchify_bits

REDRAW_THRESHOLD = 0.5   # mask values at or above it ask for a redraw (ComfyUI masks are 0/1, soft at edges)


@dataclass(frozen=True)
class KnownImage:
    """Per-scale bits of the picture in the sampler's token layout, and which tokens follow them.

    n is 1 or the number of images generated; l = h * w tokens of a scale; dt bits per token."""

    token_bits: tuple[torch.Tensor, ...]            # per scale [n, l, dt] uint8
    vae_bits: tuple[torch.Tensor, ...]              # per scale [n, hv, wv, dv] uint8 (VAE grid, as given)
    keep_scales: int                                # scales below it take the image's bits everywhere
    keep_tokens: tuple[torch.Tensor, ...] | None    # per scale [n, l, 1] bool, True = the image's bits (mask only)
    keep_latents: torch.Tensor | None               # [n, 1, 1, H, W] bool at the final VAE grid (mask only)
    whole_scales: tuple[bool, ...]                  # per scale: every token takes the image's bits (read once)

    def keeps_whole(self, scale: int) -> bool:
        """Whether every token of `scale` takes the image's bits (nothing to sample there)."""
        return self.whole_scales[scale]


def vae_grids(schedule: Schedule, config: TransformerConfig) -> list[tuple[int, int]]:
    """The VAE latent grid of every scale: the token grid, or twice it for the 8B's 2x2 patchify."""
    return schedule.latent_grids(PATCHIFY_FACTOR if config.spatial_patchify else 1)


def _batch_choices(images: int) -> str:
    return "1" if images == 1 else f"1 or {images}"


def _check_bits(init_bits: Sequence[torch.Tensor], schedule: Schedule, config: TransformerConfig,
                images: int) -> list[torch.Tensor]:
    grids = vae_grids(schedule, config)
    latent_bits = config.bits_per_token // (PATCHIFY_FACTOR ** 2 if config.spatial_patchify else 1)
    if isinstance(init_bits, (torch.Tensor, str)) or not isinstance(init_bits, Sequence):
        raise InfinityError(f"init_bits: expected a list with one [n, h, w, d] tensor of 0/1 bits per scale "
                            f"(vae.encode(...).bits), got {type(init_bits).__name__}")
    init_bits = [as_tensor(f"init_bits scale {scale}", bits, "[n, h, w, d] of 0/1 bits")
                 for scale, bits in enumerate(init_bits)]
    if len(init_bits) != schedule.num_scales:
        raise InfinityError(f"init_bits has {len(init_bits)} scales but the schedule (h/w {schedule.h_div_w:g}, "
                            f"{schedule.image_size[1]}x{schedule.image_size[0]} px) "
                            f"has {schedule.num_scales}; encode the image with this schedule")
    checked = []
    for scale, (bits, grid) in enumerate(zip(init_bits, grids)):
        expected = f"[{_batch_choices(images)}, {grid[0]}, {grid[1]}, {latent_bits}]"
        if bits.ndim != 4 or tuple(bits.shape[1:3]) != grid or bits.shape[0] not in (1, images):
            raise InfinityError(f"init_bits scale {scale} has shape {list(bits.shape)} but this schedule needs "
                                f"{expected} (grids {grids}); encode the image with the same aspect and pixels")
        if bits.shape[-1] != latent_bits:
            raise InfinityError(f"init_bits have {bits.shape[-1]} bits per latent but the transformer's VAE has "
                                f"{latent_bits}; encode with the VAE that pairs with this transformer")
        if bits.dtype != torch.bool and not bool(((bits == 0) | (bits == 1)).all()):
            low, high = float(bits.min()), float(bits.max())
            raise InfinityError(f"init_bits scale {scale} holds values other than 0 and 1 (found {low:g}..{high:g}); "
                                "bits are 0/1 as vae.encode(...).bits gives them (codes of -1/+1 are the bits "
                                "(codes > 0))")
        checked.append(bits)
    return checked


def _redrawn_tokens(mask: torch.Tensor, schedule: Schedule, images: int, device) -> torch.Tensor:
    """ComfyUI-style mask [H, W] or [n, H, W] -> redrawn tokens of the final grid [n, 1, h, w] float 0/1.

    A mask of another size is stretched to the output size (bilinear) first."""
    mask = as_tensor("mask", mask, "[H, W] or [n, H, W] in 0..1 (1 = redraw)")
    if mask.ndim == 2:
        mask = mask.unsqueeze(0)
    if mask.ndim != 3 or mask.shape[0] not in (1, images):
        raise InfinityError(f"mask must be [H, W] or [{_batch_choices(images)}, H, W] (1 = redraw), "
                            f"got shape {list(mask.shape)}")
    mask = mask.to(device=device, dtype=torch.float32)
    if not bool(torch.isfinite(mask).all()) or float(mask.min()) < 0 or float(mask.max()) > 1:
        raise InfinityError("mask values must be in 0..1 (1 = redraw)")
    size = schedule.image_size
    if tuple(mask.shape[-2:]) != size:
        mask = F.interpolate(mask.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1)
    redraw = (mask >= REDRAW_THRESHOLD).float().unsqueeze(1)                         # [n, 1, H_px, W_px]
    return F.max_pool2d(redraw, PIXELS_PER_TOKEN)                                   # [n, 1, h, w]


def known_image(init_bits: Sequence[torch.Tensor] | None, init_scales: int, mask: torch.Tensor | None,
                schedule: Schedule, config: TransformerConfig, images: int, device) -> KnownImage | None:
    """Check `generate`'s image inputs against the schedule and build what the sampler follows (None: text only)."""
    if isinstance(init_scales, bool) or not isinstance(init_scales, int) or not 0 <= init_scales <= schedule.num_scales:
        raise InfinityError(f"init_scales must be a whole number in 0..{schedule.num_scales} (the schedule's scales), "
                            f"got {init_scales!r}")
    if init_bits is None:
        if init_scales or mask is not None:
            raise InfinityError("init_scales and mask need init_bits: the encoded image (vae.encode(...).bits)")
        return None
    bits = _check_bits(init_bits, schedule, config, images)
    token_bits = []
    for scale_bits, (h, w) in zip(bits, schedule.grids):
        scale_bits = scale_bits.to(device=device, dtype=torch.uint8)
        if config.spatial_patchify:
            scale_bits = patchify_bits(scale_bits)                                  # [n, h, w, 4dv]
        token_bits.append(scale_bits.reshape(scale_bits.shape[0], h * w, -1))       # [n, l, dt]
    keep_tokens = keep_latents = None
    if mask is not None:
        redrawn = _redrawn_tokens(mask, schedule, images, device)                   # [n, 1, h, w]
        keep_tokens = tuple((F.adaptive_max_pool2d(redrawn, grid) == 0).flatten(2).transpose(1, 2)   # [n, l, 1]
                            for grid in schedule.grids)
        latent_grid = vae_grids(schedule, config)[-1]
        keep_latents = (F.interpolate(redrawn, size=latent_grid, mode="nearest") == 0).unsqueeze(2)  # [n, 1, 1, H, W]
    # which scales keep every token, read from the device here in one transfer: the sampler's loop never waits
    kept_everywhere = [False] * schedule.num_scales if keep_tokens is None else \
        torch.stack([keep.all() for keep in keep_tokens]).tolist()
    whole = [scale < init_scales or kept for scale, kept in enumerate(kept_everywhere)]
    return KnownImage(tuple(token_bits), tuple(b.to(device) for b in bits), init_scales, keep_tokens, keep_latents,
                      tuple(whole))
