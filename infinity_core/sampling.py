"""Next-scale bitwise sampling: the loop that turns a text condition into multi-scale bit maps.

Port of FoundationVision/Infinity `Infinity.autoregressive_infer_cfg` (bitwise BSQ path, CFG on
logits, `cfg_insertion_layer=[0]` as every published entry point passes) and
`sample_with_top_k_top_p_also_inplace_modifying_logits_`. For each scale (h, w) of the schedule:

    hidden = blocks(input tokens of this scale, KV cache of all earlier scales, text)
    logits = head(hidden) / tau, then cfg * cond + (1 - cfg) * uncond
    bits   = sample each bit from its 2-way softmax (top-k / top-p, one multinomial per scale)
    codes  = bits -> +-1/sqrt(d);  summed_codes += upsample(codes);  next input = resize(summed_codes)

Shapes: B images, l = h*w tokens of the current scale, d bits per token (56 = 4 x 14 for the 8B's
2x2 patchify), C width; `rows` is 2B while the unconditional half is still needed, else B.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .errors import InfinityError
from .schedules import Schedule, get_schedule
from .text import TextCondition
from .tokenizer.bsq import PATCHIFY_FACTOR, accumulate_codes, bits_to_codes, next_scale_input, unpatchify_bits
from .transformer.kv_cache import KVCache
from .transformer.model import InfinityTransformer
from .transformer.rope import rope_table

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]   # (scales done, scales in total); may raise to stop the run.
# It is called with 0 once the text is prepared and the KV cache allocated, then after every scale.


@dataclass(frozen=True)
class SamplingConfig:
    """Sampling knobs, one value per scale. Defaults are those of the published 2B demo
    (tools/interactive_infer.ipynb: cfg 3, tau 0.5) with gen_one_img's top_k 900 / top_p 0.97."""

    cfg: tuple[float, ...]     # classifier-free guidance on logits; 1 = no guidance at that scale
    tau: tuple[float, ...]     # temperature: logits are multiplied by 1 / tau before the cfg mix
    top_k: int = 900           # 0 = off; a bit has only 2 outcomes, so only top_k = 1 (greedy) changes anything
    top_p: float = 0.97        # 0 = off; a bit whose minority probability <= 1 - top_p becomes deterministic

    @classmethod
    def build(cls, num_scales: int, cfg: float | Sequence[float] = 3.0, tau: float | Sequence[float] = 0.5,
              top_k: int = 900, top_p: float = 0.97) -> "SamplingConfig":
        """Broadcast scalars to every scale; a list must cover every scale (extra entries are ignored)."""
        def per_scale(name: str, value) -> tuple[float, ...]:
            values = [float(value)] * num_scales if isinstance(value, (int, float)) else [float(v) for v in value]
            if len(values) < num_scales:
                raise InfinityError(f"'{name}' lists {len(values)} values but the schedule has {num_scales} scales")
            return tuple(values[:num_scales])
        config = cls(per_scale("cfg", cfg), per_scale("tau", tau), int(top_k), float(top_p))
        if min(config.tau) <= 0:
            raise InfinityError(f"'tau' must be > 0 at every scale, got {config.tau}")
        if config.top_k < 0 or not 0.0 <= config.top_p <= 1.0:
            raise InfinityError(f"'top_k' must be >= 0 and 'top_p' in [0, 1]; got top_k={top_k}, top_p={top_p}")
        return config


@dataclass(frozen=True)
class GenerationResult:
    bits: list[torch.Tensor]      # per scale [B, h, w, d] uint8 0/1 (VAE grid and VAE bits)
    codes: torch.Tensor           # [B, d, H, W] float32 summed codes: the VAE decoder's input
    schedule: Schedule


def cfg_mix(logits: torch.Tensor, cfg: float) -> torch.Tensor:
    """[2B, ...] (conditional half first) -> [B, ...]: cfg * cond + (1 - cfg) * uncond."""
    half = logits.shape[0] // 2
    return cfg * logits[:half] + (1 - cfg) * logits[half:]


