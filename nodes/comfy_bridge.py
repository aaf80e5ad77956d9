"""The pack's only contact with ComfyUI's runtime: devices and dtypes, model management, progress and
interruption. The core gets the results as plain arguments (`device`, `dtype`, `callback(done, total)`).

Transformer and VAE are wrapped in ModelPatchers and loaded with `load_models_gpu`, so ComfyUI tracks
them: they offload when another model needs the memory and "Free model and node cache" unloads them.
They are always loaded fully (`force_full_load`): the core's layers are plain torch modules, which cannot
run partly offloaded the way ComfyUI's own cast-on-the-fly ops can. The text encoder follows ComfyUI's
manual pattern instead (make room, move in, encode, move out), so it never stays on the GPU.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import comfy.model_management as mm
import comfy.model_patcher
import comfy.utils
import torch
from torch import nn

from ..infinity_core import T5TextEncoder
from .types import InfinityTextEncoder

AUTO_TRANSFORMER_DTYPES = [torch.bfloat16, torch.float32]   # fp16 only on request: upstream runs in bf16
AUTO_VAE_DTYPES = [torch.bfloat16, torch.float32]


@dataclass(frozen=True)
class Placement:
    """Where a model runs, where it rests between runs, and the dtype its weights are read in."""

    load_device: torch.device
    offload_device: torch.device
    dtype: torch.dtype


def transformer_placement(dtype: torch.dtype | None) -> Placement:
    """`dtype` None means auto: what ComfyUI picks for a diffusion model on this device."""
    load = mm.get_torch_device()
    return Placement(load, mm.unet_offload_device(),
                     dtype or mm.unet_dtype(load, supported_dtypes=AUTO_TRANSFORMER_DTYPES))


def vae_placement(dtype: torch.dtype | None) -> Placement:
    load = mm.vae_device()
    return Placement(load, mm.vae_offload_device(), dtype or mm.vae_dtype(load, allowed_dtypes=AUTO_VAE_DTYPES))


def text_encoder_placement(dtype: torch.dtype | None) -> Placement:
    """Auto is fp16 on a GPU (as upstream runs flan-t5-xl) and fp32 on the CPU, where fp16 is slow."""
    load = mm.text_encoder_device()
    auto = torch.float32 if load.type == "cpu" else mm.text_encoder_dtype(load)
    return Placement(load, mm.text_encoder_offload_device(), dtype or auto)


def managed(module: nn.Module, placement: Placement):
    """A ModelPatcher around a core module, so ComfyUI's model management can move it."""
    return comfy.model_patcher.ModelPatcher(module, load_device=placement.load_device,
                                            offload_device=placement.offload_device,
                                            size=mm.module_size(module))


def load_for_inference(patcher, memory_required: int) -> torch.device:
    """Put the whole model on its load device, first freeing `memory_required` bytes more for the run
    (ComfyUI offloads other models as needed). Returns the device to run on."""
    mm.load_models_gpu([patcher], memory_required=memory_required, force_full_load=True)
    return patcher.load_device


@contextmanager
def text_encoder_on_device(text_encoder: InfinityTextEncoder) -> Iterator[T5TextEncoder]:
    """The encoder on its load device for the duration of the block, then back on its offload device."""
    moves = text_encoder.load_device != text_encoder.offload_device
    if moves:
        mm.free_memory(mm.module_size(text_encoder.encoder.model), text_encoder.load_device)
        text_encoder.encoder.to(text_encoder.load_device)
    try:
        yield text_encoder.encoder
    finally:
        if moves:
            text_encoder.encoder.to(text_encoder.offload_device)
            mm.soft_empty_cache()


def progress(total: int) -> Callable[[int, int], None]:
    """A `callback(done, total)` that advances the node's progress bar and stops the run (raising
    ComfyUI's InterruptProcessingException) when the user has pressed cancel."""
    bar = comfy.utils.ProgressBar(total)

    def step_done(done: int, steps: int) -> None:
        bar.update_absolute(done, steps)
        mm.throw_exception_if_processing_interrupted()
    return step_done


def intermediate_device() -> torch.device:
    """Where IMAGE tensors and other results passed between nodes live."""
    return mm.intermediate_device()
