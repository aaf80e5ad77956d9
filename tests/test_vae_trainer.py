"""The demo VAE trainer's quantizer agrees with the inference tokenizer, and its code flips touch only the
scales they are asked to."""
from __future__ import annotations

import torch

from infinity_core.vae.autoencoder import BitwiseVAE
from training.vae_trainer import DEMO_VAE, multiscale_codes, multiscale_quantize

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
        summed = multiscale_quantize(features, GRIDS)
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
