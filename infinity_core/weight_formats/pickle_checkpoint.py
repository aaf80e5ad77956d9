"""PyTorch checkpoints (torch.save files) read without running their code.

torch.load(weights_only=True) refuses a pickle that names globals other than tensors' and containers',
but its message explains the mechanism rather than the file. When it refuses, the pickle's opcodes are
read statically (pickletools, nothing is unpickled) to name the objects it holds, so the error says what
the file is and how to convert it. A file that is neither a zip nor a pickle is refused before torch reads it.
"""
from __future__ import annotations

import io
import pickle
import pickletools
import warnings
import zipfile
from pathlib import Path
from typing import Iterable, Mapping

import torch

from ..errors import InfinityError
from .source import TensorSource

ZIP_MAGIC = b"PK\x03\x04"     # torch.save's default (zip) format
PICKLE_PROTO = 0x80           # first byte of a pickle of protocol 2 or later (torch.save's legacy format)
# Globals a tensor checkpoint's pickle may name: torch's tensor/storage rebuilders and containers.
TENSOR_GLOBAL_MODULES = ("torch", "collections")
_PICKLE_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING",
                      "STRING"}
LEGACY_PICKLES = 4            # the legacy format: magic number, protocol, system info, then the state
PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")


def _pickle_format(path: Path) -> str:
    """'zip', 'pickle' or 'unknown', from the first bytes."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if len(head) >= 2 and head[0] == PICKLE_PROTO and head[1] <= pickle.HIGHEST_PROTOCOL:
        return "pickle"
    with open(path, "rb") as handle:   # protocol 0/1 pickles have no PROTO opcode: one must parse whole
        _, complete = _pickle_globals(handle)
    return "pickle" if complete else "unknown"


def _globals_of_one_pickle(stream: io.BufferedIOBase, found: list[str]) -> None:
    """Append the `module.name` globals one pickle names to `found`, read statically with pickletools
    (nothing is unpickled); raises whatever pickletools raises on corrupt or truncated data."""
    memo: dict = {}
    recent: list = []   # last pushed values, strings where known (STACK_GLOBAL takes module and name from them)
    for opcode, arg, _ in pickletools.genops(stream):
        name = opcode.name
        if name in ("GLOBAL", "INST"):
            found.append(str(arg).replace(" ", "."))
        elif name == "STACK_GLOBAL":
            module, attr = recent[-2:] if len(recent) >= 2 else (None, None)
            found.append(f"{module}.{attr}" if isinstance(module, str) and isinstance(attr, str) else "<unknown>")
        if name in _PICKLE_STRING_OPS:
            recent.append(arg)
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            recent.append(memo.get(arg))
        elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[arg] = recent[-1] if recent else None
        elif name == "MEMOIZE":
            memo[len(memo)] = recent[-1] if recent else None
        else:
            recent.append(None)


def _pickle_globals(stream: io.BufferedIOBase) -> tuple[list[str], bool]:
    """The globals of up to `LEGACY_PICKLES` pickles in a row, and whether they parsed to their end."""
    found: list[str] = []
    for _ in range(LEGACY_PICKLES):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")   # pickletools' notes on odd string escapes in corrupt data
                _globals_of_one_pickle(stream, found)
        except Exception:   # noqa: BLE001 -- truncated or corrupt: report what was read so far
            return found, False
        if not stream.peek(1):   # the file ends here: a plain pickle, or a complete legacy header
            break
    return found, True


def _code_globals(path: Path, kind: str) -> list[str]:
    """Globals outside `TENSOR_GLOBAL_MODULES` that the checkpoint's pickle names (as far as it parses)."""
    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as archive:
                member = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                if member is None:
                    return []
                with archive.open(member) as stream:
                    names, _ = _pickle_globals(stream)
        else:
            with open(path, "rb") as stream:
                names, _ = _pickle_globals(stream)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return []
    return [n for n in names if n.split(".")[0] not in TENSOR_GLOBAL_MODULES]


def code_globals(path: Path) -> list[str]:
    """The globals other than tensors' that a torch.save file's pickle names, read statically (sorted, unique;
    empty for a clean checkpoint or a file that is no pickle)."""
    try:
        kind = _pickle_format(path)
    except OSError:
        return []
    return sorted(set(_code_globals(path, kind))) if kind != "unknown" else []


def read_checkpoint(path: Path) -> dict:
    """The object a torch.save file holds, loaded with torch.load(weights_only=True) (zip files memory-mapped);
    a file that is no checkpoint, or that names globals other than tensors', is refused naming it."""
    kind = _pickle_format(path)
    if kind == "unknown":
        raise InfinityError(f"'{path}' is not a PyTorch checkpoint (not a zip or pickle); "
                            "it may be another kind of file with a weight file's name")
    try:   # zip files are memory-mapped, so tensors are paged in as they are used
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=kind == "zip")
    except Exception as err:   # noqa: BLE001 -- torch raises many types on untrusted bytes; all mean a bad file
        code = _code_globals(path, kind)
        if code:
            raise InfinityError(f"'{path}' holds objects other than tensors ({', '.join(sorted(set(code))[:3])}), "
                                "which are not loaded because unpickling them could run code; convert it to "
                                ".safetensors with tools/convert_checkpoint.py on a trusted machine") from None
        raise InfinityError(f"'{path}' is not a readable PyTorch weight file; it may be truncated or "
                            f"corrupt ({_torch_detail(err)})") from None


# Lines of torch.load's weights-only message that explain the mechanism rather than this file.
_TORCH_BOILERPLATE = ("Weights only load failed", "Re-running", "Please file an issue", "Check the documentation",
                      "(1)", "(2)", "WeightsUnpickler error:")


def _torch_detail(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines()]
    useful = [line for line in lines if line and not line.startswith(_TORCH_BOILERPLATE)]
    return (useful[0] if useful else type(err).__name__)[:160]


# Containers that wrap a state dict in official files, tried in order.
WRAPPER_PATHS: tuple[tuple[str, ...], ...] = (
    ("vae",),                  # official VAE .pth (bsq_vae/vae.py:250)
    ("trainer", "gpt_fsdp"),   # official training checkpoint (run_infinity.py:save_slim_model)
    ("state_dict",),
)


def unwrap_state_dict(obj, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint's state dict, official containers unwrapped."""
    if not isinstance(obj, Mapping):
        raise InfinityError(f"'{path}' does not contain a state dict (found {type(obj).__name__})")
    for wrapper in WRAPPER_PATHS:
        inner = obj
        for name in wrapper:
            inner = inner.get(name) if isinstance(inner, Mapping) else None
        if isinstance(inner, Mapping):
            obj = inner
            break
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise InfinityError(f"'{path}' contains no tensors")
    return tensors


class PickleSource(TensorSource):
    """A torch.save checkpoint (the official `.pth`), its tensors memory-mapped where the file allows."""

    format = "pickle"

    def __init__(self, path: Path):
        super().__init__(path)
        self._tensors = unwrap_state_dict(read_checkpoint(path), path)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in self._tensors.items()}

    def non_float(self, keys: Iterable[str]) -> list[tuple[str, str]]:
        return [(k, str(self._tensors[k].dtype).removeprefix("torch.")) for k in keys
                if k in self._tensors and not self._tensors[k].is_floating_point()]

    def tensor(self, key: str) -> torch.Tensor:
        return self._tensors[key]
