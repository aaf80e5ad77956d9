"""Small training utilities shared by both stages: the learning-rate schedule and the loss log."""
from __future__ import annotations

import math
from dataclasses import dataclass, field


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, peak: float, floor_ratio: float = 0.05) -> float:
    """Linear warm-up to `peak`, then cosine decay to `floor_ratio * peak` at the last step."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps - 1)
    return peak * (floor_ratio + (1 - floor_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


@dataclass
class LossLog:
    """Per-step losses of one training stage: the total, and named parts."""

    steps: list[int] = field(default_factory=list)
    total: list[float] = field(default_factory=list)
    parts: dict[str, list[float]] = field(default_factory=dict)

    def append(self, step: int, total: float, **parts: float) -> None:
        self.steps.append(step)
        self.total.append(total)
        for name, value in parts.items():
            self.parts.setdefault(name, []).append(value)

    def tail_mean(self, fraction: float = 0.1) -> float:
        """Mean total loss over the last `fraction` of the steps."""
        count = max(1, int(len(self.total) * fraction))
        return sum(self.total[-count:]) / count
