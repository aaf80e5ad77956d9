"""Bitwise sampler nodes: widgets -> `infinity_core.SamplingConfig` -> `generate` -> INFINITY_CODES.

The simple sampler takes one cfg for every scale; the advanced one a per-scale cfg schedule ("3, 3, 4").
Every setting is checked by `SamplingConfig` (the core's one home of defaults and ranges) when the prompt
is queued, so a bad value is refused before any work, with a message that starts with the widget's name.

Optional inputs: a VAE (the paired one) turns on a preview frame per scale; an encoded image (from
Infinity Encode Image) starts the generation from a picture: its first `keep_scales` scales are kept
(img2img), and with a mask only the masked region is redrawn (inpainting).
"""
from __future__ import annotations

import logging
from functools import partial

from comfy_api.latest import io, ui

from infinity_core import (ASPECT_PRESETS, CFG_RANGE, MAX_BATCH, PIXEL_BUDGETS, SEED_RANGE, SPEED_MODES, TAU_RANGE,
                           TOP_K_RANGE, TOP_P_RANGE, InfinityError, SamplingConfig, check_pair, generate, parse_per_scale,
                           per_scale_values, sampling_memory)
from infinity_core.offload import BlockStreaming, streamed_resident_bytes
from infinity_core.user_text import quoted
from . import comfy_bridge, previews
from .schema import advanced, node_schema
from .types import (InfinityCodes, InfinityCodesSocket, InfinityConditioning, InfinityConditioningSocket,
                    InfinityEncodedImage, InfinityEncodedImageSocket, InfinityModel, InfinityModelSocket,
                    InfinityVAE, InfinityVAESocket, InpaintPaste)

log = logging.getLogger(__name__)

DEFAULTS = SamplingConfig()
DEFAULT_PIXELS = "0.06M"   # 256 x 256 at 1:1: the shipped demo model's size, and quick on a CPU
MAX_SCALES = max(PIXEL_BUDGETS.values())
ALIASES = ("sampler", "KSampler", "text to image", "txt2img", "img2img", "inpaint", "next-scale prediction")


def check_aspect_ratio(aspect_ratio: str | None) -> None:
    if aspect_ratio is not None and aspect_ratio not in ASPECT_PRESETS:
        raise InfinityError(f"aspect_ratio: {quoted(aspect_ratio)} is not a preset; valid: {', '.join(ASPECT_PRESETS)}")


def sampling_config(cfg, aspect_ratio: str | None, encoded_image: InfinityEncodedImage | None = None,
                    **widgets) -> SamplingConfig:
    """The core config of the widget values (None: linked, the default stands in while validating). With
    an encoded image its schedule sets the size; the aspect_ratio and pixels widgets are not used."""
    check_aspect_ratio(aspect_ratio)
    if encoded_image is not None:
        widgets["pixels"] = encoded_image.pixels
        h_div_w = encoded_image.schedule.h_div_w
    else:
        h_div_w = ASPECT_PRESETS[aspect_ratio] if aspect_ratio is not None else None
    return SamplingConfig.from_keywords({"h_div_w": h_div_w, "cfg": cfg, **widgets})


def cfg_schedule_values(cfg_schedule: str, pixels: str) -> tuple[float, ...]:
    """The advanced sampler's text, parsed and checked against the number of scales of `pixels`."""
    if pixels not in PIXEL_BUDGETS:
        raise InfinityError(f"pixels must be one of {list(PIXEL_BUDGETS)}, got {quoted(pixels)}")
    values = parse_per_scale(cfg_schedule, "cfg_schedule")
    return per_scale_values("cfg_schedule", values, PIXEL_BUDGETS[pixels], CFG_RANGE)


def _validation_error(check) -> bool | str:
    try:
        check()
    except InfinityError as error:
        return str(error)
    return True


def _check_text_width(model: InfinityModel, conditioning: InfinityConditioning) -> None:
    channels, expected = conditioning.positive.channels, model.config.text_channels
    if channels != expected:
        raise InfinityError(f"text encoder '{conditioning.encoder_name}' gives {channels}-channel features but "
                            f"model '{model.file_name}' expects {expected}; load the text encoder it was trained with "
                            "(flan-t5-xl for the published models)")


