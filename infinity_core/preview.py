"""Previews of a generation in progress: the sampler's summed codes -> a small RGB picture, cheaply.

`generate` hands its callback the summed codes [B, d, H, W] after every scale. A preview runs the VAE's own
decoder on those codes area-pooled to a small grid: the grid of the last scale summed (the codes hold no
finer detail yet), at most PREVIEW_PIXELS on the long side of the picture. It shows the colours and layout
the final decode will have, at a fraction of its cost (the decoder's work grows with the pixel count: a
128 px preview of a 1024 px image is 1/64 of the decode, the early scales' previews far less).

Why not a linear codes -> RGB map fitted per VAE (ComfyUI's latent2rgb idea): the BSQ decoder is far from
linear in its codes. Fitted by least squares on decodes of encoded pictures and of random codes, such a
map reached 9-16 dB PSNR against the decoder on the demo model's generations (a white background came out
pink); the pooled decode reached 20-26 dB on the same codes.

`ScalePreviews` is what a sampler's callback calls after each scale: between the first and the last scale it
renders a frame only when its `PreviewPacer` says the frame fits the run's time budget, so those frames cost at
most `PREVIEW_SHARE` of a run plus one frame, whatever the model and machine (tools/preview_overhead.py). The
first sampled scale always gets a frame, and it is the cheapest one: the first scale's grid is the smallest.
The last scale always gets one too, the preview of the finished codes: a frontend keeps a node's last preview
after the run, and it must show the image the run made, not an early scale's haze.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .clock import DeviceClock
from .image_in import vae_grids
from .schedules import Schedule
from .vae.autoencoder import BitwiseVAE

PREVIEW_PIXELS = 128   # long side of a preview picture
# The fewest latent cells a preview's side is pooled to. A 1x1 latent decodes to the decoder's response at
# its zero-padded borders more than to the code's colour: against the full decode of the same codes, the first
# scale's preview reaches 12.6 dB PSNR from 1x1 and 17.5 dB from 2x2 (tools/preview_quality.py, demo model).
PREVIEW_MIN_CELLS = 2
PREVIEW_SHARE = 0.03   # what a run may spend on previews, as a share of its length (tools/preview_overhead.py)


def preview_grid(height: int, width: int, downsample: int) -> tuple[int, int]:
    """The latent grid a (height x width) latent is pooled to: the preview's long side is PREVIEW_PIXELS
    (never larger than the latent itself)."""
    longest = max(1, PREVIEW_PIXELS // downsample)
    scale = min(1.0, longest / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def render_preview(vae: BitwiseVAE, codes: torch.Tensor, scale_grid: tuple[int, int] | None = None) -> np.ndarray:
    """Summed codes [B, d, H, W] (any device) -> the first image's preview, [h, w, 3] uint8 RGB.

    `scale_grid`: the VAE grid (h, w) of the last scale in the sum, when it is coarser than (H, W); the sum
    is pooled to it, or to PREVIEW_MIN_CELLS a side where it is smaller."""
    device = vae.decoder.conv_in.weight.device
    height, width = codes.shape[-2:]
    if scale_grid is not None:
        height = min(height, max(scale_grid[0], PREVIEW_MIN_CELLS))
        width = min(width, max(scale_grid[1], PREVIEW_MIN_CELLS))
    grid = preview_grid(height, width, vae.config.downsample)
    with torch.inference_mode():
        small = F.adaptive_avg_pool2d(codes[:1].to(device=device, dtype=torch.float32), grid)   # [1, d, h, w]
        image = vae.decode(small)[0]                                                          # [3, h*f, w*f]
    return image.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


class PreviewPacer:
    """Whether a preview frame fits a run's time budget: the frames' total cost, counting the next one at
    the last one's cost, stays within `share` of the run's estimated length.

    The estimate is the time elapsed plus, for each scale still to come, the time the scale just done took
    (its frame not counted). A scale takes no less time than the one before it (it has more tokens, and
    attends to more; on the demo model the first few are equal within timing noise), so the estimate is at
    most the run's real length, up to that noise: the budget is not too large. The clock starts at the first
    `due`, the callback before the first scale. A frame may cost more than the last one (a later scale's
    preview has more pixels), and the first has no last one, so the bound holds up to one frame: at most
    `share` of the run plus the costliest frame."""

    def __init__(self, share: float, clock: Callable[[], float]):
        self.share = share
        self.clock = clock
        self.start: float | None = None
        self.scale_done_at = 0.0   # when the last scale's callback was over (after its frame, if any)
        self.spent = 0.0
        self.last_cost = 0.0

    def due(self, done: int, total: int) -> bool:
        """Whether to render a frame after scale `done` of `total`: never before the first scale or after
        the last (the decoded image follows)."""
        now = self.clock()
        if self.start is None:
            self.start = self.scale_done_at = now
        last_scale = now - self.scale_done_at
        self.scale_done_at = now
        if not 0 < done < total:
            return False
        estimated_run = now - self.start + (total - done) * last_scale
        return self.spent + self.last_cost <= self.share * estimated_run

    def record(self, seconds: float) -> None:
        """A frame was rendered after the last `due`, in `seconds`."""
        self.spent += seconds
        self.last_cost = seconds
        self.scale_done_at += seconds


class ScalePreviews:
    """A generation's preview frames: `(done, total, summed codes [B, d, H, W]) -> [h, w, 3] uint8 RGB` of
    the first image after scale `done`, or None when no frame is due: between the first and the last scale
    as the PreviewPacer allows, and always after the last scale (the frame a frontend keeps showing once the
    run is over). One per run: the pacer's budget is that run's."""

    def __init__(self, vae: BitwiseVAE, schedule: Schedule, share: float = PREVIEW_SHARE,
                 clock: Callable[[], float] | None = None):
        self.vae = vae
        self.grids = vae_grids(vae, schedule)                 # per scale, the VAE grid (h, w) it fills
        # scales and frames are timed on the device's clock (None: the VAE's device)
        self.pacer = PreviewPacer(share, clock or DeviceClock(vae.decoder.conv_in.weight.device))
        self.frames = 0

    def __call__(self, done: int, total: int, codes: torch.Tensor) -> np.ndarray | None:
        due = self.pacer.due(done, total)
        if not due and done != total:
            return None
        started = self.pacer.clock()
        picture = render_preview(self.vae, codes, self.grids[done - 1])
        seconds = self.pacer.clock() - started
        self.pacer.record(seconds)
        self.frames += 1
        return picture

    @property
    def seconds(self) -> float:
        """The time spent rendering frames so far."""
        return self.pacer.spent
