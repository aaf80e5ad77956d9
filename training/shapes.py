"""Procedurally generated, captioned images of simple coloured shapes.

Every image is 256x256 RGB: a plain background colour with one object (or two,
for training variety) drawn on it. An object is a circle, square or upward
pointing triangle of a palette colour, placed in one cell of a 3x3 grid.
Captions are plain English, for example::

    a red circle at the top left on a blue background
    an orange square in the center and a white triangle on the right on a black background

The space of single-object combinations (shape x colour x position x
background) is split deterministically into a train part and a held-out part;
held-out combinations never appear in the training stream, neither alone nor
as one object of a two-object scene.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

IMAGE_SIZE = 256
GRID_SIZE = 3

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")

# Saturated, well separated colours: the closest pair (orange / yellow) is
# still about 100 RGB units apart, so a nearest-colour lookup stays reliable
# under blur and noise.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (255, 140, 0),
    "yellow": (250, 230, 40),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "purple": (140, 50, 170),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
COLORS: tuple[str, ...] = tuple(PALETTE)

# Grid cells in row-major order (top row first) and the phrase naming each.
POSITIONS: tuple[str, ...] = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)
POSITION_PHRASES: dict[str, str] = {
    "top left": "at the top left",
    "top": "at the top",
    "top right": "at the top right",
    "left": "on the left",
    "center": "in the center",
    "right": "on the right",
    "bottom left": "at the bottom left",
    "bottom": "at the bottom",
    "bottom right": "at the bottom right",
}

# A lone object is drawn large, 96 px (6 tokens of the 16x16 latent, 3 of the 8x8 scale), so that its
# shape is already decided at the 8x8 and 12x12 scales, which the transformer predicts far better than the
# 16x16 one; smaller objects come out as blobs. It sits on the 16 px token grid (centres 64 / 128 / 192,
# no jitter): a square's edges then fall on token boundaries, so none of its last-scale tokens is part
# object, part background (such tokens round a square's corners). training/README.md has the measurements.
# Two objects in neighbouring cells are drawn smaller, so that they never overlap. Objects never leave
# the image.
CELL_CENTERS: tuple[int, ...] = (64, 128, 192)
SINGLE_OBJECT_SIZE = 96                               # side in px
PAIR_OBJECT_SIZE: tuple[float, float] = (56, 60)      # (min, max) side in px, drawn per object

# Objects are drawn at this multiple of the output size and box-filtered down,
# which gives smooth, anti-aliased edges.
SUPERSAMPLING = 4

# Number of single-object combinations held out from training.
HELDOUT_COUNT = 240
SPLIT_SALT = "infinity-shapes-split-v1"


@dataclass(frozen=True)
class SceneSpec:
    """One object on a background: the unit the held-out split is defined on."""

    shape: str
    color: str
    position: str
    background: str

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}")
        if self.color not in PALETTE:
            raise ValueError(f"unknown colour {self.color!r}")
        if self.background not in PALETTE:
            raise ValueError(f"unknown background {self.background!r}")
        if self.position not in POSITION_PHRASES:
            raise ValueError(f"unknown position {self.position!r}")
        if self.color == self.background:
            raise ValueError("object colour must differ from the background colour")


@dataclass(frozen=True)
class ShapeObject:
    """An object of a scene: a coloured shape in one grid cell."""

    shape: str
    color: str
    position: str


@dataclass(frozen=True)
class Scene:
    """One or two objects in distinct cells on a shared background."""

    objects: tuple[ShapeObject, ...]
    background: str

    def __post_init__(self) -> None:
        if not 1 <= len(self.objects) <= 2:
            raise ValueError("a scene holds one or two objects")
        if len({obj.position for obj in self.objects}) != len(self.objects):
            raise ValueError("objects of a scene must occupy distinct cells")
        for obj in self.objects:
            # Validates every attribute, including colour != background.
            SceneSpec(obj.shape, obj.color, obj.position, self.background)

    @classmethod
    def from_spec(cls, spec: SceneSpec) -> Scene:
        return cls((ShapeObject(spec.shape, spec.color, spec.position),), spec.background)

    def specs(self) -> tuple[SceneSpec, ...]:
        """Each object together with the background, as single-object specs."""
        return tuple(
            SceneSpec(obj.shape, obj.color, obj.position, self.background)
            for obj in self.objects
        )


def _as_scene(scene: SceneSpec | Scene) -> Scene:
    return Scene.from_spec(scene) if isinstance(scene, SceneSpec) else scene


# ---------------------------------------------------------------- captions


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _object_phrase(obj: ShapeObject) -> str:
    return f"{_article(obj.color)} {obj.color} {obj.shape} {POSITION_PHRASES[obj.position]}"


def caption(scene: SceneSpec | Scene) -> str:
    """Plain English caption, e.g. 'a red circle at the top left on a blue background'."""
    scene = _as_scene(scene)
    objects = " and ".join(_object_phrase(obj) for obj in scene.objects)
    return f"{objects} on {_article(scene.background)} {scene.background} background"


def vocabulary() -> tuple[str, ...]:
    """Every word that can appear in a caption, sorted alphabetically."""
    words = {"a", "an", "and", "on", "background"}
    words.update(SHAPES)
    words.update(COLORS)
    for phrase in POSITION_PHRASES.values():
        words.update(phrase.split())
    return tuple(sorted(words))


# --------------------------------------------------------------- rendering


def _cell_center(position: str) -> tuple[int, int]:
    row, col = divmod(POSITIONS.index(position), GRID_SIZE)
    return CELL_CENTERS[col], CELL_CENTERS[row]


def _shape_outline(shape: str, cx: float, cy: float, size: float) -> list[tuple[float, float]]:
    """Corner points of the shape's bounding box (circle, square) or its vertices (triangle)."""
    half = size / 2
    left, top, right, bottom = cx - half, cy - half, cx + half, cy + half
    if shape == "triangle":
        return [(cx, top), (right, bottom), (left, bottom)]
    return [(left, top), (right, bottom)]


