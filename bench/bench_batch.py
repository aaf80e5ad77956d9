"""What drawing rows together buys: images/s of the batch command's worker at several --rows-per-batch.

    python bench/bench_batch.py                              # the demo model, CPU, 8 rows, 1/2/4/8 per batch
    python bench/bench_batch.py --rows 16 --rounds 5 --per-batch 1 4 16
    python bench/bench_batch.py --device cuda --transformer T --vae V --text-encoder F --pixels 1M

The worker is the one `python -m infinity_core batch` runs (infinity_core/batch/render.py): each row's
prompt encoded alone, the rows of a device batch sampled together (each with its own seed), each image
decoded alone. Timed: every device batch of the rows, from the prompts to the uint8 pixels (no PNG, no
disk). The settings are measured back to back in rounds (the order rotates each round), so a machine
that gets busier or quieter moves them alike; the table gives the median and the range over the rounds.
It also says whether every setting drew the same pixels as one row at a time. Nothing asserts a time.
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from infinity_core.batch.render import ModelFiles, RowRenderer, device_batches  # noqa: E402
from infinity_core.batch.rows import RowDefaults, resolve_row  # noqa: E402
from infinity_core.cli import DEMO_TEXT_ENCODER, DEMO_TRANSFORMER, DEMO_VAE  # noqa: E402
from infinity_core.weights import model_defaults  # noqa: E402

log = logging.getLogger("bench")
COLOURS = ("red", "green", "blue", "yellow", "white", "orange", "purple", "black")
PLACES = ("at the top left", "at the center", "at the bottom right", "at the top", "on the left", "at the bottom")
SHAPES = ("circle", "square", "triangle")


def prompts(count: int) -> list[str]:
    return [f"a {COLOURS[i % 8]} {SHAPES[i % 3]} {PLACES[i % 6]} on a {COLOURS[(i + 3) % 8]} background"
            for i in range(count)]


def draw(renderer: RowRenderer, rows, per_batch: int) -> tuple[float, list[np.ndarray]]:
    started = time.perf_counter()
    images = {}
    for batch in device_batches(rows, per_batch):
        for row, pixels in zip(batch, renderer.render(batch)):
            images[row.number] = pixels
    return time.perf_counter() - started, [images[row.number] for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--per-batch", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--pixels", help="pixel budget (default: the model's)")
    parser.add_argument("--transformer", type=Path, default=DEMO_TRANSFORMER)
    parser.add_argument("--vae", type=Path, default=DEMO_VAE)
    parser.add_argument("--text-encoder", type=Path, default=DEMO_TEXT_ENCODER)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    log.setLevel(logging.INFO)
    logging.getLogger("infinity_core").setLevel(logging.ERROR)      # the tokenizer's unknown-word notes
    if args.threads:
        torch.set_num_threads(args.threads)
    defaults = RowDefaults(pixels=args.pixels)
    settings = model_defaults(args.transformer)
    rows = [resolve_row(i + 1, i + 1, {"prompt": text, "seed": 1000 + 37 * i}, defaults, settings)
            for i, text in enumerate(prompts(args.rows))]
    renderer = RowRenderer(ModelFiles(args.transformer, args.vae, args.text_encoder), args.device)
    draw(renderer, rows[:2], 2)                                      # warm-up: first-call costs out of the table
    times = {n: [] for n in args.per_batch}
    reference = None
    same = {n: True for n in args.per_batch}
    for round_index in range(args.rounds):
        order = args.per_batch[round_index % len(args.per_batch):] + args.per_batch[:round_index % len(args.per_batch)]
        for per_batch in order:
            seconds, images = draw(renderer, rows, per_batch)
            times[per_batch].append(seconds)
            if per_batch == min(args.per_batch) and reference is None:
                reference = images
            if reference is not None:
                same[per_batch] &= all(np.array_equal(a, b) for a, b in zip(images, reference))
    height, width = rows[0].config.schedule.image_size
    log.info("%d rows, %dx%d px, %s, %d torch threads, %d rounds back to back (median, range)\n", args.rows, width,
             height, args.device, torch.get_num_threads(), args.rounds)
    log.info("| rows per batch | s for %d rows | images/s | vs 1 per batch | pixels = %d per batch |",
             args.rows, min(args.per_batch))
    log.info("|---|---|---|---|---|")
    base = statistics.median(times[min(args.per_batch)])
    for per_batch in args.per_batch:
        seconds = times[per_batch]
        rates = [args.rows / s for s in seconds]
        log.info("| %d | %.2f (%.2f-%.2f) | %.2f (%.2f-%.2f) | x%.2f | %s |", per_batch, statistics.median(seconds),
                 min(seconds), max(seconds), statistics.median(rates), min(rates), max(rates),
                 base / statistics.median(seconds), same[per_batch])


if __name__ == "__main__":
    main()
