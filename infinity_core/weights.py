"""Weight files: read them without executing code, and translate official key layouts to ours.

Readers: `.safetensors` (single file, or a HF-style shard directory / `*.index.json`), and `.pth`/`.pt`/
`.bin` through `torch.load(weights_only=True)` only. The official transformer `.pth` is a bare state dict
(tools/run_infinity.py:211-213); the official VAE `.pth` wraps it as `{"vae": ...}` (bsq_vae/vae.py:243-251).

Key layout differences are data (the tables below), applied by `official_to_internal_*`; loading is
strict, and a mismatch is reported with the first few missing, unexpected and mis-shaped keys.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import re
from pathlib import Path
from typing import Iterator, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .errors import InfinityError

log = logging.getLogger(__name__)

PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
SAFETENSORS_SUFFIX = ".safetensors"
SHARD_INDEX_NAMES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")

# Containers that wrap a state dict in official files, tried in order.
WRAPPER_PATHS: tuple[tuple[str, ...], ...] = (
    ("vae",),                  # official VAE .pth (bsq_vae/vae.py:250)
    ("trainer", "gpt_fsdp"),   # official training checkpoint (run_infinity.py:save_slim_model)
    ("state_dict",),
)

# --- transformer ------------------------------------------------------------------------------------
# Official blocks live at block_chunks.{chunk}.module.{j}; ours at blocks.{chunk * per_chunk + j}.
_OFFICIAL_BLOCK = re.compile(r"^block_chunks\.(\d+)\.module\.(\d+)\.(.*)$")
_INTERNAL_BLOCK = re.compile(r"^blocks\.(\d+)\.(.*)$")
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
    if not path.exists():
        raise InfinityError(f"weight file {_describe(path)} does not exist")
    if path.is_file() and path.stat().st_size == 0:
        raise InfinityError(f"weight file {_describe(path)} is empty (0 bytes); the download or copy did not finish")


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as err:
        raise InfinityError(f"{_describe(path)} is not a readable safetensors file ({err}); "
                            "it may be truncated or not a safetensors file at all") from None


def _read_pickle(path: Path) -> dict:
    try:
        try:   # memory-map zip-format files so tensors are paged in as they are assigned
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err):
                raise
            return torch.load(str(path), map_location="cpu", weights_only=True)   # legacy (non-zip) format
    except pickle.UnpicklingError as err:
        raise InfinityError(f"{_describe(path)} holds objects other than tensors, which are not loaded because "
                            f"unpickling them could run code ({str(err).splitlines()[0]}); "
                            "convert it to .safetensors with tools/convert_checkpoint.py on a trusted machine") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise InfinityError(f"{_describe(path)} is not a readable PyTorch weight file ({str(err).splitlines()[0]}); "
                            "it may be truncated") from None


def _shard_files(index_path: Path) -> list[Path]:
    try:
        weight_map = json.loads(index_path.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise InfinityError(f"shard index {_describe(index_path)} is not a valid index JSON ({err!r})") from None
    return [index_path.parent / name for name in sorted(set(weight_map.values()))]


def iter_shards(path: str | os.PathLike) -> Iterator[tuple[Path, dict[str, torch.Tensor]]]:
    """Yield (file, tensors) one shard at a time, so a caller can assign and free each before the next."""
    path = Path(path)
    _check_file(path)
    if path.is_dir():
        index = next((path / name for name in SHARD_INDEX_NAMES if (path / name).exists()), None)
        if index is None:
            raise InfinityError(f"folder {_describe(path)} has no shard index ({' or '.join(SHARD_INDEX_NAMES)})")
        path = index
    if path.name.endswith(".index.json"):
        for shard in _shard_files(path):
            _check_file(shard)
            yield shard, read_state_dict(shard)
        return
    yield path, read_state_dict(path)


def _unwrap(obj, path: Path) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping):
        raise InfinityError(f"{_describe(path)} does not contain a state dict (found {type(obj).__name__})")
    for wrapper in WRAPPER_PATHS:
        inner = obj
        for name in wrapper:
            inner = inner.get(name) if isinstance(inner, Mapping) else None
        if isinstance(inner, Mapping):
            obj = inner
            break
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise InfinityError(f"{_describe(path)} contains no tensors")
    return tensors


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read every tensor of a weight file (or shard set) on the CPU, unwrapping official containers."""
    path = Path(path)
    _check_file(path)
    if path.is_dir() or path.name.endswith(".index.json"):
        merged: dict[str, torch.Tensor] = {}
        for _, shard in iter_shards(path):
            merged.update(shard)
        return merged
    suffix = path.suffix.lower()
    if suffix == SAFETENSORS_SUFFIX:
        return _read_safetensors(path)
    if suffix in PICKLE_SUFFIXES:
        return _unwrap(_read_pickle(path), path)
    raise InfinityError(f"{_describe(path)} has an unsupported extension '{suffix}'; "
                        f"use {SAFETENSORS_SUFFIX}, {', '.join(PICKLE_SUFFIXES)} or a shard folder with an index JSON")


