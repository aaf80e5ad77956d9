"""What each speed mode costs on the demo model: adherence per attribute, and the image against exact's.

    python tools/speed_modes.py --pixels 0.25M --prompts 48 --grid docs/speed_modes_grid.png

For every held-out prompt (training/shapes.py) and every mode, one image with the same seed through the public
pipeline (the core's defaults otherwise). Printed, per mode: the accuracy of each attribute
(training/adherence.py's scorer) and its difference from exact's in prompts, PSNR and SSIM against exact's image
of the same prompt and seed (median and worst), and the generation time relative to exact's (the modes
alternate, prompt batch by prompt batch, so they share the machine's conditions). `--grid` writes a picture
grid: one column per mode, one row per prompt. The time ratio on the demo model says little (its scales are
tiny); bench/bench_inference.py measures speed on the bench model.
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

from infinity_core import PIXEL_BUDGETS, SPEED_MODES, SamplingConfig  # noqa: E402
from infinity_core.model_files import add_model_arguments  # noqa: E402
from infinity_core.pipeline import InfinityPipeline, to_uint8  # noqa: E402
from training.adherence import ATTRIBUTES, accuracy_by_attribute  # noqa: E402
from training.detector import score  # noqa: E402
from training.shapes import caption, heldout_specs  # noqa: E402

log = logging.getLogger("speed_modes")


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    """PSNR in dB of two uint8 [H, W, 3] images (inf when equal)."""
    mse = float(np.mean((image.astype(np.float64) - reference.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def ssim(image: np.ndarray, reference: np.ndarray) -> float:
    """SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03) of two uint8 [H, W, 3]
    images, averaged over the channels and the valid window positions."""
    x, y = (torch.from_numpy(a).permute(2, 0, 1).unsqueeze(1).double() for a in (image, reference))   # [3, 1, H, W]
    coords = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-coords ** 2 / (2 * 1.5 ** 2))
    window = (g / g.sum()).outer(g / g.sum()).view(1, 1, 11, 11)
    mean = lambda t: F.conv2d(t, window)                                               # noqa: E731
    mx, my = mean(x), mean(y)
    vx, vy, cxy = mean(x * x) - mx ** 2, mean(y * y) - my ** 2, mean(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    ssim_map = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    return float(ssim_map.mean())


def generate(pipe: InfinityPipeline, prompts: list[str], config: SamplingConfig) -> tuple[list[np.ndarray], float]:
    started = time.perf_counter()
    with torch.inference_mode():
        images = pipe(prompts, config=config)
    return [array.numpy() for array in to_uint8(images)], time.perf_counter() - started


def write_grid(path: Path, images: dict[str, list[np.ndarray]], rows: int) -> None:
    """One column per mode, one row per prompt, 4 px gaps."""
    modes = list(images)
    height, width = images[modes[0]][0].shape[:2]
    gap = 4
    grid = np.full((rows * (height + gap) - gap, len(modes) * (width + gap) - gap, 3), 255, np.uint8)
    for column, mode in enumerate(modes):
        for row in range(rows):
            top, left = row * (height + gap), column * (width + gap)
            grid[top:top + height, left:left + width] = images[mode][row]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pixels", default="0.25M", choices=list(PIXEL_BUDGETS))
    parser.add_argument("--prompts", type=int, default=48, help="number of held-out prompts")
    parser.add_argument("--batch", type=int, default=8, help="prompts per generation")
    parser.add_argument("--modes", nargs="+", default=list(SPEED_MODES), choices=SPEED_MODES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--grid", type=Path, help="write a picture grid (one column per mode) here")
    parser.add_argument("--grid-rows", type=int, default=6)
    add_model_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    modes = ["exact"] + [mode for mode in args.modes if mode != "exact"]
    pipe = InfinityPipeline.from_files(args.transformer, args.vae, args.text_encoder, device="cpu")
    specs = heldout_specs(args.prompts)
    images: dict[str, list[np.ndarray]] = {mode: [] for mode in modes}
    seconds: dict[str, float] = {mode: 0.0 for mode in modes}
    for first in range(0, len(specs), args.batch):
        prompts = [caption(spec) for spec in specs[first:first + args.batch]]
        for mode in modes:    # alternating: every mode sees the same machine conditions
            config = SamplingConfig(pixels=args.pixels, seed=args.seed + first, speed=mode)
            batch, took = generate(pipe, prompts, config)
            images[mode].extend(batch)
            seconds[mode] += took
        log.info("%d / %d prompts", min(first + args.batch, len(specs)), len(specs))
    accuracy = {mode: accuracy_by_attribute([score(im, spec) for im, spec in zip(images[mode], specs)])
                for mode in modes}
    n = len(specs)
    header = ("| mode | " + " | ".join(f"{a} (vs exact, prompts)" for a in ATTRIBUTES)
              + " | PSNR dB vs exact (median / worst) | SSIM vs exact (median / worst) | time vs exact |")
    lines = [f"Demo model at {args.pixels}, {n} held-out prompts, seeds {args.seed}.., core defaults otherwise",
             "", header, "|" + "---|" * (len(ATTRIBUTES) + 4)]
    for mode in modes:
        cells = [f"{accuracy[mode][a]:.1%} ({round((accuracy[mode][a] - accuracy['exact'][a]) * n):+d})"
                 for a in ATTRIBUTES]
        psnrs = [psnr(im, ref) for im, ref in zip(images[mode], images["exact"])]
        ssims = [ssim(im, ref) for im, ref in zip(images[mode], images["exact"])]
        lines.append(f"| {mode} | " + " | ".join(cells)
                     + f" | {statistics.median(psnrs):.1f} / {min(psnrs):.1f}"
                     + f" | {statistics.median(ssims):.3f} / {min(ssims):.3f}"
                     + f" | {seconds[mode] / seconds['exact']:.2f} |")
    print("\n".join(lines))
    print(f"targets: balanced within {n / 12:.1f} prompts (1 in 12) of exact on every attribute, "
          f"fast within {2 * n / 12:.1f} (2 in 12)")
    if args.grid:
        write_grid(args.grid, {mode: images[mode] for mode in modes}, min(args.grid_rows, n))
        log.info("grid written to %s", args.grid)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
