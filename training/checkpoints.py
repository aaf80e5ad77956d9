"""Resumable training: each stage's model, optimizer, random generator and loss log, saved every few steps.

A checkpoint is written to a temporary file and renamed over the last one, so a run killed at any moment
leaves the previous checkpoint whole. Resuming restores the exact state, so a resumed run gives the same
weights as an uninterrupted one. Checkpoints are this trainer's own files, read with `weights_only=True`.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .schedule import LossLog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checkpoints:
    """The folder of a run's checkpoints: one file per stage, `<stage>.pt`."""

    folder: Path

    def path(self, stage: str) -> Path:
        return self.folder / f"{stage}.pt"

    def save(self, stage: str, step: int, modules: nn.Module | dict[str, nn.Module], optimizer: torch.optim.Optimizer,
             generator: torch.Generator, losses: LossLog) -> None:
        """Record that `step` steps of `stage` are done."""
        self.folder.mkdir(parents=True, exist_ok=True)
        state = {"step": step, "modules": {name: m.state_dict() for name, m in _named(modules).items()},
                 "optimizer": optimizer.state_dict(), "generator": generator.get_state(),
                 "losses": {"steps": losses.steps, "total": losses.total, "parts": losses.parts}}
        temporary = self.path(stage).with_suffix(".tmp")
        torch.save(state, temporary)
        os.replace(temporary, self.path(stage))
        log.info("checkpoint: %s after %d steps", self.path(stage), step)

    def resume(self, stage: str, modules: nn.Module | dict[str, nn.Module], optimizer: torch.optim.Optimizer,
               generator: torch.Generator, losses: LossLog) -> int:
        """Restore `stage` from its checkpoint into the given objects; the number of steps done (0 without one)."""
        if not self.path(stage).exists():
            return 0
        state = torch.load(self.path(stage), weights_only=True)
        for name, module in _named(modules).items():
            module.load_state_dict(state["modules"][name])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        losses.steps[:], losses.total[:] = state["losses"]["steps"], state["losses"]["total"]
        losses.parts.clear()
        losses.parts.update(state["losses"]["parts"])
        log.info("resumed %s from %s at step %d", stage, self.path(stage), state["step"])
        return state["step"]


def _named(modules: nn.Module | dict[str, nn.Module]) -> dict[str, nn.Module]:
    return modules if isinstance(modules, dict) else {"model": modules}
