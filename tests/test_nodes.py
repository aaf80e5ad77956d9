"""The ComfyUI nodes through their public entry points, against the stand-in comfy modules in
tests/comfy_stub (no ComfyUI needed) and a stand-in model assembled from the tiny fixtures.

The pack is imported the way ComfyUI imports a custom node folder: its `__init__.py` as a package, its
nodes registered through `comfy_entrypoint`. Expectations about saved workflows come from the workflow
files themselves (example_workflows/, tests/workflows/), not from the node code."""
from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import torch
from PIL import Image

import infinity_core.preview as core_preview
from infinity_core import InfinityError, SamplingConfig, TextCondition
from standin_models import TINY_NAMES, build_standin_models, write_mismatched_vae

REPO = Path(__file__).resolve().parent.parent
STUB_DIR = Path(__file__).resolve().parent / "comfy_stub"
WORKFLOWS = Path(__file__).resolve().parent / "workflows"
EXAMPLES = REPO / "example_workflows"
PACK = "infinity_pack"
STUBBED_MODULES = ("comfy", "comfy_api", "folder_paths", "server", "execution")
EXTRA_MODEL_FILE = "from_extra_paths.safetensors"
MISMATCHED_VAE = "vae_16bit.safetensors"
PROMPT = "a red circle at the top left on a blue background"
SETTINGS = dict(seed=7, cfg=3.0, tau=0.5, top_k=900, top_p=0.97, aspect_ratio="1:1", pixels="0.06M", batch_size=1)
# Every node the pack had before the V3 schema; saved workflows name them
V1_NODE_IDS = {"InfinityTransformerLoader", "InfinityVAELoader", "InfinityTextEncoderLoader", "InfinityTextEncode",
               "InfinityBitwiseSampler", "InfinityBitwiseSamplerAdvanced", "InfinityTokenizerDecode",
               "InfinityTokenizerDecodeTiled"}
CORE_NODE_TYPES = {"SaveImage", "PreviewImage", "Note", "MarkdownNote", "SolidMask", "MaskComposite", "ImageCrop"}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


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
        importlib.import_module("execution")
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


@pytest.fixture(scope="module")
def registry(env) -> dict:
    """node id -> class, as ComfyUI registers a V3 pack: comfy_entrypoint() -> extension -> get_node_list()."""
    extension = asyncio.run(env.comfy_entrypoint())
    assert isinstance(extension, sys.modules["comfy_api.latest"].ComfyExtension)
    return {cls.GET_SCHEMA().node_id: cls for cls in asyncio.run(extension.get_node_list())}


@pytest.fixture
def mm(env):
    """The stub model management, reset: nothing loaded, no interrupt pending, no progress hook, previews off."""
    management, utils, cli = (sys.modules[n] for n in ("comfy.model_management", "comfy.utils", "comfy.cli_args"))
    management.unload_all_models()
    management.load_requests.clear()
    management.interrupt_current_processing(False)
    yield management
    utils.PROGRESS_BAR_HOOK = None
    cli.args.preview_method = cli.LatentPreviewMethod.NoPreviews
    management.LOAD_DEVICE = management.OFFLOAD_DEVICE


@pytest.fixture
def fake_clock(env, monkeypatch):
    """A clock that advances one second per reading, for ComfyUI's progress throttle and the previews' pacing."""
    now = [0.0]

    def tick() -> float:
        now[0] += 1.0
        return now[0]
    monkeypatch.setattr(sys.modules["comfy.utils"], "clock", tick)
    monkeypatch.setattr(env.nodes.previews, "clock", tick)
    return now


def run(registry, node_id, **inputs):
    """Execute a node as ComfyUI's executor does (classmethod execute with keyword inputs); its results."""
    output = registry[node_id].execute(**inputs)
    assert isinstance(output, sys.modules["comfy_api.latest"].io.NodeOutput)
    return output.args


