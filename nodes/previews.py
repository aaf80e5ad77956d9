"""The sampler's preview frames: summed codes -> a PIL picture through the paired VAE (see
infinity_core/preview.py for the method and its cost)."""
from __future__ import annotations

import torch
from PIL import Image

from infinity_core.preview import render_preview
from .types import InfinityVAE


def renderer(vae: InfinityVAE):
    """A `codes [B, d, H, W] -> PIL.Image` for the progress bar (the sampler loads the VAE with its model)."""
    def render(codes: torch.Tensor) -> Image.Image:
        return Image.fromarray(render_preview(vae.vae, codes))
    return render
