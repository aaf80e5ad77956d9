"""Scale schedules: which token grids (h, w) the sampler walks through, as data.

Port of FoundationVision/Infinity `infinity/utils/dynamic_resolution.py`: 8 aspect-ratio templates
(and their transposes), each a list of 13 grids; a pixel budget ("0.06M" ... "1M") takes the first
7/10/12/13 of them. The final grid times the VAE stride (16 px per token) is the image size. The
template for an arbitrary h/w is the nearest one, as `np.argmin(|templates - h/w|)` picks it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import InfinityError
from .user_text import quoted

PIXELS_PER_TOKEN = 16   # transformer token = 16x16 px (the 8B's VAE is f8 but pairs 2x2 latents per token)

# h/w -> 13 (h, w) token grids, tallest template 3.0 (dynamic_resolution.py:6-15)
_TEMPLATES: dict[float, tuple[tuple[int, int], ...]] = {
    1.000: ((1, 1), (2, 2), (4, 4), (6, 6), (8, 8), (12, 12), (16, 16), (20, 20), (24, 24), (32, 32), (40, 40), (48, 48), (64, 64)),
    1.250: ((1, 1), (2, 2), (3, 3), (5, 4), (10, 8), (15, 12), (20, 16), (25, 20), (30, 24), (35, 28), (45, 36), (55, 44), (70, 56)),
    1.333: ((1, 1), (2, 2), (4, 3), (8, 6), (12, 9), (16, 12), (20, 15), (24, 18), (28, 21), (36, 27), (48, 36), (60, 45), (72, 54)),
    1.500: ((1, 1), (2, 2), (3, 2), (6, 4), (9, 6), (15, 10), (21, 14), (27, 18), (33, 22), (39, 26), (48, 32), (63, 42), (78, 52)),
    1.750: ((1, 1), (2, 2), (3, 3), (7, 4), (11, 6), (14, 8), (21, 12), (28, 16), (35, 20), (42, 24), (56, 32), (70, 40), (84, 48)),
    2.000: ((1, 1), (2, 2), (4, 2), (6, 3), (10, 5), (16, 8), (22, 11), (30, 15), (38, 19), (46, 23), (60, 30), (74, 37), (90, 45)),
    2.500: ((1, 1), (2, 2), (5, 2), (10, 4), (15, 6), (20, 8), (25, 10), (30, 12), (40, 16), (50, 20), (65, 26), (80, 32), (100, 40)),
    3.000: ((1, 1), (2, 2), (6, 2), (9, 3), (15, 5), (21, 7), (27, 9), (36, 12), (45, 15), (54, 18), (72, 24), (90, 30), (111, 37)),
}


def _with_transposes(templates):
    """Add the landscape templates, keyed int(1/r*1000)/1000 exactly as the official table does."""
    table = dict(templates)
    for ratio, grids in templates.items():
        if ratio != 1.0:
            table[int(1 / ratio * 1000) / 1000] = tuple((w, h) for h, w in grids)
    return table


ASPECT_TEMPLATES: dict[float, tuple[tuple[int, int], ...]] = _with_transposes(_TEMPLATES)

# pixel budget -> number of scales (dynamic_resolution.py:27-45)
PIXEL_BUDGETS: dict[str, int] = {"0.06M": 7, "0.25M": 10, "0.60M": 12, "1M": 13}

# Friendly names for the UI: "h:w" of the final image, keyed to the template ratio h/w.
ASPECT_PRESETS: dict[str, float] = {
    "1:1": 1.0,
    "4:5 (portrait)": 1.25, "5:4 (landscape)": 0.8,
    "3:4 (portrait)": 1.333, "4:3 (landscape)": 0.75,
    "2:3 (portrait)": 1.5, "3:2 (landscape)": 0.666,
    "4:7 (portrait)": 1.75, "7:4 (landscape)": 0.571,
    "1:2 (portrait)": 2.0, "2:1 (landscape)": 0.5,
    "2:5 (portrait)": 2.5, "5:2 (landscape)": 0.4,
    "1:3 (portrait)": 3.0, "3:1 (landscape)": 0.333,
}


@dataclass(frozen=True)
class Schedule:
    """The token grids of one generation, coarse to fine, and where they sit on the RoPE grid."""

    h_div_w: float                     # the template's key (h/w of the final grid, rounded as the official table)
    grids: tuple[tuple[int, int], ...]  # (h, w) per scale
    rope_grid: tuple[int, int]         # last grid of the template's 1M schedule (RoPE positions are normalised to it)

    @property
    def num_scales(self) -> int:
        return len(self.grids)

    @property
    def num_tokens(self) -> int:
        return sum(h * w for h, w in self.grids)

    @property
    def final_grid(self) -> tuple[int, int]:
        return self.grids[-1]

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) in pixels of the decoded image."""
        h, w = self.final_grid
        return h * PIXELS_PER_TOKEN, w * PIXELS_PER_TOKEN

    def latent_grids(self, latents_per_token: int) -> list[tuple[int, int]]:
        """Every scale's grid on a VAE whose latents tile a token `latents_per_token` to a side (1 for the f16
        VAEs, 2 for the 8B's f8 patchify VAE, whose 2x2 latents make one token)."""
        return [(h * latents_per_token, w * latents_per_token) for h, w in self.grids]

    def token_offset(self, scale_index: int) -> int:
        """Number of tokens in the scales before `scale_index`."""
        return sum(h * w for h, w in self.grids[:scale_index])


