"""Weight files: read them without executing code, and translate official key layouts to ours.

Readers (weight_formats/, one module per format, chosen from the file's contents): safetensors (single file,
or a HF-style shard directory / `*.index.json`), ComfyUI's quantized safetensors, GGUF, and `.pth`/`.pt`/
`.bin` through `torch.load(weights_only=True)` only. The official transformer `.pth` is a bare state dict
(tools/run_infinity.py:211-213); the official VAE `.pth` wraps it as `{"vae": ...}` (bsq_vae/vae.py:243-251).

Key layout differences are data (the tables below), applied by `official_to_internal_*`; loading is
strict, and a mismatch is reported with the first few missing, unexpected and mis-shaped keys.

A file is refused, naming it, before its tensors are used when it is missing, empty, a broken link or a
device; a shard index names a file outside its own folder; a pickle is not a zip or pickle at all, or
names globals other than torch's (it could run code: found by reading its opcodes, never by unpickling; see
pickle_checkpoint.py); a weight to load is not floating point; or a tensor holds NaN or infinity (checked as
it streams in).
A model file may carry its sampling defaults in its metadata (`model_defaults`).
"""
from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Iterable, Mapping

import torch

from .errors import InfinityError
from .weight_formats import TensorSource, open_source
from .schedules import PIXEL_BUDGETS

log = logging.getLogger(__name__)

SAFETENSORS_SUFFIX = ".safetensors"
SHARD_INDEX_NAMES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")

# --- transformer ------------------------------------------------------------------------------------
# Official blocks live at block_chunks.{chunk}.module.{j}; ours at blocks.{chunk * per_chunk + j}.
_OFFICIAL_BLOCK = re.compile(r"^block_chunks\.(\d+)\.module\.(\d+)\.(.*)$")
_INTERNAL_BLOCK = re.compile(r"^blocks\.(\d+)\.(.*)$")
# Official module paths that read better under another name (official prefix -> internal prefix).
TRANSFORMER_PREFIX_MAP = {
    "text_proj_for_sos.ca.": "text_pool.",   # attentive pool producing the start token
    "text_proj_for_ca.": "text_proj.",       # MLP projecting T5 features for cross-attention
}
# Buffers the official model registers or once registered; none carries information.
TRANSFORMER_DROPPED_SUFFIXES = (".zero_k_bias",)
TRANSFORMER_DROPPED_KEYS = ("lvl_1L", "attn_bias_for_masking", "Infinity_visible_kvlen", "Infinity_invisible_qlen")

# --- VAE ---------------------------------------------------------------------------------------------
# Official convs and group norms sit one level down in wrapper modules (`Conv.conv`, `Normalize.norm`).
_VAE_CONV_WRAPPER = re.compile(r"\.(conv_in|conv_out|conv1|conv2|nin_shortcut|conv)\.conv\.(weight|bias)$")
_VAE_NORM_WRAPPER = re.compile(r"\.(norm1|norm2|norm_out)\.norm\.(weight|bias)$")
# The BSQ bit-weight buffer (2**arange) is stored twice (quantizer and its alias quantize); it is derived data.
VAE_DROPPED_KEYS = ("quantizer.lfq.mask", "quantize.lfq.mask")


def _describe(path: Path) -> str:
    return f"'{path}'"


def _check_file(path: Path) -> None:
    """Refuse a path that cannot hold weights before anything reads it: missing, a broken or looping
    symbolic link, empty, or not a regular file or folder (a device or pipe could be read forever)."""
    if path.is_symlink() and not path.exists():
        raise InfinityError(f"weight file {_describe(path)} is a symbolic link whose target does not exist "
                            "or loops back on itself")
    if not path.exists():
        raise InfinityError(f"weight file {_describe(path)} does not exist")
    if path.is_dir():
        return
    if not path.is_file():
        raise InfinityError(f"weight file {_describe(path)} is not a regular file (a device, pipe or socket)")
    if path.stat().st_size == 0:
        raise InfinityError(f"weight file {_describe(path)} is empty (0 bytes); the download or copy did not finish")


