"""Bitwise sampler nodes: widgets -> `infinity_core.generate` -> INFINITY_CODES.

The simple sampler takes one cfg for every scale; the advanced one a per-scale cfg schedule ("3, 3, 4"),
checked when the prompt is queued. Defaults come from the core (`generate`'s signature), the one place
they are decided.
"""
from __future__ import annotations

import inspect
import math
import re
from dataclasses import dataclass

import torch

from ..infinity_core import (ASPECT_PRESETS, PIXEL_BUDGETS, InfinityError, Schedule, TransformerConfig, generate,
                             get_schedule)
from . import comfy_bridge
from .types import INFINITY_CODES, INFINITY_COND, INFINITY_MODEL, InfinityCodes, InfinityConditioning, InfinityModel

CORE_DEFAULTS = {name: p.default for name, p in inspect.signature(generate).parameters.items()}
DEFAULT_PIXELS = "0.06M"   # 256 x 256 at 1:1: the shipped demo model's size, and quick on a CPU
CFG_RANGE = (0.0, 100.0)
MAX_BATCH = 64


@dataclass(frozen=True)
class SamplerSettings:
    seed: int
    cfg: float | tuple[float, ...]   # one value, or one per scale
    tau: float
    top_k: int
    top_p: float
    aspect_ratio: str                # a name of ASPECT_PRESETS
    pixels: str                      # a name of PIXEL_BUDGETS
    batch_size: int

    def schedule(self) -> Schedule:
        if self.aspect_ratio not in ASPECT_PRESETS:
            raise InfinityError(f"aspect_ratio '{self.aspect_ratio}' is not a preset; "
                                f"use one of {list(ASPECT_PRESETS)}")
        return get_schedule(ASPECT_PRESETS[self.aspect_ratio], self.pixels)

    @property
    def guided(self) -> bool:
        values = self.cfg if isinstance(self.cfg, tuple) else (self.cfg,)
        return any(value != 1 for value in values)


def parse_cfg_schedule(text: str, num_scales: int) -> tuple[float, ...]:
    """'3, 3, 4' -> one cfg per scale; the last value repeats over the scales the text leaves out."""
    words = [word for word in re.split(r"[,\s]+", text.strip()) if word]
    if not words:
        raise InfinityError("cfg_schedule is empty; give one cfg per scale, e.g. '3, 3, 3, 4' "
                            "(the last value repeats for the remaining scales)")
    if len(words) > num_scales:
        raise InfinityError(f"cfg_schedule lists {len(words)} values but this pixel budget has only {num_scales} "
                            f"scales; give at most {num_scales}")
    values = []
    for position, word in enumerate(words, start=1):
        try:
            value = float(word)
        except ValueError:
            raise InfinityError(f"cfg_schedule value {position} ('{word}') is not a number") from None
        if not (math.isfinite(value) and CFG_RANGE[0] <= value <= CFG_RANGE[1]):
            raise InfinityError(f"cfg_schedule value {position} ({word}) is outside {CFG_RANGE[0]:g}..{CFG_RANGE[1]:g}")
        values.append(value)
    return tuple(values + values[-1:] * (num_scales - len(values)))


def cfg_per_scale(cfg_schedule: str, pixels: str) -> tuple[float, ...]:
    """The advanced sampler's cfg schedule, checked against the number of scales of the pixel budget."""
    if pixels not in PIXEL_BUDGETS:
        raise InfinityError(f"pixel budget '{pixels}' does not exist; use one of {list(PIXEL_BUDGETS)}")
    return parse_cfg_schedule(cfg_schedule, PIXEL_BUDGETS[pixels])


def sampling_memory(config: TransformerConfig, schedule: Schedule, rows: int, dtype: torch.dtype) -> int:
    """Bytes a run needs besides the weights: the KV cache of the whole schedule (allocated up front and
    by far the largest part) plus the widest activation, the FFN hidden of the last scale, twice."""
    largest_scale = max(h * w for h, w in schedule.grids)
    kv_cache = 2 * config.depth * rows * schedule.num_tokens * config.width * dtype.itemsize
    return kv_cache + 2 * rows * largest_scale * config.ffn_hidden * 4


def _check_text_width(model: InfinityModel, conditioning: InfinityConditioning) -> None:
    channels, expected = conditioning.positive.channels, model.config.text_channels
    if channels != expected:
        raise InfinityError(f"text encoder '{conditioning.encoder_name}' gives {channels}-channel features but "
                            f"model '{model.file_name}' expects {expected}; load the text encoder it was trained with "
                            "(flan-t5-xl for the published models)")


def run_sampler(model: InfinityModel, conditioning: InfinityConditioning, settings: SamplerSettings) -> InfinityCodes:
    _check_text_width(model, conditioning)
    schedule = settings.schedule()
    rows = settings.batch_size * (2 if settings.guided else 1)
    comfy_bridge.load_for_inference(model.patcher, sampling_memory(model.config, schedule, rows, model.compute_dtype))
    result = generate(model.patcher.model, conditioning.positive, conditioning.negative,
                      h_div_w=ASPECT_PRESETS[settings.aspect_ratio], pixels=settings.pixels, cfg=settings.cfg,
                      tau=settings.tau, top_k=settings.top_k, top_p=settings.top_p, seed=settings.seed,
                      batch_size=settings.batch_size, callback=comfy_bridge.progress(schedule.num_scales))
    return InfinityCodes(result.codes.to(comfy_bridge.intermediate_device()), model.config, model.file_name)


