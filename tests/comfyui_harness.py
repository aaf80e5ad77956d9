"""A real ComfyUI server and its real frontend, driven from tests/real_comfyui/.

Stdlib only on the test side (urllib, a small websocket client), plus Selenium for the browser part, so the
suite needs nothing that the pack does not already need. Every setting comes from environment variables:

    COMFYUI_DIR            a ComfyUI source tree (main.py, nodes.py, comfy/, ...); the suite skips without it
    COMFYUI_PYTHON         the interpreter that runs the server (default: the one running the tests)
    COMFYUI_PYTHONPATH     PYTHONPATH for the server process only (e.g. a torchvision import stub)
    COMFYUI_FRONTEND_ROOT  a second frontend to test (--front-end-root): an unzipped comfyui-frontend-package
                           wheel or its comfyui_frontend_package/static folder
    COMFYUI_SCREENSHOTS    where browser screenshots go (default: a pytest temporary folder)
    CHROMIUM_BIN, CHROMEDRIVER_BIN   default /usr/bin/chromium and /usr/bin/chromedriver
"""
from __future__ import annotations

import base64
import io
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
COMFYUI_PYTHON = os.environ.get("COMFYUI_PYTHON", sys.executable)
STARTUP_TIMEOUT_S = 180
RUN_TIMEOUT_S = 300
FINISHED = ("execution_success", "execution_error", "execution_interrupted")


