"""Several ComfyUI workers with the pack (as ComfyUI-Distributed or SwarmUI's multi-backend queue run them):
the same API workflow and seed give the same PNG bytes on any of them, in whatever order each one takes its
jobs. Two server processes on one machine, with the same settings (see suite.py)."""
from __future__ import annotations

import copy

from .suite import BASIC_API, api_workflow, sampler_inputs, serve

SEEDS = (7, 1234)


def _with_seed(seed: int) -> dict:
    prompt = copy.deepcopy(api_workflow(BASIC_API))
    sampler_inputs(prompt)["seed"] = seed
    return prompt


def _png_bytes(server, prompt_id: str) -> list[bytes]:
    entry = server.wait(prompt_id)
    assert entry["status"]["status_str"] == "success", entry["status"]
    return [png for _, png in server.image_files(entry)]


def test_two_workers_give_the_same_bytes_for_the_same_workflow_and_seed():
    with serve(["--preview-method", "none"]) as first, serve(["--preview-method", "none"]) as second:
        # both queued before either is read, in opposite orders: the workers run side by side
        first_ids = [first.queue(_with_seed(seed)) for seed in SEEDS]
        second_ids = [second.queue(_with_seed(seed)) for seed in reversed(SEEDS)]
        on_first = [_png_bytes(first, prompt_id) for prompt_id in first_ids]
        on_second = [_png_bytes(second, prompt_id) for prompt_id in reversed(second_ids)]
    assert all(len(images) == 1 for images in on_first + on_second)
    assert on_first == on_second
    assert on_first[0] != on_first[1]           # the seed does change the image: the comparison means something
