"""2D RoPE tables against the official ones, and the rotation's invariants."""
import math

import pytest
import torch

from infinity_core.schedules import get_schedule
from infinity_core.transformer.rope import apply_rope, rope_table


@pytest.mark.parametrize("key, h_div_w", [("rope_h1.0_0.06M", 1.0), ("rope_h0.5_0.06M", 0.5)])
def test_tables_match_official(fixture_tensors, key, h_div_w):
    expected = fixture_tensors("rope2d.safetensors")[key]          # [2, L, head_dim/2]
    rotation = rope_table(get_schedule(h_div_w, "0.06M"), head_dim=32)
    torch.testing.assert_close(rotation[0], expected[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(rotation[1], expected[1], atol=1e-6, rtol=0)


def test_positions_are_normalised_to_the_final_grid():
    """The first token of every scale sits at (0, 0): cos 1, sin 0 on all pairs; the 1x1 scale too."""
    schedule = get_schedule(1.0, "1M")
    rotation = rope_table(schedule, head_dim=64)
    cos, sin = rotation
    for scale in range(schedule.num_scales):
        first = schedule.token_offset(scale)
        torch.testing.assert_close(cos[first], torch.ones(32))
        torch.testing.assert_close(sin[first], torch.zeros(32))
    # last token of the 2x2 scale is at row round(1 * 64 / 2) = 32, column 32: angle 32 * inv_freq[0] = 32
    last_of_2x2 = schedule.token_offset(2) - 1
    assert math.isclose(cos[last_of_2x2, 0].item(), math.cos(32.0), abs_tol=1e-6)


def test_rotation_preserves_norm_and_relative_angle():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 16)
    rotation = rope_table(get_schedule(1.0, "0.06M"), head_dim=16)[:, :5]
    rotated = apply_rope(x, rotation)
    even, odd = x[..., 0::2], x[..., 1::2]               # upstream's formula, written out
    expected = torch.stack((rotation[0] * even - rotation[1] * odd, rotation[1] * even + rotation[0] * odd), -1)
    torch.testing.assert_close(rotated, expected.flatten(-2), atol=1e-6, rtol=0)
    torch.testing.assert_close(rotated.norm(dim=-1), x.norm(dim=-1))
    # the same vector at the same position as itself: dot product unchanged
    torch.testing.assert_close((rotated * rotated).sum(-1), (x * x).sum(-1))


def test_real_arithmetic_gives_the_complex_products_bits():
    """The rotation as the complex product (x0 + i*x1)(cos + i*sin) computed by torch's complex kernels."""
    torch.manual_seed(1)
    x = torch.randn(2, 1, 4, 100, 64)                           # [2 (q, k), B, H, l, hd]
    rotation = rope_table(get_schedule(1.0, "0.25M"), head_dim=64)[:, 100:200]
    complex_rotation = torch.complex(rotation[0], rotation[1])
    expected = torch.view_as_real(torch.view_as_complex(x.unflatten(-1, (-1, 2))) * complex_rotation).flatten(-2)
    assert torch.equal(apply_rope(x, rotation), expected)
