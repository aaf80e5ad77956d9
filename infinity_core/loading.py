"""Build models from weight files: architecture inferred from the file, built on the meta device,
tensors assigned one at a time (cast and moved as they arrive), so no second copy of the weights exists.

Dtype policy: the transformer's block matmul weights take the requested dtype (bf16/fp16 on GPUs);
everything that needs precision stays fp32: norms, embeddings, AdaLN tables, the text path, the head
(upstream runs those with autocast disabled, infinity.py:334-342, basic.py:458).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn

from .config import (TransformerConfig, VAEConfig, transformer_config_from_state_dict,
                     vae_config_from_state_dict)
from .devices import compute_dtype, resolve_device
from .errors import InfinityError
from .vae.autoencoder import BitwiseVAE
from .transformer.cpu_kernels import prepack_for_cpu
from .transformer.model import BLOCK_MATMULS, InfinityTransformer
from .weight_formats.quantized import QuantizedLinear, QuantizedTensor
from .weights import (TensorSource, check_layout, open_sources, require_finite, require_float, transformer_key_map,
                      vae_key)

log = logging.getLogger(__name__)



def default_dtype(device: torch.device) -> torch.dtype:
    """The automatic compute dtype on `device` (devices.compute_dtype)."""
    return compute_dtype(device)


def _resolve(device, dtype) -> tuple[torch.device, torch.dtype]:
    device = resolve_device(device)
    dtype = dtype if dtype is not None else default_dtype(device)
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise InfinityError(f"dtype must be float32, bfloat16 or float16, got {dtype}")
    return device, dtype


def _assign(module: nn.Module, name: str, tensor: torch.Tensor) -> None:
    owner_name, _, leaf = name.rpartition(".")
    owner = module.get_submodule(owner_name) if owner_name else module
    setattr(owner, leaf, nn.Parameter(tensor, requires_grad=False))


def _check_layout(module: nn.Module, shapes: dict[str, tuple[int, ...]], source: str) -> None:
    check_layout({k: tuple(v.shape) for k, v in module.state_dict().items()}, shapes, source)


def _meta(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    return {k: torch.empty(s, device="meta") for k, s in shapes.items()}


def _stream_into(module: nn.Module, sources: list[TensorSource], key_map, placement, source_name: str, *,
                 keep_packed=lambda name: False) -> int:
    """Assign every mapped tensor, one at a time: read, cast and move per `placement(name) -> (device, dtype)`,
    refusing non-finite values (in the file or from the cast) as each one arrives.

    A weight the file stores quantized whose layer `keep_packed(name)` accepts stays packed: its `nn.Linear`
    becomes a `QuantizedLinear` computing in the placement's dtype. Returns how many layers stayed packed."""
    packed_layers = 0
    for source in sources:
        for key in source.shapes():
            name = key_map(key)
            if name is None:
                continue
            device, dtype = placement(name)
            packed = source.quantized(key) if keep_packed(name) else None
            if packed is not None:
                values = packed.dequantize(torch.float32)
                require_finite(values, values, key, source_name)
                _swap_in_quantized(module, name.removesuffix(".weight"), packed.to(device), dtype)
                packed_layers += 1
                continue
            original = source.tensor(key)
            tensor = original.to(device=device, dtype=dtype)
            require_finite(tensor, original, key, source_name)
            _assign(module, name, tensor)
    return packed_layers


def _swap_in_quantized(module: nn.Module, layer_name: str, weight: QuantizedTensor, dtype: torch.dtype) -> None:
    """Replace the `nn.Linear` at `layer_name` by a `QuantizedLinear` holding `weight` (its bias carried over,
    loaded already or still to come)."""
    owner_name, _, leaf = layer_name.rpartition(".")
    owner = module.get_submodule(owner_name) if owner_name else module
    layer = getattr(owner, leaf)
    setattr(owner, leaf, QuantizedLinear(weight, layer.bias, dtype))


def _is_block_matmul(name: str) -> bool:
    return name.startswith("blocks.") and any(f".{matmul}." in name for matmul in BLOCK_MATMULS)


def _block_param_dtype(name: str, dtype: torch.dtype) -> torch.dtype:
    return dtype if _is_block_matmul(name) else torch.float32


