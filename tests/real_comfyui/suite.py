"""The pack inside a real ComfyUI server and, where Chromium and Selenium are installed, its real frontends.

Skipped unless COMFYUI_DIR points at a ComfyUI source tree (0.3.64 or newer); the browser tests skip without
Chromium, chromedriver or Selenium, and the second frontend's tests skip without COMFYUI_FRONTEND_ROOT. The
environment variables are listed in tests/comfyui_harness.py; scripts/setup_comfyui_env.sh builds such an
environment from a ComfyUI source tree. Each server runs on 127.0.0.1 (a free port) with a temporary
--base-directory whose custom_nodes/ holds a symlink to this repository, an extra_model_paths.yaml and
--preview-method auto. Models: the demo model the pack ships when it is there, else a stand-in of it built
from the tiny fixtures (tests/standin_models.py) under the demo names, so the example workflows run as-is.

Facts about ComfyUI this suite relies on:
  * the frontend validates a loaded workflow against its schema and reports problems in a toast, never in the
    console, so the browser tests watch toasts and dialogs as well as console errors;
  * a pack's example_workflows/<name>.json is listed by GET /workflow_templates, served at
    /api/workflow_templates/<pack>/<name>.json and shown in the template browser with <name>.jpg as its card;
  * "Nodes 2.0" (setting Comfy.VueNodes.Enabled, in 1.27.x and newer) renders nodes as DOM elements
    (.lg-node[data-node-id]) instead of drawing them on the canvas;
  * ComfyUI.ProgressBar.update_absolute(value, total, preview) sends a "progress" message and, when a preview
    image is given, a binary websocket message (type 1, or 4 with metadata) to the client that queued the prompt.

The tests: test_server.py (the HTTP API) and test_frontends.py (the frontends in Chromium);
this module holds what they share: the skip when there is no ComfyUI, the servers, the workflow helpers.

Example (a developer's paths in angle brackets):

    COMFYUI_DIR=<ComfyUI> COMFYUI_PYTHONPATH=<tvstub> COMFYUI_FRONTEND_ROOT=<unzipped frontend wheel> \
        <venv>/bin/python -m pytest -q -s tests/real_comfyui/

-s shows the figures the tests print (lines starting with [comfyui]).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from comfyui_harness import COMFYUI_DIR, COMFYUI_PYTHON, newest_frontend_root, server_env, start_server, stop_server
from standin_models import DEMO_NAMES, FIXTURES, build_standin_models, write_mismatched_vae

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
WORKFLOWS = TESTS / "workflows"
SAVED_BEFORE_V3 = WORKFLOWS / "ui" / "saved_before_v3_t2i_basic.json"   # the UI example as of the classic nodes
EXAMPLES = sorted((REPO / "example_workflows").glob("*.json"))
BASIC_API = "infinity_t2i_basic_api.json"
PACK_FOLDER = "comfyui-infinity"
NODE_IDS = {"InfinityTransformerLoader", "InfinityVAELoader", "InfinityTextEncoderLoader", "InfinityTextEncode",
            "InfinityBitwiseSampler", "InfinityBitwiseSamplerAdvanced", "InfinityTokenizerDecode",
            "InfinityTokenizerDecodeTiled"}
SAMPLER_PREFIX = "InfinityBitwiseSampler"
OUTPUT_NODES = ("SaveImage", "PreviewImage")
EXTRA_PATHS_MODEL = "from_extra_model_paths.safetensors"
MISMATCHED_VAE = "vae_24bit.safetensors"   # neither the stand-in's 32 bits nor the demo model's 16
SIZE_TEXT = re.compile(r"image\s+(\d+)\s*[x\u00d7]\s*(\d+)\s*px", re.IGNORECASE)
RSS_GROWTH_LIMIT = 50 * 2**20
PAGE_SETTLE_S = 2


def missing_server_dependency() -> str | None:
    """Why the server interpreter cannot run ComfyUI with this pack, or None."""
    probe = "import aiohttp, sqlalchemy, safetensors, torch, tokenizers; from transformers import T5EncoderModel"
    result = subprocess.run([COMFYUI_PYTHON, "-c", probe], env=server_env(), capture_output=True, text=True,
                            cwd=COMFYUI_DIR)
    return None if result.returncode == 0 else (result.stderr.strip().splitlines() or ["?"])[-1]


if not COMFYUI_DIR:
    pytest.skip("COMFYUI_DIR is not set (a ComfyUI source tree is needed)", allow_module_level=True)
if (reason := missing_server_dependency()) is not None:
    pytest.skip(f"{COMFYUI_PYTHON} cannot import ComfyUI's or the pack's dependencies: {reason}",
                allow_module_level=True)


def shipped_demo_present() -> bool:
    models = REPO / "models"
    return all(path.exists() for path in (models / "infinity" / DEMO_NAMES.transformer,
                                          models / "infinity" / DEMO_NAMES.vae,
                                          models / "text_encoders" / DEMO_NAMES.text_encoder / "config.json"))


def prepare_base_directory(base: Path) -> Path:
    """custom_nodes/<pack> -> this repository; models; an extra_model_paths.yaml. Returns the yaml."""
    (base / "custom_nodes").mkdir(parents=True)
    (base / "custom_nodes" / PACK_FOLDER).symlink_to(REPO, target_is_directory=True)
    if not shipped_demo_present():
        build_standin_models(base / "models", DEMO_NAMES)
    (base / "models" / "vae").mkdir(parents=True, exist_ok=True)
    write_mismatched_vae(base / "models" / "vae" / MISMATCHED_VAE, bits=24)
    extra = base / "elsewhere"
    (extra / "infinity_models").mkdir(parents=True)
    shutil.copyfile(FIXTURES / "infinity_tiny.safetensors", extra / "infinity_models" / EXTRA_PATHS_MODEL)
    yaml = base / "extra_model_paths.yaml"
    yaml.write_text(f"elsewhere:\n    base_path: {extra}\n    infinity: infinity_models\n")
    return yaml


@contextlib.contextmanager
def serve(extra_args: list[str]):
    """A server on a fresh base directory."""
    base = Path(tempfile.mkdtemp(prefix="comfy_base_"))
    yaml = prepare_base_directory(base)
    try:
        running = start_server(base, ["--extra-model-paths-config", str(yaml), *extra_args])
    except RuntimeError as error:
        shutil.rmtree(base, ignore_errors=True)
        pytest.fail(str(error))
    try:
        yield running
    finally:
        stop_server(running)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def server():
    """The server with the frontend its requirements pin."""
    with serve(["--preview-method", "auto"]) as running:
        yield running


@pytest.fixture(scope="module")
def newest_server():
    """The same backend serving COMFYUI_FRONTEND_ROOT's frontend."""
    root = newest_frontend_root()
    if root is None:
        pytest.skip("COMFYUI_FRONTEND_ROOT is not set (an unzipped comfyui-frontend-package wheel)")
    with serve(["--preview-method", "auto", "--front-end-root", str(root)]) as running:
        yield running


@pytest.fixture(scope="module")
def shots_dir(tmp_path_factory) -> Path:
    folder = Path(os.environ["COMFYUI_SCREENSHOTS"]) if os.environ.get("COMFYUI_SCREENSHOTS") \
        else tmp_path_factory.mktemp("shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def api_workflow(name: str) -> dict:
    return json.loads((WORKFLOWS / name).read_text())


def sampler_inputs(prompt: dict) -> dict:
    return next(node["inputs"] for node in prompt.values() if node["class_type"].startswith(SAMPLER_PREFIX))


def sampler_node_id(prompt: dict) -> str:
    return next(key for key, node in prompt.items() if node["class_type"].startswith(SAMPLER_PREFIX))


def output_size(server, settings: dict) -> tuple[int, int, int]:
    size = server.request("/api/infinity/output_sizes")[1][settings["aspect_ratio"]][settings["pixels"]]
    return size["width"], size["height"], size["scales"]


def pixels_of(server, entry: dict) -> list[bytes]:
    return [image.convert("RGB").tobytes() for image in server.images(entry)]


def figure(text: str) -> None:
    print(f"[comfyui] {text}")