def _initial_image(model: InfinityModel, encoded_image: InfinityEncodedImage | None, keep_scales: int,
                   num_scales: int) -> dict:
    """generate's img2img / inpainting keywords, checked against the model and the schedule."""
    if encoded_image is None:
        if keep_scales:
            raise InfinityError(f"keep_scales: {keep_scales} needs an encoded_image (from Infinity Encode Image); "
                                "without one, set it to 0")
        return {}
    if keep_scales > num_scales:
        raise InfinityError(f"keep_scales: {keep_scales} is more than the {num_scales} scales of the encoded "
                            f"image's schedule (pixels {encoded_image.pixels}); valid: 0 .. {num_scales}")
    per_token = encoded_image.vae_bits * (4 if model.config.spatial_patchify else 1)
    if per_token != model.config.bits_per_token:
        raise InfinityError(f"encoded_image: VAE '{encoded_image.vae_name}' gives {encoded_image.vae_bits}-bit codes "
                            f"but model '{model.file_name}' predicts {model.config.bits_per_token} bits per token; "
                            "encode with the VAE trained with this model")
    return {"init_bits": list(encoded_image.bits), "init_scales": keep_scales, "mask": encoded_image.mask}


def run_sampler(model: InfinityModel, conditioning: InfinityConditioning, config: SamplingConfig,
                vae: InfinityVAE | None, encoded_image: InfinityEncodedImage | None, keep_scales: int) -> InfinityCodes:
    _check_text_width(model, conditioning)
    schedule = config.schedule
    from_image = _initial_image(model, encoded_image, keep_scales, schedule.num_scales)
    preview = None
    if vae is not None and comfy_bridge.previews_enabled():
        check_pair(model.config, vae.config, f"model '{model.file_name}'", f"VAE '{vae.file_name}'")
        preview = previews.renderer(vae, schedule)
    transformer = model.transformer
    memory = sampling_memory(model.config, schedule, config.batch_size, config.guided, transformer.compute_dtype)
    preview_vae = [vae.patcher] if preview else []
    run = partial(generate, transformer, conditioning.positive, conditioning.negative, config=config,
                  callback=comfy_bridge.progress(schedule.num_scales, preview, max(schedule.image_size)),
                  compile=model.compile, **from_image)
    if model.stream_blocks:
        device = comfy_bridge.make_room_for_streaming(memory + streamed_resident_bytes(transformer), *preview_vae)
        with BlockStreaming(transformer, device):
            result = run()
    else:
        comfy_bridge.load_for_inference(model.patcher, *preview_vae, memory_required=memory)
        result = run()
    paste = None
    if encoded_image is not None and encoded_image.mask is not None:
        paste = InpaintPaste(encoded_image.picture, encoded_image.mask)
    return InfinityCodes(result.codes.to(comfy_bridge.intermediate_device()), model.config, model.file_name, paste)


def sampler_output(model: InfinityModel, config: SamplingConfig, codes: InfinityCodes) -> io.NodeOutput:
    """The sampler's result, with a warning on the node (and in the log) when the run is outside the sizes
    the model file says it was trained at."""
    outside = model.trained_sizes.warning(config.schedule, config.pixels) if model.trained_sizes else None
    if outside is None:
        return io.NodeOutput(codes)
    log.warning("%s: %s", model.file_name, outside)
    return io.NodeOutput(codes, ui=ui.PreviewText(f"{model.file_name}: {outside}"))


