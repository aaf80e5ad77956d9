"""Benchmark: the shared bench model (2B structure, depth 8, width 512) at 256 / 512 (/ 1024) px.

    python bench/bench_inference.py                    # 256 and 512 px, CPU fp32, 2 threads
    python bench/bench_inference.py --sizes 1024       # add the 1M schedule
    python bench/bench_inference.py --device cuda --dtype bf16
    python bench/bench_inference.py --smoke            # one 256 px run (what CI does)

It goes through the documented API (load_transformer, load_vae, generate, vae.decode); bench/README.md
explains the columns. Each size runs in its own child process (clean peak-RSS numbers). In that process: load,
the first generation + decode (its peak RSS is the one reported, taken before any GEMM probe ran), then per
run the generation loop (per-scale times), the VAE decode, and right after each run an fp32 GEMM (2048^3
torch.mm) so efficiency = model FLOPs / loop time / GEMM rate compares numbers measured under the same machine
conditions. Likewise after each run, memory bandwidth (a read-only pass over a 256 MB tensor) gives the time
one pass over the transformer weights takes, the floor of the small scales; the 1x1 scale's ratio to it is
taken per run (a machine's bandwidth can drift within minutes) and the median reported. Outputs are checked
against the official implementation's bits and image, which come with the bench files (INFINITY_BENCH_DIR,
else shared/bench beside the checkout). Nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from flops import generation_flops  # noqa: E402

DEFAULT_BENCH_DIR = Path(os.environ.get("INFINITY_BENCH_DIR", ROOT.parent / "shared" / "bench"))
SIZE_TO_PIXELS = {256: "0.06M", 512: "0.25M", 1024: "1M"}
log = logging.getLogger("bench")


def rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")      # resets VmHWM to the current RSS
    except OSError:
        log.warning("cannot reset the peak RSS on this system; peak includes loading")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_time(fn, device, reps: int = 5, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gemm_gflops(device: torch.device, dtype: torch.dtype) -> float:
    """The protocol's reference: torch.mm 2048^3 (MKL on a CPU)."""
    a, b = (torch.randn(2048, 2048, device=device, dtype=dtype) for _ in range(2))
    return 2 * 2048 ** 3 / median_time(lambda: a @ b, device) / 1e9


def best_gemm_gflops(device: torch.device) -> float:
    """The fastest fp32 2048^3 GEMM PyTorch offers here: oneDNN with a prepacked operand on a CPU (on AMD
    CPUs MKL's torch.mm reaches well under half of it), torch.mm elsewhere."""
    from infinity_core.transformer.cpu_kernels import onednn_linear_available
    if device.type != "cpu" or not onednn_linear_available():
        return gemm_gflops(device, torch.float32)
    a, b = (torch.randn(2048, 2048) for _ in range(2))
    packed = torch.ops.mkldnn._reorder_linear_weight(b, 2048)
    seconds = median_time(lambda: torch.ops.mkldnn._linear_pointwise(a, packed, None, "none", [], ""), device)
    return 2 * 2048 ** 3 / seconds / 1e9


def read_bandwidth_gbs(device: torch.device) -> float:
    data = torch.ones(64 * 1024 * 1024, device=device)          # 256 MB fp32, larger than any cache
    return data.numel() * 4 / median_time(lambda: data.sum(), device) / 1e9


@dataclass
class CaseResult:
    size: int
    pixels: str
    tokens: int
    load_s: float
    loop_s: float
    setup_s: float
    decode_s: float
    per_scale_s: list
    gflop: float
    gemm_gflops: float
    efficiency: float
    best_gemm_gflops: float
    efficiency_vs_best: float
    weights_mb: float
    bandwidth_gbs: float
    weights_pass_s: float
    first_scale_per_pass: float
    rss_base_mb: float
    rss_peak_gen_mb: float
    peak_above_base_mb: float
    cuda_peak_mb: float
    bits_equal_official: bool | None
    image_max_diff: int | None


