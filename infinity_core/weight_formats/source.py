"""What every weight-file reader offers the loader: the tensors' names and logical shapes from the header,
then each tensor on demand, either as floating-point values or, for a quantized matmul weight, packed."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch

from .quantized import QuantizedTensor


class TensorSource:
    """One weight file whose tensors are listed without being read, and read one at a time.

    `shapes()` lists the keys of the state dict the file holds (a quantized layer's scale and format
    entries are not keys of their own) with their logical shapes; `tensor(key)` gives a key's values as a
    floating-point tensor (expanded, for a quantized one); `quantized(key)` gives a quantized weight as
    stored, or None for a plain tensor."""

    format = "unknown"   # the format's name, as `detect_format` reports it

    def __init__(self, path: Path):
        self.path = path

    def shapes(self) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def non_float(self, keys: Iterable[str]) -> list[tuple[str, str]]:
        """(key, dtype) of the tensors among `keys` that are neither floating point nor quantized."""
        raise NotImplementedError

    def metadata(self) -> dict[str, str]:
        """String metadata the file carries ({} where its format has none)."""
        return {}

    def tensor(self, key: str) -> torch.Tensor:
        raise NotImplementedError

    def quantized(self, key: str) -> QuantizedTensor | None:
        return None
