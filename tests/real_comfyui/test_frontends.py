"""The pack in ComfyUI's real frontends in headless Chromium: templates, Vue nodes on and off, previews
(see suite.py; frontend.py drives the page)."""
from __future__ import annotations

import json
import time

import pytest

from .frontend import frame_picture, picture_distance
from .frontend import ui  # noqa: F401 -- fixture
from .suite import (EXAMPLES, OUTPUT_NODES, PACK_FOLDER, SAMPLER_PREFIX, SAVED_BEFORE_V3, SIZE_TEXT,
                    figure)
from .suite import newest_server, server, shots_dir  # noqa: F401 -- fixtures


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


def test_template_browser_lists_the_pack_text_to_image_first(ui):
    """The pack's cards, in the order a user learns the templates (the web extension sorts the file list)."""
    ui.js("app.extensionManager.command.execute('Comfy.BrowseTemplates')")
    category = ui.wait_for(
        "return [...document.querySelectorAll('.p-dialog *, [role=\"dialog\"] *')].find(e => !e.children.length"
        " && e.textContent.trim() === arguments[0])", f"no '{PACK_FOLDER}' category in the template browser",
        30, PACK_FOLDER)
    category.click()
    names = [f"Infinity {title}" for title in ("Text to Image", "Image to Image", "Inpainting", "Outpainting")]
    shown = ui.wait_for(
        "const cards = [...document.querySelectorAll('[data-testid^=\"template-workflow-\"]')]"
        ".map(e => e.getAttribute('data-testid').slice('template-workflow-'.length));"
        " return cards.length >= arguments[0] ? cards : null;", "the pack's cards did not show", 30, len(names))
    ui.driver.find_element("tag name", "body").send_keys("\ue00c")    # Escape closes the dialog
    assert [name for name in shown if name in names] == names, f"{ui.label}: {shown}"


SAMPLER_EXAMPLES = [path for path in EXAMPLES
                    if any(node["type"].startswith(SAMPLER_PREFIX) for node in json.loads(path.read_text())["nodes"])]


@pytest.mark.parametrize("example", SAMPLER_EXAMPLES, ids=[path.stem for path in SAMPLER_EXAMPLES])
def test_sampler_shows_its_output_size(ui, example):
    """The sampler's "output W x H px" line is visible on the node and matches the server's size table for
    the node's aspect and pixel widgets (unless an encoded image is linked, whose schedule sets the size)."""
    if ui.kind == "bundled" and ui.vue:
        pytest.skip("1.27's Nodes 2.0 (a preview there) draws an output socket's name, not its label, and redraws "
                    "sockets only when their number changes; it has no other place for text that follows a widget")
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
        if not found and linked_image and any("image: the picture's size" in (text or "") for text in texts):
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
        size_widgets = ui.js("const g = app.rootGraph ?? app.graph; return g.getNodeById(arguments[0]).widgets"
                             ".filter(w => /size/.test(w.name) && w.type === 'combo').map(w => w.name)", node["id"])
        if size_widgets:   # the size is a socket label: plain text, no menu to open
            problems.append(f"#{node['id']}: the size is a drop-down widget {size_widgets}")
    assert not problems, f"{ui.label} {example.name}: {problems}"


def test_widgets_show_their_plain_display_names(ui):
    """Every widget of the text-to-image template's nodes is labelled with its schema display name ("temperature",
    not "tau"): 1.5x does it itself, 1.27 through the web extension. The label is what both node modes draw."""
    example = next(path for path in EXAMPLES if "Text to Image" in path.name)
    ui.load_from_template_browser(example)
    info = ui.server.request("/api/object_info")[1]
    shown = ui.js("const g = app.rootGraph ?? app.graph; return g.nodes.filter(n => n.type.startsWith('Infinity'))"
                  ".map(n => [n.type, (n.widgets ?? []).map(w => [w.name, w.label ?? w.name])]);")
    wrong = []
    for node_type, widgets in shown:
        inputs = {**info[node_type]["input"].get("required", {}), **info[node_type]["input"].get("optional", {})}
        for name, label in widgets:
            options = inputs.get(name, [None, {}])
            expected = (options[1] if len(options) > 1 and isinstance(options[1], dict) else {}).get("display_name")
            if expected and label != expected:
                wrong.append(f"{node_type}.{name} shows {label!r}, not {expected!r}")
    assert shown and not wrong, f"{ui.label}: {wrong}"


# Below this zoom the frontends draw nodes as boxes without text (LiteGraph.Canvas.MinFontSizeForLOD 8 px for a
# 14 px font); the core's own image template opens at about 0.73 in a 1600 x 1000 window.
READABLE_ZOOM = 0.73


