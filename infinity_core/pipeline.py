"""The reference non-ComfyUI path: prompt -> T5 -> bitwise sampling -> VAE decode -> image.

Components are passed in explicitly (`InfinityPipeline(transformer, vae, text_encoder)`); the text
encoder is optional when the caller brings a `TextCondition`. Upstream's equivalent is
`tools/run_infinity.py:gen_one_img`, minus its uint8/BGR conversion inside the model.
"""
from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Sequence

import torch
from PIL import Image

from .devices import compute_dtype, resolve_device
from .errors import InfinityError
from .loading import check_pair, load_transformer, load_vae
from .offload import BlockStreaming
from .sampling import GenerationResult, ProgressCallback, generate
from .text import TextCondition
from .text_encoder import T5TextEncoder, default_text_dtype, load_text_encoder
from .vae.autoencoder import BitwiseVAE
from .transformer.model import InfinityTransformer


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] in [-1, 1] -> [B, H, W, 3] uint8, truncating as upstream does (infinity.py:639-640)."""
    return ((images.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).mul(255).to(torch.uint8).cpu()


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    return [Image.fromarray(array.numpy()) for array in to_uint8(images)]


@dataclass
class InfinityPipeline:
    transformer: InfinityTransformer
    vae: BitwiseVAE
    text_encoder: T5TextEncoder | None = None
    stream_device: torch.device | None = None   # set: the transformer rests on the CPU, its blocks streamed here

    @property
    def device(self) -> torch.device:
        """Where the transformer runs."""
        return self.stream_device or self.transformer.device

    def __post_init__(self):
        check_pair(self.transformer.config, self.vae.config)

    @classmethod
    def from_files(cls, transformer: str | os.PathLike, vae: str | os.PathLike,
                   text_encoder: str | os.PathLike | None = None, device=None,
                   dtype: torch.dtype | None = None, *, with_encoder: bool = False,
                   stream_blocks: bool = False) -> "InfinityPipeline":
        """Load the three parts; `with_encoder` also builds the VAE's encoder (needed to start from a picture).
        `stream_blocks` keeps the transformer in CPU memory and streams its blocks to `device` as they run
        (offload.py): for a model larger than the device's memory, at the cost of copying it once a scale."""
        device = resolve_device(device)
        streamed = stream_blocks and device.type != "cpu"
        if streamed:
            model = load_transformer(transformer, "cpu", dtype or compute_dtype(device), prepack=False)
        else:
            model = load_transformer(transformer, device, dtype)
        autoencoder = load_vae(vae, device, dtype, with_encoder=with_encoder)
        check_pair(model.config, autoencoder.config, f"transformer '{transformer}'", f"VAE '{vae}'")
        # The text encoder waits on the CPU and visits the GPU only while it encodes (see `encode`).
        encoder = (load_text_encoder(text_encoder, "cpu", default_text_dtype(device)) if text_encoder is not None else None)
        return cls(model, autoencoder, encoder, device if streamed else None)

    def encode(self, prompts: str | Sequence[str]) -> TextCondition:
        """T5 features; on a GPU the encoder is moved there for the call and back to the CPU after it."""
        if self.text_encoder is None:
            raise InfinityError("this pipeline has no text encoder; pass a TextCondition instead of a prompt")
        device = self.device
        if device.type == "cpu":
            return self.text_encoder.encode(prompts)
        try:
            return self.text_encoder.to(device).encode(prompts)
        finally:
            self.text_encoder.to("cpu")

    def decode(self, result: GenerationResult, images: slice = slice(None)) -> torch.Tensor:
        """[b, 3, H, W] float32 RGB in [-1, 1] of `result`'s `images` (all by default)."""
        with torch.inference_mode():
            return self.vae.decode(result.codes[images])

    def sample(self, prompt: str | Sequence[str] | TextCondition, negative_prompt: str | TextCondition | None = None,
               *, callback: ProgressCallback | None = None, **sampling) -> GenerationResult:
        """The codes of the images; `sampling` takes `generate`'s keywords (h_div_w, pixels, cfg, ..., config,
        init_bits, init_scales, mask)."""
        cond = prompt if isinstance(prompt, TextCondition) else self.encode(prompt)
        negative = negative_prompt
        if isinstance(negative_prompt, str):   # an empty negative prompt means the learned unconditional text
            negative = self.encode(negative_prompt) if negative_prompt else None
        streaming = BlockStreaming(self.transformer, self.stream_device) if self.stream_device else nullcontext()
        with streaming:
            return generate(self.transformer, cond, negative, callback=callback, **sampling)

    def __call__(self, prompt: str | Sequence[str] | TextCondition, negative_prompt: str | TextCondition | None = None,
                 *, callback: ProgressCallback | None = None, **sampling) -> torch.Tensor:
        """Images [B, 3, H, W] in [-1, 1]: `sample`, then `decode`."""
        return self.decode(self.sample(prompt, negative_prompt, callback=callback, **sampling))
