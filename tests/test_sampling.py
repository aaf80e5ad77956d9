"""Sampler behaviour: KV cache vs the block-causal pass, seeds, batches, guidance, interruption."""
import pytest
import torch

from infinity_core import InfinityError, generate, get_schedule, load_transformer
from infinity_core.sampling import SamplingConfig, ScaleSampler, sample_bits
from infinity_core.text import TextCondition
from infinity_core.vae.bsq import bits_to_codes, next_scale_input, upsample_codes

from conftest import FIXTURES


def _sampled(transformer, cond, **overrides):
    settings = dict(pixels="0.06M", cfg=3.0, tau=1.0, top_k=900, top_p=0.97, seed=0) | overrides
    return generate(transformer, cond, **settings)


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.bits, b.bits)) and torch.equal(a.codes, b.codes)


def test_kv_cached_scales_equal_one_block_causal_pass(transformer, fox):
    """Scale-by-scale logits with the KV cache == the teacher-forced pass over the same (random) bits,
    the last scale included, whose keys/values the cache does not keep."""
    schedule = get_schedule(0.75, "0.06M")
    generator = torch.Generator().manual_seed(3)
    bits = [torch.randint(0, 2, (1, h * w, 32), generator=generator, dtype=torch.uint8) for h, w in schedule.grids]
    sampling = SamplingConfig(h_div_w=0.75, pixels="0.06M", cfg=1.0, tau=1.0)
    cached, inputs, summed = [], [], 0.0
    with torch.inference_mode():
        sampler = ScaleSampler(transformer, fox, transformer.unconditional_text(fox.lengths), sampling)
        for scale, (h, w) in enumerate(schedule.grids):
            cached.append(sampler.scale_logits(scale).flatten(2))
            sampler.commit(scale, bits[scale])
            codes = bits_to_codes(bits[scale].view(1, h, w, 32))
            if scale + 1 < schedule.num_scales:       # independent rebuild of the next inputs
                summed = summed + upsample_codes(codes, schedule.final_grid)
                inputs.append(next_scale_input(summed, schedule.grids[scale + 1], patchify=False))
        teacher = transformer.forward_teacher(fox, torch.cat(inputs, dim=1), schedule)
    torch.testing.assert_close(torch.cat(cached, dim=1), teacher, atol=2e-5, rtol=0)
    last_h, last_w = schedule.grids[-1]
    assert sampler.cache.keys[0].shape[1] == schedule.num_tokens - last_h * last_w


def test_same_seed_same_image_other_seed_other_image(transformer, fox):
    first, again, other = _sampled(transformer, fox, seed=7), _sampled(transformer, fox, seed=7), _sampled(transformer, fox, seed=8)
    assert _same(first, again)
    assert not torch.equal(first.codes, other.codes)


def test_batch_shapes_and_distinct_samples(transformer, fox, lighthouse):
    both = TextCondition.from_features(fox.split() + lighthouse.split())
    result = _sampled(transformer, both, batch_size=2, h_div_w=0.5)
    schedule = get_schedule(0.5, "0.06M")
    assert [tuple(b.shape) for b in result.bits] == [(4, h, w, 32) for h, w in schedule.grids]
    assert result.codes.shape == (4, 32, *schedule.final_grid)
    assert set(torch.unique(torch.cat([b.flatten() for b in result.bits])).tolist()) == {0, 1}
    assert not torch.equal(result.codes[0], result.codes[1])           # same prompt, different draws


def test_without_guidance_no_unconditional_rows(transformer, fox):
    sampling = SamplingConfig(pixels="0.06M", cfg=1.0, tau=1.0)
    sampler = ScaleSampler(transformer, fox, transformer.unconditional_text(fox.lengths), sampling)
    assert sampler.cache.keys[0].shape[0] == 1 and sampler.context.cond.shape[0] == 1


def test_dropping_the_unconditional_half_after_the_last_guided_scale_changes_nothing(transformer, fox):
    """Upstream runs [cond; uncond] to the end once any scale guides; we stop the uncond half after the last
    guided scale. Since nothing later reads its KV cache, the bits must be identical."""
    schedule = get_schedule(1.0, "0.06M")
    cfg = [4.0, 3.0, 3.0, 1.0, 1.0, 1.0, 1.0]
    sampling = SamplingConfig(pixels="0.06M", cfg=cfg, tau=1.0, top_k=900, top_p=0.97, seed=4)

    def run(keep_uncond_to_end: bool):
        with torch.inference_mode():
            sampler = ScaleSampler(transformer, fox, transformer.unconditional_text(fox.lengths), sampling)
            if keep_uncond_to_end:
                sampler.uncond_until = schedule.num_scales
            for scale in range(schedule.num_scales):
                sampler.step(scale)
            return sampler.result()
    lean = run(False)
    assert lean.bits and run(True).bits and _same(lean, run(True))


