"""Write the trained demo model the way a user lays out real Infinity files.

    <out>/infinity/infinity_demo_shapes.safetensors       transformer, official key layout (block_chunks.c.module.j.)
    <out>/infinity/infinity_demo_shapes_vae.safetensors   BSQ VAE, official key layout (Conv.conv / Normalize.norm)
    <out>/text_encoders/t5_demo_shapes/                   T5 folder: config.json, model.safetensors, tokenizer.json

The key layouts come from `infinity_core.weights.internal_to_official_*`, so the files load through
`load_transformer` / `load_vae` exactly as the published checkpoints do.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from infinity_core.trained_sizes import TrainedSizes
from infinity_core.vae.autoencoder import BitwiseVAE
from infinity_core.transformer.model import InfinityTransformer
from infinity_core.weights import internal_to_official_transformer, internal_to_official_vae, model_defaults_metadata

from .text_model import save_text_encoder

TRANSFORMER_FILE = Path("infinity") / "infinity_demo_shapes.safetensors"
VAE_FILE = Path("infinity") / "infinity_demo_shapes_vae.safetensors"
TEXT_ENCODER_FOLDER = Path("text_encoders") / "t5_demo_shapes"
RECORD_FILE = Path("infinity") / "infinity_demo_shapes.json"


@dataclass(frozen=True)
class DemoPaths:
    transformer: Path
    vae: Path
    text_encoder: Path
    record: Path

    @classmethod
    def under(cls, root: str | Path) -> "DemoPaths":
        root = Path(root)
        return cls(root / TRANSFORMER_FILE, root / VAE_FILE, root / TEXT_ENCODER_FOLDER, root / RECORD_FILE)


def _contiguous(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: tensor.detach().contiguous() for key, tensor in state_dict.items()}


def save_demo_model(paths: DemoPaths, transformer: InfinityTransformer, vae: BitwiseVAE, text_model,
                    sizes: TrainedSizes, record: dict) -> None:
    """Save the three components in the official layouts, plus a JSON record of how they were made.

    The transformer file carries its sampling defaults (its default pixel budget) and the sizes it was trained
    at in its metadata, where `infinity_core.weights.model_defaults` and `infinity_core.trained_sizes` find
    them whatever the file is called."""
    paths.transformer.parent.mkdir(parents=True, exist_ok=True)
    official = internal_to_official_transformer(transformer.state_dict(), transformer.config.block_chunks)
    defaults = model_defaults_metadata(pixels=record["transformer_config"]["pixels"])
    save_file(_contiguous(official), str(paths.transformer),
              metadata={"format": "pt", "model": "infinity_demo_shapes", **defaults, **sizes.to_metadata()})
    vae_state = {k: v.contiguous() for k, v in vae.state_dict().items()}   # channels-last convs -> plain layout
    save_file(_contiguous(internal_to_official_vae(vae_state, vae.config.codebook_dim)), str(paths.vae),
              metadata={"format": "pt", "model": "infinity_demo_shapes_vae"})
    save_text_encoder(text_model, paths.text_encoder)
    paths.record.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
