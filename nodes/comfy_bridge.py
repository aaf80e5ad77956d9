"""The pack's only contact with ComfyUI's runtime: devices and dtypes, model management, progress,
previews and interruption. The core gets the results as plain arguments (`device`, `dtype`,
`callback(done, total, codes)`).

Transformer, VAE and T5 are wrapped in ModelPatchers and loaded with `load_models_gpu`, so ComfyUI tracks
them: they offload when another model needs the memory and "Free model and node cache" unloads them.
They are loaded fully (`force_full_load`): the core's layers are plain torch modules, which cannot run partly
offloaded the way ComfyUI's own cast-on-the-fly ops can. A transformer too large for the card streams its
blocks instead (the loader's offload "blocks", infinity_core.offload): ComfyUI keeps it in RAM, and the
sampler asks ComfyUI to free what the streamed run needs on the GPU.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import comfy.model_management as mm
import comfy.model_patcher
import comfy.utils
import torch
from comfy.cli_args import args
from torch import nn

from infinity_core.devices import compute_dtype

AUTO_VAE_DTYPES = [torch.bfloat16, torch.float32]
PREVIEW_FORMAT = "JPEG"

# (scales done, scales in total, summed codes [B, d, H, W]) -> a PIL image, or None when no frame is due
PreviewRenderer = Callable[[int, int, torch.Tensor], object]


@dataclass(frozen=True)
class Placement:
    """Where a model runs, where it rests between runs, and the dtype its weights are read in. A model whose
    blocks stream rests in `offload_device` even while it runs; only its small parts and one block at a time
    visit `load_device`."""

    load_device: torch.device
    offload_device: torch.device
    dtype: torch.dtype
    stream_blocks: bool = False


def transformer_placement(dtype: torch.dtype | None, stream_blocks: bool = False) -> Placement:
    """`dtype` None means auto: the engine's choice for this device (bf16 only where the GPU has it natively,
    else fp16, else fp32: infinity_core.devices.compute_dtype), unless ComfyUI was started with
    --fp32-unet, --bf16-unet or --fp16-unet."""
    load = mm.get_torch_device()
    return Placement(load, mm.unet_offload_device(), dtype or _forced_unet_dtype() or compute_dtype(load),
                     stream_blocks)


def _forced_unet_dtype() -> torch.dtype | None:
    for flag, forced in (("fp32_unet", torch.float32), ("bf16_unet", torch.bfloat16), ("fp16_unet", torch.float16)):
        if getattr(args, flag, False):
            return forced
    return None


def vae_placement(dtype: torch.dtype | None) -> Placement:
    load = mm.vae_device()
    return Placement(load, mm.vae_offload_device(), dtype or mm.vae_dtype(load, allowed_dtypes=AUTO_VAE_DTYPES))


def text_encoder_placement(dtype: torch.dtype | None) -> Placement:
    """Auto is fp16 on a GPU (as upstream runs flan-t5-xl) and fp32 on the CPU, where fp16 is slow."""
    load = mm.text_encoder_device()
    auto = torch.float32 if load.type == "cpu" else mm.text_encoder_dtype(load)
    return Placement(load, mm.text_encoder_offload_device(), dtype or auto)


class ManagedModule(nn.Module):
    """What a ModelPatcher holds: the module as `inner`. ComfyUI writes its bookkeeping (`device`,
    `model_loaded_weight_memory`, ...) onto the model it manages, and the core's and transformers' modules
    have a read-only `device` property, so they sit one level below it."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner


def managed(module: nn.Module, placement: Placement):
    """A ModelPatcher around a module, so ComfyUI's model management can move it. Its size is the whole
    module (for a VAE: encoder and decoder), which is what ComfyUI counts when it makes room. A streamed
    model's patcher loads to its offload device: ComfyUI never moves it whole onto the GPU."""
    load_device = placement.offload_device if placement.stream_blocks else placement.load_device
    return comfy.model_patcher.ModelPatcher(ManagedModule(module), load_device=load_device,
                                            offload_device=placement.offload_device, size=mm.module_size(module))


def load_for_inference(*patchers, memory_required: int = 0) -> torch.device:
    """Put the whole models on their load device together, first freeing `memory_required` bytes more for
    the run (ComfyUI offloads other models as needed). Returns the first one's device, to run on."""
    mm.load_models_gpu(list(patchers), memory_required=memory_required, force_full_load=True)
    return patchers[0].load_device


def make_room_for_streaming(memory_required: int, *patchers) -> torch.device:
    """For a run whose transformer streams its blocks: free `memory_required` bytes (the run, the model's
    small parts and one block) on the GPU, offloading other models, then load `patchers` (the preview's VAE)
    fully. Returns the device to run on."""
    device = mm.get_torch_device()
    mm.free_memory(memory_required, device)
    if patchers:
        mm.load_models_gpu(list(patchers), memory_required=memory_required, force_full_load=True)
    return device


def previews_enabled() -> bool:
    """False when the user started ComfyUI with `--preview-method none` (its default)."""
    return args.preview_method.value != "none"


def progress(total: int, preview: PreviewRenderer | None = None, image_side: int | None = None) -> Callable[..., None]:
    """A `callback(done, total, codes=None)` for the core: it advances the node's progress bar after every
    scale, with a preview frame of `codes` when `preview` gives one, and stops the run (raising ComfyUI's
    InterruptProcessingException) when the user has pressed cancel. ComfyUI scales a frame to fit its
    --preview-size (512) square, up or down; `image_side`, the long side of the image the run makes, caps
    that, so the size a frontend prints under the preview is the image's own, not 512 for a 256 px image.

    Current ComfyUI sends an update that carries a preview at once and throttles the others itself (100 ms
    and 0.5 % apart); 0.3.64 sends them all. Which scales get a frame is the preview's own time budget
    (infinity_core.preview.ScalePreviews)."""
    bar = comfy.utils.ProgressBar(total)
    frame_side = args.preview_size if image_side is None else min(args.preview_size, image_side)

    def step_done(done: int, steps: int, codes: torch.Tensor | None = None) -> None:
        picture = preview(done, steps, codes) if preview is not None and codes is not None else None
        bar.update_absolute(done, steps, None if picture is None else (PREVIEW_FORMAT, picture, frame_side))
        mm.throw_exception_if_processing_interrupted()
    return step_done


def intermediate_device() -> torch.device:
    """Where IMAGE tensors and other results passed between nodes live."""
    return mm.intermediate_device()
