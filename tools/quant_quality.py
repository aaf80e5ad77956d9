"""Quality of the quantized weight formats against fp32: one table per model.

    python tools/quant_quality.py                          # bench model at 0.25M, demo model at 0.06M
    python tools/quant_quality.py --models bench --formats fp32 gguf-q8_0 gguf-q4_k

Each format's file is written by tools/convert_checkpoint.py into a temporary folder (fp32 is the source
file itself, loaded in fp32); every format runs in its own fresh process, loaded in fp32 compute (quantized
layers expand to fp32 at each use), on the CPU. Columns:
- bits = fp32: greedy generation (top-k 1, cfg 3) of one prompt, the share of bits equal to the fp32 run's,
  overall and per scale (coarse to fine; a bit that differs changes every later scale's input, so late
  scales show the sum of the drift);
- PSNR: the decoded image against the fp32 one (dB, images in [0, 1]; inf where equal);
- size: the file; peak RSS: the process's peak (load, generations and decode); time: the median of the
  timed greedy generations, and its ratio to fp32 (the cost of expanding weights at each use);
- demo model only: the adherence scores (training/adherence.py `evaluate` on `heldout_specs(N)`, cfg 3,
  the demo's defaults otherwise, as tools/score_adherence.py) and the largest difference to fp32 in prompts.

The bench model (bench/README.md) uses the bench VAE and the bench's fixed text features; the demo model its
own VAE and text encoder and the first held-out prompt's caption.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BENCH_DIR = Path(os.environ.get("INFINITY_BENCH_DIR", REPO.parent / "shared" / "bench"))
MODELS = {
    "bench": {"transformer": BENCH_DIR / "infinity_bench_d8c512.safetensors", "vae": BENCH_DIR / "vae_bench.safetensors",
              "pixels": "0.25M"},
    "demo": {"transformer": REPO / "models" / "infinity" / "infinity_demo_shapes.safetensors",
             "vae": REPO / "models" / "infinity" / "infinity_demo_shapes_vae.safetensors",
             "text_encoder": REPO / "models" / "text_encoders" / "t5_demo_shapes", "pixels": "0.06M"},
}
# convert_checkpoint --format ("fp32": the source file, loaded in fp32) -> the table's name
FORMATS = {"fp32": "fp32", "bf16": "bf16", "fp8": "fp8 (per tensor)", "int8": "int8 (per row)",
           "gguf-q8_0": "Q8_0", "gguf-q5_k": "Q5_K", "gguf-q4_k": "Q4_K"}
CFG = 3.0
MiB = 2 ** 20
log = logging.getLogger("quant_quality")


def _peak_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def run_format(model_name: str, weights: Path, out: Path, runs: int, prompts: int, threads: int) -> None:
    """In this process: greedy bits, image, timing and (demo) adherence of `weights`, saved under `out`."""
    import torch
    from safetensors.torch import load_file, save_file

    from infinity_core import TextCondition, generate, load_transformer, load_vae
    from infinity_core.text_encoder import load_text_encoder

    torch.set_num_threads(threads)
    spec = MODELS[model_name]
    model = load_transformer(weights, "cpu", torch.float32)
    vae = load_vae(spec["vae"], "cpu", torch.float32, with_encoder=False)
    encoder = None
    if model_name == "bench":
        cond = TextCondition.from_features([load_file(str(BENCH_DIR / "bench_text_features.safetensors"))["kv_compact"]])
    else:
        from training.shapes import caption, heldout_specs
        encoder = load_text_encoder(spec["text_encoder"], "cpu", torch.float32)
        cond = encoder.encode(caption(heldout_specs(1)[0]))
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        result = generate(model, cond, pixels=spec["pixels"], cfg=CFG, top_k=1, seed=0)
        seconds.append(time.perf_counter() - started)
    with torch.inference_mode():
        image = vae.decode(result.codes)                                          # [1, 3, H, W] in [-1, 1]
    tensors = {f"bits_{i}": bits.contiguous() for i, bits in enumerate(result.bits)}
    save_file({**tensors, "image": image.contiguous()}, str(out / "outputs.safetensors"))
    report = {"seconds": statistics.median(seconds)}
    if model_name == "demo":
        from infinity_core.pipeline import InfinityPipeline
        from training.adherence import ATTRIBUTES, demo_sampling, evaluate
        from training.shapes import heldout_specs
        adherence = evaluate(InfinityPipeline(model, vae, encoder), heldout_specs(prompts), demo_sampling(CFG))
        report["adherence"] = {name: adherence.accuracy(name) for name in ATTRIBUTES}
    report["peak_rss"] = _peak_rss()
    (out / "report.json").write_text(json.dumps(report))


def _psnr(image, reference) -> float:
    mse = float(((image - reference) / 2).pow(2).mean())      # images in [-1, 1] -> [0, 1]
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def _write_file(source: Path, fmt: str, folder: Path) -> Path:
    if fmt == "fp32":
        return source
    target = folder / f"{source.stem}_{fmt}{'.gguf' if fmt.startswith('gguf') else '.safetensors'}"
    subprocess.run([sys.executable, str(REPO / "tools" / "convert_checkpoint.py"), str(source), str(target),
                    "--format", fmt, "--no-progress"], check=True, capture_output=True, text=True)
    return target


def measure_model(model_name: str, formats: list[str], folder: Path, args) -> str:
    """Every format of one model, then its table (markdown)."""
    from safetensors.torch import load_file

    spec = MODELS[model_name]
    rows = {}
    for name in formats:
        weights = _write_file(spec["transformer"], name, folder)
        out = folder / f"{model_name}_{name}"
        out.mkdir(exist_ok=True)
        subprocess.run([sys.executable, __file__, "--child", model_name, str(weights), str(out), "--runs",
                        str(args.runs), "--prompts", str(args.prompts), "--threads", str(args.threads)], check=True)
        rows[name] = (weights.stat().st_size, json.loads((out / "report.json").read_text()),
                      load_file(str(out / "outputs.safetensors")))
        log.info("%s %s done", model_name, name)
    base_report, base = rows["fp32"][1], rows["fp32"][2]
    scales = sum(1 for key in base if key.startswith("bits_"))
    demo = model_name == "demo"
    attributes = list(base_report["adherence"]) if demo else []
    header = ["format", "bits = fp32", "per scale (%)", "PSNR dB", "size MiB", "peak RSS MiB", "s / image",
              "time vs fp32", *attributes, *(["largest change (prompts)"] if demo else [])]
    lines = [f"{model_name} model at {spec['pixels']} (cfg {CFG:g}, greedy bits; demo adherence on "
             f"{args.prompts} held-out prompts)" if demo else f"{model_name} model at {spec['pixels']} (cfg {CFG:g}, greedy bits)",
             "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, (size, report, outputs) in rows.items():
        per_scale = [float((outputs[f"bits_{i}"] == base[f"bits_{i}"]).float().mean()) for i in range(scales)]
        counts = [base[f"bits_{i}"].numel() for i in range(scales)]
        overall = sum(share * n for share, n in zip(per_scale, counts)) / sum(counts)
        cells = [FORMATS[name], f"{overall:.2%}", " ".join(f"{100 * s:.1f}" for s in per_scale),
                 f"{_psnr(outputs['image'], base['image']):.1f}", f"{size / MiB:.1f}", f"{report['peak_rss'] / MiB:.0f}",
                 f"{report['seconds']:.2f}", f"{report['seconds'] / base_report['seconds']:.2f}"]
        if demo:
            cells += [f"{report['adherence'][a]:.1%}" for a in attributes]
            changes = [abs(report["adherence"][a] - base_report["adherence"][a]) * args.prompts for a in attributes]
            cells.append(f"{max(changes):.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--formats", nargs="+", choices=list(FORMATS), default=list(FORMATS))
    parser.add_argument("--runs", type=int, default=2, help="timed greedy generations per format (median)")
    parser.add_argument("--prompts", type=int, default=48, help="held-out prompts for the demo's adherence")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "WEIGHTS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.child:
        model_name, weights, out = args.child
        run_format(model_name, Path(weights), Path(out), args.runs, args.prompts, args.threads)
        return 0
    formats = ["fp32", *(name for name in args.formats if name != "fp32")]
    with tempfile.TemporaryDirectory(prefix="quant_quality_") as folder:
        tables = [measure_model(name, formats, Path(folder), args) for name in args.models]
    print("\n\n".join(tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