def validate(registry, node_id, **inputs) -> list[dict]:
    """What queueing the node with these inputs gives: ComfyUI's own widget checks, then validate_inputs."""
    return sys.modules["execution"].validate_node_inputs(registry[node_id], inputs)


@pytest.fixture
def models(registry, mm):
    return {
        "model": run(registry, "InfinityTransformerLoader", model_file=TINY_NAMES.transformer, dtype="auto")[0],
        "vae": run(registry, "InfinityVAELoader", vae_file=TINY_NAMES.vae, dtype="auto")[0],
        "text_encoder": run(registry, "InfinityTextEncoderLoader", text_encoder_folder=TINY_NAMES.text_encoder,
                            dtype="auto")[0],
    }


def sample(registry, models, prompt=PROMPT, negative="", node_id="InfinityBitwiseSampler", **overrides):
    (cond,) = run(registry, "InfinityTextEncode", text_encoder=models["text_encoder"], prompt=prompt,
                  negative_prompt=negative)
    (codes,) = run(registry, node_id, model=models["model"], conditioning=cond, **{**SETTINGS, **overrides})
    return codes


def run_graph(registry, models, **overrides) -> torch.Tensor:
    (image,) = run(registry, "InfinityTokenizerDecode", vae=models["vae"], codes=sample(registry, models, **overrides))
    return image


def v1_inputs(registry, node_id) -> dict:
    """{name: (type, options)} in the order ComfyUI's frontend builds the node: required, then optional."""
    declared = registry[node_id].INPUT_TYPES()
    return {**declared.get("required", {}), **declared.get("optional", {})}


def widget_names(registry, node_id) -> list[str]:
    return [name for name, (kind, _) in v1_inputs(registry, node_id).items() if kind in WIDGET_TYPES]


# --- Registration and schema -------------------------------------------------------------------------------

def test_v3_registration_through_comfy_entrypoint_without_v1_mappings(env, registry):
    """ComfyUI ignores comfy_entrypoint in a module that also exports NODE_CLASS_MAPPINGS."""
    assert V1_NODE_IDS | {"InfinityEncodeImage", "InfinityPadForOutpainting"} == set(registry)
    assert not hasattr(env, "NODE_CLASS_MAPPINGS") and not hasattr(env.nodes, "NODE_CLASS_MAPPINGS")
    io = sys.modules["comfy_api.latest"].io
    assert all(issubclass(cls, io.ComfyNode) for cls in registry.values())
    assert env.WEB_DIRECTORY == "./web"


def test_every_node_has_display_name_description_category_aliases_and_tooltips(registry):
    for node_id, cls in registry.items():
        schema = cls.GET_SCHEMA()
        assert schema.category == "Infinity" and schema.display_name and schema.description, node_id
        assert {"VAR", "bitwise"} <= set(schema.search_aliases), node_id
        assert all(i.tooltip for i in schema.inputs), node_id
        assert all(o.tooltip and o.display_name for o in schema.outputs), node_id
        assert len(widget_names(registry, node_id)) <= 11, node_id
    aliases = {a for cls in registry.values() for a in cls.GET_SCHEMA().search_aliases}
    assert {"img2img", "inpaint", "outpaint"} <= aliases


def test_search_aliases_are_left_out_where_the_schema_has_no_such_field(env, monkeypatch):
    """ComfyUI 0.3.64's io.Schema predates search_aliases; the pack must still build its schemas there."""
    from dataclasses import dataclass

    @dataclass
    class OldSchema:
        node_id: str
        display_name: str = None
        category: str = "sd"
        inputs: list = None
        outputs: list = None
        description: str = ""
    schema_module = env.nodes.schema
    monkeypatch.setattr(schema_module.io, "Schema", OldSchema)
    monkeypatch.setattr(schema_module, "SCHEMA_HAS_SEARCH_ALIASES", False)
    old = schema_module.node_schema(node_id="X", display_name="X", search_aliases=("img2img",), inputs=[], outputs=[])
    assert isinstance(old, OldSchema) and old.category == "Infinity"


