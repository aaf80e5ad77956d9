"""Quantized weight files built the ecosystem's way, independently of tools/convert_checkpoint.py.

ComfyUI's layout (comfy/quant_ops.py): `X.weight` float8_e4m3fn or int8, `X.weight_scale` fp32, `X.comfy_quant`
uint8 JSON; the older form: a `scaled_fp8` marker and `X.scale_weight`. GGUF: the `gguf` package's own
GGUFWriter and quantizer (`gguf.quants.quantize`), `general.architecture` "infinity", tensors named by
the official keys, 1-D and small tensors in F32 as ComfyUI-GGUF's converter keeps them.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

FP8_MAX = torch.finfo(torch.float8_e4m3fn).max


def linear_weights(state_dict: dict) -> list[str]:
    """The 2-D `.weight` tensors of linear layers (ComfyUI quantizes Linear layers only)."""
    return [k for k, v in state_dict.items() if k.endswith(".weight") and v.dim() == 2 and "embed" not in k]


def _comfy_info(fmt: str) -> torch.Tensor:
    return torch.tensor(list(json.dumps({"format": fmt}).encode()), dtype=torch.uint8)


def _write_per_layer(source: Path, target: Path, layer_tensors, extra: dict | None = None) -> None:
    """`source` with each linear layer's weight replaced by `layer_tensors(weight)`, a {name suffix: tensor}
    dict for that layer ("weight" among them), plus the file-wide `extra` tensors."""
    state = load_file(str(source))
    for key in linear_weights(state):
        layer = key[:-len(".weight")]
        for suffix, tensor in layer_tensors(state[key]).items():
            state[f"{layer}.{suffix}"] = tensor
    state.update(extra or {})
    save_file(state, str(target))


def write_comfy_fp8(source: Path, target: Path) -> None:
    """float8_e4m3fn with one scale per tensor (amax / 448), as ComfyUI's quantizer writes."""
    def layer(weight):
        scale = weight.abs().max() / FP8_MAX
        return {"weight": (weight / scale).to(torch.float8_e4m3fn), "weight_scale": scale.float(),
                "comfy_quant": _comfy_info("float8_e4m3fn")}
    _write_per_layer(source, target, layer)


def write_comfy_int8_rows(source: Path, target: Path) -> None:
    """int8 with one scale per output row [N, 1] (amax / 127)."""
    def layer(weight):
        scale = weight.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127
        return {"weight": torch.round(weight / scale).clamp(-127, 127).to(torch.int8), "weight_scale": scale.float(),
                "comfy_quant": _comfy_info("int8_tensorwise")}
    _write_per_layer(source, target, layer)


def write_scaled_fp8_old_form(source: Path, target: Path) -> None:
    """The older marker form: `scaled_fp8` plus `X.scale_weight` per float8 weight."""
    def layer(weight):
        scale = weight.abs().max() / FP8_MAX
        return {"weight": (weight / scale).to(torch.float8_e4m3fn), "scale_weight": scale.reshape(1).float()}
    _write_per_layer(source, target, layer, {"scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn)})


def write_gguf(source: Path, target: Path, qtype_name: str, *, raw_blocks=None) -> list[str]:
    """A GGUF of `source` with its 2-D weights in `qtype_name` where the row length allows (else Q8_0, else
    F32), through gguf.GGUFWriter. `raw_blocks(rows) -> packed bytes` supplies blocks for types the gguf
    package cannot quantize (K-quants); returns the keys written in `qtype_name`."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFWriter, quants
    qtype = GGMLQuantizationType[qtype_name]
    state = load_file(str(source))
    writer = GGUFWriter(str(target), "infinity")
    chosen = []
    for key, tensor in state.items():
        array = tensor.float().numpy()
        kind = None
        if tensor.dim() == 2 and key.endswith(".weight") and "embed" not in key:
            for candidate in (qtype, GGMLQuantizationType.Q8_0):
                if candidate in (GGMLQuantizationType.F16, GGMLQuantizationType.BF16) or \
                        array.shape[-1] % GGML_QUANT_SIZES[candidate][0] == 0:
                    kind = candidate
                    break
        if kind is None:
            writer.add_tensor(key, array)
            continue
        if kind == qtype:
            chosen.append(key)
        if kind == GGMLQuantizationType.F16:
            writer.add_tensor(key, array.astype(np.float16))
        elif kind in (GGMLQuantizationType.Q4_K, GGMLQuantizationType.Q5_K):
            packed = raw_blocks(array)
            writer.add_tensor(key, packed, raw_shape=packed.shape, raw_dtype=kind)
        else:
            packed = quants.quantize(array, kind)
            writer.add_tensor(key, packed, raw_shape=packed.shape, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return chosen
