"""The shipped demo model draws what it is told, and the code that trained it still trains.

The adherence test is a 20-prompt version of `tools/score_adherence.py` (held-out prompts, the core's
sampling defaults at 0.06M, seed 0, so prompt j's image is drawn from seed j). On these 20 prompts the
shipped model scores, at cfg 3: colour, background and position 100 %, shape 80 %; its VAE's own
reconstructions: colour 95 %, every other attribute 100 %. The thresholds sit under those numbers so that
a real regression fails and sampling noise does not (one prompt is 5 points; each bound is one to three
prompts under its score).
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from infinity_core.cli import DEMO_TEXT_ENCODER, DEMO_TRANSFORMER, DEMO_VAE
from infinity_core.config import TransformerConfig, VAEConfig
from infinity_core.loading import load_transformer, load_vae
from infinity_core.pipeline import InfinityPipeline
from infinity_core.schedules import get_schedule
from infinity_core.text_encoder import load_text_encoder
from infinity_core.trained_sizes import TrainedSizes, trained_sizes
from infinity_core.vae.autoencoder import BitwiseVAE
from training.adherence import demo_sampling, evaluate, reconstruction_accuracy
from training.feature_pools import PoolSize
from training.self_correction import flip_requant
from training.shapes import heldout_specs
from training.transformer_trainer import TransformerPhase, TransformerTrainConfig, train_transformer
from training.text_model import TextModelConfig

pytest.importorskip("transformers")

MODELS = Path(__file__).resolve().parent.parent / "models"
NUM_PROMPTS = 20
THRESHOLDS = {"color": 0.85, "background": 0.95, "position": 0.95, "shape": 0.70}
VAE_THRESHOLDS = {"color": 0.90, "background": 0.95, "position": 0.95, "shape": 0.95}
SIZE_LIMIT_MB = 15


@pytest.fixture(scope="module")
def pipe() -> InfinityPipeline:
    torch.set_num_threads(2)
    return InfinityPipeline(load_transformer(DEMO_TRANSFORMER, "cpu"), load_vae(DEMO_VAE, "cpu", with_encoder=False),
                            load_text_encoder(DEMO_TEXT_ENCODER, "cpu"))


@pytest.fixture(scope="module")
def reports(pipe):
    specs = heldout_specs(NUM_PROMPTS)
    return {cfg: evaluate(pipe, specs, demo_sampling(cfg, seed=0)) for cfg in (1.0, 3.0)}


def test_shipped_files_are_where_the_cli_looks_and_small():
    files = [DEMO_TRANSFORMER, DEMO_VAE, *sorted(DEMO_TEXT_ENCODER.iterdir())]
    assert all(path.is_file() for path in files)
    assert {path.name for path in DEMO_TEXT_ENCODER.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json"}
    assert sum(path.stat().st_size for path in files) < SIZE_LIMIT_MB * 1024 * 1024


def test_shipped_transformer_lists_the_one_size_it_was_trained_at():
    """Its training record (infinity_demo_shapes.json, commit 2e0a63f's code) drew 256 x 256 scenes only, so a
    run at another budget or aspect ratio warns."""
    assert trained_sizes(DEMO_TRANSFORMER) == TrainedSizes(pixels=("0.06M",), aspects=(1.0,))


@pytest.mark.parametrize("attribute", sorted(THRESHOLDS))
def test_demo_model_follows_held_out_prompts_at_cfg_3(reports, attribute):
    accuracy = reports[3.0].accuracy(attribute)
    assert accuracy >= THRESHOLDS[attribute], f"{attribute}: {accuracy:.0%} of {NUM_PROMPTS} held-out prompts"


def test_shipped_vae_reconstructs_held_out_scenes():
    """The VAE's own reconstructions bound what any transformer can draw with it."""
    ceiling = reconstruction_accuracy(load_vae(DEMO_VAE, "cpu"), heldout_specs(NUM_PROMPTS))
    for attribute, minimum in VAE_THRESHOLDS.items():
        assert ceiling[attribute] >= minimum, f"{attribute}: {ceiling[attribute]:.0%} of {NUM_PROMPTS} reconstructions"


def test_guidance_does_not_hurt(reports):
    """cfg 3 is the default. On the issue's 200 prompts it scores higher than cfg 1 (mean 96.6 % against
    94.9 %); 20 prompts are too few to show a margin that small, so this guards against guidance hurting."""
    assert reports[3.0].mean_accuracy >= reports[1.0].mean_accuracy - 0.05


def test_self_correction_without_flips_is_plain_teacher_forcing():
    torch.manual_seed(0)
    vae = BitwiseVAE(VAEConfig(codebook_dim=16, base_channels=24, channel_mult=(1, 1, 1, 1, 1), num_res_blocks=0))
    grids = get_schedule(1.0, "0.06M").grids
    with torch.no_grad():
        encoded = vae.encode(torch.rand(2, 3, 256, 256) * 2 - 1, list(grids))
    generator = torch.Generator().manual_seed(0)
    clean = flip_requant(encoded.raw_features, grids, max_flip=0.0, noise_scales=len(grids), generator=generator)
    assert torch.equal(clean.labels, torch.cat([bits.reshape(2, -1, 16) for bits in encoded.bits], 1).long())
    noisy = flip_requant(encoded.raw_features, grids, max_flip=0.3, noise_scales=len(grids), generator=generator)
    first_scale_tokens = 1
    assert torch.equal(noisy.labels[:, :first_scale_tokens], clean.labels[:, :first_scale_tokens])
    assert not torch.equal(noisy.next_inputs, clean.next_inputs)


def test_transformer_training_reduces_the_loss_on_a_tiny_batch():
    torch.manual_seed(0)
    vae = BitwiseVAE(VAEConfig(codebook_dim=16, base_channels=24, channel_mult=(1, 1, 1, 1, 1), num_res_blocks=0)).eval()
    tiny = TransformerTrainConfig(
        architecture=TransformerConfig(depth=1, width=64, num_heads=2, ffn_hidden=128, bits_per_token=16,
                                       text_channels=32, text_maxlen=32, pool_heads=1, block_chunks=1),
        text=TextModelConfig(d_model=32, num_layers=1, num_heads=2, d_kv=16, d_ff=64),
        phases=(TransformerPhase(steps=12, aspects=(1.0,), scale_cycle=(7,), learning_rate=3e-3),), batch_size=4,
        pool_first_phase=PoolSize(single=4, pair=0), warmup_steps=1, max_flip=0.0, cond_drop_rate=0.0,
        sizes=TrainedSizes(pixels=("0.06M",), aspects=(1.0,)))
    result = train_transformer(tiny, vae, seed=0)
    losses = result.losses.total
    assert len(losses) == tiny.steps
    assert sum(losses[-3:]) / 3 < 0.9 * sum(losses[:3]) / 3
