"""`python -m infinity_core generate`: PNGs equal to the pipeline's output, and readable refusals."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from infinity_core import InfinityPipeline, to_uint8
from standin_models import build_standin_models, write_mismatched_vae

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a red circle at the top left on a blue background"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    names = build_standin_models(folder)
    return {"transformer": folder / "infinity" / names.transformer, "vae": folder / "infinity" / names.vae,
            "text_encoder": folder / "text_encoders" / names.text_encoder, "folder": folder}


def _cli(models, *extra, vae=None):
    command = [sys.executable, "-m", "infinity_core", "generate", "--transformer", str(models["transformer"]),
               "--vae", str(vae or models["vae"]), "--text-encoder", str(models["text_encoder"]), "--prompt", PROMPT,
               "--pixels", "0.06M", "--device", "cpu", *extra]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_cli_writes_the_pipelines_images(models, tmp_path):
    done = _cli(models, "--seed", "3", "--cfg", "3", "--tau", "1", "--batch", "2", "--aspect", "2:1",
                "-o", str(tmp_path / "shot.png"))
    assert done.returncode == 0, done.stderr
    files = [tmp_path / "shot_1.png", tmp_path / "shot_2.png"]
    written = [np.asarray(Image.open(f)) for f in files]
    assert all(image.shape == (176, 352, 3) for image in written)
    pipe = InfinityPipeline.from_files(models["transformer"], models["vae"], models["text_encoder"], device="cpu")
    expected = to_uint8(pipe(PROMPT, h_div_w=0.5, pixels="0.06M", cfg=3.0, tau=1.0, seed=3, batch_size=2))
    for image, reference in zip(written, expected):
        assert np.array_equal(image, reference.numpy())


def test_cli_refusals_exit_2_with_the_reason(models, tmp_path):
    write_mismatched_vae(tmp_path / "vae_16bit.safetensors")
    done = _cli(models, "-o", str(tmp_path / "x.png"), vae=tmp_path / "vae_16bit.safetensors")
    assert done.returncode == 2
    assert "vae_16bit.safetensors" in done.stderr and models["transformer"].name in done.stderr
    done = _cli(models, "--aspect", "9:1", "-o", str(tmp_path / "x.png"))
    assert done.returncode == 2 and "aspect ratio" in done.stderr
    assert not (tmp_path / "x.png").exists()
