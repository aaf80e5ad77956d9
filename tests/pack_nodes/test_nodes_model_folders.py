"""The loaders: ComfyUI's model folders, file lists, dtypes and reuse of loaded models.

Through the stand-in ComfyUI of tests/comfy_stub and the stand-in models (see node_env.py)."""
from __future__ import annotations

import sys

import pytest

from infinity_core import InfinityError
from .node_env import EXTRA_MODEL_FILE, MISMATCHED_VAE, REPO, run, v1_inputs, validate
from standin_models import TINY_NAMES


# --- Model folders -----------------------------------------------------------------------------------------

def test_loaders_list_comfyui_folders_and_extra_model_paths(env, registry):
    """models/infinity, an extra_model_paths entry and models/vae are listed; text encoders are folders
    with a config.json, and the pack's own text encoder folder is not added to ComfyUI's list."""
    folder_paths = sys.modules["folder_paths"]
    transformer_names = v1_inputs(registry, "InfinityTransformerLoader")["model_file"][1]["options"]
    assert {TINY_NAMES.transformer, EXTRA_MODEL_FILE} <= set(transformer_names)
    assert str(env.nodes.model_folders.PACK_MODELS_DIR / "infinity") in folder_paths.get_folder_paths("infinity")
    vae_names = v1_inputs(registry, "InfinityVAELoader")["vae_file"][1]["options"]
    assert {TINY_NAMES.vae, MISMATCHED_VAE} <= set(vae_names)
    encoder_names = v1_inputs(registry, "InfinityTextEncoderLoader")["text_encoder_folder"][1]["options"]
    assert TINY_NAMES.text_encoder in encoder_names
    assert all("infinity" not in path for path in folder_paths.get_folder_paths("text_encoders"))


def test_each_model_list_offers_only_files_of_its_kind_read_from_the_header(env, registry, tmp_path):
    """The transformer list leaves VAE files out and the other way round, by tensor names, not file names;
    a file whose header cannot be read (here: empty) is listed in both."""
    transformer_names = set(v1_inputs(registry, "InfinityTransformerLoader")["model_file"][1]["options"])
    vae_names = set(v1_inputs(registry, "InfinityVAELoader")["vae_file"][1]["options"])
    assert TINY_NAMES.vae not in transformer_names and MISMATCHED_VAE not in transformer_names
    assert TINY_NAMES.transformer not in vae_names
    assert EXTRA_MODEL_FILE in transformer_names and EXTRA_MODEL_FILE in vae_names
    kind = env.nodes.model_folders.weight_file_kind
    fixtures = REPO / "tests" / "fixtures" / "infinity_tiny"
    misnamed = tmp_path / "infinity_vae_d32reg.safetensors"     # a transformer under a VAE's name
    misnamed.write_bytes((fixtures / "infinity_tiny.safetensors").read_bytes())
    assert kind(str(misnamed)) == "transformer" and kind(str(fixtures / "vae_tiny.safetensors")) == "vae"


def test_loaders_default_to_the_shipped_demo_model_when_present(env):
    choose = env.nodes.model_folders.preferred_default
    assert choose(["a.safetensors", "infinity_demo_shapes.safetensors"], "infinity_demo_shapes.safetensors") == \
        "infinity_demo_shapes.safetensors"
    assert choose(["a.safetensors"], "infinity_demo_shapes.safetensors") == "a.safetensors"


def test_unknown_model_file_is_reported_with_the_folders_searched(registry):
    with pytest.raises(InfinityError, match="'missing.safetensors' was not found in models/infinity"):
        run(registry, "InfinityTransformerLoader", model_file="missing.safetensors", dtype="auto")
    errors = validate(registry, "InfinityTransformerLoader", model_file="missing.safetensors", dtype="auto")
    assert errors and all("'missing.safetensors' was not found" in e["details"] for e in errors)


@pytest.mark.parametrize("node_id, file_input, name", [
    ("InfinityTransformerLoader", "model_file", TINY_NAMES.transformer),
    ("InfinityVAELoader", "vae_file", TINY_NAMES.vae),
    ("InfinityTextEncoderLoader", "text_encoder_folder", TINY_NAMES.text_encoder),
])
def test_a_dtype_not_in_the_list_is_refused_naming_the_widget(registry, node_id, file_input, name):
    errors = validate(registry, node_id, **{file_input: name, "dtype": "float8"})
    assert errors and all("dtype: 'float8' is not an option; valid: auto, bf16, fp16, fp32" in e["details"]
                          for e in errors)
    with pytest.raises(InfinityError, match="dtype: 'float8' is not an option"):
        run(registry, node_id, **{file_input: name, "dtype": "float8"})


def test_loader_reuses_the_model_in_memory_and_fingerprints_the_file(env, registry, mm, monkeypatch):
    """Loading the same file twice reads it once; another dtype is another model; the fingerprint follows
    the file on disk."""
    loader = env.nodes.loader
    reads = []
    real_load = loader.load_transformer
    monkeypatch.setattr(loader, "load_transformer",
                        lambda *args, **kwargs: reads.append(args) or real_load(*args, **kwargs))
    load = lambda dtype: run(registry, "InfinityTransformerLoader", model_file=TINY_NAMES.transformer,  # noqa: E731
                             dtype=dtype)[0]
    first, second = load("auto"), load("auto")
    assert first is second and len(reads) == 1
    assert load("bf16") is not first and len(reads) == 2
    fingerprint = registry["InfinityTransformerLoader"].fingerprint_inputs
    assert fingerprint(model_file=TINY_NAMES.transformer, dtype="auto") == \
        fingerprint(model_file=TINY_NAMES.transformer, dtype="fp32")


def test_vae_loader_loads_the_encoder_too_and_counts_it(registry, models):
    vae = models["vae"]
    assert vae.has_encoder
    encoder_bytes = sum(t.numel() * t.element_size() for t in vae.vae.encoder.state_dict().values())
    decoder_bytes = sum(t.numel() * t.element_size() for t in vae.vae.decoder.state_dict().values())
    assert vae.patcher.model_size() >= encoder_bytes + decoder_bytes
    (decoder_only,) = run(registry, "InfinityVAELoader", vae_file=MISMATCHED_VAE, dtype="auto")
    assert not decoder_only.has_encoder