def _draw_object(draw: ImageDraw.ImageDraw, obj: ShapeObject, size: float) -> None:
    cx, cy = _cell_center(obj.position)
    points = [
        (x * SUPERSAMPLING, y * SUPERSAMPLING)
        for x, y in _shape_outline(obj.shape, cx, cy, size)
    ]
    fill = PALETTE[obj.color]
    if obj.shape == "circle":
        draw.ellipse(points, fill=fill)
    elif obj.shape == "square":
        draw.rectangle(points, fill=fill)
    else:
        draw.polygon(points, fill=fill)


def render(scene: SceneSpec | Scene, rng: np.random.Generator) -> np.ndarray:
    """Draw a scene as a uint8 array of shape [IMAGE_SIZE, IMAGE_SIZE, 3].

    ``rng`` draws the size of each object of a two-object scene, so the same
    spec renders identically for identically seeded generators; a lone object
    is always ``SINGLE_OBJECT_SIZE`` px, centred on the 16 px token grid.
    """
    scene = _as_scene(scene)
    canvas_size = IMAGE_SIZE * SUPERSAMPLING
    canvas = Image.new("RGB", (canvas_size, canvas_size), PALETTE[scene.background])
    draw = ImageDraw.Draw(canvas)
    for obj in scene.objects:
        size = SINGLE_OBJECT_SIZE if len(scene.objects) == 1 else rng.uniform(*PAIR_OBJECT_SIZE)
        _draw_object(draw, obj, size)
    image = canvas.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)
    return np.asarray(image, dtype=np.uint8).copy()


# ------------------------------------------------------------ combinations


def all_specs() -> tuple[SceneSpec, ...]:
    """Every valid single-object combination, in a fixed enumeration order."""
    return tuple(
        SceneSpec(shape, color, position, background)
        for shape, color, position, background in itertools.product(
            SHAPES, COLORS, POSITIONS, COLORS
        )
        if color != background
    )


