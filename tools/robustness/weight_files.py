"""Hostile and broken weight files: each case built in a model folder beside an `outside` folder, and what
the loader did with it (refused naming the file and why; no code ran; nothing outside was read)."""
from __future__ import annotations

import json
import os
import pickle
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file

from infinity_core import InfinityError, load_transformer, load_vae

from .common import T5_FIXTURE, TRANSFORMER_FIXTURE, VAE_FIXTURE

MARKER_NAME = "CODE_RAN"              # created by the pickled payloads if they ever execute
CANARY_NAME = "canary.safetensors"    # a valid weight file outside the model folder
FORBIDDEN_DEVICES = ("/dev/zero", "/dev/urandom")


@dataclass(frozen=True)
class Layout:
    """Where a case's files go: `models` may be read, `outside` never; `marker` must never exist."""

    root: Path

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def outside(self) -> Path:
        return self.root / "outside"

    @property
    def marker(self) -> Path:
        return self.root / MARKER_NAME

    @property
    def canary(self) -> Path:
        return self.outside / CANARY_NAME

    def create(self) -> None:
        self.models.mkdir(parents=True, exist_ok=True)
        self.outside.mkdir(parents=True, exist_ok=True)
        save_file(load_file(str(TRANSFORMER_FIXTURE)), str(self.canary))
        arm_canary(self.canary)


class CodePayload:
    """Pickles to a call that creates the marker file: unpickling it would run code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


@dataclass(frozen=True)
class WeightCase:
    name: str
    loader: str                               # "transformer", "transformer_fp16" or "vae"
    expect: str                               # regular expression the error message must match
    build: Callable[[Layout], Path]           # writes the case under layout.models, returns the path to load


def _transformer_tensors() -> dict[str, torch.Tensor]:
    return load_file(str(TRANSFORMER_FIXTURE))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _safetensors_bytes() -> bytes:
    return TRANSFORMER_FIXTURE.read_bytes()


def _zip_pth_bytes(folder: Path) -> bytes:
    scratch = folder / "scratch_zip.tmp"
    torch.save(_transformer_tensors(), scratch)
    data = scratch.read_bytes()
    scratch.unlink()
    return data


def _legacy_pth_bytes(folder: Path) -> bytes:
    scratch = folder / "scratch_legacy.tmp"
    torch.save(_transformer_tensors(), scratch, _use_new_zipfile_serialization=False)
    data = scratch.read_bytes()
    scratch.unlink()
    return data


def _safetensors_offsets(data: bytes) -> dict[str, int]:
    header = int.from_bytes(data[:8], "little")
    return {"4 bytes": 4, "length field only": 8, "mid header": 8 + header // 2, "header only": 8 + header,
            "mid data": 8 + header + (len(data) - 8 - header) // 2, "last byte missing": len(data) - 1}


def _truncated_safetensors(label: str) -> Callable[[Layout], Path]:
    def build(layout: Layout) -> Path:
        data = _safetensors_bytes()
        return _write(layout.models / f"cut_{label.replace(' ', '_')}.safetensors",
                      data[:_safetensors_offsets(data)[label]])
    return build


def _truncated_pth(kind: str, fraction: float | None, size: int | None = None) -> Callable[[Layout], Path]:
    def build(layout: Layout) -> Path:
        data = _zip_pth_bytes(layout.models) if kind == "zip" else _legacy_pth_bytes(layout.models)
        end = size if size is not None else int(len(data) * fraction) if fraction < 1 else len(data) - 1
        return _write(layout.models / f"cut_{kind}_{end}.pth", data[:end])
    return build


def _random_bytes(suffix: str, prefix: bytes = b"") -> Callable[[Layout], Path]:
    def build(layout: Layout) -> Path:
        generator = torch.Generator().manual_seed(len(suffix) + len(prefix))
        noise = torch.randint(0, 256, (4096,), dtype=torch.uint8, generator=generator).numpy().tobytes()
        return _write(layout.models / f"random{prefix.hex()}{suffix}", prefix + noise)
    return build


def _plain_pickle(protocol: int) -> Callable[[Layout], Path]:
    def build(layout: Layout) -> Path:
        path = layout.models / f"code_plain_p{protocol}.pth"
        with open(path, "wb") as handle:
            pickle.dump({"blocks.0.weight": CodePayload(layout.marker)}, handle, protocol=protocol)
        return path
    return build


def _torch_saved(name: str, wrap: Callable[[object], object], legacy: bool = False) -> Callable[[Layout], Path]:
    def build(layout: Layout) -> Path:
        path = layout.models / name
        torch.save(wrap(CodePayload(layout.marker)), path, _use_new_zipfile_serialization=not legacy)
        return path
    return build


def _with_tensor(key: str, tensor: torch.Tensor, suffix: str = ".safetensors",
                 base: Path = TRANSFORMER_FIXTURE) -> Callable[[Layout], Path]:
    """The fixture with one tensor replaced (by a wrong dtype, NaN, ...)."""
    def build(layout: Layout) -> Path:
        tensors = load_file(str(base))
        tensors[key] = tensor.expand_as(tensors[key]).contiguous() if tensor.numel() == 1 else tensor
        path = layout.models / f"{key.replace('.', '_')}_{tensor.dtype}".replace("torch.", "")
        path = path.with_name(path.name + suffix)
        if suffix == ".safetensors":
            save_file(tensors, str(path))
        else:
            torch.save(tensors, path)
        return path
    return build


def _sd_like(layout: Layout) -> Path:
    """A Stable-Diffusion-like key layout (UNet, VAE and CLIP prefixes)."""
    tensors = {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(8, 4, 3, 3),
               "first_stage_model.decoder.conv_in.weight": torch.zeros(8, 4, 3, 3),
               "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": torch.zeros(16, 8)}
    path = layout.models / "sd_like.safetensors"
    save_file(tensors, str(path))
    return path


def _copy(source: Path, name: str) -> Callable[[Layout], Path]:
    return lambda layout: _write(layout.models / name, source.read_bytes())


def _shard_index(name: str, shard_names: Callable[[Layout], list[str]]) -> Callable[[Layout], Path]:
    """A shard folder whose index maps the fixture's keys onto `shard_names` (round robin)."""
    def build(layout: Layout) -> Path:
        folder = layout.models / name
        folder.mkdir()
        shards = shard_names(layout)
        keys = sorted(load_file(str(TRANSFORMER_FIXTURE)))
        index = {"metadata": {}, "weight_map": {k: shards[i % len(shards)] for i, k in enumerate(keys)}}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
        return folder
    return build