def load_transformer(path: str | os.PathLike, device=None, dtype: torch.dtype | None = None, *,
                     prepack: bool = True) -> InfinityTransformer:
    """An Infinity transformer from an official `.pth`, a `.safetensors` file, or a shard folder/index JSON.

    Block matmul weights the file stores quantized (ComfyUI's float8/int8 layers, GGUF Q8_0/Q4_K/Q5_K) stay
    quantized in memory and are expanded in `dtype` at each use (weight_formats/quantized.py); every other
    tensor is expanded once, at load. On the CPU the plain block matmul weights come prepacked for oneDNN (`prepack_for_cpu`, the CPU fast path)
    where this CPU supports the dtype. A prepacked model cannot move to another device: pass
    `prepack=False` for a model that will be moved (e.g. loaded on the CPU, run on a GPU)."""
    device, dtype = _resolve(device, dtype)
    source_name = f"transformer file '{Path(path)}'"
    sources = open_sources(path)
    shapes = {k: s for src in sources for k, s in src.shapes().items()}
    key_map, chunks = transformer_key_map(shapes)
    internal_shapes = {key_map[k]: s for k, s in shapes.items() if k in key_map}
    config = transformer_config_from_state_dict(_meta(internal_shapes), block_chunks=chunks, source=source_name)
    with torch.device("meta"):
        model = InfinityTransformer(config)
    _check_layout(model, internal_shapes, source_name)
    require_float(sources, key_map, source_name)
    packed = _stream_into(model, sources, key_map.get, lambda name: (device, _block_param_dtype(name, dtype)),
                          source_name, keep_packed=lambda name: _is_block_matmul(name) and name.endswith(".weight"))
    log.info("loaded %s (%s): %s on %s, blocks computed in %s%s", source_name,
             "+".join(sorted({src.format for src in sources})), config, device, dtype,
             f", {packed} block matmuls kept quantized" if packed else "")
    if prepack:
        prepack_for_cpu(model)   # a no-op off the CPU
    return model.eval()


def load_vae(path: str | os.PathLike, device=None, dtype: torch.dtype | None = None, *,
             with_encoder: bool = True) -> BitwiseVAE:
    """The BSQ autoencoder from an official `{'vae': ...}` `.pth` or a `.safetensors` file."""
    device, dtype = _resolve(device, dtype)
    source_name = f"VAE file '{Path(path)}'"
    sources = open_sources(path)
    internal_shapes = {name: s for src in sources for k, s in src.shapes().items() if (name := vae_key(k)) is not None}
    if not with_encoder:
        internal_shapes = {k: s for k, s in internal_shapes.items() if not k.startswith("encoder.")}
    config = vae_config_from_state_dict(_meta(internal_shapes), source=source_name)
    with torch.device("meta"):
        model = BitwiseVAE(config, with_encoder=with_encoder)
    _check_layout(model, internal_shapes, source_name)
    wanted = set(internal_shapes)
    require_float(sources, [k for src in sources for k in src.shapes() if vae_key(k) in wanted], source_name)
    _stream_into(model, sources, lambda k: name if (name := vae_key(k)) in wanted else None,
                 lambda name: (device, dtype), source_name)
    log.info("loaded %s: %s on %s in %s", source_name, config, device, dtype)
    return model.eval()


def check_pair(transformer_config: TransformerConfig, vae_config: VAEConfig,
               transformer_name: str = "the transformer", vae_name: str = "the VAE") -> None:
    """Refuse a VAE whose bits do not match the transformer's bit head, naming both files and numbers."""
    per_token = vae_config.codebook_dim * (4 if transformer_config.spatial_patchify else 1)
    if per_token != transformer_config.bits_per_token:
        detail = " (2x2 patches of VAE latents)" if transformer_config.spatial_patchify else ""
        raise InfinityError(
            f"{vae_name} has {vae_config.codebook_dim}-bit codes but {transformer_name} predicts "
            f"{transformer_config.bits_per_token} bits per token{detail}; pair the 2B with a d32 VAE "
            f"(infinity_vae_d32reg) and the 8B with infinity_vae_d56_f8_14_patchify")
