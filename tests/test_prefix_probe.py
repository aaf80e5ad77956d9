"""The prefix probe's two measures agree with the paths they stand beside: all scales given is the VAE's own
reconstruction, and none given is a plain text-to-image run."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from infinity_core.cli import DEMO_TEXT_ENCODER, DEMO_TRANSFORMER, DEMO_VAE
from infinity_core.pipeline import InfinityPipeline, to_uint8
from infinity_core.schedules import get_schedule
from training.adherence import demo_sampling, evaluate, generate_images, reconstruction_accuracy
from training.prefix_probe import completed_accuracy, decode_prefix, decoded_prefix_accuracy, prefix_table, true_bits
from training.shapes import Canvas, heldout_specs, render
from training.vae_trainer import images_to_tensor

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import prefix_probe as prefix_probe_tool  # noqa: E402

pytest.importorskip("transformers")

SCENES = 6


@pytest.fixture(scope="module")
def pipe() -> InfinityPipeline:
    torch.set_num_threads(2)
    return InfinityPipeline.from_files(DEMO_TRANSFORMER, DEMO_VAE, DEMO_TEXT_ENCODER, device="cpu", with_encoder=True)


@pytest.fixture(scope="module")
def specs():
    return heldout_specs(SCENES)


@pytest.fixture(scope="module")
def bits(pipe, specs):
    return true_bits(pipe.vae, specs, demo_sampling(3.0))


def test_every_scale_decoded_is_the_vaes_reconstruction(pipe, specs, bits):
    """The sum of all scales' codes, rebuilt from the bits, decodes to the encoder's own summed codes' image."""
    rng = np.random.default_rng(0)   # true_bits' rendering
    images = images_to_tensor([render(spec, rng, Canvas(*get_schedule(1.0, "0.06M").image_size)) for spec in specs])
    with torch.inference_mode():
        reconstructed = to_uint8(pipe.vae.decode(pipe.vae.encode(images, [tuple(b.shape[1:3]) for b in bits]).summed_codes))
    # the two sums of codes are equal; the decoder's convs round by memory layout (about 1e-4 of the [-1, 1]
    # range, accumulate_codes says why), which moves a pixel by at most one level of 255
    difference = decode_prefix(pipe.vae, bits, len(bits)).int() - reconstructed.int()
    assert difference.abs().max() <= 1
    assert decoded_prefix_accuracy(pipe.vae, bits, specs, len(bits)) == reconstruction_accuracy(pipe.vae, specs)


def test_every_scale_known_leaves_the_transformer_nothing_to_draw(pipe, specs, bits):
    settings = demo_sampling(3.0)
    drawn = generate_images(pipe, specs, settings, init_bits=bits, init_scales=len(bits))
    assert np.array_equal(np.stack(drawn), decode_prefix(pipe.vae, bits, len(bits)).numpy())
    assert completed_accuracy(pipe, bits, specs, settings, len(bits)) == \
        decoded_prefix_accuracy(pipe.vae, bits, specs, len(bits))


def test_no_scale_known_is_plain_text_to_image(pipe, specs):
    settings = demo_sampling(3.0)
    row, = prefix_table(pipe, specs, settings, [0])
    expected = evaluate(pipe, specs, settings)
    assert row.decoded is None and row.grid is None
    assert row.completed == {attribute: expected.accuracy(attribute) for attribute in row.completed}


def test_the_tool_refuses_a_scale_count_outside_the_schedule(capsys):
    with pytest.raises(SystemExit) as exit_info:
        prefix_probe_tool.main(["--scales", "0", "8", "--size", "1:1@0.06M"])
    assert exit_info.value.code == 2
    assert "--scales: each k must be in 0..7 (the scales of 1:1@0.06M), got [0, 8]" in capsys.readouterr().err
