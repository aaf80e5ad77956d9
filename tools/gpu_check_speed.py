"""The CUDA half of the speed work, for a session that is lent a GPU (nothing here runs on a CPU).

    python3 tools/gpu_check_speed.py --fixtures .device/fixtures/infinity_tiny --bench-dir .device/bench

The shared gpu_check.sh stages fixtures and bench files in .device/; add this line to it (or run it after it).
It prints:
1. host reads inside the scale loop on CUDA (the dispatch-mode count of tests/test_host_reads.py): expect 0;
2. the compiled step (inductor, mode reduce-overhead: a CUDA graph per scale shape) against eager on the fixture
   model at 0.06M and 0.25M: bits equal, graphs, graph breaks, cudagraph skips (expect 0), seconds per run;
3. the bench model's generation at 0.25M and 1M in bf16: exact, balanced, fast and compiled, alternating, with
   the ratio to exact (bench/bench_inference.py --modes does the same with its full table);
4. block streaming (the loader's offload "blocks", infinity_core/offload.py) against the resident model, bench
   model bf16 at 1M: bits equal, peak CUDA memory of each, seconds of each.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from infinity_core import TextCondition, generate, load_transformer  # noqa: E402
from infinity_core.clock import DeviceClock  # noqa: E402
from infinity_core.compiled import CompileConfig  # noqa: E402
from infinity_core.offload import BlockStreaming  # noqa: E402


def host_reads(model, cond, **settings) -> int:
    from test_host_reads import reads_inside_the_loop
    return len(reads_inside_the_loop(model, cond, **settings))


def timed(clock: DeviceClock, fn) -> tuple[float, object]:
    start = clock()
    out = fn()
    return clock() - start, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fixtures", type=Path, default=ROOT.parent / "shared" / "fixtures" / "infinity_tiny")
    parser.add_argument("--bench-dir", type=Path, default=ROOT.parent / "shared" / "bench")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1
    torch.backends.cuda.matmul.allow_tf32 = False
    clock = DeviceClock("cuda")
    text = load_file(args.fixtures / "text_encoder.safetensors")
    cond = TextCondition.from_features([text["p1_kv_compact"].cuda()])
    tiny = load_transformer(args.fixtures / "infinity_tiny.safetensors", "cuda", torch.float32)
    settings = dict(cfg=3.0, tau=1.0, seed=3)

    print("1. host reads inside the scale loop (CUDA):")
    for speed in ("exact", "balanced", "fast"):
        for case, extra in (("text to image", {}), ("per-scale cfg", {"cfg": (3.0, 3.0, 4.0, 1.0)})):
            print(f"   {speed:8s} {case:14s} {host_reads(tiny, cond, pixels='0.06M', **(settings | extra), speed=speed)}")
    picture = generate(tiny, cond, pixels="0.06M", **settings | {"seed": 100}).bits
    mask = torch.zeros(256, 256)
    mask[64:192, :128] = 1
    print(f"   exact    img2img        {host_reads(tiny, cond, pixels='0.06M', **settings, init_bits=picture, init_scales=2)}")
    print(f"   exact    inpainting     {host_reads(tiny, cond, pixels='0.06M', **settings, init_bits=picture, mask=mask)}")

    print("2. compiled (inductor, reduce-overhead) against eager, fixture model fp32:")
    from torch._dynamo.utils import counters
    compiled = CompileConfig()
    for pixels in ("0.06M", "0.25M"):
        counters.clear()
        eager_s, eager = timed(clock, lambda: generate(tiny, cond, pixels=pixels, **settings))
        first_s, _ = timed(clock, lambda: generate(tiny, cond, pixels=pixels, **settings, compile=compiled))
        runs = [timed(clock, lambda: generate(tiny, cond, pixels=pixels, **settings, compile=compiled))
                for _ in range(args.runs)]
        same = sum(int(torch.equal(a, b)) for a, b in zip(runs[-1][1].bits, eager.bits))
        print(f"   {pixels}: scales with eager's bits {same}/{len(eager.bits)}; graphs "
              f"{counters['stats']['unique_graphs']}, breaks {dict(counters['graph_break'])}, cudagraph skips "
              f"{counters['inductor']['cudagraph_skips']}; eager {eager_s:.3f} s, first compiled {first_s:.1f} s, "
              f"compiled {statistics.median(r[0] for r in runs):.3f} s")

    print("3. bench model, bf16: seconds per generation (median of runs; ratio to exact)")
    bench = load_transformer(args.bench_dir / "infinity_bench_d8c512.safetensors", "cuda", torch.bfloat16)
    features = load_file(args.bench_dir / "bench_text_features.safetensors")["kv_compact"]
    bench_cond = TextCondition.from_features([features.cuda()])
    for pixels in ("0.25M", "1M"):
        variants = {"exact": {}, "balanced": {"speed": "balanced"}, "fast": {"speed": "fast"}, "compiled": {"compile": compiled}}
        for extra in variants.values():     # warm-up (and compile)
            generate(bench, bench_cond, pixels=pixels, seed=0, **extra)
        times = {name: [] for name in variants}
        for _ in range(args.runs):
            for name, extra in variants.items():
                times[name].append(timed(clock, lambda: generate(bench, bench_cond, pixels=pixels, seed=0, **extra))[0])
        exact = statistics.median(times["exact"])
        print(f"   {pixels}: " + ", ".join(f"{name} {statistics.median(t):.3f} s ({min(t):.3f}-{max(t):.3f}, "
                                          f"x{exact / statistics.median(t):.2f})" for name, t in times.items()))

    print("4. block streaming against the resident model, bench model bf16 at 1M:")
    resting = load_transformer(args.bench_dir / "infinity_bench_d8c512.safetensors", "cpu", torch.bfloat16,
                               prepack=False)
    for name, model, streamed in (("resident", bench, False), ("streamed", resting, True)):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        with BlockStreaming(model, "cuda") if streamed else torch.no_grad():
            seconds, result = timed(clock, lambda: generate(model, bench_cond, pixels="1M", seed=0))
        peak = (torch.cuda.max_memory_allocated() - before) / 2 ** 20
        if not streamed:
            resident_bits = result.bits
        same = sum(int(torch.equal(a, b)) for a, b in zip(result.bits, resident_bits))
        print(f"   {name}: {seconds:.3f} s; CUDA memory the run added at its peak {peak:.0f} MiB (the resident "
              f"weights were there before it); scales with the resident bits {same}/{len(result.bits)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
