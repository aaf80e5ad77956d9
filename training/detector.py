"""A pixel-level detector that checks a single-object image against its SceneSpec.

It is a cheap, deterministic stand-in for a learned judge of prompt adherence:

* background: the most common palette colour among the border pixels;
* object mask: pixels nearer to the object colour than to the background
  colour, after a first guess of the object colour from the pixels whose
  nearest palette colour is not the background;
* object colour: nearest palette colour to the median of the object's core
  pixels (those far from the background);
* shape: fill ratio of the mask inside its bounding box (circle ~0.785,
  square ~1.0, upward triangle ~0.5), plus the share of the mask lying in the
  upper half of its bounding box (upward triangle ~0.25, circle and square
  ~0.5), which keeps triangles apart from circles under heavy blur;
* position: the mask's centroid mapped to the 3x3 grid.

The mask is cleaned with a small morphological opening, so blur, mild noise
and resampling artefacts do not change the outcome.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from training.shapes import COLORS, GRID_SIZE, PALETTE, POSITIONS, PAIR_OBJECT_SHARES, Scene, SceneSpec

_PALETTE_RGB = np.array([PALETTE[name] for name in COLORS], dtype=np.float32)
_PALETTE_SQUARED_NORMS = (_PALETTE_RGB**2).sum(axis=1)

BORDER_WIDTH_FRACTION = 1 / 64
MIN_OBJECT_FRACTION = 0.005
# Fill-ratio boundaries, midway between the ideal values of neighbouring shapes.
TRIANGLE_MAX_FILL = 0.64
CIRCLE_MAX_FILL = 0.89
# Upper-half share boundary, between upward triangle (0.25) and symmetric shapes (0.5).
TRIANGLE_MAX_TOP_SHARE = 0.4
# An object of a two-object scene is found in its cell when at least this share of the smallest drawn
# object's bounding square there has the object's colour: half of what a drawn triangle (fill 0.5) covers.
PAIR_MIN_COVER = 0.25


@dataclass(frozen=True)
class Detection:
    """Attributes read off an image; object fields are None when no object was found.

    ``fill_ratio`` and ``top_share`` are the shape features behind ``shape``;
    ``object_fraction`` is the share of the image covered by the object mask.
    """

    background: str
    shape: str | None
    color: str | None
    position: str | None
    fill_ratio: float | None
    top_share: float | None
    object_fraction: float

    @property
    def found_object(self) -> bool:
        return self.shape is not None


@dataclass(frozen=True)
class AdherenceScore:
    """A detection compared with the spec the image was meant to show."""

    detection: Detection
    shape_correct: bool
    color_correct: bool
    position_correct: bool
    background_correct: bool

    @property
    def all_correct(self) -> bool:
        return self.shape_correct and self.color_correct and self.position_correct and self.background_correct

    @property
    def fraction_correct(self) -> float:
        """Share of the four attributes that match the spec."""
        checks = (self.shape_correct, self.color_correct, self.position_correct, self.background_correct)
        return sum(checks) / len(checks)


def _as_float_rgb(image: Image.Image | np.ndarray) -> np.ndarray:
    array = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape [H, W, 3], got {array.shape}")
    return array.astype(np.float32)


def _nearest_palette_index(pixels: np.ndarray) -> np.ndarray:
    """Index into COLORS of the nearest palette colour for each pixel ([..., 3] -> [...])."""
    # |p - c|^2 = |p|^2 - 2 p.c + |c|^2; the |p|^2 term does not change the argmin.
    squared_distances = _PALETTE_SQUARED_NORMS - 2.0 * pixels @ _PALETTE_RGB.T
    return squared_distances.argmin(axis=-1)


def _border_pixels(pixels: np.ndarray) -> np.ndarray:
    height, width, _ = pixels.shape
    band = max(1, round(min(height, width) * BORDER_WIDTH_FRACTION))
    return np.concatenate(
        [
            pixels[:band].reshape(-1, 3),
            pixels[-band:].reshape(-1, 3),
            pixels[band:-band, :band].reshape(-1, 3),
            pixels[band:-band, -band:].reshape(-1, 3),
        ]
    )


def _detect_background(pixels: np.ndarray) -> int:
    counts = np.bincount(_nearest_palette_index(_border_pixels(pixels)), minlength=len(COLORS))
    return int(counts.argmax())


def _detect_object_color(pixels: np.ndarray, candidate: np.ndarray, background_rgb: np.ndarray) -> int:
    """Palette index of the object, from the half of the candidate pixels farthest from the background."""
    candidates = pixels[candidate]
    distance = np.linalg.norm(candidates - background_rgb, axis=-1)
    core = candidates[distance >= np.median(distance)]
    return int(_nearest_palette_index(np.median(core, axis=0)))


def _filter_3x3(mask: np.ndarray, combine: np.ufunc) -> np.ndarray:
    """Combine every pixel with its 3x3 neighbourhood (edges replicated), separably."""
    padded = np.pad(mask, 1, mode="edge")
    rows = combine.reduce([padded[:-2], padded[1:-1], padded[2:]])
    return combine.reduce([rows[:, :-2], rows[:, 1:-1], rows[:, 2:]])


def _open_mask(mask: np.ndarray) -> np.ndarray:
    """Morphological opening with a 3x3 square: removes specks and one-pixel threads."""
    eroded = _filter_3x3(mask, np.logical_and)
    return _filter_3x3(eroded, np.logical_or)


def _object_mask(pixels: np.ndarray, background_rgb: np.ndarray, object_rgb: np.ndarray) -> np.ndarray:
    """Pixels past the midpoint between background and object colour, projected on their difference."""
    direction = object_rgb - background_rgb
    progress = (pixels - background_rgb) @ direction / float(direction @ direction)
    return _open_mask(progress > 0.5)


def _classify_shape(fill_ratio: float, top_share: float) -> str:
    if fill_ratio < TRIANGLE_MAX_FILL or top_share < TRIANGLE_MAX_TOP_SHARE:
        return "triangle"
    if fill_ratio < CIRCLE_MAX_FILL:
        return "circle"
    return "square"


def _position_of(mask: np.ndarray) -> str:
    height, width = mask.shape
    rows, cols = np.nonzero(mask)
    row = min(int(rows.mean() * GRID_SIZE / height), GRID_SIZE - 1)
    col = min(int(cols.mean() * GRID_SIZE / width), GRID_SIZE - 1)
    return POSITIONS[row * GRID_SIZE + col]


def _box_features(mask: np.ndarray) -> tuple[float, float]:
    """(fill ratio of the bounding box, share of the mask in the box's upper half)."""
    rows, cols = np.nonzero(mask)
    top, bottom = rows.min(), rows.max()
    box_area = (bottom - top + 1) * (cols.max() - cols.min() + 1)
    middle = (top + bottom) / 2
    upper = np.count_nonzero(rows < middle) + 0.5 * np.count_nonzero(rows == middle)
    return float(rows.size / box_area), float(upper / rows.size)


def _no_object(background: str, object_fraction: float) -> Detection:
    return Detection(background, None, None, None, None, None, object_fraction)


def detect(image: Image.Image | np.ndarray) -> Detection:
    """Read background, shape, colour and position of the single object in ``image``."""
    pixels = _as_float_rgb(image)
    min_object_pixels = MIN_OBJECT_FRACTION * pixels.shape[0] * pixels.shape[1]
    background_index = _detect_background(pixels)
    background = COLORS[background_index]
    background_rgb = _PALETTE_RGB[background_index]

    candidate = _open_mask(_nearest_palette_index(pixels) != background_index)
    if candidate.sum() < min_object_pixels:
        return _no_object(background, float(candidate.mean()))

    color_index = _detect_object_color(pixels, candidate, background_rgb)
    if color_index == background_index:
        return _no_object(background, float(candidate.mean()))
    mask = _object_mask(pixels, background_rgb, _PALETTE_RGB[color_index])
    if mask.sum() < min_object_pixels:
        return _no_object(background, float(mask.mean()))

    fill_ratio, top_share = _box_features(mask)
    return Detection(
        background=background,
        shape=_classify_shape(fill_ratio, top_share),
        color=COLORS[color_index],
        position=_position_of(mask),
        fill_ratio=fill_ratio,
        top_share=top_share,
        object_fraction=float(mask.mean()),
    )


def score(image: Image.Image | np.ndarray, spec: SceneSpec) -> AdherenceScore:
    """Compare the detected attributes of ``image`` with ``spec``."""
    detection = detect(image)
    return AdherenceScore(
        detection=detection,
        shape_correct=detection.shape == spec.shape,
        color_correct=detection.color == spec.color,
        position_correct=detection.position == spec.position,
        background_correct=detection.background == spec.background,
    )


@dataclass(frozen=True)
class PairScore:
    """Whether each object of a two-object scene shows in its own cell, in its colour."""

    found: tuple[bool, ...]
    background_correct: bool

    @property
    def all_correct(self) -> bool:
        return all(self.found) and self.background_correct


def _cell(pixels: np.ndarray, position: str) -> np.ndarray:
    """The pixels of one cell of the 3x3 grid that divides the image."""
    height, width, _ = pixels.shape
    row, col = divmod(POSITIONS.index(position), GRID_SIZE)
    return pixels[row * height // GRID_SIZE:(row + 1) * height // GRID_SIZE,
                  col * width // GRID_SIZE:(col + 1) * width // GRID_SIZE]


def score_pair(image: Image.Image | np.ndarray, scene: Scene) -> PairScore:
    """Each object of ``scene`` is found when its cell holds enough pixels nearest to its colour."""
    pixels = _as_float_rgb(image)
    smallest_side = PAIR_OBJECT_SHARES[0] * min(pixels.shape[:2])
    needed = PAIR_MIN_COVER * smallest_side**2
    found = tuple(
        int(np.count_nonzero(_open_mask(_nearest_palette_index(_cell(pixels, obj.position))
                                        == COLORS.index(obj.color)))) >= needed
        for obj in scene.objects)
    return PairScore(found, COLORS[_detect_background(pixels)] == scene.background)
