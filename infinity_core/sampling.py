"""Next-scale bitwise sampling: the loop that turns a text condition into multi-scale bit maps.

Port of FoundationVision/Infinity `Infinity.autoregressive_infer_cfg` (bitwise BSQ path, CFG on
logits, `cfg_insertion_layer=[0]` as every published entry point passes) and
`sample_with_top_k_top_p_also_inplace_modifying_logits_`. For each scale (h, w) of the schedule:

    hidden = blocks(input tokens of this scale, KV cache of all earlier scales, text)
    logits = head(hidden) / tau, then cfg * cond + (1 - cfg) * uncond
    bits   = sample each bit from its 2-way softmax (top-k / top-p, one multinomial per scale and image)
    codes  = bits -> +-1/sqrt(d);  summed_codes += upsample(codes);  next input = resize(summed_codes)

Shapes: B images, l = h*w tokens of the current scale, d bits per token (56 = 4 x 14 for the 8B's
2x2 patchify), C width; `rows` is 2B while the unconditional half is still needed, else B.
"""
from __future__ import annotations

import logging
from functools import partial
from math import prod
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .compiled import CompileConfig, compiled_step
from .errors import InfinityError
from .known_image import KnownImage, known_image, vae_grids
from .sampling_config import PerScale, SamplingConfig, guided_until
from .schedules import Schedule
from .speed import pick_tokens, put_tokens, speed_policy, take_rotation, take_tokens, upsample_hidden
from .text import TextCondition
from .user_text import quoted
from .vae.bsq import PATCHIFY_FACTOR, accumulate_codes, bits_to_codes, next_scale_input, unpatchify_bits
from .transformer.kv_cache import KVCache, cached_tokens
from .transformer.model import InfinityTransformer
from .transformer.rope import rope_table

log = logging.getLogger(__name__)

# callback(scales done, scales in total, summed codes [B, d, H, W] so far: a read-only view, for previews).
# It is called with 0 once the text is prepared and the KV cache allocated, then after every scale; it
# may raise to stop the run.
ProgressCallback = Callable[[int, int, torch.Tensor], None]


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


def exponential_draws(shape: tuple[int, ...], generators: Sequence[torch.Generator], device) -> torch.Tensor:
    """Exp(1) draws [B, l, d, 2], image i's from generators[i] (so each image's draws match a run of its own)."""
    draws = torch.empty(shape, device=device)
    for image, generator in zip(draws, generators):
        image.exponential_(generator=generator)
    return draws


def sample_bits(logits: torch.Tensor, top_k: int, top_p: float,
                generators: Sequence[torch.Generator]) -> torch.Tensor:
    """Bit logits [B, l, d, 2] -> bits [B, l, d] uint8: upstream's top-k / top-p filter, then one
    `torch.multinomial(probs.view(-1, 2), 1)` draw per image, here without the multinomial call.

    A one-sample multinomial draw is `argmax(probs / q)` with q ~ Exp(1) drawn from the generator for
    every entry (torch's own algorithm); it is written out because the call's validation passes cost
    more than the draw at the small scales. A dropped outcome gets probability 0 (upstream's softmax
    over its -inf logit); the kept one's value no longer matters, so the draws are the same."""
    if top_k == 1:     # top-k keeps the k best of a bit's 2 outcomes: only k = 1 drops one
        logits = logits.masked_fill(logits < logits.amax(dim=-1, keepdim=True), -torch.inf)
    probs = logits.softmax(dim=-1)                                                 # [B, l, d, 2]
    if top_p > 0:
        probs = probs.masked_fill(_outside_top_p(logits, probs, top_p), 0.0)
    race = probs / exponential_draws(probs.shape, generators, probs.device)        # [B, l, d, 2]
    return race.argmax(dim=-1).to(torch.uint8)


def scale_rotations(schedule: Schedule, head_dim: int, device) -> list[torch.Tensor | None]:
    """Per scale the RoPE table [2, h*w, hd/2] (cos, sin), None where it is the identity (the 1x1 scale: its
    one token sits at (0, 0)), so that scale skips the rotation."""
    tables = rope_table(schedule, head_dim).split([h * w for h, w in schedule.grids], dim=1)
    return [None if h * w == 1 else table.to(device) for (h, w), table in zip(schedule.grids, tables)]


