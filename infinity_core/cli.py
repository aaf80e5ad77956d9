"""Command line: `python -m infinity_core generate --prompt "..." -o out.png`, and
`python -m infinity_core batch LIST -o FOLDER` for a prompt list (see infinity_core/batch/).

Without --transformer/--vae/--text-encoder it uses the small demo model shipped in the pack's
`models/` folder, so a fresh checkout can draw something on a CPU in seconds. From a picture:
`--image in.png` (img2img: `--keep-scales K` keeps its K coarsest scales), `--mask m.png` (inpaint:
white, or opaque alpha, is redrawn), `--outpaint L,T,R,B` (pixels added on each side, then inpainted).

Every setting is checked, and the output path too, before a model is read. Sampling settings left out
take the core's defaults (`SamplingConfig`); the pixel budget defaults to the one the transformer file
names in its metadata, else 1M.
"""
from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from . import image_in
from .batch import command as batch_command
from .devices import resolve_device
from .errors import InfinityError
from .memory import check_fits
from .model_files import DEMO_FILES, add_model_arguments
from .offload import streamed_resident_bytes
from .output import OutputPaths
from .picture_file import open_picture, picture_planes
from .pipeline import InfinityPipeline, to_pil
from .sampling_config import SamplingConfig, parse_per_scale
from .speed import SPEED_MODES
from .schedules import ASPECT_PRESETS, PIXEL_BUDGETS, describe, parse_aspect
from .text_encoder import check_text_encoder_folder
from .trained_sizes import trained_sizes
from .user_text import quoted
from .weights import model_defaults, read_model_metadata

DEMO_TRANSFORMER, DEMO_VAE, DEMO_TEXT_ENCODER = DEMO_FILES.transformer, DEMO_FILES.vae, DEMO_FILES.text_encoder

log = logging.getLogger("infinity_core")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m infinity_core", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="text to image, or from a picture")
    add_model_arguments(gen)
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--negative", default="", help="negative prompt (default: the learned unconditional text)")
    gen.add_argument("-o", "--output", type=Path, default=Path("infinity.png"),
                     help="image path (.png, .jpg, .webp); with --batch > 1, _1, _2, ... are added before the suffix")
    gen.add_argument("--overwrite", action="store_true", help="replace output files that already exist")
    gen.add_argument("--seed", type=int, help="image i of the batch uses seed + i (default 0)")
    gen.add_argument("--cfg", help="guidance, or a comma list with one value per scale (the last repeats)")
    gen.add_argument("--tau", help="temperature, or a per-scale comma list")
    gen.add_argument("--top-k", type=int)
    gen.add_argument("--top-p", type=float)
    gen.add_argument("--aspect", default=None,
                     help=f"width:height ('16:9') or a number width/height; presets: {', '.join(ASPECT_PRESETS)}. "
                          "Snapped to the nearest trained shape (logged). Default 1:1, or the picture's own")
    gen.add_argument("--pixels", default=None, choices=list(PIXEL_BUDGETS),
                     help="pixel budget (default: the model file's own, else 1M)")
    gen.add_argument("--batch", type=int, help="images per prompt (default 1)")
    gen.add_argument("--speed", choices=SPEED_MODES, help="exact (default: the official computation), balanced or "
                     "fast: less work at the last scales, at a measured cost (README, Speed modes)")
    gen.add_argument("--device", default=None, help="cpu, cuda, cuda:N, mps (default: the best available)")
    gen.add_argument("--offload-blocks", action="store_true",
                     help="keep the transformer in CPU memory and copy each block to the device as it runs: a "
                          "model larger than the GPU runs, slower")
    gen.add_argument("--image", type=Path, help="start from this picture (any size; fitted per --fit)")
    gen.add_argument("--mask", type=Path, help="inpaint: a PNG whose white (or, with alpha, opaque) pixels are redrawn")
    gen.add_argument("--keep-scales", type=int, default=None,
                     help="keep the picture's K coarsest scales (img2img; more = closer to the picture). "
                          "Default: 0 with --mask/--outpaint, else half the scales")
    gen.add_argument("--fit", default="crop", choices=image_in.FIT_MODES, help="how the picture meets the output size")
    gen.add_argument("--outpaint", help="L,T,R,B pixels to add on each side of --image, drawn by the model")
    batch_command.add_arguments(commands.add_parser("batch", help="every prompt of a list into a folder (resumable; Ray)"),
                                DEMO_FILES)
    return parser


