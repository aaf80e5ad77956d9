"""Loss curves as a PNG, drawn with PIL (no plotting library): one panel per training stage.

Each panel shows the per-step loss (thin, light) and its running mean (thick), on a log10 y axis
when the curve spans more than a factor of ten.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

PANEL_SIZE = (560, 300)
MARGIN = (64, 28, 16, 36)                 # left, top, right, bottom
RAW_COLOUR = (170, 190, 230)
SMOOTH_COLOUR = (25, 60, 170)
AXIS_COLOUR = (60, 60, 60)
GRID_COLOUR = (225, 225, 225)


@dataclass(frozen=True)
class Curve:
    title: str
    steps: Sequence[int]
    values: Sequence[float]


def running_mean(values: Sequence[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _draw_panel(curve: Curve) -> Image.Image:
    width, height = PANEL_SIZE
    left, top, right, bottom = MARGIN
    panel = Image.new("RGB", PANEL_SIZE, "white")
    draw = ImageDraw.Draw(panel)
    font = ImageFont.load_default()
    values = [v for v in curve.values if v > 0 and math.isfinite(v)]
    if not values:
        draw.text((left, top), f"{curve.title}: no data", fill=AXIS_COLOUR, font=font)
        return panel
    log_scale = max(values) / min(values) > 10
    transform = (lambda v: math.log10(v)) if log_scale else (lambda v: v)
    y_low, y_high = transform(min(values)), transform(max(values))
    y_high = y_high if y_high > y_low else y_low + 1e-6
    x_low, x_high = curve.steps[0], max(curve.steps[-1], curve.steps[0] + 1)
    plot_w, plot_h = width - left - right, height - top - bottom

    def point(step: int, value: float) -> tuple[float, float]:
        x = left + (step - x_low) / (x_high - x_low) * plot_w
        y = top + (1 - (transform(value) - y_low) / (y_high - y_low)) * plot_h
        return x, y

    for fraction in (0.0, 0.25, 0.5, 0.75, 1.0):
        y = top + fraction * plot_h
        draw.line([(left, y), (left + plot_w, y)], fill=GRID_COLOUR)
        label_value = y_high - fraction * (y_high - y_low)
        label = f"{10 ** label_value:.3g}" if log_scale else f"{label_value:.3g}"
        draw.text((4, y - 6), label, fill=AXIS_COLOUR, font=font)
    draw.rectangle([left, top, left + plot_w, top + plot_h], outline=AXIS_COLOUR)
    positive = [(s, v) for s, v in zip(curve.steps, curve.values) if v > 0 and math.isfinite(v)]
    draw.line([point(s, v) for s, v in positive], fill=RAW_COLOUR, width=1)
    smooth = running_mean([v for _, v in positive], max(1, len(positive) // 25))
    draw.line([point(s, v) for (s, _), v in zip(positive, smooth)], fill=SMOOTH_COLOUR, width=2)
    draw.text((left, 8), curve.title + (" (log scale)" if log_scale else ""), fill=AXIS_COLOUR, font=font)
    draw.text((left, height - bottom + 8), f"step {x_low}", fill=AXIS_COLOUR, font=font)
    draw.text((left + plot_w - 60, height - bottom + 8), f"step {x_high}", fill=AXIS_COLOUR, font=font)
    return panel


def save_loss_curves(curves: Sequence[Curve], path: str | Path) -> Path:
    """Stack one panel per curve vertically and save the PNG."""
    panels = [_draw_panel(curve) for curve in curves]
    sheet = Image.new("RGB", (PANEL_SIZE[0], PANEL_SIZE[1] * len(panels)), "white")
    for index, panel in enumerate(panels):
        sheet.paste(panel, (0, index * PANEL_SIZE[1]))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
