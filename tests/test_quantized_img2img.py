"""A quantized model (a Q8_0 GGUF written with the gguf package) through the engine: previews every scale,
image-to-image keeps the picture's first scales, inpainting keeps the picture outside the mask."""
from __future__ import annotations

import pytest
import torch

from infinity_core import generate, get_schedule, load_transformer
from infinity_core.weight_formats import QuantizedLinear

from conftest import FIXTURES
import quant_files

INIT_SCALES = 3


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    path = tmp_path_factory.mktemp("q8") / "tiny_Q8_0.gguf"
    quant_files.write_gguf(FIXTURES / "infinity_tiny.safetensors", path, "Q8_0")
    model = load_transformer(path, "cpu", torch.float32)
    assert any(isinstance(m, QuantizedLinear) for m in model.modules())
    return model


@pytest.fixture(scope="module")
def picture_bits(transformer, vae, lighthouse):
    """The bits of a picture (the fp32 model's drawing, decoded and encoded again) on the 0.06M schedule."""
    schedule = get_schedule(1.0, "0.06M")
    codes = generate(transformer, lighthouse, pixels="0.06M", cfg=3.0, top_k=1, seed=1).codes
    with torch.inference_mode():
        return vae.encode(vae.decode(codes), list(schedule.grids)).bits


def test_previews_get_every_scale(quantized, fox):
    frames = []
    generate(quantized, fox, pixels="0.06M", cfg=3.0, top_k=1,
             callback=lambda done, total, codes: frames.append((done, bool(codes.isfinite().all()))))
    assert [done for done, _ in frames] == list(range(len(frames))) and all(ok for _, ok in frames)


def test_img2img_keeps_the_first_scales_and_follows_fp32(quantized, transformer, fox, picture_bits):
    result = generate(quantized, fox, pixels="0.06M", cfg=3.0, top_k=1, init_bits=picture_bits,
                      init_scales=INIT_SCALES)
    reference = generate(transformer, fox, pixels="0.06M", cfg=3.0, top_k=1, init_bits=picture_bits,
                         init_scales=INIT_SCALES)
    for scale in range(INIT_SCALES):
        assert torch.equal(result.bits[scale], picture_bits[scale].to(result.bits[scale].dtype))
    later = [(a == b).float().mean().item() for a, b in zip(result.bits[INIT_SCALES:], reference.bits[INIT_SCALES:])]
    assert min(later) >= 0.9


def test_inpainting_keeps_the_picture_outside_the_mask(quantized, fox, picture_bits):
    schedule = get_schedule(1.0, "0.06M")
    height, width = schedule.image_size
    mask = torch.zeros(height, width)
    mask[:, : width // 2] = 1.0                                     # redraw the left half
    result = generate(quantized, fox, pixels="0.06M", cfg=3.0, top_k=1, init_bits=picture_bits,
                      init_scales=1, mask=mask)
    final, picture = result.bits[-1], picture_bits[-1].to(result.bits[-1].dtype)   # [1, h, w, d]
    half = final.shape[2] // 2
    assert torch.equal(final[:, :, half:], picture[:, :, half:])
    assert not torch.equal(final[:, :, :half], picture[:, :, :half])
