"""Image-to-image against the official `autoregressive_infer_cfg(gt_leak=K, gt_ls_Bl=bits)` fixtures
(tests/fixtures/infinity_tiny_img2img, made with the tiny models of tests/fixtures/infinity_tiny).

The input path is the official one: bits = vae.encode(input_image, grids).bits, then
generate(..., init_bits=bits, init_scales=K). Greedy (top_k 1) cases match bit for bit at every scale, with
the summed codes and the decoded image; in the sampled case near-boundary draws may flip, so >= 99 % of
bits must match."""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from infinity_core import generate, get_schedule
from infinity_core.image_in import encode_image
from infinity_core.pipeline import to_uint8
from infinity_core.text import TextCondition

IMG2IMG = Path(__file__).parent / "fixtures" / "infinity_tiny_img2img"
GREEDY_CASE = "i2i_1x1_cfg3_keep3_greedy"
SAMPLED_CASE = "i2i_1x1_cfg3_keep2_sampled_topk900_topp097"


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((IMG2IMG / "manifest.json").read_text())


def _case(manifest, name):
    case = manifest["cases"][name]
    settings = case["settings"]
    text = load_file(str(IMG2IMG / manifest["text_encoder"]["file"]))
    prompt_key = next(k for k, p in manifest["text_encoder"]["prompts"].items() if p["prompt"] == settings["prompt"])
    cond = TextCondition.from_features([text[f"{prompt_key}_kv_compact"]])
    schedule = get_schedule(settings["h_div_w_template"], settings["pn"])
    assert [list(g) for g in schedule.grids] == [s[1:] for s in case["scale_schedule"]]
    assert settings["keep_scales"] == case["keep_scales"]
    return settings, cond, schedule, load_file(str(IMG2IMG / case["file"]))


def _img2img(transformer, vae, settings, cond, schedule, expected):
    """The official input path: encode the fixture's image on the schedule, keep its first K scales."""
    with torch.inference_mode():
        bits = vae.encode(expected["input_image"], list(schedule.grids)).bits
    return generate(transformer, cond, h_div_w=settings["h_div_w_template"], pixels=settings["pn"],
                    cfg=settings["cfg"], tau=settings["tau"], top_k=settings["top_k"], top_p=settings["top_p"],
                    seed=settings["g_seed"], init_bits=bits, init_scales=settings["keep_scales"])


@pytest.mark.parametrize("name", [GREEDY_CASE, SAMPLED_CASE])
def test_the_encoder_gives_the_official_input_bits(vae, manifest, name):
    """vae.encode's own parity: every scale's bits of the input image, and their concatenation."""
    _, _, schedule, expected = _case(manifest, name)
    with torch.inference_mode():
        bits = vae.encode(expected["input_image"], list(schedule.grids)).bits
    for scale in range(schedule.num_scales):
        assert torch.equal(bits[scale], expected[f"input_bits_s{scale}"]), f"scale {scale} input bits differ"
    flat = torch.cat([b.reshape(-1, b.shape[-1]) for b in bits])                     # [L, d]
    assert torch.equal(flat, expected["input_bits_all"])


def test_encode_image_of_a_picture_at_the_schedule_size_gives_the_same_bits(vae, manifest):
    _, _, schedule, expected = _case(manifest, GREEDY_CASE)
    bits = encode_image(vae, expected["input_image"], schedule)
    assert all(torch.equal(b, expected[f"input_bits_s{s}"]) for s, b in enumerate(bits))


def test_greedy_img2img_is_bit_exact(transformer, vae, manifest):
    settings, cond, schedule, expected = _case(manifest, GREEDY_CASE)
    result = _img2img(transformer, vae, settings, cond, schedule, expected)
    for scale in range(schedule.num_scales):
        assert torch.equal(result.bits[scale], expected[f"bits_s{scale}"]), f"scale {scale} bits differ"
    for scale in range(settings["keep_scales"]):
        assert torch.equal(result.bits[scale], expected[f"input_bits_s{scale}"])
    torch.testing.assert_close(result.codes, expected["summed_codes"], atol=1e-6, rtol=0)
    with torch.inference_mode():
        image = vae.decode(result.codes)
    torch.testing.assert_close(image, expected["decoded_image"], atol=1e-3, rtol=0)
    ours_bgr = to_uint8(image)[0].flip(-1).int()                                     # [H, W, 3]
    assert int((ours_bgr - expected["image_uint8_bgr"].int()).abs().max()) <= 1


def test_sampled_img2img_bit_agreement(transformer, vae, manifest):
    """top_k 900 / top_p 0.97 / seed 1, K = 2: the kept scales exactly, then >= 99 % of every bit; the
    sampler draws at the kept scales too, so the later scales' draws line up with the official run."""
    settings, cond, schedule, expected = _case(manifest, SAMPLED_CASE)
    result = _img2img(transformer, vae, settings, cond, schedule, expected)
    for scale in range(settings["keep_scales"]):
        assert torch.equal(result.bits[scale], expected[f"input_bits_s{scale}"])
    same = sum(int((result.bits[s] == expected[f"bits_s{s}"]).sum()) for s in range(schedule.num_scales))
    total = sum(expected[f"bits_s{s}"].numel() for s in range(schedule.num_scales))
    assert same / total >= 0.99, f"{same} / {total} bits match the official run"
