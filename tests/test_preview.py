"""infinity_core.preview: the pooled-decode preview picture and the pacing of preview frames."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from infinity_core import load_vae
from infinity_core.preview import PREVIEW_PIXELS, PreviewPacer, preview_grid, render_preview

FIXTURES = __import__("pathlib").Path(__file__).parent / "fixtures" / "infinity_tiny"


def test_preview_grid_caps_the_long_side_and_keeps_the_aspect():
    assert preview_grid(16, 16, 16) == (PREVIEW_PIXELS // 16,) * 2
    assert preview_grid(64, 32, 16) == (8, 4)
    assert preview_grid(4, 6, 16) == (4, 6)                 # never larger than the latent itself
    assert preview_grid(128, 128, 8) == (16, 16)            # an f8 VAE: the same 128 px
    assert preview_grid(90, 1, 16) == (8, 1)


def test_render_preview_is_the_vae_decode_of_the_pooled_codes():
    vae = load_vae(FIXTURES / "vae_tiny.safetensors", "cpu", torch.float32, with_encoder=False)
    d, f = vae.config.codebook_dim, vae.config.downsample
    codes = torch.randn(2, d, 16, 24, generator=torch.Generator().manual_seed(0)) * 0.25
    picture = render_preview(vae, codes)
    grid = preview_grid(16, 24, f)
    with torch.inference_mode():
        expected = vae.decode(F.adaptive_avg_pool2d(codes[:1], grid))[0]
    expected = expected.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    assert picture.shape == (grid[0] * f, grid[1] * f, 3) and picture.dtype == expected.dtype
    assert (picture == expected).all()


def test_render_preview_of_an_early_scale_decodes_at_that_scale_grid():
    vae = load_vae(FIXTURES / "vae_tiny.safetensors", "cpu", torch.float32, with_encoder=False)
    d, f = vae.config.codebook_dim, vae.config.downsample
    codes = torch.randn(1, d, 16, 16, generator=torch.Generator().manual_seed(1)) * 0.25
    picture = render_preview(vae, codes, scale_grid=(2, 3))
    with torch.inference_mode():
        expected = vae.decode(F.adaptive_avg_pool2d(codes, (2, 3)))[0]
    expected = expected.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    assert picture.shape == (2 * f, 3 * f, 3) and (picture == expected).all()


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _run(scale_seconds: list[float], frame_seconds: float, share: float) -> tuple[list[int], float, float]:
    """Drive a pacer like the node's callback does; returns (scales with a frame, frame time, run time)."""
    clock = FakeClock()
    pacer = PreviewPacer(share, clock)
    total = len(scale_seconds)
    framed, spent = [], 0.0
    assert not pacer.due(0, total)                           # before the first scale: nothing to show
    for done, seconds in enumerate(scale_seconds, start=1):
        clock.now += seconds
        if done < total and pacer.due(done, total):
            framed.append(done)
            clock.now += frame_seconds
            pacer.record(frame_seconds)
            spent += frame_seconds
    return framed, spent, clock.now


def test_pacer_keeps_frames_within_the_share_of_the_run():
    """Scales that get slower (as a real schedule does) and frames of a fixed cost: the frames' total stays
    within the share of the run plus one frame, and there is more than one frame when the budget allows."""
    scales = [0.05, 0.05, 0.06, 0.08, 0.1, 0.2, 0.4, 0.6, 0.9, 1.4, 2.2, 3.0, 4.5]
    framed, spent, run = _run(scales, frame_seconds=0.02, share=0.03)
    assert spent <= 0.03 * run + 0.02
    assert framed[0] == 1 and len(framed) >= 4
    framed, spent, run = _run(scales, frame_seconds=2.0, share=0.03)    # frames as slow as a scale
    assert framed == [1] and spent == 2.0


def test_pacer_share_one_frames_every_scale():
    framed, _, _ = _run([0.1] * 7, frame_seconds=0.01, share=1.0)
    assert framed == [1, 2, 3, 4, 5, 6]
