"""Score prompt adherence of the demo model (or any shapes-trained model) on held-out prompts.

    python tools/score_adherence.py --prompts 200

Generates one image per held-out prompt at cfg 1 and at cfg 3 (the other settings are the core's
defaults, at the demo's 0.06M pixels) through the public pipeline, scores each with training/detector.py and
prints a table of per-attribute accuracy. A last column scores the VAE's own reconstructions of the same
scenes: what a perfect transformer could reach with this VAE.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from infinity_core.cli import DEMO_TEXT_ENCODER, DEMO_TRANSFORMER, DEMO_VAE  # noqa: E402
from infinity_core.loading import load_vae  # noqa: E402
from infinity_core.pipeline import InfinityPipeline  # noqa: E402
from training.adherence import (ATTRIBUTES, demo_sampling, evaluate, format_table,  # noqa: E402
                                reconstruction_accuracy)
from training.shapes import heldout_specs  # noqa: E402

log = logging.getLogger("score_adherence")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=200, help="number of held-out prompts")
    parser.add_argument("--cfg", type=float, nargs="+", default=[1.0, 3.0], help="guidance values to compare")
    parser.add_argument("--tau", type=float, help="default: the core's")
    parser.add_argument("--top-k", type=int, help="default: the core's")
    parser.add_argument("--top-p", type=float, help="default: the core's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--transformer", type=Path, default=DEMO_TRANSFORMER)
    parser.add_argument("--vae", type=Path, default=DEMO_VAE)
    parser.add_argument("--text-encoder", type=Path, default=DEMO_TEXT_ENCODER)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    pipe = InfinityPipeline.from_files(args.transformer, args.vae, args.text_encoder, device="cpu")
    specs = heldout_specs(args.prompts)
    reports = []
    for cfg in args.cfg:
        started = time.perf_counter()
        overrides = {"tau": args.tau, "top_k": args.top_k, "top_p": args.top_p, "seed": args.seed}
        settings = demo_sampling(cfg, **{name: value for name, value in overrides.items() if value is not None})
        reports.append(evaluate(pipe, specs, settings))
        log.info("cfg %g: %d images in %.0f s", cfg, len(specs), time.perf_counter() - started)
    ceiling = reconstruction_accuracy(load_vae(args.vae, "cpu"), specs, seed=args.seed)
    print(format_table(reports, len(specs)))
    print("VAE reconstructions of the same scenes (the VAE's ceiling): "
          + ", ".join(f"{name} {ceiling[name]:.1%}" for name in ATTRIBUTES))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
