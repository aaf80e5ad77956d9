"""Which device a run uses (a name checked against what this machine has, before any file is read), and
which dtype the transformer computes in there."""
from __future__ import annotations

import torch

from .errors import InfinityError

DEVICE_TYPES = ("cpu", "cuda", "mps")


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def available_devices() -> list[str]:
    names = ["cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        names.append("mps")
    return names


def default_device() -> torch.device:
    """The best device this machine has: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`device` as a torch.device (None: the default), refused with the valid choices when this machine
    does not have it."""
    if device is None:
        return default_device()
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise InfinityError(f"device '{device}' is not a device name; this machine has {available_devices()}") from None
    if resolved.type not in DEVICE_TYPES:
        raise InfinityError(f"device '{device}' is not supported; use one of {available_devices()}")
    if resolved.type == "cuda" and not (torch.cuda.is_available() and (resolved.index or 0) < torch.cuda.device_count()):
        raise InfinityError(f"device '{device}' is not available: this machine has {available_devices()}")
    if resolved.type == "mps" and not _mps_available():
        raise InfinityError(f"device '{device}' is not available: this machine has {available_devices()}")
    return resolved


# Compute capability from which fp16 matmuls run on tensor cores (V100, T4, RTX 20xx and later).
FP16_TENSOR_CORES = (7, 0)


def cuda_native_bf16(device: torch.device) -> bool:
    """Whether the GPU computes bf16 in hardware (Ampere and later). `is_bf16_supported()` alone also says
    True where bf16 is only emulated (T4, V100, RTX 20xx), which is slower than fp16 there."""
    with torch.cuda.device(device):
        return torch.cuda.is_bf16_supported(including_emulation=False)


def compute_dtype(device: torch.device) -> torch.dtype:
    """The transformer's automatic compute dtype on `device`: fp32 on the CPU (fast enough, exact); on CUDA
    bf16 where the GPU has it natively, else fp16 where it has fp16 tensor cores (the sampler then checks
    every scale for overflow), else fp32; fp16 on Apple's MPS."""
    if device.type == "cuda":
        if cuda_native_bf16(device):
            return torch.bfloat16
        if torch.cuda.get_device_capability(device) >= FP16_TENSOR_CORES:
            return torch.float16
        return torch.float32
    if device.type == "mps":
        return torch.float16
    return torch.float32