def require_float(sources: Iterable[TensorSource], keys: Iterable[str], source_name: str) -> None:
    """Refuse integer, bool or complex tensors among the `keys` to be loaded as weights, naming the first few."""
    keys = set(keys)
    bad = [f"'{k}' ({dtype})" for src in sources for k, dtype in src.non_float(src.shapes().keys() & keys)]
    if bad:
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        raise InfinityError(f"{source_name} holds weights that are not floating point: {', '.join(sorted(bad)[:3])}"
                            f"{more}; model weights must be float32, bfloat16 or float16")


def require_finite(tensor: torch.Tensor, original: torch.Tensor, key: str, source_name: str) -> None:
    """Refuse a weight with NaN or infinite values: in the file, or from a cast that overflowed (fp16).

    The sum is NaN or infinite whenever an element is, and costs one pass (~15x less than `isfinite().all()`
    on the CPU); the exact test runs only when the sum is not finite, to tell a finite sum that overflowed."""
    if bool(torch.isfinite(tensor.sum(dtype=torch.float32))) or bool(torch.isfinite(tensor).all()):
        return
    if bool(torch.isfinite(original).all()):
        largest = original.detach().abs().max().item()
        raise InfinityError(f"{source_name}: tensor '{key}' overflows {str(tensor.dtype).removeprefix('torch.')} (|values| up to {largest:.3g}); "
                            "load the model in bfloat16 or float32")
    raise InfinityError(f"{source_name}: tensor '{key}' holds NaN or infinite values; the file is corrupt or "
                        "was saved from a diverged training run")


def _shard_files(index_path: Path) -> list[Path]:
    """The shards an index names, each confined to the index's own folder (after resolving links)."""
    try:
        weight_map = json.loads(index_path.read_text())["weight_map"]
        names = sorted(set(weight_map.values()))
    except RecursionError:
        raise InfinityError(f"shard index {_describe(index_path)} is not a valid index JSON (it nests deeper than "
                            "Python's JSON reader can follow; an index is a flat weight_map)") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as err:
        raise InfinityError(f"shard index {_describe(index_path)} is not a valid index JSON ({err!r})") from None
    folder = Path(os.path.realpath(index_path.parent))
    shards = []
    for name in names:
        if not isinstance(name, str) or not name:
            raise InfinityError(f"shard index {_describe(index_path)} names a shard {name!r} that is not a file name")
        shard = index_path.parent / name
        resolved = Path(os.path.realpath(shard))   # a link loop stays in place; _check_file refuses it
        if Path(name).is_absolute() or not resolved.is_relative_to(folder):
            link = f" (a link to '{resolved}')" if not Path(name).is_absolute() and shard.is_symlink() else ""
            raise InfinityError(f"shard index {_describe(index_path)} names '{name}'{link}, which lies outside the "
                                f"index's folder '{folder}'; shards must sit in the same folder as their index")
        shards.append(shard)
    return shards


def open_sources(path: str | os.PathLike) -> list[TensorSource]:
    """The files behind `path`: itself, or every shard named by a shard folder's / index JSON's weight map."""
    path = Path(path)
    _check_file(path)
    if path.is_dir():
        index = next((path / name for name in SHARD_INDEX_NAMES if (path / name).exists()), None)
        if index is None:
            raise InfinityError(f"folder {_describe(path)} has no shard index ({' or '.join(SHARD_INDEX_NAMES)})")
        path = index
        _check_file(path)
    if path.name.endswith(".index.json"):
        shards = _shard_files(path)
        for shard in shards:
            _check_file(shard)
        return [open_source(shard) for shard in shards]
    return [open_source(path)]


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every tensor of a weight file (or shard set) on the CPU, official containers unwrapped."""
    return tensors_of(open_sources(path))


def tensors_of(sources: Iterable[TensorSource]) -> dict[str, torch.Tensor]:
    """Every tensor of already opened sources."""
    return {key: source.tensor(key) for source in sources for key in source.shapes()}


# --- sampling defaults carried by a model file ---------------------------------------------------------
# A model's native settings live in its file, never in its path: safetensors metadata (or a shard index's
# "metadata") key -> SamplingConfig keyword. Files without them (the official .pth) get SamplingConfig's
# own defaults.
MODEL_DEFAULT_KEYS = {"infinity.pixels": "pixels"}   # the pixel budget the model was trained at


def read_model_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a weight file: a safetensors header's `__metadata__`, a shard index's
    "metadata" (header and index only; no tensor is read); {} for pickled checkpoints, which have none."""
    path = Path(path)
    _check_file(path)
    if path.is_dir():
        path = next((path / name for name in SHARD_INDEX_NAMES if (path / name).exists()), path)
    if path.name.endswith(".index.json"):
        try:
            metadata = json.loads(path.read_text()).get("metadata") or {}
        except RecursionError:
            raise InfinityError(f"shard index {_describe(path)} is not a valid index JSON (it nests deeper than "
                                "Python's JSON reader can follow; an index is a flat weight_map)") from None
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as err:
            raise InfinityError(f"shard index {_describe(path)} is not a valid index JSON ({err!r})") from None
        return {str(k): str(v) for k, v in metadata.items()} if isinstance(metadata, Mapping) else {}
    return open_source(path).metadata()