class ScaleSampler:
    """The state of one generation: KV cache, random generators, summed codes and the next scale's input.

    `step(scale)` is the algorithm: logits (transformer and head, tempered and guided), bits sampled from
    them (or the known image's), their codes added to the sum, the next scale's input resized from it.
    The speed mode (speed.py) says which rows (guidance per scale) and which tokens (per scale, how many run
    through the transformer; 0 skips it) the transformer computes."""

    def __init__(self, model: InfinityTransformer, text: TextCondition, uncond_text: TextCondition,
                 config: SamplingConfig, known: KnownImage | None = None, compile: CompileConfig | None = None,
                 image_seeds: Sequence[int] | None = None):
        self.model, self.config, self.known = model, config, known
        engine = None if compile is None else compiled_step(model, compile)
        self.forward_scale = model.forward_scale if engine is None else partial(engine, model)
        self.schedule = schedule = config.schedule
        self.batch = text.batch_size
        policy = speed_policy(config.speed)
        self.cfg_per_scale = policy.cfg_per_scale(config.cfg_per_scale)
        self.kept_tokens = policy.kept_tokens(schedule.grids)                # per scale, tokens through the blocks
        # The unconditional half runs while any remaining scale guides (its KV cache feeds later scales).
        self.uncond_until = guided_until(self.cfg_per_scale)
        # The transformer runs up to the last scale that samples; a kept scale before it only fills the cache.
        self.run_until = max((s + 1 for s in range(schedule.num_scales)
                              if known is None or not known.keeps_whole(s)), default=0)
        self.context = model.prepare_text(text.concat(uncond_text) if self.uncond_until else text)
        self.cond_context = self.context.rows(self.batch)                   # once the unconditional half stops
        rows = 2 * self.batch if self.uncond_until else self.batch
        arch = model.config
        self.cache = (KVCache if engine is None else engine.cache)(
            arch.depth, rows, arch.num_heads, arch.head_dim, cached_tokens(schedule), model.compute_dtype, model.device)
        self.rotations = scale_rotations(schedule, arch.head_dim, model.device)
        seeds = image_seeds if image_seeds is not None else [config.image_seed(i) for i in range(self.batch)]
        self.generators = [torch.Generator(model.device).manual_seed(seed) for seed in seeds]
        self.patchify = arch.spatial_patchify
        self.tokens = model.start_tokens(self.context)                       # [rows, 1, C]: next scale's input
        self.hidden = None     # [rows, l, C] the last scale's hidden states, kept when the next scale is pruned
        latent_bits = arch.bits_per_token // (PATCHIFY_FACTOR ** 2 if self.patchify else 1)
        final_h, final_w = vae_grids(schedule, arch)[-1]
        self.summed_codes = torch.empty(self.batch, latent_bits, 1, final_h, final_w, device=model.device,
                                        memory_format=torch.channels_last_3d).zero_()   # [B, dv, 1, H, W]
        # the image's own partial sum, which the kept region of `summed_codes` follows (inpainting only)
        self.image_codes = None    # [n, dv, 1, H, W], n = 1 for one picture under the whole batch
        if known is not None and known.keep_latents is not None:
            pictures = known.vae_bits[0].shape[0]
            self.image_codes = torch.zeros_like(self.summed_codes[:1]).expand(pictures, -1, -1, -1, -1)
        self.bits: list[torch.Tensor] = []
        # sum of every sampled scale's logits: finite unless one of them is NaN or infinite (|logits| are far
        # below float32's range); read once at the end, so no host sync inside the loop
        self.logit_sum = torch.zeros((), device=model.device)
        # fp16 can overflow: then each scale is checked (one host read a scale), so a run stops where it happens
        self.check_each_scale = model.compute_dtype == torch.float16

    def rows(self, scale: int) -> int:
        return 2 * self.batch if scale < self.uncond_until else self.batch

    def forward(self, scale: int):
        """The transformer on the pending scale, writing its KV cache: hidden [rows, l, C] and their context.
        At a pruned scale only the kept tokens run; the others take the coarser scale's states (speed.py)."""
        grid, kept, rows = self.schedule.grids[scale], self.kept_tokens[scale], self.rows(scale)
        context = self.context if scale < self.uncond_until else self.cond_context
        if kept == prod(grid):
            self.cache.begin_scale(kept)
            hidden = self.forward_scale(self.tokens, scale, self.rotations[scale], context, self.cache)
        else:
            hidden = upsample_hidden(self.hidden, self.schedule.grids[scale - 1], grid, rows)   # [rows, l, C]
            if kept:
                index = pick_tokens(self.tokens[:self.batch], kept, self.redrawn(scale))       # [B, kept]
                self.cache.begin_scale(kept)
                own = self.forward_scale(take_tokens(self.tokens, index), scale,
                                         take_rotation(self.rotations[scale], index, rows), context, self.cache)
                hidden = put_tokens(hidden, own, index)
        pruned_next = scale + 1 < self.schedule.num_scales and self.kept_tokens[scale + 1] < prod(self.schedule.grids[scale + 1])
        self.hidden = hidden if pruned_next else None
        return hidden, context

    def redrawn(self, scale: int) -> torch.Tensor | None:
        """[n, l, 1] bool: the tokens inpainting redraws at `scale` (None without a mask)."""
        keep = None if self.known is None else self.known.keep_tokens
        return None if keep is None else ~keep[scale]

    def scale_logits(self, scale: int) -> torch.Tensor:
        """Guided, tempered bit logits [B, l, d, 2] of the pending scale."""
        hidden, context = self.forward(scale)                                # [rows, l, C]
        cfg, tau = self.cfg_per_scale[scale], self.config.tau_per_scale[scale]
        if cfg == 1:    # the unconditional rows, if still running, only feed the KV cache
            hidden, context = hidden[:self.batch], self.cond_context
        logits = self.model.logits(hidden, context).mul(1 / tau)            # [rows, l, 2d]
        if cfg != 1:
            logits = cfg_mix(logits, cfg)
        h, w = self.schedule.grids[scale]
        return logits.view(self.batch, h * w, -1, 2)

    def step(self, scale: int) -> None:
        """One scale: sample its bits (or take the known image's), then commit them."""
        known = self.known
        if known is not None and known.keeps_whole(scale):
            if scale + 1 < self.run_until:      # a later scale samples: it attends to this scale's keys/values
                self.forward(scale)
            h, w = self.schedule.grids[scale]   # the draws a sampled scale makes, so later scales match a plain run
            exponential_draws((self.batch, h * w, self.model.config.bits_per_token, 2), self.generators,
                              self.model.device)
            bits = known.token_bits[scale].expand(self.batch, -1, -1)          # [B, l, d]
        else:
            logits = self.scale_logits(scale)                                # [B, l, d, 2]
            self.logit_sum.add_(logits.sum())
            if self.check_each_scale and not bool(self.logit_sum.isfinite()):   # fp16 overflows show at once
                raise InfinityError(f"the transformer overflowed float16 at scale {scale + 1} of "
                                    f"{self.schedule.num_scales} (NaN or infinite logits); load it in bf16 or fp32")
            bits = sample_bits(logits, self.config.top_k, self.config.top_p, self.generators)   # [B, l, d]
            if known is not None and known.keep_tokens is not None:
                bits = torch.where(known.keep_tokens[scale], known.token_bits[scale], bits)
        self.commit(scale, bits)

    def commit(self, scale: int, bits: torch.Tensor) -> None:
        """Accept the bits [B, l, d] of `scale`: add their codes, prepare the next scale's input tokens."""
        h, w = self.schedule.grids[scale]
        grid_bits = bits.reshape(self.batch, h, w, -1)                       # [B, h, w, d]
        if self.patchify:
            grid_bits = unpatchify_bits(grid_bits)                           # [B, 2h, 2w, d/4]
        self.bits.append(grid_bits)
        self.summed_codes = accumulate_codes(self.summed_codes, bits_to_codes(grid_bits))   # [B, dv, 1, H, W]
        if self.image_codes is not None:    # the kept region follows the image's own residual chain
            self.image_codes = accumulate_codes(self.image_codes, bits_to_codes(self.known.vae_bits[scale]))
            self.summed_codes = torch.where(self.known.keep_latents, self.image_codes, self.summed_codes
                                            ).contiguous(memory_format=torch.channels_last_3d)
        if scale + 1 == self.schedule.num_scales:
            return
        next_input = next_scale_input(self.summed_codes, self.schedule.grids[scale + 1], self.patchify)   # [B, l', d]
        tokens = self.model.embed_bits_input(next_input)                     # [B, l', C]
        copies = self.rows(scale + 1) // self.batch                          # 2 while guided: cond, uncond
        self.tokens = tokens.expand(copies, *tokens.shape).flatten(0, 1)    # [rows, l', C] (a view for B = 1)

    @property
    def codes(self) -> torch.Tensor:
        """The summed codes so far, [B, d, H, W] (a view)."""
        return self.summed_codes.squeeze(-3)

    def result(self) -> GenerationResult:
        if not bool(self.logit_sum.isfinite()):
            raise InfinityError("the transformer produced NaN or infinite logits; if it runs in fp16, load it "
                                "in bf16 or fp32 (the weights may overflow fp16)")
        return GenerationResult(self.bits, self.codes, self.schedule)