def _sampler_inputs(cfg_input: tuple) -> dict:
    """The sampler's inputs in widget order, with `cfg_input` as the guidance widget."""
    return {"required": {
        "model": (INFINITY_MODEL, {"tooltip": "From Load Infinity Model."}),
        "conditioning": (INFINITY_COND, {"tooltip": "From Infinity Text Encode."}),
        "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True,
                         "tooltip": "Random seed. The same seed and settings give the same image."}),
        cfg_input[0]: cfg_input[1],
        "tau": ("FLOAT", {"default": CORE_DEFAULTS["tau"], "min": 0.01, "max": 5.0, "step": 0.01,
                          "tooltip": "Temperature of the bit logits: lower is sharper and less varied."}),
        "top_k": ("INT", {"default": CORE_DEFAULTS["top_k"], "min": 0, "max": 10000,
                          "tooltip": "Top-k per bit, as upstream (900). A bit has two outcomes, so only 1 (greedy) "
                                     "changes anything; 0 turns it off."}),
        "top_p": ("FLOAT", {"default": CORE_DEFAULTS["top_p"], "min": 0.0, "max": 1.0, "step": 0.01,
                            "tooltip": "Top-p per bit: a bit whose less likely value has probability at most "
                                       "1 - top_p is set to the likely one. 0 turns it off."}),
        "aspect_ratio": (list(ASPECT_PRESETS), {
            "default": "1:1", "tooltip": "Width:height of the image, one of the official templates."}),
        "pixels": (list(PIXEL_BUDGETS), {"default": DEFAULT_PIXELS,
                                         "tooltip": "Pixel budget: 0.06M is about 256x256 (7 scales), 1M about "
                                                    "1024x1024 (13 scales). The published 2B/8B models are made for "
                                                    "1M, the demo model for 0.06M."}),
        "batch_size": ("INT", {"default": 1, "min": 1, "max": MAX_BATCH,
                               "tooltip": "Images sampled together (each from its own random draws)."}),
    }}


class InfinityBitwiseSampler:
    DISPLAY_NAME = "Infinity Bitwise Sampler"
    DESCRIPTION = ("Generates an image scale by scale (next-scale prediction of bits), coarse to fine. "
                   "The progress bar advances once per scale; cancel stops it after the current scale.")
    CATEGORY = "Infinity"
    RETURN_TYPES = (INFINITY_CODES,)
    RETURN_NAMES = ("codes",)
    OUTPUT_TOOLTIPS = ("The image's bitwise codes, for Infinity Tokenizer Decode.",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        return _sampler_inputs(("cfg", ("FLOAT", {
            "default": CORE_DEFAULTS["cfg"], "min": CFG_RANGE[0], "max": CFG_RANGE[1], "step": 0.1, "round": 0.01,
            "tooltip": "Classifier-free guidance: how strongly the prompt (vs. the negative prompt) steers "
                       "every scale. 1 turns guidance off and halves the work."})))

    def sample(self, model: InfinityModel, conditioning: InfinityConditioning, **widgets):
        return (run_sampler(model, conditioning, SamplerSettings(**widgets)),)


class InfinityBitwiseSamplerAdvanced(InfinityBitwiseSampler):
    DISPLAY_NAME = "Infinity Bitwise Sampler (Advanced)"
    DESCRIPTION = "The Infinity Bitwise Sampler with a cfg for each scale instead of one for all."

    @classmethod
    def INPUT_TYPES(cls):
        default = ", ".join([f"{CORE_DEFAULTS['cfg']:g}"] * PIXEL_BUDGETS[DEFAULT_PIXELS])
        return _sampler_inputs(("cfg_schedule", ("STRING", {
            "default": default, "multiline": False,
            "tooltip": "One cfg per scale, coarse to fine, separated by commas, each "
                       f"{CFG_RANGE[0]:g}..{CFG_RANGE[1]:g}. The last value repeats for the scales left out; "
                       "the pixel budget sets the number of scales (shown under the node)."})))

    @classmethod
    def VALIDATE_INPUTS(cls, cfg_schedule=None, pixels=None):
        if cfg_schedule is None or pixels is None:   # fed by a link: checked when the node runs
            return True
        try:
            cfg_per_scale(cfg_schedule, pixels)
        except InfinityError as error:
            return str(error)
        return True

    def sample(self, model: InfinityModel, conditioning: InfinityConditioning, cfg_schedule: str, **widgets):
        cfg = cfg_per_scale(cfg_schedule, widgets["pixels"])
        return (run_sampler(model, conditioning, SamplerSettings(cfg=cfg, **widgets)),)
