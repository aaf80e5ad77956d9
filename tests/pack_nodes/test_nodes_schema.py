"""The nodes' registration, schema and saved workflows, the web route, and how the pack imports.

Through the stand-in ComfyUI of tests/comfy_stub and the stand-in models (see node_env.py)."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from PIL import Image

from infinity_core import InfinityError
from .node_env import (CORE_NODE_TYPES, EXAMPLES, PACK, REPO, V1_NODE_IDS, WORKFLOWS, run, v1_inputs,
                       validate, widget_names)


# --- Registration and schema -------------------------------------------------------------------------------

def test_v3_registration_through_comfy_entrypoint_without_v1_mappings(env, registry):
    """ComfyUI ignores comfy_entrypoint in a module that also exports NODE_CLASS_MAPPINGS."""
    assert V1_NODE_IDS | {"InfinityEncodeImage", "InfinityPadForOutpainting", "InfinityCompileModel"} == set(registry)
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


# What an artist should not have to read: words of the paper and of the code, not of picture making.
RESEARCH_WORDS = ("logit", "bitwise codes", "bsq", "<unk>", "next-scale", "per bit", "top-k", "top-p", "codes",
                  "bits", "schedule", "tokenizer weights")


def test_display_names_descriptions_and_tooltips_use_plain_words(registry):
    """The node names keep "Bitwise" (the model's own name); everything else a user reads on a node or in its
    tooltips is free of the research words above."""
    found = []
    for node_id, cls in registry.items():
        schema = cls.GET_SCHEMA()
        texts = [("description", schema.description)]
        texts += [(f"{i.id} tooltip", i.tooltip) for i in schema.inputs]
        texts += [(f"{i.id} name", i.display_name) for i in schema.inputs if i.display_name]
        texts += [(f"output {o.display_name}", o.tooltip) for o in schema.outputs]
        texts += [("output name", o.display_name) for o in schema.outputs]
        found += [f"{node_id} {where}: '{word}' in {text!r}" for where, text in texts for word in RESEARCH_WORDS
                  if re.search(rf"(?<![a-z]){re.escape(word)}(?![a-z])", text.lower())]
    assert not found, found


def test_the_simple_sampler_folds_the_experimental_knobs_away_and_keeps_its_widget_order(registry):
    """top_k and top_p are marked advanced (frontends 1.5x fold them away) but stay widgets in their saved
    place; seed, cfg, temperature, size and batch stay in view."""
    for node_id in ("InfinityBitwiseSampler", "InfinityBitwiseSamplerAdvanced"):
        declared = registry[node_id].INPUT_TYPES()
        options = {name: spec[1] for group in declared.values() for name, spec in group.items()}
        assert [name for name, o in options.items() if o.get("advanced")] == ["top_k", "top_p"], node_id
    names = widget_names(registry, "InfinityBitwiseSampler")
    assert names[:8] == ["seed", "cfg", "tau", "top_k", "top_p", "aspect_ratio", "pixels", "batch_size"]


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