def _broadcast_negative(negative: TextCondition, cond: TextCondition, batch_size: int) -> TextCondition:
    if negative.batch_size == 1:
        return negative.repeat_each(cond.batch_size * batch_size)
    if negative.batch_size == cond.batch_size:
        return negative.repeat_each(batch_size)
    raise InfinityError(f"the negative condition has {negative.batch_size} prompts; "
                        f"give 1 or as many as the positive ({cond.batch_size})")


def check_image_seeds(seeds: Sequence[int], images: int) -> tuple[int, ...]:
    """One seed per image, each one SamplingConfig accepts."""
    seeds = tuple(seeds)
    if len(seeds) != images:
        raise InfinityError(f"image_seeds has {len(seeds)} seeds for {images} images; give one per image")
    return tuple(SamplingConfig(seed=seed).seed for seed in seeds)


_DEFAULTS = SamplingConfig()


def generate(transformer: InfinityTransformer, cond: TextCondition, negative: TextCondition | None = None, *,
             h_div_w: float = _DEFAULTS.h_div_w, pixels: str = _DEFAULTS.pixels, cfg: PerScale = _DEFAULTS.cfg,
             tau: PerScale = _DEFAULTS.tau, top_k: int = _DEFAULTS.top_k, top_p: float = _DEFAULTS.top_p,
             seed: int = _DEFAULTS.seed, batch_size: int = _DEFAULTS.batch_size, speed: str = _DEFAULTS.speed,
             callback: ProgressCallback | None = None, init_bits: Sequence[torch.Tensor] | None = None,
             init_scales: int = 0, mask: torch.Tensor | None = None,
             config: SamplingConfig | None = None, compile: CompileConfig | None = None,
             image_seeds: Sequence[int] | None = None) -> GenerationResult:
    """Sample `batch_size` images per prompt of `cond`; decode `result.codes` with the paired VAE.

    The settings are `SamplingConfig`'s fields, with its defaults; or pass a ready `config` and leave them
    out. Without `negative`, the unconditional half uses the model's learned unconditional text. Image i of
    the output (prompt-major) draws its random numbers from seed + i alone, so it is the image a single run
    with that seed gives.

    From a picture: `init_bits` is the per-scale list of [1 or B, h, w, d] bits on the VAE grid
    (`vae.encode(...).bits`, `image_in.encode_image`, or an earlier result's `.bits`); scales below
    `init_scales` take them (the official gt_leak). `mask` [H, W] or [B, H, W] in 0..1 at the output size,
    1 = redraw, inpaints: from `init_scales` on, the rest of the picture is kept (see known_image.py).

    `compile`: run the transformer's scale step through torch.compile (compiled.py; a plain-weight model).
    `image_seeds` gives each output image its own seed instead of seed + i (one per image, prompt-major): a
    batch of unrelated requests, each the image a single run with its seed gives (the batch command)."""
    settings = {"h_div_w": h_div_w, "pixels": pixels, "cfg": cfg, "tau": tau, "top_k": top_k, "top_p": top_p,
                "seed": seed, "batch_size": batch_size, "speed": speed}
    if config is None:
        config = SamplingConfig(**settings)
    else:
        changed = sorted(name for name, value in settings.items() if value != getattr(_DEFAULTS, name))
        if changed:
            raise InfinityError(f"pass either config or the settings {changed}, not both")
    for name, condition in (("cond", cond), ("negative", negative)):
        if condition is not None and not isinstance(condition, TextCondition):
            raise InfinityError(f"{name}: expected a TextCondition (text_encoder.encode(prompt)), got "
                                f"{type(condition).__name__} {quoted(condition)}; InfinityPipeline.sample takes "
                                "prompts as text")
        if condition is not None:
            condition.check_finite(name)
    if cond.channels != transformer.config.text_channels:
        raise InfinityError(f"the text condition has {cond.channels} channels but the transformer expects "
                            f"{transformer.config.text_channels}; use the text encoder the model was trained with")
    text = cond.repeat_each(config.batch_size)
    if image_seeds is not None:
        image_seeds = check_image_seeds(image_seeds, text.batch_size)
    known = known_image(init_bits, init_scales, mask, config.schedule, transformer.config, text.batch_size,
                        transformer.device)
    uncond = (transformer.unconditional_text(text.lengths) if negative is None
              else _broadcast_negative(negative, cond, config.batch_size))
    num_scales = config.schedule.num_scales
    with torch.inference_mode():
        sampler = ScaleSampler(transformer, text, uncond, config, known, compile, image_seeds)
        for scale in range(num_scales):
            if callback is not None:
                callback(scale, num_scales, sampler.codes)
            sampler.step(scale)
        if callback is not None:
            callback(num_scales, num_scales, sampler.codes)
        return sampler.result()
