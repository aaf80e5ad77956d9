"""Convert an official Infinity `.pth` (transformer or VAE) to `.safetensors`, and print what it is.

    python tools/convert_checkpoint.py infinity_2b_reg.pth            # -> infinity_2b_reg.safetensors
    python tools/convert_checkpoint.py infinity_vae_d32reg.pth out.safetensors

The `.pth` is read with `torch.load(weights_only=True)` (no code runs); the output keeps the official
key layout, so both the official code and this pack load it. Safetensors load faster, memory-map, and
can never carry code, which makes them the better file to share.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from safetensors.torch import save_file  # noqa: E402

from infinity_core.config import transformer_config_from_state_dict, vae_config_from_state_dict  # noqa: E402
from infinity_core.errors import InfinityError  # noqa: E402
from infinity_core.weights import (official_to_internal_transformer, official_to_internal_vae,  # noqa: E402
                                   read_state_dict)

log = logging.getLogger("convert_checkpoint")


def describe(state_dict) -> str:
    """The inferred configuration of a transformer or VAE state dict (official layout)."""
    if any(key.startswith("block_chunks.") for key in state_dict):
        internal, chunks = official_to_internal_transformer(state_dict)
        return f"Infinity transformer: {transformer_config_from_state_dict(internal, block_chunks=chunks)}"
    return f"BSQ VAE: {vae_config_from_state_dict(official_to_internal_vae(state_dict))}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path, nargs="?")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    target = args.target or args.source.with_suffix(".safetensors")
    try:
        state_dict = read_state_dict(args.source)
        log.info("%s", describe(state_dict))
    except InfinityError as err:
        log.error("error: %s", err)
        return 2
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(target), metadata={"format": "pt"})
    log.info("wrote %s (%d tensors)", target, len(state_dict))
    return 0


if __name__ == "__main__":
    sys.exit(main())