def _shard_symlink_out(layout: Layout) -> Path:
    folder = _shard_index("shard_symlink_out", lambda _: ["model-00001.safetensors"])(layout)
    (folder / "model-00001.safetensors").symlink_to(layout.canary)
    return folder


def _shard_symlink_loop(layout: Layout) -> Path:
    folder = _shard_index("shard_symlink_loop", lambda _: ["model-00001.safetensors"])(layout)
    (folder / "model-00001.safetensors").symlink_to(folder / "model-00001.safetensors")
    return folder


def _raw_index(name: str, text: str) -> Callable[[Layout], Path]:
    def build(layout: Layout) -> Path:
        folder = layout.models / name
        folder.mkdir()
        (folder / "model.safetensors.index.json").write_text(text)
        return folder
    return build


def _symlink(name: str, target: Callable[[Layout], Path]) -> Callable[[Layout], Path]:
    def build(layout: Layout) -> Path:
        path = layout.models / name
        path.symlink_to(target(layout))
        return path
    return build


def _directory(name: str) -> Callable[[Layout], Path]:
    def build(layout: Layout) -> Path:
        (layout.models / name).mkdir()
        return layout.models / name
    return build


FIRST_WEIGHT = "block_chunks.0.module.0.sa.mat_qkv.weight"
VAE_WEIGHT = "decoder.conv_in.conv.weight"

