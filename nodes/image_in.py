"""Image-in nodes: a ComfyUI IMAGE (and MASK) -> INFINITY_ENCODED_IMAGE for img2img and inpainting, and a
padded canvas with its mask for outpainting. The geometry and encoding are the core's (`infinity_core.image_in`);
these nodes map ComfyUI's layouts and the choices of its own Upscale Image and Pad Image for Outpainting nodes.

ComfyUI's IMAGE is [B, H, W, C] in 0..1 (C = 3; greyscale and RGBA pictures, with 1 or 4 channels, are taken
as the core takes them: copied to RGB, alpha dropped); the core's images are [B, C, H, W] in [-1, 1].
"""
from __future__ import annotations

import torch
from comfy_api.latest import io

from infinity_core import ASPECT_PRESETS, PIXEL_BUDGETS, InfinityError, get_schedule
from infinity_core.image_in import encode_image, fit_image, fit_mask, pad_for_outpaint, schedule_for_image, vae_grids
from infinity_core.user_text import quoted
from infinity_core.vae.autoencoder import decode_memory
from . import comfy_bridge
from .decode import to_comfy_image
from .schema import node_schema
from .types import InfinityEncodedImage, InfinityEncodedImageSocket, InfinityVAE, InfinityVAESocket

MATCH_INPUT = "match input"
UPSCALE_METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "lanczos")   # ComfyUI's Upscale Image names
CROP_FITS = {"disabled": "stretch", "center": "crop"}                           # its crop choices -> core fit
MAX_PADDING = 4096


def from_comfy_image(image: torch.Tensor) -> torch.Tensor:
    """[B, H, W, C] in 0..1 -> [B, C, H, W] in [-1, 1]."""
    if not isinstance(image, torch.Tensor) or image.dim() != 4:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise InfinityError(f"image: expected ComfyUI's [B, H, W, C] IMAGE, got {shape}")
    return image.float().permute(0, 3, 1, 2) * 2 - 1


def _check_choice(name: str, value: str, valid) -> None:
    if value not in valid:
        raise InfinityError(f"{name}: {quoted(value)} is not an option; valid: {', '.join(valid)}")


def _validation_error(check) -> bool | str:
    try:
        check()
    except InfinityError as error:
        return str(error)
    return True


def _check_encode_choices(aspect_ratio, pixels, upscale_method, crop) -> None:
    """Every combo of Infinity Encode Image (None: linked, checked when it runs)."""
    for name, value, valid in (("aspect_ratio", aspect_ratio, [MATCH_INPUT, *ASPECT_PRESETS]),
                               ("pixels", pixels, PIXEL_BUDGETS), ("upscale_method", upscale_method, UPSCALE_METHODS),
                               ("crop", crop, CROP_FITS)):
        if value is not None:
            _check_choice(name, value, valid)


def _pixels_input() -> io.Combo.Input:
    return io.Combo.Input("pixels", options=list(PIXEL_BUDGETS), default="0.06M",
                          tooltip="Pixel budget of the generation (0.06M: about 256x256, 7 scales; 1M: about "
                                  "1024x1024, 13 scales). The picture is resized to it.")


