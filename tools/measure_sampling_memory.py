"""Sampling and decode memory on the bench model (bench/README.md): the estimates (`sampling_memory`,
`decode_memory`) against what a real generation and decode take, in a fresh process per case.

    python tools/measure_sampling_memory.py                      # 0.06M, 0.25M, 1M; cfg 3 and cfg 1
    python tools/measure_sampling_memory.py --pixels 0.25M --cfg 3 --repeat 2

What is measured is what the estimates claim to count: the memory a run allocates besides the loaded
weights (KV cache, activations, logits and sampling buffers, oneDNN's scratch and caches; for the decode its
activations and the image). In each case's own process:
1. load the bench transformer (fp32, CPU fast path) and the bench VAE decoder, then `malloc_trim(0)`, so that
   memory the loading freed is given back and cannot hide what the run allocates;
2. reset the peak RSS (/proc/self/clear_refs), run `generate` (the first run after loading, as in a server
   that has just loaded the model), read the peak (VmHWM);
3. likewise for `vae.decode` of the generated codes (the sampler's state is gone by then, as in ComfyUI, where
   the decode is another node).
measured = peak RSS - RSS before - (file-backed RSS after - before): the rise of the peak, less the library
code the first run pages in (shared, file-backed pages that are no allocation and that no GPU run puts on the
device). Both steps run one after the other, so a whole run needs the larger of the two (`memory.run_memory`).
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BENCH_DIR = Path(os.environ.get("INFINITY_BENCH_DIR", REPO.parent / "shared" / "bench"))
PIXELS = ("0.06M", "0.25M", "1M")
CFGS = (3.0, 1.0)
MiB = 2 ** 20


def _status() -> dict[str, int]:
    """/proc/self/status's memory fields, in bytes."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name.startswith(("Vm", "Rss")):
            fields[name] = int(value.split()[0]) * 1024
    return fields


def _give_back_freed_memory() -> None:
    gc.collect()
    libc = ctypes.util.find_library("c")
    if libc:
        ctypes.CDLL(libc).malloc_trim(0)


def _allocated_during(step) -> int:
    """Peak RSS rise during `step()`, less the file-backed pages it faulted in (see the module docstring)."""
    _give_back_freed_memory()
    before = _status()
    Path("/proc/self/clear_refs").write_text("5")      # the peak (VmHWM) starts again at the current RSS
    step()
    after = _status()
    return after["VmHWM"] - before["VmRSS"] - max(0, after["RssFile"] - before["RssFile"])


def measure(pixels: str, cfg: float, threads: int) -> dict:
    """One case in this process: measured and estimated bytes of the generation and of the decode."""
    import torch
    from safetensors.torch import load_file

    from infinity_core import TextCondition, generate, load_transformer, load_vae
    from infinity_core.sampling_config import SamplingConfig
    from infinity_core.schedules import PIXELS_PER_TOKEN
    from infinity_core.transformer.kv_cache import sampling_memory
    from infinity_core.vae.autoencoder import decode_memory

    torch.set_num_threads(threads)
    model = load_transformer(BENCH_DIR / "infinity_bench_d8c512.safetensors", "cpu", torch.float32)
    vae = load_vae(BENCH_DIR / "vae_bench.safetensors", "cpu", torch.float32, with_encoder=False)
    cond = TextCondition.from_features([load_file(str(BENCH_DIR / "bench_text_features.safetensors"))["kv_compact"]])
    config = SamplingConfig(pixels=pixels, cfg=cfg)
    codes = []

    def sample() -> None:
        result = generate(model, cond, config=config, tau=0.5, top_k=900, top_p=0.97, seed=0)
        codes.append(result.codes)

    def decode() -> None:
        with torch.inference_mode():
            vae.decode(codes[0])

    sampling = _allocated_during(sample)
    decoding = _allocated_during(decode)
    latent_grid = tuple(side * PIXELS_PER_TOKEN // vae.config.downsample for side in config.schedule.final_grid)
    return {"sampling": sampling, "decode": decoding,
            "sampling_estimate": sampling_memory(model.config, config.schedule, 1, config.guided, model.compute_dtype),
            "decode_estimate": decode_memory(vae.config, latent_grid, dtype=vae.dtype)}


def _span(values: list[float], digits: int) -> str:
    """'a' or 'a-b' for sorted values."""
    low, high = f"{values[0]:.{digits}f}", f"{values[-1]:.{digits}f}"
    return low if low == high else f"{low}-{high}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pixels", nargs="+", default=list(PIXELS))
    parser.add_argument("--cfg", nargs="+", type=float, default=list(CFGS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="fresh processes per case (a range is printed)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.pixels[0], args.cfg[0], args.threads)))
        return 0
    print("| pixels | cfg | sampling: measured MiB | estimate MiB | estimate / measured "
          "| decode: measured MiB | estimate MiB | estimate / measured |")
    print("|---|---|---|---|---|---|---|---|")
    for pixels in args.pixels:
        for cfg in args.cfg:
            runs = []
            for _ in range(args.repeat):
                out = subprocess.run([sys.executable, __file__, "--child", "--pixels", pixels, "--cfg", str(cfg),
                                      "--threads", str(args.threads)], capture_output=True, text=True, check=True)
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            cells = []
            for step in ("sampling", "decode"):
                measured = sorted(run[step] / MiB for run in runs)
                estimate = runs[0][f"{step}_estimate"] / MiB
                cells += [_span(measured, 1), f"{estimate:.1f}", _span([estimate / m for m in reversed(measured)], 2)]
            print(f"| {pixels} | {cfg:g} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
