"""Tests for the pixel detector (training/detector.py)."""

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from training import detector, shapes
from training.shapes import SceneSpec

EVALUATED_SPECS = 200


def _degrade(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur (radius 2), mild noise, then down to 64x64 and back up: a stand-in for an imperfect generator."""
    blurred = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(2)), dtype=np.float32)
    noisy = np.clip(blurred + rng.normal(0.0, 8.0, blurred.shape), 0, 255).astype(np.uint8)
    small = Image.fromarray(noisy).resize((64, 64), Image.Resampling.BILINEAR)
    return np.asarray(small.resize(image.shape[1::-1], Image.Resampling.BILINEAR))


def _accuracy(degrade: bool) -> float:
    rng = np.random.default_rng(11)
    correct = 0
    for spec in shapes.heldout_specs(EVALUATED_SPECS):
        image = shapes.render(spec, rng)
        if degrade:
            image = _degrade(image, rng)
        correct += detector.score(image, spec).all_correct
    return correct / EVALUATED_SPECS


def test_clean_renders_are_all_recognised():
    assert _accuracy(degrade=False) >= 0.99


def test_degraded_renders_are_mostly_recognised():
    assert _accuracy(degrade=True) >= 0.95


def _hand_drawn(shape: str, box: tuple[int, int, int, int], color: str, background: str) -> np.ndarray:
    """Draw without shapes.render, so the expectation does not depend on the renderer."""
    image = Image.new("RGB", (256, 256), shapes.PALETTE[background])
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = box
    if shape == "circle":
        draw.ellipse(box, fill=shapes.PALETTE[color])
    elif shape == "square":
        draw.rectangle(box, fill=shapes.PALETTE[color])
    else:
        draw.polygon([((left + right) / 2, top), (right, bottom), (left, bottom)], fill=shapes.PALETTE[color])
    return np.asarray(image)


@pytest.mark.parametrize(
    ("shape", "box", "position"),
    [
        ("circle", (10, 10, 80, 80), "top left"),
        ("square", (95, 180, 160, 245), "bottom"),
        ("triangle", (180, 90, 250, 160), "right"),
        ("square", (100, 100, 156, 156), "center"),
    ],
)
def test_hand_drawn_shapes(shape, box, position):
    image = _hand_drawn(shape, box, "purple", "yellow")
    found = detector.detect(image)
    assert (found.shape, found.color, found.position, found.background) == (shape, "purple", position, "yellow")


def test_score_marks_each_wrong_attribute():
    image = _hand_drawn("circle", (10, 10, 80, 80), "red", "white")
    result = detector.score(image, SceneSpec("square", "blue", "top left", "white"))
    assert not result.shape_correct
    assert not result.color_correct
    assert result.position_correct
    assert result.background_correct
    assert not result.all_correct
    assert result.fraction_correct == 0.5


def test_empty_image_counts_only_the_background():
    image = np.full((256, 256, 3), shapes.PALETTE["green"], dtype=np.uint8)
    result = detector.score(image, SceneSpec("circle", "red", "center", "green"))
    assert not result.detection.found_object
    assert result.detection.shape is None and result.detection.color is None and result.detection.position is None
    assert result.background_correct
    assert not (result.shape_correct or result.color_correct or result.position_correct)


def test_sparse_noise_is_not_an_object():
    rng = np.random.default_rng(0)
    image = np.full((256, 256, 3), shapes.PALETTE["black"], dtype=np.uint8)
    speckles = rng.random((256, 256)) < 0.01
    image[speckles] = shapes.PALETTE["white"]
    assert not detector.detect(image).found_object


def test_other_image_sizes_and_pil_input():
    image = _hand_drawn("triangle", (180, 180, 250, 250), "orange", "blue")
    small = Image.fromarray(image).resize((128, 128), Image.Resampling.BILINEAR)
    found = detector.detect(small)
    assert (found.shape, found.color, found.position, found.background) == ("triangle", "orange", "bottom right", "blue")