def test_learned_unconditional_text_as_negative_equals_no_negative(transformer, fox):
    negative = transformer.unconditional_text(fox.lengths)
    assert _same(_sampled(transformer, fox, seed=2), _sampled(transformer, fox, negative=negative, seed=2))


def test_negative_prompt_changes_the_image(transformer, fox, lighthouse):
    plain = _sampled(transformer, fox, seed=2)
    steered = _sampled(transformer, fox, negative=lighthouse, seed=2)
    assert not torch.equal(plain.codes, steered.codes)


def test_an_interrupt_at_any_scale_leaves_the_model_clean(transformer, fox):
    """Stopped after any scale (the callback raises, as ComfyUI's cancel does), the next identical run gives
    the same image as an uninterrupted one: no state survives in the transformer."""
    reference = _sampled(transformer, fox, seed=11)

    class Stop(BaseException):    # ComfyUI's InterruptProcessingException derives from BaseException
        pass

    for stop_at in range(8):
        def stop(done, total, codes):
            if done == stop_at:
                raise Stop
        with pytest.raises(Stop):
            _sampled(transformer, fox, seed=11, callback=stop)
        assert _same(reference, _sampled(transformer, fox, seed=11)), stop_at


def test_progress_callback_counts_scales(transformer, fox):
    seen = []
    _sampled(transformer, fox, callback=lambda done, total, codes: seen.append((done, total, codes.clone())))
    assert [(done, total) for done, total, _ in seen] == [(i, 7) for i in range(0, 8)]   # 0 set up, then per scale
    assert not seen[0][2].any()                                    # nothing summed before the first scale
    final = _sampled(transformer, fox)
    assert torch.equal(seen[-1][2], final.codes)                   # the last call sees the result's codes


def test_top_k_1_is_greedy_and_top_p_makes_confident_bits_deterministic():
    logits = torch.tensor([[[[0.0, 2.0], [1.0, -1.0], [0.0, 0.1]]]])         # [1, 1, 3, 2]
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        assert sample_bits(logits, 1, 0.0, [generator]).tolist() == [[[1, 0, 1]]]
    # p(minority) of bit 0 is 0.12 > 0.03: random; with top_p 0.85 it is cut (0.12 <= 0.15)
    draws = torch.stack([sample_bits(logits, 0, 0.85, [generator]) for _ in range(50)])
    assert (draws[..., 0] == 1).all() and (draws[..., 1] == 0).all()
    assert draws[..., 2].unique().numel() == 2                                 # a 52/48 bit stays random


def _upstream_sample_bits(logits, top_k, top_p, generator):
    """Upstream's sampler (sample_with_top_k_top_p_also_inplace_modifying_logits_ on [*, 2] bit logits)."""
    logits = logits.clone()
    if top_k > 0:
        kth_best = logits.topk(min(top_k, 2), dim=-1).values[..., -1:]
        logits[logits < kth_best] = -torch.inf
    if top_p > 0:
        ascending, order = logits.sort(dim=-1)
        drop = ascending.softmax(dim=-1).cumsum(dim=-1) <= 1 - top_p
        drop[..., -1:] = False
        logits[drop.scatter(-1, order, drop)] = -torch.inf
    drawn = torch.multinomial(logits.softmax(dim=-1).view(-1, 2), 1, replacement=True, generator=generator)
    return drawn.view(logits.shape[:-1]).to(torch.uint8)


@pytest.mark.parametrize("top_k", [0, 1, 2, 900])
@pytest.mark.parametrize("top_p", [0.0, 0.3, 0.5, 0.6, 0.97, 1.0])
def test_sample_bits_draws_what_torch_multinomial_draws(top_k, top_p):
    """Same generator state -> the same bits as upstream's filter + torch.multinomial, ties and -inf included."""
    logits = torch.randn(1, 100, 8, 2, generator=torch.Generator().manual_seed(3)) * 4
    logits[0, :10, :, 1] = logits[0, :10, :, 0]                     # exact ties
    logits[0, 50:55, :, 0] = -torch.inf                              # an outcome already excluded
    logits[0, 55:60] = logits[0, 55:60].round()                      # ties and near-ties after rounding
    for seed in range(5):
        ours = sample_bits(logits, top_k, top_p, [torch.Generator().manual_seed(seed)])
        upstream = _upstream_sample_bits(logits, top_k, top_p, torch.Generator().manual_seed(seed))
        assert torch.equal(ours, upstream)