def _outside_top_p(logits: torch.Tensor, probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Which of each bit's two outcomes top-p drops, [B, l, d, 2] bool.

    Upstream sorts a bit's outcomes ascending and drops the first (the smaller logit; outcome 0 on a
    tie) when its probability is <= 1 - top_p; the second always stays."""
    if top_p > 0.5:    # 1 - top_p < 0.5: only the less likely outcome (the smaller logit) can be that unlikely
        return probs <= 1 - top_p
    first_is_zero = logits[..., :1] <= logits[..., 1:]                             # [B, l, d, 1]
    return torch.cat((first_is_zero, ~first_is_zero), dim=-1)   # its probability is <= 0.5 <= 1 - top_p


def sample_bits(logits: torch.Tensor, top_k: int, top_p: float, generator: torch.Generator) -> torch.Tensor:
    """Bit logits [B, l, d, 2] -> bits [B, l, d] uint8: upstream's top-k / top-p filter, then one
    `torch.multinomial(probs.view(-1, 2), 1)` draw over all B*l*d bits, here without the multinomial call.

    A one-sample multinomial draw is `argmax(probs / q)` with q ~ Exp(1) drawn from the generator for
    every entry (torch's own algorithm); it is written out because the call's validation passes cost
    more than the draw at the small scales. A dropped outcome gets probability 0 (upstream's softmax
    over its -inf logit); the kept one's value no longer matters, so the draws are the same."""
    if top_k == 1:     # top-k keeps the k best of a bit's 2 outcomes: only k = 1 drops one
        logits = logits.masked_fill(logits < logits.amax(dim=-1, keepdim=True), -torch.inf)
    probs = logits.softmax(dim=-1)                                                 # [B, l, d, 2]
    if top_p > 0:
        probs = probs.masked_fill(_outside_top_p(logits, probs, top_p), 0.0)
    race = probs / torch.empty_like(probs).exponential_(generator=generator)       # [B, l, d, 2]
    return race.argmax(dim=-1).to(torch.uint8)


class ScaleSampler:
    """The state of one generation: KV cache, random generator, summed codes and the next scale's input."""

    def __init__(self, model: InfinityTransformer, text: TextCondition, uncond_text: TextCondition,
                 schedule: Schedule, sampling: SamplingConfig, seed: int):
        config, device = model.config, model.pos_start.device
        self.model, self.schedule, self.sampling = model, schedule, sampling
        self.batch = text.batch_size
        # The unconditional half runs while any remaining scale guides (its KV cache feeds later scales).
        self.uncond_until = max((i + 1 for i, c in enumerate(sampling.cfg) if c != 1), default=0)
        rows = 2 * self.batch if self.uncond_until else self.batch
        self.context = model.prepare_text(text.concat(uncond_text) if self.uncond_until else text)
        self.cond_context = self.context.rows(self.batch)                   # once the unconditional half stops
        compute_dtype = model.blocks[0].sa.mat_qkv.weight.dtype
        last_h, last_w = schedule.grids[-1]
        self.cache = KVCache(config.depth, rows, config.num_heads, config.head_dim,
                             schedule.num_tokens - last_h * last_w, compute_dtype, device)
        # per scale [h*w, hd/2] complex; None where every token sits at (0, 0) (the 1x1 scale): the identity
        tables = rope_table(schedule, config.head_dim).split([h * w for h, w in schedule.grids])
        self.rotations = [None if bool((table == 1).all()) else table.to(device) for table in tables]
        self.generator = torch.Generator(device).manual_seed(seed)
        self.patchify = config.spatial_patchify
        self.tokens = model.start_tokens(self.context)                       # [rows, 1, C]: next scale's input
        latent_bits = config.bits_per_token // (PATCHIFY_FACTOR ** 2 if self.patchify else 1)
        final_h, final_w = self._vae_grid(-1)
        self.summed_codes = torch.empty(self.batch, latent_bits, 1, final_h, final_w, device=device,
                                        memory_format=torch.channels_last_3d).zero_()   # [B, d, 1, H, W]
        self.bits: list[torch.Tensor] = []
        # sum of every scale's logits: finite unless one of them is NaN or infinite (|logits| are far below
        # float32's range); read once at the end, so no host sync inside the loop
        self.logit_sum = torch.zeros((), device=device)

    def rows(self, scale: int) -> int:
        return 2 * self.batch if scale < self.uncond_until else self.batch

    def scale_logits(self, scale: int) -> torch.Tensor:
        """Run the transformer on the pending scale; guided, tempered bit logits [B, l, d, 2]."""
        h, w = self.schedule.grids[scale]
        self.cache.begin_scale(h * w)
        context = self.context if scale < self.uncond_until else self.cond_context
        hidden = self.model.forward_scale(self.tokens, scale, self.rotations[scale], context,
                                          self.cache)                        # [rows, l, C]
        cfg, tau = self.sampling.cfg[scale], self.sampling.tau[scale]
        if cfg == 1:    # the unconditional rows, if still running, only feed the KV cache
            hidden, context = hidden[:self.batch], self.cond_context
        logits = self.model.logits(hidden, context).mul(1 / tau)            # [rows, l, 2d]
        if cfg != 1:
            logits = cfg_mix(logits, cfg)
        return logits.view(self.batch, h * w, -1, 2)

    def commit(self, scale: int, bits: torch.Tensor) -> None:
        """Accept the bits [B, l, d] of `scale`: add their codes, prepare the next scale's input tokens."""
        h, w = self.schedule.grids[scale]
        grid_bits = bits.view(self.batch, h, w, -1)                          # [B, h, w, d]
        if self.patchify:
            grid_bits = unpatchify_bits(grid_bits)                           # [B, 2h, 2w, d/4]
        self.bits.append(grid_bits)
        self.summed_codes = accumulate_codes(self.summed_codes, bits_to_codes(grid_bits))   # [B, dv, 1, H, W]
        if scale + 1 == self.schedule.num_scales:
            return
        next_input = next_scale_input(self.summed_codes, self.schedule.grids[scale + 1], self.patchify)   # [B, l', d]
        tokens = self.model.embed_bits_input(next_input)                     # [B, l', C]
        copies = self.rows(scale + 1) // self.batch                          # 2 while guided: cond, uncond
        self.tokens = tokens.expand(copies, *tokens.shape).flatten(0, 1)    # [rows, l', C] (a view for B = 1)

    def _vae_grid(self, scale: int) -> tuple[int, int]:
        h, w = self.schedule.grids[scale]
        return (PATCHIFY_FACTOR * h, PATCHIFY_FACTOR * w) if self.patchify else (h, w)

    def step(self, scale: int) -> None:
        """Sample one scale."""
        logits = self.scale_logits(scale)
        self.logit_sum.add_(logits.sum())
        self.commit(scale, sample_bits(logits, self.sampling.top_k, self.sampling.top_p, self.generator))

    def result(self) -> GenerationResult:
        if not bool(self.logit_sum.isfinite()):
            raise InfinityError("the transformer produced NaN or infinite logits; if it runs in fp16, load it "
                                "in bf16 or fp32 (the weights may overflow fp16)")
        return GenerationResult(self.bits, self.summed_codes.squeeze(-3), self.schedule)


def _broadcast_negative(negative: TextCondition, cond: TextCondition, batch_size: int) -> TextCondition:
    if negative.batch_size == 1:
        return negative.repeat_each(cond.batch_size * batch_size)
    if negative.batch_size == cond.batch_size:
        return negative.repeat_each(batch_size)
    raise InfinityError(f"the negative condition has {negative.batch_size} prompts; "
                        f"give 1 or as many as the positive ({cond.batch_size})")


def generate(transformer: InfinityTransformer, cond: TextCondition, negative: TextCondition | None = None, *,
             h_div_w: float = 1.0, pixels: str = "1M", cfg: float | Sequence[float] = 3.0,
             tau: float | Sequence[float] = 0.5, top_k: int = 900, top_p: float = 0.97, seed: int = 0,
             batch_size: int = 1, callback: ProgressCallback | None = None) -> GenerationResult:
    """Sample `batch_size` images per prompt of `cond`; decode `result.codes` with the paired VAE.

    Without `negative`, the unconditional half uses the model's learned unconditional text."""
    if batch_size < 1:
        raise InfinityError(f"'batch_size' must be >= 1, got {batch_size}")
    if cond.channels != transformer.config.text_channels:
        raise InfinityError(f"the text condition has {cond.channels} channels but the transformer expects "
                            f"{transformer.config.text_channels}; use the text encoder the model was trained with")
    schedule = get_schedule(h_div_w, pixels)
    sampling = SamplingConfig.build(schedule.num_scales, cfg, tau, top_k, top_p)
    text = cond.repeat_each(batch_size)
    uncond = (transformer.unconditional_text(text.lengths) if negative is None
              else _broadcast_negative(negative, cond, batch_size))
    with torch.inference_mode():
        sampler = ScaleSampler(transformer, text, uncond, schedule, sampling, seed)
        for scale in range(schedule.num_scales):
            if callback is not None:
                callback(scale, schedule.num_scales)
            sampler.step(scale)
        if callback is not None:
            callback(schedule.num_scales, schedule.num_scales)
        return sampler.result()
