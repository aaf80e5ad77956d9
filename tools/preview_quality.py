"""How close the sampler's preview frames come to the picture, scale by scale, as a table.

    python tools/preview_quality.py                 # 12 held-out prompts on the demo model at 0.06M
    python tools/preview_quality.py --prompts 50

For each prompt the demo model generates one image; after every scale the summed codes so far are
rendered three ways, each scaled (bilinear) to the image's size:
  * preview: `render_preview`, what the sampler sends (pooled to the scale's grid, at least
    PREVIEW_MIN_CELLS a side, at most PREVIEW_PIXELS);
  * own grid: the codes pooled to the scale's grid alone and decoded (a first scale's 1x1 cell);
  * full: the VAE's decode of the summed codes at full size (what an unpooled preview would show).
The table gives the mean PSNR (dB) of the preview and of the own-grid decode against the full decode of
the same codes, and of all three against the finished image.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infinity_core import SamplingConfig, generate, load_text_encoder, load_transformer, load_vae  # noqa: E402
from infinity_core.cli import DEMO_TEXT_ENCODER, DEMO_TRANSFORMER, DEMO_VAE  # noqa: E402
from infinity_core.image_in import vae_grids  # noqa: E402
from infinity_core.preview import PREVIEW_MIN_CELLS, render_preview  # noqa: E402
from training.shapes import caption, heldout_specs  # noqa: E402


def to_pixels(image: torch.Tensor) -> torch.Tensor:
    """[3, h, w] in [-1, 1] -> [3, h, w] float in 0..255, as the uint8 picture would hold it."""
    return image.add(1).mul(127.5).round().clamp(0, 255)


def scaled(picture, size: tuple[int, int]) -> torch.Tensor:
    """An [h, w, 3] uint8 picture (numpy) -> [3, H, W] float, bilinear, as ComfyUI scales a preview up."""
    tensor = torch.from_numpy(picture).permute(2, 0, 1)[None].float()
    return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)[0]


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a - b).pow(2).mean().item()
    return 10 * math.log10(255 ** 2 / max(mse, 1e-10))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=12)
    args = parser.parse_args()
    model = load_transformer(DEMO_TRANSFORMER, "cpu", torch.float32)
    vae = load_vae(DEMO_VAE, "cpu", torch.float32, with_encoder=False)
    encoder = load_text_encoder(DEMO_TEXT_ENCODER)
    config = SamplingConfig(pixels="0.06M")
    grids = vae_grids(vae, config.schedule)
    rows: dict[int, list[tuple[float, ...]]] = {scale: [] for scale in range(1, len(grids) + 1)}
    for index, spec in enumerate(heldout_specs(args.prompts)):
        summed: list[torch.Tensor] = []
        generate(model, encoder.encode(caption(spec)), config=SamplingConfig(pixels="0.06M", seed=index),
                 callback=lambda done, total, codes: summed.append(codes[:1].clone()) if done > 0 else None)
        with torch.inference_mode():
            final = to_pixels(vae.decode(summed[-1])[0])
            size = tuple(final.shape[-2:])
            for scale, (codes, grid) in enumerate(zip(summed, grids), start=1):
                full = to_pixels(vae.decode(codes)[0])
                preview = scaled(render_preview(vae, codes, grid), size)
                own = to_pixels(vae.decode(F.adaptive_avg_pool2d(codes, grid))[0])
                own = F.interpolate(own[None], size=size, mode="bilinear", align_corners=False)[0].round()
                rows[scale].append((psnr(preview, full), psnr(own, full), psnr(preview, final), psnr(own, final),
                                    psnr(full, final)))
    print(f"demo model, 0.06M, {args.prompts} held-out prompts; mean PSNR in dB; "
          f"preview = at least {PREVIEW_MIN_CELLS} cells a side")
    print("| scale | grid | preview vs full | own grid vs full | preview vs final | own grid vs final | full vs final |")
    print("|---|---|---|---|---|---|---|")
    for scale, values in rows.items():
        means = [statistics.mean(column) for column in zip(*values)]
        grid = "x".join(map(str, grids[scale - 1]))
        print(f"| {scale} | {grid} | " + " | ".join(f"{value:.1f}" for value in means) + " |")


if __name__ == "__main__":
    main()
