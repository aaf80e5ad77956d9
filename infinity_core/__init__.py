"""infinity_core: a plain-PyTorch implementation of Infinity, the bitwise visual autoregressive
text-to-image model (FoundationVision, arXiv 2412.04431), that loads the official weights.

    transformer = load_transformer("infinity_2b_reg.pth")
    vae = load_vae("infinity_vae_d32reg.pth")
    text_encoder = load_text_encoder("flan-t5-xl/")
    result = generate(transformer, text_encoder.encode("a fox"), h_div_w=1.0, pixels="1M", seed=0)
    images = vae.decode(result.codes)          # [B, 3, H, W] RGB in [-1, 1]

This package never imports ComfyUI; the ComfyUI nodes live in the sibling `nodes` package.
"""
from .config import TRANSFORMER_PRESETS, VAE_PRESETS, TransformerConfig, VAEConfig
from .errors import InfinityError
from .loading import check_pair, load_transformer, load_vae
from .pipeline import InfinityPipeline, to_pil, to_uint8
from .sampling import GenerationResult, ProgressCallback, generate
from .sampling_config import (CFG_RANGE, MAX_BATCH, SEED_RANGE, TAU_RANGE, TOP_K_RANGE, TOP_P_RANGE, SamplingConfig,
                              parse_per_scale, per_scale_values)
from .schedules import ASPECT_PRESETS, PIXEL_BUDGETS, Schedule, get_schedule, parse_aspect
from .speed import SPEED_MODES
from .text import TextCondition
from .text_encoder import T5TextEncoder, load_text_encoder
from .transformer.cpu_kernels import prepack_for_cpu
from .transformer.kv_cache import sampling_memory

__all__ = [
    "CFG_RANGE", "MAX_BATCH", "ProgressCallback", "SEED_RANGE", "TAU_RANGE", "TOP_K_RANGE", "TOP_P_RANGE",
    "SPEED_MODES", "parse_per_scale", "per_scale_values", "sampling_memory",
    "ASPECT_PRESETS", "GenerationResult", "InfinityError", "InfinityPipeline", "PIXEL_BUDGETS", "SamplingConfig",
    "Schedule", "T5TextEncoder", "TRANSFORMER_PRESETS", "TextCondition", "TransformerConfig", "VAEConfig",
    "VAE_PRESETS", "check_pair", "generate", "get_schedule", "load_text_encoder", "load_transformer", "load_vae",
    "parse_aspect", "prepack_for_cpu", "to_pil", "to_uint8",
]
