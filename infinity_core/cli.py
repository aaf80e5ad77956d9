"""Command line: `python -m infinity_core generate --prompt "..." -o out.png`.

Without --transformer/--vae/--text-encoder it uses the small demo model shipped in the pack's
`models/` folder, so a fresh checkout can draw something on a CPU in seconds.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from .errors import InfinityError
from .pipeline import InfinityPipeline, to_pil
from .schedules import ASPECT_PRESETS, PIXEL_BUDGETS, parse_aspect

PACK_MODELS = Path(__file__).resolve().parent.parent / "models"
DEMO_TRANSFORMER = PACK_MODELS / "infinity" / "infinity_demo_shapes.safetensors"
DEMO_VAE = PACK_MODELS / "infinity" / "infinity_demo_shapes_vae.safetensors"
DEMO_TEXT_ENCODER = PACK_MODELS / "text_encoders" / "t5_demo_shapes"

log = logging.getLogger("infinity_core")


def _float_list(text: str) -> float | list[float]:
    """"3" -> 3.0; "4,4,3,3,3,2,2" -> a per-scale list."""
    values = [float(v) for v in text.split(",")]
    return values[0] if len(values) == 1 else values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m infinity_core", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="text to image")
    gen.add_argument("--transformer", type=Path, default=DEMO_TRANSFORMER, help="transformer weights (.pth, .safetensors, shard folder)")
    gen.add_argument("--vae", type=Path, default=DEMO_VAE, help="VAE weights (.pth, .safetensors)")
    gen.add_argument("--text-encoder", type=Path, default=DEMO_TEXT_ENCODER, help="T5 folder (flan-t5-xl for the official models)")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--negative", default="", help="negative prompt (default: the learned unconditional text)")
    gen.add_argument("-o", "--output", type=Path, default=Path("infinity.png"),
                     help="PNG path; with --batch > 1, _1, _2, ... are added before the suffix")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--cfg", type=_float_list, default=3.0, help="guidance, or a comma list with one value per scale")
    gen.add_argument("--tau", type=_float_list, default=0.5, help="temperature, or a per-scale comma list")
    gen.add_argument("--top-k", type=int, default=900)
    gen.add_argument("--top-p", type=float, default=0.97)
    gen.add_argument("--aspect", default="1:1", help=f"W:H or h/w; presets: {', '.join(ASPECT_PRESETS)}")
    gen.add_argument("--pixels", default=None, choices=list(PIXEL_BUDGETS),
                     help="pixel budget (default: 1M, or 0.06M for the demo model)")
    gen.add_argument("--batch", type=int, default=1)
    gen.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    return parser


def run_generate(args: argparse.Namespace) -> list[Path]:
    pixels = args.pixels or ("0.06M" if args.transformer == DEMO_TRANSFORMER else "1M")
    started = time.perf_counter()
    pipe = InfinityPipeline.from_files(args.transformer, args.vae, args.text_encoder, device=args.device)
    images = pipe(args.prompt, args.negative, h_div_w=parse_aspect(args.aspect), pixels=pixels, cfg=args.cfg,
                  tau=args.tau, top_k=args.top_k, top_p=args.top_p, seed=args.seed, batch_size=args.batch,
                  callback=lambda done, total, codes: log.info("scale %d/%d", done, total))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    paths = ([args.output] if len(images) == 1 else
             [args.output.with_name(f"{args.output.stem}_{i + 1}{args.output.suffix}") for i in range(len(images))])
    for path, image in zip(paths, to_pil(images)):
        image.save(path)
    log.info("wrote %s in %.1f s", ", ".join(map(str, paths)), time.perf_counter() - started)
    return paths


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    try:
        run_generate(args)
    except InfinityError as err:
        log.error("error: %s", err)
        return 2
    return 0

