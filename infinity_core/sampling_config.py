"""Every setting of one generation, its default, and the rules for valid values: the one home of them.

The CLI, the ComfyUI nodes, training and the tools build a `SamplingConfig`; `generate` takes its fields
as keywords (or a ready config). A bad value raises an `InfinityError` whose message starts with the
field's name, which is also the name of the CLI option (with dashes) and of the node widget, before any
model work starts.

Where the defaults come from (FoundationVision/Infinity):
- cfg 3, tau 0.5: the published 2B demo (tools/interactive_infer.ipynb);
- top_k 900, top_p 0.97: `tools/run_infinity.py:gen_one_img`;
- pixels "1M", h/w 1.0: the published models are trained for 1024 x 1024 (`dynamic_resolution.py`);
- seed 0, batch 1.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
from typing import Sequence

from .errors import InfinityError
from .user_text import quoted
from .schedules import PIXEL_BUDGETS, Schedule, get_schedule
from .speed import speed_policy

CFG_RANGE = (0.0, 100.0)        # 1 = no guidance; upstream's demos use 3-4
TAU_RANGE = (0.01, 5.0)         # logits are multiplied by 1 / tau, so tau must stay away from 0
TOP_K_RANGE = (0, 10000)        # 0 = off; a bit has two outcomes, so only 1 (greedy) changes anything
TOP_P_RANGE = (0.0, 1.0)        # 0 = off
SEED_RANGE = (0, 2 ** 64 - 1)   # what torch.Generator.manual_seed takes, and ComfyUI's seed widget range
MAX_BATCH = 64

PerScale = float | tuple[float, ...]


def _finite_in(name: str, value, bounds: tuple[float, float]) -> float:
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InfinityError(f"{name} must be a number in {low:g}..{high:g}, got {quoted(value)}")
    if not (math.isfinite(value) and low <= value <= high):
        raise InfinityError(f"{name} must be a finite number in {low:g}..{high:g}, got {quoted(value)}")
    return float(value)


def _int_in(name: str, value, bounds: tuple[int, int]) -> int:
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise InfinityError(f"{name} must be a whole number in {low}..{high}, got {quoted(value)}")
    if not low <= value <= high:
        raise InfinityError(f"{name} must be in {low}..{high}, got {value}")
    return value


def per_scale_values(name: str, value: PerScale | Sequence[float], num_scales: int,
                     bounds: tuple[float, float]) -> tuple[float, ...]:
    """One value per scale. The rule everywhere: a number applies to every scale; a list gives 1..N values
    for N scales, coarse to fine, and its last value repeats over the scales it leaves out."""
    if isinstance(value, (int, float)):
        values = [value]
    elif isinstance(value, (list, tuple)):
        values = list(value)
    else:
        raise InfinityError(f"{name} must be a number or a list of numbers (one per scale), got {quoted(value)}")
    if not values:
        raise InfinityError(f"{name} is an empty list; give one value, or one per scale")
    if len(values) > num_scales:
        raise InfinityError(f"{name} lists {len(values)} values but the schedule has {num_scales} scales; "
                            f"give at most {num_scales}")
    checked = [_finite_in(f"{name} value {i + 1}" if len(values) > 1 else name, v, bounds)
               for i, v in enumerate(values)]
    return tuple(checked + checked[-1:] * (num_scales - len(checked)))


def parse_per_scale(text: str, name: str) -> PerScale:
    """"3" -> 3.0; "3, 3, 4" (commas or spaces) -> (3.0, 3.0, 4.0). Values are range-checked by the config."""
    words = [word for word in re.split(r"[,\s]+", str(text).strip()) if word]
    if not words:
        raise InfinityError(f"{name} is empty; give one value, or one per scale such as '3, 3, 4'")
    values = []
    for position, word in enumerate(words, start=1):
        try:
            values.append(float(word))
        except ValueError:
            raise InfinityError(f"{name} value {position} ({quoted(word)}) is not a number") from None
    return values[0] if len(values) == 1 else tuple(values)


def guided_until(cfg_per_scale: Sequence[float]) -> int:
    """One past the last scale whose cfg is not 1 (0: no scale is guided)."""
    return max((i + 1 for i, c in enumerate(cfg_per_scale) if c != 1), default=0)


@dataclass(frozen=True)
class SamplingConfig:
    """The settings of one generation. Checked on construction; `cfg` and `tau` take one value for every
    scale or a per-scale list (see `per_scale_values`)."""

    h_div_w: float = 1.0        # height / width of the image; the nearest of the official templates is used
    pixels: str = "1M"          # pixel budget, a key of PIXEL_BUDGETS; sets the number of scales
    cfg: PerScale = 3.0         # classifier-free guidance on the logits; 1 = none (half the work)
    tau: PerScale = 0.5         # temperature: logits are multiplied by 1 / tau before the cfg mix
    top_k: int = 900            # per bit; only 1 (greedy) changes anything, 0 = off
    top_p: float = 0.97         # per bit: a bit whose less likely value has p <= 1 - top_p is fixed; 0 = off
    seed: int = 0               # image i of a batch uses seed + i (mod 2**64): each is reproducible alone
    batch_size: int = 1         # images per prompt
    speed: str = "exact"        # "exact" (the official computation), "balanced" or "fast": see speed.py

    schedule: Schedule = field(init=False, repr=False, compare=False)
    cfg_per_scale: tuple[float, ...] = field(init=False, repr=False, compare=False)
    tau_per_scale: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if not isinstance(self.pixels, str) or self.pixels not in PIXEL_BUDGETS:
            raise InfinityError(f"pixels must be one of {list(PIXEL_BUDGETS)}, got {quoted(self.pixels)}")
        h_div_w = _finite_in("h_div_w", self.h_div_w, (1e-3, 1e3))
        try:
            schedule = get_schedule(h_div_w, self.pixels)
        except InfinityError as err:
            raise InfinityError(f"h_div_w {h_div_w:g}: {err}") from None
        for name, value in (("cfg", self.cfg), ("tau", self.tau)):
            if isinstance(value, list):                 # stored as a tuple: hashable, immutable
                object.__setattr__(self, name, tuple(value))
        set_field = object.__setattr__
        set_field(self, "h_div_w", h_div_w)
        set_field(self, "schedule", schedule)
        set_field(self, "cfg_per_scale", per_scale_values("cfg", self.cfg, schedule.num_scales, CFG_RANGE))
        set_field(self, "tau_per_scale", per_scale_values("tau", self.tau, schedule.num_scales, TAU_RANGE))
        set_field(self, "top_k", _int_in("top_k", self.top_k, TOP_K_RANGE))
        set_field(self, "top_p", _finite_in("top_p", self.top_p, TOP_P_RANGE))
        set_field(self, "seed", _int_in("seed", self.seed, SEED_RANGE))
        set_field(self, "batch_size", _int_in("batch_size", self.batch_size, (1, MAX_BATCH)))
        speed_policy(self.speed)

    @classmethod
    def from_keywords(cls, settings: dict) -> "SamplingConfig":
        """A config from keyword settings, where None means "the default"; an unknown name is an error."""
        known = {f.name for f in fields(cls) if f.init}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise InfinityError(f"unknown sampling setting(s) {unknown}; valid: {sorted(known)}")
        return cls(**{name: value for name, value in settings.items() if value is not None})

    @property
    def guided(self) -> bool:
        """Whether any scale mixes in the unconditional logits (cfg != 1), so the unconditional rows run."""
        return self.guided_until > 0

    @property
    def guided_until(self) -> int:
        """One past the last guided scale: the unconditional rows run (and fill their KV cache) until then."""
        return guided_until(self.cfg_per_scale)

    def image_seed(self, index: int) -> int:
        """The seed of image `index` of the batch (over all prompts, in output order)."""
        return (self.seed + index) % (SEED_RANGE[1] + 1)
