"""Take the screenshots in docs/screenshots/: every template in frontends 1.27 (bundled) and 1.5x (newest),
Nodes 2.0 on and off, as loaded from the template browser, during a run and after it, and the toast of a
prompt warning.

    source <comfy env>/env.sh        # as for tests/real_comfyui/ (scripts/setup_comfyui_env.sh writes it)
    <comfy env>/venv/bin/python tools/take_screenshots.py

They are taken by the browser tests that check the same views (tests/real_comfyui/test_frontends.py: the
template's zoom at load, and its run), with COMFYUI_SCREENSHOTS pointing at docs/screenshots/; old ones are
removed first. Rerun it after the templates, the web extension or the demo model change.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "docs" / "screenshots"
TESTS = "readable or queued_in_the_frontend or prompt_warning or during_a_1m_run"   # every test that saves one


def main() -> int:
    if not os.environ.get("COMFYUI_DIR"):
        raise SystemExit("COMFYUI_DIR is not set: source the env.sh that scripts/setup_comfyui_env.sh wrote")
    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.jpg"):
        old.unlink()
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "tests/real_comfyui/test_frontends.py", "-k", TESTS]
    return subprocess.run(command, cwd=ROOT, env={**os.environ, "COMFYUI_SCREENSHOTS": str(SHOTS)}).returncode


if __name__ == "__main__":
    raise SystemExit(main())
