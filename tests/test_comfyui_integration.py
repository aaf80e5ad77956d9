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

Example (a developer's paths in angle brackets):

    COMFYUI_DIR=<ComfyUI> COMFYUI_PYTHONPATH=<tvstub> COMFYUI_FRONTEND_ROOT=<unzipped frontend wheel> \
        <venv>/bin/python -m pytest -q -s tests/test_comfyui_integration.py

-s shows the figures the tests print (lines starting with [comfyui]).
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from comfyui_harness import (COMFYUI_DIR, COMFYUI_PYTHON, chromium_paths, frontend_version,
                             newest_frontend_root, run_watched, server_env, start_chromium, start_server,
                             stop_server)
from standin_models import DEMO_NAMES, FIXTURES, build_standin_models, write_mismatched_vae

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = Path(__file__).resolve().parent / "workflows"
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
SIZE_TEXT = re.compile(r"output\s+(\d+)\s*[x\u00d7]\s*(\d+)\s*px", re.IGNORECASE)
RSS_GROWTH_LIMIT = 50 * 2**20
PAGE_SETTLE_S = 2


def _missing_server_dependency() -> str | None:
    """Why the server interpreter cannot run ComfyUI with this pack, or None."""
    probe = "import aiohttp, sqlalchemy, safetensors, torch, tokenizers; from transformers import T5EncoderModel"
    result = subprocess.run([COMFYUI_PYTHON, "-c", probe], env=server_env(), capture_output=True, text=True,
                            cwd=COMFYUI_DIR)
    return None if result.returncode == 0 else (result.stderr.strip().splitlines() or ["?"])[-1]


if not COMFYUI_DIR:
    pytest.skip("COMFYUI_DIR is not set (a ComfyUI source tree is needed)", allow_module_level=True)
if (reason := _missing_server_dependency()) is not None:
    pytest.skip(f"{COMFYUI_PYTHON} cannot import ComfyUI's or the pack's dependencies: {reason}",
                allow_module_level=True)


def _shipped_demo_present() -> bool:
    models = REPO / "models"
    return all(path.exists() for path in (models / "infinity" / DEMO_NAMES.transformer,
                                          models / "infinity" / DEMO_NAMES.vae,
                                          models / "text_encoders" / DEMO_NAMES.text_encoder / "config.json"))


def _prepare_base_directory(base: Path) -> Path:
    """custom_nodes/<pack> -> this repository; models; an extra_model_paths.yaml. Returns the yaml."""
    (base / "custom_nodes").mkdir(parents=True)
    (base / "custom_nodes" / PACK_FOLDER).symlink_to(REPO, target_is_directory=True)
    if not _shipped_demo_present():
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
def _serve(extra_args: list[str]):
    """A server on a fresh base directory."""
    base = Path(tempfile.mkdtemp(prefix="comfy_base_"))
    yaml = _prepare_base_directory(base)
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
    with _serve(["--preview-method", "auto"]) as running:
        yield running


@pytest.fixture(scope="module")
def newest_server():
    """The same backend serving COMFYUI_FRONTEND_ROOT's frontend."""
    root = newest_frontend_root()
    if root is None:
        pytest.skip("COMFYUI_FRONTEND_ROOT is not set (an unzipped comfyui-frontend-package wheel)")
    with _serve(["--preview-method", "auto", "--front-end-root", str(root)]) as running:
        yield running


@pytest.fixture(scope="module")
def shots_dir(tmp_path_factory) -> Path:
    folder = Path(os.environ["COMFYUI_SCREENSHOTS"]) if os.environ.get("COMFYUI_SCREENSHOTS") \
        else tmp_path_factory.mktemp("shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _api_workflow(name: str) -> dict:
    return json.loads((WORKFLOWS / name).read_text())


def _sampler(prompt: dict) -> dict:
    return next(node["inputs"] for node in prompt.values() if node["class_type"].startswith(SAMPLER_PREFIX))


def _sampler_id(prompt: dict) -> str:
    return next(key for key, node in prompt.items() if node["class_type"].startswith(SAMPLER_PREFIX))


def _output_size(server, settings: dict) -> tuple[int, int, int]:
    size = server.request("/api/infinity/output_sizes")[1][settings["aspect_ratio"]][settings["pixels"]]
    return size["width"], size["height"], size["scales"]


def _pixels(server, entry: dict) -> list[bytes]:
    return [image.convert("RGB").tobytes() for image in server.images(entry)]


def _figure(text: str) -> None:
    print(f"[comfyui] {text}")


# --- the server and its HTTP API -------------------------------------------------------------------------------

def test_object_info_lists_every_node_and_the_pack_imports_cleanly(server):
    status, info = server.request("/object_info")
    assert status == 200 and NODE_IDS <= set(info)
    assert {info[node_id]["category"] for node_id in NODE_IDS} == {"Infinity"}
    assert info["InfinityBitwiseSampler"]["display_name"] == "Infinity Bitwise Sampler"
    log = server.log_text()
    failures = [line for line in log.splitlines()
                if PACK_FOLDER in line and ("IMPORT FAILED" in line or "Cannot import" in line)]
    assert not failures, failures
    assert any(PACK_FOLDER in line and "seconds" in line for line in log.splitlines())   # "Import times" entry


def _combo(spec: list) -> tuple[list, dict]:
    """(options, config) of a combo input in /object_info: [options, config] for classic nodes,
    ["COMBO", {"options": ..., ...}] for V3 nodes."""
    if isinstance(spec[0], list):
        return spec[0], (spec[1] if len(spec) > 1 else {})
    assert spec[0] == "COMBO", spec
    return spec[1]["options"], spec[1]


def test_loaders_list_comfyui_folders_and_default_to_the_demo_model(server):
    info = server.request("/object_info")[1]
    options, config = _combo(info["InfinityTransformerLoader"]["input"]["required"]["model_file"])
    assert EXTRA_PATHS_MODEL in options                             # from extra_model_paths.yaml
    assert config["default"] == DEMO_NAMES.transformer
    options, config = _combo(info["InfinityVAELoader"]["input"]["required"]["vae_file"])
    assert MISMATCHED_VAE in options and config["default"] == DEMO_NAMES.vae   # models/vae too
    _, config = _combo(info["InfinityTextEncoderLoader"]["input"]["required"]["text_encoder_folder"])
    assert config["default"] == DEMO_NAMES.text_encoder


def test_web_extension_and_size_route_are_served(server):
    served = server.request("/extensions")[1]
    shipped = sorted(path.relative_to(REPO / "web").as_posix() for path in (REPO / "web").rglob("*.js"))
    assert shipped and all(f"/extensions/{PACK_FOLDER}/{path}" in served for path in shipped)
    sizes = server.request("/api/infinity/output_sizes")[1]
    assert sizes["1:1"]["0.06M"] == {"width": 256, "height": 256, "scales": 7}


def test_every_example_workflow_is_a_template_with_a_thumbnail(server):
    assert EXAMPLES
    listed = server.request("/workflow_templates")[1].get(PACK_FOLDER, [])
    assert sorted(listed) == [path.stem for path in EXAMPLES]
    missing_thumbnails = []
    for path in EXAMPLES:
        status, served = server.request(f"/api/workflow_templates/{PACK_FOLDER}/{quote(path.name)}")
        assert status == 200 and served == json.loads(path.read_text()), path.name
        status, thumbnail = server.request(f"/api/workflow_templates/{PACK_FOLDER}/{quote(path.stem)}.jpg")
        if status != 200 or not thumbnail.startswith(b"\xff\xd8"):
            missing_thumbnails.append(f"{path.stem}.jpg")
    assert not missing_thumbnails, f"the template browser shows a blank card for {missing_thumbnails}"


@pytest.mark.parametrize("workflow", sorted(p.name for p in WORKFLOWS.glob("*.json")))
def test_api_workflow_runs_and_its_images_come_back(server, workflow):
    prompt = _api_workflow(workflow)
    entry = server.wait(server.queue(prompt))
    assert entry["status"]["status_str"] == "success", entry["status"]
    settings = _sampler(prompt)
    width, height, _ = _output_size(server, settings)
    images = server.images(entry)
    outputs = sum(1 for node in prompt.values() if node["class_type"] in OUTPUT_NODES)
    assert len(images) == settings["batch_size"] * outputs
    assert {image.size for image in images} == {(width, height)}
    assert {image.mode for image in images} == {"RGB"}


def test_free_memory_releases_the_models_and_the_same_seed_gives_the_same_image(server):
    """POST /free (the "free model and node cache" button) drops the models: the next run reads them
    again and, with the same seed, draws the very same image."""
    prompt = _api_workflow(BASIC_API)
    _sampler(prompt)["seed"] = 1234
    first = server.images(server.wait(server.queue(prompt)))[0]
    reads = server.log_text().count("loaded transformer file")
    assert server.request("/free", {"unload_models": True, "free_memory": True})[0] == 200
    time.sleep(1.5)   # the prompt worker applies the flags when it wakes up
    second = server.images(server.wait(server.queue(prompt)))[0]
    assert server.log_text().count("loaded transformer file") == reads + 1
    assert first.tobytes() == second.tobytes()


def _error_text(error: dict) -> str:
    """What an entry of node_errors says. A node's validate_inputs failure is reported once per input of its
    signature, each as "<input> - <the node's message>": only the node's message counts there."""
    if error.get("type") == "custom_validation_failed":
        return str(error.get("details", "")).partition(" - ")[2]
    return f"{error.get('message', '')} {error.get('details', '')}"


def _names_the_input(error: dict, widget: str, value) -> bool:
    """Whether an entry of node_errors blames `widget`: ComfyUI's own checks name the input in extra_info;
    a node's own check must name it in its message, or quote the bad file or folder name."""
    if error.get("type") != "custom_validation_failed":
        return error.get("extra_info", {}).get("input_name") == widget
    text = _error_text(error)
    return widget in re.findall(r"[A-Za-z_]+", text) or (isinstance(value, str) and f"'{value}'" in text)


@pytest.mark.parametrize("workflow, node_id, widget, value, fragments", [
    (BASIC_API, "5", "top_p", 1.5, ("top_p", "1.5")),
    (BASIC_API, "5", "aspect_ratio", "16:9", ("aspect_ratio", "16:9", "1:1")),
    (BASIC_API, "1", "model_file", "nowhere.safetensors", ("nowhere.safetensors", "models/infinity")),
    ("infinity_t2i_advanced_api.json", "5", "cfg_schedule", "3, abc", ("cfg_schedule", "abc")),
    ("infinity_t2i_advanced_api.json", "5", "cfg_schedule", "3, 3, 3, 3, 3, 3, 3, 3", ("cfg_schedule", "7 scales")),
])
def test_bad_widget_value_fails_validation_with_a_readable_message(server, workflow, node_id, widget, value,
                                                                   fragments):
    """The refusal names the widget, repeats the bad value and says what is valid."""
    prompt = _api_workflow(workflow)
    prompt[node_id]["inputs"][widget] = value
    status, answer = server.request("/prompt", {"prompt": prompt})
    assert status == 400 and answer["error"]["type"] == "prompt_outputs_failed_validation"
    errors = answer["node_errors"][node_id]["errors"]
    assert any(all(fragment in _error_text(error) for fragment in fragments) for error in errors), errors


# (workflow, node id, widget, value): each must be refused by /prompt with an error that names the widget.
BAD_SETTINGS = [
    *[(BASIC_API, "5", "cfg", value) for value in (math.nan, math.inf, -math.inf, -3.0, 1e30, "abc")],
    *[(BASIC_API, "5", "tau", value) for value in (0.0, -1.0, math.nan, math.inf, "abc")],
    *[(BASIC_API, "5", "seed", value) for value in (2**64, -1, "abc")],
    *[(BASIC_API, "5", "batch_size", value) for value in (0, 1000, "abc")],
    *[(BASIC_API, "5", "top_p", value) for value in (2.0, -0.5, math.nan)],
    *[(BASIC_API, "5", "top_k", value) for value in (-1, 10**6)],
    (BASIC_API, "5", "aspect_ratio", "7:3 (unknown)"),
    (BASIC_API, "5", "pixels", "5M"),
    (BASIC_API, "1", "dtype", "fp8"),
    (BASIC_API, "2", "dtype", "int4"),
    (BASIC_API, "3", "dtype", "float"),
    (BASIC_API, "1", "model_file", "../../etc/passwd"),
    (BASIC_API, "3", "text_encoder_folder", "no_such_folder"),
    *[("infinity_t2i_advanced_api.json", "5", "cfg_schedule", value)
      for value in ("abc", "3, nan", "3, inf", "1e30", "3, -1", "3, 3, 3, 3, 3, 3, 3, 3")],
    ("infinity_t2i_advanced_api.json", "5", "tau", math.nan),
    *[("infinity_t2i_tiled_api.json", "6", "tile_size", value) for value in (16, 99999, "abc")],
    *[("infinity_t2i_tiled_api.json", "6", "overlap", value) for value in (-64, 4096)],
]


def test_bad_settings_are_refused_naming_the_widget_and_never_crash_the_server(server):
    tried, crashes, named, problems = 0, 0, 0, []
    for workflow, node_id, widget, value in BAD_SETTINGS:
        prompt = _api_workflow(workflow)
        prompt[node_id]["inputs"][widget] = value
        tried += 1
        status, answer = server.request("/prompt", {"prompt": prompt, "client_id": "infinity-bad-settings"})
        if status == 200:                      # accepted: let it finish so the next case starts on an idle server
            entry = server.wait(answer["prompt_id"])
            problems.append(f"{widget}={value!r} ({workflow}): accepted, run ended {entry['status']['status_str']}")
        else:
            errors = (answer.get("node_errors") or {}).get(node_id, {}).get("errors", []) \
                if isinstance(answer, dict) else []
            if status == 400 and any(_names_the_input(error, widget, value) for error in errors):
                named += 1
            else:
                problems.append(f"{widget}={value!r} ({workflow}): HTTP {status}, errors {errors or answer}")
        if not server.alive():
            crashes += 1
            problems.append(f"{widget}={value!r}: the server stopped answering")
            break
    assert server.request("/system_stats")[0] == 200
    _figure(f"bad settings: {tried} tried, {crashes} crashes, {named} named the widget")
    assert crashes == 0 and named == tried, "\n".join(problems)


def test_wrong_vae_is_refused_naming_both_files(server):
    prompt = _api_workflow(BASIC_API)
    prompt["2"]["inputs"]["vae_file"] = MISMATCHED_VAE
    entry = server.wait(server.queue(prompt))
    error = next(m[1] for m in entry["status"]["messages"] if m[0] == "execution_error")
    assert error["node_type"] == "InfinityTokenizerDecode"
    assert MISMATCHED_VAE in error["exception_message"] and DEMO_NAMES.transformer in error["exception_message"]


def test_interrupt_stops_sampling_and_the_next_run_reuses_the_loaded_models(server):
    warm = server.wait(server.queue(_api_workflow(BASIC_API)))
    assert warm["status"]["status_str"] == "success"
    reads_before = server.log_text().count("loaded transformer file")
    slow = _api_workflow(BASIC_API)
    _sampler(slow).update(pixels="1M", seed=99)
    prompt_id = server.queue(slow)
    server.wait_until_running()
    time.sleep(2)
    asked = time.monotonic()
    assert server.request("/interrupt", {})[0] == 200
    entry = server.wait(prompt_id)
    stopped_after = time.monotonic() - asked
    assert [m[0] for m in entry["status"]["messages"]][-1] == "execution_interrupted"
    assert stopped_after < 30, f"sampling went on for {stopped_after:.1f} s after the interrupt"
    again = _api_workflow(BASIC_API)
    _sampler(again)["seed"] = 100
    entry = server.wait(server.queue(again))
    assert entry["status"]["status_str"] == "success" and len(server.images(entry)) == 1
    assert server.log_text().count("loaded transformer file") == reads_before


def test_interrupt_at_every_scale_then_the_rerun_gives_the_same_bytes(server):
    """For each scale k, a run interrupted as soon as the sampler reports k scales done (the interrupt lands at
    the next scale, or in the next node when that report is the last), then the same prompt again: the rerun's
    pixels equal those of an uninterrupted run of that prompt (seed 7000 + k). The prompts alternate, so
    ComfyUI's cache (the last prompt's outputs) never answers for the sampler."""
    base = _api_workflow(BASIC_API)
    sampler_id = _sampler_id(base)
    _, _, scales = _output_size(server, _sampler(base))
    prompts = []
    for scale in range(scales):
        prompt = json.loads(json.dumps(base))
        _sampler(prompt)["seed"] = 7000 + scale
        prompts.append(prompt)
    references = []
    for prompt in prompts:
        entry = server.wait(server.queue(prompt))
        assert entry["status"]["status_str"] == "success", entry["status"]
        references.append(_pixels(server, entry))
    stopped_after, identical, problems = [], 0, []
    for scale, prompt in enumerate(prompts):
        interrupted = run_watched(server, prompt, interrupt_at=(sampler_id, scale))
        seen = interrupted.node_progress(sampler_id)
        stopped_after.append(f"{max(seen) if seen else '-'}@{interrupted.last_message.get('node_type', '?')}")
        if interrupted.outcome != "execution_interrupted":
            problems.append(f"scale {scale}: the run ended with {interrupted.outcome}, not interrupted")
        entry = server.wait(server.queue(prompt))
        if entry["status"]["status_str"] != "success":
            problems.append(f"scale {scale}: the rerun failed: {entry['status']}")
        elif _pixels(server, entry) != references[scale]:
            problems.append(f"scale {scale}: the rerun's pixels differ from the uninterrupted run's")
        else:
            identical += 1
    _figure(f"interrupt: {scales} scales, stopped at (sampler progress@node) {stopped_after}, "
            f"{identical}/{scales} reruns identical to the uninterrupted run")
    assert server.alive() and not problems, "\n".join(problems)


def _with_preview_vae(prompt: dict) -> dict:
    """The prompt with the VAE loader also wired into the sampler's optional vae input (previews)."""
    vae_loader = next(key for key, node in prompt.items() if node["class_type"] == "InfinityVAELoader")
    _sampler(prompt)["vae"] = [vae_loader, 0]
    return prompt


def test_previews_arrive_while_the_sampler_runs(server):
    """Each preview rides on a progress update of the sampler (ProgressBar.update_absolute with an image), so
    there are at most as many frames as updates before the last scale, at least one, before sampling ends;
    they are images no larger than --preview-size, and they change from scale to scale. How many scales get a
    frame is the previews' time budget: printed."""
    from PIL import Image

    prompt = _with_preview_vae(_api_workflow(BASIC_API))
    _sampler(prompt)["seed"] = 8101
    # 1M: a run long enough for the previews' budget (3 % of the run) to pay for several frames on any machine;
    # at 0.06M the demo model samples in under 100 ms on a quiet CPU, and the budget pays for the first frame only
    _sampler(prompt)["pixels"] = "1M"
    sampler_id = _sampler_id(prompt)
    _, _, scales = _output_size(server, _sampler(prompt))
    run = run_watched(server, prompt)
    assert run.outcome == "execution_success", run.last_message
    sampler_updates = [i for i, (node, _, _) in enumerate(run.progress) if node == sampler_id]
    before_last = [i for i in sampler_updates if 0 < run.progress[i][1] < scales]
    distinct = len(set(run.previews))
    _figure(f"previews over the websocket (API run, {scales} scales): {len(run.previews)} frames, {distinct} distinct, "
            f"{len(before_last)} progress updates between the first and the last scale")
    assert sampler_updates and run.progress[sampler_updates[-1]][1] == scales, "the sampler's progress never ended"
    assert 1 <= len(run.previews) <= len(before_last), \
        f"{len(run.previews)} preview frames for {len(before_last)} progress updates"
    assert run.preview_after[0] <= sampler_updates[-1], "the first preview came after sampling ended"
    assert len(run.previews) == 1 or distinct >= 2, "every preview frame is the same picture"
    for frame in run.previews:
        image = Image.open(io.BytesIO(frame))
        image.load()
        assert 0 < max(image.size) <= 512   # --preview-size's default


def test_preview_method_none_sends_no_previews():
    with _serve(["--preview-method", "none"]) as running:
        prompt = _with_preview_vae(_api_workflow(BASIC_API))
        run = run_watched(running, prompt)
        assert run.outcome == "execution_success", run.last_message
        assert run.node_progress(_sampler_id(prompt)), "the sampler reported no progress"
        assert run.previews == []


def test_fifty_prompts_keep_the_server_memory_flat_and_the_outputs_right(server):
    base = _api_workflow(BASIC_API)
    width, height, _ = _output_size(server, _sampler(base))

    def with_seed(seed: int) -> dict:
        prompt = json.loads(json.dumps(base))
        _sampler(prompt)["seed"] = seed
        return prompt

    warm_pixels = None
    for seed in range(9000, 9005):
        entry = server.wait(server.queue(with_seed(seed)))
        assert entry["status"]["status_str"] == "success", entry["status"]
        warm_pixels = warm_pixels or _pixels(server, entry)
    rss_before = server.rss_bytes()
    prompt_ids = [server.queue(with_seed(seed)) for seed in range(9100, 9150)]
    entries = [server.wait(prompt_id, timeout=600) for prompt_id in prompt_ids]
    rss_after = server.rss_bytes()
    assert [entry["status"]["status_str"] for entry in entries] == ["success"] * 50
    for entry in entries:
        images = server.images(entry)
        assert [(image.size, image.mode) for image in images] == [((width, height), "RGB")]
    again = server.wait(server.queue(with_seed(9000)))
    growth = rss_after - rss_before
    _figure(f"memory: RSS {rss_before / 2**20:.0f} MB after warm-up, {rss_after / 2**20:.0f} MB after 50 prompts "
            f"(growth {growth / 2**20:+.1f} MB, limit {RSS_GROWTH_LIMIT / 2**20:.0f})")
    assert _pixels(server, again) == warm_pixels, "seed 9000 draws a different image after 50 prompts"
    assert growth < RSS_GROWTH_LIMIT


# --- the real frontends in headless Chromium --------------------------------------------------------------------

# Console errors that have nothing to do with the pack. Any error that mentions the pack is never ignored.
BENIGN_CONSOLE = {
    # a fresh user folder: no user.css, saved workflows, subgraphs or template index yet; no favicon
    "any": ("/api/userdata", "/user.css", "favicon.ico"),
    # 1.27.10: its default graph raises "reading 'id'"; its model-to-node store raises "reading 'name'" when a
    # core loader it expects (UpscaleModelLoader) is not installed, as in a venv without spandrel
    "bundled": ("reading 'id'", "reading 'name'"),
    # a frontend newer than the backend asks for routes that 0.3.64 lacks (the jobs and global subgraph APIs)
    # and for the logo index of a newer comfyui-workflow-templates package
    "newest": ("/api/jobs", "JobsApiError", "/api/global_subgraphs", "/templates/index_logo.json"),
}
UI_MODES = [("bundled", False), ("bundled", True), ("newest", False), ("newest", True)]


@dataclass
class Frontend:
    kind: str               # "bundled" or "newest"
    vue: bool
    version: str
    server: object
    driver: object

    @property
    def label(self) -> str:
        return f"{self.version} vue-{'on' if self.vue else 'off'}"

    def js(self, script: str, *args):
        return self.driver.execute_script(script, *args)

    def js_async(self, body: str, *args):
        """Run `body` (may use await; `args` is the argument list) and return what it returns."""
        return self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1]; const args = [...arguments].slice(0, -1);"
            f"(async () => {{ {body} }})().then(done, (error) => done({{error: String(error && error.stack || error)}}));",
            *args)

    def now(self) -> float:
        return self.js("return performance.now()")

    def console_errors(self) -> list[str]:
        """SEVERE console messages since the last call, minus the known ones unrelated to the pack."""
        benign = BENIGN_CONSOLE["any"] + BENIGN_CONSOLE[self.kind]
        errors = []
        for entry in self.driver.get_log("browser"):
            message = entry["message"]
            if entry["level"] != "SEVERE":
                continue
            if PACK_FOLDER not in message and "infinity" not in message.lower():
                if message.startswith("http") and not message.startswith(self.server.url) and "net::ERR_" in message:
                    continue   # no network here: requests to other hosts (release check, telemetry) fail
                if any(known in message for known in benign):
                    continue
            errors.append(message)
        return errors

    def popups_since(self, since: float) -> list[str]:
        """Toasts and dialogs that appeared after page time `since`, with their text."""
        found = self.js("const w = window.__infinityWatch; return [...w.toasts.map(e => ['toast', e.t, e.text]),"
                        " ...w.dialogs.map(e => ['dialog', e.t, e.text])]")
        return [f"{kind}: {text[:600]}" for kind, t, text in found if t >= since]

    def open_dialogs(self) -> int:
        return self.js("return document.querySelectorAll('.p-dialog, [role=\"dialog\"], [role=\"alertdialog\"]').length")

    def wait_for(self, script: str, what: str, timeout: float = 30, *args):
        deadline = time.monotonic() + timeout
        while True:
            value = self.js(script, *args)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.label}: {what} (waited {timeout} s)")
            time.sleep(0.1)

    def load_from_template_browser(self, example: Path) -> float:
        """Open the template browser, pick the pack, click the example's card; wait until the graph holds the
        example's nodes and no dialog is open. Returns the page time of the click."""
        from selenium.common.exceptions import ElementClickInterceptedException

        self.js("app.extensionManager.command.execute('Comfy.BrowseTemplates')")
        category = self.wait_for(
            "return [...document.querySelectorAll('.p-dialog *, [role=\"dialog\"] *')].find(e => !e.children.length"
            " && e.textContent.trim() === arguments[0])", f"no '{PACK_FOLDER}' category in the template browser",
            30, PACK_FOLDER)
        self.js("arguments[0].scrollIntoView({block: 'center'})", category)
        category.click()
        card = self.wait_for(
            "return [...document.querySelectorAll('[data-testid]')].find(e => e.getAttribute('data-testid')"
            " === 'template-workflow-' + arguments[0])", f"no card for {example.stem} in the template browser",
            30, example.stem)
        self.js("arguments[0].scrollIntoView({block: 'center'})", card)
        time.sleep(1)   # a user looks at the card: its thumbnail is requested and shown (or fails) first
        self.wait_for("return [...arguments[0].querySelectorAll('img')].every(img => img.complete)",
                      f"the card of {example.stem} never finished loading its thumbnail", 10, card)
        clicked = self.now()
        try:
            card.click()
        except ElementClickInterceptedException:
            self.js("arguments[0].click()", card)
        expected = sorted(node["type"] for node in json.loads(example.read_text())["nodes"])
        self.wait_for(
            "const g = app.rootGraph ?? app.graph; const types = (g.nodes ?? g._nodes).map(n => n.type).sort();"
            " return JSON.stringify(types) === JSON.stringify(arguments[0])"
            " && !document.querySelector('.p-dialog, [role=\"dialog\"]');",
            f"{example.name} did not load from the template browser", 30, expected)
        return clicked

    def graph_summary(self) -> dict:
        return self.js(
            "const g = app.rootGraph ?? app.graph; const nodes = g.nodes ?? g._nodes;"
            "return {links: g.links instanceof Map ? g.links.size : Object.keys(g.links).length,"
            " nodes: nodes.map(n => ({id: String(n.id), type: n.type, values: n.serialize().widgets_values ?? []}))}")

    def overlapping_nodes(self) -> list[str]:
        """Pairs of nodes whose boxes, as drawn now, overlap by more than a few pixels: with Vue nodes the node
        elements' rectangles, on the canvas each node's bounding box (title bar included)."""
        boxes = self.js(
            "const g = app.rootGraph ?? app.graph; const nodes = g.nodes ?? g._nodes;"
            "if (arguments[0]) return [...document.querySelectorAll('.lg-node[data-node-id]')].map(e => {"
            "  const r = e.getBoundingClientRect();"
            "  return [e.getAttribute('data-node-id'), r.x, r.y, r.width, r.height]; });"
            "return nodes.map(n => { const b = n.getBounding(); return [String(n.id), b[0], b[1], b[2], b[3]]; });",
            self.vue)
        margin = 4
        return [f"#{a[0]} and #{b[0]}" for i, a in enumerate(boxes) for b in boxes[i + 1:]
                if min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]) > margin
                and min(a[2] + a[4], b[2] + b[4]) - max(a[2], b[2]) > margin]

    def size_texts(self, node_id: str) -> list[str]:
        """The texts a user can see on node `node_id` (centred on screen first): with Vue nodes, the node
        element's rendered text and widget values; on the canvas, the strings drawn and the DOM widgets' values."""
        self.js("const g = app.rootGraph ?? app.graph; app.canvas.ds.scale = 1;"   # zoomed in to read it
                " app.canvas.centerOnNode(g.getNodeById(Number(arguments[0])) ?? g.getNodeById(arguments[0]));"
                " window.__infinityWatch.drawn.clear(); app.canvas.setDirty(true, true);", node_id)
        time.sleep(0.5)
        return self.js(
            "const visible = (e) => e.offsetParent !== null && e.getBoundingClientRect().width > 0;"
            "const values = (root) => [...root.querySelectorAll('input, textarea')].filter(visible).map(e => e.value);"
            "if (arguments[1]) { const el = document.querySelector(`.lg-node[data-node-id=\"${arguments[0]}\"]`);"
            "  return el && visible(el) ? [el.innerText, ...values(el)] : []; }"
            "app.canvas.draw(true, true);"
            "return [...window.__infinityWatch.drawn, ...values(document)];", node_id, self.vue)


