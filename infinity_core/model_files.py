"""The three files a run reads (transformer weights, VAE weights, T5 folder), the pack's demo set of them, and
the command-line options that name them: one definition for the CLI, the batch command and the tools."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from .batch.rows import ModelNames

PACK_MODELS = Path(__file__).resolve().parent.parent / "models"


@dataclass(frozen=True)
class ModelFiles:
    transformer: Path
    vae: Path
    text_encoder: Path

    @property
    def names(self) -> ModelNames:
        return ModelNames(*(Path(p).name for p in (self.transformer, self.vae, self.text_encoder)))


DEMO_FILES = ModelFiles(PACK_MODELS / "infinity" / "infinity_demo_shapes.safetensors",
                        PACK_MODELS / "infinity" / "infinity_demo_shapes_vae.safetensors",
                        PACK_MODELS / "text_encoders" / "t5_demo_shapes")


def add_model_arguments(parser: argparse.ArgumentParser, defaults: ModelFiles = DEMO_FILES) -> None:
    """--transformer, --vae and --text-encoder, defaulting to `defaults` (the demo model)."""
    parser.add_argument("--transformer", type=Path, default=defaults.transformer,
                        help="transformer weights (.pth, .safetensors, .gguf, shard folder); default: the demo's")
    parser.add_argument("--vae", type=Path, default=defaults.vae, help="VAE weights (.pth, .safetensors)")
    parser.add_argument("--text-encoder", type=Path, default=defaults.text_encoder,
                        help="T5 folder (flan-t5-xl for the published models)")


def model_files(args: argparse.Namespace) -> ModelFiles:
    """The files parsed `args` name (after `add_model_arguments`)."""
    return ModelFiles(args.transformer, args.vae, args.text_encoder)
