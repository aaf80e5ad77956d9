"""A batch job on this machine: which rows to draw (the plan), the device batches, and the writes.

The driver side (`plan`, `ImageWriter`) is the same with Ray (ray_runner.py): only this process touches
the output folder and the manifest, so a job moves between one machine and a cluster and resumes either way.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from ..errors import InfinityError
from ..output import image_file_bytes, write_atomically
from .manifest import Manifest, RowState
from .render import RowRenderer
from .rows import METADATA_KEY, NAME_SUFFIX, BatchRow, ModelNames, metadata_text

log = logging.getLogger(__name__)

MAX_LISTED = 10     # rows named in a refusal; the rest are counted


@dataclass(frozen=True)
class BatchPlan:
    todo: tuple[BatchRow, ...]      # to draw, in list order
    done: int                       # rows whose image is already there


def plan(rows: Sequence[BatchRow], manifest: Manifest, models: ModelNames, *, overwrite: bool) -> BatchPlan:
    """The rows left to draw; refuses, naming them, rows whose file is not ours, and rows whose settings
    changed since their image was made unless `overwrite`."""
    todo, done, foreign, changed = [], 0, [], []
    for row in rows:
        state = manifest.state(row.name, row.key(models))
        if state is RowState.DONE:
            done += 1
        elif state is RowState.FOREIGN:
            foreign.append(row)
        elif state is RowState.CHANGED and not overwrite:
            changed.append(row)
        else:
            todo.append(row)
    if foreign:
        raise InfinityError(f"{_listed(foreign)} in '{manifest.folder}' not written by this command (or changed "
                            "since); they are never replaced: move them away, rename the rows (a 'name' field), "
                            "or choose another folder")
    if changed:
        raise InfinityError(f"{_listed(changed)} made from other settings (the list or the options changed since); "
                            "pass --overwrite to draw them again, or choose another folder")
    return BatchPlan(tuple(todo), done)


def _listed(rows: Sequence[BatchRow]) -> str:
    names = ", ".join(f"{row.name} (line {row.line})" for row in rows[:MAX_LISTED])
    more = f" and {len(rows) - MAX_LISTED} more" if len(rows) > MAX_LISTED else ""
    return f"{len(rows)} image file(s) {names}{more} {'is' if len(rows) == 1 else 'are'}"


class ImageWriter:
    """Each finished image into the folder: PNG with its row's settings, claimed in the manifest, written
    atomically, then recorded done. `progress(n)` is told of every image."""

    def __init__(self, manifest: Manifest, models: ModelNames, progress: Callable[[int], object]):
        self.manifest, self.models, self.progress = manifest, models, progress
        self.written = 0

    def write(self, row: BatchRow, pixels: np.ndarray) -> None:
        key = row.key(self.models)
        text = {METADATA_KEY: metadata_text(row.record(self.models))}
        data = image_file_bytes(Image.fromarray(pixels), NAME_SUFFIX, text)
        self.manifest.start(row.name, key)
        write_atomically(self.manifest.folder / row.name, data, "batch image")
        self.manifest.finish(row.name, key, data)
        self.written += 1
        self.progress(1)


@dataclass(frozen=True)
class FailedBatch:
    rows: tuple[BatchRow, ...]
    reason: str


def run_local(batches: Sequence[Sequence[BatchRow]], renderer: RowRenderer, writer: ImageWriter) -> list[FailedBatch]:
    """Draw the batches one after another; a batch the engine refuses (InfinityError) is reported and
    the job goes on (its rows stay undone, so a re-run tries them again)."""
    failed = []
    for batch in batches:
        try:
            images = renderer.render(batch)
        except InfinityError as err:
            log.error("error: rows at lines %s: %s", ", ".join(str(row.line) for row in batch), err)
            failed.append(FailedBatch(tuple(batch), str(err)))
            continue
        for row, pixels in zip(batch, images):
            writer.write(row, pixels)
    return failed
