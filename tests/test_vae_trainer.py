"""The demo VAE trainer's quantizer agrees with the inference tokenizer, its code flips touch only the
scales they are asked to, and its prefix term is the reconstruction from the tokenizer's coarse codes."""
from __future__ import annotations

import torch

from infinity_core.vae.autoencoder import BitwiseVAE
from infinity_core.vae.bsq import accumulate_codes, bits_to_codes
from training.vae_trainer import (DEMO_VAE, VAETrainConfig, autoencoder_loss, foreground_weights, multiscale_codes,
                                  sum_codes, weighted_errors)

GRIDS = ((1, 1), (2, 2), (4, 4))   # the 0.06M scales that fit a 64 px image's 4x4 latent


def _vae_and_features():
    torch.manual_seed(0)
    vae = BitwiseVAE(DEMO_VAE).eval()
    images = torch.rand(2, 3, 64, 64) * 2 - 1                                  # [B, 3, 64, 64]
    with torch.no_grad():
        return vae, images, vae.encoder(images)                                # features [B, d, 4, 4]


def test_clean_quantization_equals_the_tokenizers_encoding():
    vae, images, features = _vae_and_features()
    with torch.no_grad():
        expected = vae.encode(images, list(GRIDS)).summed_codes
        summed = sum_codes(multiscale_codes(features, GRIDS))
    torch.testing.assert_close(summed, expected, atol=1e-5, rtol=0)


def test_flips_on_the_last_scale_leave_the_earlier_scales_alone():
    _, _, features = _vae_and_features()
    with torch.no_grad():
        clean = multiscale_codes(features, GRIDS)
        flipped = multiscale_codes(features, GRIDS, max_flips=(0.0, 0.0, 1.0),
                                   generator=torch.Generator().manual_seed(0))
    for scale in range(2):
        assert torch.equal(flipped[scale], clean[scale]), f"scale {scale} changed"
    step = 2 * features.shape[1] ** -0.5                                       # a flipped code: +s <-> -s
    change = (flipped[2] - clean[2]).abs()
    assert change.max() > 0
    assert torch.all((change < 1e-6) | ((change - step).abs() < 1e-6))


def _loss_parts(config: VAETrainConfig, grids) -> dict:
    vae, images, _ = _vae_and_features()
    with torch.no_grad():
        return autoencoder_loss(vae, images, grids, config, torch.Generator().manual_seed(0))[1]


def test_the_prefix_term_is_the_reconstruction_from_the_tokenizers_coarse_codes():
    """Without flips, the prefix term equals decoding the sum of the inference tokenizer's first two scales."""
    config = VAETrainConfig(max_code_flip=0.0, prefix_scale=1)
    vae, images, _ = _vae_and_features()
    with torch.no_grad():
        bits = vae.encode(images, list(GRIDS)).bits                             # per scale [B, h, w, d]
        coarse = torch.zeros(2, DEMO_VAE.codebook_dim, 1, 4, 4)                # [B, d, 1, H, W]
        for scale_bits in bits[:2]:
            coarse = accumulate_codes(coarse, bits_to_codes(scale_bits))
        coarse = coarse.squeeze(2)                                              # [B, d, 4, 4]
        weights = foreground_weights(images, config.foreground_weight)
        expected = sum(weighted_errors(vae.decoder(coarse), images, weights)).item()
    assert abs(_loss_parts(config, GRIDS)["prefix"] - expected) < 1e-5 * max(1.0, expected)


def test_no_prefix_term_when_the_prefix_is_the_whole_pyramid():
    """A phase whose finest grid is the prefix grid trains on the plain reconstruction only."""
    assert _loss_parts(VAETrainConfig(max_code_flip=0.0, prefix_scale=2), GRIDS)["prefix"] == 0.0
    assert _loss_parts(VAETrainConfig(max_code_flip=0.0, prefix_scale=1), GRIDS)["prefix"] > 0.0
