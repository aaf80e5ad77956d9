"""GGUF files (llama.cpp's container, as city96/ComfyUI-GGUF uses it for image models), read with the `gguf`
package: magic `GGUF`, key/value metadata, then tensors named by their state-dict keys.

An Infinity GGUF says `general.architecture` = "infinity"; its tensor names are the official state-dict keys
(`block_chunks.c.module.j....`). GGUF lists dimensions innermost first, so a [N, K] matrix is stored as
[K, N]. Types read: F32, F16, BF16 (plain tensors) and Q8_0, Q4_K, Q5_K (kept packed, gguf_blocks.py).
String metadata other than `general.*` is offered like a safetensors header's (e.g. `infinity.pixels`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from ..errors import InfinityError
from .gguf_blocks import BLOCK_LAYOUTS
from .quantized import QuantizedTensor
from .source import TensorSource

MAGIC = b"GGUF"
ARCHITECTURE = "infinity"
ARCHITECTURE_KEY = "general.architecture"
PLAIN_TYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def _reader(path: Path):
    from gguf import GGUFReader   # imported on use: the package is only needed for GGUF files
    try:
        return GGUFReader(str(path))
    except (ValueError, OSError, IndexError, KeyError) as err:
        raise InfinityError(f"'{path}' is not a readable GGUF file ({err}); it may be truncated") from None


def _field_value(field):
    try:
        return field.contents()
    except (ValueError, IndexError, TypeError):
        return None


class GGUFSource(TensorSource):
    format = "gguf"

    def __init__(self, path: Path):
        super().__init__(path)
        reader = _reader(path)
        fields = {name: _field_value(field) for name, field in reader.fields.items()}
        architecture = fields.get(ARCHITECTURE_KEY)
        if architecture != ARCHITECTURE:
            raise InfinityError(f"'{path}' is a GGUF file for '{architecture}', not an Infinity model "
                                f"({ARCHITECTURE_KEY} must be '{ARCHITECTURE}')")
        self._metadata = {k: v for k, v in fields.items() if isinstance(v, str) and not k.startswith("general.")}
        self._tensors = {t.name: t for t in reader.tensors}
        for name, info in self._tensors.items():
            kind = info.tensor_type.name
            if kind not in PLAIN_TYPES and kind not in BLOCK_LAYOUTS:
                raise InfinityError(f"'{path}': tensor '{name}' is {kind}; this pack reads GGUF types "
                                    f"{sorted([*PLAIN_TYPES, *BLOCK_LAYOUTS])}")

    def _shape(self, name: str) -> tuple[int, ...]:
        return tuple(int(n) for n in reversed(self._tensors[name].shape.tolist()))

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: self._shape(name) for name in self._tensors}

    def non_float(self, keys: Iterable[str]) -> list[tuple[str, str]]:
        return []   # every type read is floating point or a quantized float

    def metadata(self) -> dict[str, str]:
        return dict(self._metadata)

    def _data(self, name: str) -> torch.Tensor:
        """The tensor's bytes or values copied out of the memory-mapped file."""
        return torch.from_numpy(np.array(self._tensors[name].data))

    def tensor(self, key: str) -> torch.Tensor:
        packed = self.quantized(key)
        if packed is not None:
            return packed.dequantize(torch.float32)
        return self._data(key).view(PLAIN_TYPES[self._tensors[key].tensor_type.name]).reshape(self._shape(key))

    def quantized(self, key: str) -> QuantizedTensor | None:
        kind = self._tensors[key].tensor_type.name
        if kind not in BLOCK_LAYOUTS:
            return None
        shape = self._shape(key)
        return QuantizedTensor(kind, self._data(key).reshape(shape[0], -1), None, shape)
