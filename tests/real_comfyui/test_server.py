"""The pack inside a real ComfyUI server, through its HTTP API and websocket (see suite.py)."""
from __future__ import annotations

import io
import json
import math
import re
import time
from urllib.parse import quote

import pytest

from comfyui_harness import run_watched
import quant_files
from infinity_core.weight_formats.gguf_blocks import quantize_k
from standin_models import DEMO_NAMES, FIXTURES, TINY_NAMES, build_standin_models
from .suite import (BASIC_API, EXAMPLES, EXTRA_PATHS_MODEL, MISMATCHED_VAE, NODE_IDS, OUTPUT_NODES, PACK_FOLDER, REPO,
                    RSS_GROWTH_LIMIT, WORKFLOWS, api_workflow, figure, output_size, pixels_of, sampler_node_id,
                    sampler_inputs, serve)
from .suite import server  # noqa: F401 -- fixtures


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
    prompt = api_workflow(workflow)
    entry = server.wait(server.queue(prompt))
    assert entry["status"]["status_str"] == "success", entry["status"]
    settings = sampler_inputs(prompt)
    width, height, _ = output_size(server, settings)
    images = server.images(entry)
    outputs = sum(1 for node in prompt.values() if node["class_type"] in OUTPUT_NODES)
    assert len(images) == settings["batch_size"] * outputs
    assert {image.size for image in images} == {(width, height)}
    assert {image.mode for image in images} == {"RGB"}


def test_free_memory_releases_the_models_and_the_same_seed_gives_the_same_image(server):
    """POST /free (the "free model and node cache" button) drops the models: the next run reads them
    again and, with the same seed, draws the very same image."""
    prompt = api_workflow(BASIC_API)
    sampler_inputs(prompt)["seed"] = 1234
    first = server.images(server.wait(server.queue(prompt)))[0]
    reads = server.log_text().count("loaded transformer file")
    assert server.request("/free", {"unload_models": True, "free_memory": True})[0] == 200
    time.sleep(1.5)   # the prompt worker applies the flags when it wakes up
    second = server.images(server.wait(server.queue(prompt)))[0]
    assert server.log_text().count("loaded transformer file") == reads + 1
    assert first.tobytes() == second.tobytes()


# quantized files of the stand-in transformer, made the ecosystem's way (tests/quant_files.py)
QUANTIZED_FILES = {
    "tiny_Q8_0.gguf": lambda source, target: quant_files.write_gguf(source, target, "Q8_0"),
    "tiny_Q4_K.gguf": lambda source, target: quant_files.write_gguf(source, target, "Q4_K",
                                                                    raw_blocks=lambda rows: quantize_k(rows, "Q4_K")),
    "tiny_comfy_fp8.safetensors": quant_files.write_comfy_fp8,
    "tiny_comfy_int8.safetensors": quant_files.write_comfy_int8_rows,
}


def test_quantized_files_are_listed_and_each_one_generates(server):
    """A Q8_0 and a Q4_K GGUF, a ComfyUI fp8 and an int8 file in models/infinity: the transformer loader
    lists them, and the text-to-image workflow runs with each (with the stand-in's VAE and text encoder)."""
    models = server.log.parent / "models"                  # the server's --base-directory holds its log
    build_standin_models(models, TINY_NAMES)
    for name, write in QUANTIZED_FILES.items():
        write(FIXTURES / "infinity_tiny.safetensors", models / "infinity" / name)
    options, _ = _combo(server.request("/object_info")[1]["InfinityTransformerLoader"]["input"]["required"]["model_file"])
    assert set(QUANTIZED_FILES) <= set(options)
    for name in QUANTIZED_FILES:
        prompt = api_workflow(BASIC_API)
        for node in prompt.values():
            inputs = node["inputs"]
            inputs.update({key: value for key, value in (("model_file", name), ("vae_file", TINY_NAMES.vae),
                                                         ("text_encoder_folder", TINY_NAMES.text_encoder))
                           if key in inputs})
        entry = server.wait(server.queue(prompt))
        assert entry["status"]["status_str"] == "success", (name, entry["status"])
        width, height, _ = output_size(server, sampler_inputs(prompt))
        assert [image.size for image in server.images(entry)] == [(width, height)], name
        assert f"loaded transformer file '{models / 'infinity' / name}'" in server.log_text(), name


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
    prompt = api_workflow(workflow)
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
        prompt = api_workflow(workflow)
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
    figure(f"bad settings: {tried} tried, {crashes} crashes, {named} named the widget")
    assert crashes == 0 and named == tried, "\n".join(problems)


