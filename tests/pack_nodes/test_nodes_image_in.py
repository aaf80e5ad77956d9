"""Image in: Infinity Encode Image, img2img, inpainting and outpainting through the nodes.

Through the stand-in ComfyUI of tests/comfy_stub and the stand-in models (see node_env.py)."""
from __future__ import annotations

import pytest
import torch

from infinity_core import InfinityError
from .node_env import MISMATCHED_VAE, run, sample, validate


# --- Image in ----------------------------------------------------------------------------------------------

def _picture(height=200, width=300, channels=3) -> torch.Tensor:
    """A ComfyUI IMAGE [1, H, W, C] in 0..1: a horizontal ramp in red, a vertical one in green."""
    ramp_x = torch.linspace(0, 1, width)[None, :].expand(height, width)
    ramp_y = torch.linspace(0, 1, height)[:, None].expand(height, width)
    rgb = torch.stack([ramp_x, ramp_y, torch.full((height, width), 0.5)], -1)
    planes = {1: rgb[..., :1], 3: rgb, 4: torch.cat([rgb, torch.ones(height, width, 1)], -1)}[channels]
    return planes[None].contiguous()


def _encode(registry, models, image, **overrides):
    widgets = dict(aspect_ratio="match input", pixels="0.06M", upscale_method="bicubic", crop="center")
    return run(registry, "InfinityEncodeImage", image=image, vae=models["vae"], **{**widgets, **overrides})


def test_encode_image_matches_the_core_encoding_and_the_input_aspect(env, registry, models):
    from infinity_core.image_in import encode_image, schedule_for_image
    encoded, shown = _encode(registry, models, _picture())
    schedule = schedule_for_image(200, 300, "0.06M")
    assert encoded.schedule == schedule and encoded.pixels == "0.06M" and encoded.mask is None
    assert shown.shape == (1, *schedule.image_size, 3)
    expected = encode_image(models["vae"].vae, _picture().permute(0, 3, 1, 2) * 2 - 1, schedule, "crop",
                            "bicubic")
    assert all(torch.equal(a, b) for a, b in zip(encoded.bits, expected)) and len(encoded.bits) == 7
    assert encoded.vae_bits == models["vae"].config.codebook_dim


def test_encode_image_takes_greyscale_and_alpha_as_comfyui_does(registry, models):
    rgb, _ = _encode(registry, models, _picture(channels=3))
    rgba, _ = _encode(registry, models, _picture(channels=4))
    grey, _ = _encode(registry, models, _picture(channels=1))
    assert all(torch.equal(a, b) for a, b in zip(rgb.bits, rgba.bits))
    assert len(grey.bits) == len(rgb.bits) and grey.bits[-1].shape == rgb.bits[-1].shape


def test_encode_image_preset_aspect_and_stretch(registry, models):
    encoded, shown = _encode(registry, models, _picture(), aspect_ratio="1:2 (portrait)", crop="disabled")
    assert shown.shape[1] > shown.shape[2] and encoded.schedule.h_div_w == 2.0


def test_encode_image_refuses_a_vae_without_encoder(registry, models):
    (decoder_only,) = run(registry, "InfinityVAELoader", vae_file=MISMATCHED_VAE, dtype="auto")
    with pytest.raises(InfinityError, match="vae: .*has no encoder"):
        run(registry, "InfinityEncodeImage", image=_picture(), vae=decoder_only, aspect_ratio="match input",
            pixels="0.06M", upscale_method="bicubic", crop="center")


@pytest.mark.parametrize("keep", [0, 3, 7])
def test_img2img_keeps_the_first_keep_scales_of_the_picture(registry, models, keep):
    encoded, _ = _encode(registry, models, _picture(256, 256))
    codes = sample(registry, models, encoded_image=encoded, keep_scales=keep, seed=5)
    plain = sample(registry, models, seed=5)
    if keep == 0:
        assert torch.equal(codes.codes, plain.codes)      # no mask and nothing kept: text to image
    if keep == 7:
        from infinity_core.vae.bsq import accumulate_codes, bits_to_codes
        summed = torch.zeros(1, encoded.bits[-1].shape[-1], 1, 16, 16)
        for bits in encoded.bits:
            summed = accumulate_codes(summed, bits_to_codes(bits))
        assert torch.allclose(codes.codes, summed.squeeze(2), atol=1e-6)   # the picture's own codes
    if keep == 3:
        assert not torch.equal(codes.codes, plain.codes)