def official_to_internal_transformer(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int]:
    """Rename `block_chunks.c.module.j.` to `blocks.i.` and drop derived buffers; return (sd, block_chunks)."""
    chunked = [(int(m.group(1)), int(m.group(2))) for k in state_dict if (m := _OFFICIAL_BLOCK.match(k))]
    num_chunks = max(c for c, _ in chunked) + 1 if chunked else 1
    per_chunk = max(j for _, j in chunked) + 1 if chunked else 0
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        if key in TRANSFORMER_DROPPED_KEYS or key.endswith(TRANSFORMER_DROPPED_SUFFIXES):
            continue
        if m := _OFFICIAL_BLOCK.match(key):
            key = f"blocks.{int(m.group(1)) * per_chunk + int(m.group(2))}.{m.group(3)}"
        out[key] = tensor
    return out, num_chunks


def internal_to_official_transformer(state_dict: Mapping[str, torch.Tensor], block_chunks: int) -> dict[str, torch.Tensor]:
    """Inverse of `official_to_internal_transformer` (zero `zero_k_bias` buffers included), for export."""
    depth = 1 + max(int(m.group(1)) for k in state_dict if (m := _INTERNAL_BLOCK.match(k)))
    if depth % block_chunks:
        raise InfinityError(f"depth {depth} cannot be split into {block_chunks} block chunks")
    per_chunk = depth // block_chunks
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        if m := _INTERNAL_BLOCK.match(key):
            i, rest = int(m.group(1)), m.group(2)
            key = f"block_chunks.{i // per_chunk}.module.{i % per_chunk}.{rest}"
        out[key] = tensor
    for i in range(depth):
        prefix = f"block_chunks.{i // per_chunk}.module.{i % per_chunk}."
        width = state_dict[f"blocks.{i}.sa.proj.bias"].shape[0]
        for attn in ("sa", "ca"):
            out[f"{prefix}{attn}.zero_k_bias"] = torch.zeros(width)
    width = state_dict["text_proj_for_sos.ca.v_bias"].shape[0]
    out["text_proj_for_sos.ca.zero_k_bias"] = torch.zeros(width)
    return out


def official_to_internal_vae(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip the `Conv.conv` / `Normalize.norm` wrapper levels and drop the derived bit-mask buffers."""
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        if key in VAE_DROPPED_KEYS:
            continue
        key = _VAE_CONV_WRAPPER.sub(r".\1.\2", key)
        key = _VAE_NORM_WRAPPER.sub(r".\1.\2", key)
        out[key] = tensor
    return out


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


def strict_load(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str, *, assign: bool = True) -> None:
    """`load_state_dict(strict=True)` with a readable report of missing, unexpected and mis-shaped keys."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    misshaped = [f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
                 for k in expected if k in state_dict and state_dict[k].shape != expected[k].shape]
    if missing or unexpected or misshaped:
        def first(items):
            return ", ".join(items[:5]) + (f" (+{len(items) - 5} more)" if len(items) > 5 else "")
        parts = [f"{len(missing)} missing [{first(missing)}]" if missing else "",
                 f"{len(unexpected)} unexpected [{first(unexpected)}]" if unexpected else "",
                 f"{len(misshaped)} mis-shaped [{first(misshaped)}]" if misshaped else ""]
        raise InfinityError(f"{source} does not match the model it describes: " + "; ".join(p for p in parts if p))
    module.load_state_dict(state_dict, strict=True, assign=assign)
