"""Train the embedded demo model from scratch: `python -m training.train_demo --out models --seed 0`.

Stage 1 trains the BSQ VAE on the shapes images; stage 2 encodes a pool of training images with it and
trains the transformer and the tiny T5 text encoder together (bitwise self-correction, text dropout).
Writes the three components in the official layouts (see `training/export.py`), a JSON record of the
run and a PNG of the loss curves. Deterministic for a given seed and thread count; a run killed part-way
resumes from its last checkpoint (every 500 steps of either stage) when started again.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path

import torch

from .checkpoints import Checkpoints
from .export import DemoPaths, save_demo_model
from .plots import Curve, save_loss_curves
from .transformer_trainer import TransformerTrainConfig, train_transformer
from .vae_trainer import VAETrainConfig, train_vae

log = logging.getLogger("training.train_demo")

THREADS = 2   # sized for 2 CPU cores; the thread count also fixes the float summation order (reproducibility)


def _parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def run(out: Path, seed: int, vae_config: VAETrainConfig, transformer_config: TransformerTrainConfig,
        loss_plot: Path | None, checkpoints: Checkpoints) -> dict:
    torch.set_num_threads(THREADS)
    started = time.perf_counter()
    vae_result = train_vae(vae_config, seed, checkpoints)
    log.info("VAE trained in %.0f s", vae_result.seconds)
    vae_result.vae.requires_grad_(False)
    model_result = train_transformer(transformer_config, vae_result.vae, seed, checkpoints)
    log.info("transformer trained in %.0f s (+%.0f s encoding the image pool)", model_result.train_seconds,
             model_result.encode_seconds)
    total_seconds = time.perf_counter() - started
    record = {
        "command": " ".join(["python -m training.train_demo"] + sys.argv[1:]),
        "seed": seed,
        "threads": THREADS,
        "torch": torch.__version__,
        "seconds": {"vae": round(vae_result.seconds, 1), "encode_pool": round(model_result.encode_seconds, 1),
                    "transformer": round(model_result.train_seconds, 1), "total": round(total_seconds, 1)},
        "parameters": {"transformer": _parameter_count(model_result.transformer),
                       "vae": _parameter_count(vae_result.vae),
                       "text_encoder": _parameter_count(model_result.text_model)},
        "final_loss": {"vae": round(vae_result.losses.tail_mean(), 4),
                       "transformer": round(model_result.losses.tail_mean(), 4)},
        "vae_config": dataclasses.asdict(vae_config),
        "transformer_config": dataclasses.asdict(transformer_config),
    }
    paths = DemoPaths.under(out)
    save_demo_model(paths, model_result.transformer, vae_result.vae, model_result.text_model,
                    transformer_config.sizes, record)
    curves = [Curve("stage 1: VAE loss (L1 + MSE + 0.25 commitment)", vae_result.losses.steps, vae_result.losses.total),
              Curve("stage 2: transformer bit loss (full-pyramid steps)", model_result.losses.steps,
                    model_result.losses.total)]
    save_loss_curves(curves, loss_plot or paths.record.with_name("infinity_demo_shapes_loss.png"))
    log.info("wrote %s, %s, %s in %.0f s in all", paths.transformer, paths.vae, paths.text_encoder, total_seconds)
    return record


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.train_demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("models"), help="models folder to write into")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loss-plot", type=Path, default=None,
                        help="PNG of the loss curves (default: next to the transformer file)")
    parser.add_argument("--checkpoints", type=Path, default=Path("training_checkpoints"),
                        help="folder of the resumable checkpoints; a run started again with the same folder resumes "
                             "where the last one stopped (default: %(default)s)")
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = build_parser().parse_args(argv)
    run(args.out, args.seed, VAETrainConfig(), TransformerTrainConfig(), args.loss_plot, Checkpoints(args.checkpoints))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
