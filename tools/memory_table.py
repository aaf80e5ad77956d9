"""The README's memory table: GPU memory a 1-image generation needs, per model, weight format, pixel budget
and guidance, computed from the presets and the pack's own estimators (not measured on a GPU).

    python tools/memory_table.py            # markdown table on stdout

Needed = transformer weights (block matmuls in the format, everything else fp32 as the loader keeps it)
+ the VAE decoder's weights (bf16) + max(`sampling_memory`, tiled `decode_memory`) in bf16 + a CUDA context
(`CUDA_CONTEXT`). The T5 encoder is assumed offloaded once the prompt is encoded (ComfyUI does that).
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from infinity_core import TRANSFORMER_PRESETS, VAE_PRESETS  # noqa: E402
from infinity_core.sampling_config import SamplingConfig  # noqa: E402
from infinity_core.schedules import PIXELS_PER_TOKEN  # noqa: E402
from infinity_core.transformer.kv_cache import sampling_memory  # noqa: E402
from infinity_core.transformer.model import BLOCK_MATMULS, InfinityTransformer  # noqa: E402
from infinity_core.vae.autoencoder import BitwiseVAE, decode_memory  # noqa: E402
from infinity_core.vae.tiling import Tiling  # noqa: E402

GiB = 2 ** 30
CUDA_CONTEXT = 0.5 * GiB          # CUDA context and cuBLAS workspace (typical; not measured here)
CARDS_GB = (8, 12, 16, 24)        # marketed GB; usable memory is a little less
USABLE = 0.93                     # share of a card's GB (10^9) a process can allocate, roughly
MODELS = {"2B": ("2b", "d32"), "8B": ("8b", "d56_patchify")}
# format -> bytes per block matmul weight
FORMATS = {"fp32": 4.0, "bf16 / fp16": 2.0, "fp8 / int8 / Q8_0": 34 / 32, "Q5_K": 176 / 256, "Q4_K": 144 / 256}
PIXELS = ("0.25M", "1M")


def parameter_counts(preset: str) -> tuple[int, int]:
    """(block matmul weights, every other parameter) of a preset, counted on the meta device."""
    with torch.device("meta"):
        model = InfinityTransformer(TRANSFORMER_PRESETS[preset])
    matmul = sum(block.get_submodule(name).weight.numel() for block in model.blocks for name in BLOCK_MATMULS)
    return matmul, sum(p.numel() for p in model.parameters()) - matmul


def vae_decoder_bytes(preset: str) -> int:
    with torch.device("meta"):
        vae = BitwiseVAE(VAE_PRESETS[preset], with_encoder=False)
    return 2 * sum(p.numel() for p in vae.parameters())


def needed_bytes(model: str, bytes_per_weight: float, pixels: str, guided: bool) -> float:
    preset, vae_preset = MODELS[model]
    matmul, other = parameter_counts(preset)
    config = SamplingConfig(pixels=pixels, cfg=3.0 if guided else 1.0)
    sampling = sampling_memory(TRANSFORMER_PRESETS[preset], config.schedule, 1, guided, torch.bfloat16)
    vae = VAE_PRESETS[vae_preset]
    grid = tuple(side * PIXELS_PER_TOKEN // vae.downsample for side in config.schedule.final_grid)
    decode = decode_memory(vae, grid, Tiling(), dtype=torch.bfloat16)
    weights = matmul * bytes_per_weight + other * 4 + vae_decoder_bytes(vae_preset)
    return weights + max(sampling, decode) + CUDA_CONTEXT


def fits(needed: float) -> str:
    cards = [f"{gb}" for gb in CARDS_GB if needed <= gb * 1e9 * USABLE]
    return f"{cards[0]} GB+" if cards else "> 24 GB"


def main() -> int:
    print("| model | weights | pixels | with CFG: GiB | fits | without CFG: GiB | fits |")
    print("|---|---|---|---|---|---|---|")
    for model in MODELS:
        for name, per_weight in FORMATS.items():
            for pixels in PIXELS:
                guided, plain = (needed_bytes(model, per_weight, pixels, g) for g in (True, False))
                print(f"| {model} | {name} | {pixels} | {guided / GiB:.1f} | {fits(guided)} | {plain / GiB:.1f} | "
                      f"{fits(plain)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
