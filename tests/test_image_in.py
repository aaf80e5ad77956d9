"""Pictures into the engine (infinity_core/image_in.py): geometry, resampling, channels, masks, encoding
(the f16 tiny VAE and the 8B-style f8 patchify VAE), outpaint padding and bad input."""
import math

import pytest
import torch
import torch.nn.functional as F

from infinity_core import InfinityError, get_schedule, load_vae
from infinity_core.config import VAEConfig
from infinity_core.image_in import (RESAMPLE_MODES, encode_image, fit_image, fit_mask, match_kept_colour,
                                    pad_for_outpaint, paste_outside_mask, placement, schedule_for_image)
from infinity_core.schedules import ASPECT_TEMPLATES
from infinity_core.vae.autoencoder import BitwiseVAE
from infinity_core.vae.bsq import bits_to_codes, patchify_bits, upsample_codes

from conftest import FIXTURES

SQUARE = get_schedule(1.0, "0.06M")      # 256 x 256


def _random_image(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _columns_image(height, width, split):
    """[1, 3, H, W]: -1 left of column `split`, +1 from it on (a hard vertical edge)."""
    image = -torch.ones(1, 3, height, width)
    image[..., split:] = 1.0
    return image


@pytest.fixture(scope="module")
def tiny_vae():
    return load_vae(FIXTURES / "vae_tiny.safetensors", "cpu", torch.float32)


@pytest.fixture(scope="module")
def patchify_vae():
    torch.manual_seed(0)
    return BitwiseVAE(VAEConfig(codebook_dim=14, base_channels=32, channel_mult=(1, 1, 1, 1), num_res_blocks=1)).eval()


# ----------------------------------------------------------------------------------------------- geometry

def test_crop_of_a_wide_picture_at_the_right_height_is_its_centre():
    image = _random_image(1, 3, 256, 512)
    torch.testing.assert_close(fit_image(image, SQUARE, "crop"), image[..., 128:384], atol=0, rtol=0)


def test_crop_at_twice_the_size_with_area_is_the_2x2_mean():
    image = _random_image(2, 3, 512, 512)
    torch.testing.assert_close(fit_image(image, SQUARE, "crop", "area"), F.avg_pool2d(image, 2), atol=1e-6, rtol=0)


def test_crop_keeps_the_aspect():
    """A 1:2 picture whose left half is dark: crop scales it to 256 x 512 and keeps the middle 256 columns,
    so the edge lands in the middle of the output."""
    fitted = fit_image(_columns_image(100, 200, 100), SQUARE, "crop", "nearest")
    assert bool((fitted[..., :128] == -1).all()) and bool((fitted[..., 128:] == 1).all())


def test_pad_replicates_the_edges_and_marks_the_padding_in_the_mask():
    image = _random_image(1, 3, 128, 256)
    fitted = fit_image(image, SQUARE, "pad")
    torch.testing.assert_close(fitted[..., 64:192, :], image, atol=0, rtol=0)
    torch.testing.assert_close(fitted[..., :64, :], image[..., :1, :].expand(-1, -1, 64, -1), atol=0, rtol=0)
    torch.testing.assert_close(fitted[..., 192:, :], image[..., -1:, :].expand(-1, -1, 64, -1), atol=0, rtol=0)
    mask = fit_mask(torch.zeros(128, 256), SQUARE, "pad")
    assert mask.shape == (1, 256, 256)
    assert bool((mask[:, :64] == 1).all()) and bool((mask[:, 192:] == 1).all()) and bool((mask[:, 64:192] == 0).all())


def test_pad_shrinks_a_large_picture_to_fit_inside():
    fitted = fit_image(_columns_image(300, 600, 300), SQUARE, "pad", "nearest")
    where = placement(300, 600, (256, 256), "pad")
    assert where.size == (128, 256) and (where.top, where.left) == (64, 0)
    assert bool((fitted[..., :128] == -1).all()) and bool((fitted[..., 128:] == 1).all())


def test_stretch_ignores_the_aspect():
    fitted = fit_image(_columns_image(100, 200, 50), SQUARE, "stretch", "nearest")
    assert bool((fitted[..., :64] == -1).all()) and bool((fitted[..., 64:] == 1).all())


@pytest.mark.parametrize("fit", ["crop", "pad", "stretch"])
def test_a_mask_lands_where_its_image_region_does(fit):
    """Mask and image share the geometry: a patch painted into the image at the mask's 1s ends up under
    the fitted mask's 1s, for an odd-sized picture of another aspect."""
    height, width = 301, 173
    mask = torch.zeros(height, width)
    mask[80:200, 40:120] = 1.0
    image = (mask * 2 - 1).expand(1, 3, -1, -1)
    fitted_image = fit_image(image, SQUARE, fit, "bilinear")[0, 0]              # [256, 256]
    fitted_mask = fit_mask(mask, SQUARE, fit)[0]                                # [256, 256]
    inside = placement(height, width, (256, 256), fit)
    region = torch.zeros(256, 256, dtype=torch.bool)                           # where the picture lands
    region[max(0, inside.top):inside.top + inside.size[0], max(0, inside.left):inside.left + inside.size[1]] = True
    torch.testing.assert_close((fitted_image[region] + 1) / 2, fitted_mask[region], atol=1e-5, rtol=0)


def test_a_mask_of_another_size_is_stretched_to_its_image_first():
    """A 4x smaller mask of the same picture gives the same fitted mask as the full-size one (up to the
    bilinear resize), also when the picture is cropped."""
    full = torch.zeros(400, 200)
    full[100:300, 40:120] = 1.0
    small = full[::4, ::4]
    from_full = fit_mask(full, SQUARE, "crop")
    from_small = fit_mask(small, SQUARE, "crop", image_size=(400, 200))
    assert (from_full - from_small).abs().mean() < 0.02


def test_the_mask_stays_soft_and_in_range():
    mask = torch.zeros(512, 512)
    mask[:, 255] = 1.0                                  # a one-pixel stroke, thinner than the 2x shrink
    fitted = fit_mask(mask, SQUARE)[0]
    assert 0 < float(fitted.max()) < 1 and float(fitted.min()) >= 0
    assert float(fitted[:, 127:129].sum(1).mean()) == pytest.approx(0.5, abs=0.05)   # the stroke's mass is kept


def test_a_single_mask_serves_the_whole_batch():
    assert fit_mask(torch.ones(64, 64), SQUARE, batch_size=3).shape == (3, 256, 256)


# --------------------------------------------------------------------------------------------- resampling

@pytest.mark.parametrize("resample", sorted(RESAMPLE_MODES))
def test_every_resample_mode_keeps_a_constant_picture_constant(resample):
    image = torch.full((1, 3, 300, 170), 0.25)
    image[:, 1] = -0.5
    fitted = fit_image(image, SQUARE, "crop", resample)
    assert fitted.shape == (1, 3, 256, 256)
    torch.testing.assert_close(fitted[:, 0], torch.full((1, 256, 256), 0.25), atol=1e-5, rtol=0)
    torch.testing.assert_close(fitted[:, 1], torch.full((1, 256, 256), -0.5), atol=1e-5, rtol=0)


@pytest.mark.parametrize("resample", sorted(RESAMPLE_MODES))
def test_resampled_values_stay_in_range(resample):
    fitted = fit_image(_columns_image(97, 131, 40), SQUARE, "stretch", resample)
    assert float(fitted.min()) >= -1 and float(fitted.max()) <= 1


def test_lanczos_and_bicubic_agree_on_a_smooth_picture():
    ys, xs = torch.meshgrid(torch.linspace(0, 1, 300), torch.linspace(0, 1, 300), indexing="ij")
    image = (0.8 * torch.sin(3 * xs + 2 * ys)).expand(1, 3, -1, -1)
    lanczos, bicubic = fit_image(image, SQUARE, resample="lanczos"), fit_image(image, SQUARE, resample="bicubic")
    assert float((lanczos - bicubic).abs().max()) < 5e-3


def test_downscaling_is_antialiased():
    """A one-pixel checkerboard shrunk 4x must average to flat grey, not alias into a pattern."""
    checker = ((torch.arange(1024)[:, None] + torch.arange(1024)[None]) % 2 * 2 - 1).float().expand(1, 3, -1, -1)
    for resample in ("bicubic", "bilinear", "area", "lanczos"):
        fitted = fit_image(checker, SQUARE, "stretch", resample)
        assert float(fitted.abs().max()) < 0.05, resample


# ------------------------------------------------------------------------------------------------ channels

def test_greyscale_is_copied_to_rgb():
    grey = _random_image(2, 1, 256, 256)
    torch.testing.assert_close(fit_image(grey, SQUARE), grey.expand(-1, 3, -1, -1), atol=0, rtol=0)


def test_alpha_is_dropped():
    rgba = _random_image(1, 4, 300, 200)
    torch.testing.assert_close(fit_image(rgba, SQUARE, "pad"), fit_image(rgba[:, :3], SQUARE, "pad"), atol=0, rtol=0)


# ------------------------------------------------------------------------------------------------ schedule

def test_schedule_for_image_picks_the_template_that_crops_least():
    """Brute force over every template: the chosen one loses the smallest share of area to a centre crop."""
    for height, width in [(1080, 1920), (1920, 1080), (512, 512), (1000, 4000), (4000, 1000), (450, 1000),
                          (1000, 1249), (700, 1000), (333, 1000)]:
        ratio = height / width
        lost = {key: 1 - min(ratio / key, key / ratio) for key in ASPECT_TEMPLATES}
        chosen = schedule_for_image(height, width, "1M")
        assert math.isclose(lost[chosen.h_div_w], min(lost.values())), (height, width)
        assert chosen.num_scales == 13


def test_schedule_for_image_examples():
    assert schedule_for_image(1080, 1920, "0.25M").h_div_w == 0.571     # 16:9 -> the 7:4 template
    assert schedule_for_image(1000, 4000, "0.06M").h_div_w == 0.333     # wider than every template: the widest
    assert schedule_for_image(256, 256, "0.06M").image_size == (256, 256)


# ------------------------------------------------------------------------------------------------ encoding

def test_encode_image_is_vae_encode_of_the_fitted_image(tiny_vae):
    image = _random_image(1, 3, 512, 512, seed=3)
    bits = encode_image(tiny_vae, image, SQUARE, "crop", "area")
    expected = tiny_vae.encode(F.avg_pool2d(image, 2), list(SQUARE.grids)).bits
    assert len(bits) == SQUARE.num_scales
    assert all(torch.equal(b, e) for b, e in zip(bits, expected))


def test_encode_image_on_the_patchify_vae_uses_its_2x_grids(patchify_vae):
    """The f8 VAE encodes on twice the token grid; the bits fold into 56-bit tokens and sum back to the
    encoder's own summed codes."""
    schedule = get_schedule(0.5, "0.06M")                                   # 176 x 352 px, 11 x 22 tokens
    image = _random_image(2, 3, 200, 300, seed=4)
    bits = encode_image(patchify_vae, image, schedule, "crop")
    assert [tuple(b.shape) for b in bits] == [(2, 2 * h, 2 * w, 14) for h, w in schedule.grids]
    assert [tuple(patchify_bits(b).shape) for b in bits] == [(2, h, w, 56) for h, w in schedule.grids]
    final = tuple(bits[-1].shape[1:3])
    summed = sum(upsample_codes(bits_to_codes(b), final) for b in bits).squeeze(2)   # [2, 14, 22, 44]
    with torch.inference_mode():
        encoded = patchify_vae.encode(fit_image(image, schedule, "crop"), [tuple(b.shape[1:3]) for b in bits])
    torch.testing.assert_close(summed, encoded.summed_codes, atol=1e-5, rtol=0)


def test_encode_image_needs_the_encoder():
    decoder_only = load_vae(FIXTURES / "vae_tiny.safetensors", "cpu", torch.float32, with_encoder=False)
    with pytest.raises(InfinityError, match="vae: .*without its encoder"):
        encode_image(decoder_only, _random_image(1, 3, 256, 256), SQUARE)


# ---------------------------------------------------------------------------------------------- outpainting

def test_pad_for_outpaint_extends_with_the_edge_and_masks_the_new_area():
    image = _random_image(1, 3, 256, 128, seed=5)
    padded, mask, schedule = pad_for_outpaint(image, 0, 0, 128, 0, "0.06M")
    assert schedule.h_div_w == 1.0 and padded.shape == (1, 3, 256, 256) and mask.shape == (1, 256, 256)
    torch.testing.assert_close(padded[..., :128], image, atol=0, rtol=0)
    torch.testing.assert_close(padded[..., 128:], image[..., -1:].expand(-1, -1, -1, 128), atol=0, rtol=0)
    assert bool((mask[..., :128] == 0).all()) and bool((mask[..., 128:] == 1).all())


def test_outpaint_feather_ramps_into_the_old_image_along_padded_sides_only():
    image = _random_image(1, 3, 256, 128, seed=6)
    _, mask, _ = pad_for_outpaint(image, 0, 0, 128, 0, "0.06M", feather=8)
    row = mask[0, 100]
    for d in range(10):                             # column 127 - d is d px from the padded right side
        assert float(row[127 - d]) == pytest.approx(max(0.0, (8 - d) / 8) ** 2)
    assert bool((mask[0, :, :119] == 0).all())     # the unpadded top, bottom and left get no ramp


def test_outpaint_canvas_off_template_is_padded_further_and_that_is_new_too():
    """100 x 100 padded 60 px on the left: 100 x 160 (h/w 0.625) -> the 2:3 template, 224 x 336 px; the
    canvas scales by 2.1 to 210 x 336 and 7 rows above and below are added, all of them new."""
    image = _random_image(1, 3, 100, 100, seed=7)
    padded, mask, schedule = pad_for_outpaint(image, 60, 0, 0, 0, "0.06M")
    assert schedule.h_div_w == 0.666 and padded.shape[-2:] == (224, 336)
    assert bool((mask[:, :7] == 1).all()) and bool((mask[:, -7:] == 1).all())
    old = mask[0, 7:217]                                                      # [210, 336]
    assert bool((old[:, :120] == 1).all()) and bool((old[:, 132:] == 0).all())   # the old image sits at x >= 126


# ------------------------------------------------------------------------------------------------- pasting

def test_paste_keeps_the_reference_outside_and_ramps_inside():
    """A mask of columns 100.. (0.6 there, >= 0.5: redrawn): columns < 100 are the reference exactly, column
    99 + d (d px from the nearest kept pixel) mixes d / 8 of the decoded image, from d = 8 on all of it."""
    decoded, reference = torch.full((2, 3, 64, 160), 0.5), torch.full((2, 3, 64, 160), -0.5)
    mask = torch.zeros(64, 160)
    mask[:, 100:] = 0.6
    mask[:, 90] = 0.4                                          # under 0.5: kept
    pasted = paste_outside_mask(decoded, reference, mask, ramp=8)
    assert bool((pasted[..., :100] == -0.5).all())
    for d in range(1, 12):
        expected = -0.5 + min(d, 8) / 8
        torch.testing.assert_close(pasted[..., 99 + d], torch.full((2, 3, 64), expected), atol=1e-6, rtol=0)


def test_paste_without_a_ramp_is_a_hard_cut():
    decoded, reference = _random_image(1, 3, 32, 32, seed=8), _random_image(1, 3, 32, 32, seed=9)
    mask = torch.zeros(1, 32, 32)
    mask[:, 8:20, 4:30] = 1.0
    pasted = paste_outside_mask(decoded, reference, mask, ramp=0)
    torch.testing.assert_close(pasted, torch.where(mask[:, None] > 0, decoded, reference), atol=0, rtol=0)


def test_matching_the_kept_colour_removes_a_uniform_shift_of_the_decoded_image():
    """A decode whose tone is off by a constant per channel (as the decoder's whole-image GroupNorm shifts it
    when an area is redrawn): shifted by the mean difference over the kept pixels, it equals the reference
    there, and inside the mask it is the redrawn content in the reference's tone; pasted, no step at the
    mask's edge. A mask that keeps nothing leaves the decode as it is."""
    reference = _random_image(2, 3, 32, 32, seed=10) * 0.5                     # [-0.5, 0.5]: no clamping
    redrawn = _random_image(2, 3, 32, 32, seed=11) * 0.5
    mask = torch.zeros(2, 32, 32)
    mask[:, 4:20, 6:24] = 1.0
    inside = mask[:, None].bool().expand(-1, 3, -1, -1)
    shift = torch.tensor([0.12, -0.2, 0.05]).view(1, 3, 1, 1)
    decoded = torch.where(inside, redrawn, reference) + shift
    matched = match_kept_colour(decoded, reference, mask)
    torch.testing.assert_close(matched, torch.where(inside, redrawn, reference), atol=1e-5, rtol=0)
    pasted = paste_outside_mask(matched, reference, mask, ramp=0)
    torch.testing.assert_close(pasted, torch.where(inside, redrawn, reference), atol=1e-5, rtol=0)
    torch.testing.assert_close(match_kept_colour(decoded, reference, torch.ones(32, 32)), decoded, atol=0, rtol=0)


# --------------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("call, match", [
    (lambda: fit_image(_random_image(1, 3, 8, 8), SQUARE, fit="zoom"), "fit: 'zoom' is not an option; valid: crop, pad"),
    (lambda: fit_image(_random_image(1, 3, 8, 8), SQUARE, resample="cubic"), "resample: 'cubic' .* bicubic"),
    (lambda: fit_image(_random_image(1, 2, 8, 8), SQUARE), r"image: expected \[B, C, H, W\] with C in \{1, 3, 4\}"),
    (lambda: fit_image(_random_image(3, 8, 8), SQUARE), r"image: expected \[B, C, H, W\]"),
    (lambda: fit_image(torch.zeros(1, 3, 0, 8), SQUARE), "image: is empty"),
    (lambda: fit_image(torch.zeros(0, 3, 8, 8), SQUARE), "image: is empty"),
    (lambda: fit_image(torch.full((1, 3, 8, 8), 255.0), SQUARE), r"image: values must lie in \[-1, 1\]"),
    (lambda: fit_image(torch.full((1, 3, 8, 8), float("nan")), SQUARE), "image: holds NaN"),
    (lambda: fit_image(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), SQUARE), "image: expected a float tensor"),
    (lambda: fit_mask(torch.ones(2, 8, 8), SQUARE, batch_size=3), "mask: has 2 entries but the image batch has 3"),
    (lambda: fit_mask(torch.full((8, 8), 2.0), SQUARE), r"mask: values must lie in \[0, 1\]"),
    (lambda: fit_mask(torch.ones(1, 1, 8, 8), SQUARE), r"mask: expected \[H, W\] or \[B, H, W\]"),
    (lambda: fit_mask(torch.ones(8, 8), SQUARE, image_size=(0, 8)), "image height: must be"),
    (lambda: pad_for_outpaint(_random_image(1, 3, 8, 8), -1, 0, 0, 0, "0.06M"), "left: padding must be .* >= 0"),
    (lambda: pad_for_outpaint(_random_image(1, 3, 8, 8), 0, 0, 2.5, 0, "0.06M"), "right: padding must be a whole"),
    (lambda: pad_for_outpaint(_random_image(1, 3, 8, 8), 0, 4, 0, 0, "0.06M", feather=4), "feather: 4 px is too wide"),
    (lambda: pad_for_outpaint(_random_image(1, 3, 8, 8), 0, 4, 0, 0, "2M"), "pixel budget '2M'"),
    (lambda: schedule_for_image(0, 10, "1M"), "height: must be a whole number of pixels >= 1"),
    (lambda: paste_outside_mask(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9), torch.ones(8, 8)), "reference: must"),
    (lambda: paste_outside_mask(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8), torch.ones(4, 4)), "mask: is .* fit_mask"),
    (lambda: paste_outside_mask(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8), torch.ones(8, 8), -1), "ramp: must"),
    (lambda: match_kept_colour(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9), torch.ones(8, 8)), "reference: must"),
    (lambda: match_kept_colour(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8), torch.ones(4, 4)), "mask: is .* fit_mask"),
])
def test_bad_input_names_the_argument_and_what_is_valid(call, match):
    with pytest.raises(InfinityError, match=match):
        call()
