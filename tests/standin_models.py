"""A stand-in for the pack's demo model, assembled from the committed tiny fixtures (random weights).

It is laid out as a user lays out real models, under one `models/` directory:
    infinity/<transformer>.safetensors, infinity/<vae>.safetensors,
    text_encoders/<folder>/ (config.json, model.safetensors and the tokenizer files)
The tokenizer is the demo's word-level caption tokenizer (training/caption_tokenizer.py), whose ids fit the
fixture T5's 320-entry vocabulary.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from training.caption_tokenizer import save_tokenizer

FIXTURES = Path(__file__).parent / "fixtures" / "infinity_tiny"


@dataclass(frozen=True)
class StandinNames:
    transformer: str
    vae: str
    text_encoder: str


TINY_NAMES = StandinNames("infinity_tiny.safetensors", "vae_tiny.safetensors", "t5_tiny")
DEMO_NAMES = StandinNames("infinity_demo_shapes.safetensors", "infinity_demo_shapes_vae.safetensors", "t5_demo_shapes")


def build_standin_models(models_dir: Path, names: StandinNames = TINY_NAMES) -> StandinNames:
    (models_dir / "infinity").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FIXTURES / "infinity_tiny.safetensors", models_dir / "infinity" / names.transformer)
    shutil.copyfile(FIXTURES / "vae_tiny.safetensors", models_dir / "infinity" / names.vae)
    text_encoder = models_dir / "text_encoders" / names.text_encoder
    text_encoder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FIXTURES / "t5_tiny_config.json", text_encoder / "config.json")
    shutil.copyfile(FIXTURES / "t5_tiny.safetensors", text_encoder / "model.safetensors")
    save_tokenizer(text_encoder)
    return names


def write_mismatched_vae(path: Path, bits: int = 16) -> None:
    """The stand-in VAE cut down to `bits`-bit codes (decoder only), which no stand-in transformer predicts."""
    from safetensors.torch import load_file, save_file

    tensors = {k: v for k, v in load_file(str(FIXTURES / "vae_tiny.safetensors")).items() if k.startswith("decoder.")}
    tensors["decoder.conv_in.conv.weight"] = tensors["decoder.conv_in.conv.weight"][:, :bits].contiguous()
    save_file(tensors, str(path))
