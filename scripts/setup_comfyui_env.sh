#!/usr/bin/env bash
# An environment for tests/real_comfyui/: a CPU venv that runs a ComfyUI source tree you already
# have, a torchvision import stub, the newest comfyui-frontend-package unzipped as a second frontend, and
# (with --browser, as root) Chromium + chromedriver from the distribution's packages. Downloads no ComfyUI code.
#
#   COMFYUI_DIR=<ComfyUI source tree> [COMFY_ENV=<folder>] bash scripts/setup_comfyui_env.sh [--browser]
#
# COMFY_ENV (default ${XDG_CACHE_HOME:-~/.cache}/comfyui-infinity-env) receives:
#   venv/          torch==2.13.0 (CPU), ComfyUI's requirements.txt without torch/torchvision/torchaudio/spandrel
#                  (spandrel hard-requires torchvision; the core then logs IMPORT FAILED for nodes_upscale_model.py
#                  and the audio nodes, which is expected), requests (ComfyUI imports it without listing it),
#                  this pack's requirements, pytest and selenium
#   tvstub/        torchvision import stub: ComfyUI imports torchvision at module level (and transformers imports
#                  names from it once it finds the package) but calls it only in model families this pack does
#                  not use; the CUDA torchvision wheel cannot load on a CPU torch
#   frontend_new/  the newest comfyui-frontend-package wheel, unzipped (served with --front-end-root)
#   env.sh         the variables the suite reads; `source` it, then run the command it prints
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

BROWSER=0
for arg in "$@"; do
    case "$arg" in
        --browser) BROWSER=1 ;;
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done

: "${COMFYUI_DIR:?set COMFYUI_DIR to a ComfyUI source tree (the folder with main.py)}"
COMFYUI_DIR=$(cd "$COMFYUI_DIR" && pwd)
[ -f "$COMFYUI_DIR/main.py" ] && [ -f "$COMFYUI_DIR/requirements.txt" ] \
    || { echo "$COMFYUI_DIR has no main.py / requirements.txt" >&2; exit 1; }
VERSION=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$COMFYUI_DIR/comfyui_version.py" 2>/dev/null || true)
echo "ComfyUI source tree: $COMFYUI_DIR (version ${VERSION:-unknown})"

COMFY_ENV=${COMFY_ENV:-${XDG_CACHE_HOME:-$HOME/.cache}/comfyui-infinity-env}
mkdir -p "$COMFY_ENV"
COMFY_ENV=$(cd "$COMFY_ENV" && pwd)
PIP="$COMFY_ENV/venv/bin/pip --quiet --disable-pip-version-check"

# 1. The venv. The constraint keeps pip from replacing the CPU torch with a CUDA build pulled in by kornia/torchsde.
[ -x "$COMFY_ENV/venv/bin/python" ] || python3 -m venv "$COMFY_ENV/venv"
echo "torch==2.13.0" > "$COMFY_ENV/constraints.txt"
grep -vE '^(torch|torchvision|torchaudio|spandrel)([<>=~ ].*)?$|^#|^$' "$COMFYUI_DIR/requirements.txt" \
    > "$COMFY_ENV/requirements-comfyui-lean.txt"
$PIP install -c "$COMFY_ENV/constraints.txt" torch==2.13.0 requests pytest selenium \
    -r "$COMFY_ENV/requirements-comfyui-lean.txt" -r "$REPO/requirements.txt"

# 2. The torchvision import stub (on PYTHONPATH of the server process only).
mkdir -p "$COMFY_ENV/tvstub/torchvision/transforms"
cat > "$COMFY_ENV/tvstub/torchvision/_stub.py" <<'PY'
"""torchvision import stub: every torchvision.* submodule is made on import; every name in it is a
placeholder whose attributes are placeholders too, and which raises when called."""
import importlib.abc
import importlib.machinery
import sys
import types


class Unavailable:
    def __init__(self, qualname):
        self._qualname = qualname

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return Unavailable(f"{self._qualname}.{name}")

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"{self._qualname} is unavailable: torchvision here is an import stub")

    def __repr__(self):
        return f"<torchvision stub {self._qualname}>"


def make_getattr(modname):
    def __getattr__(name):
        if name.startswith("__"):
            raise AttributeError(name)
        return Unavailable(f"{modname}.{name}")

    return __getattr__


class _SubmoduleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith("torchvision."):
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__ = []
        module.__getattr__ = make_getattr(spec.name)
        return module

    def exec_module(self, module):
        pass


def install_finder():
    if not any(isinstance(finder, _SubmoduleFinder) for finder in sys.meta_path):
        sys.meta_path.append(_SubmoduleFinder())
PY
cat > "$COMFY_ENV/tvstub/torchvision/__init__.py" <<'PY'
"""torchvision import stub (see _stub.py)."""
from ._stub import install_finder, make_getattr

__version__ = "0.0.0+stub"
__getattr__ = make_getattr(__name__)
install_finder()

from . import transforms  # noqa: E402
PY
cat > "$COMFY_ENV/tvstub/torchvision/transforms/__init__.py" <<'PY'
from .._stub import make_getattr

__getattr__ = make_getattr(__name__)
PY

# 3. The newest frontend from PyPI, unzipped (its comfyui_frontend_package/static is the --front-end-root).
rm -rf "$COMFY_ENV/wheels" && mkdir -p "$COMFY_ENV/wheels"
$PIP download --no-deps comfyui-frontend-package -d "$COMFY_ENV/wheels"
WHEEL=$(ls "$COMFY_ENV"/wheels/comfyui_frontend_package-*.whl)
rm -rf "$COMFY_ENV/frontend_new"
"$COMFY_ENV/venv/bin/python" -m zipfile -e "$WHEEL" "$COMFY_ENV/frontend_new"
echo "newest frontend: $(basename "$WHEEL")"

# 4. Chromium and chromedriver (Debian/Ubuntu package names; Selenium is told their paths, so it downloads nothing).
if [ "$BROWSER" = 1 ]; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
    else
        echo "--browser needs root and apt-get; install chromium and chromedriver yourself" >&2
    fi
fi

# 5. A smoke test of the server (loads every node, then exits) and the variables for the suite.
(cd "$COMFYUI_DIR" && PYTHONPATH="$COMFY_ENV/tvstub" "$COMFY_ENV/venv/bin/python" main.py --cpu \
    --quick-test-for-ci --disable-all-custom-nodes > "$COMFY_ENV/quick-test.log" 2>&1) \
    || { echo "ComfyUI did not start; see $COMFY_ENV/quick-test.log" >&2; exit 1; }
CHROMIUM=$(command -v chromium || command -v chromium-browser || echo /usr/bin/chromium)
CHROMEDRIVER=$(command -v chromedriver || echo /usr/bin/chromedriver)
cat > "$COMFY_ENV/env.sh" <<EOF
export COMFYUI_DIR=$COMFYUI_DIR
export COMFYUI_PYTHONPATH=$COMFY_ENV/tvstub
export COMFYUI_FRONTEND_ROOT=$COMFY_ENV/frontend_new
export COMFYUI_SCREENSHOTS=$COMFY_ENV/shots
export CHROMIUM_BIN=$CHROMIUM
export CHROMEDRIVER_BIN=$CHROMEDRIVER
EOF
echo
echo "Run the suite with:"
echo "  source $COMFY_ENV/env.sh && $COMFY_ENV/venv/bin/python -m pytest -q -s tests/real_comfyui/"
