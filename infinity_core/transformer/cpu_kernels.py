"""CPU fast path: the blocks' matmul weights prepacked in oneDNN's blocked layout.

PyTorch's default fp32 CPU matmul is MKL, which repacks the weight on every call. For the few-token
early scales that repacking dominates (2 tokens x 40 M weights read at ~10 GB/s instead of the ~40 GB/s
the memory can stream), and on CPUs MKL does not tune for (AMD) the large scales run at ~40 % of what
oneDNN reaches. Packing once at load time removes both. The packed tensor replaces the weight (same
memory); results differ from the MKL path only by summation order (~1e-6 relative), so the official
fixtures still hold and greedy bits stay identical. A packed model stays on the CPU (it cannot be moved
to a GPU); load a fresh one for that. Uses PyTorch's oneDNN linear ops (those torch.compile's CPU backend
uses); where they are missing, or the CPU cannot run them in the weights' dtype (oneDNN's bf16 / fp16
paths need AVX-512 or AVX-NE-CONVERT), nothing is packed and the plain path runs.
"""
from __future__ import annotations

import functools
import logging

import torch
from torch import nn

from .model import BLOCK_MATMULS, InfinityTransformer

log = logging.getLogger(__name__)

BATCH_HINT = 2   # oneDNN's blocking hint; measured as fast as larger hints for 2 ... 8192 tokens


def onednn_linear_available() -> bool:
    """Whether this PyTorch build has oneDNN's prepacked linear ops."""
    return (torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
            and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


@functools.cache
def onednn_linear_supports(dtype: torch.dtype) -> bool:
    """Whether this CPU can pack and run oneDNN linears in `dtype` (probed once on a tiny weight)."""
    if not onednn_linear_available():
        return False
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(torch.ones(8, 8, dtype=dtype), BATCH_HINT)
        torch.ops.mkldnn._linear_pointwise(torch.ones(2, 8, dtype=dtype), packed, None, "none", [], "")
    except RuntimeError as err:
        log.debug("oneDNN cannot run %s linears on this CPU (%s)",
                 dtype, str(err).splitlines()[0])
        return False
    return True


def prepack_for_cpu(model: InfinityTransformer) -> bool:
    """Replace every block matmul weight of a CPU model with its oneDNN-prepacked form (in place).

    Returns whether anything was packed (not on a GPU, not without oneDNN or its support for the weights'
    dtype on this CPU, not twice, not a quantized layer)."""
    layers = [layer for block in model.blocks for name in BLOCK_MATMULS
              if type(layer := block.get_submodule(name)) is nn.Linear]   # quantized layers stay as they are
    if not layers:
        return False
    first = layers[0].weight
    if first.is_mkldnn or first.device.type != "cpu" or not onednn_linear_available():
        return False
    if not onednn_linear_supports(first.dtype):
        log.info("block matmul weights left unpacked: oneDNN cannot run %s linears on this CPU", first.dtype)
        return False
    with torch.no_grad():
        for layer in layers:
            packed = torch.ops.mkldnn._reorder_linear_weight(layer.weight.detach(), BATCH_HINT)
            layer.weight = nn.Parameter(packed, requires_grad=False)
    log.info("%d block matmul weights prepacked for oneDNN (%d blocks)", len(layers), len(model.blocks))
    return True
