"""Tokenizer decode nodes: INFINITY_CODES + INFINITY_VAE -> ComfyUI IMAGE.

IMAGE is [B, H, W, 3] float32 RGB in 0..1 on ComfyUI's intermediate device; the core decodes to
[B, 3, H, W] in [-1, 1], so only this node changes layout and range (no BGR flip).
"""
from __future__ import annotations

import torch
from comfy_api.latest import io

from infinity_core import InfinityError, check_pair
from infinity_core.image_in import match_kept_colour, paste_outside_mask
from infinity_core.vae.autoencoder import decode_memory
from infinity_core.vae.tiling import Tiling
from . import comfy_bridge
from .schema import node_schema
from .types import InfinityCodes, InfinityCodesSocket, InfinityVAE, InfinityVAESocket

def to_comfy_image(images: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] in [-1, 1] -> [B, H, W, 3] float32 in 0..1."""
    return ((images.float() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).contiguous()


def _decode_inputs() -> list[io.Input]:
    return [
        InfinityVAESocket.Input("vae", tooltip="From Load Infinity VAE; the one trained with the sampler's model."),
        InfinityCodesSocket.Input("codes", display_name="image data", tooltip="From the Infinity Bitwise Sampler."),
    ]


_OUTPUTS = [io.Image.Output(display_name="image",
                            tooltip="RGB images, for Save Image, Preview Image or any other image node.")]


class InfinityTokenizerDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(
            node_id="InfinityTokenizerDecode", display_name="Infinity VAE Decode",
            description=("Turns the sampler's result into an image with the VAE. Refuses a VAE that was not made "
                         "with the sampler's model."),
            search_aliases=("VAE decode", "decode", "tokenizer decode"),
            inputs=_decode_inputs(), outputs=_OUTPUTS,
        )

    @classmethod
    def execute(cls, vae: InfinityVAE, codes: InfinityCodes) -> io.NodeOutput:
        return io.NodeOutput(decode_images(vae, codes, tiling=None))


class InfinityTokenizerDecodeTiled(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(
            node_id="InfinityTokenizerDecodeTiled", display_name="Infinity VAE Decode (Tiled)",
            description=("Infinity VAE Decode in overlapping tiles, for images too large to decode at once: "
                         "memory follows the tile size. Tiles are cross-faded over the overlap, so no edge shows; "
                         "the result differs slightly from a whole-image decode."),
            search_aliases=("VAE decode tiled", "tiled decode"),
            inputs=[
                *_decode_inputs(),
                io.Int.Input("tile_size", default=512, min=128, max=4096, step=64,
                             tooltip="Tile side in pixels; smaller tiles need less memory."),
                io.Int.Input("overlap", default=128, min=0, max=1024, step=32,
                             tooltip="Pixels shared by neighbouring tiles and cross-faded. Must be smaller than "
                                     "the tile size."),
            ],
            outputs=_OUTPUTS,
        )

    @classmethod
    def execute(cls, vae: InfinityVAE, codes: InfinityCodes, tile_size: int, overlap: int) -> io.NodeOutput:
        # ComfyUI has checked each widget's min / max; the rule between the two is checked here
        if overlap >= tile_size:
            raise InfinityError(f"overlap: {overlap} px must be smaller than tile_size ({tile_size} px)")
        stride = vae.config.downsample
        tiling = Tiling(tile=max(1, tile_size // stride), overlap=overlap // stride)
        return io.NodeOutput(decode_images(vae, codes, tiling))


def decode_images(vae: InfinityVAE, codes: InfinityCodes, tiling: Tiling | None) -> torch.Tensor:
    """Check the pairing, then decode image by image (progress per image) into ComfyUI's IMAGE layout.
    After inpainting, the picture is pasted back where the mask keeps it (`paste_outside_mask`), the
    redrawn area first shifted to the picture's tone (`match_kept_colour`): the decoder is not local, so kept
    codes alone do not give back the kept pixels exactly, nor their shade."""
    check_pair(codes.model_config, vae.config, f"model '{codes.model_name}'", f"VAE '{vae.file_name}'")
    batch = codes.codes.shape[0]
    memory = decode_memory(vae.config, tuple(codes.codes.shape[-2:]), tiling, dtype=vae.vae.dtype)
    device = comfy_bridge.load_for_inference(vae.patcher, memory_required=memory)
    image_done = comfy_bridge.progress(batch)
    images = []
    with torch.inference_mode():
        for index in range(batch):
            decoded = vae.vae.decode(codes.codes[index:index + 1].to(device), tiling)   # [1, 3, H, W]
            if codes.paste is not None:
                picture, mask = (t[min(index, t.shape[0] - 1)][None] for t in (codes.paste.picture, codes.paste.mask))
                picture, mask = picture.to(device), mask.to(device)
                decoded = paste_outside_mask(match_kept_colour(decoded, picture, mask), picture, mask)
            images.append(to_comfy_image(decoded).to(comfy_bridge.intermediate_device()))
            image_done(index + 1, batch)
    return torch.cat(images)
