"""Speed modes (speed.py): what each leaves out, checked against exact runs and the algorithm's invariants."""
import math

import pytest
import torch

from infinity_core import InfinityError, SamplingConfig, generate, get_schedule
from infinity_core.speed import POLICIES, pick_tokens, speed_policy

SETTINGS = dict(pixels="0.06M", cfg=3.0, tau=1.0, top_k=900, top_p=0.97, seed=3)
SCALES = get_schedule(1.0, "0.06M").num_scales


def _first_changed_scale(speed: str) -> int:
    policy = POLICIES[speed]
    return SCALES - max(policy.unguided_last, len(policy.token_share_last))


def _bits_equal(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def exact(transformer, fox):
    return generate(transformer, fox, **SETTINGS)


@pytest.mark.parametrize("speed", ["balanced", "fast"])
def test_a_mode_changes_only_its_last_scales_and_is_deterministic(transformer, fox, exact, speed):
    """Scales before the first one a mode touches are exact's bits (the generators advance alike); the rest
    differ from exact's, and a second run with the same seed repeats every bit."""
    result = generate(transformer, fox, **SETTINGS, speed=speed)
    first = _first_changed_scale(speed)
    assert _bits_equal(result.bits[:first], exact.bits[:first])
    assert not _bits_equal(result.bits[first:], exact.bits[first:])
    again = generate(transformer, fox, **SETTINGS, speed=speed)
    assert _bits_equal(again.bits, result.bits)
    torch.testing.assert_close(again.codes, result.codes, rtol=0, atol=0)


def test_balanced_is_exact_with_guidance_off_at_its_last_scales(transformer, fox):
    """Dropping the unconditional rows at the last n scales is cfg 1 there: the same bits as that cfg schedule."""
    n = POLICIES["balanced"].unguided_last
    cfg = (3.0,) * (SCALES - n) + (1.0,) * n
    balanced = generate(transformer, fox, **SETTINGS, speed="balanced")
    assert _bits_equal(balanced.bits, generate(transformer, fox, **SETTINGS | {"cfg": cfg}).bits)


def test_a_skipped_scale_never_runs_the_transformer(transformer, fox, monkeypatch):
    """fast skips its last scale: forward_scale runs once per other scale, with only the kept tokens where pruned."""
    seen = []
    original = type(transformer).forward_scale

    def spy(self, x, scale_index, *args):
        seen.append((scale_index, x.shape[1]))
        return original(self, x, scale_index, *args)

    monkeypatch.setattr(type(transformer), "forward_scale", spy)
    generate(transformer, fox, **SETTINGS, speed="fast")
    kept = speed_policy("fast").kept_tokens(get_schedule(1.0, "0.06M").grids)
    assert seen == [(scale, count) for scale, count in enumerate(kept) if count]
    assert kept[-1] == 0 and 0 < kept[-2] < 12 * 12


@pytest.mark.parametrize("speed", ["balanced", "fast"])
def test_inpainting_keeps_the_known_region_in_every_mode(transformer, fox, speed):
    picture = generate(transformer, fox, **SETTINGS | {"seed": 100})
    mask = torch.zeros(256, 256)
    mask[:, :128] = 1
    result = generate(transformer, fox, **SETTINGS, init_bits=picture.bits, mask=mask, speed=speed)
    torch.testing.assert_close(result.codes[..., 8:], picture.codes[..., 8:], rtol=0, atol=0)
    assert not torch.equal(result.codes[..., :8], picture.codes[..., :8])
    for bits, known in zip(result.bits, picture.bits):   # a token is kept where no redrawn pixel is under it:
        first_kept = math.ceil(bits.shape[2] / 2)          # the columns from the middle on
        assert torch.equal(bits[:, :, first_kept:], known[:, :, first_kept:])


@pytest.mark.parametrize("speed", ["balanced", "fast"])
def test_img2img_keeps_its_scales_in_every_mode(transformer, fox, speed):
    picture = generate(transformer, fox, **SETTINGS | {"seed": 100})
    result = generate(transformer, fox, **SETTINGS, init_bits=picture.bits, init_scales=3, speed=speed)
    assert _bits_equal(result.bits[:3], picture.bits[:3])
    assert [b.shape for b in result.bits] == [b.shape for b in picture.bits]


def test_batch_images_are_those_of_single_runs(transformer, fox):
    """Image i of a fast batch is the fast image of seed + i alone (pruning chooses tokens per image)."""
    batch = generate(transformer, fox, **SETTINGS | {"batch_size": 2}, speed="fast")
    second = generate(transformer, fox, **SETTINGS | {"seed": 4}, speed="fast")
    assert all(torch.equal(b[1:], s) for b, s in zip(batch.bits, second.bits))


def test_pick_tokens_keeps_the_farthest_from_the_mean_in_raster_order_and_redrawn_ones_first():
    tokens = torch.zeros(1, 6, 2)
    tokens[0, 4] = 5.0
    tokens[0, 1] = -3.0
    assert pick_tokens(tokens, 2).tolist() == [[1, 4]]
    redrawn = torch.tensor([[False, False, True, False, False, False]]).unsqueeze(-1)
    assert pick_tokens(tokens, 2, redrawn).tolist() == [[2, 4]]


def test_a_bad_speed_is_refused_by_name():
    with pytest.raises(InfinityError, match="^speed must be one of"):
        SamplingConfig(speed="turbo")
    with pytest.raises(InfinityError, match="^speed must be one of"):
        SamplingConfig(speed=["fast"])
