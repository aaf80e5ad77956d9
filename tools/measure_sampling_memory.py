"""Sampling + decode memory: the estimate (`memory.run_memory`: `sampling_memory` + `decode_memory`) against
the peak RSS a real generation and decode add, on the bench model (bench/README.md).

    python tools/measure_sampling_memory.py                      # 0.06M, 0.25M, 1M; cfg 3 and cfg 1
    python tools/measure_sampling_memory.py --pixels 0.25M --threads 2

Each case runs in a fresh process: load the bench transformer and VAE (fp32, CPU fast path), generate and
decode once at 0.06M without guidance (so allocator pools and oneDNN's primitives exist, as in a server that
has run before; `--cold` leaves this out), reset the peak RSS (/proc/self/clear_refs), then generate and decode the case; the rise of
the peak above the RSS before it is what the estimate must cover.
"""
from __future__ import annotations

import argparse
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


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def measure(pixels: str, cfg: float, threads: int, warm_up: bool) -> dict:
    """One case in this process: {"measured": bytes above the RSS before it, "estimate": bytes}."""
    import torch
    from safetensors.torch import load_file

    from infinity_core import TextCondition, generate, load_transformer, load_vae
    from infinity_core.memory import run_memory
    from infinity_core.sampling_config import SamplingConfig

    torch.set_num_threads(threads)
    model = load_transformer(BENCH_DIR / "infinity_bench_d8c512.safetensors", "cpu", torch.float32)
    vae = load_vae(BENCH_DIR / "vae_bench.safetensors", "cpu", torch.float32, with_encoder=False)
    cond = TextCondition.from_features([load_file(str(BENCH_DIR / "bench_text_features.safetensors"))["kv_compact"]])

    def run(pixels: str, cfg: float) -> None:
        result = generate(model, cond, pixels=pixels, cfg=cfg, tau=0.5, top_k=900, top_p=0.97, seed=0)
        with torch.inference_mode():
            vae.decode(result.codes)

    if warm_up:
        run("0.06M", 1.0)
    before = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")      # the peak (VmHWM) starts again at the current RSS
    run(pixels, cfg)
    measured = _status("VmHWM") - before
    estimate = run_memory(model, vae, SamplingConfig(pixels=pixels, cfg=cfg))
    return {"measured": measured, "estimate": estimate}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pixels", nargs="+", default=list(PIXELS))
    parser.add_argument("--cfg", nargs="+", type=float, default=list(CFGS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cold", action="store_true", help="no warm-up generation before the case")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.pixels[0], args.cfg[0], args.threads, not args.cold)))
        return 0
    print(f"{'pixels':>7} {'cfg':>4} {'measured MiB':>13} {'estimate MiB':>13} {'estimate / measured':>20}")
    for pixels in args.pixels:
        for cfg in args.cfg:
            out = subprocess.run([sys.executable, __file__, "--child", "--pixels", pixels, "--cfg", str(cfg),
                                  "--threads", str(args.threads), *(["--cold"] if args.cold else [])], capture_output=True, text=True, check=True)
            case = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{pixels:>7} {cfg:>4g} {case['measured'] / MiB:>13.1f} {case['estimate'] / MiB:>13.1f} "
                  f"{case['estimate'] / case['measured']:>20.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
