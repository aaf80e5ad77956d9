"""Which scales decide a drawn attribute: the VAE and the transformer, each given a scene's first k true scales.

For held-out scenes rendered at one size and encoded by the VAE, and each k:
- *decoded*: the VAE decodes the sum of the first k scales' codes alone. This is the most any sampler can
  show of the scene after k scales; it tells which grid a VAE stores shape in.
- *completed*: the transformer is given those k scales as known (img2img's `init_scales`, the scene's own
  caption as prompt) and draws the rest. Set against *decoded* at the same k, it tells whether the
  transformer's later scales keep what the earlier ones hold.

Both are scored with the detector of `training/detector.py`, as `adherence.evaluate` scores generated images.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from infinity_core.pipeline import InfinityPipeline, to_uint8
from infinity_core.sampling_config import SamplingConfig
from infinity_core.schedules import get_schedule
from infinity_core.vae.autoencoder import BitwiseVAE
from infinity_core.vae.bsq import accumulate_codes, bits_to_codes

from .adherence import accuracy_by_attribute, generate_images
from .detector import score
from .shapes import Canvas, SceneSpec, render
from .vae_trainer import images_to_tensor


@dataclass(frozen=True)
class PrefixRow:
    scales: int                       # the first `scales` scales are the scene's true codes
    grid: tuple[int, int] | None      # the last of them (None: no scale given)
    decoded: dict[str, float] | None  # accuracy of the VAE decoding those scales alone (None for k = 0)
    completed: dict[str, float]       # accuracy of the transformer drawing the remaining scales


def true_bits(vae: BitwiseVAE, specs: Sequence[SceneSpec], settings: SamplingConfig, *,
              render_seed: int = 0) -> list[torch.Tensor]:
    """Per scale, the bits [n, h, w, d] of `specs` rendered at the settings' size (rendering rng `render_seed`,
    as `adherence.reconstruction_accuracy` renders them)."""
    rng = np.random.default_rng(render_seed)
    schedule = get_schedule(settings.h_div_w, settings.pixels)
    canvas = Canvas(*schedule.image_size)
    images = images_to_tensor([render(spec, rng, canvas) for spec in specs])   # [n, 3, H, W] in [-1, 1]
    with torch.inference_mode():
        return vae.encode(images, list(schedule.grids)).bits


def decode_prefix(vae: BitwiseVAE, bits: Sequence[torch.Tensor], scales: int) -> torch.Tensor:
    """uint8 [n, H, W, 3]: the decoded sum of the first `scales` scales' codes of `bits`, nothing after them."""
    latent = tuple(bits[-1].shape[1:3])
    with torch.inference_mode():
        summed = torch.zeros(bits[0].shape[0], bits[0].shape[-1], 1, *latent)   # [n, d, 1, H, W]
        for scale_bits in bits[:scales]:
            summed = accumulate_codes(summed, bits_to_codes(scale_bits))
        return to_uint8(vae.decode(summed.squeeze(2)))


def decoded_prefix_accuracy(vae: BitwiseVAE, bits: Sequence[torch.Tensor], specs: Sequence[SceneSpec],
                            scales: int) -> dict[str, float]:
    """Accuracy of `decode_prefix`'s images of `specs`."""
    scores = [score(image.numpy(), spec) for image, spec in zip(decode_prefix(vae, bits, scales), specs)]
    return accuracy_by_attribute(scores)


def completed_accuracy(pipe: InfinityPipeline, bits: Sequence[torch.Tensor], specs: Sequence[SceneSpec],
                       settings: SamplingConfig, scales: int) -> dict[str, float]:
    """Accuracy of the pipeline drawing every scale after the first `scales`, which are `bits`' (0: a plain
    text-to-image run, the same images as `adherence.evaluate`)."""
    images = generate_images(pipe, specs, settings, init_bits=bits if scales else None, init_scales=scales)
    scores = [score(image, spec) for image, spec in zip(images, specs)]
    return accuracy_by_attribute(scores)


def prefix_table(pipe: InfinityPipeline, specs: Sequence[SceneSpec], settings: SamplingConfig,
                 scales: Sequence[int]) -> list[PrefixRow]:
    bits = true_bits(pipe.vae, specs, settings)
    grids = [tuple(scale_bits.shape[1:3]) for scale_bits in bits]
    return [PrefixRow(k, grids[k - 1] if k else None, decoded_prefix_accuracy(pipe.vae, bits, specs, k) if k else None,
                      completed_accuracy(pipe, bits, specs, settings, k)) for k in scales]


def format_prefix_table(rows: Sequence[PrefixRow], attributes: Sequence[str] = ("color", "position", "shape")) -> str:
    header = (f"{'true scales':>11}  {'up to':>7}  " + "  ".join(f"{'VAE ' + a:>14}" for a in attributes) + "  "
              + "  ".join(f"{'drawn ' + a:>14}" for a in attributes))
    lines = [header, "-" * len(header)]
    for row in rows:
        grid = f"{row.grid[0]}x{row.grid[1]}" if row.grid else "-"
        decoded = [f"{row.decoded[a]:>14.0%}" if row.decoded else f"{'-':>14}" for a in attributes]
        lines.append(f"{row.scales:>11}  {grid:>7}  " + "  ".join(decoded) + "  "
                     + "  ".join(f"{row.completed[a]:>14.0%}" for a in attributes))
    return "\n".join(lines)
