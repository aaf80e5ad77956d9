"""The custom socket types of the pack and the objects that travel on them.

Own type names (not MODEL / VAE / CONDITIONING) mean ComfyUI refuses to wire a Stable Diffusion model,
VAE or conditioning into an Infinity socket, and the other way round. The names are those saved
workflows reference; never rename them. Each object keeps the name of the file it came from, so an
error further down the graph can name the files at fault.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from comfy_api.latest import io

from infinity_core import Schedule, T5TextEncoder, TextCondition, TransformerConfig, VAEConfig
from infinity_core.compiled import CompileConfig
from infinity_core.vae.autoencoder import BitwiseVAE
from infinity_core.transformer.model import InfinityTransformer
from infinity_core.trained_sizes import TrainedSizes

InfinityModelSocket = io.Custom("INFINITY_MODEL")
InfinityVAESocket = io.Custom("INFINITY_VAE")
InfinityTextEncoderSocket = io.Custom("INFINITY_TEXT_ENCODER")
InfinityConditioningSocket = io.Custom("INFINITY_COND")
InfinityCodesSocket = io.Custom("INFINITY_CODES")
InfinityEncodedImageSocket = io.Custom("INFINITY_ENCODED_IMAGE")


@dataclass(eq=False)
class InfinityModel:
    """INFINITY_MODEL: the transformer, in a ComfyUI ModelPatcher (see comfy_bridge.managed)."""

    patcher: Any
    file_name: str
    compile: CompileConfig | None = None      # set by Infinity Compile Model
    trained_sizes: TrainedSizes | None = None  # what the file says it was trained at (None: no limits stated)
    stream_blocks: bool = False                # the loader's offload "blocks": blocks stay in RAM (offload.py)

    @property
    def transformer(self) -> InfinityTransformer:
        return self.patcher.model.inner

    @property
    def config(self) -> TransformerConfig:
        return self.transformer.config


@dataclass(eq=False)
class InfinityVAE:
    """INFINITY_VAE: the bitwise (BSQ) VAE (decoder, and the encoder when the file has one) in a
    ComfyUI ModelPatcher (see comfy_bridge.managed)."""

    patcher: Any
    file_name: str

    @property
    def vae(self) -> BitwiseVAE:
        return self.patcher.model.inner

    @property
    def config(self) -> VAEConfig:
        return self.vae.config

    @property
    def has_encoder(self) -> bool:
        return self.vae.encoder is not None


@dataclass(eq=False)
class InfinityTextEncoder:
    """INFINITY_TEXT_ENCODER: a T5 encoder and its tokenizer; `patcher` holds the T5 module (the same
    object as `encoder.model`) so that ComfyUI's model management loads it before an encode and can free it."""

    encoder: T5TextEncoder
    patcher: Any
    folder_name: str


@dataclass(frozen=True)
class InfinityConditioning:
    """INFINITY_COND: T5 features of the prompt and of the negative prompt (None: the model's learned
    unconditional text, as upstream does for an empty negative prompt)."""

    positive: TextCondition
    negative: TextCondition | None
    encoder_name: str


@dataclass(frozen=True)
class InpaintPaste:
    """What the decoder pastes back after inpainting: the picture [1 or B, 3, H, W] in [-1, 1] where the
    mask [1 or B, H, W] (1 = redraw) keeps it."""

    picture: torch.Tensor
    mask: torch.Tensor


@dataclass(frozen=True)
class InfinityCodes:
    """INFINITY_CODES: summed multi-scale codes [B, d, h, w] (the VAE decoder's input), on ComfyUI's
    intermediate device, with the transformer they came from (to check the VAE pairing) and, after
    inpainting, the picture to paste back outside the mask."""

    codes: torch.Tensor
    model_config: TransformerConfig
    model_name: str
    paste: InpaintPaste | None = None


@dataclass(frozen=True)
class InfinityEncodedImage:
    """INFINITY_ENCODED_IMAGE: a picture encoded by the VAE on a schedule's grids, for img2img and
    inpainting. `bits` is what `generate(init_bits=)` takes (per scale [B, h, w, d] uint8 on the VAE
    grids); `picture` the picture as fitted to the schedule, [B, 3, H, W] in [-1, 1]; `mask` is [B, H, W] in
    0..1 at the schedule's image size (1 = redraw) or None."""

    bits: tuple[torch.Tensor, ...]
    schedule: Schedule
    pixels: str            # the schedule's pixel budget, a key of PIXEL_BUDGETS
    picture: torch.Tensor
    mask: torch.Tensor | None
    vae_name: str
    vae_bits: int          # the VAE's code width, to check it against the sampler's model
