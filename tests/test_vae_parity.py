"""BitwiseVAE against the official tiny AutoEncoder: encode (features, bits per scale) and decode."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import FIXTURES
from infinity_core.config import vae_config_from_state_dict
from infinity_core.errors import InfinityError
from infinity_core.vae import BitwiseVAE, EncodeResult, accumulate_codes, bits_to_codes
from infinity_core.weights import official_to_internal_vae, read_state_dict, strict_load

GEN_CASES = sorted(name for name, case in json.loads((FIXTURES / "manifest.json").read_text())["cases"].items()
                   if case["kind"] == "generation")


@pytest.fixture(scope="module")
def vae_state_dict() -> dict[str, torch.Tensor]:
    return official_to_internal_vae(read_state_dict(FIXTURES / "vae_tiny.safetensors"))


def build_vae(state_dict, *, with_encoder: bool = True) -> BitwiseVAE:
    vae = BitwiseVAE(vae_config_from_state_dict(state_dict), with_encoder=with_encoder)
    strict_load(vae, state_dict, "vae_tiny.safetensors")
    return vae.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def vae(vae_state_dict) -> BitwiseVAE:
    return build_vae(vae_state_dict)


@pytest.fixture(scope="module")
def roundtrip(manifest, fixture_tensors):
    case = manifest["cases"]["vae_roundtrip"]
    return fixture_tensors(case["file"]), [(h, w) for _, h, w in case["scale_schedule"]]


@pytest.fixture(scope="module")
def encoded(vae, roundtrip) -> EncodeResult:
    tensors, grids = roundtrip
    return vae.encode(tensors["input_image"], grids)


def summed_codes_from_bits(bits_per_scale: list[torch.Tensor]) -> torch.Tensor:
    """[B, h, w, d] bits per scale -> [B, d, 1, H, W] summed codes (H, W = last scale)."""
    batch, height, width, d = bits_per_scale[-1].shape
    summed = torch.zeros(batch, d, 1, height, width)
    for bits in bits_per_scale:
        summed = accumulate_codes(summed, bits_to_codes(bits))
    return summed


def test_encoder_features_match_official(encoded, roundtrip):
    tensors, _ = roundtrip
    torch.testing.assert_close(encoded.raw_features, tensors["raw_features"], atol=1e-4, rtol=0)


def test_encoded_bits_match_official_at_every_scale(encoded, roundtrip):
    tensors, grids = roundtrip
    assert len(encoded.bits) == len(grids)
    for k, (bits, (h, w)) in enumerate(zip(encoded.bits, grids)):
        assert bits.dtype == torch.uint8 and bits.shape == (1, h, w, 32)
        assert torch.equal(bits, tensors[f"bits_s{k}"][:, 0]), f"scale {k}: {(bits != tensors[f'bits_s{k}'][:, 0]).sum()} bits differ"


def test_encoded_summed_codes_match_official_z(encoded, roundtrip):
    tensors, _ = roundtrip
    torch.testing.assert_close(encoded.summed_codes, tensors["quantized_z"], atol=1e-6, rtol=0)


def test_codes_from_encoded_bits_match_official_decode_from_indices(encoded, roundtrip):
    tensors, _ = roundtrip
    torch.testing.assert_close(summed_codes_from_bits(encoded.bits), tensors["summed_codes_from_bits"], atol=1e-6, rtol=0)


def test_decode_of_official_z_matches(vae, roundtrip):
    tensors, _ = roundtrip
    torch.testing.assert_close(vae.decode(tensors["quantized_z"]), tensors["decoded_image"], atol=1e-3, rtol=0)


def official_uint8_bgr(image: torch.Tensor) -> torch.Tensor:
    """[1, 3, H, W] in [-1, 1] -> the official saved image [H, W, 3] uint8 BGR (truncated, channels flipped)."""
    return ((image[0] + 1) / 2 * 255).to(torch.uint8).permute(1, 2, 0).flip(-1)


@pytest.mark.parametrize("case", GEN_CASES)
def test_decode_of_generated_codes_matches(vae, manifest, fixture_tensors, case):
    tensors = fixture_tensors(manifest["cases"][case]["file"])
    image = vae.decode(tensors["summed_codes"])
    assert image.dtype == torch.float32 and image.shape == tensors["decoded_image"].shape
    torch.testing.assert_close(image, tensors["decoded_image"], atol=1e-3, rtol=0)
    difference = official_uint8_bgr(image).int() - tensors["image_uint8_bgr"].int()
    assert difference.abs().max() <= 1


@pytest.mark.parametrize("case", GEN_CASES)
def test_decode_of_codes_summed_from_generated_bits_is_bit_exact(vae, manifest, fixture_tensors, case):
    """Summed the official way (channels-last), the decoder takes the official conv path and matches exactly."""
    tensors = fixture_tensors(manifest["cases"][case]["file"])
    num_scales = len(manifest["cases"][case]["scale_schedule"])
    summed = summed_codes_from_bits([tensors[f"bits_s{k}"][:, 0] for k in range(num_scales)])
    image = vae.decode(summed.squeeze(2))
    torch.testing.assert_close(image, tensors["decoded_image"], atol=1e-6, rtol=0)
    assert torch.equal(official_uint8_bgr(image), tensors["image_uint8_bgr"])


def test_decoder_only_module_loads_decoder_keys_and_decodes_identically(vae, vae_state_dict, roundtrip):
    tensors, grids = roundtrip
    decoder_keys = {k: v for k, v in vae_state_dict.items() if k.startswith("decoder.")}
    assert len(decoder_keys) < len(vae_state_dict)
    decoder_only = build_vae(decoder_keys, with_encoder=False)
    assert torch.equal(decoder_only.decode(tensors["quantized_z"]), vae.decode(tensors["quantized_z"]))
    with pytest.raises(InfinityError, match="unexpected"):
        strict_load(BitwiseVAE(decoder_only.config, with_encoder=False), vae_state_dict, "full VAE")
    with pytest.raises(InfinityError, match="without its encoder"):
        decoder_only.encode(tensors["input_image"], grids)


def test_encode_rejects_a_schedule_not_ending_at_the_latent_grid(vae, roundtrip):
    tensors, grids = roundtrip
    with pytest.raises(InfinityError, match="latent grid"):
        vae.encode(tensors["input_image"], grids[:-1])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_vae_works_and_returns_float32(vae, vae_state_dict, roundtrip, dtype):
    """A cast module takes fp32 inputs and returns fp32 close to the fp32 module (64x64 crop: CPU fp16 is slow)."""
    tensors, _ = roundtrip
    image, codes, grids = tensors["input_image"][..., :64, :64], tensors["quantized_z"][..., :4, :4], [(1, 1), (2, 2), (4, 4)]
    half = build_vae(vae_state_dict).to(dtype)
    decoded = half.decode(codes)
    assert decoded.dtype == torch.float32 and decoded.shape == (1, 3, 64, 64)
    assert (decoded - vae.decode(codes)).abs().mean() < 0.02
    encoded = half.encode(image, grids)
    assert encoded.raw_features.dtype == torch.float32 and encoded.summed_codes.dtype == torch.float32
    assert (encoded.raw_features - vae.encode(image, grids).raw_features).abs().mean() < 0.02