def _check_defaults(defaults: Mapping[str, str], source: str) -> None:
    if "pixels" in defaults and defaults["pixels"] not in PIXEL_BUDGETS:
        raise InfinityError(f"{source}: pixels '{defaults['pixels']}' is not a pixel budget; "
                            f"valid budgets: {list(PIXEL_BUDGETS)}")


def model_defaults(path: str | os.PathLike) -> dict[str, str]:
    """The sampling settings a model file recommends, as SamplingConfig keywords (e.g. {"pixels": "0.06M"}
    for the demo model); {} when the file carries none. Refuses a value that is not a valid setting."""
    metadata = read_model_metadata(path)
    defaults = {setting: metadata[key] for key, setting in MODEL_DEFAULT_KEYS.items() if key in metadata}
    _check_defaults(defaults, f"metadata of model file '{path}'")
    return defaults


def model_defaults_metadata(**settings: str) -> dict[str, str]:
    """The metadata entries that `model_defaults` reads back as `settings`, for writers of model files."""
    keys = {setting: key for key, setting in MODEL_DEFAULT_KEYS.items()}
    unknown = sorted(settings.keys() - keys.keys())
    if unknown:
        raise InfinityError(f"model files carry no default for {unknown}; they can carry {sorted(keys)}")
    _check_defaults(settings, "model defaults")
    return {keys[setting]: value for setting, value in settings.items()}


def _replace_prefix(key: str, prefix_map: Mapping[str, str]) -> str:
    for old, new in prefix_map.items():
        if key.startswith(old):
            return new + key[len(old):]
    return key


def transformer_key_map(keys: Iterable[str]) -> tuple[dict[str, str], int]:
    """Official (or internal) key -> internal key for every key to load, and the number of block chunks.

    Blocks `block_chunks.c.module.j.` become `blocks.{c * per_chunk + j}.`; derived buffers are left out."""
    keys = list(keys)
    chunked = [(int(m.group(1)), int(m.group(2))) for k in keys if (m := _OFFICIAL_BLOCK.match(k))]
    num_chunks = max(c for c, _ in chunked) + 1 if chunked else 1
    per_chunk = max(j for _, j in chunked) + 1 if chunked else 0
    mapping: dict[str, str] = {}
    for key in keys:
        if key in TRANSFORMER_DROPPED_KEYS or key.endswith(TRANSFORMER_DROPPED_SUFFIXES):
            continue
        internal = key
        if m := _OFFICIAL_BLOCK.match(key):
            internal = f"blocks.{int(m.group(1)) * per_chunk + int(m.group(2))}.{m.group(3)}"
        mapping[key] = _replace_prefix(internal, TRANSFORMER_PREFIX_MAP)
    return mapping, num_chunks


def official_to_internal_transformer(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int]:
    """`transformer_key_map` applied to a whole state dict; returns (internal state dict, block_chunks)."""
    mapping, num_chunks = transformer_key_map(state_dict)
    return {internal: state_dict[key] for key, internal in mapping.items()}, num_chunks


