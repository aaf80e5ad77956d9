"""The README's picture of the demo model: a grid of generated images, each under its prompt.

    python -m training.demo_grid --out docs/demo_grid.png

Uses the shipped files and the core's sampling defaults (SamplingConfig) at 0.06M.
The first prompts are held-out combinations (never seen in training).
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

from .shapes import caption, heldout_specs

TILE = 256
CAPTION_HEIGHT = 40
COLUMNS = 4


def grid_prompts(count: int) -> list[str]:
    return [caption(spec) for spec in heldout_specs(count)]


def draw_grid(images: list[Image.Image], prompts: list[str], columns: int = COLUMNS) -> Image.Image:
    rows = (len(images) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * TILE, rows * (TILE + CAPTION_HEIGHT)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for index, (image, prompt) in enumerate(zip(images, prompts)):
        x, y = (index % columns) * TILE, (index // columns) * (TILE + CAPTION_HEIGHT)
        sheet.paste(image.resize((TILE, TILE)), (x, y + CAPTION_HEIGHT))
        draw.multiline_text((x + 4, y + 3), "\n".join(textwrap.wrap(prompt, 42)[:3]), fill=(30, 30, 30), font=font)
    return sheet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs/demo_grid.png"))
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(2)
    pipe = InfinityPipeline.from_files(DEMO_TRANSFORMER, DEMO_VAE, DEMO_TEXT_ENCODER, device="cpu")
    prompts = grid_prompts(args.count)
    images = to_pil(pipe(prompts, pixels="0.06M", seed=args.seed))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    draw_grid(images, prompts).save(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
