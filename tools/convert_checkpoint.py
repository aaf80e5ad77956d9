"""Convert an official Infinity `.pth` (transformer or VAE) to `.safetensors`, and print what it is.

    python tools/convert_checkpoint.py infinity_2b_reg.pth            # -> infinity_2b_reg.safetensors
    python tools/convert_checkpoint.py infinity_vae_d32reg.pth out.safetensors
    python tools/convert_checkpoint.py infinity_2b_reg.pth --overwrite   # replace an existing .safetensors

An existing output is kept unless --overwrite is given, and the output may never be the input (or one of
its shards). The file is written to a temporary name in the output folder and renamed into place, so an
interrupted run leaves no half-written output. The `.pth` is read with `torch.load(weights_only=True)` (no code runs); the output keeps the official
key layout, so both the official code and this pack load it. Safetensors load faster, memory-map, and
can never carry code, which makes them the better file to share.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from safetensors.torch import save_file  # noqa: E402

from infinity_core.config import transformer_config_from_state_dict, vae_config_from_state_dict  # noqa: E402
from infinity_core.errors import InfinityError  # noqa: E402
from infinity_core.weights import (SAFETENSORS_SUFFIX, TensorSource, official_to_internal_transformer,  # noqa: E402
                                   official_to_internal_vae, open_sources, tensors_of)

log = logging.getLogger("convert_checkpoint")


def describe(state_dict) -> str:
    """The inferred configuration of a transformer or VAE state dict (official layout)."""
    if any(key.startswith("block_chunks.") for key in state_dict):
        internal, chunks = official_to_internal_transformer(state_dict)
        return f"Infinity transformer: {transformer_config_from_state_dict(internal, block_chunks=chunks)}"
    return f"BSQ VAE: {vae_config_from_state_dict(official_to_internal_vae(state_dict))}"


def check_target(target: Path, source: Path, overwrite: bool) -> None:
    """Refuse, before the input is read, an output that is the input, is not a .safetensors file, exists
    without `overwrite`, or lies in a folder that does not exist or cannot be written."""
    check_not_input(target, source, [])
    if target.suffix.lower() != SAFETENSORS_SUFFIX:
        raise InfinityError(f"output '{target}' must end in {SAFETENSORS_SUFFIX}")
    if target.is_dir():
        raise InfinityError(f"output '{target}' is a folder; name a .safetensors file")
    if target.exists() and not overwrite:
        raise InfinityError(f"output '{target}' already exists; pass --overwrite to replace it")
    folder = target.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise InfinityError(f"output folder '{folder}' does not exist or cannot be written")


def check_not_input(target: Path, source: Path, sources: list[TensorSource]) -> None:
    """The output may not be the input, one of its shards (once `sources` are open), or a link to either."""
    inputs = {os.path.realpath(src.path) for src in sources} | {os.path.realpath(source)}
    if os.path.realpath(target) in inputs:
        raise InfinityError(f"output '{target}' is the input file itself; name another output file")


def write_atomically(tensors: dict, target: Path) -> None:
    """Write to a temporary file next to `target`, then rename it over `target` (one step on POSIX and Windows)."""
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, temporary, metadata={"format": "pt"})
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path, nargs="?", help="output .safetensors (default: the source's name)")
    parser.add_argument("--overwrite", action="store_true", help="replace the output if it exists")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    target = args.target or args.source.with_suffix(SAFETENSORS_SUFFIX)
    try:
        check_target(target, args.source, args.overwrite)
        sources = open_sources(args.source)
        check_not_input(target, args.source, sources)
        state_dict = tensors_of(sources)
        log.info("%s", describe(state_dict))
        write_atomically(state_dict, target)
    except (InfinityError, OSError) as err:
        log.error("error: %s", err)
        return 2
    log.info("wrote %s (%d tensors)", target, len(state_dict))
    return 0


if __name__ == "__main__":
    sys.exit(main())
