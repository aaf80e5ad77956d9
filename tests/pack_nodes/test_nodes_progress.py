"""Progress, cancel and preview frames, as ComfyUI's progress bar sees them.

Through the stand-in ComfyUI of tests/comfy_stub and the stand-in models (see node_env.py)."""
from __future__ import annotations

import sys

import numpy
import pytest
import torch
from PIL import Image

import infinity_core.preview as core_preview
from infinity_core import InfinityError, SamplingConfig
from .node_env import MISMATCHED_VAE, install_fake_clock, run, run_graph, sample


# --- Progress, interruption, previews ----------------------------------------------------------------------

def test_progress_advances_per_scale_and_interrupt_stops_between_scales(registry, models, mm, fake_clock):
    """Cancel during scale 3 of 7: the run stops right after it; the cancel is a BaseException (as in
    current ComfyUI), the cached models stay usable and the next identical run gives the same image."""
    assert issubclass(mm.InterruptProcessingException, BaseException)
    assert not issubclass(mm.InterruptProcessingException, Exception)
    reference = run_graph(registry, models)
    updates = []

    def hook(value, total, preview, node_id=None):
        updates.append((value, total))
        if value == 3:
            mm.interrupt_current_processing()
    sys.modules["comfy.utils"].PROGRESS_BAR_HOOK = hook
    with pytest.raises(mm.InterruptProcessingException):
        run_graph(registry, models)
    assert updates == [(0, 7), (1, 7), (2, 7), (3, 7)]   # 0: set up, before the first scale
    sys.modules["comfy.utils"].PROGRESS_BAR_HOOK = None
    assert torch.equal(run_graph(registry, models), reference)


@pytest.mark.parametrize("stop_at", range(1, 7))
def test_interrupt_at_any_scale_then_the_same_prompt_gives_the_same_image(registry, models, mm, fake_clock, stop_at):
    reference = sample(registry, models).codes

    def hook(value, total, preview, node_id=None):
        if value == stop_at:
            mm.interrupt_current_processing()
    sys.modules["comfy.utils"].PROGRESS_BAR_HOOK = hook
    with pytest.raises(mm.InterruptProcessingException):
        sample(registry, models)
    sys.modules["comfy.utils"].PROGRESS_BAR_HOOK = None
    assert torch.equal(sample(registry, models).codes, reference)


def test_a_failed_run_leaves_the_cached_models_usable(registry, models, mm, fake_clock):
    reference = run_graph(registry, models)

    def fail(value, total, preview, node_id=None):
        if value == 2:
            raise RuntimeError("out of memory")
    sys.modules["comfy.utils"].PROGRESS_BAR_HOOK = fail
    with pytest.raises(RuntimeError):
        run_graph(registry, models)
    sys.modules["comfy.utils"].PROGRESS_BAR_HOOK = None
    assert torch.equal(run_graph(registry, models), reference)


def test_throttled_progress_still_cancels_at_every_scale(env, registry, models, mm, monkeypatch):
    """Scales 10 ms apart: ComfyUI passes on the first and the last plain update only, and cancel is still
    honoured at every scale."""
    install_fake_clock(env, monkeypatch, 0.01)   # a fast machine: scales under 100 ms apart
    updates = []
    sys.modules["comfy.utils"].PROGRESS_BAR_HOOK = lambda value, total, preview, node_id=None: updates.append(value)
    sample(registry, models)
    assert updates == [0, 7]
    stops = []

    def cancel_at_scale_4() -> None:
        stops.append(1)
        if len(stops) == 5:
            mm.interrupt_current_processing()
    monkeypatch.setattr(mm, "throw_exception_if_processing_interrupted",
                        lambda real=mm.throw_exception_if_processing_interrupted: (cancel_at_scale_4(), real()))
    with pytest.raises(mm.InterruptProcessingException):
        sample(registry, models)
    assert len(stops) == 5


def test_preview_frames_reach_the_page_however_close_the_scales(env, registry, models, mm, monkeypatch):
    """Scales 10 ms apart: every frame the pacer allows goes out (ComfyUI never drops an update with a
    preview), here at every scale, with the budget opened to the whole run."""
    install_fake_clock(env, monkeypatch, 0.01)   # a fast machine: scales under 100 ms apart
    monkeypatch.setattr(env.nodes.previews, "PREVIEW_SHARE", 1.0)
    frames = _frames(mm, previews_on=True)
    sample(registry, models, vae=models["vae"])
    assert [value for value, frame in frames if frame is not None] == [1, 2, 3, 4, 5, 6, 7]
    assert [value for value, _ in frames] == [0, 1, 2, 3, 4, 5, 6, 7]