# What each kind of refusal says (regular expressions over the error message).
EMPTY = r"is empty \(0 bytes\)"
BAD_SAFETENSORS = r"is not a readable safetensors file"
BAD_PTH = r"is not a readable PyTorch weight file; it may be truncated or corrupt"
NOT_PICKLE = r"is not a PyTorch checkpoint \(not a zip or pickle\)"
CODE = r"holds objects other than tensors \(.*exec\).* could run code"
NOT_FLOAT = r"weights that are not floating point: '[\w.]+' \((int64|int32|uint8|bool)\)"
NON_FINITE = r"tensor '[\w.]+' holds NaN or infinite values"
OVERFLOW = r"tensor '[\w.]+' overflows float16"
NOT_TRANSFORMER = r"is not an Infinity transformer checkpoint"
NOT_VAE = r"is missing, so this is not an Infinity checkpoint"
OUTSIDE = r"which lies outside the index's folder"
BROKEN_LINK = r"is a symbolic link whose target does not exist or loops"
MISSING = r"does not exist$"

WEIGHT_CASES: tuple[WeightCase, ...] = (
    WeightCase("empty .safetensors", "transformer", EMPTY, lambda layout: _write(layout.models / "empty.safetensors", b"")),
    WeightCase("empty .pth", "transformer", EMPTY, lambda layout: _write(layout.models / "empty.pth", b"")),
    *(WeightCase(f"safetensors cut: {label}", "transformer", BAD_SAFETENSORS, _truncated_safetensors(label))
      for label in ("4 bytes", "length field only", "mid header", "header only", "mid data", "last byte missing")),
    WeightCase("zip .pth cut at 2 bytes", "transformer", NOT_PICKLE, _truncated_pth("zip", None, 2)),
    WeightCase("zip .pth cut at 100 bytes", "transformer", BAD_PTH, _truncated_pth("zip", None, 100)),
    WeightCase("zip .pth cut in half", "transformer", BAD_PTH, _truncated_pth("zip", 0.5)),
    WeightCase("zip .pth last byte missing", "transformer", BAD_PTH, _truncated_pth("zip", 1.0)),
    WeightCase("legacy .pth cut at 10 bytes", "transformer", BAD_PTH, _truncated_pth("legacy", None, 10)),
    WeightCase("legacy .pth cut at 200 bytes", "transformer", BAD_PTH, _truncated_pth("legacy", None, 200)),
    WeightCase("legacy .pth cut in half", "transformer", BAD_PTH, _truncated_pth("legacy", 0.5)),
    WeightCase("legacy .pth last byte missing", "transformer", BAD_PTH, _truncated_pth("legacy", 1.0)),
    WeightCase("random bytes .pth", "transformer", NOT_PICKLE, _random_bytes(".pth")),
    WeightCase("random bytes .pth after a pickle PROTO", "transformer", BAD_PTH, _random_bytes(".pth", b"\x80\x02")),
    WeightCase("random bytes .pth after a zip signature", "transformer", BAD_PTH, _random_bytes(".pth", b"PK\x03\x04")),
    WeightCase("random bytes .safetensors", "transformer", BAD_SAFETENSORS, _random_bytes(".safetensors")),
    WeightCase("random bytes .ckpt as VAE", "vae", NOT_PICKLE, _random_bytes(".ckpt")),
    WeightCase("text named .bin", "transformer", NOT_PICKLE,
               lambda layout: _write(layout.models / "readme.bin", b"hello, this is not a checkpoint\n")),
    *(WeightCase(f"pickle with code: plain, protocol {p}", "transformer", CODE, _plain_pickle(p)) for p in (0, 2, 4, 5)),
    WeightCase("pickle with code: zip torch.save", "transformer", CODE,
               _torch_saved("code_zip.pth", lambda payload: {"weight": torch.ones(2), "hook": payload})),
    WeightCase("pickle with code: legacy torch.save", "transformer", CODE,
               _torch_saved("code_legacy.pth", lambda payload: {"weight": payload}, legacy=True)),
    WeightCase("pickle with code: wrapped in state_dict", "transformer", CODE,
               _torch_saved("code_wrapped.pth", lambda payload: {"state_dict": {"a": {"b": [payload]}}})),
    WeightCase("pickle with code: wrapped as official VAE", "vae", CODE,
               _torch_saved("code_vae.pth", lambda payload: {"vae": {VAE_WEIGHT: payload}})),
    WeightCase("pickle with code: the whole object", "transformer", CODE, _torch_saved("code_top.pth", lambda p: p)),
    WeightCase("int64 weight", "transformer", NOT_FLOAT,
               _with_tensor(FIRST_WEIGHT, torch.zeros(1, dtype=torch.int64))),
    WeightCase("bool weight", "transformer", NOT_FLOAT, _with_tensor(FIRST_WEIGHT, torch.zeros(1, dtype=torch.bool))),
    WeightCase("int32 weight in .pth", "transformer", NOT_FLOAT,
               _with_tensor(FIRST_WEIGHT, torch.zeros(1, dtype=torch.int32), suffix=".pth")),
    WeightCase("uint8 VAE weight", "vae", NOT_FLOAT,
               _with_tensor(VAE_WEIGHT, torch.zeros(1, dtype=torch.uint8), base=VAE_FIXTURE)),
    WeightCase("NaN weight", "transformer", NON_FINITE, _with_tensor(FIRST_WEIGHT, torch.tensor([float("nan")]))),
    WeightCase("inf weight in .pth", "transformer", NON_FINITE,
               _with_tensor("head.weight", torch.tensor([float("inf")]), suffix=".pth")),
    WeightCase("NaN VAE weight", "vae", NON_FINITE,
               _with_tensor(VAE_WEIGHT, torch.tensor([float("nan")]), base=VAE_FIXTURE)),
    WeightCase("weight overflowing fp16", "transformer_fp16", OVERFLOW, _with_tensor(FIRST_WEIGHT, torch.tensor([1e6]))),
    WeightCase("T5 file as transformer", "transformer", NOT_TRANSFORMER, _copy(T5_FIXTURE, "t5_encoder.safetensors")),
    WeightCase("T5 file as VAE", "vae", NOT_VAE, _copy(T5_FIXTURE, "t5_as_vae.safetensors")),
    WeightCase("SD-like file as transformer", "transformer", NOT_TRANSFORMER, _sd_like),
    WeightCase("SD-like file as VAE", "vae", NOT_VAE, _sd_like),
    WeightCase("VAE file as transformer", "transformer", NOT_TRANSFORMER,
               _copy(VAE_FIXTURE, "vae_as_transformer.safetensors")),
    WeightCase("transformer file as VAE", "vae", NOT_VAE, _copy(TRANSFORMER_FIXTURE, "transformer_as_vae.safetensors")),
    WeightCase("shard index escaping with ../", "transformer", OUTSIDE,
               _shard_index("shard_dotdot", lambda layout: [f"../../outside/{CANARY_NAME}"])),
    WeightCase("shard index with an absolute path", "transformer", OUTSIDE,
               _shard_index("shard_absolute", lambda layout: [str(layout.canary)])),
    WeightCase("shard index naming a device", "transformer", OUTSIDE,
               _shard_index("shard_device", lambda layout: ["/dev/zero"])),
    WeightCase("shard symlinked outside", "transformer", OUTSIDE, _shard_symlink_out),
    WeightCase("shard symlink loop", "transformer", BROKEN_LINK, _shard_symlink_loop),
    WeightCase("shard index naming a missing shard", "transformer", MISSING,
               _shard_index("shard_missing", lambda layout: ["model-00001-of-00002.safetensors"])),
    WeightCase("shard index not JSON", "transformer", r"is not a valid index JSON",
               _raw_index("shard_not_json", "{not json")),
    WeightCase("shard index nested 100000 deep", "transformer", r"is not a valid index JSON \(it nests deeper",
               _raw_index("shard_nested", '{"weight_map": ' + "[" * 100_000 + "]" * 100_000 + "}")),
    WeightCase("shard index with numbers for names", "transformer", r"that is not a file name",
               _raw_index("shard_numbers", json.dumps({"weight_map": {"a": 1}}))),
    WeightCase("dangling symlink", "transformer", BROKEN_LINK,
               _symlink("dangling.safetensors", lambda layout: layout.models / "nowhere.safetensors")),
    WeightCase("symlink loop", "transformer", BROKEN_LINK,
               _symlink("loop.safetensors", lambda layout: layout.models / "loop.safetensors")),
    WeightCase("symlink to /dev/zero", "transformer", r"is not a regular file",
               _symlink("zero.pth", lambda layout: Path("/dev/zero"))),
    WeightCase("folder named .safetensors", "transformer", r"has no shard index", _directory("folder.safetensors")),
    WeightCase("missing file", "vae", MISSING, lambda layout: layout.models / "missing_vae.pth"),
)


