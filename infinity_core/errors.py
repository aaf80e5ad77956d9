"""The one exception type the library raises for bad files and bad arguments.

Messages name the file or argument at fault and say what is valid, so a UI (the ComfyUI nodes, the
CLI) can show them to a user as they are.
"""


class InfinityError(ValueError):
    """A user-facing error: a missing, broken or mismatched file, or an invalid argument."""