def test_keep_scales_beyond_the_schedule_is_refused_naming_both(registry, models):
    encoded, _ = _encode(registry, models, _picture(256, 256))
    with pytest.raises(InfinityError, match="keep_scales: 8 is more than the 7 scales"):
        sample(registry, models, encoded_image=encoded, keep_scales=8)


def test_encoded_image_from_another_vae_width_is_refused(env, registry, models):
    encoded, _ = _encode(registry, models, _picture(256, 256))
    narrow = env.nodes.types.InfinityEncodedImage(encoded.bits, encoded.schedule, encoded.pixels, encoded.picture,
                                                  None, "other_vae", 8)
    with pytest.raises(InfinityError, match="other_vae.*8-bit.*infinity_tiny"):
        sample(registry, models, encoded_image=narrow, keep_scales=2)


def test_a_mask_from_any_mask_node_inpaints_only_its_region(registry, models):
    """An all-zero mask (nothing to redraw) returns the picture's own codes; a mask of the left half
    changes the left half far more than the right."""
    picture = _picture(256, 256)
    full, _ = _encode(registry, models, picture)
    keep_all, _ = _encode(registry, models, picture, mask=torch.zeros(1, 256, 256))
    left = torch.zeros(1, 256, 256)
    left[:, :, :128] = 1
    inpaint, _ = _encode(registry, models, picture, mask=left)
    assert inpaint.mask.shape == (1, 256, 256)
    reconstruction = sample(registry, models, encoded_image=full, keep_scales=7).codes
    untouched = sample(registry, models, encoded_image=keep_all, keep_scales=0).codes
    assert torch.allclose(untouched, reconstruction, atol=1e-6)
    redrawn = sample(registry, models, encoded_image=inpaint, keep_scales=0, seed=3).codes
    change = (redrawn - reconstruction).abs().mean(1)[0]             # [H, W] latent grid
    assert change[:, :7].mean() > 3 * change[:, 9:].mean()


def test_inpainting_decode_pastes_the_picture_back_outside_the_mask(registry, models):
    """Pixels away from the mask are the (fitted) picture itself; inside the mask they are the decode shifted,
    per channel, by the mean difference between the picture and the decode over the kept pixels (the tone
    the decoder's whole-image GroupNorm moves)."""
    picture = _picture(256, 256)
    left = torch.zeros(1, 256, 256)
    left[:, :, :128] = 1
    inpaint, shown = _encode(registry, models, picture, mask=left)
    codes = sample(registry, models, encoded_image=inpaint, keep_scales=0, seed=3)
    (image,) = run(registry, "InfinityTokenizerDecode", vae=models["vae"], codes=codes)
    (plain,) = run(registry, "InfinityTokenizerDecode", vae=models["vae"],
                   codes=type(codes)(codes.codes, codes.model_config, codes.model_name))
    assert torch.allclose(image[:, :, 128:], shown[:, :, 128:], atol=1e-6)
    shift = (shown[:, :, 128:] - plain[:, :, 128:]).mean(dim=(1, 2), keepdim=True)             # [1, 1, 1, 3]
    torch.testing.assert_close(image[:, :, :112], (plain[:, :, :112] + shift).clamp(0, 1), atol=1e-5, rtol=0)
    assert not torch.allclose(plain[:, :, 128:], shown[:, :, 128:], atol=1e-3)


