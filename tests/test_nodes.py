"""The ComfyUI nodes through their public entry points, against the stand-in comfy modules in
tests/comfy_stub (no ComfyUI needed) and a stand-in model assembled from the tiny fixtures.

The pack is imported the way ComfyUI imports a custom node folder: its `__init__.py` as a package."""
from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from standin_models import TINY_NAMES, build_standin_models, write_mismatched_vae

REPO = Path(__file__).resolve().parent.parent
STUB_DIR = Path(__file__).resolve().parent / "comfy_stub"
PACK = "infinity_pack"
STUBBED_MODULES = ("comfy", "folder_paths", "server")
EXTRA_MODEL_FILE = "from_extra_paths.safetensors"
MISMATCHED_VAE = "vae_16bit.safetensors"
PROMPT = "a red circle at the top left on a blue background"
SETTINGS = dict(seed=7, cfg=3.0, tau=0.5, top_k=900, top_p=0.97, aspect_ratio="1:1", pixels="0.06M", batch_size=1)
NODE_IDS = {"InfinityTransformerLoader", "InfinityVAELoader", "InfinityTextEncoderLoader", "InfinityTextEncode",
            "InfinityBitwiseSampler", "InfinityBitwiseSamplerAdvanced", "InfinityTokenizerDecode",
            "InfinityTokenizerDecodeTiled"}


