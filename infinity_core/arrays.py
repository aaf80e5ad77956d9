"""Tensors from what a Python caller passes for an image, a mask or bits: a torch.Tensor as it is, a numpy
array converted (without a copy), anything else refused naming the argument and what it takes."""
from __future__ import annotations

import numpy as np
import torch

from .errors import InfinityError


def as_tensor(name: str, value, expected: str) -> torch.Tensor:
    """`value` as a tensor; `expected` says what `name` takes (e.g. "[H, W] or [B, H, W] in 0..1")."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray):
        try:
            return torch.from_numpy(np.ascontiguousarray(value))
        except TypeError as err:
            raise InfinityError(f"{name}: a numpy array of dtype {value.dtype} has no torch equivalent ({err}); "
                                f"expected {expected}") from None
    raise InfinityError(f"{name}: expected a torch.Tensor (or numpy array) {expected}, got {type(value).__name__}")
