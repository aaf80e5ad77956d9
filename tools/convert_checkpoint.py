"""Convert an Infinity checkpoint (official `.pth`, `.safetensors` or shard folder) to a file to share or run:
the same tensors as `.safetensors`, or the transformer's block matmul weights in a smaller format.

    python tools/convert_checkpoint.py infinity_2b_reg.pth                    # -> infinity_2b_reg.safetensors
    python tools/convert_checkpoint.py infinity_8b_weights --format fp8       # -> infinity_8b_weights_fp8.safetensors
    python tools/convert_checkpoint.py infinity_8b_weights --format gguf-q4_k # -> infinity_8b_weights_Q4_K.gguf
    python tools/convert_checkpoint.py infinity_vae_d32reg.pth out.safetensors --overwrite

Formats (`--format`): `same` keeps every tensor as stored; `bf16` stores the block matmul weights in bfloat16;
`fp8` (float8_e4m3fn, one scale per tensor) and `int8` (one scale per output row) write ComfyUI's own
quantized layout (`.weight_scale`, `.comfy_quant`); `gguf-f16`, `gguf-bf16`, `gguf-q8_0`, `gguf-q5_k`,
`gguf-q4_k` write a GGUF (`general.architecture` "infinity", official key names). Only the transformer's
block matmul weights change precision: norms, biases, embeddings, the bit head, `cfg_uncond` and the text
path keep their own (the log says what was kept). A K-quant needs rows of 256 values; a weight whose rows
are not is written as Q8_0 (and the log says so).

An existing output is kept unless --overwrite is given, and the output may never be the input (or one of
its shards). The file is written to a temporary name in the output folder and renamed into place, so an
interrupted run leaves no half-written output. A `.pth` is read with `torch.load(weights_only=True)` (no
code runs); the output keeps the official key layout, so the official code and this pack both load it.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tqdm import tqdm  # noqa: E402

from infinity_core.config import transformer_config_from_state_dict, vae_config_from_state_dict  # noqa: E402
from infinity_core.errors import InfinityError  # noqa: E402
from infinity_core.transformer.model import BLOCK_MATMULS  # noqa: E402
from infinity_core.weight_formats.gguf_blocks import quantize_k  # noqa: E402
from infinity_core.weights import (SAFETENSORS_SUFFIX, TensorSource, official_to_internal_transformer,  # noqa: E402
                                   official_to_internal_vae, open_sources, tensors_of)

log = logging.getLogger("convert_checkpoint")

GGUF_SUFFIX = ".gguf"
# --format -> (suffix of the default output name, file suffix)
FORMATS = {"same": ("", SAFETENSORS_SUFFIX), "bf16": ("_bf16", SAFETENSORS_SUFFIX),
           "fp8": ("_fp8", SAFETENSORS_SUFFIX), "int8": ("_int8", SAFETENSORS_SUFFIX),
           "gguf-f16": ("_F16", GGUF_SUFFIX), "gguf-bf16": ("_BF16", GGUF_SUFFIX),
           "gguf-q8_0": ("_Q8_0", GGUF_SUFFIX), "gguf-q5_k": ("_Q5_K", GGUF_SUFFIX),
           "gguf-q4_k": ("_Q4_K", GGUF_SUFFIX)}
_BLOCK_MATMUL_WEIGHT = re.compile(r"^(block_chunks\.\d+\.module\.\d+|blocks\.\d+)\.(" +
                                  "|".join(re.escape(m) for m in BLOCK_MATMULS) + r")\.weight$")
FP8_MAX = torch.finfo(torch.float8_e4m3fn).max
INT8_MAX = 127


def describe(state_dict) -> str:
    """The inferred configuration of a transformer or VAE state dict (official layout)."""
    if is_transformer(state_dict):
        internal, chunks = official_to_internal_transformer(state_dict)
        return f"Infinity transformer: {transformer_config_from_state_dict(internal, block_chunks=chunks)}"
    return f"BSQ VAE: {vae_config_from_state_dict(official_to_internal_vae(state_dict))}"


def is_transformer(keys) -> bool:
    return any(key.startswith(("block_chunks.", "blocks.")) for key in keys)


def is_block_matmul_weight(key: str) -> bool:
    return _BLOCK_MATMUL_WEIGHT.match(key) is not None


def kept_kind(key: str) -> str:
    """What a tensor kept in its own precision is, for the log."""
    if key == "cfg_uncond":
        return "cfg_uncond"
    if key.startswith("head."):
        return "bit head"
    if "embed" in key or key == "pos_start":
        return "embeddings"
    if key.startswith(("text_", "shared_ada_lin")):
        return "text path / shared AdaLN"
    if key.endswith("bias"):
        return "biases"
    return "norms, AdaLN tables and scales"


def default_target(source: Path, fmt: str) -> Path:
    name_suffix, file_suffix = FORMATS[fmt]
    stem = source.name if source.is_dir() else source.stem
    return source.parent / f"{stem}{name_suffix}{file_suffix}"


def check_target(target: Path, source: Path, overwrite: bool, fmt: str = "same") -> None:
    """Refuse, before the input is read, an output that is the input, does not end in the format's suffix,
    exists without `overwrite`, or lies in a folder that does not exist or cannot be written."""
    check_not_input(target, source, [])
    suffix = FORMATS[fmt][1]
    if target.suffix.lower() != suffix:
        raise InfinityError(f"output '{target}' must end in {suffix} for --format {fmt}")
    if target.is_dir():
        raise InfinityError(f"output '{target}' is a folder; name a {suffix} file")
    if target.exists() and not overwrite:
        raise InfinityError(f"output '{target}' already exists; pass --overwrite to replace it")
    folder = target.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise InfinityError(f"output folder '{folder}' does not exist or cannot be written")


def check_not_input(target: Path, source: Path, sources: list[TensorSource]) -> None:
    """The output may not be the input, one of its shards (once `sources` are open), or a link to either."""
    inputs = {os.path.realpath(src.path) for src in sources} | {os.path.realpath(source)}
    if os.path.realpath(target) in inputs:
        raise InfinityError(f"output '{target}' is the input file itself; name another output file")


# --- ComfyUI's quantized layout -----------------------------------------------------------------------

def _comfy_quant_info(fmt: str) -> torch.Tensor:
    return torch.tensor(list(json.dumps({"format": fmt}).encode()), dtype=torch.uint8)


def comfy_fp8(key: str, weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """float8_e4m3fn with one fp32 scale per tensor (amax / 448)."""
    weight = weight.float()
    scale = (weight.abs().max() / FP8_MAX).clamp_min(torch.finfo(torch.float32).tiny)
    layer = key.removesuffix(".weight")
    return {key: (weight / scale).to(torch.float8_e4m3fn), f"{layer}.weight_scale": scale,
            f"{layer}.comfy_quant": _comfy_quant_info("float8_e4m3fn")}


def comfy_int8_rows(key: str, weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """int8 with one fp32 scale per output row [N, 1] (row amax / 127)."""
    weight = weight.float()
    scale = (weight.abs().amax(dim=1, keepdim=True) / INT8_MAX).clamp_min(torch.finfo(torch.float32).tiny)
    layer = key.removesuffix(".weight")
    return {key: torch.round(weight / scale).clamp(-INT8_MAX, INT8_MAX).to(torch.int8),
            f"{layer}.weight_scale": scale, f"{layer}.comfy_quant": _comfy_quant_info("int8_tensorwise")}


SAFETENSORS_WEIGHT = {"same": lambda key, w: {key: w}, "bf16": lambda key, w: {key: w.to(torch.bfloat16)},
                      "fp8": comfy_fp8, "int8": comfy_int8_rows}


# --- GGUF ---------------------------------------------------------------------------------------------

def gguf_weight(weight: torch.Tensor, fmt: str):
    """(array to write, GGML type name) of a block matmul weight in GGUF type `fmt` (falling back to Q8_0,
    then F16, where its rows do not divide into the type's blocks)."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, quants
    rows = weight.float().numpy()
    wanted = fmt.removeprefix("gguf-").upper()
    for kind in (wanted, "Q8_0", "F16"):
        if kind == "F16":
            return rows.astype(np.float16), kind
        if kind == "BF16":
            return quants.quantize(rows, GGMLQuantizationType.BF16), kind
        if rows.shape[-1] % GGML_QUANT_SIZES[GGMLQuantizationType[kind]][0] == 0:
            if kind in ("Q4_K", "Q5_K"):
                return quantize_k(rows, kind), kind
            return quants.quantize(rows, GGMLQuantizationType[kind]), kind
    raise AssertionError("F16 always applies")


def write_gguf(tensors: dict, target: Path, metadata: dict[str, str]) -> None:
    """tensors: key -> (numpy array, GGML type name); plain arrays for F32/F16 and packed bytes otherwise."""
    from gguf import GGMLQuantizationType, GGUFWriter
    writer = GGUFWriter(str(target), "infinity")
    for key, value in metadata.items():
        writer.add_string(key, value)
    for key, (array, kind) in tensors.items():
        if kind in ("F32", "F16"):
            writer.add_tensor(key, array)
        else:
            writer.add_tensor(key, array, raw_shape=array.shape, raw_dtype=GGMLQuantizationType[kind])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_atomically(write, target: Path) -> None:
    """`write(temporary)` next to `target`, then rename it over `target` (one step on POSIX and Windows)."""
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(Path(temporary))
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def convert(state_dict: dict, fmt: str, progress: bool = True) -> tuple[dict, Counter, Counter]:
    """The output entries of `state_dict` in `fmt`, what was kept in its own precision (kind -> count),
    and what each block matmul weight became (type -> count)."""
    if fmt != "same" and not is_transformer(state_dict):
        raise InfinityError(f"--format {fmt} converts a transformer; a VAE is converted with --format same")
    gguf = fmt.startswith("gguf-")
    out: dict = {}
    kept, written = Counter(), Counter()
    for key in tqdm(list(state_dict), desc=f"converting to {fmt}", unit="tensor", disable=not progress):
        tensor = state_dict[key]
        if fmt != "same" and is_block_matmul_weight(key):
            if gguf:
                out[key] = gguf_weight(tensor, fmt)
                written[out[key][1]] += 1
            else:
                entries = SAFETENSORS_WEIGHT[fmt](key, tensor)
                out.update(entries)
                written[str(entries[key].dtype).removeprefix("torch.")] += 1
            continue
        if fmt != "same":
            kept[kept_kind(key)] += 1
        if gguf:
            array = tensor.float().numpy() if tensor.is_floating_point() else tensor.numpy()
            out[key] = (array, "F32")
        else:
            out[key] = tensor
    return out, kept, written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path, nargs="?", help="output file (default: the source's name + the format)")
    parser.add_argument("--format", choices=list(FORMATS), default="same", help="what to write (default: same)")
    parser.add_argument("--overwrite", action="store_true", help="replace the output if it exists")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    target = args.target or default_target(args.source, args.format)
    try:
        check_target(target, args.source, args.overwrite, args.format)
        sources = open_sources(args.source)
        check_not_input(target, args.source, sources)
        metadata = {k: v for src in sources for k, v in src.metadata().items() if k != "format"}
        state_dict = tensors_of(sources)
        log.info("%s", describe(state_dict))
        out, kept, written = convert(state_dict, args.format, progress=not args.no_progress)
        if written:
            log.info("block matmul weights written as: %s", ", ".join(f"{n} {k}" for k, n in sorted(written.items())))
        if kept:
            log.info("kept in their own precision: %s", ", ".join(f"{k} ({n})" for k, n in sorted(kept.items())))
        if target.suffix.lower() == GGUF_SUFFIX:
            write_atomically(lambda path: write_gguf(out, path, metadata), target)
        else:
            write_atomically(lambda path: save_file({k: v.contiguous() for k, v in out.items()}, str(path),
                                                    metadata={"format": "pt", **metadata}), target)
    except (InfinityError, OSError) as err:
        log.error("error: %s", err)
        return 2
    log.info("wrote %s (%d tensors, %.1f MiB)", target, len(out), target.stat().st_size / 2 ** 20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
