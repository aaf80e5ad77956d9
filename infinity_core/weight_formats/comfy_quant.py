"""ComfyUI's mixed-precision safetensors: some layers quantized, each described on its own.

Per quantized layer X (ComfyUI 0.38, comfy/ops.py and comfy/quant_ops.py):
- `X.weight`: float8_e4m3fn, float8_e5m2 or int8, [N, K];
- `X.weight_scale`: fp32, one per tensor (a scalar) or one per output row ([N, 1] or [N]); value = weight * scale;
- `X.comfy_quant`: a uint8 tensor holding JSON, e.g. {"format": "float8_e4m3fn"} or {"format": "int8_tensorwise"};
- optionally `X.input_scale` (a scale for fp8 activations; the weights here are expanded, so it is not used).
The older form marks the whole file with a `scaled_fp8` tensor and gives each float8 weight an optional
`X.scale_weight` (and `X.scale_input`). Every other tensor is a plain one.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import InfinityError
from .quantized import SCALED, QuantizedTensor
from .safetensors_plain import FLOAT8_DTYPES, SafetensorsSource

QUANT_INFO_SUFFIX = ".comfy_quant"
OLD_FORM_MARKER = "scaled_fp8"
# the per-layer entries that describe a quantized weight rather than hold a state-dict tensor
SCALE_SUFFIXES = (".weight_scale", ".input_scale", ".scale_weight", ".scale_input")
# formats of `X.comfy_quant` -> the dtype `X.weight` must have
LAYER_FORMATS = {"float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2", "int8_tensorwise": "I8"}


def is_comfy_quant(keys) -> bool:
    """Whether a safetensors header's tensor names mark ComfyUI's quantized layout."""
    return any(k == OLD_FORM_MARKER or k.endswith(QUANT_INFO_SUFFIX) for k in keys)


class ComfyQuantSource(SafetensorsSource):
    format = "comfy_quant"

    def __init__(self, path: Path):
        super().__init__(path)
        stored = self.stored_keys()
        self._old_form = OLD_FORM_MARKER in stored
        layer_info = {k[:-len(QUANT_INFO_SUFFIX)]: k for k in stored if k.endswith(QUANT_INFO_SUFFIX)}
        self._scale_keys: dict[str, str] = {}       # weight key -> its scale's key (None: scale 1)
        for layer, info_key in layer_info.items():
            weight_key = f"{layer}.weight"
            fmt = self._layer_format(info_key)
            if fmt not in LAYER_FORMATS:
                raise InfinityError(f"'{path}': layer '{layer}' is quantized as '{fmt}', which this pack does not "
                                    f"read; it reads {sorted(LAYER_FORMATS)}")
            if self._dtypes.get(weight_key) != LAYER_FORMATS[fmt]:
                raise InfinityError(f"'{path}': layer '{layer}' says '{fmt}' but '{weight_key}' is "
                                    f"{self._dtypes.get(weight_key, 'missing')}")
            self._scale_keys[weight_key] = self._existing(f"{layer}.weight_scale")
        if self._old_form:
            for key, dtype in self._dtypes.items():
                if key.endswith(".weight") and dtype in FLOAT8_DTYPES and key not in self._scale_keys:
                    self._scale_keys[key] = self._existing(f"{key[:-len('.weight')]}.scale_weight")
        self._keys = [k for k in stored if k != OLD_FORM_MARKER and not k.endswith(QUANT_INFO_SUFFIX)
                      and not (k.endswith(SCALE_SUFFIXES) and _owner_weight(k) in self._scale_keys)]

    def _existing(self, key: str) -> str | None:
        return key if key in self._dtypes else None

    def _layer_format(self, info_key: str) -> str:
        raw = self.read(info_key)
        try:
            info = json.loads(bytes(raw.to(torch.uint8).flatten().tolist()).decode("utf-8"))
            return str(info["format"])
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
            raise InfinityError(f"'{self.path}': '{info_key}' is not ComfyUI's JSON layer description "
                                f"({err!r})") from None

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: self.stored_shape(k) for k in self._keys}

    def non_float(self, keys):
        return [(k, dtype) for k, dtype in super().non_float(keys) if k not in self._scale_keys]

    def _scale(self, weight_key: str, rows: int) -> torch.Tensor | None:
        scale_key = self._scale_keys[weight_key]
        if scale_key is None:
            return None
        scale = self.read(scale_key).float()
        if scale.numel() == 1:
            return scale.reshape(())
        if scale.numel() == rows:
            return scale.reshape(rows, 1)
        raise InfinityError(f"'{self.path}': '{scale_key}' has shape {tuple(scale.shape)}; a weight scale is one "
                            f"value or one per output row ({rows})")

    def quantized(self, key: str) -> QuantizedTensor | None:
        if key not in self._scale_keys:
            return super().quantized(key)
        shape = self.stored_shape(key)
        return QuantizedTensor(SCALED, self.read(key), self._scale(key, shape[0]), shape)

    def tensor(self, key: str) -> torch.Tensor:
        """Plain tensors as stored; a quantized one expanded to fp32."""
        if key in self._scale_keys:
            return self.quantized(key).dequantize(torch.float32)
        return self.read(key)


def _owner_weight(key: str) -> str:
    return f"{key.rsplit('.', 1)[0]}.weight"