class InfinityEncodeImage(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(
            node_id="InfinityEncodeImage", display_name="Infinity Encode Image",
            description=("Resizes a picture to a size Infinity draws and encodes it with the VAE, for the "
                         "sampler's encoded_image input: image to image (keep from picture) and, with a mask, "
                         "inpainting (white = redraw)."),
            search_aliases=("img2img", "image to image", "inpaint", "VAE encode", "encode"),
            inputs=[
                io.Image.Input("image", tooltip="The picture (any size; greyscale and alpha are handled as "
                                                "ComfyUI does)."),
                InfinityVAESocket.Input("vae", tooltip="From Load Infinity VAE (with its encoder); the VAE of the "
                                                       "model that will sample."),
                io.Combo.Input("aspect_ratio", options=[MATCH_INPUT, *ASPECT_PRESETS], default=MATCH_INPUT,
                               tooltip="Width:height of the result. 'match input': the official template nearest "
                                       "the picture's own aspect."),
                _pixels_input(),
                io.Combo.Input("upscale_method", options=list(UPSCALE_METHODS), default="bicubic",
                               tooltip="How the picture is resized, as in ComfyUI's Upscale Image."),
                io.Combo.Input("crop", options=list(CROP_FITS), default="center",
                               tooltip="center: keep the aspect and cut the overhang; disabled: stretch to the size."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Optional inpainting mask (1 = redraw), from any mask node; resized with the "
                                      "picture (stretched to the picture's size first if it differs)."),
            ],
            outputs=[
                InfinityEncodedImageSocket.Output(display_name="encoded_image", tooltip=(
                    "The encoded picture and its mask, for the Infinity Bitwise Sampler's encoded_image input.")),
                io.Image.Output(display_name="image", tooltip="The picture as resized for Infinity (what the "
                                                              "encoder saw)."),
            ],
        )

    @classmethod
    def validate_inputs(cls, aspect_ratio, pixels, upscale_method, crop) -> bool | str:
        return _validation_error(lambda: _check_encode_choices(aspect_ratio, pixels, upscale_method, crop))

    @classmethod
    def execute(cls, image: torch.Tensor, vae: InfinityVAE, aspect_ratio: str, pixels: str, upscale_method: str,
                crop: str, mask: torch.Tensor | None = None) -> io.NodeOutput:
        _check_encode_choices(aspect_ratio, pixels, upscale_method, crop)
        if not vae.has_encoder:
            raise InfinityError(f"vae: '{vae.file_name}' has no encoder (a decoder-only file), so it cannot encode "
                                "pictures; load a VAE file that includes the encoder")
        pictures = from_comfy_image(image)                                   # [B, C, H, W] in [-1, 1]
        height, width = pictures.shape[-2:]
        schedule = (schedule_for_image(height, width, pixels) if aspect_ratio == MATCH_INPUT
                    else get_schedule(ASPECT_PRESETS[aspect_ratio], pixels))
        fit = CROP_FITS[crop]
        fitted = fit_image(pictures, schedule, fit, upscale_method)             # [B, 3, Hs, Ws] in [-1, 1]
        fitted_mask = None
        if mask is not None:
            fitted_mask = fit_mask(mask, schedule, fit, image_size=(height, width), batch_size=pictures.shape[0])
        # the encoder mirrors the decoder's levels: its activation peak is taken as the decode's at the same size
        memory = decode_memory(vae.config, vae_grids(vae.vae, schedule)[-1], batch_size=pictures.shape[0],
                               dtype=vae.vae.dtype)
        comfy_bridge.load_for_inference(vae.patcher, memory_required=memory)
        bits = encode_image(vae.vae, fitted, schedule, "stretch")             # already at the schedule's size
        device = comfy_bridge.intermediate_device()
        encoded = InfinityEncodedImage(tuple(b.to(device) for b in bits), schedule, pixels, fitted.to(device),
                                       None if fitted_mask is None else fitted_mask.to(device),
                                       vae.file_name, vae.config.codebook_dim)
        return io.NodeOutput(encoded, to_comfy_image(fitted).to(device))


class InfinityPadForOutpainting(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        def margin(side: str) -> io.Int.Input:
            return io.Int.Input(side, default=0, min=0, max=MAX_PADDING, step=8,
                                tooltip=f"Pixels of new canvas to add on the {side}, in the input's pixels.")
        return node_schema(
            node_id="InfinityPadForOutpainting", display_name="Infinity Pad for Outpainting",
            description=("Extends a picture by margins and fits the canvas to the nearest size Infinity draws "
                         "(like Pad Image for Outpainting). The new area is filled with the "
                         "picture's edge colours and is white (1 = redraw) in the mask; feed both to Infinity "
                         "Encode Image."),
            search_aliases=("outpaint", "pad image", "extend", "uncrop"),
            inputs=[
                io.Image.Input("image", tooltip="The picture to extend."),
                margin("left"), margin("top"), margin("right"), margin("bottom"),
                io.Int.Input("feather", default=0, min=0, max=MAX_PADDING,
                             tooltip="Pixels of the old picture along a padded side that are partly redrawn too "
                                     "(a soft seam), as Pad Image for Outpainting's feathering."),
                _pixels_input(),
            ],
            outputs=[io.Image.Output(display_name="image", tooltip="The padded picture, at a size Infinity draws."),
                     io.Mask.Output(display_name="mask", tooltip="1 where the canvas is new (to be drawn).")],
        )

    @classmethod
    def validate_inputs(cls, pixels) -> bool | str:
        return _validation_error(lambda: pixels is None or _check_choice("pixels", pixels, PIXEL_BUDGETS))

    @classmethod
    def execute(cls, image: torch.Tensor, left: int, top: int, right: int, bottom: int, feather: int,
                pixels: str) -> io.NodeOutput:
        _check_choice("pixels", pixels, PIXEL_BUDGETS)
        padded, mask, _ = pad_for_outpaint(from_comfy_image(image), left, top, right, bottom, pixels, feather)
        device = comfy_bridge.intermediate_device()
        return io.NodeOutput(to_comfy_image(padded).to(device), mask.to(device))
