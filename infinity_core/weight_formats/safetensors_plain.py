"""Plain safetensors: every key a tensor of the state dict (fp32, bf16, fp16, or float8 without scales).

A header is 8 bytes (little-endian length n), then n bytes of JSON naming each tensor's dtype, shape and
byte range (plus an optional `__metadata__` of strings); the tensors follow, memory-mapped when read."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch
from safetensors import SafetensorError, safe_open

from ..errors import InfinityError
from .quantized import SCALED, QuantizedTensor
from .source import TensorSource

# safetensors dtype names of floating-point tensors (the only ones model weights may be)
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2")
FLOAT8_DTYPES = ("F8_E4M3", "F8_E5M2")
DTYPE_NAMES = {"BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16",
               "I32": "int32", "U32": "uint32", "I64": "int64", "U64": "uint64"}


class SafetensorsSource(TensorSource):
    format = "safetensors"

    def __init__(self, path: Path):
        super().__init__(path)
        try:
            self._file = safe_open(str(path), framework="pt", device="cpu")
        except (SafetensorError, OSError) as err:
            raise InfinityError(f"'{path}' is not a readable safetensors file ({err}); "
                                "it may be truncated or not a safetensors file at all") from None
        self._dtypes = {k: self._file.get_slice(k).get_dtype() for k in self._file.keys()}

    def stored_keys(self) -> list[str]:
        """Every tensor name in the file."""
        return list(self._dtypes)

    def stored_dtype(self, key: str) -> str:
        return self._dtypes[key]

    def stored_shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._file.get_slice(key).get_shape())

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: self.stored_shape(k) for k in self._dtypes}

    def non_float(self, keys: Iterable[str]) -> list[tuple[str, str]]:
        return [(k, DTYPE_NAMES.get(dtype, dtype)) for k in keys
                if (dtype := self._dtypes.get(k)) is not None and dtype not in FLOAT_DTYPES]

    def metadata(self) -> dict[str, str]:
        return dict(self._file.metadata() or {})

    def read(self, key: str) -> torch.Tensor:
        """The tensor `key` exactly as stored."""
        try:
            return self._file.get_tensor(key)
        except (SafetensorError, OSError) as err:
            raise InfinityError(f"'{self.path}': tensor '{key}' cannot be read ({err}); "
                                "the file may be truncated") from None

    def tensor(self, key: str) -> torch.Tensor:
        return self.read(key)

    def quantized(self, key: str) -> QuantizedTensor | None:
        """A float8 matrix without a scale (a plain cast to fp8) is kept at 1 byte, with scale 1."""
        if self._dtypes.get(key) in FLOAT8_DTYPES and len(self.stored_shape(key)) == 2:
            return QuantizedTensor(SCALED, self.read(key), None, self.stored_shape(key))
        return None
