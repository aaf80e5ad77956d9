"""What every node schema of the pack shares: the category, and `search_aliases` where the running
ComfyUI's `io.Schema` has that field (it is newer than the oldest ComfyUI the pack supports)."""
from __future__ import annotations

import dataclasses

from comfy_api.latest import io

CATEGORY = "Infinity"
SCHEMA_HAS_SEARCH_ALIASES = "search_aliases" in {f.name for f in dataclasses.fields(io.Schema)}
COMMON_ALIASES = ("Infinity", "VAR", "bitwise", "autoregressive")


def node_schema(*, search_aliases: tuple[str, ...] = (), **fields) -> io.Schema:
    """An `io.Schema` in the Infinity category; the common aliases plus the node's own are passed when
    this ComfyUI's Schema accepts them."""
    if SCHEMA_HAS_SEARCH_ALIASES:
        fields["search_aliases"] = [*COMMON_ALIASES, *search_aliases]
    return io.Schema(category=CATEGORY, **fields)
