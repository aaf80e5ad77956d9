"""Which format a weight file is, read from its first bytes and header, never from its name alone.

- GGUF: the magic `GGUF`;
- PyTorch checkpoint: a zip (`PK\\x03\\x04`, torch.save's default) or a pickle (protocol byte 0x80);
- safetensors: an 8-byte little-endian header length, then that many bytes of JSON; ComfyUI's quantized
  layout is a safetensors file whose header names a `*.comfy_quant` or `scaled_fp8` tensor.
A file none of these recognise is handed to the reader its extension names (so a truncated file gets that
reader's own diagnosis), and refused when the extension names none.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

from ..errors import InfinityError
from .comfy_quant import ComfyQuantSource, is_comfy_quant
from .gguf_file import MAGIC as GGUF_MAGIC, GGUFSource
from .pickle_checkpoint import PICKLE_PROTO, ZIP_MAGIC, PickleSource
from .safetensors_plain import SafetensorsSource
from .source import TensorSource

# format name -> reader class, side by side
READERS: dict[str, type[TensorSource]] = {
    "safetensors": SafetensorsSource,
    "comfy_quant": ComfyQuantSource,
    "gguf": GGUFSource,
    "pickle": PickleSource,
}
# extension -> format, only for files whose contents name no format
SUFFIX_FORMATS = {".safetensors": "safetensors", ".gguf": "gguf", ".pth": "pickle", ".pt": "pickle",
                  ".bin": "pickle", ".ckpt": "pickle"}
MAX_HEADER_BYTES = 100 * 2 ** 20   # safetensors' own limit on a header


def _safetensors_keys(head: bytes, path: Path) -> list[str] | None:
    """The tensor names of a safetensors header, or None when the bytes are not one."""
    if len(head) < 9 or head[8:9] != b"{":
        return None
    (length,) = struct.unpack("<Q", head[:8])
    if length > MAX_HEADER_BYTES or length > path.stat().st_size - 8:
        return None
    with open(path, "rb") as handle:
        handle.seek(8)
        try:
            header = json.loads(handle.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
    return [k for k in header if k != "__metadata__"] if isinstance(header, dict) else None


def detect_format(path: Path) -> str | None:
    """'safetensors', 'comfy_quant', 'gguf' or 'pickle' from the file's contents; None when unrecognised."""
    with open(path, "rb") as handle:
        head = handle.read(9)
    if head.startswith(GGUF_MAGIC):
        return "gguf"
    keys = _safetensors_keys(head, path)   # before the pickle test: a header length may start with 0x80
    if keys is not None:
        return "comfy_quant" if is_comfy_quant(keys) else "safetensors"
    if head.startswith(ZIP_MAGIC) or (len(head) >= 2 and head[0] == PICKLE_PROTO):
        return "pickle"
    return None


def open_source(path: Path) -> TensorSource:
    """The reader for one weight file, chosen by `detect_format` (then by extension, for its diagnosis)."""
    found = detect_format(path) or SUFFIX_FORMATS.get(path.suffix.lower())
    if found is None:
        raise InfinityError(f"'{path}' is not a weight file this pack reads: its contents are none of "
                            f"{sorted(READERS)} and it has an unsupported extension '{path.suffix.lower()}'; use "
                            f"{', '.join(SUFFIX_FORMATS)} or a shard folder with an index JSON")
    return READERS[found](path)
