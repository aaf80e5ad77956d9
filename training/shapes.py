"""Procedurally generated, captioned images of simple coloured shapes.

An image is RGB, of any size and aspect ratio (a ``Canvas``; 256 x 256 by
default): a plain background colour with one or two objects drawn on it. An
object is a circle, square or upward pointing triangle of a palette colour,
placed in one cell of a 3x3 grid that divides the canvas.
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

GRID_SIZE = 3
TOKEN_PX = 16            # the demo VAE's stride: one transformer token covers 16 x 16 px

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

# Geometry, as shares of the canvas, so that one scene draws alike at every size and aspect ratio.
# Cell centres sit at 1/4, 1/2 and 3/4 of each side. A lone object is 3/8 of the shorter side (96 px at
# 256 x 256: 6 tokens of the 16x16 latent, 3 of the 8x8 scale), so its shape is already decided at the
# 8x8 and 12x12 scales, which the transformer predicts far better than the finest one; smaller objects
# come out as blobs. It is snapped to the 16 px token grid (side and edges), so a square's edges fall on
# token boundaries and none of its last-scale tokens is part object, part background.
# Two objects are drawn smaller, at most 0.235 of the shorter side, below the 1/4 between cell centres,
# so that they never overlap. Objects never leave the image. training/README.md has the measurements.
CELL_CENTER_SHARES: tuple[float, ...] = (0.25, 0.5, 0.75)
SINGLE_OBJECT_SHARE = 0.375
PAIR_OBJECT_SHARES: tuple[float, float] = (0.219, 0.235)   # (min, max) side over the shorter canvas side

# Objects are drawn at this multiple of the output size and box-filtered down,
# which gives smooth, anti-aliased edges.
SUPERSAMPLING = 4


@dataclass(frozen=True)
class Canvas:
    """The pixel size of a drawn scene and where its grid cells and objects go."""

    height: int
    width: int

    @property
    def short_side(self) -> int:
        return min(self.height, self.width)

    @property
    def single_object_size(self) -> int:
        """Side of a lone object in px: 3/8 of the shorter side, rounded to whole tokens."""
        return TOKEN_PX * max(1, round(SINGLE_OBJECT_SHARE * self.short_side / TOKEN_PX))

    @property
    def pair_object_sizes(self) -> tuple[float, float]:
        """(min, max) side in px of each object of a two-object scene."""
        return tuple(share * self.short_side for share in PAIR_OBJECT_SHARES)

    def cell_center(self, position: str, object_size: float | None = None) -> tuple[float, float]:
        """(x, y) of a cell's centre; with a lone object's `object_size`, moved by under half a token so that
        the object's edges fall on the token grid."""
        row, col = divmod(POSITIONS.index(position), GRID_SIZE)
        x, y = CELL_CENTER_SHARES[col] * self.width, CELL_CENTER_SHARES[row] * self.height
        if object_size is None:
            return x, y
        half = object_size / 2
        return (TOKEN_PX * round((x - half) / TOKEN_PX) + half, TOKEN_PX * round((y - half) / TOKEN_PX) + half)


SQUARE_256 = Canvas(256, 256)   # the 0.06M 1:1 image, the size of the held-out evaluation's default

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


def _shape_outline(shape: str, cx: float, cy: float, size: float) -> list[tuple[float, float]]:
    """Corner points of the shape's bounding box (circle, square) or its vertices (triangle)."""
    half = size / 2
    left, top, right, bottom = cx - half, cy - half, cx + half, cy + half
    if shape == "triangle":
        return [(cx, top), (right, bottom), (left, bottom)]
    return [(left, top), (right, bottom)]


def _draw_object(draw: ImageDraw.ImageDraw, obj: ShapeObject, center: tuple[float, float], size: float) -> None:
    points = [
        (x * SUPERSAMPLING, y * SUPERSAMPLING)
        for x, y in _shape_outline(obj.shape, *center, size)
    ]
    fill = PALETTE[obj.color]
    if obj.shape == "circle":
        draw.ellipse(points, fill=fill)
    elif obj.shape == "square":
        draw.rectangle(points, fill=fill)
    else:
        draw.polygon(points, fill=fill)


def render(scene: SceneSpec | Scene, rng: np.random.Generator, canvas: Canvas = SQUARE_256) -> np.ndarray:
    """Draw a scene as a uint8 array of shape [canvas.height, canvas.width, 3].

    ``rng`` draws the size of each object of a two-object scene, so the same
    spec renders identically for identically seeded generators; a lone object
    is always ``canvas.single_object_size`` px, its edges on the 16 px token grid.
    """
    scene = _as_scene(scene)
    canvas_image = Image.new("RGB", (canvas.width * SUPERSAMPLING, canvas.height * SUPERSAMPLING),
                             PALETTE[scene.background])
    draw = ImageDraw.Draw(canvas_image)
    for obj in scene.objects:
        if len(scene.objects) == 1:
            size = canvas.single_object_size
            center = canvas.cell_center(obj.position, size)
        else:
            size = rng.uniform(*canvas.pair_object_sizes)
            center = canvas.cell_center(obj.position)
        _draw_object(draw, obj, center, size)
    image = canvas_image.resize((canvas.width, canvas.height), Image.Resampling.BOX)
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


def heldout_pairs(n: int) -> list[Scene]:
    """``n`` two-object scenes made only of held-out combinations, in a fixed order: held-out spec i with
    the next held-out spec on the same background in another cell and of another colour."""
    heldout, _ = _split()
    pairs = []
    for index, first in enumerate(heldout):
        partner = next((spec for spec in heldout[index + 1:] if spec.background == first.background
                        and spec.position != first.position and spec.color != first.color), None)
        if partner is not None:
            pairs.append(Scene((ShapeObject(first.shape, first.color, first.position),
                                ShapeObject(partner.shape, partner.color, partner.position)), first.background))
        if len(pairs) == n:
            return pairs
    raise ValueError(f"only {len(pairs)} held-out pairs exist, asked for {n}")


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
    data-loader workers) and is the same on every run, at any canvas: item
    ``index`` shows the same scene at every size. Images are uint8 arrays of
    shape [canvas.height, canvas.width, 3].
    """

    def __init__(self, seed: int, length: int = 10_000, two_object_probability: float = 0.0,
                 canvas: Canvas = SQUARE_256):
        if not 0.0 <= two_object_probability <= 1.0:
            raise ValueError("two_object_probability must lie in [0, 1]")
        self.seed = seed
        self.length = length
        self.two_object_probability = two_object_probability
        self.canvas = canvas

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
        return render(scene, rng, self.canvas), caption(scene)

    def __iter__(self) -> Iterator[tuple[np.ndarray, str]]:
        for index in range(self.length):
            yield self[index]

    def _scene_and_rng(self, index: int) -> tuple[Scene, np.random.Generator]:
        rng = np.random.default_rng((self.seed, index))
        return sample_train_scene(rng, self.two_object_probability), rng
