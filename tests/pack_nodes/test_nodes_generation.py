"""Sampling and decoding through the nodes, and the checks ComfyUI runs when a prompt is queued.

Through the stand-in ComfyUI of tests/comfy_stub and the stand-in models (see node_env.py)."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from infinity_core import InfinityError, TextCondition
from infinity_core.trained_sizes import TrainedSizes
from .node_env import (MISMATCHED_VAE, PROMPT, SETTINGS, WIDGET_TYPES, run, run_graph, sample, v1_inputs,
                       validate)
from standin_models import TINY_NAMES


# --- Generation --------------------------------------------------------------------------------------------

def test_image_is_comfyui_layout_rgb_in_0_1_on_the_intermediate_device(registry, models):
    image = run_graph(registry, models, batch_size=2)
    assert image.shape == (2, 256, 256, 3)
    assert image.dtype == torch.float32 and image.device == torch.device("cpu")
    assert 0.0 <= image.min() and image.max() <= 1.0 and image.std() > 0


def test_non_square_preset_gives_the_announced_size(env, registry, models):
    image = run_graph(registry, models, aspect_ratio="2:1 (landscape)", cfg=1.0)
    sizes = env.nodes.routes.output_size_table()["2:1 (landscape)"]["0.06M"]
    assert image.shape == (1, sizes["height"], sizes["width"], 3) and sizes["width"] > sizes["height"]


def test_same_seed_same_image_and_another_seed_another(registry, models):
    first, again, other = (run_graph(registry, models), run_graph(registry, models),
                           run_graph(registry, models, seed=8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_image_i_of_a_batch_is_the_single_image_of_seed_plus_i(registry, models):
    batch = sample(registry, models, batch_size=3, seed=20).codes
    single = sample(registry, models, batch_size=1, seed=22).codes
    assert torch.equal(batch[2:3], single)


def test_constant_cfg_schedule_equals_the_simple_sampler(registry, models):
    simple = sample(registry, models)
    widgets = {k: v for k, v in SETTINGS.items() if k != "cfg"}
    (cond,) = run(registry, "InfinityTextEncode", text_encoder=models["text_encoder"], prompt=PROMPT,
                  negative_prompt="")
    (advanced,) = run(registry, "InfinityBitwiseSamplerAdvanced", model=models["model"], conditioning=cond,
                      cfg_schedule="3", **widgets)
    assert torch.equal(simple.codes, advanced.codes)


def test_sampler_memory_request_is_the_core_estimate(env, registry, models, mm):
    """The bytes asked of ComfyUI's model management are infinity_core.sampling_memory's, for this run."""
    import infinity_core
    sample(registry, models, batch_size=2, cfg=3.0)
    (patcher, memory, full), = [r for r in mm.load_requests if r[0] is models["model"].patcher]
    config = infinity_core.SamplingConfig(pixels="0.06M", batch_size=2)
    transformer = models["model"].transformer
    assert full and memory == infinity_core.sampling_memory(transformer.config, config.schedule, 2, True,
                                                            transformer.compute_dtype)


def test_models_run_through_comfyui_model_management(registry, models, mm):
    """Text encoding, sampling and decoding fully load their ModelPatcher; unloading all models (the
    "free memory" button) takes every one of them, and they stay usable."""
    reference = run_graph(registry, models)
    loaded = {patcher.model.inner.__class__.__name__: full for patcher, _, full in mm.load_requests}
    assert set(loaded) == {"T5EncoderModel", "InfinityTransformer", "BitwiseVAE"} and all(loaded.values())
    assert {p.model.inner.__class__.__name__ for p in mm.current_loaded_models} == set(loaded)
    mm.unload_all_models()
    assert mm.current_loaded_models == []
    assert torch.equal(run_graph(registry, models), reference)


def test_text_encoder_is_loaded_by_model_management_before_it_encodes(registry, mm, monkeypatch):
    """The T5 rests on its offload device; load_models_gpu moves it to the load device for the encode,
    and /free (unload_all_models) puts it back."""
    mm.LOAD_DEVICE = torch.device("cpu", 0)   # a device distinct from the offload device
    (encoder,) = run(registry, "InfinityTextEncoderLoader", text_encoder_folder=TINY_NAMES.text_encoder, dtype="fp32")
    managed = encoder.patcher.model
    assert managed.inner is encoder.encoder.model                  # the T5 module the encoder runs
    moves = []
    real_to = managed.to
    monkeypatch.setattr(managed, "to", lambda device: moves.append(device) or real_to(device))
    (cond,) = run(registry, "InfinityTextEncode", text_encoder=encoder, prompt=PROMPT, negative_prompt="blurry")
    assert mm.load_requests[-1][0] is encoder.patcher and moves == [torch.device("cpu", 0)]
    assert encoder.patcher in mm.current_loaded_models
    mm.unload_all_models()
    assert moves == [torch.device("cpu", 0), torch.device("cpu")]
    assert cond.negative is not None and cond.positive.batch_size == 1


def test_prompt_warnings_are_shown_on_the_node_without_failing(registry, models):
    """Words the tokenizer does not know (they become <unk>) are named on the node, per prompt; a clean
    prompt shows nothing."""
    encode = registry["InfinityTextEncode"].execute
    output = encode(text_encoder=models["text_encoder"], prompt="a red zebra circle", negative_prompt="blurry")
    (text,) = output.ui.as_dict()["text"]
    lines = text.splitlines()
    assert len(lines) == 2 and lines[0].startswith("prompt: ") and "'zebra'" in lines[0]
    assert lines[1].startswith("negative_prompt: ") and "'blurry'" in lines[1]
    assert output.args[0].positive.batch_size == 1
    clean = encode(text_encoder=models["text_encoder"], prompt=PROMPT, negative_prompt="")
    assert clean.ui.as_dict()["text"] == ("",)


def test_empty_negative_prompt_uses_the_learned_unconditional_text(registry, models):
    (cond,) = run(registry, "InfinityTextEncode", text_encoder=models["text_encoder"], prompt=PROMPT,
                  negative_prompt="  ")
    assert cond.negative is None


def test_tiled_decode_matches_whole_decode_where_one_tile_covers_the_image(registry, models):
    """A tile as large as the image is the plain decode; smaller tiles give the same size, in range."""
    codes = sample(registry, models)
    (whole,) = run(registry, "InfinityTokenizerDecode", vae=models["vae"], codes=codes)
    (one_tile,) = run(registry, "InfinityTokenizerDecodeTiled", vae=models["vae"], codes=codes, tile_size=256,
                      overlap=64)
    (tiled,) = run(registry, "InfinityTokenizerDecodeTiled", vae=models["vae"], codes=codes, tile_size=128,
                   overlap=64)
    assert torch.equal(whole, one_tile)
    assert tiled.shape == whole.shape and 0 <= tiled.min() and tiled.max() <= 1


def test_wrong_vae_is_refused_naming_both_files(registry, models):
    codes = sample(registry, models)
    (wrong_vae,) = run(registry, "InfinityVAELoader", vae_file=MISMATCHED_VAE, dtype="auto")
    with pytest.raises(InfinityError) as error:
        run(registry, "InfinityTokenizerDecode", vae=wrong_vae, codes=codes)
    assert MISMATCHED_VAE in str(error.value) and TINY_NAMES.transformer in str(error.value)


def test_text_encoder_of_the_wrong_width_is_refused_naming_both(env, registry, models):
    narrow = TextCondition.from_features([torch.zeros(3, 128)])
    cond = env.nodes.types.InfinityConditioning(narrow, None, "t5_small")
    with pytest.raises(InfinityError, match="t5_small.*infinity_tiny.safetensors"):
        run(registry, "InfinityBitwiseSampler", model=models["model"], conditioning=cond, **SETTINGS)

# --- Validation when the prompt is queued -------------------------------------------------------------------

SAMPLER_WIDGETS = dict(SETTINGS)
ADVANCED_WIDGETS = {**{k: v for k, v in SETTINGS.items() if k != "cfg"}, "cfg_schedule": "3, 3, 4"}


@pytest.mark.parametrize("node_id, change, widget, message", [
    ("InfinityBitwiseSampler", {"cfg": float("nan")}, "cfg", "cfg must be a finite number in 0..100"),
    ("InfinityBitwiseSampler", {"cfg": -3.0}, "cfg", "cfg must be a finite number in 0..100"),
    ("InfinityBitwiseSampler", {"cfg": 1e30}, "cfg", "cfg must be a finite number in 0..100"),
    ("InfinityBitwiseSampler", {"tau": 0.0}, "tau", "tau must be a finite number in 0.01..5"),
    ("InfinityBitwiseSampler", {"tau": float("inf")}, "tau", "tau must be a finite number"),
    ("InfinityBitwiseSampler", {"top_k": -1}, "top_k", "top_k must be in 0..10000"),
    ("InfinityBitwiseSampler", {"top_p": 1.5}, "top_p", "top_p must be a finite number in 0..1"),
    ("InfinityBitwiseSampler", {"seed": 2 ** 64}, "seed", "seed must be in 0..18446744073709551615"),
    ("InfinityBitwiseSampler", {"seed": -1}, "seed", "seed must be in 0.."),
    ("InfinityBitwiseSampler", {"batch_size": 0}, "batch_size", "batch_size must be in 1..64"),
    ("InfinityBitwiseSampler", {"batch_size": 1000}, "batch_size", "batch_size must be in 1..64"),
    ("InfinityBitwiseSampler", {"aspect_ratio": "7:9"}, "aspect_ratio", "aspect_ratio: '7:9' is not a preset"),
    ("InfinityBitwiseSampler", {"pixels": "3M"}, "pixels", "pixels must be one of"),
    ("InfinityBitwiseSamplerAdvanced", {"cfg_schedule": "3, x, 3"}, "cfg_schedule",
     "cfg_schedule value 2 ('x') is not a number"),
    ("InfinityBitwiseSamplerAdvanced", {"cfg_schedule": "3, 3, 3, 3, 3, 3, 3, 3"}, "cfg_schedule",
     "cfg_schedule lists 8 values but the schedule has 7 scales"),
    ("InfinityBitwiseSamplerAdvanced", {"cfg_schedule": ""}, "cfg_schedule", "cfg_schedule is empty"),
    ("InfinityBitwiseSamplerAdvanced", {"cfg_schedule": "3, -1"}, "cfg_schedule",
     "cfg_schedule value 2 must be a finite number in 0..100"),
    ("InfinityBitwiseSamplerAdvanced", {"cfg_schedule": "3, nan"}, "cfg_schedule", "cfg_schedule value 2 must be"),
    ("InfinityBitwiseSamplerAdvanced", {"pixels": "2M"}, "pixels", "pixels must be one of"),
    ("InfinityTokenizerDecodeTiled", {"tile_size": 16}, "tile_size", None),
    ("InfinityTokenizerDecodeTiled", {"tile_size": 99999}, "tile_size", None),
    ("InfinityTokenizerDecodeTiled", {"overlap": -64}, "overlap", None),
    ("InfinityTokenizerDecodeTiled", {"tile_size": "abc"}, "tile_size", None),
    ("InfinityBitwiseSampler", {"keep_scales": 14}, "keep_scales", None),
    ("InfinityEncodeImage", {"upscale_method": "cubic"}, "upscale_method", "upscale_method: 'cubic' is not an option"),
    ("InfinityEncodeImage", {"crop": "top"}, "crop", "crop: 'top' is not an option"),
    ("InfinityEncodeImage", {"aspect_ratio": "16:9"}, "aspect_ratio", "aspect_ratio: '16:9' is not an option"),
    ("InfinityPadForOutpainting", {"left": -8}, "left", None),
    ("InfinityPadForOutpainting", {"pixels": "9M"}, "pixels", "pixels: '9M' is not an option"),
])
def test_bad_settings_are_refused_when_queued_naming_the_widget(registry, node_id, change, widget, message):
    """Every bad value is refused before the node runs, by ComfyUI's own min / max check (message None)
    or by validate_inputs, and the error names the widget."""
    base = {"InfinityBitwiseSampler": SAMPLER_WIDGETS, "InfinityBitwiseSamplerAdvanced": ADVANCED_WIDGETS,
            "InfinityTokenizerDecodeTiled": {"tile_size": 512, "overlap": 128},
            "InfinityEncodeImage": {"aspect_ratio": "match input", "pixels": "0.06M", "upscale_method": "bicubic",
                                    "crop": "center"},
            "InfinityPadForOutpainting": {"left": 0, "top": 0, "right": 64, "bottom": 0, "feather": 0,
                                          "pixels": "0.06M"}}[node_id]
    links = {name: ["1", 0] for name, (kind, _) in v1_inputs(registry, node_id).items()
             if kind not in WIDGET_TYPES and name in registry[node_id].INPUT_TYPES()["required"]}
    errors = validate(registry, node_id, **{**links, **base, **change})
    assert errors, (node_id, change)
    assert all(e["extra_info"]["input_name"] == widget or e["details"].split(" - ")[-1].startswith(widget)
               for e in errors), errors
    if message is not None:
        assert any(message in e["details"] for e in errors), errors


@pytest.mark.parametrize("node_id, widgets", [
    ("InfinityBitwiseSampler", SAMPLER_WIDGETS), ("InfinityBitwiseSamplerAdvanced", ADVANCED_WIDGETS),
    ("InfinityBitwiseSamplerAdvanced", {**ADVANCED_WIDGETS, "cfg_schedule": "1 2 3 4 5 6 7 8 9 10",
                                        "pixels": "0.25M"}),
    ("InfinityBitwiseSamplerAdvanced", {**ADVANCED_WIDGETS, "cfg_schedule": ["9", 0]}),   # fed by a link
    ("InfinityTokenizerDecodeTiled", {"tile_size": 512, "overlap": 128}),
])
def test_good_or_linked_settings_pass_validation(registry, node_id, widgets):
    links = {name: ["1", 0] for name, (kind, _) in v1_inputs(registry, node_id).items()
             if kind not in WIDGET_TYPES and name in registry[node_id].INPUT_TYPES()["required"]}
    assert validate(registry, node_id, **{**links, **widgets}) == []


def test_cross_widget_rules_are_checked_when_the_node_runs(registry, models):
    """overlap < tile_size, and keep_scales against the schedule, need more than one widget: checked at
    run time, before any decoding or sampling, naming the widget."""
    codes = sample(registry, models)
    with pytest.raises(InfinityError, match=r"overlap: 512 px must be smaller than tile_size \(512 px\)"):
        run(registry, "InfinityTokenizerDecodeTiled", vae=models["vae"], codes=codes, tile_size=512, overlap=512)
    with pytest.raises(InfinityError, match="keep_scales: 3 needs an encoded_image"):
        sample(registry, models, keep_scales=3)


@pytest.mark.parametrize("aspect, warned", [("1:1", False), ("2:1 (landscape)", True)])
def test_a_run_outside_the_models_trained_sizes_is_warned_on_the_sampler(registry, models, aspect, warned):
    """The loader reads the sizes the file lists; the sampler still runs outside them and names the gap."""
    model = dataclasses.replace(models["model"], trained_sizes=TrainedSizes(pixels=("0.06M",), aspects=(1.0,)))
    (cond,) = run(registry, "InfinityTextEncode", text_encoder=models["text_encoder"], prompt=PROMPT,
                  negative_prompt="")
    output = registry["InfinityBitwiseSampler"].execute(model=model, conditioning=cond,
                                                        **{**SETTINGS, "aspect_ratio": aspect})
    assert output.args[0].codes.shape[-1] > 0
    if warned:
        (text,) = output.ui.as_dict()["text"]
        assert "not trained at the aspect ratio 2:1 (landscape)" in text and "trained at 0.06M" in text
    else:
        assert output.ui is None


def test_the_loader_reads_the_trained_sizes_from_the_file(registry, models, model_folders):
    assert models["model"].trained_sizes is None         # the stand-in file lists none: no warning ever
    sizes = TrainedSizes(pixels=("0.06M", "0.25M"), aspects=(1.0, 0.75))
    _, extra = model_folders
    original = Path(sys.modules["folder_paths"].get_full_path("infinity", TINY_NAMES.transformer))
    save_file(load_file(original), str(extra / "sized.safetensors"), metadata=sizes.to_metadata())
    (model,) = run(registry, "InfinityTransformerLoader", model_file="sized.safetensors", dtype="auto")
    assert model.trained_sizes == sizes
