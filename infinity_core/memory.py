"""Will a run fit? The bytes it needs against what the device has free, checked before sampling starts."""
from __future__ import annotations

import logging
import os

import torch

from .errors import InfinityError
from .sampling_config import SamplingConfig
from .schedules import PIXELS_PER_TOKEN
from .vae.autoencoder import BitwiseVAE, decode_memory
from .transformer.kv_cache import sampling_memory
from .transformer.model import InfinityTransformer

log = logging.getLogger(__name__)

MiB = 2 ** 20


def available_bytes(device: torch.device) -> int | None:
    """Free memory of `device` (None where it cannot be read: then nothing is refused)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as meminfo:
                fields = dict(line.split(":", 1) for line in meminfo)
            return int(fields["MemAvailable"].split()[0]) * 1024
        except (OSError, KeyError, ValueError):
            pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else None
            return pages * os.sysconf("SC_PAGE_SIZE") if pages else None
    return None


def run_memory(transformer: InfinityTransformer, vae: BitwiseVAE, config: SamplingConfig, prompts: int = 1) -> int:
    """Bytes a generation and the decode of its images need besides the loaded weights: the larger of the two,
    since the sampler's state is gone before the decode starts (only the codes remain, a few MiB)."""
    images = prompts * config.batch_size
    sampling = sampling_memory(transformer.config, config.schedule, images, config.guided, transformer.compute_dtype)
    latent_grid = tuple(side * PIXELS_PER_TOKEN // vae.config.downsample for side in config.schedule.final_grid)
    return max(sampling, decode_memory(vae.config, latent_grid, batch_size=images, dtype=vae.dtype))


def check_fits(transformer: InfinityTransformer, vae: BitwiseVAE, config: SamplingConfig, prompts: int = 1, *,
               device: torch.device | None = None, weight_bytes: int = 0) -> None:
    """Refuse, with the figures, a run that needs more than `device` (default: the transformer's) has free;
    `weight_bytes` are weights still to arrive there during the run (a streamed model's small parts and one
    block)."""
    device = device or transformer.device
    needed = run_memory(transformer, vae, config, prompts) + weight_bytes
    free = available_bytes(device)
    log.info("memory: the run needs ~%d MiB besides the weights; %s free", needed // MiB,
             "unknown" if free is None else f"{free // MiB} MiB")
    if free is not None and needed > free:
        raise InfinityError(f"this run needs ~{needed // MiB} MiB ({prompts * config.batch_size} image(s) at "
                            f"{config.schedule.image_size[1]}x{config.schedule.image_size[0]} px) but "
                            f"{device} has {free // MiB} MiB free; lower batch_size or pixels")
