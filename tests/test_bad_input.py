"""Bad input, round two: what the CLI's arguments alone decide is refused before any model loads, with the
CLI's own names; outputs follow the umask and fail early or cleanly; broken files and the Python API's common
mistakes get errors naming the argument or file; user text is quoted bounded."""
from __future__ import annotations

import errno
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from infinity_core import InfinityError, TextCondition, cli, generate, load_text_encoder, load_transformer, output
from infinity_core.image_in import MAX_CROP_FACTOR, fit_image, fit_mask, pad_for_outpaint
from infinity_core.output import OutputPaths
from infinity_core.schedules import get_schedule
from infinity_core.text_encoder import check_text_encoder_folder
from infinity_core.user_text import MAX_QUOTED, quoted
from infinity_core.weights import model_defaults
from standin_models import build_standin_models

DEMO_T5 = Path(__file__).resolve().parents[1] / "models" / "text_encoders" / "t5_demo_shapes"
SQUARE = get_schedule(1.0, "0.06M")


class ModelLoad(Exception):
    """Raised in place of loading the models: a case that gets here passed every check that comes first."""


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    names = build_standin_models(folder)
    return {"transformer": folder / "infinity" / names.transformer, "vae": folder / "infinity" / names.vae,
            "text_encoder": folder / "text_encoders" / names.text_encoder}


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pictures")
    y, x = np.mgrid[0:200, 0:300]
    Image.fromarray(np.stack([x * 255 // 300, y * 255 // 200, x * 0], -1).astype(np.uint8)).save(folder / "p.png")
    Image.new("RGB", (5000, 1), (40, 90, 200)).save(folder / "strip.png")
    Image.new("LA", (300, 200), (90, 255)).save(folder / "la.png")
    Image.fromarray(np.full((200, 300), 30000, np.uint16)).save(folder / "grey16.png")
    (folder / "cut.png").write_bytes((folder / "p.png").read_bytes()[:200])
    os.mkfifo(folder / "pipe.png")
    return folder


def _run_cli(models, tmp_path, monkeypatch, *extra):
    def load(*args, **kwargs):
        raise ModelLoad()
    monkeypatch.setattr(cli.InfinityPipeline, "from_files", load)
    argv = ["generate", "--transformer", str(models["transformer"]), "--vae", str(models["vae"]),
            "--text-encoder", str(models["text_encoder"]), "--prompt", "a circle", "--pixels", "0.06M",
            "--device", "cpu", *extra]
    if "-o" not in extra:
        argv += ["-o", str(tmp_path / "out.png")]
    cli.run_generate(cli.build_parser().parse_args(argv))


CLI_REFUSALS = [
    (("--image", "{p}/p.png", "--keep-scales", "99"), r"--keep-scales 99: must be in 0\.\.7"),
    (("--image", "{p}/p.png", "--keep-scales", "-1"), r"--keep-scales -1: must be 0 or more"),
    (("--image", "{p}/p.png", "--outpaint", "0,100,0,100", "--aspect", "2:1"), "--outpaint gives the canvas .* --aspect"),
    (("--image", "{p}/p.png", "--outpaint", "1000000,0,0,0"), r"outpaint canvas: 1000300x200 px .* at most 67108864"),
    (("--image", "{p}/p.png", "--outpaint", "x" * 100_000), r"--outpaint 'xxx.*\.\.\.' \(100000 characters\) must be"),
    (("--image", "{p}/strip.png"), r"fit: a 5000x1 px picture is too long and thin .* fit 'pad' or 'stretch'"),
    (("--image", "{p}/pipe.png"), r"--image '.*pipe.png' is not a regular file"),
    (("--image", "{p}/cut.png"), r"--image '.*cut.png' is not a picture Pillow can read"),
    (("--image", "{p}/p.png", "--mask", "{p}/cut.png"), r"--mask '.*cut.png' is not a picture"),
    (("--image", "{p}/p.png", "--mask", "{p}/missing.png"), r"--mask '.*missing.png' does not exist"),
    (("--text-encoder", "{p}/p.png"), r"--text-encoder: text encoder folder '.*p.png' is a file, not a folder"),
    (("--vae", "{p}/missing.safetensors"), r"--vae: weight file '.*missing.safetensors' does not exist"),
    (("-o", "/proc/infinity/out.png"), r"--output '/proc/infinity/out.png': cannot write in '/proc/infinity'"),
]


@pytest.mark.parametrize("extra, reason", CLI_REFUSALS, ids=[" ".join(e)[:50] for e, _ in CLI_REFUSALS])
def test_the_cli_refuses_what_its_arguments_decide_before_any_model_loads(models, pictures, tmp_path, monkeypatch,
                                                                         extra, reason):
    extra = tuple(arg.replace("{p}", str(pictures)) for arg in extra)   # given last, an option wins
    with pytest.raises(InfinityError, match=reason) as refusal:
        _run_cli(models, tmp_path, monkeypatch, *extra)
    assert len(str(refusal.value)) < 600
    assert not list(tmp_path.iterdir())                            # nothing written


@pytest.mark.parametrize("extra", [("--image", "{p}/strip.png", "--fit", "pad"), ("--image", "{p}/la.png"),
                                   ("--image", "{p}/grey16.png", "--mask", "{p}/la.png"),
                                   ("--image", "{p}/p.png", "--outpaint", "0,4000,0,4000")])
def test_unusual_but_valid_pictures_reach_the_model_load(models, pictures, tmp_path, monkeypatch, extra):
    with pytest.raises(ModelLoad):
        _run_cli(models, tmp_path, monkeypatch, *(arg.replace("{p}", str(pictures)) for arg in extra))


def test_a_16_bit_picture_is_not_read_as_white(models, pictures):
    args = cli.build_parser().parse_args(["generate", "--prompt", "x", "--image", str(pictures / "grey16.png")])
    picture = cli.read_picture(args)
    torch.testing.assert_close(picture.image, torch.full_like(picture.image, 30000 / 65535 * 2 - 1))


# --- outputs ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_images_follow_the_umask(tmp_path, umask, mode):
    plan = OutputPaths.plan(tmp_path / "a.png", 1, overwrite=False, inputs=[])
    previous = os.umask(umask)
    try:
        plan.write(plan.paths[0], Image.new("RGB", (4, 4)))
    finally:
        os.umask(previous)
    assert (plan.paths[0].stat().st_mode & 0o777) == mode


def test_a_full_disk_is_a_clear_error_and_leaves_the_old_file(tmp_path, monkeypatch):
    old = tmp_path / "a.png"
    old.write_bytes(b"the user's picture")
    plan = OutputPaths.plan(old, 1, overwrite=True, inputs=[])

    def full(handle):      # the file system reports the full disk when the written data is flushed
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(output.os, "fsync", full)
    with pytest.raises(InfinityError, match=r"--output '.*a.png' could not be written: the disk is full"):
        plan.write(old, Image.new("RGB", (4, 4)))
    assert old.read_bytes() == b"the user's picture" and sorted(tmp_path.iterdir()) == [old]


def test_planning_into_missing_folders_proves_them_creatable_and_leaves_nothing(tmp_path):
    plan = OutputPaths.plan(tmp_path / "new" / "deeper" / "a.png", 1, overwrite=False, inputs=[])
    assert not (tmp_path / "new").exists()
    plan.write(plan.paths[0], Image.new("RGB", (4, 4)))
    assert plan.paths[0].is_file()
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(InfinityError, match="cannot write in"):
        OutputPaths.plan(tmp_path / "file" / "sub" / "a.png", 1, overwrite=False, inputs=[])


# --- files -----------------------------------------------------------------------------------------------

def test_a_deeply_nested_shard_index_is_a_clear_error(tmp_path):
    depth = 100_000
    (tmp_path / "model.safetensors.index.json").write_text('{"weight_map": ' + "[" * depth + "]" * depth + "}")
    for call in (lambda: load_transformer(tmp_path, "cpu"), lambda: model_defaults(tmp_path)):
        with pytest.raises(InfinityError, match="model.safetensors.index.json' is not a valid index JSON .*nests"):
            call()


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def test_a_text_encoder_folder_of_code_carrying_pickles_is_refused_naming_it(tmp_path):
    folder = tmp_path / "t5_pickled"
    shutil.copytree(DEMO_T5, folder, ignore=shutil.ignore_patterns("*.safetensors"))
    torch.save({"shared.weight": _Payload(tmp_path / "CODE_RAN")}, folder / "pytorch_model.bin")
    for call in (check_text_encoder_folder, load_text_encoder):
        with pytest.raises(InfinityError, match=r"text encoder folder '.*t5_pickled': its weights 'pytorch_model.bin' "
                                                r"hold objects other than tensors \((__builtin__|builtins).exec\)") as refusal:
            call(folder)
        assert "weights_only" not in str(refusal.value)
    assert not (tmp_path / "CODE_RAN").exists()


def test_a_text_encoder_path_that_is_a_file_says_so(tmp_path):
    (tmp_path / "t5.safetensors").write_bytes(b"x")
    with pytest.raises(InfinityError, match="'.*t5.safetensors' is a file, not a folder") as refusal:
        load_text_encoder(tmp_path / "t5.safetensors")
    assert "does not exist" not in str(refusal.value)


# --- the Python API --------------------------------------------------------------------------------------

def _bits(transformer, value: float):
    from infinity_core.known_image import vae_grids
    depth = transformer.config.bits_per_token
    return [torch.full((1, h, w, depth), value) for h, w in vae_grids(SQUARE, transformer.config)]


API_MISTAKES = [
    (lambda t, c: generate(t, "a fox", pixels="0.06M"), r"cond: expected a TextCondition .* got str 'a fox'"),
    (lambda t, c: generate(t, c, "blurry", pixels="0.06M"), "negative: expected a TextCondition"),
    (lambda t, c: generate(t, TextCondition(torch.full_like(c.features, float("nan")), c.lengths), pixels="0.06M"),
     "cond: the text features hold NaN or infinite values"),
    (lambda t, c: generate(t, c, TextCondition(c.features * float("inf"), c.lengths), pixels="0.06M"),
     "negative: the text features hold NaN"),
    (lambda t, c: generate(t, c, pixels="0.06M", init_bits=_bits(t, -1.0), init_scales=2),
     r"init_bits scale 0 holds values other than 0 and 1 \(found -1\.\.-1\)"),
    (lambda t, c: generate(t, c, pixels="0.06M", init_bits=_bits(t, 1.0)[0], init_scales=2),
     r"init_bits: expected a list with one .* got Tensor"),
    (lambda t, c: generate(t, c, pixels="0.06M", init_bits=_bits(t, 1.0), mask=[[1.0]]),
     r"mask: expected a torch.Tensor \(or numpy array\) .* got list"),
]


@pytest.mark.parametrize("call, reason", API_MISTAKES)
def test_api_mistakes_are_named_before_the_first_scale(transformer, fox, call, reason):
    with pytest.raises(InfinityError, match=reason):
        call(transformer, fox)


def test_a_numpy_mask_is_taken_as_its_tensor(transformer, fox):
    mask = np.zeros(SQUARE.image_size, np.float32)
    mask[:128] = 1
    runs = [generate(transformer, fox, pixels="0.06M", init_bits=_bits(transformer, 1.0), mask=m, seed=1)
            for m in (mask, torch.from_numpy(mask))]
    assert torch.equal(runs[0].codes, runs[1].codes)
    assert torch.equal(fit_mask(mask, SQUARE), fit_mask(torch.from_numpy(mask), SQUARE))


@pytest.fixture(scope="module")
def demo_text_encoder():
    return load_text_encoder(DEMO_T5, "cpu")


@pytest.mark.parametrize("prompts, reason", [
    ([], r"prompt: the list of prompts is empty"),
    (["a circle", 7], r"prompt 2: expected a string, got int 7"),
    (None, r"prompt: expected a string or a list of strings, got NoneType"),
])
def test_bad_prompt_lists_are_named(demo_text_encoder, prompts, reason):
    with pytest.raises(InfinityError, match=reason):
        demo_text_encoder.encode(prompts)


def test_a_pasted_megabyte_is_quoted_bounded_in_warnings_and_the_log(demo_text_encoder, caplog):
    pasted = "zebra" * 200_000 + " more words " * 10
    warnings = demo_text_encoder.prompt_warnings(pasted)
    assert warnings and all(len(w) < 1500 for w in warnings) and "(1000000 characters)" in warnings[0]
    with caplog.at_level(logging.WARNING):
        demo_text_encoder.encode(pasted)
    assert caplog.records and all(len(r.getMessage()) < 3000 for r in caplog.records)


# --- pictures as tensors: every size bounded before it is allocated ---------------------------------------

def test_a_long_thin_strip_is_refused_for_crop_and_padded_otherwise():
    strip = torch.zeros(1, 3, 1, 5000)
    with pytest.raises(InfinityError, match=r"5000x1 px picture is too long and thin to crop .* to 1280000x256 px to keep 1/5000 of it"):
        fit_image(strip, SQUARE, "crop")
    assert fit_image(strip, SQUARE, "pad").shape == (1, 3, 256, 256)
    wide = torch.zeros(1, 3, 10, 10 * MAX_CROP_FACTOR)                  # exactly the bound: taken
    assert fit_image(wide, SQUARE, "crop").shape == (1, 3, 256, 256)


@pytest.mark.parametrize("call, reason", [
    (lambda: pad_for_outpaint(torch.zeros(1, 3, 8, 8), 10 ** 8, 0, 0, 0, "0.06M"), r"outpaint canvas: 100000008x8 px"),
    (lambda: pad_for_outpaint(torch.zeros(1, 3, 8, 8), *[9000] * 4, "0.06M"), r"18008x18008 px is .* at most"),
    (lambda: fit_mask(torch.ones(4, 4), SQUARE, image_size=(10 ** 5, 10 ** 5)), r"image_size: 100000x100000 px"),
    (lambda: fit_image(np.zeros((1, 3, 8, 8), np.float32), SQUARE, fit="x" * 10 ** 6), r"fit: 'x+\.\.\.' \(1000000"),
])
def test_sizes_are_bounded_before_anything_is_allocated(call, reason):
    with pytest.raises(InfinityError, match=reason):
        call()


@pytest.mark.parametrize("value, shown", [
    ("short", "'short'"),
    ("a\nb\tc", r"'a\nb\tc'"),
    ("x" * (MAX_QUOTED + 1), "'" + "x" * (MAX_QUOTED - 3) + f"...' ({MAX_QUOTED + 1} characters)"),
    (2.5, "2.5"),
    (None, "None"),
    (list(range(10 ** 5)), "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16... (688890 characters)"),
])
def test_quoted_bounds_user_text(value, shown):
    assert quoted(value).startswith(shown) and len(quoted(value)) < MAX_QUOTED + 40
