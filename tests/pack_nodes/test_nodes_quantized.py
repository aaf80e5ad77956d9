"""Quantized transformers through the nodes: the loader lists GGUF and ComfyUI-quantized files of a model
folder, loads them packed, and the sampler draws with them (through the stand-in ComfyUI of tests/comfy_stub).
The files are written the ecosystem's way (tests/quant_files.py), not with the pack's converter."""
from __future__ import annotations

import sys

import pytest
import torch

from infinity_core.weight_formats import QuantizedLinear
from .node_env import REPO, run, sample, v1_inputs
import quant_files

TINY = REPO / "tests" / "fixtures" / "infinity_tiny" / "infinity_tiny.safetensors"
FILES = {"tiny_Q8_0.gguf": lambda dst: quant_files.write_gguf(TINY, dst, "Q8_0"),
         "tiny_fp8.safetensors": lambda dst: quant_files.write_comfy_fp8(TINY, dst)}


@pytest.fixture(scope="module")
def quantized_folder(env, tmp_path_factory):
    folder = tmp_path_factory.mktemp("quantized_models")
    for name, write in FILES.items():
        write(folder / name)
    sys.modules["folder_paths"].add_model_folder_path("infinity", str(folder))
    return folder


def test_loader_lists_gguf_and_quantized_safetensors(registry, quantized_folder):
    names = v1_inputs(registry, "InfinityTransformerLoader")["model_file"][1]["options"]
    assert set(FILES) <= set(names)
    assert not set(FILES) & set(v1_inputs(registry, "InfinityVAELoader")["vae_file"][1]["options"])


@pytest.mark.parametrize("name", sorted(FILES))
def test_quantized_model_samples_close_to_fp32_through_the_nodes(registry, models, quantized_folder, name):
    (model,) = run(registry, "InfinityTransformerLoader", model_file=name, dtype="auto")
    module = model.transformer
    assert sum(isinstance(m, QuantizedLinear) for m in module.modules()) == 7 * module.config.depth
    quantized = sample(registry, {**models, "model": model}, top_k=1).codes
    reference = sample(registry, models, top_k=1).codes
    assert quantized.shape == reference.shape
    assert (torch.sign(quantized) == torch.sign(reference)).float().mean() >= 0.9