# --- what a case is checked against ----------------------------------------------------------------------

def arm_canary(path: Path) -> None:
    """Access time a day before the modification time: the next read of the file updates it (relatime)."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_mtime_ns - 86_400 * 10**9, stat.st_mtime_ns))


def canary_read(path: Path) -> bool:
    stat = path.stat()
    return stat.st_atime_ns >= stat.st_mtime_ns


class OpenAudit:
    """Records every Python-level open of a path under the forbidden roots (one hook per process)."""

    _installed: "OpenAudit | None" = None

    def __init__(self):
        self.forbidden: tuple[str, ...] = ()
        self.seen: list[str] = []

    @classmethod
    def install(cls) -> "OpenAudit":
        if cls._installed is None:
            cls._installed = cls()
            sys.addaudithook(cls._installed._hook)
        return cls._installed

    def _hook(self, event: str, args: tuple) -> None:
        if event == "open" and self.forbidden and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.path.realpath(os.fsdecode(args[0]))
            if path.startswith(self.forbidden):
                self.seen.append(path)

    def watch(self, layout: Layout) -> None:
        self.forbidden = (os.path.realpath(layout.outside), *FORBIDDEN_DEVICES)
        self.seen = []


@dataclass(frozen=True)
class Outcome:
    case: str
    refused: bool          # InfinityError raised
    names_file: bool       # its message names the file or folder
    says_why: bool         # and matches the case's expected reason
    code_ran: bool
    read_outside: bool
    message: str

    @property
    def ok(self) -> bool:
        return self.refused and self.names_file and self.says_why and not self.code_ran and not self.read_outside


def _load(loader: str, path: Path) -> None:
    if loader == "vae":
        load_vae(path, "cpu", torch.float32)
    else:
        load_transformer(path, "cpu", torch.float16 if loader == "transformer_fp16" else torch.float32)


def try_weight_case(case: WeightCase, layout: Layout, audit: OpenAudit) -> Outcome:
    """Build the case, load it, and report what happened."""
    path = case.build(layout)
    arm_canary(layout.canary)
    audit.watch(layout)
    try:
        _load(case.loader, path)
        refused, message = False, "loaded without an error"
    except InfinityError as err:
        refused, message = True, str(err)
    except Exception as err:   # noqa: BLE001 -- any other exception is a finding, reported as such
        refused, message = False, f"{type(err).__name__}: {err}"
    finally:
        audit.forbidden = ()
    read_outside = bool(audit.seen) or canary_read(layout.canary)
    code_ran = layout.marker.exists()
    layout.marker.unlink(missing_ok=True)   # each case is judged on its own
    return Outcome(case.name, refused, path.name in message, bool(re.search(case.expect, message)), code_ran,
                   read_outside, message)


def weight_file_figures(root: Path) -> list[Outcome]:
    layout = Layout(root)
    layout.create()
    audit = OpenAudit.install()
    return [try_weight_case(case, layout, audit) for case in WEIGHT_CASES]


def print_weight_file_figures(outcomes: list[Outcome]) -> None:
    width = max(len(o.case) for o in outcomes)
    print(f"{'case':<{width}}  ok  error (first 90 characters)")
    for outcome in outcomes:
        print(f"{outcome.case:<{width}}  {'yes' if outcome.ok else 'NO ':<3} {outcome.message[:90]}")
    print()
    print(f"weight files: {len(outcomes)} tried, "
          f"{sum(o.code_ran for o in outcomes)} code executed (marker file), "
          f"{sum(o.read_outside for o in outcomes)} read outside the model folder (audit hook + canary atime), "
          f"{sum(o.refused and o.names_file and o.says_why for o in outcomes)} clear errors naming the file and the reason")
