"""Shared test helpers: where the official fixtures live, how to read them, how to run their cases."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

import torch

from infinity_core import generate, load_transformer, load_vae
from infinity_core.text import TextCondition

FIXTURES = Path(__file__).parent / "fixtures" / "infinity_tiny"


@pytest.fixture(scope="session")
def manifest() -> dict:
    return json.loads((FIXTURES / "manifest.json").read_text())


@pytest.fixture(scope="session")
def fixture_tensors():
    """fixture_tensors(name) -> dict of tensors of FIXTURES/name (cached per session)."""
    cache: dict[str, dict] = {}

    def read(name: str) -> dict:
        if name not in cache:
            cache[name] = load_file(str(FIXTURES / name))
        return cache[name]
    return read


@pytest.fixture(scope="session")
def prompt_features(manifest, fixture_tensors) -> dict:
    """The fixture's prompts -> their T5 features [len, C] (the official `kv_compact`)."""
    text = fixture_tensors("text_encoder.safetensors")
    prompts = manifest["text_encoder"]["prompts"]
    return {info["prompt"]: text[f"{key}_kv_compact"] for key, info in prompts.items()}


@pytest.fixture(scope="session")
def transformer():
    """The tiny fixture transformer in fp32 (on the CPU fast path). Tests must not change it."""
    return load_transformer(FIXTURES / "infinity_tiny.safetensors", "cpu", torch.float32)


@pytest.fixture(scope="session")
def vae():
    """The tiny fixture VAE, encoder included."""
    return load_vae(FIXTURES / "vae_tiny.safetensors", "cpu", torch.float32)


def _fixture_prompt(fixture_tensors, key: str) -> TextCondition:
    return TextCondition.from_features([fixture_tensors("text_encoder.safetensors")[f"{key}_kv_compact"]])


@pytest.fixture(scope="session")
def fox(fixture_tensors) -> TextCondition:
    """T5 features of the fixture's prompt p1."""
    return _fixture_prompt(fixture_tensors, "p1")


@pytest.fixture(scope="session")
def lighthouse(fixture_tensors) -> TextCondition:
    """T5 features of the fixture's prompt p0."""
    return _fixture_prompt(fixture_tensors, "p0")


def generate_case(transformer, cond, settings: dict):
    """`generate` with a manifest case's official settings."""
    return generate(transformer, cond, h_div_w=settings["h_div_w_template"], pixels=settings["pn"],
                    cfg=settings["cfg"], tau=settings["tau"], top_k=settings["top_k"], top_p=settings["top_p"],
                    seed=settings["g_seed"])
