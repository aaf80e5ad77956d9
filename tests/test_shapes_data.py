"""Tests for the procedural shapes data set (training/shapes.py)."""

import re

import numpy as np
import pytest

from training import shapes
from training.shapes import Scene, SceneSpec, ShapeObject

_OBJECT = (
    r"(?:a|an) (?P<color{i}>\w+) (?P<shape{i}>circle|square|triangle) "
    r"(?:at the|on the|in the) (?P<position{i}>top left|top right|bottom left|bottom right|top|bottom|left|right|center)"
)
_ONE_OBJECT = re.compile(rf"^{_OBJECT.format(i=1)} on (?:a|an) (?P<background>\w+) background$")
_TWO_OBJECTS = re.compile(
    rf"^{_OBJECT.format(i=1)} and {_OBJECT.format(i=2)} on (?:a|an) (?P<background>\w+) background$"
)


def _parse(caption: str) -> Scene:
    """Rebuild a scene from its caption with an independent regular-expression grammar."""
    match = _ONE_OBJECT.match(caption) or _TWO_OBJECTS.match(caption)
    assert match, f"caption does not follow the grammar: {caption!r}"
    groups = match.groupdict()
    count = 2 if groups.get("shape2") else 1
    objects = tuple(
        ShapeObject(groups[f"shape{i}"], groups[f"color{i}"], groups[f"position{i}"])
        for i in range(1, count + 1)
    )
    return Scene(objects, groups["background"])


def test_caption_of_single_spec():
    spec = SceneSpec("circle", "red", "top left", "blue")
    assert shapes.caption(spec) == "a red circle at the top left on a blue background"
    spec = SceneSpec("triangle", "orange", "center", "white")
    assert shapes.caption(spec) == "an orange triangle in the center on a white background"


def test_caption_of_two_object_scene():
    scene = Scene(
        (ShapeObject("circle", "red", "top left"), ShapeObject("square", "blue", "bottom right")),
        "white",
    )
    assert shapes.caption(scene) == (
        "a red circle at the top left and a blue square at the bottom right on a white background"
    )


def test_every_spec_caption_parses_back_to_its_spec():
    for spec in shapes.all_specs():
        assert _parse(shapes.caption(spec)) == Scene.from_spec(spec)


def test_vocabulary_covers_exactly_the_caption_words():
    words = set()
    for spec in shapes.all_specs():
        words.update(shapes.caption(spec).split())
    words.add("and")
    assert set(shapes.vocabulary()) == words


def test_spec_rejects_invalid_combinations():
    with pytest.raises(ValueError):
        SceneSpec("circle", "red", "top left", "red")
    with pytest.raises(ValueError):
        SceneSpec("hexagon", "red", "top left", "blue")
    with pytest.raises(ValueError):
        Scene((ShapeObject("circle", "red", "top"), ShapeObject("square", "blue", "top")), "white")


def test_combination_space_size():
    colors = len(shapes.PALETTE)
    assert colors >= 6
    expected = len(shapes.SHAPES) * colors * 9 * (colors - 1)
    assert len(shapes.all_specs()) == len(set(shapes.all_specs())) == expected


def test_heldout_and_train_are_disjoint_and_cover_everything():
    heldout = shapes.heldout_specs()
    train = shapes.train_specs()
    assert len(heldout) >= 200
    assert len(set(heldout)) == len(heldout)
    assert not set(heldout) & set(train)
    assert set(heldout) | set(train) == set(shapes.all_specs())
    assert not any(shapes.is_train_combination(spec) for spec in heldout)
    assert all(shapes.is_train_combination(spec) for spec in train)


def test_heldout_order_is_fixed_and_prefix_consistent():
    first = shapes.heldout_specs(200)
    assert first == shapes.heldout_specs()[:200]
    assert shapes.heldout_specs(5) == first[:5]
    # A well-mixed order: the first specs are not all of one shape.
    assert len({spec.shape for spec in first[:20]}) == 3


def test_train_split_still_contains_every_attribute_pair():
    train = shapes.train_specs()
    for first, second in [("shape", "color"), ("shape", "position"), ("color", "position"), ("color", "background")]:
        seen = {(getattr(spec, first), getattr(spec, second)) for spec in train}
        every = {(getattr(spec, first), getattr(spec, second)) for spec in shapes.all_specs()}
        assert seen == every


def test_render_is_deterministic_by_seed_and_has_the_right_format():
    spec = SceneSpec("square", "green", "bottom right", "purple")
    image = shapes.render(spec, np.random.default_rng(3))
    assert image.shape == (256, 256, 3) and image.dtype == np.uint8
    assert np.array_equal(image, shapes.render(spec, np.random.default_rng(3)))


# (canvas, the lone object's side: 3/8 of the shorter side in whole 16 px tokens)
LONE_SQUARES = [(shapes.Canvas(256, 256), 96), (shapes.Canvas(512, 512), 192),
                (shapes.Canvas(192, 336), 64), (shapes.Canvas(336, 224), 80), (shapes.Canvas(384, 672), 144)]


