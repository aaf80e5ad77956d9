"""Stand-in for `comfy_api.latest`: the V3 node API (`io`, `ui`) and `ComfyExtension`."""
from __future__ import annotations

from abc import ABC, abstractmethod

from . import _io as io
from . import _ui as ui


class ComfyExtension(ABC):
    async def on_load(self) -> None:
        """Called once when the extension is loaded."""

    @abstractmethod
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        """The node classes the extension provides."""


__all__ = ["ComfyExtension", "io", "ui"]