def internal_to_official_transformer(state_dict: Mapping[str, torch.Tensor], block_chunks: int) -> dict[str, torch.Tensor]:
    """Inverse of `official_to_internal_transformer` (zero `zero_k_bias` buffers included), for export."""
    depth = 1 + max(int(m.group(1)) for k in state_dict if (m := _INTERNAL_BLOCK.match(k)))
    if depth % block_chunks:
        raise InfinityError(f"depth {depth} cannot be split into {block_chunks} block chunks")
    per_chunk = depth // block_chunks
    inverse_map = {new: old for old, new in TRANSFORMER_PREFIX_MAP.items()}
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        if m := _INTERNAL_BLOCK.match(key):
            i, rest = int(m.group(1)), m.group(2)
            key = f"block_chunks.{i // per_chunk}.module.{i % per_chunk}.{rest}"
        out[_replace_prefix(key, inverse_map)] = tensor
    for i in range(depth):
        prefix = f"block_chunks.{i // per_chunk}.module.{i % per_chunk}."
        width = state_dict[f"blocks.{i}.sa.proj.bias"].shape[0]
        for attn in ("sa", "ca"):
            out[f"{prefix}{attn}.zero_k_bias"] = torch.zeros(width)
    width = state_dict["text_pool.v_bias"].shape[0]
    out["text_proj_for_sos.ca.zero_k_bias"] = torch.zeros(width)
    return out


def vae_key(key: str) -> str | None:
    """Official (or internal) VAE key -> internal key, or None for derived buffers that are not loaded."""
    if key in VAE_DROPPED_KEYS:
        return None
    return _VAE_NORM_WRAPPER.sub(r".\1.\2", _VAE_CONV_WRAPPER.sub(r".\1.\2", key))


def official_to_internal_vae(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip the `Conv.conv` / `Normalize.norm` wrapper levels and drop the derived bit-mask buffers."""
    return {internal: tensor for key, tensor in state_dict.items() if (internal := vae_key(key)) is not None}


def internal_to_official_vae(state_dict: Mapping[str, torch.Tensor], codebook_dim: int) -> dict[str, torch.Tensor]:
    """Inverse of `official_to_internal_vae`, for exporting weights the official loader accepts."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        stem, leaf = key.rsplit(".", 1)
        module = stem.rsplit(".", 1)[-1]
        if module in ("conv_in", "conv_out", "conv1", "conv2", "nin_shortcut", "conv"):
            key = f"{stem}.conv.{leaf}"
        elif module in ("norm1", "norm2", "norm_out"):
            key = f"{stem}.norm.{leaf}"
        out[key] = tensor
    mask = 2 ** torch.arange(codebook_dim - 1, -1, -1)
    for name in VAE_DROPPED_KEYS:
        out[name] = mask.clone()
    return out


def check_layout(expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]], source: str) -> None:
    """Strict loading: every expected key present with its shape and nothing else, or an error that lists the
    first few missing, unexpected and mis-shaped keys."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    misshaped = [f"{k}: file {tuple(found[k])} vs model {tuple(expected[k])}"
                 for k in expected if k in found and tuple(found[k]) != tuple(expected[k])]
    if missing or unexpected or misshaped:
        def first(items):
            return ", ".join(items[:5]) + (f" (+{len(items) - 5} more)" if len(items) > 5 else "")
        parts = [f"{len(missing)} missing [{first(missing)}]" if missing else "",
                 f"{len(unexpected)} unexpected [{first(unexpected)}]" if unexpected else "",
                 f"{len(misshaped)} mis-shaped [{first(misshaped)}]" if misshaped else ""]
        raise InfinityError(f"{source} does not match the model its keys describe: " + "; ".join(p for p in parts if p))


def strict_load(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str, *, assign: bool = True) -> None:
    """`load_state_dict(strict=True)` after `check_layout`, so a mismatch reads well."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    check_layout(expected, {k: tuple(v.shape) for k, v in state_dict.items()}, source)
    module.load_state_dict(state_dict, strict=True, assign=assign)
