"""ComfyUI entry point of the Infinity node pack; the nodes are in `nodes/`, the engine in `infinity_core/`.

Outside ComfyUI (no `comfy` package to import) this defines no nodes, so the folder can still be imported
and `infinity_core` used on its own.
"""
try:
    import comfy  # noqa: F401  (only present inside ComfyUI)
except ImportError:
    NODE_CLASS_MAPPINGS = {}
    NODE_DISPLAY_NAME_MAPPINGS = {}
else:
    from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