def _split_key(spec: SceneSpec) -> bytes:
    text = "|".join((SPLIT_SALT, spec.shape, spec.color, spec.position, spec.background))
    return hashlib.sha256(text.encode("utf-8")).digest()


@lru_cache(maxsize=1)
def _split() -> tuple[tuple[SceneSpec, ...], frozenset[SceneSpec]]:
    """(held-out specs in hash order, train specs)."""
    ranked = sorted(all_specs(), key=_split_key)
    heldout = tuple(ranked[:HELDOUT_COUNT])
    train = frozenset(ranked[HELDOUT_COUNT:])
    return heldout, train


def heldout_specs(n: int | None = None) -> list[SceneSpec]:
    """The first ``n`` held-out specs (all of them if ``n`` is None) in a fixed, well-mixed order."""
    heldout, _ = _split()
    if n is not None and n > len(heldout):
        raise ValueError(f"only {len(heldout)} held-out specs exist, asked for {n}")
    return list(heldout[:n])


def train_specs() -> list[SceneSpec]:
    """All train combinations, in the fixed enumeration order of ``all_specs``."""
    _, train = _split()
    return [spec for spec in all_specs() if spec in train]


@lru_cache(maxsize=1)
def _train_specs_tuple() -> tuple[SceneSpec, ...]:
    return tuple(train_specs())


def is_train_combination(spec: SceneSpec) -> bool:
    """Whether this single-object combination may appear in training data."""
    _, train = _split()
    return spec in train


# ---------------------------------------------------------------- sampling


def sample_train_spec(rng: np.random.Generator) -> SceneSpec:
    """A uniformly random train combination."""
    specs = _train_specs_tuple()
    return specs[rng.integers(len(specs))]


def sample_train_scene(rng: np.random.Generator, two_object_probability: float = 0.0) -> Scene:
    """A train scene with one object, or two with probability ``two_object_probability``.

    In a two-object scene both objects, each taken with the shared background,
    are train combinations, and they occupy different cells.
    """
    first = sample_train_spec(rng)
    if rng.random() >= two_object_probability:
        return Scene.from_spec(first)
    partners = [
        spec
        for spec in _train_specs_tuple()
        if spec.background == first.background and spec.position != first.position
    ]
    second = partners[rng.integers(len(partners))]
    return Scene(
        (
            ShapeObject(first.shape, first.color, first.position),
            ShapeObject(second.shape, second.color, second.position),
        ),
        first.background,
    )


class ShapesDataset:
    """Deterministic stream of (image, caption) pairs from the train split.

    Item ``index`` is drawn from a generator seeded with ``(seed, index)``, so
    it can be fetched in any order (as a map-style dataset, e.g. from several
    data-loader workers) and is the same on every run. Images are uint8 arrays
    of shape [IMAGE_SIZE, IMAGE_SIZE, 3].
    """

    def __init__(self, seed: int, length: int = 10_000, two_object_probability: float = 0.0):
        if not 0.0 <= two_object_probability <= 1.0:
            raise ValueError("two_object_probability must lie in [0, 1]")
        self.seed = seed
        self.length = length
        self.two_object_probability = two_object_probability

    def __len__(self) -> int:
        return self.length

    def scene(self, index: int) -> Scene:
        """The scene of item ``index`` (without rendering it)."""
        scene, _ = self._scene_and_rng(index)
        return scene

    def __getitem__(self, index: int) -> tuple[np.ndarray, str]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        scene, rng = self._scene_and_rng(index)
        return render(scene, rng), caption(scene)

    def __iter__(self) -> Iterator[tuple[np.ndarray, str]]:
        for index in range(self.length):
            yield self[index]

    def _scene_and_rng(self, index: int) -> tuple[Scene, np.random.Generator]:
        rng = np.random.default_rng((self.seed, index))
        return sample_train_scene(rng, self.two_object_probability), rng
