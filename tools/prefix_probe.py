"""Where a shapes model decides what it draws: its VAE and its transformer, given each scene's first k scales.

    python tools/prefix_probe.py --scenes 30 --size 1:1@0.06M

For held-out scenes, per k: the VAE decoding the scene's first k scales alone ("VAE"), and the transformer
drawing the rest for the scene's caption with those k scales known ("drawn"; k = 0 is plain text to image).
Where "drawn" falls below "VAE" at the same k, the transformer's later scales lose what its earlier ones
hold. training/prefix_probe.py says more.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from infinity_core.model_files import add_model_arguments  # noqa: E402
from infinity_core.pipeline import InfinityPipeline  # noqa: E402
from infinity_core.schedules import get_schedule  # noqa: E402
from training.adherence import ImageSize, demo_sampling  # noqa: E402
from training.prefix_probe import format_prefix_table, prefix_table  # noqa: E402
from training.shapes import heldout_specs  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=30, help="number of held-out scenes")
    parser.add_argument("--size", type=ImageSize.parse, default=ImageSize("1:1", "0.06M"),
                        help="ASPECT@PIXELS, aspect as width:height (default: %(default)s)")
    parser.add_argument("--scales", type=int, nargs="+",
                        help="values of k (default: 0, then 3 up to the number of scales)")
    parser.add_argument("--cfg", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=2)
    add_model_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    num_scales = get_schedule(args.size.h_div_w, args.size.pixels).num_scales
    scales = args.scales or [0, *range(3, num_scales + 1)]
    if not all(0 <= k <= num_scales for k in scales):
        parser.error(f"--scales: each k must be in 0..{num_scales} (the scales of {args.size}), got {scales}")
    pipe = InfinityPipeline.from_files(args.transformer, args.vae, args.text_encoder, device="cpu", with_encoder=True)
    settings = demo_sampling(args.cfg, h_div_w=args.size.h_div_w, pixels=args.size.pixels)
    rows = prefix_table(pipe, heldout_specs(args.scenes), settings, scales)
    print(f"{args.scenes} held-out scenes at {args.size}, cfg {args.cfg:g}: the first k scales are the scene's own")
    print(format_prefix_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