@dataclass(frozen=True)
class Picture:
    """What --image / --mask / --outpaint ask for, read and checked before any model is loaded."""

    image: torch.Tensor             # [1, 3, H, W] in [-1, 1]
    mask: torch.Tensor | None       # [1, H, W] in [0, 1], 1 = redraw, on the picture's own pixels
    outpaint: tuple[int, int, int, int] | None


@dataclass(frozen=True)
class FittedPicture:
    """The picture at the run's schedule, what is redrawn and what is kept: all decided before a model loads."""

    image: torch.Tensor             # [1, 3, Hs, Ws] in [-1, 1]
    mask: torch.Tensor | None       # [1, Hs, Ws] in [0, 1], 1 = redraw
    keep_scales: int


def _read_mask(path: Path, size: tuple[int, int]) -> torch.Tensor:
    """White means redraw; a mask with transparency (an alpha channel, or a PNG's transparent colour) redraws
    where it is opaque. [1, H, W] in [0, 1]."""
    rgb, alpha = picture_planes(open_picture(path, "--mask"))  # [1, 3, h, w], [1, h, w] or None
    mask = alpha if alpha is not None else rgb.mean(dim=1)
    if tuple(mask.shape[-2:]) != size:
        log.info("--mask is %dx%d, the picture %dx%d: the mask is stretched to the picture",
                 mask.shape[-1], mask.shape[-2], size[1], size[0])
    return mask


def _parse_outpaint(text: str) -> tuple[int, int, int, int]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or min(values) < 0 or max(values) == 0:
        raise InfinityError(f"--outpaint {quoted(text)} must be four whole numbers >= 0 (left,top,right,bottom pixels), "
                            "not all 0")
    return values


def read_picture(args: argparse.Namespace) -> Picture | None:
    if args.image is None:
        for flag, value in (("--mask", args.mask), ("--keep-scales", args.keep_scales), ("--outpaint", args.outpaint)):
            if value is not None:
                raise InfinityError(f"{flag} needs --image, the picture to start from")
        return None
    if args.mask is not None and args.outpaint is not None:
        raise InfinityError("give --mask or --outpaint, not both (--outpaint makes the mask of the new area)")
    if args.keep_scales is not None and args.keep_scales < 0:
        raise InfinityError(f"--keep-scales {args.keep_scales}: must be 0 or more (the coarsest scales to keep)")
    outpaint = _parse_outpaint(args.outpaint) if args.outpaint is not None else None
    rgb, _ = picture_planes(open_picture(args.image, "--image"))   # [1, 3, H, W] in [0, 1]; alpha is not used
    mask = _read_mask(args.mask, tuple(rgb.shape[-2:])) if args.mask is not None else None
    if outpaint is not None:
        image_in.outpaint_canvas(*rgb.shape[-2:], *outpaint)
    return Picture(rgb * 2 - 1, mask, outpaint)


def sampling_config(args: argparse.Namespace, picture: Picture | None, model_settings: dict) -> SamplingConfig:
    """The run's settings: the options given, else what the model file recommends, else the core's defaults."""
    pixels = args.pixels or model_settings.get("pixels") or SamplingConfig.pixels
    if args.aspect is not None:
        h_div_w = parse_aspect(args.aspect)
    elif picture is not None:
        height, width = picture.image.shape[-2:]
        if picture.outpaint is not None:
            height, width = image_in.outpaint_canvas(int(height), int(width), *picture.outpaint)
        h_div_w = image_in.schedule_for_image(int(height), int(width), pixels).h_div_w
    else:
        h_div_w = None
    given = {
        "h_div_w": h_div_w, "pixels": pixels, "seed": args.seed, "batch_size": args.batch, "top_k": args.top_k,
        "top_p": args.top_p, "speed": args.speed,
        "cfg": parse_per_scale(args.cfg, "cfg") if args.cfg is not None else None,
        "tau": parse_per_scale(args.tau, "tau") if args.tau is not None else None}
    return SamplingConfig.from_keywords(model_settings | {k: v for k, v in given.items() if v is not None})


