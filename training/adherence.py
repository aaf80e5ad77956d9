"""Prompt adherence of a text-to-image pipeline on held-out shapes prompts, per attribute, at any size.

Generates one image per held-out spec (combinations never seen in training) through the public
`InfinityPipeline`, and scores each with the pixel detector of `training/detector.py`: background
colour, object colour, shape, position. Two-object prompts (pairs of held-out specs) are scored by
whether both objects show in their cells. Used by `tools/score_adherence.py` and the demo model's test.
"""
from __future__ import annotations

from argparse import ArgumentTypeError
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch

from infinity_core.pipeline import InfinityPipeline, to_uint8
from infinity_core.sampling_config import SamplingConfig
from infinity_core.schedules import PIXEL_BUDGETS, get_schedule, parse_aspect
from infinity_core.vae.autoencoder import BitwiseVAE

from .detector import AdherenceScore, score, score_pair
from .shapes import Canvas, Scene, SceneSpec, caption, render
from .vae_trainer import images_to_tensor

ATTRIBUTES = ("color", "background", "position", "shape")


def attribute_accuracy(scores: Sequence[AdherenceScore], attribute: str) -> float:
    """Share of `scores` whose `attribute` (one of ATTRIBUTES) matches the prompt."""
    return float(np.mean([getattr(s, f"{attribute}_correct") for s in scores]))


def accuracy_by_attribute(scores: Sequence[AdherenceScore]) -> dict[str, float]:
    """`attribute_accuracy` of each of ATTRIBUTES."""
    return {attribute: attribute_accuracy(scores, attribute) for attribute in ATTRIBUTES}


DEMO_PIXELS = "0.06M"   # the demo model's default size (256 x 256 at 1:1)


@dataclass(frozen=True)
class ImageSize:
    """One evaluated size, written ASPECT@PIXELS on command lines: "16:9@0.06M" (aspect as width:height)."""

    aspect: str
    pixels: str

    @classmethod
    def parse(cls, text: str) -> "ImageSize":
        """Read the command-line form. Raises ArgumentTypeError, whose message argparse shows, if it is invalid."""
        aspect, separator, pixels = text.partition("@")
        if not separator or pixels not in PIXEL_BUDGETS:
            raise ArgumentTypeError(f"{text!r} is not ASPECT@PIXELS with PIXELS one of {list(PIXEL_BUDGETS)}, "
                                    "e.g. 16:9@0.06M")
        try:
            parse_aspect(aspect)
        except ValueError as error:
            raise ArgumentTypeError(f"{text!r}: {error}") from None
        return cls(aspect, pixels)

    @property
    def h_div_w(self) -> float:
        return parse_aspect(self.aspect)

    def __repr__(self) -> str:
        """The command-line form (also what argparse's help shows as a default)."""
        return f"{self.aspect}@{self.pixels}"


def demo_sampling(cfg: float, **settings) -> SamplingConfig:
    """The sampling of one evaluation column: the core's defaults at the demo's default size unless
    `settings` say otherwise, with `cfg`."""
    return SamplingConfig(**{"pixels": DEMO_PIXELS, **settings, "cfg": cfg})


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


def generate_images(pipe: InfinityPipeline, scenes: Sequence[SceneSpec | Scene], settings: SamplingConfig, *,
                    batch_size: int = 20, init_bits: Sequence[torch.Tensor] | None = None,
                    init_scales: int = 0) -> list[np.ndarray]:
    """One uint8 [H, W, 3] image per scene, prompts batched; scene j's image is drawn from settings.seed + j.
    With `init_bits` (per scale [len(scenes), h, w, d]), scene j keeps the first `init_scales` scales of its
    row, as img2img does."""
    images = []
    for first in range(0, len(scenes), batch_size):
        rows = slice(first, first + batch_size)
        prompts = [caption(scene) for scene in scenes[rows]]
        known = {"init_bits": [bits[rows] for bits in init_bits], "init_scales": init_scales} if init_bits else {}
        with torch.inference_mode():
            batch = pipe(prompts, config=replace(settings, seed=settings.image_seed(first)), **known)
        images.extend(array.numpy() for array in to_uint8(batch))
    return images


def evaluate(pipe: InfinityPipeline, specs: Sequence[SceneSpec], settings: SamplingConfig) -> AdherenceReport:
    images = generate_images(pipe, specs, settings)
    return AdherenceReport(settings, tuple(score(image, spec) for image, spec in zip(images, specs)))


def evaluate_pairs(pipe: InfinityPipeline, scenes: Sequence[Scene], settings: SamplingConfig) -> float:
    """Share of two-object prompts whose image shows both objects in their cells."""
    images = generate_images(pipe, scenes, settings)
    return float(np.mean([score_pair(image, scene).all_correct for image, scene in zip(images, scenes)]))


def reconstruction_accuracy(vae: BitwiseVAE, specs: Sequence[SceneSpec], *, seed: int = 0,
                            pixels: str = "0.06M", h_div_w: float = 1.0, batch_size: int = 20) -> dict[str, float]:
    """The VAE's ceiling: per-attribute accuracy of the VAE's own reconstructions of `specs`
    (rendered with `seed` at the size of `pixels` and `h_div_w`, encoded to every scale, decoded), scored
    like generated images."""
    rng = np.random.default_rng(seed)
    schedule = get_schedule(h_div_w, pixels)
    grids, canvas = list(schedule.grids), Canvas(*schedule.image_size)
    scores = []
    with torch.inference_mode():
        for first in range(0, len(specs), batch_size):
            batch = specs[first:first + batch_size]
            images = images_to_tensor([render(spec, rng, canvas) for spec in batch])   # [b, 3, H, W] in [-1, 1]
            decoded = vae.decode(vae.encode(images, grids).summed_codes)               # [b, 3, H, W]
            scores.extend(score(array.numpy(), spec) for array, spec in zip(to_uint8(decoded), batch))
    return accuracy_by_attribute(scores)


def column_name(settings: SamplingConfig) -> str:
    """"16:9-like 0.06M cfg 3" style: the shape, the budget and the guidance of a column."""
    height, width = settings.schedule.image_size
    return f"{width}x{height} {settings.pixels} cfg {settings.cfg_per_scale[0]:g}"


def format_table(reports: Sequence[AdherenceReport], num_prompts: int,
                 pairs: Sequence[float] | None = None, num_pairs: int = 0) -> str:
    """Plain-text table: one row per attribute (and one for two-object prompts), one column per report."""
    width = max(len(column_name(r.settings)) for r in reports) + 2
    header = f"{'attribute':<12}" + "".join(f"{column_name(r.settings):>{width}}" for r in reports)
    rows = [f"{name:<12}" + "".join(f"{r.accuracy(name):>{width}.1%}" for r in reports) for name in ATTRIBUTES]
    rows.append(f"{'all four':<12}" + "".join(f"{r.all_correct:>{width}.1%}" for r in reports))
    rows.append(f"{'mean':<12}" + "".join(f"{r.mean_accuracy:>{width}.1%}" for r in reports))
    if pairs is not None:
        rows.append(f"{'both objects':<12}" + "".join(f"{share:>{width}.1%}" for share in pairs))
    settings = reports[0].settings
    title = (f"prompt adherence on {num_prompts} held-out prompts"
             + (f" and {num_pairs} held-out two-object prompts" if pairs is not None else "")
             + f" (tau {settings.tau_per_scale[0]:g}, top_k {settings.top_k}, top_p {settings.top_p:g})")
    return "\n".join([title, header, "-" * len(header), *rows])
