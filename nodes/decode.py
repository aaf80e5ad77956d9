"""Tokenizer decode node: INFINITY_CODES + INFINITY_VAE -> ComfyUI IMAGE.

IMAGE is [B, H, W, 3] float32 RGB in 0..1 on ComfyUI's intermediate device; the core decodes to
[B, 3, H, W] in [-1, 1], so only this node changes layout and range (no BGR flip).
"""
from __future__ import annotations

import torch

from ..infinity_core import VAEConfig, check_pair
from . import comfy_bridge
from .types import INFINITY_CODES, INFINITY_VAE, InfinityCodes, InfinityVAE

LIVE_FULL_RESOLUTION_MAPS = 8   # decoder activations alive at once at full resolution (a generous estimate)


def decode_memory(config: VAEConfig, codes: torch.Tensor) -> int:
    """Bytes one image's decode needs besides the weights (images are decoded one at a time)."""
    height, width = (side * config.downsample for side in codes.shape[-2:])
    channels = config.base_channels * config.channel_mult[0]
    return LIVE_FULL_RESOLUTION_MAPS * height * width * channels * 4


def to_comfy_image(images: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] in [-1, 1] -> [B, H, W, 3] float32 in 0..1."""
    return ((images.float() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).contiguous()


class InfinityTokenizerDecode:
    DISPLAY_NAME = "Infinity Tokenizer Decode"
    DESCRIPTION = ("Turns the sampler's codes into an image with the bitwise tokenizer's decoder. "
                   "Refuses a VAE that does not match the transformer the codes came from.")
    CATEGORY = "Infinity"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("RGB images, for Save Image, Preview Image or any other image node.",)
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "vae": (INFINITY_VAE, {"tooltip": "From Load Infinity VAE; the one trained with the sampler's model."}),
            "codes": (INFINITY_CODES, {"tooltip": "From the Infinity Bitwise Sampler."}),
        }}

    def decode(self, vae: InfinityVAE, codes: InfinityCodes):
        check_pair(codes.model_config, vae.config, f"model '{codes.model_name}'", f"VAE '{vae.file_name}'")
        batch = codes.codes.shape[0]
        device = comfy_bridge.load_for_inference(vae.patcher, decode_memory(vae.config, codes.codes))
        image_done = comfy_bridge.progress(batch)
        images = []
        with torch.inference_mode():
            for index in range(batch):
                decoded = vae.patcher.model.decode(codes.codes[index:index + 1].to(device))   # [1, 3, H, W]
                images.append(to_comfy_image(decoded).to(comfy_bridge.intermediate_device()))
                image_done(index + 1, batch)
        return (torch.cat(images),)