def _saved_ui_nodes() -> list[dict]:
    """Nodes of the example workflows as they were saved before the V3 schema (and every example since)."""
    nodes = []
    for path in sorted(EXAMPLES.glob("*.json")) + sorted((WORKFLOWS / "ui").glob("*.json")):
        nodes += [node for node in json.loads(path.read_text())["nodes"] if node["type"] not in CORE_NODE_TYPES]
    return nodes


def test_saved_ui_workflows_map_onto_the_widgets_in_their_order(registry):
    """A saved UI workflow stores widget values by position: each saved node's widgets must be the node's
    first widgets, in order; widgets added later are optional and come after them. Sockets keep their types."""
    saved = _saved_ui_nodes()
    assert {node["type"] for node in saved} >= {"InfinityTransformerLoader", "InfinityVAELoader", "InfinityTextEncode",
                                                "InfinityTextEncoderLoader", "InfinityBitwiseSampler",
                                                "InfinityTokenizerDecode"}
    for node in saved:
        node_type = node["type"]
        saved_widgets = [i["name"] for i in node["inputs"] if "widget" in i]
        current = widget_names(registry, node_type)
        assert current[:len(saved_widgets)] == saved_widgets, node_type
        optional = registry[node_type].INPUT_TYPES().get("optional", {})
        assert all(name in optional for name in current[len(saved_widgets):]), node_type
        sockets = {i["name"]: i["type"] for i in node["inputs"] if "widget" not in i}
        declared = v1_inputs(registry, node_type)
        assert all(declared[name][0] == kind for name, kind in sockets.items()), node_type
        outputs = [o.io_type for o in registry[node_type].GET_SCHEMA().outputs]
        assert [o["type"] for o in node["outputs"]] == outputs[:len(node["outputs"])], node_type
        controls = sum(1 for name in saved_widgets if declared[name][1].get("control_after_generate"))
        assert len(node.get("widgets_values", [])) == len(saved_widgets) + controls, node_type


def test_saved_api_workflows_name_only_existing_inputs_and_all_required_ones(registry):
    for path in WORKFLOWS.glob("*_api.json"):
        for node in json.loads(path.read_text()).values():
            if node["class_type"] in CORE_NODE_TYPES:
                continue
            declared = registry[node["class_type"]].INPUT_TYPES()
            assert set(node["inputs"]) <= set(declared["required"]) | set(declared.get("optional", {})), path.name
            assert set(declared["required"]) <= set(node["inputs"]), path.name


def _execute_api_workflow(registry, prompt: dict) -> dict:
    """Validate every node as /prompt does, then run the pack's nodes in dependency order."""
    results = {}

    def value(v):
        return results[v[0]][v[1]] if isinstance(v, list) else v

    def execute(node_id):
        if node_id in results:
            return
        node = prompt[node_id]
        for v in node["inputs"].values():
            if isinstance(v, list):
                execute(v[0])
        if node["class_type"] in CORE_NODE_TYPES:
            results[node_id] = ()
            return
        assert validate(registry, node["class_type"], **node["inputs"]) == [], node["class_type"]
        results[node_id] = run(registry, node["class_type"], **{k: value(v) for k, v in node["inputs"].items()})
    for node_id in prompt:
        execute(node_id)
    return results


@pytest.mark.parametrize("name", ["infinity_t2i_basic_api.json", "infinity_t2i_advanced_api.json",
                                  "infinity_t2i_example_api.json", "infinity_img2img_example_api.json"])
