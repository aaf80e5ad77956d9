"""`python -m infinity_core generate`: images equal to the pipeline's output, from text or from a picture,
and refusals that exit 2 with the reason before any model is read."""
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from infinity_core import InfinityPipeline, image_in, to_uint8
from infinity_core.cli import DEMO_TRANSFORMER
from infinity_core.schedules import get_schedule
from infinity_core.trained_sizes import TrainedSizes
from standin_models import build_standin_models, write_mismatched_vae

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a red circle at the top left on a blue background"
LOADED = "loaded transformer"     # the loader's log line: absent when a refusal came first


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    names = build_standin_models(folder)
    return {"transformer": folder / "infinity" / names.transformer, "vae": folder / "infinity" / names.vae,
            "text_encoder": folder / "text_encoders" / names.text_encoder, "folder": folder}


@pytest.fixture(scope="module")
def pipe(models):
    return InfinityPipeline.from_files(models["transformer"], models["vae"], models["text_encoder"], device="cpu",
                                       with_encoder=True)


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    """A 300 x 200 RGB picture (not a schedule size), smooth so its encoding is stable."""
    y, x = np.mgrid[0:200, 0:300]
    rgb = np.stack([x * 255 // 300, y * 255 // 200, (x + y) * 255 // 500], axis=-1).astype(np.uint8)
    path = tmp_path_factory.mktemp("in") / "picture.png"
    Image.fromarray(rgb).save(path)
    return path


def _cli(models, *extra, vae=None, pixels=("--pixels", "0.06M")):
    command = [sys.executable, "-m", "infinity_core", "generate", "--transformer", str(models["transformer"]),
               "--vae", str(vae or models["vae"]), "--text-encoder", str(models["text_encoder"]), "--prompt", PROMPT,
               *pixels, "--device", "cpu", *extra]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_cli_writes_the_pipelines_images(models, pipe, tmp_path):
    done = _cli(models, "--seed", "3", "--cfg", "3", "--tau", "1", "--batch", "2", "--aspect", "2:1",
                "-o", str(tmp_path / "shot.png"))
    assert done.returncode == 0, done.stderr
    written = [_png(tmp_path / "shot_1.png"), _png(tmp_path / "shot_2.png")]
    assert all(image.shape == (176, 352, 3) for image in written)
    assert "shape: 2:1 (h/w 0.5), 352 x 176 px, 7 scales" in done.stderr   # the shape used is said
    result = pipe.sample(PROMPT, h_div_w=0.5, pixels="0.06M", cfg=3.0, tau=1.0, seed=3, batch_size=2)
    for index, image in enumerate(written):                             # decoded one at a time, as the CLI does
        assert np.array_equal(image, to_uint8(pipe.decode(result, slice(index, index + 1)))[0].numpy())


def test_the_same_seed_writes_the_same_bytes_in_another_process(models, tmp_path):
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    assert _cli(models, "--seed", "9", "-o", str(first)).returncode == 0
    assert _cli(models, "--seed", "9", "-o", str(second)).returncode == 0
    assert first.read_bytes() == second.read_bytes()


def test_cli_img2img_is_generate_from_the_encoded_picture(models, pipe, picture, tmp_path):
    done = _cli(models, "--image", str(picture), "--keep-scales", "3", "--seed", "1", "-o", str(tmp_path / "v.png"))
    assert done.returncode == 0, done.stderr
    rgb = torch.from_numpy(_png(picture).copy()).permute(2, 0, 1).unsqueeze(0).float() / 255 * 2 - 1
    schedule = image_in.schedule_for_image(200, 300, "0.06M")              # the picture's own aspect
    assert schedule.image_size == _png(tmp_path / "v.png").shape[:2]
    bits = image_in.encode_image(pipe.vae, rgb, schedule, "crop")
    result = pipe.sample(PROMPT, h_div_w=schedule.h_div_w, pixels="0.06M", seed=1, init_bits=bits, init_scales=3)
    assert np.array_equal(_png(tmp_path / "v.png"), to_uint8(pipe.decode(result))[0].numpy())


def test_cli_mask_white_or_opaque_is_redrawn(models, pipe, picture, tmp_path):
    """A black mask keeps everything: the VAE's reconstruction. An RGBA mask redraws where it is opaque: the
    run is generate(mask=) with that mask fitted like the picture."""
    black = tmp_path / "black.png"
    Image.fromarray(np.zeros((200, 300), np.uint8)).save(black)
    half = tmp_path / "half.png"
    mask = np.zeros((200, 300, 4), np.uint8)
    mask[:, 150:, 3] = 255
    Image.fromarray(mask, "RGBA").save(half)
    kept = _cli(models, "--image", str(picture), "--mask", str(black), "--aspect", "1:1", "-o", str(tmp_path / "k.png"))
    redrawn = _cli(models, "--image", str(picture), "--mask", str(half), "--aspect", "1:1", "--seed", "4",
                   "-o", str(tmp_path / "r.png"))
    assert kept.returncode == 0 and redrawn.returncode == 0, kept.stderr + redrawn.stderr
    rgb = torch.from_numpy(_png(picture).copy()).permute(2, 0, 1).unsqueeze(0).float() / 255 * 2 - 1
    schedule = get_schedule(1.0, "0.06M")
    with torch.inference_mode():
        encoded = pipe.vae.encode(image_in.fit_image(rgb, schedule, "crop"), list(schedule.grids))
        reconstruction = to_uint8(pipe.vae.decode(encoded.summed_codes))[0].numpy()
    assert np.abs(_png(tmp_path / "k.png").astype(int) - reconstruction).max() <= 1
    opaque = torch.zeros(1, 200, 300)
    opaque[:, :, 150:] = 1
    expected = pipe.sample(PROMPT, pixels="0.06M", seed=4, init_bits=encoded.bits,
                           mask=image_in.fit_mask(opaque, schedule, "crop"))
    assert np.array_equal(_png(tmp_path / "r.png"), to_uint8(pipe.decode(expected))[0].numpy())
    assert not np.array_equal(_png(tmp_path / "r.png"), _png(tmp_path / "k.png"))


def test_cli_outpaint_grows_the_canvas(models, picture, tmp_path):
    done = _cli(models, "--image", str(picture), "--outpaint", "0,50,0,50", "-o", str(tmp_path / "o.png"))
    assert done.returncode == 0, done.stderr
    assert _png(tmp_path / "o.png").shape[:2] == image_in.schedule_for_image(300, 300, "0.06M").image_size


@pytest.mark.parametrize("extra, reason", [
    (("--cfg", "nan"), "cfg must be a finite number"),
    (("--cfg", "-3"), "cfg must be a finite number in 0..100"),
    (("--cfg", "1e30"), "cfg must be a finite number in 0..100"),
    (("--tau", "0"), "tau must be"),
    (("--cfg", "3,3,3,3,3,3,3,3"), "cfg lists 8 values but the schedule has 7 scales"),
    (("--seed", str(2 ** 64)), "seed must be in 0..18446744073709551615"),
    (("--batch", "1000"), "batch_size must be in 1..64"),
    (("--top-p", "2"), "top_p must be a finite number in 0..1"),
    (("--aspect", "0:1"), "aspect '0:1'"),
    (("--aspect", "9:1"), "aspect ratio h/w"),
    (("--device", "cuda:7"), "device 'cuda:7' is not available"),
    (("--device", "gpu"), "device 'gpu'"),
    (("-o", "out.gif"), "must end in one of"),
    (("--mask", "m.png"), "--mask needs --image"),
    (("--outpaint", "1,2,3"), "--outpaint needs --image"),
])
def test_bad_settings_exit_2_before_any_model_is_read(models, tmp_path, extra, reason):
    if "-o" not in extra:
        extra = (*extra, "-o", str(tmp_path / "x.png"))
    done = _cli(models, *extra)
    assert done.returncode == 2 and reason in done.stderr, done.stderr
    assert LOADED not in done.stderr
    assert not (tmp_path / "x.png").exists()


def test_output_paths_are_checked_first_and_never_clobbered(models, picture, tmp_path):
    existing = tmp_path / "keep.png"
    existing.write_bytes(b"user data")
    done = _cli(models, "-o", str(existing))
    assert done.returncode == 2 and "already exists" in done.stderr and LOADED not in done.stderr
    assert existing.read_bytes() == b"user data"
    folder = tmp_path / "folder.png"
    folder.mkdir()
    assert "is a folder" in _cli(models, "-o", str(folder)).stderr
    done = _cli(models, "--image", str(picture), "-o", str(picture), "--overwrite")
    assert done.returncode == 2 and "is an input picture" in done.stderr
    done = _cli(models, "-o", str(existing), "--overwrite")
    assert done.returncode == 0 and _png(existing).shape == (256, 256, 3)
    assert not list(tmp_path.glob(".*.part"))                             # the temporary file is gone


def test_the_model_files_metadata_sets_its_size_whatever_its_name(tmp_path):
    """The demo transformer says 0.06M in its own metadata: copied under another name, it still draws 256 px."""
    renamed = tmp_path / "my_model.safetensors"
    shutil.copyfile(DEMO_TRANSFORMER, renamed)
    done = subprocess.run([sys.executable, "-m", "infinity_core", "generate", "--transformer", str(renamed),
                           "--prompt", PROMPT, "--device", "cpu", "-o", str(tmp_path / "d.png")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _png(tmp_path / "d.png").shape == (256, 256, 3)


@pytest.mark.parametrize("aspect, warned", [("1:1", False), ("2:1", True)])
def test_a_run_outside_the_models_trained_sizes_warns_and_still_runs(models, tmp_path, aspect, warned):
    sized = tmp_path / "sized.safetensors"
    save_file(load_file(models["transformer"]), str(sized),
              metadata=TrainedSizes(pixels=("0.06M",), aspects=(1.0,)).to_metadata())
    done = _cli({**models, "transformer": sized}, "--aspect", aspect, "-o", str(tmp_path / "w.png"))
    assert done.returncode == 0, done.stderr
    assert ("not trained at the aspect ratio 2:1 (landscape)" in done.stderr) == warned
    assert ("it was trained at 0.06M and aspect ratios 1:1" in done.stderr) == warned


def test_model_refusals_name_both_files(models, tmp_path):
    write_mismatched_vae(tmp_path / "vae_16bit.safetensors")
    done = _cli(models, "-o", str(tmp_path / "x.png"), vae=tmp_path / "vae_16bit.safetensors")
    assert done.returncode == 2
    assert "vae_16bit.safetensors" in done.stderr and models["transformer"].name in done.stderr
    assert not (tmp_path / "x.png").exists()