@pytest.fixture(scope="module", params=UI_MODES, ids=[f"{kind}-vue-{'on' if vue else 'off'}" for kind, vue in UI_MODES])
def ui(request):
    kind, vue = request.param
    running = request.getfixturevalue("server" if kind == "bundled" else "newest_server")
    pytest.importorskip("selenium.webdriver")
    if not all(Path(path).exists() for path in chromium_paths()):
        pytest.skip("Chromium or chromedriver is not installed")
    settings = {"Comfy.TutorialCompleted": True, "Comfy.VueNodes.Enabled": vue}   # a returning user
    assert running.request("/settings", settings)[0] == 200
    driver, profile = start_chromium()
    try:
        driver.get(running.url + "/")
        frontend = Frontend(kind, vue, "?", running, driver)
        frontend.wait_for("return !!(window.app && app.graph && app.extensionManager)", "the frontend did not start", 120)
        frontend.version = frontend.js("return window.__COMFYUI_FRONTEND_VERSION__ ?? '?'")
        if kind == "newest":
            assert frontend.version == frontend_version(newest_frontend_root())
        assert frontend.js("return app.extensionManager.setting.get('Comfy.VueNodes.Enabled')") is vue
        time.sleep(PAGE_SETTLE_S)
        yield frontend
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def test_frontend_loads_the_pack_extension_without_errors(ui):
    ui.wait_for("return app.extensions.some(e => e.name.startsWith('Infinity'))",
                "no web extension of the pack registered (app.extensions has none named Infinity.*)")
    assert ui.js("return !!LiteGraph.registered_node_types['InfinityBitwiseSampler']")
    assert not ui.popups_since(0), ui.popups_since(0)
    assert not ui.console_errors()


