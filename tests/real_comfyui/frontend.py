"""The real frontends in headless Chromium, as the browser tests drive them: a `Frontend` per (frontend,
node mode), the `ui` fixture that opens one, and the preview frames the page's websocket carried."""
from __future__ import annotations

import base64
import io
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from comfyui_harness import chromium_paths, frontend_version, newest_frontend_root, start_chromium
from .suite import PACK_FOLDER, PAGE_SETTLE_S

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
# Screenshots (COMFYUI_SCREENSHOTS, else a temporary folder; tools/take_screenshots.py writes docs/screenshots/):
# small JPEGs that still show a node's text
SHOT_WIDTH = 1200
SHOT_QUALITY = 72
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

    def screenshot(self, folder: Path, subject: str, state: str) -> Path:
        """The window as a small JPEG (SHOT_WIDTH px wide): <folder>/<version>_vue-<on|off>_<subject>_<state>.jpg,
        spaces in `subject` as dashes."""
        from PIL import Image

        image = Image.open(io.BytesIO(self.driver.get_screenshot_as_png())).convert("RGB")
        image = image.resize((SHOT_WIDTH, round(image.height * SHOT_WIDTH / image.width)), Image.LANCZOS)
        path = folder / f"{self.version}_vue-{'on' if self.vue else 'off'}_{subject.replace(' ', '-')}_{state}.jpg"
        image.save(path, quality=SHOT_QUALITY)
        return path

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


def frame_picture(encoded: str):
    """A preview frame as the websocket carried it (event type, then a format word or metadata) -> PIL image."""
    data = base64.b64decode(encoded)
    return Image.open(io.BytesIO(data[data.index(b"\xff\xd8"):])).convert("RGB")


def picture_distance(a, b, side: int = 16) -> float:
    """Mean absolute difference in 0..255 levels of two pictures box-filtered to side x side."""
    small = [np.asarray(p.convert("RGB").resize((side, side), 4), dtype=np.float32) for p in (a, b)]   # 4: BOX
    return float(np.abs(small[0] - small[1]).mean())
