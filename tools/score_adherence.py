"""Score prompt adherence of the demo model (or any shapes-trained model) on held-out prompts, per size.

    python tools/score_adherence.py --prompts 200 --pairs 50

Generates one image per held-out prompt at each size (default: 1:1 at 0.06M and 0.25M, 16:9 and 2:3 at
0.06M, the demo issue's table) and each cfg (default 3; the other settings are the core's defaults)
through the public pipeline, scores each with training/detector.py and prints a table of per-attribute
accuracy, with a row for two-object prompts (both objects in their cells). The VAE's own reconstructions
of the same scenes (what a perfect transformer could reach with this VAE) are scored per size below it.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from infinity_core.model_files import add_model_arguments  # noqa: E402
from infinity_core.loading import load_vae  # noqa: E402
from infinity_core.pipeline import InfinityPipeline  # noqa: E402
from training.adherence import (ATTRIBUTES, ImageSize, column_name, demo_sampling, evaluate, evaluate_pairs,  # noqa: E402
                                format_table, reconstruction_accuracy)
from training.shapes import heldout_pairs, heldout_specs  # noqa: E402

log = logging.getLogger("score_adherence")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=200, help="number of held-out prompts")
    parser.add_argument("--pairs", type=int, default=50, help="number of held-out two-object prompts (0: none)")
    parser.add_argument("--sizes", nargs="+", type=ImageSize.parse,
                        default=[ImageSize.parse(size) for size in ("1:1@0.06M", "1:1@0.25M", "16:9@0.06M", "2:3@0.06M")],
                        help="ASPECT@PIXELS per column, aspect as width:height (default: %(default)s)")
    parser.add_argument("--cfg", type=float, nargs="+", default=[3.0], help="guidance values to compare")
    parser.add_argument("--tau", type=float, help="default: the core's")
    parser.add_argument("--top-k", type=int, help="default: the core's")
    parser.add_argument("--top-p", type=float, help="default: the core's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    add_model_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    pipe = InfinityPipeline.from_files(args.transformer, args.vae, args.text_encoder, device="cpu")
    specs = heldout_specs(args.prompts)
    pairs = heldout_pairs(args.pairs) if args.pairs else []
    reports, pair_scores = [], []
    for size in args.sizes:
        for cfg in args.cfg:
            started = time.perf_counter()
            overrides = {"tau": args.tau, "top_k": args.top_k, "top_p": args.top_p, "seed": args.seed}
            settings = demo_sampling(cfg, h_div_w=size.h_div_w, pixels=size.pixels,
                                     **{name: value for name, value in overrides.items() if value is not None})
            reports.append(evaluate(pipe, specs, settings))
            pair_scores.append(evaluate_pairs(pipe, pairs, settings) if pairs else 0.0)
            log.info("%s: %d images in %.0f s", column_name(settings), len(specs) + len(pairs),
                     time.perf_counter() - started)
    print(format_table(reports, len(specs), pair_scores if pairs else None, len(pairs)))
    vae = load_vae(args.vae, "cpu")
    for size in args.sizes:
        ceiling = reconstruction_accuracy(vae, specs, seed=args.seed, pixels=size.pixels, h_div_w=size.h_div_w)
        print(f"VAE reconstructions at {size} (the VAE's ceiling): "
              + ", ".join(f"{name} {ceiling[name]:.1%}" for name in ATTRIBUTES))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
