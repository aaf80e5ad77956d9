"""The sampler's preview frames: summed codes -> a PIL picture through the paired VAE, paced by the core's
time budget (see infinity_core/preview.py for the method and its cost)."""
from __future__ import annotations

from typing import Callable

import torch
from PIL import Image

from infinity_core import Schedule
from infinity_core.preview import PREVIEW_SHARE, ScalePreviews
from .types import InfinityVAE

clock: Callable[[], float] | None = None   # None: the VAE device's clock (infinity_core.clock.DeviceClock)


def renderer(vae: InfinityVAE, schedule: Schedule):
    """A `(scales done, scales in total, summed codes [B, d, H, W]) -> PIL.Image | None` for the progress bar,
    for one run (the sampler loads the VAE with its model)."""
    frames = ScalePreviews(vae.vae, schedule, PREVIEW_SHARE, clock)

    def render(done: int, total: int, codes: torch.Tensor) -> Image.Image | None:
        picture = frames(done, total, codes)
        return None if picture is None else Image.fromarray(picture)
    return render
