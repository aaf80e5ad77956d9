"""Block streaming: run a transformer whose blocks do not all fit on the compute device.

    with BlockStreaming(transformer, torch.device("cuda")):
        result = generate(transformer, cond)

While the context is open, the transformer's small parts (text projection, embeddings, head) sit on the
compute device and its blocks rest where they were loaded (host memory). A block's weights are copied to the
compute device just before it runs (its forward at each scale, and its per-generation text constants) and
dropped right after, so the device holds the small parts, one block, the KV cache and the activations
(`streamed_resident_bytes`). The cost is one copy of every block per scale; 1-byte and GGUF weights are
copied packed. On CUDA the resting weights are pinned, so the copies run at full bus speed.

Leaving the context, by an exception or a cancel too, puts every tensor back where it was: the model stays
usable, resident or streamed, for the next run. A compiled scale step cannot stream (its graph holds the
weights), so `generate` refuses the two together.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .errors import InfinityError
from .transformer.model import CrossAttnBlock, InfinityTransformer


@dataclass(frozen=True)
class _TensorSlot:
    """Where one tensor of a block lives: `owner._parameters[name]` or `owner._buffers[name]`."""

    owner: nn.Module
    name: str
    is_parameter: bool

    def get(self) -> torch.Tensor:
        return (self.owner._parameters if self.is_parameter else self.owner._buffers)[self.name]

    def set(self, tensor: torch.Tensor) -> None:
        if self.is_parameter:
            self.owner._parameters[self.name].data = tensor
        else:
            self.owner._buffers[self.name] = tensor


def _slots(module: nn.Module) -> list[_TensorSlot]:
    return [_TensorSlot(owner, name, kind == "_parameters")
            for owner in module.modules() for kind in ("_parameters", "_buffers")
            for name, tensor in getattr(owner, kind).items() if tensor is not None]


def block_bytes(block: nn.Module) -> int:
    return sum(slot.get().nbytes for slot in _slots(block))


def streamed_resident_bytes(model: InfinityTransformer) -> int:
    """Device bytes of a streamed model's weights: everything but the blocks, plus the largest block."""
    blocks = sum(block_bytes(block) for block in model.blocks)
    total = sum(slot.get().nbytes for slot in _slots(model))
    return total - blocks + max(block_bytes(block) for block in model.blocks)


class BlockStreaming:
    """A context in which `model` runs on `device` with its blocks streamed from where they rest."""

    def __init__(self, model: InfinityTransformer, device: torch.device | str):
        self.model = model
        self.device = torch.device(device)
        self.resting_device = model.blocks[0].sa.mat_qkv.weight.device if model.blocks else self.device
        self.resident_blocks: set[int] = set()    # indices of the blocks on the device now (one at most)
        self._hooks: list = []
        self._home: dict[int, list[tuple[_TensorSlot, torch.Tensor]]] = {}   # block -> its resting tensors
        self._small_parts: list[tuple[_TensorSlot, torch.Tensor]] = []

    def __enter__(self) -> "BlockStreaming":
        if self._hooks:
            raise InfinityError("this BlockStreaming is already open")
        if self.device.type != "cpu" and any(slot.get().is_mkldnn for slot in _slots(self.model.blocks)):
            raise InfinityError("stream blocks: this transformer's weights are prepacked for the CPU; load it "
                                "with prepack=False to stream it to another device")
        pin = self.device.type == "cuda"
        try:
            block_tensors = set()
            for index, block in enumerate(self.model.blocks):
                home = []
                for slot in _slots(block):
                    resting = slot.get().data
                    if pin and not resting.is_pinned():
                        resting = resting.pin_memory()
                        slot.set(resting)
                    home.append((slot, resting))
                    block_tensors.add(id(slot.get()))
                self._home[index] = home
                self._hooks.append(block.register_forward_pre_hook(self._arrive_hook(index)))
                self._hooks.append(block.register_forward_hook(self._leave_hook(index)))
                block.context = self._resident_context(index, block)   # the text constants read its weights too
            for slot in _slots(self.model):
                if id(slot.get()) not in block_tensors:
                    resting = slot.get().data
                    self._small_parts.append((slot, resting))
                    slot.set(resting.to(self.device))
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._restore()

    def _restore(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
        for block in self.model.blocks:
            block.__dict__.pop("context", None)
        for home in self._home.values():
            for slot, resting in home:
                slot.set(resting)
        for slot, resting in self._small_parts:
            slot.set(resting)
        self._home.clear()
        self._small_parts.clear()
        self.resident_blocks.clear()

    def _arrive(self, index: int) -> None:
        for slot, resting in self._home[index]:
            slot.set(resting.to(self.device, non_blocking=True))
        self.resident_blocks.add(index)

    def _leave(self, index: int) -> None:
        for slot, resting in self._home[index]:
            slot.set(resting)
        self.resident_blocks.discard(index)

    def _arrive_hook(self, index: int):
        return lambda module, args: self._arrive(index)

    def _leave_hook(self, index: int):
        return lambda module, args, output: self._leave(index)

    def _resident_context(self, index: int, block: CrossAttnBlock):
        def context(*args, **kwargs):
            self._arrive(index)
            try:
                return CrossAttnBlock.context(block, *args, **kwargs)
            finally:
                self._leave(index)
        return context
