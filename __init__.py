"""ComfyUI entry point of the Infinity node pack; the nodes are in `nodes/`, the engine in `infinity_core/`.

ComfyUI imports this folder as a package under a name of its own. The engine has one import identity,
the top-level `infinity_core`, for the nodes, the tests, the CLI and training alike: when it is not
importable already (installed with `pip install .`, or on sys.path), the pack's own copy is registered
under that name here, and nothing else of the folder is put on sys.path.

Inside ComfyUI the nodes register through `comfy_entrypoint` (the V3 node API). Outside ComfyUI (no
`comfy_api` to import) the folder defines no nodes, so it can still be imported and `infinity_core` used.
"""
import importlib.util
import sys
from pathlib import Path

ENGINE = "infinity_core"


def _register_engine() -> None:
    if importlib.util.find_spec(ENGINE) is not None:
        return
    package = Path(__file__).resolve().parent / ENGINE
    spec = importlib.util.spec_from_file_location(ENGINE, package / "__init__.py",
                                                  submodule_search_locations=[str(package)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[ENGINE] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(ENGINE, None)
        raise


_register_engine()

WEB_DIRECTORY = "./web"

if importlib.util.find_spec("comfy_api") is not None:
    from .nodes import comfy_entrypoint  # noqa: F401  (only inside ComfyUI)