@pytest.mark.parametrize("example", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_template_opens_readable_with_every_node_on_screen_and_wires_left_to_right(ui, example, shots_dir):
    """Loaded from the template browser in a 1600 x 1000 window: the zoom is at least READABLE_ZOOM and draws
    text, every node starts inside the canvas, and every wire runs from a node to one right of it (or below it
    in the same column), but the one that carries the first row's picture down to the second row."""
    ui.load_from_template_browser(example)
    time.sleep(0.5)
    ui.screenshot(shots_dir, example.stem, "loaded")
    view = ui.js("const c = app.canvas; const r = c.canvas.getBoundingClientRect();"
                 "return {scale: c.ds.scale, offset: [...c.ds.offset], width: r.width, height: r.height,"
                 " lod: c.low_quality ?? null, font: c.min_font_size_for_lod ?? null}")
    assert view["scale"] >= READABLE_ZOOM, f"{ui.label} {example.name}: opens at zoom {view['scale']:.2f}"
    if view["font"]:
        assert 14 * view["scale"] >= view["font"], f"{ui.label}: text drawn as boxes at zoom {view['scale']:.2f}"
    nodes = ui.js("const g = app.rootGraph ?? app.graph; return (g.nodes ?? g._nodes).map(n => ({id: n.id,"
                  " type: n.type, x: n.pos[0], y: n.pos[1], w: n.size[0]}))")
    scale, (ox, oy) = view["scale"], view["offset"]
    off_screen = [f"{n['type']} #{n['id']}" for n in nodes
                  if not (0 <= (n["x"] + ox) * scale < view["width"] and 0 <= (n["y"] + oy) * scale < view["height"])]
    assert not off_screen, f"{ui.label} {example.name}: starts off-screen at zoom {scale:.2f}: {off_screen}"
    by_id = {str(n["id"]): n for n in nodes}     # 1.5x gives ids as strings, 1.27 as numbers
    saved = json.loads(example.read_text())
    first_decode = min((n["id"] for n in saved["nodes"] if n["type"] == "InfinityTokenizerDecode"), default=None)
    backwards = [f"{by_id[str(origin)]['type']} #{origin} -> {by_id[str(target)]['type']} #{target}"
                 for _, origin, _, target, _, _ in saved["links"]
                 if by_id[str(target)]["x"] < by_id[str(origin)]["x"] and origin != first_decode]
    assert not backwards, f"{ui.label} {example.name}: wires run right to left: {backwards}"


_seed_counter = iter(range(1_000_000, 2_000_000))


@pytest.mark.parametrize("example", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_example_workflow_queued_in_the_frontend_previews_and_returns_images(ui, example, shots_dir):
    """Loaded from the template browser, every sampler given a fresh seed (so the run really samples), queued
    with the Run command: previews arrive on the page's websocket during sampling (a screenshot is taken
    mid-run), no toast, dialog or console error shows, and every output node's images come back."""
    ui.load_from_template_browser(example)
    opened = ui.js("return {scale: app.canvas.ds.scale, offset: [...app.canvas.ds.offset]}")
    graph = ui.graph_summary()
    samplers = [node["id"] for node in graph["nodes"] if node["type"].startswith(SAMPLER_PREFIX)]
    for node_id in samplers:
        ui.js("const g = app.rootGraph ?? app.graph; const n = g.getNodeById(Number(arguments[0]));"
              "n.widgets.find(w => w.name === 'seed').value = arguments[1];", node_id, next(_seed_counter))
    sizes = {(int(w), int(h)) for node_id in samplers for text in ui.size_texts(node_id)
             for match in [SIZE_TEXT.search(text or "")] if match for w, h in [match.groups()]}
    ui.js("const ds = app.canvas.ds; ds.scale = arguments[0].scale; ds.offset[0] = arguments[0].offset[0];"
          " ds.offset[1] = arguments[0].offset[1]; app.canvas.setDirty(true, true);", opened)   # the whole graph
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
            shot = ui.screenshot(shots_dir, example.stem, "mid-run")
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
    ui.screenshot(shots_dir, example.stem, "after-a-run")
    updates = [p for p in watch["progress"] if p["node"] in samplers]
    between = [p for p in updates if 0 < p["value"] < p["max"]]
    frames = watch["frames"]
    figure(f"previews {ui.label} {example.stem}: {len(frames)} frames ({len(set(frames))} distinct), "
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
    # Frames ride on progress updates: the first sampled scale and the last always get one, those between
    # as the previews' time budget allows.
    assert 2 * len(samplers) <= len(frames) <= len(between) + len(samplers), \
        f"{ui.label} {example.name}: {len(frames)} preview frames for {len(between)} progress updates"
    assert len(frames) == 1 or len(set(frames)) >= 2, "the preview never changed"
    assert shot is not None and shot_time < watch["finished"]["t"], "no screenshot while the run was going"
    # No stale frame: a frontend keeps a node's last preview after the run, so the last frame must show the
    # finished image: the last sampler's last frame is nearer an output image than its own first frame.
    last_sampler = max(updates, key=lambda p: p["t"])["node"]
    started_at = min(p["t"] for p in updates if p["node"] == last_sampler)
    run_frames = [frame_picture(f["data"]) for f in ui.js("return window.__infinityWatch.frames")
                  if f["t"] >= started_at]
    to_output = min(picture_distance(run_frames[-1], image) for image in images)
    to_first = picture_distance(run_frames[-1], run_frames[0])
    figure(f"last frame {ui.label} {example.stem}: {len(run_frames)} frames; the last is {to_output:.1f} levels from "
           f"the output, {to_first:.1f} from the first frame")
    assert len(run_frames) >= 2 and to_output < to_first, \
        f"{ui.label} {example.name}: the last preview frame is not the finished image ({to_output:.1f} levels from " \
        f"the output, {to_first:.1f} from the first frame)"
    if ui.kind == "bundled" and ui.vue:
        return   # 1.27's Nodes 2.0 (a preview there) draws nodes wider and taller than saved: the README's known flaw
    overlaps = ui.overlapping_nodes()
    assert not overlaps, f"{ui.label} {example.name}: with the run's previews and images shown, nodes overlap: {overlaps}"


def test_prompt_warning_comes_as_a_toast_with_the_whole_message(ui, shots_dir):
    """A prompt with a word the demo's text encoder does not know: after the run a warning toast names the word
    and says it is ignored (the whole message, not a box cut on the node), and the run still succeeds."""
    example = next(path for path in EXAMPLES if path.stem == "Infinity Text to Image")
    ui.load_from_template_browser(example)
    ui.js("const g = app.rootGraph ?? app.graph; const n = (g.nodes ?? g._nodes).find(n => n.type === arguments[0]);"
          "n.widgets.find(w => w.name === 'prompt').value = arguments[1];",
          "InfinityTextEncode", "a red dragon at the top left on a blue background")
    queued = ui.now()
    assert ui.js_async("await app.extensionManager.command.execute('Comfy.QueuePrompt'); return true;") is True
    finished = ui.wait_for("return window.__infinityWatch.executions.find(e => e.t >= arguments[0]"
                           " && e.type !== 'execution_start')", f"{ui.label}: the run did not finish", 300, queued)
    assert finished["type"] == "execution_success", finished
    toasts = ui.wait_for("return window.__infinityWatch.toasts.filter(e => e.t >= arguments[0]"
                         " && e.text.includes('dragon')).map(e => e.text)", f"{ui.label}: no toast names the word",
                         10, queued)
    ui.screenshot(shots_dir, "prompt-warning", "toast")
    assert any("ignored" in text for text in toasts), toasts


def test_the_preview_changes_on_the_sampler_during_a_1m_run(ui, shots_dir):
    """The text-to-image template at 1M (long enough for the previews' budget to pay for several frames):
    the page receives at least two different frames while the sampler runs, and a screenshot shows the
    sampler after the second one, before the run ends. The demo was trained at 0.06M only, so the run warns
    with a toast that names 1M and the size the model knows, and shows no other toast or dialog. The run
    watched is the second at 1M, as a user's
    next run is: in the first, the one-time set-up of the decoder's kernels for the new sizes falls inside
    the first frame, and the budget may then pay for no second one."""
    example = next(path for path in EXAMPLES if path.stem == "Infinity Text to Image")
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
            shot = ui.screenshot(shots_dir, "1M", "second-frame")
        time.sleep(0.05)
    watch = ui.js("const w = window.__infinityWatch; const t = arguments[0]; return {"
                  " frames: w.frames.filter(f => f.t >= t).map(f => f.hash),"
                  " finished: w.executions.find(e => e.t >= t && e.type !== 'execution_start')}", queued)
    figure(f"previews {ui.label} text to image at 1M: {len(watch['frames'])} frames "
            f"({len(set(watch['frames']))} distinct); screenshot after the second {shot}")
    assert watch["finished"]["type"] == "execution_success", watch["finished"]
    assert len(set(watch["frames"])) >= 2, f"{ui.label}: the preview did not change during a 1M run"
    assert shot is not None and shot_time < watch["finished"]["t"], "no screenshot after the second frame"
    # the page's watcher records a toast each time the frontend inserts one (1.58.1 re-inserts a stack when a
    # second toast of the same text comes; 1.27.10 inserts an empty one first), so compare the texts shown
    popups = ui.popups_since(queued)
    shown = {popup for popup in popups if popup.split(": ", 1)[1]}
    assert len(shown) == 1 and all(words in next(iter(shown)) for words in
                                   ("not trained at the pixel budget 1M", "it was trained at 0.06M")), \
        f"{ui.label}: a 1M run of the demo shows one toast, the trained-size warning: {popups}"
    assert not ui.console_errors()


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