def test_the_last_update_carries_the_finished_image_whatever_the_budget(env, registry, models, mm, fake_clock,
                                                                        monkeypatch):
    """No budget for previews at all: the first scale's frame goes out (the pacer's rule), and the last
    update carries a frame too, the decode of the finished codes, which a frontend keeps showing on the
    node after the run (so it never keeps the first scale's haze)."""
    monkeypatch.setattr(env.nodes.previews, "PREVIEW_SHARE", 0.0)
    frames = _frames(mm, previews_on=True)
    codes = sample(registry, models, vae=models["vae"]).codes
    assert [value for value, frame in frames if frame is not None] == [1, 7]
    grids = SamplingConfig(pixels="0.06M").schedule.grids
    assert (numpy.asarray(frames[-1][1][1]) == core_preview.render_preview(models["vae"].vae, codes, grids[-1])).all()


def test_stub_progress_bar_throttles_plain_updates_as_comfyui_does(env, monkeypatch):
    """Current ComfyUI: the first, the last and any update with a preview always go; another goes only
    100 ms or more after the last one sent and 0.5 % or more further along."""
    utils = sys.modules["comfy.utils"]
    times = iter([0.0, 0.05, 0.12, 0.15, 0.16, 0.30, 0.45, 0.46])
    monkeypatch.setattr(utils, "clock", lambda: next(times))
    sent = []
    monkeypatch.setattr(utils, "PROGRESS_BAR_HOOK", lambda value, total, preview, node_id=None: sent.append(value))
    bar = utils.ProgressBar(1000)
    for value, preview in ((0, None), (1, None), (10, None), (20, "frame"), (30, None), (21, None), (40, None),
                           (1000, None)):
        bar.update_absolute(value, preview=preview)
    assert sent == [0, 10, 20, 40, 1000]    # 1: too soon; 30: too soon after the frame; 21: 0.1 % on


def _frames(mm, previews_on: bool):
    cli = sys.modules["comfy.cli_args"]
    cli.args.preview_method = cli.LatentPreviewMethod.Auto if previews_on else cli.LatentPreviewMethod.NoPreviews
    frames = []
    sys.modules["comfy.utils"].PROGRESS_BAR_HOOK = lambda value, total, preview, node_id=None: frames.append(
        (value, preview))
    return frames


def test_preview_frames_show_each_scale_through_the_vae(env, registry, models, mm, fake_clock, monkeypatch):
    """With previews on, a VAE connected and the budget opened to the whole run, every scale sends a JPEG
    frame: the VAE's decode of the summed codes so far, pooled to the preview grid, to be shown at most at the
    image's own size (256 px here, under ComfyUI's 512); the final codes are unchanged by previews."""
    monkeypatch.setattr(env.nodes.previews, "PREVIEW_SHARE", 1.0)
    reference = sample(registry, models).codes
    seen_codes = []
    real_render = core_preview.render_preview
    monkeypatch.setattr(core_preview, "render_preview", lambda vae, codes, grid: seen_codes.append(
        (codes.clone(), grid)) or real_render(vae, codes, grid))
    frames = _frames(mm, previews_on=True)
    codes = sample(registry, models, vae=models["vae"]).codes
    assert torch.equal(codes, reference)
    assert [value for value, frame in frames if frame is not None] == [1, 2, 3, 4, 5, 6, 7]
    grids = SamplingConfig(pixels="0.06M").schedule.grids
    for (value, frame), (summed, grid) in zip([f for f in frames if f[1] is not None], seen_codes):
        kind, picture, max_size = frame
        assert kind == "JPEG" and isinstance(picture, Image.Image) and max_size == 256
        assert grid == grids[value - 1]                        # the tiny VAE is f16: token grid = VAE grid
        assert (numpy.asarray(picture) == real_render(models["vae"].vae, summed, grid)).all()
        assert picture.size == (min(max(grid[1], 2), 8) * 16, min(max(grid[0], 2), 8) * 16)   # 2..8 cells a side
    assert not torch.equal(seen_codes[0][0], seen_codes[-1][0]) and torch.count_nonzero(seen_codes[0][0]) > 0
    assert any(r[0] is models["vae"].patcher for r in mm.load_requests)


def test_no_preview_is_computed_with_preview_method_none_or_without_a_vae(env, registry, models, mm, fake_clock,
                                                                        monkeypatch):
    monkeypatch.setattr(env.nodes.previews, "PREVIEW_SHARE", 1.0)
    renders = []
    monkeypatch.setattr(core_preview, "render_preview", lambda vae, codes, grid: renders.append(1))
    frames = _frames(mm, previews_on=False)
    sample(registry, models, vae=models["vae"])
    frames_on = _frames(mm, previews_on=True)
    sample(registry, models)
    assert renders == [] and all(f is None for _, f in frames + frames_on) and len(frames) == 8


def test_a_preview_vae_that_does_not_match_the_model_is_refused(registry, models, mm):
    (wrong_vae,) = run(registry, "InfinityVAELoader", vae_file=MISMATCHED_VAE, dtype="auto")
    _frames(mm, previews_on=True)
    with pytest.raises(InfinityError, match=MISMATCHED_VAE):
        sample(registry, models, vae=wrong_vae)
