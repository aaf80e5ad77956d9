"""Shared test helpers: where the official fixtures live, and how to read them."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

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
