"""Speed modes: how much of the exact computation a generation may leave out at its last, largest scales.

The last scales hold most of the work (at 1M the 48x48 and 64x64 scales are ~70 % of the 2B's FLOPs) and
draw the finest detail, so the training-free speed-ups in the literature spend less there:
- which rows: the unconditional rows stop before the last scales (cfg 1 there), as Switti, SkipVAR and StageVAR
  do; guidance has set the layout by then.
- which tokens: at a pruned scale only the tokens farthest from the scale's mean input run through the
  transformer (FastVAR's cached-token pruning); the others take the coarser scale's last hidden states,
  upsampled, and every token then goes through the head and is sampled. Only the kept tokens enter the KV
  cache. In inpainting the redrawn tokens are kept first (the known ones take the picture's bits anyway).
- which scales: a scale with no kept token skips the transformer entirely (SkipVAR / FastVAR skip the last
  scales); its bits come from the head on the filled hidden states, so every scale still has bits and codes.

The rules count scales from the end of the schedule, so a mode does the same share of work at every pixel
budget. The choices and their measured cost: tools/speed_modes.py, bench/bench_inference.py, README
"Speed modes". Everything here is deterministic: the token choice is a top-k of a deterministic score, in
raster order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import InfinityError

SPEED_MODES = ("exact", "balanced", "fast")


@dataclass(frozen=True)
class SpeedPolicy:
    """What a mode leaves out, counted from the last scale backwards."""

    name: str
    unguided_last: int = 0                  # the last n scales run without the unconditional rows (cfg 1)
    token_share_last: tuple[float, ...] = ()  # kept share of tokens of the last len(...) scales, coarse to fine

    def cfg_per_scale(self, cfg_per_scale: tuple[float, ...]) -> tuple[float, ...]:
        """The guidance each scale gets: the config's, but 1 at the last `unguided_last` scales."""
        first_unguided = len(cfg_per_scale) - self.unguided_last
        return tuple(1.0 if scale >= first_unguided else cfg for scale, cfg in enumerate(cfg_per_scale))

    def kept_tokens(self, grids: tuple[tuple[int, int], ...]) -> tuple[int, ...]:
        """Per scale, how many of its tokens run through the transformer (all of them but at pruned scales)."""
        shares = self.token_share_last[-len(grids):] if self.token_share_last else ()
        first_pruned = len(grids) - len(shares)
        return tuple(h * w if scale < first_pruned else math.ceil(shares[scale - first_pruned] * h * w)
                     for scale, (h, w) in enumerate(grids))


POLICIES = {
    "exact": SpeedPolicy("exact"),
    "balanced": SpeedPolicy("balanced", unguided_last=2),
    "fast": SpeedPolicy("fast", unguided_last=3, token_share_last=(0.5, 0.0)),
}


def speed_policy(speed: str) -> SpeedPolicy:
    if not isinstance(speed, str) or speed not in POLICIES:
        raise InfinityError(f"speed must be one of {list(SPEED_MODES)}, got {speed!r}")
    return POLICIES[speed]


def pick_tokens(tokens: torch.Tensor, count: int, redrawn: torch.Tensor | None = None) -> torch.Tensor:
    """The `count` tokens of each image that run through the transformer, [B, count] indices in raster order.

    tokens [B, l, C]: the scale's input; a token's score is its squared distance from the image's mean input
    token (FastVAR: the tokens that differ from their surroundings carry the detail). `redrawn` [n, l, 1]
    bool (inpainting): those tokens come first."""
    score = (tokens - tokens.mean(dim=1, keepdim=True)).square().sum(dim=-1)       # [B, l]
    if redrawn is not None:
        score = score + redrawn.squeeze(-1) * (1 + score.amax(dim=1, keepdim=True))
    return score.topk(count, dim=1, sorted=False).indices.sort(dim=1).values       # [B, count]


def take_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x [R, l, ...] with R = k * B rows (k copies of B images: cond, uncond) -> the indexed tokens [R, count, ...]."""
    rows_index = index.repeat(x.shape[0] // index.shape[0], 1)                      # [R, count]
    return x.gather(1, rows_index.view(*rows_index.shape, *([1] * (x.ndim - 2))).expand(-1, -1, *x.shape[2:]))


def upsample_hidden(coarse: torch.Tensor, coarse_grid: tuple[int, int], grid: tuple[int, int],
                    rows: int) -> torch.Tensor:
    """The coarser scale's hidden states [R', l', C] (R' >= rows) -> their first `rows` upsampled to `grid`,
    [rows, l, C]: what a pruned token of the finer scale takes."""
    width = coarse.shape[-1]
    coarse = coarse[:rows].transpose(1, 2).reshape(rows, width, *coarse_grid)         # [rows, C, h', w']
    filled = F.interpolate(coarse, size=grid, mode="bilinear", align_corners=False)   # [rows, C, h, w]
    return filled.flatten(2).transpose(1, 2).contiguous()                            # [rows, l, C]


def put_tokens(filled: torch.Tensor, kept: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """filled [R, l, C] with the kept tokens' own states [R, count, C] written at `index` [B, count]."""
    rows_index = index.repeat(filled.shape[0] // index.shape[0], 1).unsqueeze(-1).expand(-1, -1, filled.shape[-1])
    return filled.scatter(1, rows_index, kept.to(filled.dtype))


def take_rotation(rotation: torch.Tensor, index: torch.Tensor, rows: int) -> torch.Tensor:
    """A scale's RoPE table [2, l, hd/2] -> the kept tokens' [2, rows, 1, count, hd/2] (broadcast over heads)."""
    return rotation[:, index.repeat(rows // index.shape[0], 1)].unsqueeze(2)
