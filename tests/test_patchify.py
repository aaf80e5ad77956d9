"""The 8B's spatial patchify path (56 bits per token = 2x2 latents of 14 bits) end to end, on a tiny random model."""
import pytest
import torch
import torch.nn.functional as F

from infinity_core import TextCondition, check_pair, generate, get_schedule
from infinity_core.config import TransformerConfig, VAEConfig
from infinity_core.vae.autoencoder import BitwiseVAE
from infinity_core.vae.bsq import bits_to_codes, patchify_bits, upsample_codes
from infinity_core.transformer.model import InfinityTransformer

CONFIG = TransformerConfig(depth=2, width=64, num_heads=2, ffn_hidden=256, bits_per_token=56, text_channels=32,
                           text_maxlen=16, pool_heads=2, block_chunks=1)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = InfinityTransformer(CONFIG)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.normal_(0, 0.3)
    return net.eval()


def test_patchify_is_inferred_and_paired_with_a_14_bit_vae():
    assert CONFIG.spatial_patchify
    check_pair(CONFIG, VAEConfig(codebook_dim=14, channel_mult=(1, 2, 4, 4)))


def test_generation_with_patchify_matches_an_independent_teacher_forced_pass(model):
    cond = TextCondition.from_features([torch.randn(5, 32, generator=torch.Generator().manual_seed(1))])
    schedule = get_schedule(1.0, "0.06M")
    result = generate(model, cond, pixels="0.06M", cfg=2.0, tau=1.0, top_k=1, top_p=0.0, seed=0)
    assert [tuple(b.shape) for b in result.bits] == [(1, 2 * h, 2 * w, 14) for h, w in schedule.grids]
    assert result.codes.shape == (1, 14, 32, 32)
    # rebuild every next-scale input from the sampled latent bits, independently of the sampler
    summed, inputs = 0.0, []
    for scale, bits in enumerate(result.bits):
        summed = summed + upsample_codes(bits_to_codes(bits), (32, 32))             # [1, 14, 1, 32, 32]
        if scale + 1 < schedule.num_scales:
            h, w = schedule.grids[scale + 1]
            latents = F.interpolate(summed, size=(1, 2 * h, 2 * w), mode="trilinear").squeeze(2)
            inputs.append(F.pixel_unshuffle(latents, 2).flatten(2).transpose(1, 2))   # [1, h*w, 56]
    torch.testing.assert_close(summed.squeeze(2), result.codes, atol=1e-6, rtol=0)
    with torch.no_grad():
        uncond = model.unconditional_text(cond.lengths)
        guided = 2.0 * model.forward_teacher(cond, torch.cat(inputs, 1), schedule) \
            - 1.0 * model.forward_teacher(uncond, torch.cat(inputs, 1), schedule)   # [1, L, 112]
    greedy = guided.view(1, -1, 56, 2).argmax(-1)                                   # [1, L, 56]
    sampled = torch.cat([patchify_bits(b).flatten(1, 2) for b in result.bits], dim=1)
    assert (greedy == sampled).float().mean() > 0.999


def test_patchify_vae_decodes_the_codes_to_the_schedule_size(model):
    cond = TextCondition.from_features([torch.randn(3, 32)])
    result = generate(model, cond, h_div_w=0.5, pixels="0.06M", cfg=1.0, seed=2)
    vae = BitwiseVAE(VAEConfig(codebook_dim=14, base_channels=32, channel_mult=(1, 1, 1, 1), num_res_blocks=1),
                     with_encoder=False)
    with torch.inference_mode():
        image = vae.decode(result.codes)
    assert image.shape[-2:] == get_schedule(0.5, "0.06M").image_size


@pytest.mark.parametrize("speed", ["balanced", "fast"])
def test_speed_modes_run_with_patchify(model, speed):
    """A mode's pruning and fill-back work on 56-bit tokens: the exact scales before the mode's first are
    kept, every scale has its 2x2 latent bits, and a second run repeats them."""
    from infinity_core.speed import POLICIES
    cond = TextCondition.from_features([torch.randn(5, 32, generator=torch.Generator().manual_seed(1))])
    schedule = get_schedule(1.0, "0.06M")
    settings = dict(pixels="0.06M", cfg=2.0, tau=1.0, seed=0)
    exact = generate(model, cond, **settings)
    result = generate(model, cond, **settings, speed=speed)
    policy = POLICIES[speed]
    first = schedule.num_scales - max(policy.unguided_last, len(policy.token_share_last))
    assert [tuple(b.shape) for b in result.bits] == [(1, 2 * h, 2 * w, 14) for h, w in schedule.grids]
    assert all(torch.equal(a, b) for a, b in zip(result.bits[:first], exact.bits[:first]))
    assert not all(torch.equal(a, b) for a, b in zip(result.bits[first:], exact.bits[first:]))
    again = generate(model, cond, **settings, speed=speed)
    assert all(torch.equal(a, b) for a, b in zip(again.bits, result.bits))
