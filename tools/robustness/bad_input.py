"""Bad input, round two: pictures, CLI arguments, outputs, a text-encoder folder of pickles, the API's common
mistakes."""
from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from infinity_core import InfinityError, SamplingConfig, TextCondition, generate, load_transformer

from .common import REPO
from .weight_files import MARKER_NAME, CodePayload


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
    fsync = os.fsync

    def full(descriptor):   # the bytes are in the temporary file; the disk refuses them on flush
        raise OSError(errno.ENOSPC, "No space left on device")
    os.fsync = full
    try:
        plan.write(old, Image.new("RGB", (4, 4)))
        message, refused = "written", False
    except InfinityError as err:
        message, refused = str(err), True
    finally:
        os.fsync = fsync
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
