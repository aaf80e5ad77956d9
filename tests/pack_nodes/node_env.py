"""What the node tests share: the stand-in ComfyUI's paths and names, the settings they sample with, and
how they run a node as ComfyUI's executor does. The fixtures that set the stand-in up are in conftest.py.

The pack is imported the way ComfyUI imports a custom node folder: its `__init__.py` as a package, its
nodes registered through `comfy_entrypoint`, against the stand-in comfy modules in tests/comfy_stub (no
ComfyUI needed) and a stand-in model assembled from the tiny fixtures. Expectations about saved workflows
come from the workflow files themselves (example_workflows/, tests/workflows/), not from the node code."""
from __future__ import annotations

import sys
from pathlib import Path

import torch

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
STUB_DIR = TESTS / "comfy_stub"
WORKFLOWS = TESTS / "workflows"
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


def run(registry, node_id, **inputs):
    """Execute a node as ComfyUI's executor does (classmethod execute with keyword inputs); its results."""
    output = registry[node_id].execute(**inputs)
    assert isinstance(output, sys.modules["comfy_api.latest"].io.NodeOutput)
    return output.args


def validate(registry, node_id, **inputs) -> list[dict]:
    """What queueing the node with these inputs gives: ComfyUI's own widget checks, then validate_inputs."""
    return sys.modules["execution"].validate_node_inputs(registry[node_id], inputs)


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


def install_fake_clock(env, monkeypatch, step: float) -> list[float]:
    """ComfyUI's progress throttle and the previews' pacing read a clock that advances `step` seconds per
    reading; returns the clock's [now]."""
    now = [0.0]

    def tick() -> float:
        now[0] += step
        return now[0]
    monkeypatch.setattr(sys.modules["comfy.utils"], "clock", tick)
    monkeypatch.setattr(env.nodes.previews, "clock", tick)
    return now