def server_env() -> dict:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if os.environ.get("COMFYUI_PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["COMFYUI_PYTHONPATH"]
    return env


def newest_frontend_root() -> Path | None:
    """The static folder of COMFYUI_FRONTEND_ROOT (the folder that holds index.html), or None."""
    root = os.environ.get("COMFYUI_FRONTEND_ROOT")
    if not root:
        return None
    for candidate in (Path(root), Path(root) / "comfyui_frontend_package" / "static"):
        if (candidate / "index.html").exists():
            return candidate
    raise FileNotFoundError(f"COMFYUI_FRONTEND_ROOT={root} holds no index.html (nor comfyui_frontend_package/static/)")


def frontend_version(static_root: Path) -> str:
    """The version in the wheel's dist-info beside `static_root`, else the folder name."""
    for info in static_root.parent.parent.glob("comfyui_frontend_package-*.dist-info"):
        return info.name.removeprefix("comfyui_frontend_package-").removesuffix(".dist-info")
    return static_root.name


# --- the server ------------------------------------------------------------------------------------------------

@dataclass
class Server:
    url: str
    log: Path
    process: subprocess.Popen

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def request(self, path: str, body: dict | None = None, timeout: float = 60):
        """(HTTP status, parsed JSON or raw bytes) of GET (body None) or POST (JSON body)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, raw, kind = response.status, response.read(), response.headers.get_content_type()
        except urllib.error.HTTPError as error:
            status, raw, kind = error.code, error.read(), error.headers.get_content_type()
        return status, (json.loads(raw) if kind == "application/json" and raw else raw)

    def alive(self) -> bool:
        if self.process.poll() is not None:
            return False
        try:
            return self.request("/system_stats", timeout=10)[0] == 200
        except OSError:
            return False

    def rss_bytes(self) -> int:
        """Resident set size of the server process (Linux /proc)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS line")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def queue(self, prompt: dict, client_id: str = "infinity-tests") -> str:
        status, answer = self.request("/prompt", {"prompt": prompt, "client_id": client_id})
        assert status == 200, answer
        return answer["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = RUN_TIMEOUT_S) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _, history = self.request(f"/history/{prompt_id}")
            if prompt_id in history and (history[prompt_id]["status"].get("completed")
                                         or history[prompt_id]["status"].get("status_str") == "error"):
                return history[prompt_id]
            time.sleep(0.1)
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout} s")

    def wait_until_running(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.request("/queue")[1]["queue_running"]:
                return
            time.sleep(0.05)
        raise TimeoutError("the prompt never started")

    def image_files(self, entry: dict) -> list[tuple[str, bytes]]:
        """(output node id, PNG bytes) of every image output of a finished prompt, fetched through /view."""
        found = []
        for node_id, output in sorted(entry["outputs"].items()):
            for image in output.get("images", []):
                status, png = self.request("/view?" + urllib.parse.urlencode(image))
                assert status == 200, image
                found.append((node_id, png))
        return found

    def images(self, entry: dict) -> list:
        """The PIL images of every image output of a finished prompt."""
        from PIL import Image

        return [Image.open(io.BytesIO(png)) for _, png in self.image_files(entry)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(base: Path, extra_args: list[str]) -> Server:
    """ComfyUI on 127.0.0.1 with `base` as --base-directory; returns once /system_stats answers."""
    port = free_port()
    log = base / f"server_{port}.log"
    command = [COMFYUI_PYTHON, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
               "--disable-auto-launch", "--base-directory", str(base), "--database-url", "sqlite:///:memory:",
               *extra_args]
    with open(log, "wb") as log_file:
        process = subprocess.Popen(command, cwd=COMFYUI_DIR, env=server_env(), stdout=log_file,
                                   stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", log, process)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"ComfyUI exited with {process.returncode}:\n{server.log_text()[-3000:]}")
        try:
            if server.request("/system_stats", timeout=5)[0] == 200:
                return server
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop_server(server)
            raise RuntimeError(f"ComfyUI did not answer within {STARTUP_TIMEOUT_S} s:\n{server.log_text()[-3000:]}")
        time.sleep(0.25)


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


# --- the websocket: progress messages and binary preview frames ------------------------------------------------

class ComfyWebSocket:
    """A minimal RFC 6455 client for ComfyUI's /ws (text and binary messages, pings answered)."""

    def __init__(self, server: Server, client_id: str, timeout: float = RUN_TIMEOUT_S):
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /ws?clientId={client_id} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
                           f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self._exact(1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(f"websocket upgrade refused: {head[:200]!r}")

    def _exact(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise ConnectionError("the server closed the websocket")
            data += chunk
        return data

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        length = bytes([0x80 | len(payload)]) if len(payload) < 126 else bytes([0x80 | 126]) + struct.pack(">H", len(payload))
        masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        self.sock.sendall(bytes([0x80 | opcode]) + length + mask + masked)

    def receive(self) -> tuple[int, bytes]:
        """(opcode of the message: 1 text, 2 binary, payload) of the next whole data message."""
        message, opcode = b"", None
        while True:
            head, length_byte = self._exact(2)
            frame_opcode, length = head & 0x0F, length_byte & 0x7F
            if length == 126:
                length = struct.unpack(">H", self._exact(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", self._exact(8))[0]
            payload = self._exact(length)
            if frame_opcode == 8:
                raise ConnectionError("the server closed the websocket")
            if frame_opcode == 9:
                self._send(10, payload)
                continue
            if frame_opcode == 10:
                continue
            opcode = frame_opcode if opcode is None else opcode
            message += payload
            if head & 0x80:
                return opcode, message

    def close(self) -> None:
        self.sock.close()


# Binary message types of ComfyUI's protocol.py that carry a preview image.
PREVIEW_IMAGE, PREVIEW_IMAGE_WITH_METADATA = 1, 4


@dataclass
class WatchedRun:
    """What the websocket showed for one prompt."""
    prompt_id: str
    outcome: str                                                 # one of FINISHED
    progress: list[tuple[str, int, int]] = field(default_factory=list)   # (node id, value, max)
    previews: list[bytes] = field(default_factory=list)         # preview image bytes (JPEG/PNG), in order
    preview_after: list[int] = field(default_factory=list)     # progress messages received before each preview
    last_message: dict = field(default_factory=dict)

    def node_progress(self, node_id: str) -> list[int]:
        return [value for node, value, _ in self.progress if node == node_id]


def preview_image_bytes(message: bytes) -> bytes | None:
    """The image inside a binary preview message, or None for other binary messages."""
    kind = struct.unpack(">I", message[:4])[0]
    if kind == PREVIEW_IMAGE:
        return message[8:]                                      # event type, image format, image
    if kind == PREVIEW_IMAGE_WITH_METADATA:
        metadata_length = struct.unpack(">I", message[4:8])[0]
        return message[8 + metadata_length:]
    return None


def run_watched(server: Server, prompt: dict, interrupt_at: tuple[str, int] | None = None) -> WatchedRun:
    """Queue `prompt` on a fresh websocket client and record its progress and previews until it finishes.
    interrupt_at=(node id, value): POST /interrupt as soon as that node reports progress of at least that
    value (a node may leave out updates that come too close together)."""
    client_id = uuid.uuid4().hex
    socket_ = ComfyWebSocket(server, client_id)
    try:
        prompt_id = server.queue(prompt, client_id=client_id)
        run = WatchedRun(prompt_id, outcome="")
        interrupted = False
        while True:
            opcode, message = socket_.receive()
            if opcode == 2:
                image = preview_image_bytes(message)
                if image is not None:
                    run.previews.append(image)
                    run.preview_after.append(len(run.progress))
                continue
            event = json.loads(message)
            data = event.get("data", {})
            if data.get("prompt_id") not in (None, prompt_id):
                continue
            if event["type"] == "progress":
                run.progress.append((str(data["node"]), data["value"], data["max"]))
                if (interrupt_at is not None and not interrupted and str(data["node"]) == interrupt_at[0]
                        and data["value"] >= interrupt_at[1]):
                    assert server.request("/interrupt", {})[0] == 200
                    interrupted = True
            elif event["type"] in FINISHED and data.get("prompt_id") == prompt_id:
                run.outcome, run.last_message = event["type"], data
                return run
    finally:
        socket_.close()


# --- the browser -----------------------------------------------------------------------------------------------

# Installed before any page script runs. It records every toast and dialog that enters the DOM (PrimeVue's
# .p-toast-message/.p-dialog in older frontends, role=alert list items and role=dialog in newer ones), every
# binary websocket message that carries a preview image (types PREVIEW_IMAGE and PREVIEW_IMAGE_WITH_METADATA)
# with a hash of its bytes, the progress and execution messages,
# and every string drawn with fillText on a canvas (where classic LiteGraph nodes draw their text).
WATCH_SCRIPT = r"""
(() => {
  const watch = {toasts: [], dialogs: [], frames: [], progress: [], executions: [], drawn: new Set()};
  window.__infinityWatch = watch;
  const TOAST = '.p-toast-message, li[role="alert"]';
  const DIALOG = '.p-dialog, [role="dialog"], [role="alertdialog"]';
  const record = (element, list) => {
    const entry = {t: performance.now(), text: ''};
    watch[list].push(entry);
    const read = () => { entry.text = (element.innerText || element.textContent || '').trim().slice(0, 2000); };
    read();
    setTimeout(read, 300);
  };
  new MutationObserver((mutations) => {
    for (const mutation of mutations) for (const node of mutation.addedNodes) {
      if (!(node instanceof Element)) continue;
      for (const [selector, list] of [[TOAST, 'toasts'], [DIALOG, 'dialogs']]) {
        if (node.matches(selector)) record(node, list);
        node.querySelectorAll(selector).forEach((element) => record(element, list));
      }
    }
  }).observe(document, {childList: true, subtree: true});
  const hash = (buffer) => {
    const bytes = new Uint8Array(buffer);
    let h = 0x811c9dc5;
    for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193) >>> 0;
    return h.toString(16) + ':' + bytes.length;
  };
  const base64 = (buffer) => {
    const bytes = new Uint8Array(buffer);
    let text = '';
    for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(text);
  };
  const NativeWebSocket = window.WebSocket;
  window.WebSocket = class extends NativeWebSocket {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (event) => {
        const t = performance.now();
        if (typeof event.data !== 'string') {
          const keep = (buffer) => {
            const kind = buffer.byteLength >= 4 ? new DataView(buffer).getUint32(0) : 0;
            if (kind === 1 || kind === 4) watch.frames.push({t, kind, hash: hash(buffer), data: base64(buffer)});
          };
          if (event.data instanceof ArrayBuffer) keep(event.data);
          else event.data.arrayBuffer().then(keep);
          return;
        }
        let message;
        try { message = JSON.parse(event.data); } catch (error) { return; }
        const data = message.data || {};
        if (message.type === 'progress') watch.progress.push({t, node: String(data.node), value: data.value, max: data.max, prompt_id: data.prompt_id});
        if (['execution_start', 'execution_success', 'execution_error', 'execution_interrupted'].includes(message.type))
          watch.executions.push({t, type: message.type, prompt_id: data.prompt_id});
      });
    }
  };
  const fillText = CanvasRenderingContext2D.prototype.fillText;
  CanvasRenderingContext2D.prototype.fillText = function (text, ...rest) {
    if (watch.drawn.size < 20000) watch.drawn.add(String(text));
    return fillText.call(this, text, ...rest);
  };
})();
"""

CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1600,1000")   # an artist's laptop window


def chromium_paths() -> tuple[str, str]:
    return (os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium"),
            os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver"))


def start_chromium():
    """(Selenium driver with WATCH_SCRIPT installed, its temporary profile folder)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="chromium_profile_")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": WATCH_SCRIPT})
    driver.set_page_load_timeout(120)
    driver.set_script_timeout(120)
    return driver, profile
