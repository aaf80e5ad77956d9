"""Robustness figures: hostile and broken weight files, bad settings, and reproducibility, as tables.

    python tools/robustness_report.py            # builds the cases in a temporary folder, prints the figures

Parts (each one function): `weight_file_figures`, `bad_input_figures` (pictures, CLI arguments, outputs, a text
encoder folder of pickles and the Python API's common mistakes: each refused with an InfinityError naming the
argument or file, before any model loads where the arguments decide it, or read right), `bad_setting_figures` (every bad value through
`SamplingConfig` and through `generate`: an InfinityError whose message starts with the setting's name,
raised before the first scale), `png_bytes_across_processes` (the same seed writes the same PNG bytes in two
fresh processes) and `batch_images_equal_single_runs` (image i of a batch with seed s is the single run with
seed s + i). The last two use the shipped demo model.

Each weight-file case is a file (or folder) built from the test fixtures in a model folder, next to an
`outside` folder the loaders must never read. Three things are checked per case:
- the loader raises InfinityError and its message names the file;
- no code ran: pickles with code would create a marker file, which must never appear;
- nothing outside the model folder was read: Python-level opens are recorded with an audit hook
  (`sys.addaudithook`, event "open"), and reads from native code (safetensors, torch's zip reader) are
  caught by a canary file outside whose access time is set before its modification time, so that the
  kernel (relatime) updates it on the first read.
tests/test_weight_file_attacks.py asserts the same for every case in CI.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import re
import sys
import tempfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from infinity_core import (InfinityError, InfinityPipeline, SamplingConfig, TextCondition, generate,  # noqa: E402
                           load_transformer, load_vae, to_pil, to_uint8)

log = logging.getLogger("robustness_report")

FIXTURES = REPO / "tests" / "fixtures" / "infinity_tiny"
TRANSFORMER_FIXTURE = FIXTURES / "infinity_tiny.safetensors"
VAE_FIXTURE = FIXTURES / "vae_tiny.safetensors"
T5_FIXTURE = FIXTURES / "t5_tiny.safetensors"
MARKER_NAME = "CODE_RAN"              # created by the pickled payloads if they ever execute
CANARY_NAME = "canary.safetensors"    # a valid weight file outside the model folder
FORBIDDEN_DEVICES = ("/dev/zero", "/dev/urandom")


# --- the weight-file cases ------------------------------------------------------------------------------

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


# --- bad settings ------------------------------------------------------------------------------------------

NAN, INF = float("nan"), float("inf")
BAD_SETTINGS: tuple[tuple[str, object], ...] = (
    *(("cfg", v) for v in (NAN, INF, -INF, -3.0, 1e30, "abc", None, True, (), (3.0, NAN), (3.0,) * 14)),
    *(("tau", v) for v in (NAN, INF, 0.0, -1.0, 1e9, "0.5", (0.5, 0.0))),
    *(("top_k", v) for v in (NAN, -1, 10 ** 6, 1.5, "900", None)),
    *(("top_p", v) for v in (NAN, INF, -0.1, 1.5, "0.9")),
    *(("seed", v) for v in (2 ** 64, -1, 1.5, NAN, "7", None)),
    *(("batch_size", v) for v in (0, -1, 1000, 2.5, NAN, None)),
    *(("pixels", v) for v in ("4M", "", 1, None)),
    *(("h_div_w", v) for v in (0.0, -1.0, NAN, INF, 100.0, "abc")),
)


@dataclass(frozen=True)
class SettingOutcome:
    setting: str
    value: object
    path: str               # "SamplingConfig" or "generate"
    raised: str             # "InfinityError", the name of another exception, or "" when accepted
    named: bool             # InfinityError whose message starts with the setting's name
    before_work: bool       # no scale was sampled
    message: str


def _try_setting(path: str, setting: str, value, run: Callable[[dict, Callable], None]) -> SettingOutcome:
    scales_started = []
    try:
        run({setting: value}, lambda done, total, codes: scales_started.append(done))
        raised, named, message = "", False, "accepted"
    except InfinityError as err:
        raised, named, message = "InfinityError", str(err).startswith(setting), str(err)
    except Exception as err:   # noqa: BLE001 -- any other exception is a finding, reported as such
        raised, named, message = type(err).__name__, False, str(err)
    return SettingOutcome(setting, value, path, raised, named, not scales_started, message)


def bad_setting_figures() -> list[SettingOutcome]:
    """Every bad value through SamplingConfig and through generate on the tiny fixture model (generate takes
    None as "the default", so None values go through SamplingConfig only)."""
    transformer = load_transformer(TRANSFORMER_FIXTURE, "cpu", torch.float32)
    cond = TextCondition.from_features([torch.zeros(3, transformer.config.text_channels)])
    outcomes = []
    for setting, value in BAD_SETTINGS:
        outcomes.append(_try_setting("SamplingConfig", setting, value, lambda kw, _: SamplingConfig(**kw)))
        if value is not None:
            outcomes.append(_try_setting("generate", setting, value,
                                         lambda kw, callback: generate(transformer, cond, callback=callback,
                                                                       **{"pixels": "0.06M", **kw})))
    return outcomes


# --- bad input, round two: pictures, CLI arguments, outputs, files, API mistakes ---------------------------

class ModelLoad(Exception):
    """Raised in place of the CLI's model load: a case that gets here passed every check that comes first."""