def test_wrong_vae_is_refused_naming_both_files(server):
    prompt = api_workflow(BASIC_API)
    prompt["2"]["inputs"]["vae_file"] = MISMATCHED_VAE
    entry = server.wait(server.queue(prompt))
    error = next(m[1] for m in entry["status"]["messages"] if m[0] == "execution_error")
    assert error["node_type"] == "InfinityTokenizerDecode"
    assert MISMATCHED_VAE in error["exception_message"] and DEMO_NAMES.transformer in error["exception_message"]


def test_interrupt_stops_sampling_and_the_next_run_reuses_the_loaded_models(server):
    warm = server.wait(server.queue(api_workflow(BASIC_API)))
    assert warm["status"]["status_str"] == "success"
    reads_before = server.log_text().count("loaded transformer file")
    slow = api_workflow(BASIC_API)
    sampler_inputs(slow).update(pixels="1M", seed=99)
    prompt_id = server.queue(slow)
    server.wait_until_running()
    time.sleep(2)
    asked = time.monotonic()
    assert server.request("/interrupt", {})[0] == 200
    entry = server.wait(prompt_id)
    stopped_after = time.monotonic() - asked
    assert [m[0] for m in entry["status"]["messages"]][-1] == "execution_interrupted"
    assert stopped_after < 30, f"sampling went on for {stopped_after:.1f} s after the interrupt"
    again = api_workflow(BASIC_API)
    sampler_inputs(again)["seed"] = 100
    entry = server.wait(server.queue(again))
    assert entry["status"]["status_str"] == "success" and len(server.images(entry)) == 1
    assert server.log_text().count("loaded transformer file") == reads_before


def test_interrupt_at_every_scale_then_the_rerun_gives_the_same_bytes(server):
    """For each scale k, a run interrupted as soon as the sampler reports k scales done (the interrupt lands at
    the next scale, or in the next node when that report is the last), then the same prompt again: the rerun's
    pixels equal those of an uninterrupted run of that prompt (seed 7000 + k). The prompts alternate, so
    ComfyUI's cache (the last prompt's outputs) never answers for the sampler."""
    base = api_workflow(BASIC_API)
    sampler_id = sampler_node_id(base)
    _, _, scales = output_size(server, sampler_inputs(base))
    prompts = []
    for scale in range(scales):
        prompt = json.loads(json.dumps(base))
        sampler_inputs(prompt)["seed"] = 7000 + scale
        prompts.append(prompt)
    references = []
    for prompt in prompts:
        entry = server.wait(server.queue(prompt))
        assert entry["status"]["status_str"] == "success", entry["status"]
        references.append(pixels_of(server, entry))
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
        elif pixels_of(server, entry) != references[scale]:
            problems.append(f"scale {scale}: the rerun's pixels differ from the uninterrupted run's")
        else:
            identical += 1
    figure(f"interrupt: {scales} scales, stopped at (sampler progress@node) {stopped_after}, "
            f"{identical}/{scales} reruns identical to the uninterrupted run")
    assert server.alive() and not problems, "\n".join(problems)


