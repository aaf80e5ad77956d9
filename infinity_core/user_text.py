"""Quoting what a user typed or pasted, bounded, for error messages, warnings and logs.

A prompt or a setting can be megabytes long (a paste gone wrong); a message echoes at most `MAX_QUOTED`
characters of it, says how long the whole is, and shows control characters (newlines, tabs) escaped so a
message stays on one line.
"""
from __future__ import annotations

MAX_QUOTED = 60


def quoted(value: object, limit: int = MAX_QUOTED) -> str:
    """`value` in single quotes, at most `limit` characters of it; a longer text ends in '...' and its length.
    Anything but a string is shown by its repr, bounded the same way."""
    text = value if isinstance(value, str) else repr(value)
    shown = text if len(text) <= limit else text[:max(1, limit - 3)] + "..."
    shown = "".join(char if char.isprintable() else repr(char)[1:-1] for char in shown)
    suffix = f" ({len(text)} characters)" if len(text) > limit else ""
    return f"'{shown}'{suffix}" if isinstance(value, str) else f"{shown}{suffix}"
