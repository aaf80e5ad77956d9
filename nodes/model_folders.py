"""Where the loaders find their files: ComfyUI's model folders (extra_model_paths.yaml included) plus the
demo model the pack ships in its own `models/` folder.

- transformers: the `infinity` folder (registered here: `models/infinity` and `<pack>/models/infinity`);
- VAEs: the `infinity` and `vae` folders;
  each list shows only the files of its kind, told apart by the tensor names in the file's header
  (`weight_file_kind`), never by the file name; a file whose names cannot be read cheaply is listed in both;
- text encoders: Hugging Face folders (with a config.json) under `text_encoders` and under
  `<pack>/models/text_encoders`. The pack's folder is scanned here only, not registered with ComfyUI,
  so ComfyUI's own CLIP loaders do not list the demo T5's weight file.
"""
from __future__ import annotations

import os
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Literal

import folder_paths
from safetensors import SafetensorError, safe_open

from infinity_core import InfinityError

INFINITY_FOLDER = "infinity"
VAE_FOLDERS = (INFINITY_FOLDER, "vae")
TEXT_ENCODER_FOLDER = "text_encoders"
PACK_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"

DEMO_TRANSFORMER = "infinity_demo_shapes.safetensors"
DEMO_VAE = "infinity_demo_shapes_vae.safetensors"
DEMO_TEXT_ENCODER = "t5_demo_shapes"

GGUF_EXTENSION = ".gguf"      # quantized transformers (infinity_core/weight_formats/gguf_file.py)
TEXT_ENCODER_SCAN_DEPTH = 2   # "flan-t5-xl" or "google/flan-t5-xl" under a text_encoders folder


def register_infinity_folder() -> None:
    """Add `models/infinity` and the pack's demo folder to the `infinity` folder, keeping any paths
    extra_model_paths.yaml already gave it, and make it list weight files only."""
    for path in (os.path.join(folder_paths.models_dir, INFINITY_FOLDER), str(PACK_MODELS_DIR / INFINITY_FOLDER)):
        folder_paths.add_model_folder_path(INFINITY_FOLDER, path)
    paths, extensions = folder_paths.folder_names_and_paths[INFINITY_FOLDER]
    weight_files = set(extensions) | set(folder_paths.supported_pt_extensions) | {GGUF_EXTENSION}
    folder_paths.folder_names_and_paths[INFINITY_FOLDER] = (paths, weight_files)


def preferred_default(names: list[str], preferred: str) -> str | None:
    """The shipped demo model when it is listed, else the first entry (None for an empty list)."""
    if preferred in names:
        return preferred
    return names[0] if names else None


WeightKind = Literal["transformer", "vae"]
# A tensor name that only one kind of file holds, official or internal naming (and the encoder's, for VAEs)
KIND_MARKERS: dict[str, str] = {"transformer": "sa.mat_qkv", "vae": "decoder.conv_in"}
ENCODER_MARKER = "encoder.conv_in"
PICKLE_RECORD_SUFFIX = "/data.pkl"   # the member of a zip-format .pth that holds the tensor names


def _header_names(path: str) -> str | None:
    """The tensor names of a weight file, read without reading any tensor, as one searchable text:
    a safetensors header's keys (ComfyUI's quantized layout included), a GGUF's tensor list, or the pickled
    record of a zip .pth (names and structure only; never unpickled). None when they cannot be read that
    cheaply (a legacy pickle)."""
    try:
        if path.endswith(".safetensors"):
            with safe_open(path, framework="pt", device="cpu") as weights:
                return "\n".join(weights.keys())
        if path.endswith(GGUF_EXTENSION):
            from gguf import GGUFReader
            return "\n".join(tensor.name for tensor in GGUFReader(path).tensors)
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                record = next((n for n in archive.namelist() if n.endswith(PICKLE_RECORD_SUFFIX)), None)
                return archive.read(record).decode("latin-1") if record else None
    except (OSError, SafetensorError, zipfile.BadZipFile, UnicodeDecodeError, ValueError, IndexError, KeyError):
        return None
    return None


@lru_cache(maxsize=1024)
def _kind_by_identity(path: str, modified_ns: int, size: int) -> tuple[str | None, bool | None]:
    names = _header_names(path)
    if names is None:
        return None, None
    kind = next((kind for kind, marker in KIND_MARKERS.items() if marker in names), None)
    return kind, ENCODER_MARKER in names


def _sniff(path: str) -> tuple[str | None, bool | None]:
    stat = os.stat(path)
    return _kind_by_identity(os.path.realpath(path), stat.st_mtime_ns, stat.st_size)


def weight_file_kind(path: str) -> WeightKind | None:
    """"transformer" or "vae" from the tensor names in the file's header; None when unknown."""
    return _sniff(path)[0]


def vae_has_encoder(path: str) -> bool:
    """Whether a VAE file holds the encoder too (assumed when its names cannot be read cheaply)."""
    has_encoder = _sniff(path)[1]
    return True if has_encoder is None else has_encoder


def _files_of_kind(folders: tuple[str, ...], kind: WeightKind) -> list[str]:
    names = set()
    for folder in folders:
        for name in folder_paths.get_filename_list(folder):
            path = folder_paths.get_full_path(folder, name)
            if path is not None and weight_file_kind(path) in (kind, None):
                names.add(name)
    return sorted(names)


def transformer_files() -> list[str]:
    return _files_of_kind((INFINITY_FOLDER,), "transformer")


def vae_files() -> list[str]:
    return _files_of_kind(VAE_FOLDERS, "vae")


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
