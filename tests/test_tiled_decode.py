"""Tiled VAE decoding: exact bookkeeping for local decoders, smooth cross-fades for per-tile offsets."""
import pytest
import torch
import torch.nn.functional as F

from infinity_core import load_vae
from infinity_core.vae.tiling import Tiling, decode_tiled, tile_starts

from conftest import FIXTURES


def _local_decoder(codes):
    """A purely local 'decoder': each latent becomes a 4x4 block (no context, like a 1x1 conv + upsample)."""
    return F.interpolate(codes[:, :3], scale_factor=4, mode="nearest")


def test_tile_starts_cover_the_grid():
    assert tile_starts(10, 16, 4) == [0]
    for length, tile, overlap in [(64, 32, 8), (45, 16, 4), (111, 32, 8)]:
        starts = tile_starts(length, tile, overlap)
        covered = torch.zeros(length, dtype=torch.bool)
        for start in starts:
            covered[start:start + tile] = True
        assert covered.all() and starts[-1] + tile == length
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize("tiling", [Tiling(8, 0), Tiling(8, 3), Tiling(16, 8)])
def test_local_decoder_is_reproduced_exactly(tiling):
    codes = torch.randn(2, 4, 23, 37)
    torch.testing.assert_close(decode_tiled(_local_decoder, codes, 4, tiling), _local_decoder(codes))


def test_per_tile_offsets_are_cross_faded_without_an_edge():
    """A decoder whose output shifts by a per-tile constant (like per-tile GroupNorm statistics): with overlap
    the largest step between neighbouring pixels is the offset spread over the fade, not the offset itself."""
    codes = torch.zeros(1, 3, 32, 32)
    offsets = iter(torch.tensor([0.0, 1.0, 0.5, -0.5, 0.8, -1.0, 0.3, 0.9, -0.2] * 4))

    def offset_decoder(piece):
        return _local_decoder(piece) + next(offsets)
    hard = decode_tiled(offset_decoder, codes, 4, Tiling(16, 0))
    soft = decode_tiled(offset_decoder, codes, 4, Tiling(16, 8))
    def max_step(image):
        return max((image[..., 1:] - image[..., :-1]).abs().max(), (image[..., 1:, :] - image[..., :-1, :]).abs().max())
    assert max_step(hard) >= 0.5                       # without overlap the tile offset shows as an edge
    assert max_step(soft) <= 2.0 / (8 * 4) + 1e-6      # cross-fade: at most (max offset gap) / fade pixels


def test_real_vae_tiled_decode_shape_and_range():
    vae = load_vae(FIXTURES / "vae_tiny.safetensors", "cpu")
    codes = torch.randn(1, 32, 20, 12).sign() / 32 ** 0.5
    with torch.inference_mode():
        image = vae.decode(codes, Tiling(8, 2))
    assert image.shape == (1, 3, 320, 192) and image.abs().max() <= 1 and torch.isfinite(image).all()
