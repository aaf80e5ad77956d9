"""The README's picture of the demo model: a grid of generated images, each under its prompt and size.

    python -m training.demo_grid --out docs/demo_grid.png

    python -m training.demo_grid --sizes 1:1@0.06M 1:1@0.25M 16:9@0.06M 2:3@0.06M --pairs 4

Uses the shipped files and the core's sampling defaults (SamplingConfig). Each row is one size from
`--sizes` (a size twice gives two rows) drawing held-out prompts (combinations never seen in training); with
`--pairs`, a last row draws held-out two-object prompts at the first size. Every image is fitted into a
square tile, so the aspect ratios show. The default is the README's picture of the shipped model, which
was trained at 1:1 0.06M only.
"""
from __future__ import annotations

import argparse
import logging
import textwrap
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from infinity_core.cli import DEMO_TEXT_ENCODER, DEMO_TRANSFORMER, DEMO_VAE
from infinity_core.pipeline import InfinityPipeline, to_pil

from .adherence import ImageSize
from .shapes import caption, heldout_pairs, heldout_specs

TILE = 256
CAPTION_HEIGHT = 52


def draw_grid(rows: list[list[tuple[Image.Image, str]]]) -> Image.Image:
    """rows of (image, caption) -> one sheet; each image fitted into a TILE square, its caption above it."""
    columns = max(len(row) for row in rows)
    sheet = Image.new("RGB", (columns * TILE, len(rows) * (TILE + CAPTION_HEIGHT)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for row_index, row in enumerate(rows):
        for column, (image, text) in enumerate(row):
            x, y = column * TILE, row_index * (TILE + CAPTION_HEIGHT)
            scale = TILE / max(image.size)
            fitted = image.resize((round(image.width * scale), round(image.height * scale)))
            sheet.paste(fitted, (x + (TILE - fitted.width) // 2, y + CAPTION_HEIGHT + (TILE - fitted.height) // 2))
            draw.multiline_text((x + 4, y + 3), "\n".join(textwrap.wrap(text, 42)[:4]), fill=(30, 30, 30), font=font)
    return sheet


def _draw(pipe: InfinityPipeline, prompts: list[str], size: ImageSize, seed: int) -> list[tuple[Image.Image, str]]:
    images = to_pil(pipe(prompts, h_div_w=size.h_div_w, pixels=size.pixels, seed=seed))
    return [(image, f"{size.aspect}, {size.pixels} ({image.width}x{image.height}): {prompt}")
            for image, prompt in zip(images, prompts)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/demo_grid.png"))
    parser.add_argument("--sizes", nargs="+", type=ImageSize.parse, default=[ImageSize("1:1", "0.06M")] * 2,
                        help="ASPECT@PIXELS of each row, aspect as width:height (default: %(default)s)")
    parser.add_argument("--pairs", type=int, default=0, help="two-object prompts in a last row (default none)")
    parser.add_argument("--columns", type=int, default=4, help="prompts per row")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    pipe = InfinityPipeline.from_files(DEMO_TRANSFORMER, DEMO_VAE, DEMO_TEXT_ENCODER, device="cpu")
    specs = heldout_specs(args.columns * len(args.sizes))
    rows = [_draw(pipe, [caption(spec) for spec in specs[index::len(args.sizes)]], size, args.seed)
            for index, size in enumerate(args.sizes)]
    if args.pairs:
        rows.append(_draw(pipe, [caption(scene) for scene in heldout_pairs(args.pairs)], args.sizes[0], args.seed))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    draw_grid(rows).save(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
