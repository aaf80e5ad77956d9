"""`pip install .` installs the engine: a wheel of `infinity_core` and its subpackages only, whose runtime
requirements are the pack's, and which imports from wherever it is installed.

The wheel is built offline from a copy of the checkout (so nothing is written into the checkout), with the
setuptools of the running interpreter, then installed into a temporary target folder."""
from __future__ import annotations

import email
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = shutil.ignore_patterns(".git", ".venv", "venv", "__pycache__", "*.pyc", "build", "dist", "*.egg-info",
                              "outputs", "out", ".pytest_cache", "fixtures", "models")


def requirement_names(lines) -> set[str]:
    names = set()
    for line in lines:
        line = line.split("#")[0].split(";")[0].strip()
        if line and not line.startswith("-"):
            names.add(re.split(r"[<>=!~\[ ]", line, maxsplit=1)[0].lower())
    return names


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("setuptools")
    source = tmp_path_factory.mktemp("source") / "pack"
    shutil.copytree(ROOT, source, ignore=SKIP)
    dist = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "--quiet", "-w", str(dist), str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    (built,) = dist.glob("*.whl")
    return built


def test_wheel_holds_the_engine_and_nothing_else(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"infinity_core"}, top_level
    engine_sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "infinity_core").rglob("*.py")}
    assert engine_sources <= set(names), sorted(engine_sources - set(names))


def test_wheel_requirements_are_the_runtime_packages(wheel):
    archive = zipfile.ZipFile(wheel)
    (metadata_name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
    metadata = email.message_from_bytes(archive.read(metadata_name))
    required = metadata.get_all("Requires-Dist") or []
    runtime = [r for r in required if "extra ==" not in r]
    # torch comes from the user's (or ComfyUI's) environment: a lower bound, never a pinned build.
    (torch_requirement,) = [r for r in runtime if requirement_names([r]) == {"torch"}]
    assert "==" not in torch_requirement
    listed = requirement_names((ROOT / "requirements.txt").read_text().splitlines())
    assert requirement_names(runtime) == listed | {"torch"}
    # the product brief's runtime packages (gguf reads GGUF weight files), and tqdm for the batch command's bar
    assert listed | {"torch"} == {"torch", "safetensors", "transformers", "numpy", "pillow", "gguf", "tqdm"}
    assert requirement_names([r.split(";")[0] for r in required if "extra == \"ray\"" in r]) == {"ray"}


def test_installed_engine_imports_from_any_folder(wheel, tmp_path):
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
                           "--target", str(target), str(wheel)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import infinity_core, infinity_core.cli; from infinity_core import generate, load_transformer, "
            "InfinityError; print(infinity_core.__file__)")
    done = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_relative_to(target)


def test_documents_point_at_files_that_exist():
    """Relative links in the Markdown files, and the `docs/...` files that code and tests cite, exist."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    missing = []
    for name in tracked:
        path = ROOT / name
        if name.endswith(".md"):
            for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
                if "://" not in target and not (path.parent / target).exists():
                    missing.append(f"{name} -> {target}")
        if name.endswith(".py"):
            for target in re.findall(r"\bdocs/[\w./-]+\.(?:md|png|jpg)\b", path.read_text()):
                if not (ROOT / target).exists():
                    missing.append(f"{name} -> {target}")
    assert not missing, missing