def test_saved_api_workflows_run_on_the_demo_model(registry, mm, name):
    """The workflows saved before the V3 schema, and the examples made only of the pack's nodes and the
    image outputs, queue and run as they are (with the pack's demo model)."""
    prompt = json.loads((WORKFLOWS / name).read_text())
    results = _execute_api_workflow(registry, prompt)
    decoder = next(k for k, n in prompt.items() if n["class_type"] == "InfinityTokenizerDecode")
    sampler = next(n for n in prompt.values() if n["class_type"].startswith("InfinityBitwiseSampler"))
    (image,) = results[decoder]
    assert image.shape[0] == sampler["inputs"]["batch_size"] and image.shape[-1] == 3
    assert 0 <= image.min() and image.max() <= 1 and image.std() > 0.05


def test_example_workflows_leave_optional_keys_out_and_have_a_thumbnail():
    """The frontend's workflow schema rejects null where a key is optional (floatingLinks, extra.reroutes,
    definitions, outputs[].slot_index); an unlinked input's link is null, as the frontend saves it. The
    template browser shows <name>.jpg as the card."""
    def nulls(value, path=""):
        if value is None and not path.endswith(".link"):
            yield path
        elif isinstance(value, dict):
            for key, item in value.items():
                yield from nulls(item, f"{path}.{key}")
        elif isinstance(value, list) and not path.endswith(".links"):
            for index, item in enumerate(value):
                yield from nulls(item, f"{path}[{index}]")
    examples = sorted(EXAMPLES.glob("*.json"))
    assert len(examples) >= 4
    for path in examples:
        workflow = json.loads(path.read_text())
        assert list(nulls(workflow)) == [], path.name
        assert path.with_suffix(".jpg").is_file(), path.name
        with Image.open(path.with_suffix(".jpg")) as thumbnail:
            assert thumbnail.format == "JPEG" and min(thumbnail.size) >= 128
        assert all(c.isalnum() or c in " -" for c in path.stem), path.name    # safe in a URL once encoded


def test_custom_socket_types_keep_stable_diffusion_types_out(registry):
    declared = v1_inputs(registry, "InfinityBitwiseSampler")
    assert (declared["model"][0], declared["conditioning"][0]) == ("INFINITY_MODEL", "INFINITY_COND")
    assert declared["vae"][0] == "INFINITY_VAE" and declared["encoded_image"][0] == "INFINITY_ENCODED_IMAGE"
    outputs = lambda node_id: [o.io_type for o in registry[node_id].GET_SCHEMA().outputs]  # noqa: E731
    assert outputs("InfinityBitwiseSampler") == ["INFINITY_CODES"]
    assert outputs("InfinityTokenizerDecode") == ["IMAGE"]
    assert outputs("InfinityEncodeImage") == ["INFINITY_ENCODED_IMAGE", "IMAGE"]
    assert outputs("InfinityPadForOutpainting") == ["IMAGE", "MASK"]


def test_model_inputs_avoid_names_the_frontend_treats_as_core_loader_inputs(registry):
    """ComfyUI's frontend 1.27 routes combo inputs named ckpt_name / lora_name / vae_name to its asset
    browser, which fails to build the node when a core loader is missing (seen with UpscaleModelLoader)."""
    reserved = {"ckpt_name", "lora_name", "vae_name"}
    for node_id in registry:
        assert not reserved & set(v1_inputs(registry, node_id)), node_id


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


def _ten_ms_per_reading(env, monkeypatch) -> None:
    """Every clock reading 10 ms after the last: a fast machine, where scales come under 100 ms apart."""
    now = [0.0]

    def tick() -> float:
        now[0] += 0.01
        return now[0]
    monkeypatch.setattr(sys.modules["comfy.utils"], "clock", tick)
    monkeypatch.setattr(env.nodes.previews, "clock", tick)