@pytest.mark.parametrize("example", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_example_workflow_loads_from_the_template_browser_without_warnings(ui, example):
    ui.console_errors()
    clicked = ui.load_from_template_browser(example)
    time.sleep(1)   # toasts of the load appear within a frame or two
    popups = ui.popups_since(clicked)
    errors = ui.console_errors()
    saved = json.loads(example.read_text())
    graph = ui.graph_summary()
    rendered = ui.js("return document.querySelectorAll('.lg-node[data-node-id]').length")
    shifted = []
    loaded = {node["id"]: node for node in graph["nodes"]}
    for node in saved["nodes"]:
        values = node.get("widgets_values")
        if isinstance(values, list) and loaded[str(node["id"])]["values"][:len(values)] != values:
            shifted.append(f"{node['type']} #{node['id']}: saved {values}, loaded {loaded[str(node['id'])]['values']}")
    assert not popups, f"{ui.label} {example.name}: {popups}"
    assert not errors, f"{ui.label} {example.name}: {errors}"
    assert not shifted, f"{ui.label} {example.name}: widget values changed on load: {shifted}"
    assert graph["links"] == len(saved["links"])
    assert (rendered == len(saved["nodes"])) if ui.vue else rendered == 0


SAMPLER_EXAMPLES = [path for path in EXAMPLES
                    if any(node["type"].startswith(SAMPLER_PREFIX) for node in json.loads(path.read_text())["nodes"])]


@pytest.mark.parametrize("example", SAMPLER_EXAMPLES, ids=[path.stem for path in SAMPLER_EXAMPLES])
def test_sampler_shows_its_output_size(ui, example):
    """The sampler's "output W x H px" line is visible on the node and matches the server's size table for
    the node's aspect and pixel widgets (unless an encoded image is linked, whose schedule sets the size)."""
    ui.load_from_template_browser(example)
    table = ui.server.request("/api/infinity/output_sizes")[1]
    saved = json.loads(example.read_text())
    problems = []
    for node in saved["nodes"]:
        if not node["type"].startswith(SAMPLER_PREFIX):
            continue
        texts = ui.size_texts(str(node["id"]))
        found = [match.groups() for text in texts for match in [SIZE_TEXT.search(text or "")] if match]
        linked_image = ui.js("const g = app.rootGraph ?? app.graph; return g.getNodeById(arguments[0]).inputs"
                             ".some(i => i.name === 'encoded_image' && i.link != null)", node["id"])
        if not found and linked_image and any(re.match(r"\s*output\b", text or "") for text in texts):
            continue   # the picture's own aspect sets the size when the graph runs: a note says so
        if not found:
            problems.append(f"{node['type']} #{node['id']}: no 'output W x H px' text visible")
            continue
        widgets = ui.js("const g = app.rootGraph ?? app.graph; const n = g.getNodeById(arguments[0]);"
                        "return {aspect: n.widgets.find(w => w.name === 'aspect_ratio')?.value,"
                        " pixels: n.widgets.find(w => w.name === 'pixels')?.value}", node["id"])
        expected = table.get(widgets["aspect"], {}).get(widgets["pixels"])
        if expected and not linked_image:   # else the encoded picture's schedule sets the size
            if (int(found[0][0]), int(found[0][1])) != (expected["width"], expected["height"]):
                problems.append(f"#{node['id']} shows {found[0]}, the table says {expected}")
    assert not problems, f"{ui.label} {example.name}: {problems}"


_seed_counter = iter(range(1_000_000, 2_000_000))


@pytest.mark.parametrize("example", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_example_workflow_queued_in_the_frontend_previews_and_returns_images(ui, example, shots_dir):
    """Loaded from the template browser, every sampler given a fresh seed (so the run really samples), queued
    with the Run command: previews arrive on the page's websocket during sampling (a screenshot is taken
    mid-run), no toast, dialog or console error shows, and every output node's images come back."""
    ui.load_from_template_browser(example)
    graph = ui.graph_summary()
    samplers = [node["id"] for node in graph["nodes"] if node["type"].startswith(SAMPLER_PREFIX)]
    for node_id in samplers:
        ui.js("const g = app.rootGraph ?? app.graph; const n = g.getNodeById(Number(arguments[0]));"
              "n.widgets.find(w => w.name === 'seed').value = arguments[1];", node_id, next(_seed_counter))
    sizes = {(int(w), int(h)) for node_id in samplers for text in ui.size_texts(node_id)
             for match in [SIZE_TEXT.search(text or "")] if match for w, h in [match.groups()]}
    ui.console_errors()
    queued = ui.now()
    result = ui.js_async("await app.extensionManager.command.execute('Comfy.QueuePrompt'); return true;")
    assert result is True, result
    prompt_id = ui.wait_for("return window.__infinityWatch.executions.find(e => e.t >= arguments[0]"
                            " && e.type === 'execution_start')?.prompt_id", "the queued prompt never started",
                            60, queued)
    shot, frames_at_shot, shot_time = None, 0, None
    deadline = time.monotonic() + 300
    while not ui.js("return window.__infinityWatch.executions.some(e => e.prompt_id === arguments[0]"
                    " && e.type !== 'execution_start')", prompt_id):
        assert time.monotonic() < deadline, f"{ui.label} {example.name}: the run did not finish"
        frames = ui.js("return window.__infinityWatch.frames.filter(f => f.t >= arguments[0]).length", queued)
        if shot is None and frames >= 1:
            shot_time = ui.now()
            shot = shots_dir / f"{ui.version}_vue-{'on' if ui.vue else 'off'}_{example.stem}_mid-run.png"
            ui.driver.save_screenshot(str(shot))
            frames_at_shot = frames
        time.sleep(0.05)
    entry = ui.server.wait(prompt_id)
    watch = ui.js("const w = window.__infinityWatch; const t = arguments[0]; return {"
                  " frames: w.frames.filter(f => f.t >= t).map(f => f.hash),"
                  " progress: w.progress.filter(p => p.t >= t && p.prompt_id === arguments[1]),"
                  " finished: w.executions.find(e => e.prompt_id === arguments[1] && e.type !== 'execution_start')}",
                  queued, prompt_id)
    time.sleep(0.5)
    popups = ui.popups_since(queued)
    errors = ui.console_errors()
    ui.driver.save_screenshot(str(shots_dir / f"{ui.version}_vue-{'on' if ui.vue else 'off'}_{example.stem}_done.png"))
    updates = [p for p in watch["progress"] if p["node"] in samplers]
    between = [p for p in updates if 0 < p["value"] < p["max"]]
    frames = watch["frames"]
    _figure(f"previews {ui.label} {example.stem}: {len(frames)} frames ({len(set(frames))} distinct), "
            f"{len(between)} sampler progress updates between first and last scale "
            f"(scales {sorted({p['max'] for p in updates})}); mid-run screenshot {shot} at {frames_at_shot} frames")
    assert entry["status"]["status_str"] == "success", entry["status"]
    assert not popups, f"{ui.label} {example.name}: {popups}"
    assert not errors, f"{ui.label} {example.name}: {errors}"
    saved = json.loads(example.read_text())
    output_ids = {str(node["id"]) for node in saved["nodes"] if node["type"] in OUTPUT_NODES}
    assert output_ids and all(entry["outputs"].get(node_id, {}).get("images") for node_id in output_ids), \
        f"{example.name}: images missing for output nodes {sorted(output_ids)}: {list(entry['outputs'])}"
    images = ui.server.images(entry)
    assert all(image.mode == "RGB" and min(image.size) > 0 for image in images)
    if sizes:
        assert {image.size for image in images} <= sizes, f"images {[i.size for i in images]}, sampler shows {sizes}"
    assert updates, "the sampler reported no progress to the page"
    # Frames ride on progress updates between the first and last scale; the first sampled scale always gets
    # one, later ones as the previews' time budget allows.
    assert 1 <= len(frames) <= len(between), \
        f"{ui.label} {example.name}: {len(frames)} preview frames for {len(between)} progress updates"
    assert len(frames) == 1 or len(set(frames)) >= 2, "the preview never changed"
    assert shot is not None and shot_time < watch["finished"]["t"], "no screenshot while the run was going"
    overlaps = ui.overlapping_nodes()
    assert not overlaps, f"{ui.label} {example.name}: with the run's previews and images shown, nodes overlap: {overlaps}"


def test_the_preview_changes_on_the_sampler_during_a_1m_run(ui, shots_dir):
    """The text-to-image template at 1M (long enough for the previews' budget to pay for several frames):
    the page receives at least two different frames while the sampler runs, and a screenshot shows the
    sampler after the second one, before the run ends. The run watched is the second at 1M, as a user's
    next run is: in the first, the one-time set-up of the decoder's kernels for the new sizes falls inside
    the first frame, and the budget may then pay for no second one."""
    example = next(path for path in EXAMPLES if path.stem == "Infinity text to image")
    ui.load_from_template_browser(example)
    sampler = next(node["id"] for node in ui.graph_summary()["nodes"] if node["type"].startswith(SAMPLER_PREFIX))
    for run in ("first", "watched"):
        ui.js("const g = app.rootGraph ?? app.graph; const n = g.getNodeById(Number(arguments[0]));"
              "n.widgets.find(w => w.name === 'seed').value = arguments[1];"
              "const pixels = n.widgets.find(w => w.name === 'pixels'); pixels.value = '1M';"
              "pixels.callback?.(pixels.value);", sampler, next(_seed_counter))   # as a pick in the list does
        queued = ui.now()
        result = ui.js_async("await app.extensionManager.command.execute('Comfy.QueuePrompt'); return true;")
        assert result is True, result
        if run == "first":
            ui.wait_for("return window.__infinityWatch.executions.some(e => e.t >= arguments[0]"
                        " && e.type === 'execution_success')", f"{ui.label}: the first 1M run did not finish", 300,
                        queued)
    shot, shot_time, deadline = None, None, time.monotonic() + 300
    while not ui.js("return window.__infinityWatch.executions.some(e => e.t >= arguments[0]"
                    " && e.type !== 'execution_start')", queued):
        assert time.monotonic() < deadline, f"{ui.label}: the 1M run did not finish"
        frames = ui.js("return new Set(window.__infinityWatch.frames.filter(f => f.t >= arguments[0])"
                       ".map(f => f.hash)).size", queued)
        if shot is None and frames >= 2:
            shot_time = ui.now()
            shot = shots_dir / f"{ui.version}_vue-{'on' if ui.vue else 'off'}_1M_second-frame.png"
            ui.driver.save_screenshot(str(shot))
        time.sleep(0.05)
    watch = ui.js("const w = window.__infinityWatch; const t = arguments[0]; return {"
                  " frames: w.frames.filter(f => f.t >= t).map(f => f.hash),"
                  " finished: w.executions.find(e => e.t >= t && e.type !== 'execution_start')}", queued)
    _figure(f"previews {ui.label} text to image at 1M: {len(watch['frames'])} frames "
            f"({len(set(watch['frames']))} distinct); screenshot after the second {shot}")
    assert watch["finished"]["type"] == "execution_success", watch["finished"]
    assert len(set(watch["frames"])) >= 2, f"{ui.label}: the preview did not change during a 1M run"
    assert shot is not None and shot_time < watch["finished"]["t"], "no screenshot after the second frame"
    assert not ui.popups_since(queued) and not ui.console_errors()


def test_workflow_saved_before_the_v3_nodes_loads_with_its_values_and_runs(ui):
    """A UI workflow saved with the classic (pre-V3) nodes, opened as a file is (app.loadGraphData): every
    widget keeps its saved value, and it runs. Its nulls (floatingLinks, slot_index...) are the saved file's and
    make 1.27.10 raise its schema toast; any other toast, a dialog or a console error fails."""
    saved = json.loads(SAVED_BEFORE_V3.read_text())
    ui.console_errors()
    started = ui.now()
    result = ui.js_async("await app.loadGraphData(args[0]); return true;", saved)
    assert result is True, result
    time.sleep(1)
    graph = ui.graph_summary()
    loaded = {node["id"]: node for node in graph["nodes"]}
    shifted = [f"{node['type']} #{node['id']}: saved {node['widgets_values']}, loaded {loaded[str(node['id'])]['values']}"
               for node in saved["nodes"] if isinstance(node.get("widgets_values"), list)
               and loaded[str(node["id"])]["values"][:len(node["widgets_values"])] != node["widgets_values"]]
    assert not shifted, f"{ui.label}: {shifted}"
    before = set(ui.server.request("/history")[1])
    queued = ui.now()
    assert ui.js_async("await app.extensionManager.command.execute('Comfy.QueuePrompt'); return true;") is True
    prompt_id = ui.wait_for("return window.__infinityWatch.executions.find(e => e.t >= arguments[0]"
                            " && e.type === 'execution_start')?.prompt_id", "the queued prompt never started",
                            60, queued)
    entry = ui.server.wait(prompt_id)
    assert prompt_id not in before and entry["status"]["status_str"] == "success", entry["status"]
    assert [image.size for image in ui.server.images(entry)] == [(256, 256)]
    popups = [text for text in ui.popups_since(started) if "Invalid workflow against zod schema" not in text]
    assert not popups, f"{ui.label}: {popups}"
    assert not ui.console_errors()
