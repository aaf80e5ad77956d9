"""What the sampler's per-scale previews cost: generation time with and without them, as a table.

    python tools/preview_overhead.py                  # the bench model at 1M and the demo model at 0.06M
    python tools/preview_overhead.py --runs 5 --cases demo

Each case alternates runs without previews, with the previews the ComfyUI sampler sends (ScalePreviews
at PREVIEW_SHARE, the node's own code path short of the JPEG), and with a preview after every scale (the
budget opened to the whole run: what a frame at every scale would cost). The table gives median times,
the overhead against no previews, the frames rendered, and the frames' own share of each run (their
rendering time over the run's time: the figure that a busy machine disturbs least). Bench model:
../shared/bench (or INFINITY_BENCH_DIR), the published 2B's structure at depth 8; demo model: models/
of this repository.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infinity_core import TextCondition, generate, load_text_encoder, load_transformer, load_vae  # noqa: E402
from infinity_core.preview import PREVIEW_SHARE, ScalePreviews  # noqa: E402
from infinity_core.sampling_config import SamplingConfig  # noqa: E402

BENCH_DIR = Path(os.environ.get("INFINITY_BENCH_DIR", ROOT.parent / "shared" / "bench"))
MODELS = ROOT / "models"


def bench_case():
    model = load_transformer(BENCH_DIR / "infinity_bench_d8c512.safetensors", "cpu", torch.float32)
    vae = load_vae(BENCH_DIR / "vae_bench.safetensors", "cpu", torch.float32, with_encoder=False)
    cond = TextCondition.from_features([load_file(str(BENCH_DIR / "bench_text_features.safetensors"))["kv_compact"]])
    return "bench d8c512, 1M", model, vae, cond, "1M"


def demo_case():
    model = load_transformer(MODELS / "infinity" / "infinity_demo_shapes.safetensors", "cpu", torch.float32)
    vae = load_vae(MODELS / "infinity" / "infinity_demo_shapes_vae.safetensors", "cpu", torch.float32,
                   with_encoder=False)
    encoder = load_text_encoder(MODELS / "text_encoders" / "t5_demo_shapes")
    cond = encoder.encode("a red circle at the top left on a blue background")
    return "demo, 0.06M", model, vae, cond, "0.06M"


def timed_run(model, vae, cond, pixels: str, share: float | None, seed: int) -> tuple[float, int, float]:
    """(seconds, frames, seconds spent on frames) of one generation; share None: no previews."""
    previews = None if share is None else ScalePreviews(vae, SamplingConfig(pixels=pixels).schedule, share)

    def callback(done: int, total: int, codes: torch.Tensor) -> None:
        if previews is not None:
            previews(done, total, codes)
    started = time.perf_counter()
    generate(model, cond, pixels=pixels, seed=seed, callback=callback)
    seconds = time.perf_counter() - started
    return (seconds, 0, 0.0) if previews is None else (seconds, previews.frames, previews.seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs per variant (alternated)")
    parser.add_argument("--cases", nargs="+", choices=("bench", "demo"), default=["bench", "demo"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    variants = {"no preview": None, f"sampler ({PREVIEW_SHARE:.0%} budget)": PREVIEW_SHARE, "every scale": 1.0}
    print(f"threads {args.threads}, {args.runs} runs per variant, median seconds (range)")
    print("| case | variant | generation s | overhead | frames | frame s | frames' share |")
    print("|---|---|---|---|---|---|---|")
    for name in args.cases:
        label, model, vae, cond, pixels = {"bench": bench_case, "demo": demo_case}[name]()
        timed_run(model, vae, cond, pixels, 1.0, seed=0)                       # warm-up: allocations, caches
        results = {variant: [] for variant in variants}
        for run in range(args.runs):
            for variant, share in variants.items():
                results[variant].append(timed_run(model, vae, cond, pixels, share, seed=run))
        base = statistics.median(seconds for seconds, _, _ in results["no preview"])
        for variant, runs in results.items():
            seconds = [s for s, _, _ in runs]
            median = statistics.median(seconds)
            frames = statistics.median(f for _, f, _ in runs)
            frame_s = statistics.median(c / f for _, f, c in runs if f) if any(f for _, f, _ in runs) else 0.0
            overhead = "" if variant == "no preview" else f"{(median / base - 1):+.1%}"
            share = statistics.median(c / s for s, _, c in runs)
            print(f"| {label} | {variant} | {median:.3f} ({min(seconds):.3f}-{max(seconds):.3f}) | {overhead} | "
                  f"{frames:g} | {frame_s:.3f} | {share:.1%} |")


if __name__ == "__main__":
    main()