def fit_picture(picture: Picture, config: SamplingConfig, args: argparse.Namespace) -> FittedPicture:
    """The picture (padded for --outpaint) and its mask at the run's schedule, and the scales kept; every
    contradiction of the arguments is refused here, before a model is read."""
    schedule = config.schedule
    if picture.outpaint is not None:
        image, mask, canvas_schedule = image_in.pad_for_outpaint(picture.image, *picture.outpaint, config.pixels)
        if canvas_schedule != schedule:
            raise InfinityError(f"--outpaint gives the canvas {describe(canvas_schedule)}, but --aspect asks for "
                                f"{describe(schedule)}; leave --aspect out")
    else:
        image = image_in.fit_image(picture.image, schedule, args.fit)
        mask = None if picture.mask is None else image_in.fit_mask(picture.mask, schedule, args.fit,
                                                                   image_size=tuple(picture.image.shape[-2:]))
    keep = args.keep_scales
    if keep is None:
        keep = 0 if mask is not None else schedule.num_scales // 2
    if not 0 <= keep <= schedule.num_scales:
        raise InfinityError(f"--keep-scales {keep}: must be in 0..{schedule.num_scales}, the scales of the "
                            f"{config.pixels} schedule")
    return FittedPicture(image, mask, keep)


def picture_inputs(pipe: InfinityPipeline, fitted: FittedPicture, schedule) -> dict:
    """generate's init_bits / init_scales / mask for the fitted picture."""
    with torch.inference_mode():
        bits = image_in.encode_image(pipe.vae, fitted.image, schedule, "stretch")
    return {"init_bits": bits, "init_scales": fitted.keep_scales, "mask": fitted.mask}


def check_demo_files(args: argparse.Namespace) -> None:
    """The demo model ships in the pack's source folder, not with a pip-installed engine: say so."""
    for flag, path, demo in (("--transformer", args.transformer, DEMO_TRANSFORMER), ("--vae", args.vae, DEMO_VAE),
                             ("--text-encoder", args.text_encoder, DEMO_TEXT_ENCODER)):
        if path == demo and not demo.exists():
            raise InfinityError(f"the demo model is not here ({demo}): it ships in the pack's source folder, not "
                                f"with an installed engine; pass {flag} (and the other two model paths)")


def check_model_files(args: argparse.Namespace) -> None:
    """What the files alone decide, before the transformer's minutes-long load: the VAE file is readable
    (its header) and the text encoder is a loadable folder."""
    try:
        read_model_metadata(args.vae)
    except InfinityError as err:
        raise InfinityError(f"--vae: {err}") from None
    try:
        check_text_encoder_folder(args.text_encoder)
    except InfinityError as err:
        raise InfinityError(f"--text-encoder: {err}") from None


def run_generate(args: argparse.Namespace) -> list[Path]:
    started = time.perf_counter()
    check_demo_files(args)
    device = resolve_device(args.device)
    picture = read_picture(args)
    config = sampling_config(args, picture, model_defaults(args.transformer))
    outputs = OutputPaths.plan(args.output, config.batch_size, overwrite=args.overwrite,
                               inputs=[p for p in (args.image, args.mask) if p is not None])
    fitted = fit_picture(picture, config, args) if picture is not None else None
    check_model_files(args)
    log.info("shape: %s; seed %d, %d image(s)", describe(config.schedule), config.seed, config.batch_size)
    sizes = trained_sizes(args.transformer)
    outside = sizes.warning(config.schedule, config.pixels) if sizes is not None else None
    if outside:
        log.warning("warning: %s", outside)
    pipe = InfinityPipeline.from_files(args.transformer, args.vae, args.text_encoder, device=device,
                                       with_encoder=picture is not None, stream_blocks=args.offload_blocks)
    streamed = pipe.stream_device is not None
    check_fits(pipe.transformer, pipe.vae, config, device=pipe.device,
               weight_bytes=streamed_resident_bytes(pipe.transformer) if streamed else 0)
    extra = picture_inputs(pipe, fitted, config.schedule) if fitted is not None else {}
    result = pipe.sample(args.prompt, args.negative, config=config, **extra,
                         callback=lambda done, total, codes: log.info("scale %d/%d", done, total))
    for index, path in enumerate(outputs.paths):    # decoded and written one at a time
        outputs.write(path, to_pil(pipe.decode(result, slice(index, index + 1)))[0])
    log.info("wrote %s in %.1f s", ", ".join(map(str, outputs.paths)), time.perf_counter() - started)
    return list(outputs.paths)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    try:
        if args.command == "batch":
            check_demo_files(args)
            return batch_command.run(args)
        run_generate(args)
    except InfinityError as err:
        log.error("error: %s", err)
        return 2
    return 0
