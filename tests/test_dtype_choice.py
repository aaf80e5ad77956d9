"""The automatic compute dtype (bf16 only where the GPU has it natively, else fp16 on tensor-core GPUs, else
fp32), in the engine and the loader node, with the GPU's capabilities stood in for; and an fp16 overflow
stops the run at the scale where it happens."""
from __future__ import annotations

import contextlib

import pytest
import torch

from infinity_core import devices, generate, load_transformer
from infinity_core.errors import InfinityError
from infinity_core.loading import default_dtype

from conftest import FIXTURES

CUDA = torch.device("cuda", 0)


def _gpu(monkeypatch, *, native_bf16: bool, capability: tuple[int, int]):
    """Stand in for a GPU: what `is_bf16_supported(including_emulation=False)` and the capability say."""
    asked = []

    def is_bf16_supported(including_emulation: bool = True) -> bool:
        asked.append(including_emulation)
        return native_bf16 or including_emulation     # emulated bf16 is reported unless asked not to
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    return asked


@pytest.mark.parametrize("name, native_bf16, capability, expected", [
    ("A100 / RTX 30xx+", True, (8, 0), torch.bfloat16),
    ("T4 / RTX 20xx", False, (7, 5), torch.float16),
    ("V100", False, (7, 0), torch.float16),
    ("GTX 10xx", False, (6, 1), torch.float32),
])
def test_gpu_dtype_follows_native_support(monkeypatch, name, native_bf16, capability, expected):
    asked = _gpu(monkeypatch, native_bf16=native_bf16, capability=capability)
    assert devices.compute_dtype(CUDA) == expected
    assert default_dtype(CUDA) == expected
    assert asked and not any(asked), "emulated bf16 must not count"


def test_cpu_and_mps_dtypes():
    assert devices.compute_dtype(torch.device("cpu")) == torch.float32
    assert devices.compute_dtype(torch.device("mps")) == torch.float16


def test_fp16_overflow_stops_at_its_scale(monkeypatch, fox):
    model = load_transformer(FIXTURES / "infinity_tiny.safetensors", "cpu", torch.float16)
    calls = []
    real_logits = model.logits

    def logits(hidden, context):
        calls.append(1)
        out = real_logits(hidden, context)
        return out.fill_(float("inf")) if len(calls) == 3 else out
    monkeypatch.setattr(model, "logits", logits)
    with pytest.raises(InfinityError, match=r"overflowed float16 at scale 3 of 7"):
        generate(model, fox, pixels="0.06M", cfg=1.0, top_k=1)
    assert len(calls) == 3
