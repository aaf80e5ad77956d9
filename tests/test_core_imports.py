"""infinity_core stays free of ComfyUI (and of transformers until a text encoder is loaded)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_clean_interpreter_import():
    code = ("import sys, infinity_core, infinity_core.cli; "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('comfy', 'comfy_api', 'comfy_extras', 'folder_paths', 'server', 'execution', 'nodes')]; "
            "assert not bad, bad; assert 'transformers' not in sys.modules; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