ASPECT_TOLERANCE = 0.05   # a ratio further than 5 % from every template is refused rather than snapped


def nearest_template(h_div_w: float) -> float:
    """The template key closest to `h_div_w` (ties go to the first in table order, as np.argmin does)."""
    if not h_div_w > 0:
        raise InfinityError(f"aspect ratio h/w must be a positive number, got {quoted(h_div_w)}")
    key = min(ASPECT_TEMPLATES, key=lambda k: abs(k - h_div_w))
    if abs(key - h_div_w) > ASPECT_TOLERANCE * key:
        valid = ", ".join(f"{k:g}" for k in sorted(ASPECT_TEMPLATES))
        raise InfinityError(f"aspect ratio h/w = {h_div_w:g} has no schedule; Infinity was trained on h/w in "
                            f"[{valid}] (within {ASPECT_TOLERANCE:.0%})")
    return key


def parse_aspect(aspect: str | float) -> float:
    """The UI's aspect, always width to height, -> h/w (what `get_schedule` and `generate` take).

    Accepts a preset name ("3:4 (portrait)"), "W:H" text ("16:9"), or a number W / H ("1.777" or 0.75,
    so "3:4" and 0.75 are the same portrait shape)."""
    if isinstance(aspect, (int, float)) and not isinstance(aspect, bool):
        width_over_height = float(aspect)
    else:
        text = str(aspect).strip()
        if text in ASPECT_PRESETS:
            return ASPECT_PRESETS[text]
        try:
            if ":" in text:
                w_part, h_part = text.split("(")[0].split(":")
                width, height = float(w_part), float(h_part)
                if not (width > 0 and height > 0 and math.isfinite(width) and math.isfinite(height)):
                    raise ValueError
                width_over_height = width / height
            else:
                width_over_height = float(text)
        except ValueError:
            raise InfinityError(f"aspect {quoted(aspect)} is not understood; use width:height with positive numbers "
                                f"(e.g. '16:9'), a number width/height, or one of {list(ASPECT_PRESETS)}") from None
    if not (math.isfinite(width_over_height) and width_over_height > 0):
        raise InfinityError(f"aspect {quoted(aspect)} must be a positive width/height")
    return 1.0 / width_over_height


def describe(schedule: Schedule) -> str:
    """"7:4 (h/w 0.571), 448 x 256 px, 7 scales": the shape a run actually uses."""
    height, width = schedule.image_size
    divisor = math.gcd(width, height)
    return (f"{width // divisor}:{height // divisor} (h/w {schedule.h_div_w:g}), {width} x {height} px, "
            f"{schedule.num_scales} scales")


def get_schedule(h_div_w: float = 1.0, pixels: str = "1M") -> Schedule:
    """The official schedule for an aspect ratio (nearest template) and a pixel budget."""
    if pixels not in PIXEL_BUDGETS:
        raise InfinityError(f"pixel budget '{pixels}' does not exist; valid budgets: {list(PIXEL_BUDGETS)}")
    key = nearest_template(h_div_w)
    grids = ASPECT_TEMPLATES[key]
    return Schedule(h_div_w=key, grids=grids[:PIXEL_BUDGETS[pixels]], rope_grid=grids[-1])
