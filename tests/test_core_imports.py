"""infinity_core stays free of ComfyUI (and of transformers until a text encoder is loaded), and the README's
Python examples run as written and draw what their prompts ask for."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from training.detector import detect

ROOT = Path(__file__).resolve().parents[1]
# What each README example saves, and what the pixel detector must read off it: (colour, position, background).
README_IMAGES = {
    "circle.png": ("red", "top left", "blue"),
    "inpainted.png": ("yellow", "top left", "blue"),
}


def test_clean_interpreter_import():
    code = ("import sys, infinity_core, infinity_core.cli; "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('comfy', 'comfy_api', 'comfy_extras', 'folder_paths', 'server', 'execution', 'nodes')]; "
            "assert not bad, bad; assert 'transformers' not in sys.modules; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def readme_python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(), re.S | re.M)


def test_readme_examples_are_the_tested_ones():
    saved = [name for block in readme_python_blocks() for name in re.findall(r'\.save\("([^"]+)"\)', block)]
    assert sorted(saved) == sorted(README_IMAGES)


@pytest.mark.parametrize("block", readme_python_blocks(), ids=lambda b: re.search(r'\.save\("([^"]+)"\)', b)[1])
def test_readme_example_runs_as_written(block, tmp_path):
    """Run from a folder that, like a checkout's root, has `models/` in it; the engine is imported from ROOT."""
    (tmp_path / "models").symlink_to(ROOT / "models", target_is_directory=True)
    script = tmp_path / "example.py"
    script.write_text(block)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    (name,) = re.findall(r'\.save\("([^"]+)"\)', block)
    image = Image.open(tmp_path / name)
    assert image.size == (256, 256)
    seen = detect(image)
    assert (seen.color, seen.position, seen.background) == README_IMAGES[name], seen