def test_pad_for_outpainting_gives_a_schedule_sized_image_and_the_mask_of_the_new_area(registry, models):
    from infinity_core.image_in import pad_for_outpaint
    picture = _picture(256, 128)
    image, mask = run(registry, "InfinityPadForOutpainting", image=picture, left=64, top=0, right=64, bottom=0,
                      feather=0, pixels="0.06M")
    padded, expected_mask, schedule = pad_for_outpaint(picture.permute(0, 3, 1, 2) * 2 - 1, 64, 0, 64, 0, "0.06M")
    assert image.shape == (1, *schedule.image_size, 3) and mask.shape == (1, *schedule.image_size)
    assert torch.equal(mask, expected_mask) and mask[0, :, 0].min() == 1 and mask[0, 128, 128] == 0
    encoded, _ = _encode(registry, models, image, mask=mask, crop="disabled")
    assert encoded.schedule == schedule
    codes = sample(registry, models, encoded_image=encoded, keep_scales=0)
    assert codes.codes.shape[-2:] == (schedule.final_grid)


# --- odd pictures, masks and margins: the node's own error or a refusal at /prompt, never another exception -----

ODD_ENCODES = [
    ("a 1 px tall strip, cropped", lambda: _picture(1, 5000), None, {}, r"fit: a 5000x1 px picture is too long"),
    ("greyscale with alpha", lambda: _picture(64, 64, 3)[..., :2], None, {}, r"image: expected \[B, C, H, W\] with C in"),
    ("a 4-d mask", lambda: _picture(64, 64), torch.ones(1, 1, 64, 64), {}, r"mask: expected \[H, W\] or \[B, H, W\]"),
    ("a mask batch of 2 for 1 picture", lambda: _picture(64, 64), torch.ones(2, 64, 64), {}, "mask: has 2 entries"),
    ("a mask beyond 0..1", lambda: _picture(64, 64), torch.full((1, 64, 64), 2.0), {}, r"mask: values must lie in"),
    ("a NaN picture", lambda: torch.full((1, 8, 8, 3), float("nan")), None, {}, "image: holds NaN"),
]


@pytest.mark.parametrize("case, image, mask, widgets, reason", ODD_ENCODES, ids=[c[0] for c in ODD_ENCODES])
def test_odd_pictures_and_masks_get_the_nodes_own_error(registry, models, case, image, mask, widgets, reason):
    with pytest.raises(InfinityError, match=reason):
        _encode(registry, models, image(), **({"mask": mask} if mask is not None else {}), **widgets)
    encoded, _ = _encode(registry, models, _picture(64, 64))      # and the next run works as before
    assert len(encoded.bits) == 7


def test_a_strip_is_taken_when_it_is_stretched_and_a_load_image_mask_of_another_size_is_stretched(registry, models):
    encoded, shown = _encode(registry, models, _picture(1, 5000), crop="disabled")
    assert shown.shape[1:3] == encoded.schedule.image_size
    encoded, _ = _encode(registry, models, _picture(200, 300), mask=torch.zeros(1, 64, 64))   # Load Image's empty mask
    assert encoded.mask.shape == (1, *encoded.schedule.image_size) and encoded.mask.max() == 0


def test_extreme_outpaint_values_are_refused_at_prompt_or_by_the_node(registry):
    widgets = dict(image=["1", 0], left=0, top=0, right=0, bottom=0, feather=0, pixels="0.06M")
    for change in ({"left": 5000}, {"feather": -1}, {"top": "many"}, {"pixels": "4M"}):
        assert validate(registry, "InfinityPadForOutpainting", **{**widgets, **change}), change
    big = torch.zeros(1, 2000, 2000, 3)
    with pytest.raises(InfinityError, match=r"outpaint canvas: 10192x10192 px is .* at most 67108864"):
        run(registry, "InfinityPadForOutpainting", image=big, left=4096, top=4096, right=4096, bottom=4096,
            feather=0, pixels="0.06M")
    with pytest.raises(InfinityError, match="feather: 40 px is too wide"):
        run(registry, "InfinityPadForOutpainting", image=_picture(64, 64), left=8, top=0, right=0, bottom=0,
            feather=40, pixels="0.06M")