def test_non_finite_logits_raise_a_clear_error(fox):
    """An fp16 overflow (here: one FFN's weights scaled past fp16's range) ends the run with a named error,
    where torch.multinomial used to raise on NaN probabilities."""
    transformer = load_transformer(FIXTURES / "infinity_tiny.safetensors", "cpu", torch.float16, prepack=False)
    with torch.no_grad():
        transformer.blocks[0].ffn.fc2.weight.mul_(1e5)
    with pytest.raises(InfinityError, match="NaN or infinite logits.*bf16 or fp32"):
        _sampled(transformer, fox)


def test_bad_arguments_are_named(transformer, fox):
    with pytest.raises(InfinityError, match="^cfg lists 8 values but the schedule has 7 scales"):
        _sampled(transformer, fox, cfg=[3.0] * 8)
    with pytest.raises(InfinityError, match="^tau must be"):
        _sampled(transformer, fox, tau=0.0)
    with pytest.raises(InfinityError, match="^batch_size must be in 1..64"):
        _sampled(transformer, fox, batch_size=0)
    with pytest.raises(InfinityError, match="^pixels must be one of"):
        _sampled(transformer, fox, pixels="4K")
    with pytest.raises(InfinityError, match=r"either config or the settings \['seed'\]"):
        generate(transformer, fox, config=SamplingConfig(pixels="0.06M"), seed=4)
    with pytest.raises(InfinityError, match="128 channels but the transformer expects 256"):
        _sampled(transformer, TextCondition.from_features([torch.zeros(3, 128)]))


def test_bf16_runs_and_stays_close(fox):
    low = load_transformer(FIXTURES / "infinity_tiny.safetensors", "cpu", torch.bfloat16)
    full = load_transformer(FIXTURES / "infinity_tiny.safetensors", "cpu", torch.float32)
    settings = dict(pixels="0.06M", cfg=3.0, tau=1.0, top_k=1, top_p=0.0, seed=0)
    a, b = generate(low, fox, **settings), generate(full, fox, **settings)
    agreement = torch.cat([(x == y).flatten() for x, y in zip(a.bits, b.bits)]).float().mean()
    assert agreement > 0.9 and torch.isfinite(a.codes).all()


def test_image_i_of_a_batch_is_the_single_run_with_seed_plus_i(transformer, fox, lighthouse):
    """The batch rule: image i (prompt-major) draws from seed + i alone, so a batch can be found again image by
    image, and a batch of two prompts is the four single runs."""
    both = TextCondition.from_features(fox.split() + lighthouse.split())
    batch = _sampled(transformer, both, batch_size=2, seed=5)
    for index, (prompt, seed) in enumerate([(fox, 5), (fox, 6), (lighthouse, 7), (lighthouse, 8)]):
        single = _sampled(transformer, prompt, seed=seed)
        assert all(torch.equal(b[index:index + 1], s) for b, s in zip(batch.bits, single.bits)), index
        torch.testing.assert_close(batch.codes[index:index + 1], single.codes, rtol=0, atol=1e-6)


def test_image_seeds_give_each_image_the_single_run_of_its_own_seed(transformer, fox, lighthouse):
    """Unrelated requests in one batch (the batch command): image i is the single run with image_seeds[i]."""
    both = TextCondition.from_features(fox.split() + lighthouse.split())
    batch = _sampled(transformer, both, image_seeds=[41, 7])
    for index, (prompt, seed) in enumerate([(fox, 41), (lighthouse, 7)]):
        assert _same_image(batch, index, _sampled(transformer, prompt, seed=seed)), index
    with pytest.raises(InfinityError, match="image_seeds has 1 seeds for 2 images"):
        _sampled(transformer, both, image_seeds=[1])
    with pytest.raises(InfinityError, match="seed must be in"):
        _sampled(transformer, fox, image_seeds=[-1])


def test_the_largest_seed_runs_and_wraps_for_the_next_image(transformer, fox):
    top = 2 ** 64 - 1
    batch = _sampled(transformer, fox, seed=top, batch_size=2)
    assert _same_image(batch, 1, _sampled(transformer, fox, seed=0))


def _same_image(batch, index, single):
    return all(torch.equal(b[index:index + 1], s) for b, s in zip(batch.bits, single.bits))
