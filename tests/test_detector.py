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


CANVASES = [shapes.Canvas(256, 256), shapes.Canvas(192, 336), shapes.Canvas(336, 224), shapes.Canvas(512, 512)]


@pytest.mark.parametrize("canvas", CANVASES)
def test_clean_renders_at_every_aspect_are_recognised(canvas):
    rng = np.random.default_rng(5)
    specs = shapes.heldout_specs(60)
    correct = sum(detector.score(shapes.render(spec, rng, canvas), spec).all_correct for spec in specs)
    assert correct == len(specs)


def _pair(first: SceneSpec, second_position: str, second_color: str) -> shapes.Scene:
    return shapes.Scene((shapes.ShapeObject(first.shape, first.color, first.position),
                         shapes.ShapeObject("triangle", second_color, second_position)), first.background)


@pytest.mark.parametrize("canvas", CANVASES)
def test_pairs_are_found_in_their_cells_and_missing_ones_are_not(canvas):
    rng = np.random.default_rng(6)
    for spec in shapes.heldout_specs(30):
        position = next(p for p in shapes.POSITIONS if p != spec.position)
        color = next(c for c in shapes.COLORS if c not in (spec.color, spec.background))
        scene = _pair(spec, position, color)
        image = shapes.render(scene, rng, canvas)
        assert detector.score_pair(image, scene).all_correct
        # a lone object drawn alone: the partner the prompt asks for is missing
        alone = shapes.render(shapes.Scene(scene.objects[:1], scene.background), rng, canvas)
        assert detector.score_pair(alone, scene).found == (True, False)
        # the partner drawn in another cell is not found in its own
        moved = next(p for p in shapes.POSITIONS if p not in (spec.position, position))
        wrong = shapes.Scene((scene.objects[0], shapes.ShapeObject("triangle", color, moved)), scene.background)
        assert detector.score_pair(shapes.render(wrong, rng, canvas), scene).found == (True, False)