def run_case(args) -> CaseResult:
    from safetensors.torch import load_file

    from infinity_core import TextCondition, generate, get_schedule, load_transformer, load_vae

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    settings = json.loads((args.bench_dir / "bench_config.json").read_text())["sampling"]
    pixels = SIZE_TO_PIXELS[args.case]
    rss_base = rss_mb()                                            # interpreter + torch + infinity_core
    started = time.perf_counter()
    # The documented API as a user calls it: on a CPU, load_transformer returns the prepacked fast path.
    model = load_transformer(args.bench_dir / "infinity_bench_d8c512.safetensors", device, dtype,
                             prepack=not args.plain_matmul)
    vae = load_vae(args.bench_dir / "vae_bench.safetensors", device, dtype, with_encoder=False)
    load_s = time.perf_counter() - started
    cond = TextCondition.from_features([load_file(str(args.bench_dir / "bench_text_features.safetensors"))["kv_compact"]])
    schedule = get_schedule(1.0, pixels)
    weights_bytes = sum(p.numel() * p.element_size() for p in model.parameters())

    def one_run():
        stamps = [time.perf_counter()]     # generate() entry, then callbacks: set-up done, each scale done

        def tick(done, total, codes):
            sync(device)
            stamps.append(time.perf_counter())
        result = generate(model, cond, pixels=pixels, cfg=settings["cfg"], tau=settings["tau"], top_k=settings["top_k"],
                          top_p=settings["top_p"], seed=settings["g_seed"], callback=tick)
        decode_start = time.perf_counter()
        with torch.inference_mode():
            image = vae.decode(result.codes)
        sync(device)
        decode_s = time.perf_counter() - decode_start
        intervals = [b - a for a, b in zip(stamps, stamps[1:])]   # set-up, then one per scale
        return result, image, stamps[-1] - stamps[0], decode_s, intervals

    # Peak RSS: of the first generation + decode, measured before any GEMM probe runs (the probes leave
    # oneDNN primitive caches and buffers resident that a generation in ComfyUI or the CLI never has).
    reset_peak_rss()
    first_run = one_run()
    rss_peak = rss_mb("VmHWM")
    for _ in range(args.warmup - 1):
        one_run()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    runs, gemms, best_gemms, bandwidths = [], [], [], []

    def keep(run):   # the run, then the machine's GEMM rates and bandwidth right after it
        runs.append(run)
        gemms.append(gemm_gflops(device, torch.float32))
        best_gemms.append(best_gemm_gflops(device))
        bandwidths.append(read_bandwidth_gbs(device))
    if not args.warmup:
        keep(first_run)
    while len(runs) < args.runs:
        keep(one_run())
    result, image = runs[-1][0], runs[-1][1]
    loop_s = statistics.median(r[2] for r in runs)
    setup_s = statistics.median(r[4][0] for r in runs)
    per_scale = [statistics.median(r[4][i + 1] for r in runs) for i in range(schedule.num_scales)]
    flops = generation_flops(model.config, schedule, cond.lengths[0],
                             guided_scales=schedule.num_scales if settings["cfg"] != 1 else 0)
    gemm, best_gemm, bandwidth = statistics.median(gemms), statistics.median(best_gemms), statistics.median(bandwidths)
    weights_pass_s = weights_bytes / bandwidth / 1e9
    first_scale_per_pass = statistics.median(r[4][1] / (weights_bytes / gbs / 1e9) for r, gbs in zip(runs, bandwidths))
    official = args.bench_dir / f"bench_outputs_official_{pixels}.safetensors"
    bits_equal = image_diff = None
    if official.exists():
        expected = load_file(str(official))
        bits_equal = all(torch.equal(b.cpu(), expected[f"bits_s{i}"]) for i, b in enumerate(result.bits))
        ours = ((image.float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).mul(255).to(torch.uint8)[0].flip(-1).cpu()
        image_diff = int((ours.int() - expected["image_uint8_bgr"].int()).abs().max())
    return CaseResult(
        size=args.case, pixels=pixels, tokens=schedule.num_tokens, load_s=load_s, loop_s=loop_s, setup_s=setup_s,
        decode_s=statistics.median(r[3] for r in runs), per_scale_s=per_scale, gflop=flops.total / 1e9,
        gemm_gflops=gemm, efficiency=flops.total / loop_s / 1e9 / gemm, best_gemm_gflops=best_gemm,
        efficiency_vs_best=flops.total / loop_s / 1e9 / best_gemm, weights_mb=weights_bytes / 2 ** 20,
        bandwidth_gbs=bandwidth, weights_pass_s=weights_pass_s, first_scale_per_pass=first_scale_per_pass,
        rss_base_mb=rss_base,
        rss_peak_gen_mb=rss_peak, peak_above_base_mb=rss_peak - rss_base,
        cuda_peak_mb=torch.cuda.max_memory_allocated() / 2 ** 20 if device.type == "cuda" else float("nan"),
        bits_equal_official=bits_equal, image_max_diff=image_diff)


def print_table(results: list[CaseResult], args) -> None:
    print(f"\nInfinity bench model (depth 8, width 512, d32) on {args.device} {args.dtype}, "
          f"{args.threads} threads, median of {args.runs} runs after {args.warmup} warm-up\n")
    print("| size | tokens | loop s | decode s | GFLOP | GFLOP/s | GEMM GFLOP/s (torch.mm / best) "
          "| efficiency (vs torch.mm / vs best) | 1x1 scale ms | weights pass ms | 1x1 / pass "
          "| peak RSS above base MB (weights MB) | CUDA peak MB | bits = official | image max diff |")
    print("|" + "---|" * 15)
    for r in results:
        achieved = r.gflop / r.loop_s
        print(f"| {r.size} | {r.tokens} | {r.loop_s:.3f} | {r.decode_s:.3f} | {r.gflop:.1f} | {achieved:.1f} "
              f"| {r.gemm_gflops:.0f} / {r.best_gemm_gflops:.0f} | {r.efficiency:.0%} / {r.efficiency_vs_best:.0%} "
              f"| {1e3 * r.per_scale_s[0]:.1f} | {1e3 * r.weights_pass_s:.1f} | {r.first_scale_per_pass:.2f} "
              f"| {r.peak_above_base_mb:.0f} ({r.weights_mb:.0f}) | {r.cuda_peak_mb:.0f} | {r.bits_equal_official} "
              f"| {r.image_max_diff} |")
    for r in results:
        scales = " ".join(f"{1e3 * s:.1f}" for s in r.per_scale_s)
        print(f"\nper-scale ms at {r.size} px (after {1e3 * r.setup_s:.1f} ms of text and cache set-up): {scales}")
        print(f"memory bandwidth {r.bandwidth_gbs:.1f} GB/s; load {r.load_s:.2f} s; "
              f"RSS base {r.rss_base_mb:.0f} MB, peak during generation {r.rss_peak_gen_mb:.0f} MB")


MODES = ("exact", "balanced", "fast", "compiled")


def compare_modes(args) -> None:
    """Loop seconds of the speed modes and of the compiled step against exact, alternating run by run at each
    size (one table row per mode; `compiled` is exact's computation through torch.compile on a model with plain
    weights, since a prepacked CPU model cannot be compiled)."""
    from safetensors.torch import load_file

    from infinity_core import TextCondition, generate, load_transformer
    from infinity_core.clock import DeviceClock
    from infinity_core.compiled import CompileConfig

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.dtype]
    settings = json.loads((args.bench_dir / "bench_config.json").read_text())["sampling"]
    weights = args.bench_dir / "infinity_bench_d8c512.safetensors"
    model = load_transformer(weights, device, dtype, prepack=not args.plain_matmul)
    cond = TextCondition.from_features([load_file(str(args.bench_dir / "bench_text_features.safetensors"))["kv_compact"]])
    plain = load_transformer(weights, device, dtype, prepack=False) if "compiled" in args.modes else None
    runs = {"exact": (model, {}), "balanced": (model, {"speed": "balanced"}), "fast": (model, {"speed": "fast"}),
            "compiled": (plain, {"compile": CompileConfig()})}
    clock = DeviceClock(device)
    for size in args.sizes:
        pixels = SIZE_TO_PIXELS[size]
        config = dict(h_div_w=1.0, pixels=pixels, cfg=settings["cfg"], tau=settings["tau"], top_k=settings["top_k"],
                      top_p=settings["top_p"], seed=settings["g_seed"])
        compile_s = float("nan")
        if "compiled" in args.modes:      # the first compiled run compiles: timed apart
            start = clock()
            generate(plain, cond, **config, compile=CompileConfig())
            compile_s = clock() - start
        seconds = {mode: [] for mode in args.modes}
        for _ in range(args.runs):        # back to back, alternating: every mode sees the same machine
            for mode in args.modes:
                transformer, extra = runs[mode]
                start = clock()
                generate(transformer, cond, **config, **extra)
                seconds[mode].append(clock() - start)
        exact = statistics.median(seconds["exact"]) if "exact" in seconds else float("nan")
        print(f"\n{size} px ({pixels}), {args.runs} alternating runs, {args.device} {args.dtype}, "
              f"{args.threads} threads (first compiled run, compiling: {compile_s:.1f} s)\n")
        print("| mode | loop s median (min - max) | speed-up vs exact median (range over runs) |\n|---|---|---|")
        for mode, times in seconds.items():
            ratios = [e / t for e, t in zip(seconds.get("exact", times), times)]
            print(f"| {mode} | {statistics.median(times):.3f} ({min(times):.3f} - {max(times):.3f}) | "
                  f"{exact / statistics.median(times):.2f}x ({min(ratios):.2f} - {max(ratios):.2f}) |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512], choices=sorted(SIZE_TO_PIXELS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--bench-dir", type=Path, default=DEFAULT_BENCH_DIR)
    parser.add_argument("--smoke", action="store_true", help="one 256 px run without warm-up")
    parser.add_argument("--plain-matmul", action="store_true",
                        help="on a CPU, keep PyTorch's default (MKL) matmuls instead of oneDNN-prepacked weights")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument("--modes", nargs="+", choices=MODES,
                        help="instead of the table: these speed modes (and the compiled step) against exact, alternating")
    parser.add_argument("--case", type=int, help=argparse.SUPPRESS)   # internal: run one size in this process
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if not (args.bench_dir / "bench_config.json").exists():
        log.error("bench files not found in %s (set --bench-dir or INFINITY_BENCH_DIR)", args.bench_dir)
        return 2
    if args.smoke:
        args.sizes, args.runs, args.warmup = [256], 1, 0
    if args.modes:
        args.modes = ["exact"] + [mode for mode in args.modes if mode != "exact"]
        compare_modes(args)
        return 0
    if args.case is not None:
        print(json.dumps(asdict(run_case(args))))
        return 0
    results = []
    for size in args.sizes:
        command = [sys.executable, __file__, "--case", str(size), "--runs", str(args.runs), "--warmup", str(args.warmup),
                   "--threads", str(args.threads), "--device", args.device, "--dtype", args.dtype,
                   "--bench-dir", str(args.bench_dir)] + (["--plain-matmul"] if args.plain_matmul else [])
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            log.error("case %d failed:\n%s", size, done.stderr)
            return 1
        results.append(CaseResult(**json.loads(done.stdout.strip().splitlines()[-1])))
    print_table(results, args)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
