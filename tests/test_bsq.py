"""Bits <-> codes and the scale-to-scale resizes, against the official generation fixtures and plain math."""
from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import FIXTURES
from infinity_core.vae import (
    accumulate_codes,
    bits_to_codes,
    downsample_residual,
    next_scale_input,
    patchify_bits,
    quantize,
    unpatchify_bits,
    upsample_codes,
)

GEN_CASES = sorted(name for name, case in json.loads((FIXTURES / "manifest.json").read_text())["cases"].items()
                   if case["kind"] == "generation")


def scale_grids(manifest: dict, case: str) -> list[tuple[int, int]]:
    return [(h, w) for _, h, w in manifest["cases"][case]["scale_schedule"]]


def case_tensors(manifest, fixture_tensors, case):
    return fixture_tensors(manifest["cases"][case]["file"])


def scale_bits(tensors: dict, k: int) -> torch.Tensor:
    return tensors[f"bits_s{k}"][:, 0]            # fixture (B, 1, h, w, d) -> [B, h, w, d]


@pytest.mark.parametrize("case", GEN_CASES)
def test_bits_to_codes_match_official_codes(manifest, fixture_tensors, case):
    tensors = case_tensors(manifest, fixture_tensors, case)
    for k in range(len(scale_grids(manifest, case))):
        torch.testing.assert_close(bits_to_codes(scale_bits(tensors, k)), tensors[f"codes_s{k}"], atol=1e-7, rtol=0)


@pytest.mark.parametrize("case", GEN_CASES)
def test_accumulated_codes_match_official_summed_codes(manifest, fixture_tensors, case):
    tensors = case_tensors(manifest, fixture_tensors, case)
    grids = scale_grids(manifest, case)
    summed = torch.zeros(1, 32, 1, *grids[-1])
    for k in range(len(grids)):
        summed = accumulate_codes(summed, bits_to_codes(scale_bits(tensors, k)))
    torch.testing.assert_close(summed.squeeze(2), tensors["summed_codes"], atol=1e-6, rtol=0)


def test_last_scale_codes_are_added_without_resizing():
    """The official loop adds the final scale's codes as they are; a resize to the same size must not change them."""
    codes = bits_to_codes(torch.randint(0, 2, (2, 5, 7, 32)))
    assert torch.equal(upsample_codes(codes, (5, 7)), codes)
    assert torch.equal(accumulate_codes(torch.zeros(2, 32, 1, 5, 7), codes), codes)


@pytest.mark.parametrize("case", GEN_CASES)
def test_next_scale_input_matches_official(manifest, fixture_tensors, case):
    tensors = case_tensors(manifest, fixture_tensors, case)
    grids = scale_grids(manifest, case)
    summed = torch.zeros(1, 32, 1, *grids[-1])
    for k in range(len(grids) - 1):
        summed = accumulate_codes(summed, bits_to_codes(scale_bits(tensors, k)))
        expected = tensors[f"next_input_s{k + 1}"]
        got = next_scale_input(summed, grids[k + 1], patchify=False)
        torch.testing.assert_close(got, expected[: got.shape[0]], atol=1e-6, rtol=0)


def test_next_scale_input_with_patchify_packs_2x2_latents_per_token():
    torch.manual_seed(0)
    d, h, w = 14, 3, 5
    summed = torch.randn(2, d, 1, 22, 18)
    tokens = next_scale_input(summed, (h, w), patchify=True)              # [B, h*w, 4d]
    latents = next_scale_input(summed, (2 * h, 2 * w), patchify=False)    # [B, 2h*2w, d]
    assert tokens.shape == (2, h * w, 4 * d)
    for y, x, c, i, j in [(0, 0, 0, 0, 0), (1, 2, 3, 0, 1), (2, 4, 13, 1, 0), (2, 1, 7, 1, 1)]:
        torch.testing.assert_close(tokens[:, y * w + x, c * 4 + i * 2 + j],
                                   latents[:, (2 * y + i) * (2 * w) + (2 * x + j), c], atol=0, rtol=0)


def test_patchify_and_unpatchify_bits_are_inverse():
    bits = torch.randint(0, 2, (2, 3, 5, 4 * 14), dtype=torch.uint8)
    latents = unpatchify_bits(bits)
    assert latents.shape == (2, 6, 10, 14)
    assert torch.equal(patchify_bits(latents), bits)
    assert torch.equal(unpatchify_bits(patchify_bits(latents)), latents)


def test_unpatchify_places_channel_c4_plus_2i_plus_j_at_offset_i_j():
    d = 3
    bits = torch.randint(0, 2, (1, 2, 2, 4 * d), dtype=torch.uint8)
    latents = unpatchify_bits(bits)
    for y in range(2):
        for x in range(2):
            for c in range(d):
                for i in range(2):
                    for j in range(2):
                        assert latents[0, 2 * y + i, 2 * x + j, c] == bits[0, y, x, c * 4 + i * 2 + j]


@pytest.mark.parametrize("d", [14, 32, 56])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool, torch.float32])
def test_codes_are_unit_vectors_with_entries_plus_minus_inv_sqrt_d(d, dtype):
    bits = torch.randint(0, 2, (2, 3, 4, d)).to(dtype)
    codes = bits_to_codes(bits)                                           # [B, d, 1, h, w]
    assert codes.shape == (2, d, 1, 3, 4) and codes.dtype == torch.float32
    torch.testing.assert_close(codes.norm(dim=1), torch.ones(2, 1, 3, 4), atol=1e-6, rtol=0)
    expected = (bits.float() * 2 - 1) / math.sqrt(d)                      # [B, h, w, d]
    torch.testing.assert_close(codes.squeeze(2).permute(0, 2, 3, 1), expected, atol=1e-7, rtol=0)


def test_quantize_takes_the_sign_of_each_channel():
    torch.manual_seed(1)
    residual = torch.randn(2, 32, 1, 4, 6)
    codes, bits = quantize(residual)
    assert bits.dtype == torch.uint8 and bits.shape == (2, 4, 6, 32)
    assert torch.equal(bits.bool(), residual.squeeze(2).permute(0, 2, 3, 1) > 0)
    torch.testing.assert_close(codes, bits_to_codes(bits), atol=1e-7, rtol=0)


def test_downsample_residual_averages_blocks():
    torch.manual_seed(2)
    residual = torch.randn(1, 4, 1, 6, 8)
    expected = residual.squeeze(2).reshape(1, 4, 3, 2, 4, 2).mean(dim=(3, 5)).unsqueeze(2)
    torch.testing.assert_close(downsample_residual(residual, (3, 4)), expected, atol=1e-6, rtol=0)


def test_upsample_codes_is_trilinear_with_half_pixel_centres():
    codes = torch.tensor([0.0, 1.0]).view(1, 1, 1, 1, 2)                  # one row, two columns
    up = upsample_codes(codes, (1, 4))
    # output centres sit at input coordinates -0.25, 0.25, 0.75, 1.25 (clamped to [0, 1] at the edges)
    torch.testing.assert_close(up.flatten(), torch.tensor([0.0, 0.25, 0.75, 1.0]), atol=1e-7, rtol=0)
