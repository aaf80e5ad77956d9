"""The worker of a batch job: the models loaded once, then device batches of rows in, images out.

Each image is the one its row gives alone: every prompt (and negative) is encoded on its own, image i
draws from its row's seed (`generate(..., image_seeds=...)`), and each image is decoded on its own. The
transformer runs the rows of a device batch together, which on the CPU gives the same logits as one row
at a time (tests/test_batch.py checks the bytes); on CUDA that is not measured here
(bench/bench_batch.py reports it on any device).

On the CPU the decoder runs on one thread: its GroupNorm on channels-last tensors sums in an order that
depends on the thread count (measured on the demo VAE: 1 vs 2 threads moves 0.1% of the pixel values by
1), and a worker's thread count is the machine's. The transformer's result does not depend on it.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Sequence

import numpy as np
import torch

from ..devices import resolve_device
from ..memory import check_fits
from ..pipeline import InfinityPipeline, to_uint8
from ..text import TextCondition
from ..model_files import ModelFiles
from .rows import BatchRow

log = logging.getLogger(__name__)


def device_batches(rows: Sequence[BatchRow], rows_per_batch: int) -> list[list[BatchRow]]:
    """Rows of equal `batch_key` in groups of at most `rows_per_batch`, in list order within a group."""
    groups: dict[tuple, list[BatchRow]] = {}
    for row in rows:
        groups.setdefault(row.batch_key, []).append(row)
    return [group[start:start + rows_per_batch] for group in groups.values()
            for start in range(0, len(group), rows_per_batch)]


@contextlib.contextmanager
def one_thread_on_cpu(device: torch.device):
    """torch's CPU ops on one thread for the block (on another device nothing changes)."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class RowRenderer:
    """Loads the three models once (on `device`, default the best this machine has) and draws batches."""

    def __init__(self, models: ModelFiles, device: str | None = None, threads: int | None = None):
        if threads is not None:
            torch.set_num_threads(threads)
        self.pipe = InfinityPipeline.from_files(models.transformer, models.vae, models.text_encoder,
                                                device=resolve_device(device))

    def render(self, rows: Sequence[BatchRow]) -> list[np.ndarray]:
        """The rows' images, uint8 [H, W, 3] each; the rows must share one `batch_key`."""
        first = rows[0]
        if any(row.batch_key != first.batch_key for row in rows):
            raise ValueError("a device batch takes rows of one batch_key (see device_batches)")
        pipe = self.pipe
        check_fits(pipe.transformer, pipe.vae, first.config, prompts=len(rows))
        cond = self._encode([row.prompt for row in rows])
        negative = self._encode([row.negative for row in rows]) if first.negative else None
        result = pipe.sample(cond, negative, config=first.config, image_seeds=[row.config.seed for row in rows])
        with one_thread_on_cpu(pipe.transformer.device):
            return [to_uint8(pipe.decode(result, slice(i, i + 1)))[0].numpy() for i in range(len(rows))]

    def _encode(self, prompts: list[str]) -> TextCondition:
        """Each prompt encoded alone (padding in a batched encode could move the features by a rounding)."""
        return TextCondition.from_features([self.pipe.encode(prompt).features for prompt in prompts])