@dataclass(frozen=True)
class InputOutcome:
    group: str
    case: str
    ok: bool
    message: str


def _png(picture, **save) -> bytes:
    import io
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", **save)
    return buffer.getvalue()


def _picture_files(folder: Path) -> dict[str, Path]:
    """The pictures of the cases, by name: broken, hostile, and valid but unusual."""
    import struct
    import zlib

    import numpy as np
    from PIL import Image, PngImagePlugin

    y, x = np.mgrid[0:200, 0:300]
    ramp = Image.fromarray(np.stack([x * 255 // 300, y * 255 // 200, x * 0], -1).astype(np.uint8))
    bomb = bytearray(_png(Image.new("L", (1, 1))))
    bomb[16:24] = struct.pack(">II", 100_000, 100_000)
    bomb[29:33] = struct.pack(">I", zlib.crc32(bytes(bomb[12:29])))
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "A" * (PngImagePlugin.MAX_TEXT_CHUNK + 1024), zip=True)
    indexed = Image.fromarray((x[:, :] < 150).astype(np.uint8), mode="P")
    indexed.putpalette([0, 0, 0, 255, 255, 255])
    exif = Image.Exif()
    exif[0x0112] = 6
    files = {"picture.png": _png(ramp), "truncated.png": _png(ramp)[:300], "bomb.png": bytes(bomb),
             "text_bomb.png": _png(Image.new("RGB", (4, 4)), pnginfo=info), "empty.png": b"",
             "strip.png": _png(Image.new("RGB", (5000, 1), (40, 90, 200))),
             "grey16.png": _png(Image.fromarray(np.full((200, 300), 30000, np.uint16))),
             "grey_alpha.png": _png(Image.new("LA", (300, 200), (90, 255))),
             "indexed_mask.png": _png(indexed, transparency=0), "exif.png": _png(ramp, exif=exif),
             "t5_file.safetensors": b"x"}
    paths = {}
    for name, data in files.items():
        paths[name] = folder / name
        paths[name].write_bytes(data)
    paths["cmyk.jpg"] = folder / "cmyk.jpg"
    ramp.convert("CMYK").save(paths["cmyk.jpg"])
    os.mkfifo(folder / "pipe.png")
    paths["pipe.png"] = folder / "pipe.png"
    return paths


def _cli_case(argv: list[str], seconds: int = 60) -> tuple[str, str]:
    """('refused', message), ('loads', '') when every check passed, or ('other' / 'hung', what happened)."""
    import signal

    from infinity_core import cli

    def load(*args, **kwargs):
        raise ModelLoad()

    def alarm(*_):
        raise TimeoutError(f"still running after {seconds} s")
    original, cli.InfinityPipeline.from_files = cli.InfinityPipeline.from_files, load
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        cli.run_generate(cli.build_parser().parse_args(argv))
        return "other", "ran without loading a model"
    except ModelLoad:
        return "loads", ""
    except InfinityError as err:
        return "refused", str(err)
    except TimeoutError as err:
        return "hung", str(err)
    except Exception as err:   # noqa: BLE001 -- any other exception is a finding, reported as such
        return "other", f"{type(err).__name__}: {err}"
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        cli.InfinityPipeline.from_files = original


# (what, extra CLI arguments with {name} for a case file, expected: a regular expression the refusal matches, or
# None where the run must reach the model load)
CLI_CASES: tuple[tuple[str, str, tuple[str, ...], str | None], ...] = (
    ("pictures", "truncated PNG", ("--image", "{truncated.png}"), r"^--image '.*truncated.png' .*truncated"),
    ("pictures", "PNG header claiming 100000 x 100000", ("--image", "{bomb.png}"), r"^--image '.*bomb.png' .*bomb"),
    ("pictures", "zTXt chunk inflating past the limit", ("--image", "{text_bomb.png}"), r"^--image '.*text_bomb.png' is not"),
    ("pictures", "named pipe", ("--image", "{pipe.png}"), r"^--image '.*pipe.png' is not a regular file"),
    ("pictures", "/dev/zero as mask", ("--image", "{picture.png}", "--mask", "/dev/zero"), r"^--mask '/dev/zero' is not a regular"),
    ("pictures", "empty file", ("--image", "{empty.png}"), r"^--image '.*empty.png' is empty"),
    ("pictures", "a folder", ("--image", "/tmp"), r"^--image '/tmp' is a folder"),
    ("pictures", "1 px strip, crop", ("--image", "{strip.png}"), r"^fit: a 5000x1 px picture is too long .* 'pad'"),
    ("pictures", "1 px strip, pad", ("--image", "{strip.png}", "--fit", "pad"), None),
    ("pictures", "16-bit greyscale", ("--image", "{grey16.png}"), None),
    ("pictures", "greyscale + alpha", ("--image", "{grey_alpha.png}"), None),
    ("pictures", "greyscale + alpha as mask", ("--image", "{picture.png}", "--mask", "{grey_alpha.png}"), None),
    ("pictures", "indexed PNG, transparency as mask", ("--image", "{picture.png}", "--mask", "{indexed_mask.png}"), None),
    ("pictures", "EXIF orientation 6", ("--image", "{exif.png}"), None),
    ("pictures", "CMYK JPEG", ("--image", "{cmyk.jpg}"), None),
    ("arguments", "--keep-scales 99", ("--image", "{picture.png}", "--keep-scales", "99"), r"^--keep-scales 99: must be in 0\.\.7"),
    ("arguments", "--keep-scales -1", ("--image", "{picture.png}", "--keep-scales", "-1"), r"^--keep-scales -1: must be 0"),
    ("arguments", "--outpaint against --aspect", ("--image", "{picture.png}", "--outpaint", "0,100,0,100", "--aspect", "2:1"),
     r"^--outpaint gives the canvas .* --aspect"),
    ("arguments", "--outpaint of 10^6 px", ("--image", "{picture.png}", "--outpaint", "1000000,0,0,0"), r"^outpaint canvas: .* at most"),
    ("arguments", "--text-encoder is a file", ("--text-encoder", "{t5_file.safetensors}"), r"^--text-encoder: .*is a file, not a folder"),
    ("arguments", "--vae missing", ("--vae", "/nonexistent/vae.safetensors"), r"^--vae: weight file .* does not exist"),
    ("outputs", "--output under /proc", ("-o", "/proc/infinity/out.png"), r"^--output '/proc/infinity/out.png': cannot write"),
    ("logs", "a 100000-character --outpaint", ("--image", "{picture.png}", "--outpaint", "x" * 100_000),
     r"^--outpaint 'x+\.\.\.' \(100000 characters\)"),
)


def _cli_figures(folder: Path, models: dict[str, Path]) -> list[InputOutcome]:
    files = _picture_files(folder)
    outcomes = []
    for group, case, extra, expect in CLI_CASES:
        extra = [str(files[arg[1:-1]]) if arg.startswith("{") and arg.endswith("}") else arg for arg in extra]
        argv = ["generate", "--transformer", str(models["transformer"]), "--vae", str(models["vae"]),
                "--text-encoder", str(models["text_encoder"]), "--prompt", "a circle", "--pixels", "0.06M",
                "--device", "cpu", *(["-o", str(folder / "out" / "x.png")] if "-o" not in extra else []), *extra]
        (folder / "out").mkdir(exist_ok=True)
        result, message = _cli_case(argv)
        ok = (result == "loads") if expect is None else (result == "refused" and bool(re.search(expect, message))
                                                          and len(message) < 600)
        outcomes.append(InputOutcome(group, case, ok, message or "checks passed; the model load comes next"))
    return outcomes


def _output_figures(folder: Path) -> list[InputOutcome]:
    import errno

    from PIL import Image

    from infinity_core.output import OutputPaths

    outcomes = []
    plan = OutputPaths.plan(folder / "umask.png", 1, overwrite=False, inputs=[])
    previous = os.umask(0o022)
    try:
        plan.write(plan.paths[0], Image.new("RGB", (4, 4)))
    finally:
        os.umask(previous)
    mode = plan.paths[0].stat().st_mode & 0o777
    outcomes.append(InputOutcome("outputs", "written image under umask 022", mode == 0o644, f"mode {mode:o}"))
    old = folder / "full.png"
    old.write_bytes(b"old")
    plan = OutputPaths.plan(old, 1, overwrite=True, inputs=[])
    save = Image.Image.save

    def full(self, file, *args, **kwargs):
        file.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")
    Image.Image.save = full
    try:
        plan.write(old, Image.new("RGB", (4, 4)))
        message, refused = "written", False
    except InfinityError as err:
        message, refused = str(err), True
    finally:
        Image.Image.save = save
    clean = old.read_bytes() == b"old" and not list(folder.glob(".full.png.*"))
    outcomes.append(InputOutcome("outputs", "full disk while writing", refused and clean and "disk is full" in message,
                                 message))
    return outcomes


def _api_figures(folder: Path, models: dict[str, Path]) -> list[InputOutcome]:
    import shutil

    import numpy as np

    from infinity_core import load_text_encoder
    from infinity_core.known_image import vae_grids

    transformer = load_transformer(models["transformer"], "cpu", torch.float32)
    encoder = load_text_encoder(models["text_encoder"], "cpu")
    cond = encoder.encode("a circle")
    schedule = SamplingConfig(pixels="0.06M").schedule
    signed = [torch.full((1, h, w, transformer.config.bits_per_token), -1.0)
              for h, w in vae_grids(schedule, transformer.config)]
    ones = [b.abs() for b in signed]
    pickled = folder / "t5_pickled"
    shutil.copytree(models["text_encoder"], pickled, ignore=shutil.ignore_patterns("*.safetensors"))
    torch.save({"shared.weight": CodePayload(folder / MARKER_NAME)}, pickled / "pytorch_model.bin")
    cases = (
        ("files", "text encoder folder of code-carrying pickles", lambda: load_text_encoder(pickled),
         r"text encoder folder '.*t5_pickled': its weights 'pytorch_model.bin' hold objects other than tensors"),
        ("api", "a prompt string as cond", lambda: generate(transformer, "a fox", pixels="0.06M"),
         r"^cond: expected a TextCondition"),
        ("api", "NaN text features", lambda: generate(
            transformer, TextCondition(cond.features * float("nan"), cond.lengths), pixels="0.06M"),
         r"^cond: the text features hold NaN"),
        ("api", "init bits of -1/+1", lambda: generate(transformer, cond, pixels="0.06M", init_bits=signed,
                                                       init_scales=2), r"^init_bits scale 0 holds values other than 0"),
        ("api", "a mask as a list", lambda: generate(transformer, cond, pixels="0.06M", init_bits=ones, mask=[[1.0]]),
         r"^mask: expected a torch.Tensor"),
        ("api", "an empty prompt list", lambda: encoder.encode([]), r"^prompt: the list of prompts is empty"),
        ("api", "a numpy mask (taken)", lambda: generate(transformer, cond, pixels="0.06M", init_bits=ones,
                                                          mask=np.ones(schedule.image_size, np.float32)), None),
    )
    outcomes = []
    for group, case, call, expect in cases:
        try:
            call()
            result, message = "accepted", "accepted"
        except InfinityError as err:
            result, message = "refused", str(err)
        except Exception as err:   # noqa: BLE001 -- any other exception is a finding, reported as such
            result, message = "other", f"{type(err).__name__}: {err}"
        ok = (result == "accepted") if expect is None else (result == "refused" and bool(re.search(expect, message)))
        if "weights_only" in message or (folder / MARKER_NAME).exists():
            ok = False
        outcomes.append(InputOutcome(group, case, ok, message))
    pasted = "zebra" * 200_000
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    engine_log = logging.getLogger("infinity_core")
    level = engine_log.level
    engine_log.addHandler(handler)
    engine_log.setLevel(logging.WARNING)
    try:
        encoder.encode(pasted)
    finally:
        engine_log.removeHandler(handler)
        engine_log.setLevel(level)
    longest = max((len(r) for r in records), default=0)
    outcomes.append(InputOutcome("logs", "a pasted 10^6-character prompt", bool(records) and longest < 2000,
                                 f"{len(records)} warning(s), the longest {longest} characters"))
    return outcomes


def bad_input_figures(root: Path) -> list[InputOutcome]:
    """Pictures, CLI arguments, outputs, files and API mistakes, each run on the tiny stand-in models."""
    sys.path.insert(0, str(REPO / "tests"))
    from standin_models import build_standin_models

    names = build_standin_models(root / "models")
    models = {"transformer": root / "models" / "infinity" / names.transformer,
              "vae": root / "models" / "infinity" / names.vae,
              "text_encoder": root / "models" / "text_encoders" / names.text_encoder}
    (root / "cases").mkdir()
    return _cli_figures(root / "cases", models) + _output_figures(root / "cases") + _api_figures(root / "cases", models)


# --- reproducibility ----------------------------------------------------------------------------------------

DEMO_MODELS = REPO / "models"
DEMO_PROMPT = "a red circle on the left"
DEMO_SEED = 2 ** 63 + 5


def _demo_pipeline() -> InfinityPipeline:
    return InfinityPipeline.from_files(DEMO_MODELS / "infinity" / "infinity_demo_shapes.safetensors",
                                       DEMO_MODELS / "infinity" / "infinity_demo_shapes_vae.safetensors",
                                       DEMO_MODELS / "text_encoders" / "t5_demo_shapes", device="cpu")


def _png_digest(seed: int) -> str:
    """SHA-256 of the PNG the demo model draws for DEMO_PROMPT with `seed` (run in a fresh process)."""
    import hashlib
    import io

    image = to_pil(_demo_pipeline()(DEMO_PROMPT, pixels="0.06M", seed=seed))[0]
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def png_bytes_across_processes(runs: int = 2) -> list[str]:
    """The PNG digests of `runs` fresh processes drawing the same prompt and seed (all equal when reproducible)."""
    import subprocess

    return [subprocess.run([sys.executable, __file__, "--png-digest", str(DEMO_SEED)], capture_output=True,
                           text=True, check=True).stdout.split()[-1] for _ in range(runs)]


def batch_images_equal_single_runs(batch_size: int = 3) -> list[bool]:
    """Whether image i of a batch with seed s equals (bits and pixels) the single run with seed s + i.
    Images are decoded one at a time, as the CLI, the pipeline and the nodes do (a batched conv sums in
    another order and moves some pixels by one level)."""
    pipe = _demo_pipeline()
    cond = pipe.encode(DEMO_PROMPT)
    batch = generate(pipe.transformer, cond, pixels="0.06M", seed=DEMO_SEED, batch_size=batch_size)
    same = []
    with torch.inference_mode():
        for i in range(batch_size):
            single = generate(pipe.transformer, cond, pixels="0.06M", seed=DEMO_SEED + i)
            bits_equal = all(torch.equal(b[i:i + 1], s) for b, s in zip(batch.bits, single.bits))
            pixels_equal = torch.equal(to_uint8(pipe.vae.decode(batch.codes[i:i + 1])),
                                       to_uint8(pipe.vae.decode(single.codes)))
            same.append(bits_equal and pixels_equal)
    return same


# --- report ------------------------------------------------------------------------------------------------

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


def print_input_figures(outcomes: list[InputOutcome]) -> None:
    width = max(len(o.case) for o in outcomes)
    print(f"{'group':<9}  {'case':<{width}}  ok  error or result (first 90 characters)")
    for o in outcomes:
        print(f"{o.group:<9}  {o.case:<{width}}  {'yes' if o.ok else 'NO ':<3} {o.message[:90]}")
    print()
    groups = sorted({o.group for o in outcomes})
    print("bad input: " + ", ".join(f"{g} {sum(o.ok for o in outcomes if o.group == g)}/"
                                    f"{sum(o.group == g for o in outcomes)}" for g in groups)
          + f"; {len(outcomes)} tried, {sum(o.ok for o in outcomes)} as expected")


def print_setting_figures(outcomes: list[SettingOutcome]) -> None:
    for outcome in outcomes:
        if not (outcome.named and outcome.before_work):
            print(f"NOT REFUSED WELL: {outcome.path} {outcome.setting}={outcome.value!r}: {outcome.message[:90]}")
    print(f"bad settings: {len(outcomes)} tried ({len(BAD_SETTINGS)} values through SamplingConfig and generate), "
          f"{sum(o.raised not in ('', 'InfinityError') for o in outcomes)} other exceptions, "
          f"{sum(not o.raised for o in outcomes)} accepted, "
          f"{sum(o.named for o in outcomes)} InfinityErrors naming the setting, "
          f"{sum(o.before_work for o in outcomes)} before the first scale")


def main() -> int:
    if sys.argv[1:2] == ["--png-digest"]:   # child process of png_bytes_across_processes
        print(_png_digest(int(sys.argv[2])))
        return 0
    logging.basicConfig(level=logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning)   # torch's notes on the hostile pickles' protocols
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    with tempfile.TemporaryDirectory() as root:
        outcomes = weight_file_figures(Path(root))
        print_weight_file_figures([replace(o, message=o.message.replace(root, "<tmp>")) for o in outcomes])
    with tempfile.TemporaryDirectory() as root:
        inputs = bad_input_figures(Path(root))
        print_input_figures([replace(o, message=o.message.replace(root, "<tmp>")) for o in inputs])
    settings = bad_setting_figures()
    print_setting_figures(settings)
    digests = png_bytes_across_processes()
    print(f"same seed, two processes: PNG SHA-256 {digests[0][:16]}... and {digests[1][:16]}...: "
          f"{'identical' if len(set(digests)) == 1 else 'DIFFERENT'}")
    batch = batch_images_equal_single_runs()
    print(f"batch of {len(batch)} with seed s: image i equals the single run with seed s + i for "
          f"{sum(batch)} / {len(batch)} (bits and pixels)")
    ok = (all(o.ok for o in outcomes) and all(o.ok for o in inputs) and all(o.named and o.before_work for o in settings)
          and len(set(digests)) == 1 and all(batch))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
