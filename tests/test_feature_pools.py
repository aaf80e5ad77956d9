"""The transformer's training pools keep one-object and two-object scenes apart, and a phase's batches hold
two-object scenes at the phase's share."""
from __future__ import annotations

import pytest
import torch

from infinity_core.config import VAEConfig
from infinity_core.vae.autoencoder import BitwiseVAE
from training.feature_pools import FeaturePool, PoolSize, SizePools, encode_size_pools
from training.shapes import SHAPES, Canvas
from training.transformer_trainer import TransformerPhase, TransformerTrainConfig


def _objects_in(caption: str) -> int:
    return sum(caption.split().count(shape) for shape in SHAPES)


@pytest.fixture(scope="module")
def pools() -> SizePools:
    torch.manual_seed(0)
    vae = BitwiseVAE(VAEConfig(codebook_dim=16, base_channels=24, channel_mult=(1, 1, 1, 1, 1),
                               num_res_blocks=0)).eval()
    return encode_size_pools(vae, seed=0, size=PoolSize(single=6, pair=5), offset=100, object_weight=5.0,
                             canvas=Canvas(64, 96))


def test_each_pool_holds_its_number_of_objects_and_size(pools):
    assert [_objects_in(caption) for caption in pools.single.captions] == [1] * 6
    assert [_objects_in(caption) for caption in pools.pair.captions] == [2] * 5
    assert pools.single.raw_features.shape == (6, 16, 4, 6)     # [N, d, H/16, W/16]
    assert pools.pair.pixel_weights.shape == (5, 1, 4, 6)


def test_a_batch_holds_two_object_scenes_at_the_phase_share(pools):
    generator = torch.Generator().manual_seed(0)
    assert {_objects_in(c) for c in pools.draw(16, 0.0, generator).captions} == {1}
    assert {_objects_in(c) for c in pools.draw(16, 1.0, generator).captions} == {2}
    drawn = [_objects_in(c) for _ in range(100) for c in pools.draw(16, 0.3, generator).captions]
    pair_share = drawn.count(2) / len(drawn)
    # 1600 Bernoulli(0.3) draws: 5 standard deviations are 0.057
    assert abs(pair_share - 0.3) < 0.057


def test_a_drawn_batch_carries_each_image_with_its_own_caption(pools):
    batch = pools.draw(8, 0.5, torch.Generator().manual_seed(1))
    everything = FeaturePool.concat(pools.single, pools.pair)
    for features, caption in zip(batch.raw_features, batch.captions):
        matches = [i for i in range(len(everything)) if torch.equal(everything.raw_features[i], features)]
        assert matches
        assert {everything.captions[i] for i in matches} == {caption}


def test_a_phase_that_draws_pairs_needs_pools_with_pairs():
    phase = TransformerPhase(steps=2, aspects=(1.0,), scale_cycle=(3,), two_object_share=0.2)
    with pytest.raises(ValueError, match="two-object"):
        TransformerTrainConfig(phases=(phase,), pool_first_phase=PoolSize(single=4, pair=0))
