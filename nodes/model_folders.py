"""Where the loaders find their files: ComfyUI's model folders (extra_model_paths.yaml included) plus the
demo model the pack ships in its own `models/` folder.

- transformers: the `infinity` folder (registered here: `models/infinity` and `<pack>/models/infinity`);
- VAEs: the `infinity` and `vae` folders;
- text encoders: Hugging Face folders (with a config.json) under `text_encoders` and under
  `<pack>/models/text_encoders`. The pack's folder is scanned here only, not registered with ComfyUI,
  so ComfyUI's own CLIP loaders do not list the demo T5's weight file.
"""
from __future__ import annotations

import os
from pathlib import Path

import folder_paths

from ..infinity_core import InfinityError

INFINITY_FOLDER = "infinity"
VAE_FOLDERS = (INFINITY_FOLDER, "vae")
TEXT_ENCODER_FOLDER = "text_encoders"
PACK_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"

DEMO_TRANSFORMER = "infinity_demo_shapes.safetensors"
DEMO_VAE = "infinity_demo_shapes_vae.safetensors"
DEMO_TEXT_ENCODER = "t5_demo_shapes"

TEXT_ENCODER_SCAN_DEPTH = 2   # "flan-t5-xl" or "google/flan-t5-xl" under a text_encoders folder


def register_infinity_folder() -> None:
    """Add `models/infinity` and the pack's demo folder to the `infinity` folder, keeping any paths
    extra_model_paths.yaml already gave it, and make it list weight files only."""
    for path in (os.path.join(folder_paths.models_dir, INFINITY_FOLDER), str(PACK_MODELS_DIR / INFINITY_FOLDER)):
        folder_paths.add_model_folder_path(INFINITY_FOLDER, path)
    paths, extensions = folder_paths.folder_names_and_paths[INFINITY_FOLDER]
    weight_files = set(extensions) | set(folder_paths.supported_pt_extensions)
    folder_paths.folder_names_and_paths[INFINITY_FOLDER] = (paths, weight_files)


def preferred_default(names: list[str], preferred: str) -> str | None:
    """The shipped demo model when it is listed, else the first entry (None for an empty list)."""
    if preferred in names:
        return preferred
    return names[0] if names else None


def transformer_files() -> list[str]:
    return folder_paths.get_filename_list(INFINITY_FOLDER)


def vae_files() -> list[str]:
    return sorted({name for folder in VAE_FOLDERS for name in folder_paths.get_filename_list(folder)})


def _resolve_file(folders: tuple[str, ...], name: str, what: str) -> str:
    for folder in folders:
        path = folder_paths.get_full_path(folder, name)
        if path is not None:
            return path
    searched = ", ".join(f"models/{folder}" for folder in folders)
    raise InfinityError(f"{what} '{name}' was not found in {searched} (nor in extra_model_paths.yaml locations)")


def transformer_path(name: str) -> str:
    return _resolve_file((INFINITY_FOLDER,), name, "Infinity model")


def vae_path(name: str) -> str:
    return _resolve_file(VAE_FOLDERS, name, "Infinity VAE")


def _text_encoder_roots() -> list[Path]:
    comfyui_roots = [Path(p) for p in folder_paths.get_folder_paths(TEXT_ENCODER_FOLDER)]
    return comfyui_roots + [PACK_MODELS_DIR / TEXT_ENCODER_FOLDER]


def _model_folders_under(root: Path) -> list[str]:
    """Relative paths ('a' or 'a/b') of the folders under `root` that hold a config.json."""
    found = []
    for current, subdirs, files in os.walk(root):
        relative = Path(current).relative_to(root)
        if relative.parts and "config.json" in files:
            found.append(relative.as_posix())
            subdirs.clear()
        elif len(relative.parts) >= TEXT_ENCODER_SCAN_DEPTH:
            subdirs.clear()
        subdirs[:] = [d for d in subdirs if not d.startswith(".")]
    return found


def text_encoder_folders() -> list[str]:
    return sorted({name for root in _text_encoder_roots() for name in _model_folders_under(root)})


def text_encoder_path(name: str) -> str:
    if name in text_encoder_folders():   # only listed names: never a path outside the roots
        for root in _text_encoder_roots():
            if (root / name / "config.json").is_file():
                return str(root / name)
    raise InfinityError(f"text encoder folder '{name}' was not found under models/{TEXT_ENCODER_FOLDER} "
                        "(a folder holding config.json, the weights and the tokenizer files)")
