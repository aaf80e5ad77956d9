"""Seconds on the clock of the device that does the work, for timing scales (previews, the bench).

On a CPU the work is done when the call returns: `time.perf_counter`. On CUDA a call returns once its
kernels are queued, so the host's clock would time the queueing; there a reading records a CUDA event on
the current stream and waits for it, and returns its time since the clock's first event: the work queued
before the reading is done and counted.
"""
from __future__ import annotations

import time

import torch


class DeviceClock:
    """`clock()` -> seconds; only differences between readings of one clock mean anything."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.origin: torch.cuda.Event | None = None

    def __call__(self) -> float:
        if self.device.type != "cuda":
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record(torch.cuda.current_stream(self.device))
        event.synchronize()
        if self.origin is None:
            self.origin = event
        return self.origin.elapsed_time(event) / 1000.0
