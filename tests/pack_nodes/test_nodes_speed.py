"""The sampler's speed widget and Infinity Compile Model, through the nodes on the stand-in model."""
from __future__ import annotations

import pytest
import torch

from infinity_core import InfinityError
from .node_env import run, sample


def test_the_speed_widget_reaches_generate(registry, models):
    """balanced through the node gives other codes than exact, the same for the same seed."""
    exact = sample(registry, models).codes
    balanced = sample(registry, models, speed="balanced").codes
    assert not torch.equal(exact, balanced)
    assert torch.equal(sample(registry, models, speed="balanced").codes, balanced)


def test_a_bad_speed_is_refused_at_validation(registry):
    message = registry["InfinityBitwiseSampler"].validate_inputs(
        seed=0, cfg=3.0, tau=0.5, top_k=900, top_p=0.97, aspect_ratio="1:1", pixels="0.06M", batch_size=1,
        speed="turbo")
    assert isinstance(message, str) and message.startswith("speed must be one of")


def test_compile_refuses_the_prepacked_cpu_model_by_name(registry, models):
    with pytest.raises(InfinityError, match="^model '.*': compile: .*prepacked"):
        run(registry, "InfinityCompileModel", model=models["model"], backend="inductor")
