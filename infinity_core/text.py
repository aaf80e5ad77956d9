"""Text conditions: T5 features of one or more prompts, packed without padding.

Mirrors what FoundationVision/Infinity `tools/run_infinity.py:encode_prompt` hands the model: the
valid (unpadded) rows of each prompt's `last_hidden_state`, concatenated, plus their lengths. The
model pads them per batch when it needs a rectangular tensor. `load_text_encoder` (T5 through
transformers) lives in `text_encoder.py` so that this module never imports transformers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from .errors import InfinityError


@dataclass(frozen=True)
class TextCondition:
    """Packed text features of a batch of prompts."""

    features: torch.Tensor        # [sum(lengths), Ct5] float32
    lengths: tuple[int, ...]      # tokens per prompt (including T5's </s>)

    def __post_init__(self):
        if self.features.ndim != 2:
            raise InfinityError(f"text features must be [tokens, channels], got shape {tuple(self.features.shape)}")
        if not self.lengths or min(self.lengths) < 1:
            raise InfinityError(f"every prompt needs at least one token, got lengths {self.lengths}")
        if sum(self.lengths) != self.features.shape[0]:
            raise InfinityError(f"lengths {self.lengths} do not add up to the {self.features.shape[0]} feature rows")

    def check_finite(self, name: str) -> None:
        """Refuse features holding NaN or infinity (a broken or overflowing text encoder) before any sampling."""
        if not bool(torch.isfinite(self.features).all()):
            raise InfinityError(f"{name}: the text features hold NaN or infinite values, so every image would be "
                                "noise; the text encoder's output is broken (in float16, load it in float32 or "
                                "bfloat16)")

    @classmethod
    def from_features(cls, features: Sequence[torch.Tensor]) -> "TextCondition":
        """From one [len_i, Ct5] tensor per prompt (e.g. precomputed T5 outputs at the valid positions)."""
        if not features:
            raise InfinityError("TextCondition.from_features needs at least one [len, channels] tensor")
        channels = {f.shape[-1] for f in features}
        if any(f.ndim != 2 for f in features) or len(channels) != 1:
            raise InfinityError("TextCondition.from_features takes [len, channels] tensors with equal channels, got "
                                f"{[tuple(f.shape) for f in features]}")
        return cls(torch.cat([f.float() for f in features]), tuple(int(f.shape[0]) for f in features))

    @property
    def batch_size(self) -> int:
        return len(self.lengths)

    @property
    def channels(self) -> int:
        return self.features.shape[-1]

    @property
    def cu_seqlens(self) -> torch.Tensor:
        """[B + 1] int32 offsets of each prompt in `features` (flash-attn's varlen convention)."""
        return F.pad(torch.tensor(self.lengths, dtype=torch.int32).cumsum(0, dtype=torch.int32), (1, 0))

    def split(self) -> list[torch.Tensor]:
        """One [len_i, Ct5] tensor per prompt."""
        return list(self.features.split(self.lengths))

    def to(self, device: torch.device | str) -> "TextCondition":
        return TextCondition(self.features.to(device), self.lengths)

    def repeat_each(self, times: int) -> "TextCondition":
        """Each prompt `times` times in a row: [a, b] -> [a, a, b, b] for times = 2."""
        return TextCondition.from_features([f for f in self.split() for _ in range(times)])

    def concat(self, other: "TextCondition") -> "TextCondition":
        """This batch followed by `other` (conditional half, then unconditional half)."""
        if other.channels != self.channels:
            raise InfinityError(f"cannot batch text features of {self.channels} and {other.channels} channels")
        return TextCondition(torch.cat([self.features, other.features.to(self.features)]), self.lengths + other.lengths)

    def padded(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """([B, Lmax, Ct5] zero-padded features, [B, 1, 1, Lmax] bool attention mask or None if no padding)."""
        longest = max(self.lengths)
        rows = [F.pad(f, (0, 0, 0, longest - f.shape[0])) for f in self.split()]
        if min(self.lengths) == longest:
            return torch.stack(rows), None
        positions = torch.arange(longest, device=self.features.device)
        mask = positions[None, :] < torch.tensor(self.lengths, device=self.features.device)[:, None]
        return torch.stack(rows), mask[:, None, None, :]
