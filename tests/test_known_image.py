"""generate from a picture: init_bits / init_scales / mask, checked against invariants of the algorithm."""
import pytest
import torch

from infinity_core import InfinityError, generate, get_schedule

SETTINGS = dict(pixels="0.06M", cfg=3.0, tau=1.0, top_k=900, top_p=0.97, seed=3)


@pytest.fixture(scope="module")
def picture_bits(transformer, fox):
    """A picture's bits on the 0.06M schedule: an earlier generation's (the no-VAE-round-trip path)."""
    return generate(transformer, fox, **SETTINGS | {"seed": 100}).bits


def _bits_equal(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_every_scale_kept_returns_the_picture(transformer, fox, picture_bits):
    result = generate(transformer, fox, **SETTINGS, init_bits=picture_bits, init_scales=7)
    assert _bits_equal(result.bits, picture_bits)


def test_kept_scales_take_the_picture_and_later_scales_differ_from_it(transformer, fox, picture_bits):
    result = generate(transformer, fox, **SETTINGS, init_bits=picture_bits, init_scales=3)
    assert _bits_equal(result.bits[:3], picture_bits[:3])
    assert not _bits_equal(result.bits[3:], picture_bits[3:])


def test_kept_scales_draw_as_a_plain_run_does(transformer, fox):
    """Replaying a run's own first K scales as init_bits changes nothing: the kept scales advance the
    generator exactly as sampling them did."""
    plain = generate(transformer, fox, **SETTINGS)
    for keep in (1, 4):
        replay = generate(transformer, fox, **SETTINGS, init_bits=plain.bits, init_scales=keep)
        assert _bits_equal(replay.bits, plain.bits), keep


def test_mask_all_ones_is_plain_text_to_image(transformer, fox, picture_bits):
    plain = generate(transformer, fox, **SETTINGS)
    redraw_all = generate(transformer, fox, **SETTINGS, init_bits=picture_bits, mask=torch.ones(256, 256))
    assert _bits_equal(redraw_all.bits, plain.bits)
    torch.testing.assert_close(redraw_all.codes, plain.codes, rtol=0, atol=0)


def test_mask_without_ones_returns_the_reconstruction(transformer, fox, picture_bits):
    kept = generate(transformer, fox, **SETTINGS, init_bits=picture_bits, mask=torch.zeros(256, 256))
    assert _bits_equal(kept.bits, picture_bits)


def test_inpainting_keeps_the_unmasked_codes_and_redraws_the_masked_ones(transformer, fox, picture_bits):
    """Left half redrawn: the right half's summed codes are the picture's own, the left half's are new."""
    reference = generate(transformer, fox, **SETTINGS | {"seed": 100})
    mask = torch.zeros(256, 256)
    mask[:, :128] = 1
    result = generate(transformer, fox, **SETTINGS, init_bits=picture_bits, mask=mask)
    torch.testing.assert_close(result.codes[..., 8:], reference.codes[..., 8:], rtol=0, atol=0)
    assert not torch.equal(result.codes[..., :8], reference.codes[..., :8])
    final = result.bits[-1]                                             # [1, 16, 16, 32]
    assert torch.equal(final[:, :, 8:], picture_bits[-1][:, :, 8:])     # kept tokens carry the picture's bits


def test_a_token_touching_the_mask_is_redrawn(transformer, fox, picture_bits):
    """One masked pixel inside token (5, 5) of the final 16x16 grid redraws that token, not its neighbours."""
    reference = generate(transformer, fox, **SETTINGS | {"seed": 100})
    mask = torch.zeros(256, 256)
    mask[5 * 16 + 15, 5 * 16] = 1.0
    result = generate(transformer, fox, **SETTINGS | {"seed": 9}, init_bits=picture_bits, mask=mask)
    changed = (result.codes != reference.codes).any(dim=1)[0]           # [16, 16]
    assert changed.nonzero().tolist() == [[5, 5]] or changed.sum() == 0   # 0: the redraw happened to agree
    assert not changed[:5].any() and not changed[6:].any()


def test_a_mask_of_another_size_is_stretched_to_the_output(transformer, fox, picture_bits):
    small = torch.zeros(64, 64)
    small[:, :32] = 1
    large = torch.zeros(256, 256)
    large[:, :128] = 1
    a = generate(transformer, fox, **SETTINGS, init_bits=picture_bits, mask=small)
    b = generate(transformer, fox, **SETTINGS, init_bits=picture_bits, mask=large)
    assert _bits_equal(a.bits, b.bits)


def test_bad_image_inputs_are_named(transformer, fox, picture_bits):
    other = generate(transformer, fox, **SETTINGS | {"h_div_w": 0.5}).bits
    with pytest.raises(InfinityError, match=r"init_bits scale 2 has shape \[1, 2, 4, 32\] but this schedule needs \[1, 4, 4, 32\].* encode the image with the same aspect"):
        generate(transformer, fox, **SETTINGS, init_bits=other, init_scales=2)
    with pytest.raises(InfinityError, match="init_bits have 16 bits per latent but the transformer's VAE has 32"):
        generate(transformer, fox, **SETTINGS, init_bits=[b[..., :16] for b in picture_bits], init_scales=2)
    with pytest.raises(InfinityError, match=r"init_bits has 7 scales but the schedule \(h/w 1, 512x512 px\) has 10"):
        generate(transformer, fox, **SETTINGS | {"pixels": "0.25M"}, init_bits=picture_bits, init_scales=2)
    with pytest.raises(InfinityError, match="init_scales must be a whole number in 0..7"):
        generate(transformer, fox, **SETTINGS, init_bits=picture_bits, init_scales=8)
    with pytest.raises(InfinityError, match="need init_bits"):
        generate(transformer, fox, **SETTINGS, init_scales=2)
    with pytest.raises(InfinityError, match="mask values must be in 0..1"):
        generate(transformer, fox, **SETTINGS, init_bits=picture_bits, mask=torch.full((256, 256), 2.0))
    with pytest.raises(InfinityError, match=r"mask must be \[H, W\] or \[1, H, W\]"):
        generate(transformer, fox, **SETTINGS, init_bits=picture_bits, mask=torch.zeros(2, 256, 256))


def test_encoded_picture_round_trip_on_the_vae(transformer, vae, fox):
    """vae.encode's bits as init_bits with every scale kept decode to the VAE's own reconstruction."""
    image = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 2 - 1
    schedule = get_schedule(1.0, "0.06M")
    with torch.inference_mode():
        encoded = vae.encode(image, list(schedule.grids))
    result = generate(transformer, fox, **SETTINGS, init_bits=encoded.bits, init_scales=7)
    torch.testing.assert_close(result.codes, encoded.summed_codes, rtol=0, atol=1e-6)


def test_one_picture_under_a_batch_follows_the_batch_rule(transformer, fox, picture_bits):
    """A batch of two inpaintings of one picture: image i is the single inpainting with seed + i."""
    mask = torch.zeros(256, 256)
    mask[64:192, 64:192] = 1
    batch = generate(transformer, fox, **SETTINGS | {"batch_size": 2}, init_bits=picture_bits, mask=mask)
    for index in range(2):
        single = generate(transformer, fox, **SETTINGS | {"seed": SETTINGS["seed"] + index}, init_bits=picture_bits,
                          mask=mask)
        assert all(torch.equal(b[index:index + 1], s) for b, s in zip(batch.bits, single.bits)), index
