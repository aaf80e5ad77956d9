"""The image sizes a model was trained at, carried in its file, and the warning for a run outside them.

A transformer file may list the pixel budgets and aspect-ratio templates it was trained on in its metadata
(`infinity.trained_pixels`, `infinity.trained_aspects`). A run at another size still runs (Infinity's
positions extend to every template), but a small model draws noise there, so the CLI logs and the sampler
node shows what the model supports. Files without the entries (the official weights, trained on every
template up to 1M) get no warning.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import InfinityError
from .schedules import ASPECT_PRESETS, PIXEL_BUDGETS, Schedule, nearest_template
from .weights import read_model_metadata

PIXELS_KEY = "infinity.trained_pixels"
ASPECTS_KEY = "infinity.trained_aspects"


def _aspect_name(h_div_w: float) -> str:
    """The UI's name of a template ("3:4 (portrait)"), else W:H of the ratio."""
    names = [name for name, value in ASPECT_PRESETS.items() if value == h_div_w]
    return names[0] if names else f"h/w {h_div_w:g}"


@dataclass(frozen=True)
class TrainedSizes:
    """Pixel budgets and aspect templates (h/w keys of `schedules.ASPECT_TEMPLATES`) a model was trained on."""

    pixels: tuple[str, ...]
    aspects: tuple[float, ...]

    def __post_init__(self) -> None:
        unknown = [p for p in self.pixels if p not in PIXEL_BUDGETS]
        if unknown or not self.pixels:
            raise InfinityError(f"trained pixel budgets {list(self.pixels)} must be some of {list(PIXEL_BUDGETS)}")
        if not self.aspects or any(nearest_template(a) != a for a in self.aspects):
            raise InfinityError(f"trained aspects {list(self.aspects)} must be template keys h/w")

    def warning(self, schedule: Schedule, pixels: str) -> str | None:
        """Why a run at `pixels` on `schedule` is outside the training, with what the model supports; None inside."""
        problems = []
        if pixels not in self.pixels:
            problems.append(f"the pixel budget {pixels}")
        if schedule.h_div_w not in self.aspects:
            problems.append(f"the aspect ratio {_aspect_name(schedule.h_div_w)}")
        if not problems:
            return None
        return (f"this model was not trained at {' or '.join(problems)}, so expect noise or misplaced objects; it "
                f"was trained at {', '.join(self.pixels)} and aspect ratios "
                f"{', '.join(_aspect_name(a) for a in self.aspects)}")

    def to_metadata(self) -> dict[str, str]:
        """The file metadata entries that `from_metadata` reads back."""
        return {PIXELS_KEY: ",".join(self.pixels), ASPECTS_KEY: ",".join(f"{a:g}" for a in self.aspects)}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], source: str) -> TrainedSizes | None:
        """None when the metadata lists no trained sizes; refuses entries that do not parse."""
        if PIXELS_KEY not in metadata and ASPECTS_KEY not in metadata:
            return None
        try:
            pixels = tuple(p.strip() for p in metadata.get(PIXELS_KEY, "").split(",") if p.strip())
            aspects = tuple(float(a) for a in metadata.get(ASPECTS_KEY, "").split(",") if a.strip())
            return cls(pixels, aspects)
        except (ValueError, InfinityError) as err:
            raise InfinityError(f"{source}: its trained sizes ({PIXELS_KEY}, {ASPECTS_KEY}) do not parse: "
                                f"{err}") from None


def trained_sizes(path: str | os.PathLike) -> TrainedSizes | None:
    """The sizes a transformer file says it was trained at (header only; no tensor is read)."""
    return TrainedSizes.from_metadata(read_model_metadata(path), f"model file '{path}'")
