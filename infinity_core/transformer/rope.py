"""2D rotary position embedding, with every scale placed on the final-resolution grid.

Port of FoundationVision/Infinity `basic.py:precompute_rope2d_freqs_grid` (rope2d_normalized_by_hw=2)
and `apply_rotary_emb`. A head's dimensions form head_dim/2 interleaved pairs (x[2p], x[2p+1]); the
first half of the pairs rotate with the token's row, the second half with its column. A token (i, j)
of an h x w scale sits at row round(i * H / h), column round(j * W / w) of the template's last 1M grid
(H, W), so every scale of every budget shares one coordinate frame.
"""
from __future__ import annotations

import torch

from ..schedules import Schedule

ROPE_BASE = 10000.0


def _scale_positions(h: int, w: int, rope_h: int, rope_w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column indices on the (rope_h, rope_w) grid of the h*w tokens of one scale, raster order."""
    rows = (torch.arange(h) * (rope_h / h)).round().long()   # float32 product, then round-half-even, as upstream
    cols = (torch.arange(w) * (rope_w / w)).round().long()
    return rows.repeat_interleave(w), cols.repeat(h)          # [h*w], [h*w]


def rope_table(schedule: Schedule, head_dim: int) -> torch.Tensor:
    """Unit rotations as (cos, sin), [2, L, head_dim/2] float32, for the L tokens of `schedule` in sampling order."""
    quarter = head_dim // 4
    inv_freq = 1.0 / (ROPE_BASE ** (torch.arange(0, 2 * quarter, 2).float() / (2 * quarter)))   # [head_dim/4]
    rope_h, rope_w = schedule.rope_grid
    rows, cols = zip(*(_scale_positions(h, w, rope_h, rope_w) for h, w in schedule.grids))
    rows, cols = torch.cat(rows).float(), torch.cat(cols).float()                                # [L]
    angles = torch.cat([torch.outer(rows, inv_freq), torch.outer(cols, inv_freq)], dim=-1)       # [L, head_dim/2]
    return torch.stack((torch.cos(angles), torch.sin(angles)))


def apply_rope(x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of x [..., l, head_dim] (fp32, any layout with head_dim contiguous) by
    `rotation` [2, ..., l, head_dim/2] (cos, sin; broadcast against x's leading dimensions); fp32 out.

    Upstream's (cos*x0 - sin*x1, sin*x0 + cos*x1) in real arithmetic (which compilers generate code for),
    written in the order that rounds as the complex product (x0 + i*x1)(cos + i*sin) does: the same bits."""
    cos, sin = rotation.unbind(0)                                                 # [..., l, head_dim/2]
    x0, x1 = x.unflatten(-1, (-1, 2)).unbind(-1)                                  # [..., l, head_dim/2]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)