def _owned(name: str) -> bool:
    return any(name == root or name.startswith(root + ".") for root in (*STUBBED_MODULES, PACK))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The stub modules on sys.modules, a models/ directory with the stand-in, and the pack imported."""
    models = tmp_path_factory.mktemp("comfy_base") / "models"
    build_standin_models(models)
    write_mismatched_vae(models / "infinity" / MISMATCHED_VAE)
    extra = tmp_path_factory.mktemp("extra_models")
    (extra / EXTRA_MODEL_FILE).write_bytes(b"")
    assert not any(_owned(name) for name in sys.modules), "another test left ComfyUI modules imported"
    sys.path.insert(0, str(STUB_DIR))
    try:
        folder_paths = importlib.import_module("folder_paths")
        folder_paths.reset(str(models))
        folder_paths.add_model_folder_path("infinity", str(extra))   # what extra_model_paths.yaml does at startup
        spec = importlib.util.spec_from_file_location(PACK, REPO / "__init__.py",
                                                      submodule_search_locations=[str(REPO)])
        pack = importlib.util.module_from_spec(spec)
        sys.modules[PACK] = pack
        spec.loader.exec_module(pack)
        yield pack
    finally:
        sys.path.remove(str(STUB_DIR))
        for name in [n for n in sys.modules if _owned(n)]:
            del sys.modules[name]


@pytest.fixture
def mm(env):
    """The stub model management, reset: nothing loaded, no interrupt pending, no progress hook."""
    management, utils = sys.modules["comfy.model_management"], sys.modules["comfy.utils"]
    management.unload_all_models()
    management.load_requests.clear()
    management.interrupt_current_processing(False)
    yield management
    utils.PROGRESS_BAR_HOOK = None
    management.LOAD_DEVICE = management.OFFLOAD_DEVICE


def node(env, node_id):
    cls = env.NODE_CLASS_MAPPINGS[node_id]
    return getattr(cls(), cls.FUNCTION)


@pytest.fixture
def models(env, mm):
    return {
        "model": node(env, "InfinityTransformerLoader")(TINY_NAMES.transformer, "auto")[0],
        "vae": node(env, "InfinityVAELoader")(TINY_NAMES.vae, "auto")[0],
        "text_encoder": node(env, "InfinityTextEncoderLoader")(TINY_NAMES.text_encoder, "auto")[0],
    }


def run_graph(env, models, prompt=PROMPT, negative="", **overrides) -> torch.Tensor:
    (cond,) = node(env, "InfinityTextEncode")(models["text_encoder"], prompt, negative)
    (codes,) = node(env, "InfinityBitwiseSampler")(models["model"], cond, **{**SETTINGS, **overrides})
    (image,) = node(env, "InfinityTokenizerDecode")(models["vae"], codes)
    return image


def test_every_node_is_registered_with_display_name_category_and_tooltips(env):
    """Eight V1 nodes in category Infinity; every input has a tooltip; no node has more than ten widgets."""
    assert set(env.NODE_CLASS_MAPPINGS) == NODE_IDS
    assert set(env.NODE_DISPLAY_NAME_MAPPINGS) == NODE_IDS
    for node_id, cls in env.NODE_CLASS_MAPPINGS.items():
        assert cls.CATEGORY == "Infinity"
        inputs = cls.INPUT_TYPES()["required"]
        assert all(options.get("tooltip") for _, options in inputs.values()), node_id
        widgets = [name for name, (kind, _) in inputs.items() if not str(kind).startswith("INFINITY_")]
        widgets += [name for name, (_, options) in inputs.items() if options.get("control_after_generate")]
        assert len(widgets) <= 10, node_id
        assert len(cls.OUTPUT_TOOLTIPS) == len(cls.RETURN_TYPES)


def test_custom_socket_types_keep_stable_diffusion_types_out(env):
    sampler = env.NODE_CLASS_MAPPINGS["InfinityBitwiseSampler"]
    required = sampler.INPUT_TYPES()["required"]
    assert (required["model"][0], required["conditioning"][0]) == ("INFINITY_MODEL", "INFINITY_COND")
    assert sampler.RETURN_TYPES == ("INFINITY_CODES",)
    assert env.NODE_CLASS_MAPPINGS["InfinityTokenizerDecode"].RETURN_TYPES == ("IMAGE",)


def test_loaders_list_comfyui_folders_and_extra_model_paths(env):
    """models/infinity, an extra_model_paths entry and models/vae are listed; text encoders are folders
    with a config.json, and the pack's own text encoder folder is not added to ComfyUI's list."""
    folder_paths = sys.modules["folder_paths"]
    transformer_names = env.NODE_CLASS_MAPPINGS["InfinityTransformerLoader"].INPUT_TYPES()["required"]["model_file"][0]
    assert {TINY_NAMES.transformer, EXTRA_MODEL_FILE} <= set(transformer_names)
    assert str(env.nodes.model_folders.PACK_MODELS_DIR / "infinity") in folder_paths.get_folder_paths("infinity")
    vae_names = env.NODE_CLASS_MAPPINGS["InfinityVAELoader"].INPUT_TYPES()["required"]["vae_file"][0]
    assert {TINY_NAMES.vae, MISMATCHED_VAE} <= set(vae_names)
    encoder_inputs = env.NODE_CLASS_MAPPINGS["InfinityTextEncoderLoader"].INPUT_TYPES()["required"]
    assert TINY_NAMES.text_encoder in encoder_inputs["text_encoder_folder"][0]
    assert all("infinity" not in path for path in folder_paths.get_folder_paths("text_encoders"))


def test_loaders_default_to_the_shipped_demo_model_when_present(env):
    choose = env.nodes.model_folders.preferred_default
    assert choose(["a.safetensors", "infinity_demo_shapes.safetensors"], "infinity_demo_shapes.safetensors") == \
        "infinity_demo_shapes.safetensors"
    assert choose(["a.safetensors"], "infinity_demo_shapes.safetensors") == "a.safetensors"


def test_image_is_comfyui_layout_rgb_in_0_1_on_the_intermediate_device(env, models):
    image = run_graph(env, models, batch_size=2)
    assert image.shape == (2, 256, 256, 3)
    assert image.dtype == torch.float32 and image.device == torch.device("cpu")
    assert 0.0 <= image.min() and image.max() <= 1.0 and image.std() > 0


def test_non_square_preset_gives_the_announced_size(env, models):
    image = run_graph(env, models, aspect_ratio="2:1 (landscape)", cfg=1.0)
    sizes = env.nodes.routes.output_size_table()["2:1 (landscape)"]["0.06M"]
    assert image.shape == (1, sizes["height"], sizes["width"], 3) and sizes["width"] > sizes["height"]


def test_same_seed_same_image_and_another_seed_another(env, models):
    first, again, other = run_graph(env, models), run_graph(env, models), run_graph(env, models, seed=8)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_constant_cfg_schedule_equals_the_simple_sampler(env, models):
    (cond,) = node(env, "InfinityTextEncode")(models["text_encoder"], PROMPT, "")
    widgets = {k: v for k, v in SETTINGS.items() if k != "cfg"}
    (simple,) = node(env, "InfinityBitwiseSampler")(models["model"], cond, cfg=3.0, **widgets)
    (advanced,) = node(env, "InfinityBitwiseSamplerAdvanced")(models["model"], cond, cfg_schedule="3", **widgets)
    assert torch.equal(simple.codes, advanced.codes)


def test_progress_advances_per_scale_and_interrupt_stops_between_scales(env, models, mm):
    """Cancel during scale 3 of 7: the run stops right after it; the next run is whole and unchanged."""
    reference = run_graph(env, models)
    updates = []

    def hook(value, total):
        updates.append((value, total))
        if value == 3:
            mm.interrupt_current_processing()
    sys.modules["comfy.utils"].PROGRESS_BAR_HOOK = hook
    with pytest.raises(mm.InterruptProcessingException):
        run_graph(env, models)
    assert updates == [(0, 7), (1, 7), (2, 7), (3, 7)]   # 0: set up, before the first scale
    sys.modules["comfy.utils"].PROGRESS_BAR_HOOK = None
    assert torch.equal(run_graph(env, models), reference)


def test_a_failed_run_leaves_the_cached_models_usable(env, models, mm):
    reference = run_graph(env, models)

    def fail(value, total):
        if value == 2:
            raise RuntimeError("out of memory")
    sys.modules["comfy.utils"].PROGRESS_BAR_HOOK = fail
    with pytest.raises(RuntimeError):
        run_graph(env, models)
    sys.modules["comfy.utils"].PROGRESS_BAR_HOOK = None
    assert torch.equal(run_graph(env, models), reference)


def test_loader_reuses_the_model_in_memory(env, mm, monkeypatch):
    """Loading the same file twice reads it once; another dtype is another model."""
    loader = env.nodes.loader
    reads = []
    real_load = loader.load_transformer
    monkeypatch.setattr(loader, "load_transformer", lambda *args: reads.append(args) or real_load(*args))
    load = node(env, "InfinityTransformerLoader")
    first, second = load(TINY_NAMES.transformer, "auto")[0], load(TINY_NAMES.transformer, "auto")[0]
    assert first is second and len(reads) == 1
    assert load(TINY_NAMES.transformer, "bf16")[0] is not first and len(reads) == 2


def test_models_run_through_comfyui_model_management(env, models, mm):
    """Sampling and decoding fully load their ModelPatcher (with room for the run); unloading all models
    (the "free memory" button) leaves them usable."""
    reference = run_graph(env, models)
    requests = {patcher.model.__class__.__name__: (memory, full) for patcher, memory, full in mm.load_requests}
    assert set(requests) == {"InfinityTransformer", "BitwiseVAE"}
    assert all(memory > 0 and full for memory, full in requests.values())
    mm.unload_all_models()
    assert torch.equal(run_graph(env, models), reference)


def test_text_encoder_leaves_its_load_device_after_encoding(env, models, mm, monkeypatch):
    mm.LOAD_DEVICE = torch.device("cpu", 0)   # a device distinct from the offload device
    encoder = node(env, "InfinityTextEncoderLoader")(TINY_NAMES.text_encoder, "fp32")[0]
    moves = []
    real_to = encoder.encoder.to
    monkeypatch.setattr(encoder.encoder, "to", lambda device: moves.append(device) or real_to(device))
    (cond,) = node(env, "InfinityTextEncode")(encoder, PROMPT, "blurry")
    assert moves == [torch.device("cpu", 0), torch.device("cpu")]
    assert cond.negative is not None and cond.positive.batch_size == 1


def test_tiled_decode_matches_whole_decode_where_one_tile_covers_the_image(env, models):
    """A tile as large as the image is the plain decode; smaller tiles give the same size, in range."""
    (cond,) = node(env, "InfinityTextEncode")(models["text_encoder"], PROMPT, "")
    (codes,) = node(env, "InfinityBitwiseSampler")(models["model"], cond, **SETTINGS)
    (whole,) = node(env, "InfinityTokenizerDecode")(models["vae"], codes)
    (one_tile,) = node(env, "InfinityTokenizerDecodeTiled")(models["vae"], codes, 256, 64)
    (tiled,) = node(env, "InfinityTokenizerDecodeTiled")(models["vae"], codes, 128, 64)
    assert torch.equal(whole, one_tile)
    assert tiled.shape == whole.shape and 0 <= tiled.min() and tiled.max() <= 1
    validate = env.NODE_CLASS_MAPPINGS["InfinityTokenizerDecodeTiled"].VALIDATE_INPUTS
    assert "overlap (512 px) must be smaller than tile_size (512 px)" in validate(tile_size=512, overlap=512)


def test_empty_negative_prompt_uses_the_learned_unconditional_text(env, models):
    (cond,) = node(env, "InfinityTextEncode")(models["text_encoder"], PROMPT, "  ")
    assert cond.negative is None


def test_wrong_vae_is_refused_naming_both_files(env, models):
    (cond,) = node(env, "InfinityTextEncode")(models["text_encoder"], PROMPT, "")
    (codes,) = node(env, "InfinityBitwiseSampler")(models["model"], cond, **SETTINGS)
    (wrong_vae,) = node(env, "InfinityVAELoader")(MISMATCHED_VAE, "auto")
    with pytest.raises(env.infinity_core.InfinityError) as error:
        node(env, "InfinityTokenizerDecode")(wrong_vae, codes)
    assert MISMATCHED_VAE in str(error.value) and TINY_NAMES.transformer in str(error.value)


def test_text_encoder_of_the_wrong_width_is_refused_naming_both(env, models):
    core = env.infinity_core
    narrow = core.TextCondition.from_features([torch.zeros(3, 128)])
    cond = env.nodes.types.InfinityConditioning(narrow, None, "t5_small")
    with pytest.raises(core.InfinityError, match="t5_small.*infinity_tiny.safetensors"):
        node(env, "InfinityBitwiseSampler")(models["model"], cond, **SETTINGS)


@pytest.mark.parametrize("schedule, pixels, message", [
    ("3, x, 3", "0.06M", "value 2 ('x') is not a number"),
    ("3, 3, 3, 3, 3, 3, 3, 3", "0.06M", "lists 8 values but this pixel budget has only 7 scales"),
    ("", "0.06M", "cfg_schedule is empty"),
    ("3, -1", "0.06M", "value 2 (-1) is outside 0..100"),
    ("3, nan", "0.06M", "value 2 (nan) is outside"),
    ("3", "2M", "pixel budget '2M' does not exist"),
])
def test_bad_cfg_schedule_fails_validation_with_a_readable_message(env, schedule, pixels, message):
    result = env.NODE_CLASS_MAPPINGS["InfinityBitwiseSamplerAdvanced"].VALIDATE_INPUTS(cfg_schedule=schedule,
                                                                                         pixels=pixels)
    assert isinstance(result, str) and message in result


def test_good_or_linked_cfg_schedule_passes_validation(env):
    validate = env.NODE_CLASS_MAPPINGS["InfinityBitwiseSamplerAdvanced"].VALIDATE_INPUTS
    assert validate(cfg_schedule="3, 3, 4", pixels="0.06M") is True
    assert validate(cfg_schedule="1 2 3 4 5 6 7 8 9 10", pixels="0.25M") is True
    assert validate(cfg_schedule=None, pixels="0.06M") is True
    assert env.nodes.sampler.parse_cfg_schedule("3, 4", 4) == (3.0, 4.0, 4.0, 4.0)


def test_bad_values_reaching_the_sampler_raise_a_readable_error(env, models):
    (cond,) = node(env, "InfinityTextEncode")(models["text_encoder"], PROMPT, "")
    sample = node(env, "InfinityBitwiseSampler")
    with pytest.raises(env.infinity_core.InfinityError, match="aspect_ratio '7:9' is not a preset"):
        sample(models["model"], cond, **{**SETTINGS, "aspect_ratio": "7:9"})
    with pytest.raises(env.infinity_core.InfinityError, match="pixel budget '3M' does not exist"):
        sample(models["model"], cond, **{**SETTINGS, "pixels": "3M"})


def test_unknown_model_file_is_reported_with_the_folders_searched(env):
    with pytest.raises(env.infinity_core.InfinityError, match="'missing.safetensors' was not found in models/infinity"):
        node(env, "InfinityTransformerLoader")("missing.safetensors", "auto")


def test_output_size_route_serves_the_core_schedule_table(env):
    routes = sys.modules["server"].PromptServer.instance.routes.handlers
    assert ("GET", "/infinity/output_sizes") in routes
    table = env.nodes.routes.output_size_table()
    assert set(table) == set(env.infinity_core.ASPECT_PRESETS)
    assert table["1:1"]["0.06M"] == {"width": 256, "height": 256, "scales": 7}
    assert table["1:1"]["1M"] == {"width": 1024, "height": 1024, "scales": 13}


def test_pack_imports_without_comfyui_and_defines_no_nodes():
    script = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('pack', r'{REPO / '__init__.py'}', "
        f"submodule_search_locations=[r'{REPO}'])\n"
        "pack = importlib.util.module_from_spec(spec); sys.modules['pack'] = pack; spec.loader.exec_module(pack)\n"
        "assert pack.NODE_CLASS_MAPPINGS == {} and pack.WEB_DIRECTORY == './web'\n"
        "assert not any(m == 'comfy' or m.startswith('comfy.') for m in sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO.parent)


def test_model_inputs_avoid_names_the_frontend_treats_as_core_loader_inputs(env):
    """ComfyUI's frontend 1.27 routes combo inputs named ckpt_name / lora_name / vae_name to its asset
    browser, which fails to build the node when a core loader is missing (seen with UpscaleModelLoader)."""
    reserved = {"ckpt_name", "lora_name", "vae_name"}
    for cls in env.NODE_CLASS_MAPPINGS.values():
        assert not reserved & set(cls.INPUT_TYPES()["required"])
