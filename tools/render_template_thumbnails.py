"""Render the template thumbnails (example_workflows/<name>.jpg) by running each template in a real ComfyUI.

    source <comfy env>/env.sh        # as for tests/real_comfyui/ (scripts/setup_comfyui_env.sh writes it)
    <comfy env>/venv/bin/python tools/render_template_thumbnails.py

Each template's API twin (tests/workflows/, written with the template by tools/build_example_workflows.py) is
queued on a ComfyUI server whose custom_nodes/ links this repository, with the models in models/ (the demo
model). The thumbnail is the template's last saved image (what the template is for: the text-to-image result,
the redrawn or extended picture), a full square THUMBNAIL_SIDE px JPEG, so every card in the template browser
is of one kind. Rerun it after the demo model changes.
"""
from __future__ import annotations

import io
import json
import logging
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tools"))

from comfyui_harness import COMFYUI_DIR, start_server, stop_server  # noqa: E402
from build_example_workflows import API_WORKFLOWS, EXAMPLE_GRAPHS, EXAMPLES  # noqa: E402

THUMBNAIL_SIDE = 256
JPEG_QUALITY = 90
PACK_FOLDER = "comfyui-infinity"
log = logging.getLogger("render_template_thumbnails")


def render_all() -> None:
    from PIL import Image

    if not COMFYUI_DIR:
        raise SystemExit("COMFYUI_DIR is not set: source the env.sh that scripts/setup_comfyui_env.sh wrote")
    base = Path(tempfile.mkdtemp(prefix="comfy_thumbnails_"))
    (base / "custom_nodes").mkdir()
    (base / "custom_nodes" / PACK_FOLDER).symlink_to(ROOT, target_is_directory=True)
    server = start_server(base, [])
    try:
        for title, (_, api_name) in EXAMPLE_GRAPHS.items():
            prompt = json.loads((API_WORKFLOWS / api_name).read_text())
            entry = server.wait(server.queue(prompt))
            if entry["status"].get("status_str") != "success":
                raise SystemExit(f"{title}: the run failed: {entry['status']}")
            saved = [node_id for node_id, node in prompt.items() if node["class_type"] == "SaveImage"]
            files = [png for node_id, png in server.image_files(entry) if node_id in saved]
            with Image.open(io.BytesIO(files[-1])) as image:
                square = image.convert("RGB").resize((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
            target = EXAMPLES / f"{title}.jpg"
            square.save(target, "JPEG", quality=JPEG_QUALITY)
            log.info("wrote %s", target.relative_to(ROOT))
    finally:
        stop_server(server)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    render_all()