@pytest.mark.parametrize("canvas, side", LONE_SQUARES)
def test_render_draws_a_lone_square_on_the_token_grid_in_its_cell(canvas, side):
    spec = SceneSpec("square", "yellow", "top right", "blue")
    image = shapes.render(spec, np.random.default_rng(0), canvas).astype(int)
    assert image.shape == (canvas.height, canvas.width, 3)
    yellow = np.all(np.abs(image - shapes.PALETTE["yellow"]) < 10, axis=-1)
    rows, cols = np.nonzero(yellow)
    assert rows.size == side**2                                   # a solid side x side square
    token = 16                                                    # the demo VAE's downsampling
    for first, last in ((rows.min(), rows.max()), (cols.min(), cols.max())):
        assert first % token == 0 and (last + 1) % token == 0 and last + 1 - first == side
    assert rows.mean() < canvas.height / 3 and cols.mean() > 2 * canvas.width / 3
    assert np.all(image[0, 0] == shapes.PALETTE["blue"])
    assert np.all(image[-1, -1] == shapes.PALETTE["blue"])


def test_a_scene_draws_alike_at_every_size():
    """The 512 px drawing of a scene, box-filtered to 256 px, is its 256 px drawing (up to anti-aliasing)."""
    scene = shapes.Scene((shapes.ShapeObject("circle", "red", "top left"),
                          shapes.ShapeObject("triangle", "green", "bottom right")), "white")
    small = shapes.render(scene, np.random.default_rng(4), shapes.Canvas(256, 256)).astype(float)
    large = shapes.render(scene, np.random.default_rng(4), shapes.Canvas(512, 512)).astype(float)
    pooled = large.reshape(256, 2, 256, 2, 3).mean(axis=(1, 3))
    assert np.mean(np.abs(pooled - small) > 40) < 0.01


def test_dataset_is_deterministic_and_comes_from_the_train_split():
    first = shapes.ShapesDataset(seed=7, length=40, two_object_probability=0.5)
    second = shapes.ShapesDataset(seed=7, length=40, two_object_probability=0.5)
    other = shapes.ShapesDataset(seed=8, length=40, two_object_probability=0.5)
    items = list(first)
    assert len(items) == 40
    for index, (image, caption) in enumerate(items):
        again_image, again_caption = second[index]
        assert caption == again_caption
        assert np.array_equal(image, again_image)
        assert image.shape == (256, 256, 3) and image.dtype == np.uint8
    assert [caption for _, caption in items] != [caption for _, caption in other]


def test_dataset_never_shows_a_heldout_combination():
    dataset = shapes.ShapesDataset(seed=0, length=2000, two_object_probability=0.5)
    heldout = set(shapes.heldout_specs())
    object_counts = set()
    for index in range(len(dataset)):
        scene = _parse(shapes.caption(dataset.scene(index)))
        object_counts.add(len(scene.objects))
        for spec in scene.specs():
            assert spec not in heldout
        assert len({obj.position for obj in scene.objects}) == len(scene.objects)
    assert object_counts == {1, 2}


def test_two_object_probability_bounds():
    only_single = shapes.ShapesDataset(seed=1, length=100, two_object_probability=0.0)
    assert all(len(only_single.scene(i).objects) == 1 for i in range(100))
    only_double = shapes.ShapesDataset(seed=1, length=100, two_object_probability=1.0)
    assert all(len(only_double.scene(i).objects) == 2 for i in range(100))


@pytest.mark.parametrize("canvas", [shapes.Canvas(256, 256), shapes.Canvas(336, 192), shapes.Canvas(512, 512)])
def test_two_objects_in_neighbouring_cells_are_drawn_smaller_and_apart(canvas):
    scene = shapes.Scene((shapes.ShapeObject("square", "red", "top left"),
                          shapes.ShapeObject("square", "green", "top")), "black")
    for seed in range(5):
        image = shapes.render(scene, np.random.default_rng(seed), canvas).astype(int)
        masks = [np.all(np.abs(image - shapes.PALETTE[color]) < 10, axis=-1) for color in ("red", "green")]
        smallest, largest = canvas.pair_object_sizes
        for mask in masks:
            assert (smallest - 2) ** 2 < mask.sum() <= largest**2
        red_right = np.nonzero(masks[0])[1].max()
        green_left = np.nonzero(masks[1])[1].min()
        assert red_right < green_left                       # a background column or more between them


def test_heldout_pairs_are_two_heldout_objects_in_distinct_cells():
    heldout = set(shapes.heldout_specs())
    pairs = shapes.heldout_pairs(100)
    assert len(set(pairs)) == 100
    for scene in pairs:
        assert len(scene.objects) == 2 and scene.objects[0].color != scene.objects[1].color
        assert all(spec in heldout for spec in scene.specs())
    assert pairs[:10] == shapes.heldout_pairs(10)
