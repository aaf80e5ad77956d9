"""infinity_core.preview: the pooled-decode preview picture and the pacing of preview frames."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from infinity_core import SamplingConfig, load_vae
from infinity_core.preview import (PREVIEW_MIN_CELLS, PREVIEW_PIXELS, PreviewPacer, ScalePreviews, preview_grid,
                                   render_preview)

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


def test_render_preview_of_the_first_scale_pools_to_two_cells_a_side():
    """A 1-cell side is pooled to PREVIEW_MIN_CELLS (2) instead: the same mean code, away from the borders."""
    vae = load_vae(FIXTURES / "vae_tiny.safetensors", "cpu", torch.float32, with_encoder=False)
    codes = torch.randn(1, vae.config.codebook_dim, 16, 16, generator=torch.Generator().manual_seed(3)) * 0.25
    for scale_grid, decoded_grid in (((1, 1), (2, 2)), ((1, 3), (2, 3))):
        with torch.inference_mode():
            expected = vae.decode(F.adaptive_avg_pool2d(codes, decoded_grid))[0]
        expected = expected.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
        assert PREVIEW_MIN_CELLS == 2 and (render_preview(vae, codes, scale_grid) == expected).all()


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _run(scale_seconds: list[float], frame_seconds, share: float) -> tuple[list[int], float, float, float]:
    """Drive a pacer as ScalePreviews does, a frame after scale i costing `frame_seconds(i)` seconds;
    returns (scales with a frame, frame time, run time, the costliest frame's time)."""
    clock = FakeClock()
    pacer = PreviewPacer(share, clock)
    total = len(scale_seconds)
    framed, spent = [], 0.0
    assert not pacer.due(0, total)                        # before the first scale: nothing to show
    for done, seconds in enumerate(scale_seconds, start=1):
        clock.now += seconds
        if pacer.due(done, total):
            assert done < total                              # never after the last: the decode follows
            framed.append(done)
            clock.now += frame_seconds(done)
            pacer.record(frame_seconds(done))
            spent += frame_seconds(done)
    return framed, spent, clock.now, max(map(frame_seconds, range(1, total)))


SLOWING_SCALES = [0.05, 0.05, 0.06, 0.08, 0.1, 0.2, 0.4, 0.6, 0.9, 1.4, 2.2, 3.0, 4.5]


@pytest.mark.parametrize("fixed, per_pixel", [(0.02, 0.0), (0.005, 0.004), (0.0, 0.01), (0.01, 0.005)])
def test_pacer_keeps_frames_within_the_share_of_the_run_plus_one_frame(fixed, per_pixel):
    """Scales that get slower, as a real schedule's do, and frames whose cost is a fixed part plus a part
    that grows with the scale (as a decode's grows with its pixels): the frames' total stays within the share
    of the run plus the costliest frame, and there is more than one frame when the budget allows."""
    framed, spent, run, costliest = _run(SLOWING_SCALES, lambda done: fixed + per_pixel * done, share=0.03)
    assert spent <= 0.03 * run + costliest
    assert framed[0] == 1 and len(framed) >= 3


def test_pacer_gives_frames_as_slow_as_a_scale_no_more_than_the_first():
    framed, spent, _, _ = _run(SLOWING_SCALES, lambda done: 2.0, share=0.03)
    assert framed == [1] and spent == 2.0


def test_pacer_share_one_frames_every_scale_but_the_last():
    framed, _, _, _ = _run([0.1] * 7, lambda done: 0.01, share=1.0)
    assert framed == [1, 2, 3, 4, 5, 6]


def test_scale_previews_render_each_due_scale_at_its_grid():
    """ScalePreviews with the budget opened to the whole run: a frame after every scale, each the pooled
    decode at that scale's VAE grid (this VAE is f16: the token grid), counted with its time."""
    vae = load_vae(FIXTURES / "vae_tiny.safetensors", "cpu", torch.float32, with_encoder=False)
    schedule = SamplingConfig(pixels="0.06M").schedule
    codes = torch.randn(1, vae.config.codebook_dim, *schedule.grids[-1],
                        generator=torch.Generator().manual_seed(2)) * 0.25
    ticks = iter(range(1000))
    previews = ScalePreviews(vae, schedule, share=1.0, clock=lambda: float(next(ticks)))   # 1 s per reading
    total = schedule.num_scales
    pictures = [previews(done, total, codes) for done in range(total + 1)]
    assert pictures[0] is None
    for done in range(1, total + 1):
        assert (pictures[done] == render_preview(vae, codes, schedule.grids[done - 1])).all()
    assert pictures[1].shape[:2] == (2 * vae.config.downsample,) * 2        # the first scale: 2x2 cells
    assert previews.frames == total and previews.seconds == total


def test_scale_previews_always_show_the_finished_codes_after_the_last_scale():
    """With no budget at all (share 0) the pacer allows only the first scale's frame; the last scale still
    gets one, the preview of the finished codes at the full grid, so the frame a frontend keeps showing after
    the run is the image the run made."""
    vae = load_vae(FIXTURES / "vae_tiny.safetensors", "cpu", torch.float32, with_encoder=False)
    schedule = SamplingConfig(pixels="0.06M").schedule
    codes = torch.randn(1, vae.config.codebook_dim, *schedule.grids[-1],
                        generator=torch.Generator().manual_seed(3)) * 0.25
    ticks = iter(range(1000))
    previews = ScalePreviews(vae, schedule, share=0.0, clock=lambda: float(next(ticks)))
    total = schedule.num_scales
    pictures = [previews(done, total, codes) for done in range(total + 1)]
    framed = [done for done, picture in enumerate(pictures) if picture is not None]
    assert framed == [1, total]
    assert (pictures[total] == render_preview(vae, codes, schedule.grids[-1])).all()
    assert pictures[total].shape[:2] == (PREVIEW_PIXELS,) * 2     # a 256 px square's final grid, pooled to 128 px


def test_previews_time_scales_on_the_device_clock():
    """Without a clock given, the pacer reads the VAE device's clock: on a CPU, perf_counter's seconds."""
    import time

    from infinity_core.clock import DeviceClock
    vae = load_vae(FIXTURES / "vae_tiny.safetensors", "cpu", torch.float32, with_encoder=False)
    previews = ScalePreviews(vae, SamplingConfig(pixels="0.06M").schedule)
    assert isinstance(previews.pacer.clock, DeviceClock) and previews.pacer.clock.device.type == "cpu"
    before, reference = previews.pacer.clock(), time.perf_counter()
    time.sleep(0.02)
    elapsed, reference_elapsed = previews.pacer.clock() - before, time.perf_counter() - reference
    assert 0.02 <= elapsed <= reference_elapsed + 0.005
