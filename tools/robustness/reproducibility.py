"""Reproducibility on the demo model: the same seed's PNG bytes in two fresh processes, and a batch's images
against single runs."""
from __future__ import annotations

import hashlib
import io
import subprocess
import sys

import torch

from infinity_core import InfinityPipeline, generate, to_pil, to_uint8
from infinity_core.model_files import DEMO_FILES

from .common import REPO

REPORT_SCRIPT = REPO / "tools" / "robustness_report.py"   # its --png-digest mode is the fresh process
DEMO_PROMPT = "a red circle on the left"
DEMO_SEED = 2 ** 63 + 5


def _demo_pipeline() -> InfinityPipeline:
    return InfinityPipeline.from_files(DEMO_FILES.transformer, DEMO_FILES.vae, DEMO_FILES.text_encoder, device="cpu")


def _png_digest(seed: int) -> str:
    """SHA-256 of the PNG the demo model draws for DEMO_PROMPT with `seed` (run in a fresh process)."""
    image = to_pil(_demo_pipeline()(DEMO_PROMPT, pixels="0.06M", seed=seed))[0]
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return hashlib.sha256(buffer.getvalue()).hexdigest()


def png_bytes_across_processes(runs: int = 2) -> list[str]:
    """The PNG digests of `runs` fresh processes drawing the same prompt and seed (all equal when reproducible)."""
    return [subprocess.run([sys.executable, str(REPORT_SCRIPT), "--png-digest", str(DEMO_SEED)], capture_output=True,
                           text=True, check=True).stdout.split()[-1] for _ in range(runs)]


def batch_images_equal_single_runs(batch_size: int = 3) -> list[bool]:
    """Whether image i of a batch with seed s equals (bits and pixels) the single run with seed s + i.
    Images are decoded one at a time, as the CLI, the pipeline and the nodes do (a batched conv sums in
    another order and moves some pixels by one level)."""
    pipe = _demo_pipeline()
    cond = pipe.encode(DEMO_PROMPT)
    batch = generate(pipe.transformer, cond, pixels="0.06M", seed=DEMO_SEED, batch_size=batch_size)
    same = []
    with torch.inference_mode():
        for i in range(batch_size):
            single = generate(pipe.transformer, cond, pixels="0.06M", seed=DEMO_SEED + i)
            bits_equal = all(torch.equal(b[i:i + 1], s) for b, s in zip(batch.bits, single.bits))
            pixels_equal = torch.equal(to_uint8(pipe.vae.decode(batch.codes[i:i + 1])),
                                       to_uint8(pipe.vae.decode(single.codes)))
            same.append(bits_equal and pixels_equal)
    return same