def _sampler_inputs(guidance: io.Input) -> list[io.Input]:
    """The sampler's inputs: sockets, then widgets in the order saved workflows store them, then the
    optional inputs added later (appended, so older workflows keep their widget values)."""
    return [
        InfinityModelSocket.Input("model", tooltip="From Load Infinity Model."),
        InfinityConditioningSocket.Input("conditioning", tooltip="From Infinity Text Encode."),
        io.Int.Input("seed", default=DEFAULTS.seed, min=SEED_RANGE[0], max=SEED_RANGE[1], control_after_generate=True,
                     tooltip="Random seed. The same seed and settings give the same image; the images of a batch are "
                             "those of seed, seed + 1, ..."),
        guidance,
        io.Float.Input("tau", display_name="temperature", default=DEFAULTS.tau, min=TAU_RANGE[0], max=TAU_RANGE[1],
                       step=0.01, tooltip="Creativity: lower gives cleaner images that vary less from seed to seed, "
                                          "higher more varied and looser ones. 0.5 is the model makers' choice."),
        advanced(io.Int.Input("top_k", default=DEFAULTS.top_k, min=TOP_K_RANGE[0], max=TOP_K_RANGE[1],
                     tooltip="For experiments; leave it at 900. The model makes only yes/no choices, so 1 (always "
                             "the likelier answer: flatter, less varied images) is the one value that changes the "
                             "image; 0 and 900 both leave it alone.")),
        advanced(io.Float.Input("top_p", default=DEFAULTS.top_p, min=TOP_P_RANGE[0], max=TOP_P_RANGE[1], step=0.01,
                       tooltip="For experiments; 0.97 is the model makers' choice. Every choice whose likelier answer "
                               "is at least this sure takes that answer instead of a random draw: higher leaves more "
                               "to chance. 0 turns it off.")),
        io.Combo.Input("aspect_ratio", options=list(ASPECT_PRESETS), default="1:1",
                       tooltip="Width:height of the image. With an encoded_image, the picture's own shape is used "
                               "instead."),
        io.Combo.Input("pixels", options=list(PIXEL_BUDGETS), default=DEFAULT_PIXELS,
                       display_name="size",
                       tooltip="Image size in pixels: 0.06M is about 256 x 256, 1M about 1024 x 1024 (the size is "
                               "shown under the node). The published 2B/8B models are made for 1M, the demo model "
                               "for 0.06M. With an encoded_image, the picture's own size is used instead."),
        io.Int.Input("batch_size", default=DEFAULTS.batch_size, min=1, max=MAX_BATCH,
                     tooltip="How many images to make at once (with seeds seed, seed + 1, ...)."),
        io.Int.Input("keep_scales", display_name="keep from picture", default=0, min=0, max=MAX_SCALES,
                     optional=True,
                     tooltip="Image to image: how many of the coarse steps are taken from the encoded picture. More "
                             "stays closer to the picture, like a lower denoise (about 1 - keep / steps; 0.06M has 7 "
                             "steps, 1M 13). 0 takes none: for inpainting, the picture still shows outside the "
                             "mask. Without an encoded_image it must be 0."),
        InfinityVAESocket.Input("vae", optional=True,
                                tooltip="Optional: the VAE of this model, to watch the image form on the node "
                                        "(unless ComfyUI runs with --preview-method none)."),
        InfinityEncodedImageSocket.Input("encoded_image", optional=True,
                                         tooltip="Optional: a picture from Infinity Encode Image, for image to "
                                                 "image (keep from picture) and, with its mask, inpainting."),
        io.Combo.Input("speed", options=list(SPEED_MODES), default=DEFAULTS.speed, optional=True,
                       tooltip="exact: the model's own computation. balanced and fast do less work at the last "
                               "steps (guidance off there; fast also computes less of the image), at a measured "
                               "cost in fine detail (README, Speed modes)."),
    ]


_OUTPUTS = [InfinityCodesSocket.Output(display_name="image data",
                                       tooltip="The image, still in the model's own form: connect it to Infinity "
                                               "VAE Decode.")]


class InfinityBitwiseSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(
            node_id="InfinityBitwiseSampler", display_name="Infinity Bitwise Sampler",
            description=("Draws an image coarse to fine: a few blurry blocks first, each step adding finer detail. "
                         "The progress bar advances once a step, and with the VAE connected the node shows the image "
                         "as it forms; cancel stops it after the current step. top_k and top_p are for experiments "
                         "(shown under 'advanced' in frontends that have it)."),
            search_aliases=ALIASES,
            inputs=_sampler_inputs(io.Float.Input(
                "cfg", default=DEFAULTS.cfg, min=CFG_RANGE[0], max=CFG_RANGE[1], step=0.1, round=0.01,
                tooltip="How closely the image follows the prompt (and avoids the negative prompt). 1 turns this "
                        "off and is about twice as fast.")),
            outputs=_OUTPUTS,
        )

    @classmethod
    def validate_inputs(cls, seed, cfg, tau, top_k, top_p, aspect_ratio, pixels, batch_size,
                        speed=DEFAULTS.speed) -> bool | str:
        return _validation_error(lambda: sampling_config(cfg, aspect_ratio, seed=seed, tau=tau, top_k=top_k,
                                                         top_p=top_p, pixels=pixels, batch_size=batch_size,
                                                         speed=speed))

    @classmethod
    def execute(cls, model: InfinityModel, conditioning: InfinityConditioning, seed: int, cfg: float, tau: float,
                top_k: int, top_p: float, aspect_ratio: str, pixels: str, batch_size: int, keep_scales: int = 0,
                vae: InfinityVAE | None = None, encoded_image: InfinityEncodedImage | None = None,
                speed: str = DEFAULTS.speed) -> io.NodeOutput:
        config = sampling_config(cfg, aspect_ratio, encoded_image, seed=seed, tau=tau, top_k=top_k, top_p=top_p,
                                 pixels=pixels, batch_size=batch_size, speed=speed)
        return sampler_output(model, config, run_sampler(model, conditioning, config, vae, encoded_image, keep_scales))


class InfinityBitwiseSamplerAdvanced(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        default = ", ".join([f"{DEFAULTS.cfg:g}"] * PIXEL_BUDGETS[DEFAULT_PIXELS])
        return node_schema(
            node_id="InfinityBitwiseSamplerAdvanced", display_name="Infinity Bitwise Sampler (Advanced)",
            description=("The Infinity Bitwise Sampler with a cfg for each step, coarse to fine, instead of one "
                         "for all."),
            search_aliases=(*ALIASES, "cfg schedule", "per-scale cfg"),
            inputs=_sampler_inputs(io.String.Input(
                "cfg_schedule", default=default, multiline=False,
                tooltip="One cfg per step, coarse to fine, separated by commas, each "
                        f"{CFG_RANGE[0]:g}..{CFG_RANGE[1]:g}. The last value repeats for the steps left out; the "
                        "size sets the number of steps (shown under the node).")),
            outputs=_OUTPUTS,
        )

    @classmethod
    def validate_inputs(cls, seed, cfg_schedule, tau, top_k, top_p, aspect_ratio, pixels, batch_size,
                        speed=DEFAULTS.speed) -> bool | str:
        def check():
            cfg = None if cfg_schedule is None or pixels is None else cfg_schedule_values(cfg_schedule, pixels)
            sampling_config(cfg, aspect_ratio, seed=seed, tau=tau, top_k=top_k, top_p=top_p, pixels=pixels,
                            batch_size=batch_size, speed=speed)
        return _validation_error(check)

    @classmethod
    def execute(cls, model: InfinityModel, conditioning: InfinityConditioning, seed: int, cfg_schedule: str,
                tau: float, top_k: int, top_p: float, aspect_ratio: str, pixels: str, batch_size: int,
                keep_scales: int = 0, vae: InfinityVAE | None = None,
                encoded_image: InfinityEncodedImage | None = None, speed: str = DEFAULTS.speed) -> io.NodeOutput:
        pixels = encoded_image.pixels if encoded_image is not None else pixels
        config = sampling_config(cfg_schedule_values(cfg_schedule, pixels), aspect_ratio, encoded_image, seed=seed,
                                 tau=tau, top_k=top_k, top_p=top_p, pixels=pixels, batch_size=batch_size,
                                 speed=speed)
        return sampler_output(model, config, run_sampler(model, conditioning, config, vae, encoded_image, keep_scales))
