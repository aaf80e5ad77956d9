"""Prompt adherence of a text-to-image pipeline on held-out shapes prompts, per attribute.

Generates one image per held-out spec (combinations never seen in training) through the public
`InfinityPipeline`, and scores each with the pixel detector of `training/detector.py`: background
colour, object colour, shape, position. Used by `tools/score_adherence.py` and the demo model's test.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch

from infinity_core.pipeline import InfinityPipeline, to_uint8
from infinity_core.sampling_config import SamplingConfig
from infinity_core.schedules import get_schedule
from infinity_core.vae.autoencoder import BitwiseVAE

from .detector import AdherenceScore, score
from .shapes import SceneSpec, caption, render
from .vae_trainer import images_to_tensor

ATTRIBUTES = ("color", "background", "position", "shape")


def attribute_accuracy(scores: Sequence[AdherenceScore], attribute: str) -> float:
    """Share of `scores` whose `attribute` (one of ATTRIBUTES) matches the prompt."""
    return float(np.mean([getattr(s, f"{attribute}_correct") for s in scores]))


DEMO_PIXELS = "0.06M"   # the shapes data is drawn at 256 x 256


def demo_sampling(cfg: float, **settings) -> SamplingConfig:
    """The sampling of one evaluation column: the core's defaults at the demo's size, with `cfg`."""
    return SamplingConfig(pixels=DEMO_PIXELS, cfg=cfg, **settings)


@dataclass(frozen=True)
class AdherenceReport:
    settings: SamplingConfig
    scores: tuple[AdherenceScore, ...]

    def accuracy(self, attribute: str) -> float:
        return attribute_accuracy(self.scores, attribute)

    @property
    def all_correct(self) -> float:
        return float(np.mean([s.all_correct for s in self.scores]))

    @property
    def mean_accuracy(self) -> float:
        """Mean over the four attributes (the aggregate cfg 1 and cfg 3 are compared on)."""
        return float(np.mean([self.accuracy(a) for a in ATTRIBUTES]))


def generate_images(pipe: InfinityPipeline, specs: Sequence[SceneSpec], settings: SamplingConfig, *,
                    batch_size: int = 20) -> list[np.ndarray]:
    """One uint8 [H, W, 3] image per spec, prompts batched; spec j's image is drawn from settings.seed + j."""
    images = []
    for first in range(0, len(specs), batch_size):
        prompts = [caption(spec) for spec in specs[first:first + batch_size]]
        with torch.inference_mode():
            batch = pipe(prompts, config=replace(settings, seed=settings.image_seed(first)))
        images.extend(array.numpy() for array in to_uint8(batch))
    return images


def evaluate(pipe: InfinityPipeline, specs: Sequence[SceneSpec], settings: SamplingConfig) -> AdherenceReport:
    images = generate_images(pipe, specs, settings)
    return AdherenceReport(settings, tuple(score(image, spec) for image, spec in zip(images, specs)))


def reconstruction_accuracy(vae: BitwiseVAE, specs: Sequence[SceneSpec], *, seed: int = 0,
                            pixels: str = "0.06M", batch_size: int = 20) -> dict[str, float]:
    """The VAE's ceiling: per-attribute accuracy of the VAE's own reconstructions of `specs`
    (rendered with `seed`, encoded to every scale of `pixels`, decoded), scored like generated images."""
    rng = np.random.default_rng(seed)
    grids = list(get_schedule(1.0, pixels).grids)
    scores = []
    with torch.inference_mode():
        for first in range(0, len(specs), batch_size):
            batch = specs[first:first + batch_size]
            images = images_to_tensor([render(spec, rng) for spec in batch])     # [b, 3, S, S] in [-1, 1]
            decoded = vae.decode(vae.encode(images, grids).summed_codes)         # [b, 3, S, S]
            scores.extend(score(array.numpy(), spec) for array, spec in zip(to_uint8(decoded), batch))
    return {attribute: attribute_accuracy(scores, attribute) for attribute in ATTRIBUTES}


def format_table(reports: Sequence[AdherenceReport], num_prompts: int) -> str:
    """Plain-text table: one row per attribute, one column per report."""
    header = f"{'attribute':<12}" + "".join(f"{f'cfg {r.settings.cfg_per_scale[0]:g}':>10}" for r in reports)
    rows = [f"{name:<12}" + "".join(f"{r.accuracy(name):>10.1%}" for r in reports) for name in ATTRIBUTES]
    rows.append(f"{'all four':<12}" + "".join(f"{r.all_correct:>10.1%}" for r in reports))
    rows.append(f"{'mean':<12}" + "".join(f"{r.mean_accuracy:>10.1%}" for r in reports))
    settings = reports[0].settings
    title = (f"prompt adherence on {num_prompts} held-out prompts (tau {settings.tau:g}, top_k {settings.top_k}, "
             f"top_p {settings.top_p:g}, {settings.pixels})")
    return "\n".join([title, header, "-" * len(header), *rows])
