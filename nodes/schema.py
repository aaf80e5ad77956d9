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


def advanced(widget: io.Input) -> io.Input:
    """`widget`, marked as an input for experiments: frontends 1.5x fold it away under the node's "advanced"
    toggle (Nodes 2.0), older ones show it as any other. The widget stays in the node, so saved workflows keep
    its value in its place. Set through `extra_dict`, which every V3 input merges into its definition."""
    widget.extra_dict["advanced"] = True
    return widget
