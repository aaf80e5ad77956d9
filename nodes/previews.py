"""The sampler's preview frames: summed codes -> a PIL picture through the paired VAE (see
infinity_core/preview.py for the method and its cost)."""
from __future__ import annotations

import torch
from PIL import Image

from infinity_core import Schedule
from infinity_core.image_in import vae_grids
from infinity_core.preview import render_preview
from .types import InfinityVAE


def renderer(vae: InfinityVAE, schedule: Schedule):
    """A `(scales done, summed codes [B, d, H, W]) -> PIL.Image` for the progress bar (the sampler loads the
    VAE with its model)."""
    grids = vae_grids(vae.vae, schedule)

    def render(done: int, codes: torch.Tensor) -> Image.Image:
        return Image.fromarray(render_preview(vae.vae, codes, grids[done - 1]))
    return render