def _with_preview_vae(prompt: dict) -> dict:
    """The prompt with the VAE loader also wired into the sampler's optional vae input (previews)."""
    vae_loader = next(key for key, node in prompt.items() if node["class_type"] == "InfinityVAELoader")
    sampler_inputs(prompt)["vae"] = [vae_loader, 0]
    return prompt


def test_previews_arrive_while_the_sampler_runs(server):
    """Each preview rides on a progress update of the sampler (ProgressBar.update_absolute with an image): the
    first sampled scale's, the last scale's (the finished image, which the page keeps showing), and at most
    one on each update between;
    they are images no larger than --preview-size, and they change from scale to scale. How many scales get a
    frame is the previews' time budget: printed."""
    from PIL import Image

    prompt = _with_preview_vae(api_workflow(BASIC_API))
    sampler_inputs(prompt)["seed"] = 8101
    # 1M: a run long enough for the previews' budget (3 % of the run) to pay for several frames on any machine;
    # at 0.06M the demo model samples in under 100 ms on a quiet CPU, and the budget pays for the first frame only
    sampler_inputs(prompt)["pixels"] = "1M"
    sampler_id = sampler_node_id(prompt)
    _, _, scales = output_size(server, sampler_inputs(prompt))
    run = run_watched(server, prompt)
    assert run.outcome == "execution_success", run.last_message
    sampler_updates = [i for i, (node, _, _) in enumerate(run.progress) if node == sampler_id]
    before_last = [i for i in sampler_updates if 0 < run.progress[i][1] < scales]
    distinct = len(set(run.previews))
    figure(f"previews over the websocket (API run, {scales} scales): {len(run.previews)} frames, {distinct} distinct, "
            f"{len(before_last)} progress updates between the first and the last scale")
    assert sampler_updates and run.progress[sampler_updates[-1]][1] == scales, "the sampler's progress never ended"
    assert 2 <= len(run.previews) <= len(before_last) + 1, \
        f"{len(run.previews)} preview frames for {len(before_last)} progress updates and the last"
    assert run.preview_after[0] <= sampler_updates[-1], "the first preview came after sampling ended"
    # the last frame rides on the last scale's update: what the page keeps showing is the finished image
    assert run.preview_after[-1] == sampler_updates[-1] + 1, "no frame with the sampler's last scale"
    assert len(run.previews) == 1 or distinct >= 2, "every preview frame is the same picture"
    for frame in run.previews:
        image = Image.open(io.BytesIO(frame))
        image.load()
        assert 0 < max(image.size) <= 512   # --preview-size's default


def test_preview_method_none_sends_no_previews():
    with serve(["--preview-method", "none"]) as running:
        prompt = _with_preview_vae(api_workflow(BASIC_API))
        run = run_watched(running, prompt)
        assert run.outcome == "execution_success", run.last_message
        assert run.node_progress(sampler_node_id(prompt)), "the sampler reported no progress"
        assert run.previews == []


def test_fifty_prompts_keep_the_server_memory_flat_and_the_outputs_right(server):
    base = api_workflow(BASIC_API)
    width, height, _ = output_size(server, sampler_inputs(base))

    def with_seed(seed: int) -> dict:
        prompt = json.loads(json.dumps(base))
        sampler_inputs(prompt)["seed"] = seed
        return prompt

    warm_pixels = None
    for seed in range(9000, 9005):
        entry = server.wait(server.queue(with_seed(seed)))
        assert entry["status"]["status_str"] == "success", entry["status"]
        warm_pixels = warm_pixels or pixels_of(server, entry)
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
    figure(f"memory: RSS {rss_before / 2**20:.0f} MB after warm-up, {rss_after / 2**20:.0f} MB after 50 prompts "
            f"(growth {growth / 2**20:+.1f} MB, limit {RSS_GROWTH_LIMIT / 2**20:.0f})")
    assert pixels_of(server, again) == warm_pixels, "seed 9000 draws a different image after 50 prompts"
    assert growth < RSS_GROWTH_LIMIT


