"""Fixtures of the node tests: the stand-in ComfyUI on sys.modules with the pack imported (once per test
module, and removed again after it), its node registry, a reset model management, a fake clock, and the
stand-in models loaded through the loader nodes."""
from __future__ import annotations

import asyncio
import importlib
import importlib.util
import sys

import pytest

from .node_env import (EXTRA_MODEL_FILE, MISMATCHED_VAE, PACK, REPO, STUB_DIR, STUBBED_MODULES, install_fake_clock,
                       run)
from standin_models import TINY_NAMES, build_standin_models, write_mismatched_vae


def _owned(name: str) -> bool:
    return any(name == root or name.startswith(root + ".") for root in (*STUBBED_MODULES, PACK))


@pytest.fixture(scope="session")
def model_folders(tmp_path_factory) -> tuple:
    """(a ComfyUI models/ directory with the stand-in models, an extra model folder), built once."""
    models = tmp_path_factory.mktemp("comfy_base") / "models"
    build_standin_models(models)
    write_mismatched_vae(models / "infinity" / MISMATCHED_VAE)
    extra = tmp_path_factory.mktemp("extra_models")
    (extra / EXTRA_MODEL_FILE).write_bytes(b"")
    return models, extra


@pytest.fixture(scope="module")
def env(model_folders):
    """The stub modules on sys.modules, the stand-in's model folders, and the pack imported."""
    models, extra = model_folders
    assert not any(_owned(name) for name in sys.modules), "another test left ComfyUI modules imported"
    sys.path.insert(0, str(STUB_DIR))
    try:
        importlib.import_module("execution")
        folder_paths = importlib.import_module("folder_paths")
        folder_paths.reset(str(models))
        folder_paths.add_model_folder_path("infinity", str(extra))   # what extra_model_paths.yaml does at startup
        spec = importlib.util.spec_from_file_location(PACK, REPO / "__init__.py",
                                                      submodule_search_locations=[str(REPO)])
        pack = importlib.util.module_from_spec(spec)
        sys.modules[PACK] = pack
        spec.loader.exec_module(pack)
        yield pack
    finally:
        sys.path.remove(str(STUB_DIR))
        for name in [n for n in sys.modules if _owned(n)]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def registry(env) -> dict:
    """node id -> class, as ComfyUI registers a V3 pack: comfy_entrypoint() -> extension -> get_node_list()."""
    extension = asyncio.run(env.comfy_entrypoint())
    assert isinstance(extension, sys.modules["comfy_api.latest"].ComfyExtension)
    return {cls.GET_SCHEMA().node_id: cls for cls in asyncio.run(extension.get_node_list())}


@pytest.fixture
def mm(env):
    """The stub model management, reset: nothing loaded, no interrupt pending, no progress hook, previews off."""
    management, utils, cli = (sys.modules[n] for n in ("comfy.model_management", "comfy.utils", "comfy.cli_args"))
    management.unload_all_models()
    management.load_requests.clear()
    management.interrupt_current_processing(False)
    yield management
    utils.PROGRESS_BAR_HOOK = None
    cli.args.preview_method = cli.LatentPreviewMethod.NoPreviews
    management.LOAD_DEVICE = management.OFFLOAD_DEVICE


@pytest.fixture
def fake_clock(env, monkeypatch):
    """A clock that advances one second per reading, for ComfyUI's progress throttle and the previews' pacing."""
    return install_fake_clock(env, monkeypatch, 1.0)


@pytest.fixture
def models(registry, mm):
    return {
        "model": run(registry, "InfinityTransformerLoader", model_file=TINY_NAMES.transformer, dtype="auto")[0],
        "vae": run(registry, "InfinityVAELoader", vae_file=TINY_NAMES.vae, dtype="auto")[0],
        "text_encoder": run(registry, "InfinityTextEncoderLoader", text_encoder_folder=TINY_NAMES.text_encoder,
                            dtype="auto")[0],
    }
