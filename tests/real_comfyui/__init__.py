"""The pack inside a real ComfyUI server and its real frontends (see suite.py)."""
