"""Stand-in for `comfy_api.latest._ui`: the UI outputs a node can return next to its results."""
from __future__ import annotations


class PreviewText:
    """Text shown on the node once it ran (ComfyUI sends `{"text": (value,)}` to the frontend)."""

    def __init__(self, value: str, **kwargs):
        self.value = value

    def as_dict(self) -> dict:
        return {"text": (self.value,)}
