"""The custom socket types of the pack and the objects that travel on them.

Own type names (not MODEL / VAE / CONDITIONING) mean ComfyUI refuses to wire a Stable Diffusion model,
VAE or conditioning into an Infinity socket, and the other way round. Each object keeps the name of the
file it came from, so an error further down the graph can name the files at fault.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..infinity_core import T5TextEncoder, TextCondition, TransformerConfig, VAEConfig

INFINITY_MODEL = "INFINITY_MODEL"
INFINITY_VAE = "INFINITY_VAE"
INFINITY_TEXT_ENCODER = "INFINITY_TEXT_ENCODER"
INFINITY_COND = "INFINITY_COND"
INFINITY_CODES = "INFINITY_CODES"


@dataclass(eq=False)
class InfinityModel:
    """INFINITY_MODEL: the transformer, wrapped in a ComfyUI ModelPatcher (`patcher.model`)."""

    patcher: Any
    file_name: str
    compute_dtype: torch.dtype   # dtype of the block weights, hence of the KV cache

    @property
    def config(self) -> TransformerConfig:
        return self.patcher.model.config


@dataclass(eq=False)
class InfinityVAE:
    """INFINITY_VAE: the bitwise (BSQ) tokenizer's decoder, wrapped in a ComfyUI ModelPatcher."""

    patcher: Any
    file_name: str

    @property
    def config(self) -> VAEConfig:
        return self.patcher.model.config


@dataclass(eq=False)
class InfinityTextEncoder:
    """INFINITY_TEXT_ENCODER: a T5 encoder and its tokenizer, resting on `offload_device` between encodes."""

    encoder: T5TextEncoder
    folder_name: str
    load_device: torch.device
    offload_device: torch.device


@dataclass(frozen=True)
class InfinityConditioning:
    """INFINITY_COND: T5 features of the prompt and of the negative prompt (None: the model's learned
    unconditional text, as upstream does for an empty negative prompt)."""

    positive: TextCondition
    negative: TextCondition | None
    encoder_name: str


@dataclass(frozen=True)
class InfinityCodes:
    """INFINITY_CODES: summed multi-scale codes [B, d, h, w] (the VAE decoder's input), on ComfyUI's
    intermediate device, with the transformer they came from (to check the VAE pairing)."""

    codes: torch.Tensor
    model_config: TransformerConfig
    model_name: str
