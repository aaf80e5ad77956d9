"""The transformer loader's offload option through the nodes (stand-in ComfyUI of tests/comfy_stub): a model
whose blocks stream stays in RAM as far as ComfyUI knows, draws the same image, and a bad value is refused
naming the widget."""
from __future__ import annotations

import sys

import torch

from standin_models import TINY_NAMES

from .node_env import run, sample, validate


def test_streamed_model_rests_in_ram_and_draws_the_same_image(registry, models, mm):
    (streamed,) = run(registry, "InfinityTransformerLoader", model_file=TINY_NAMES.transformer, dtype="auto",
                      offload="blocks")
    assert streamed.stream_blocks and not models["model"].stream_blocks
    assert streamed.patcher.load_device == sys.modules["comfy.model_management"].unet_offload_device()
    assert streamed.transformer is not models["model"].transformer        # its own object, not the cached one
    reference = sample(registry, models).codes
    assert torch.equal(sample(registry, {**models, "model": streamed}).codes, reference)
    # after the run nothing is left hooked: the model runs the same again
    assert all(not block._forward_pre_hooks for block in streamed.transformer.blocks)
    assert torch.equal(sample(registry, {**models, "model": streamed}).codes, reference)


def test_a_bad_offload_value_is_refused_naming_the_widget(registry):
    errors = validate(registry, "InfinityTransformerLoader", model_file=TINY_NAMES.transformer, dtype="auto",
                      offload="gpu")
    assert errors and all("offload" in error["details"] for error in errors), errors