def test_throttled_progress_still_cancels_at_every_scale(env, registry, models, mm, monkeypatch):
    """Scales 10 ms apart: ComfyUI passes on the first and the last plain update only, and cancel is still
    honoured at every scale."""
    _ten_ms_per_reading(env, monkeypatch)
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
    preview), here at every scale but the last, with the budget opened to the whole run."""
    _ten_ms_per_reading(env, monkeypatch)
    monkeypatch.setattr(env.nodes.previews, "PREVIEW_SHARE", 1.0)
    frames = _frames(mm, previews_on=True)
    sample(registry, models, vae=models["vae"])
    assert [value for value, frame in frames if frame is not None] == [1, 2, 3, 4, 5, 6]
    assert [value for value, _ in frames] == [0, 1, 2, 3, 4, 5, 6, 7]


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
    """With previews on, a VAE connected and the budget opened to the whole run, every scale but the last
    sends a JPEG frame: the VAE's decode of the summed codes so far, pooled to the preview grid; the final
    codes are unchanged by previews."""
    monkeypatch.setattr(env.nodes.previews, "PREVIEW_SHARE", 1.0)
    reference = sample(registry, models).codes
    seen_codes = []
    real_render = core_preview.render_preview
    monkeypatch.setattr(core_preview, "render_preview", lambda vae, codes, grid: seen_codes.append(
        (codes.clone(), grid)) or real_render(vae, codes, grid))
    frames = _frames(mm, previews_on=True)
    codes = sample(registry, models, vae=models["vae"]).codes
    assert torch.equal(codes, reference)
    assert [value for value, frame in frames if frame is not None] == [1, 2, 3, 4, 5, 6]
    grids = SamplingConfig(pixels="0.06M").schedule.grids
    for (value, frame), (summed, grid) in zip([f for f in frames if f[1] is not None], seen_codes):
        kind, picture, max_size = frame
        assert kind == "JPEG" and isinstance(picture, Image.Image) and max_size == 512
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


# --- Image in ----------------------------------------------------------------------------------------------

def _picture(height=200, width=300, channels=3) -> torch.Tensor:
    """A ComfyUI IMAGE [1, H, W, C] in 0..1: a horizontal ramp in red, a vertical one in green."""
    ramp_x = torch.linspace(0, 1, width)[None, :].expand(height, width)
    ramp_y = torch.linspace(0, 1, height)[:, None].expand(height, width)
    rgb = torch.stack([ramp_x, ramp_y, torch.full((height, width), 0.5)], -1)
    planes = {1: rgb[..., :1], 3: rgb, 4: torch.cat([rgb, torch.ones(height, width, 1)], -1)}[channels]
    return planes[None].contiguous()


def _encode(registry, models, image, **overrides):
    widgets = dict(aspect_ratio="match input", pixels="0.06M", upscale_method="bicubic", crop="center")
    return run(registry, "InfinityEncodeImage", image=image, vae=models["vae"], **{**widgets, **overrides})


def test_encode_image_matches_the_core_encoding_and_the_input_aspect(env, registry, models):
    from infinity_core.image_in import encode_image, schedule_for_image
    encoded, shown = _encode(registry, models, _picture())
    schedule = schedule_for_image(200, 300, "0.06M")
    assert encoded.schedule == schedule and encoded.pixels == "0.06M" and encoded.mask is None
    assert shown.shape == (1, *schedule.image_size, 3)
    expected = encode_image(models["vae"].vae, _picture().permute(0, 3, 1, 2) * 2 - 1, schedule, "crop",
                            "bicubic")
    assert all(torch.equal(a, b) for a, b in zip(encoded.bits, expected)) and len(encoded.bits) == 7
    assert encoded.vae_bits == models["vae"].config.codebook_dim


def test_encode_image_takes_greyscale_and_alpha_as_comfyui_does(registry, models):
    rgb, _ = _encode(registry, models, _picture(channels=3))
    rgba, _ = _encode(registry, models, _picture(channels=4))
    grey, _ = _encode(registry, models, _picture(channels=1))
    assert all(torch.equal(a, b) for a, b in zip(rgb.bits, rgba.bits))
    assert len(grey.bits) == len(rgb.bits) and grey.bits[-1].shape == rgb.bits[-1].shape


def test_encode_image_preset_aspect_and_stretch(registry, models):
    encoded, shown = _encode(registry, models, _picture(), aspect_ratio="1:2 (portrait)", crop="disabled")
    assert shown.shape[1] > shown.shape[2] and encoded.schedule.h_div_w == 2.0


def test_encode_image_refuses_a_vae_without_encoder(registry, models):
    (decoder_only,) = run(registry, "InfinityVAELoader", vae_file=MISMATCHED_VAE, dtype="auto")
    with pytest.raises(InfinityError, match="vae: .*has no encoder"):
        run(registry, "InfinityEncodeImage", image=_picture(), vae=decoder_only, aspect_ratio="match input",
            pixels="0.06M", upscale_method="bicubic", crop="center")


@pytest.mark.parametrize("keep", [0, 3, 7])
def test_img2img_keeps_the_first_keep_scales_of_the_picture(registry, models, keep):
    encoded, _ = _encode(registry, models, _picture(256, 256))
    codes = sample(registry, models, encoded_image=encoded, keep_scales=keep, seed=5)
    plain = sample(registry, models, seed=5)
    if keep == 0:
        assert torch.equal(codes.codes, plain.codes)      # no mask and nothing kept: text to image
    if keep == 7:
        from infinity_core.vae.bsq import accumulate_codes, bits_to_codes
        summed = torch.zeros(1, encoded.bits[-1].shape[-1], 1, 16, 16)
        for bits in encoded.bits:
            summed = accumulate_codes(summed, bits_to_codes(bits))
        assert torch.allclose(codes.codes, summed.squeeze(2), atol=1e-6)   # the picture's own codes
    if keep == 3:
        assert not torch.equal(codes.codes, plain.codes)


def test_keep_scales_beyond_the_schedule_is_refused_naming_both(registry, models):
    encoded, _ = _encode(registry, models, _picture(256, 256))
    with pytest.raises(InfinityError, match="keep_scales: 8 is more than the 7 scales"):
        sample(registry, models, encoded_image=encoded, keep_scales=8)


def test_encoded_image_from_another_vae_width_is_refused(env, registry, models):
    encoded, _ = _encode(registry, models, _picture(256, 256))
    narrow = env.nodes.types.InfinityEncodedImage(encoded.bits, encoded.schedule, encoded.pixels, encoded.picture,
                                                  None, "other_vae", 8)
    with pytest.raises(InfinityError, match="other_vae.*8-bit.*infinity_tiny"):
        sample(registry, models, encoded_image=narrow, keep_scales=2)


def test_a_mask_from_any_mask_node_inpaints_only_its_region(registry, models):
    """An all-zero mask (nothing to redraw) returns the picture's own codes; a mask of the left half
    changes the left half far more than the right."""
    picture = _picture(256, 256)
    full, _ = _encode(registry, models, picture)
    keep_all, _ = _encode(registry, models, picture, mask=torch.zeros(1, 256, 256))
    left = torch.zeros(1, 256, 256)
    left[:, :, :128] = 1
    inpaint, _ = _encode(registry, models, picture, mask=left)
    assert inpaint.mask.shape == (1, 256, 256)
    reconstruction = sample(registry, models, encoded_image=full, keep_scales=7).codes
    untouched = sample(registry, models, encoded_image=keep_all, keep_scales=0).codes
    assert torch.allclose(untouched, reconstruction, atol=1e-6)
    redrawn = sample(registry, models, encoded_image=inpaint, keep_scales=0, seed=3).codes
    change = (redrawn - reconstruction).abs().mean(1)[0]             # [H, W] latent grid
    assert change[:, :7].mean() > 3 * change[:, 9:].mean()


def test_inpainting_decode_pastes_the_picture_back_outside_the_mask(registry, models):
    """Pixels away from the mask are the (fitted) picture itself; inside the mask they are the decode."""
    picture = _picture(256, 256)
    left = torch.zeros(1, 256, 256)
    left[:, :, :128] = 1
    inpaint, shown = _encode(registry, models, picture, mask=left)
    codes = sample(registry, models, encoded_image=inpaint, keep_scales=0, seed=3)
    (image,) = run(registry, "InfinityTokenizerDecode", vae=models["vae"], codes=codes)
    (plain,) = run(registry, "InfinityTokenizerDecode", vae=models["vae"],
                   codes=type(codes)(codes.codes, codes.model_config, codes.model_name))
    assert torch.allclose(image[:, :, 128:], shown[:, :, 128:], atol=1e-6)
    assert torch.equal(image[:, :, :112], plain[:, :, :112])
    assert not torch.allclose(plain[:, :, 128:], shown[:, :, 128:], atol=1e-3)


def test_pad_for_outpainting_gives_a_schedule_sized_image_and_the_mask_of_the_new_area(registry, models):
    from infinity_core.image_in import pad_for_outpaint
    picture = _picture(256, 128)
    image, mask = run(registry, "InfinityPadForOutpainting", image=picture, left=64, top=0, right=64, bottom=0,
                      feather=0, pixels="0.06M")
    padded, expected_mask, schedule = pad_for_outpaint(picture.permute(0, 3, 1, 2) * 2 - 1, 64, 0, 64, 0, "0.06M")
    assert image.shape == (1, *schedule.image_size, 3) and mask.shape == (1, *schedule.image_size)
    assert torch.equal(mask, expected_mask) and mask[0, :, 0].min() == 1 and mask[0, 128, 128] == 0
    encoded, _ = _encode(registry, models, image, mask=mask, crop="disabled")
    assert encoded.schedule == schedule
    codes = sample(registry, models, encoded_image=encoded, keep_scales=0)
    assert codes.codes.shape[-2:] == (schedule.final_grid)


# --- Route and import --------------------------------------------------------------------------------------

def test_output_size_route_serves_the_core_schedule_table(env):
    import infinity_core
    routes = sys.modules["server"].PromptServer.instance.routes.handlers
    assert ("GET", "/infinity/output_sizes") in routes
    table = env.nodes.routes.output_size_table()
    assert set(table) == set(infinity_core.ASPECT_PRESETS)
    assert table["1:1"]["0.06M"] == {"width": 256, "height": 256, "scales": 7}
    assert table["1:1"]["1M"] == {"width": 1024, "height": 1024, "scales": 13}


def test_nodes_and_tests_share_one_infinity_core(env):
    """The nodes import the engine as top-level infinity_core, so an error they raise is the class tests catch."""
    import infinity_core
    assert env.nodes.loader.InfinityError is InfinityError is infinity_core.InfinityError
    assert not any(name.startswith(f"{PACK}.infinity_core") for name in sys.modules)


def test_pack_imports_without_comfyui_and_defines_no_nodes():
    """Outside ComfyUI (and with infinity_core not installed) the folder imports, registers the engine as
    top-level infinity_core, and defines no nodes."""
    script = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('pack', r'{REPO / '__init__.py'}', "
        f"submodule_search_locations=[r'{REPO}'])\n"
        "pack = importlib.util.module_from_spec(spec); sys.modules['pack'] = pack; spec.loader.exec_module(pack)\n"
        "assert not hasattr(pack, 'comfy_entrypoint') and pack.WEB_DIRECTORY == './web'\n"
        "assert not any(m == 'comfy' or m.startswith(('comfy.', 'comfy_api')) for m in sys.modules)\n"
        "import infinity_core\n"
        f"assert infinity_core.__file__.startswith(r'{REPO}')\n"
        "assert 'nodes' not in sys.modules and not any(p.rstrip('/') == r'" + str(REPO) + "' for p in sys.path)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO.parent)
