"""Stage 2 of the demo: train the Infinity transformer (and the tiny T5) on the frozen tokenizer's bits.

Follows FoundationVision/Infinity `trainer.py:InfinityTrainer.train_step` and `infinity.py:Infinity.forward`:

* teacher forcing over the whole scale pyramid in one block-causal pass (`forward_teacher`);
* inputs and labels from `self_correction.flip_requant` (bitwise self-correction, p ~ U[0, 0.3]);
* text dropout for classifier-free guidance: a caption's features are replaced by the learned
  `cfg_uncond` rows with probability `cond_drop_rate` = 0.1;
* bit loss: cross-entropy of each bit's two logits, mean over the d bits (`bitloss_type='mean'`), each
  scale weighted equally (`reweight_loss_by_scale=1`); unlike upstream, tokens over object pixels weigh
  `object_weight` times more (a lone object covers 11-14 % of an image; as in the VAE's foreground weighting);
* AdamW with gradient clipping (`tclip=2`); weights initialised as `init_weights` + `special_init`.

Trained progressively over sizes and aspect ratios, as Infinity is, in phases (`TransformerPhase`):
step k of a phase draws its batch from the pool of aspect `aspects[k % len]` and trains
`scale_cycle[k % len(scale_cycle)]`: a number of scales of the 0.06M schedule, or the whole 0.25M pyramid
(`FULL_0_25M`), whose first seven grids are the 0.06M ones. The first phase trains 1:1 alone on one-object
scenes, where layout, colour and shape are learnt on one set of grids (two-object scenes from the start cost
the shape: training/README.md); the second adds the other aspects, the 0.25M pyramid and two-object scenes.
To fit a CPU budget, most steps train only the first scales (upstream's `always_training_scales`
truncation). Where the object is and which colour it has are decided at the 2x2 and 4x4 scales, whose
tokens start out identical and must tell themselves apart through RoPE alone; the model learns that from
the captions only after ~1500-2000 steps, so the cycle spends 4/11 of the steps on those cheap short
prefixes (21 and 57 tokens), 3/11 on the first five scales (up to 8x8, where a lone object's shape is
mostly decided: 121 tokens), 3/11 on the first six (up to 12x12: 265 tokens) and 1/11 on the whole
pyramid (see training/README.md for why).
The encoder features of fixed pools of training images per size are computed once, with the frozen VAE
(`feature_pools`).

Shapes: B images, L tokens of the (possibly truncated) schedule, d bits, C width, Ct5 text channels.
"""
from __future__ import annotations

import itertools
import logging
import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from infinity_core.config import TransformerConfig
from infinity_core.schedules import Schedule, get_schedule
from infinity_core.text import TextCondition
from infinity_core.trained_sizes import TrainedSizes
from infinity_core.vae.autoencoder import BitwiseVAE
from infinity_core.transformer.model import InfinityTransformer

from .checkpoints import Checkpoints
from .schedule import LossLog, warmup_cosine
from .self_correction import flip_requant
from .feature_pools import PoolSize, SizePools, encode_size_pools
from .shapes import Canvas
from .text_model import CaptionTokenizer, TextModelConfig, build_text_model, caption_features
from .vae_trainer import DEMO_SIZES

log = logging.getLogger(__name__)

DEMO_TEXT = TextModelConfig()
DEMO_TRANSFORMER = TransformerConfig(depth=4, width=128, num_heads=4, ffn_hidden=512, bits_per_token=16,
                                     text_channels=DEMO_TEXT.d_model, text_maxlen=512, pool_heads=2,
                                     block_chunks=2)


FULL_0_25M = 0   # a `scale_cycle` entry: the whole 0.25M pyramid (10 scales) from the 0.25M pool
SHAPE_CYCLE = (3, 4, 5, 6, 5, 6, 3, 4, 5, 6, 7)   # 0.06M prefixes, weighted to the 8x8 and 12x12 grids


@dataclass(frozen=True)
class TransformerPhase:
    """`steps` training steps; step k of the phase uses aspect `aspects[k % len]` and `scale_cycle[k % len]`
    (keep the two lengths coprime, so every aspect meets every entry of the cycle). Each phase has its own
    learning-rate schedule: a warm-up to `learning_rate`, then a cosine down to 5 % of it at its last step, so
    every phase ends annealed (a phase that stops half-way down its cosine draws shapes worse)."""

    steps: int
    aspects: tuple[float, ...]
    scale_cycle: tuple[int, ...]
    learning_rate: float = 1e-3
    two_object_share: float = 0.0   # probability that a batch's image is a two-object scene


# The 1:1 phase is the shipped model's recipe on one-object scenes, annealed to its end; the mixed phase
# restarts lower, so that it carries what the first learnt over to the other grids rather than relearning it,
# and adds a few two-object scenes (a 30 % share in 1500 such steps on 1:1 cost 7 points of shape).
DEMO_PHASES = (
    TransformerPhase(steps=4400, aspects=(1.0,), scale_cycle=SHAPE_CYCLE, learning_rate=1e-3),
    TransformerPhase(steps=2500, aspects=DEMO_SIZES.aspects, scale_cycle=SHAPE_CYCLE + (FULL_0_25M,),
                     learning_rate=4e-4, two_object_share=0.1),
)


@dataclass(frozen=True)
class TransformerTrainConfig:
    architecture: TransformerConfig = DEMO_TRANSFORMER
    text: TextModelConfig = DEMO_TEXT
    sizes: TrainedSizes = DEMO_SIZES     # every aspect and budget a phase uses must be listed here
    phases: tuple[TransformerPhase, ...] = DEMO_PHASES
    batch_size: int = 16
    batch_size_0_25m: int = 4            # the 0.25M pyramid has 5x the tokens of the 0.06M one
    weight_decay: float = 0.01
    warmup_steps: int = 30               # of every phase
    grad_clip: float = 2.0
    cond_drop_rate: float = 0.1          # text dropout for classifier-free guidance
    max_flip: float = 0.3                # bitwise self-correction: flip ratio p ~ U{0, .., max_flip}
    object_weight: float = 5.0           # loss weight of object pixels' tokens (objects cover 11-14 %)
    # Training images whose encoder features are computed once, per aspect: at 0.06M, for the aspects the
    # first phase trains alone (4400 steps of 16 images), and for the others (a seventh of the later steps).
    pool_first_phase: PoolSize = PoolSize(single=2000, pair=400)
    pool_0_06m: PoolSize = PoolSize(single=800, pair=400)
    pool_0_25m: PoolSize = PoolSize(single=150, pair=50)
    pool_offset: int = 1_000_000         # first ShapesDataset index of the pool (apart from the VAE's images)
    pixels: str = "0.06M"                # the model's default pixel budget (carried in its file)
    checkpoint_every: int = 500

    def __post_init__(self):
        for phase in self.phases:
            unknown = set(phase.aspects) - set(self.sizes.aspects)
            if unknown or (FULL_0_25M in phase.scale_cycle and "0.25M" not in self.sizes.pixels):
                raise ValueError(f"phase {phase} trains a size outside {self.sizes}")
            if phase.two_object_share > 0 and not all(self.pool_size(aspect, pixels).pair
                                                      for aspect in phase.aspects for pixels in self.sizes.pixels):
                raise ValueError(f"phase {phase} draws two-object scenes from a pool that has none")

    def pool_size(self, aspect: float, pixels: str) -> PoolSize:
        if pixels == "0.25M":
            return self.pool_0_25m
        return self.pool_first_phase if aspect in self.phases[0].aspects else self.pool_0_06m

    @property
    def steps(self) -> int:
        return sum(phase.steps for phase in self.phases)

    @property
    def phase_ends(self) -> frozenset[int]:
        """The number of steps done at the end of each phase."""
        return frozenset(itertools.accumulate(phase.steps for phase in self.phases))


@dataclass
class TransformerTrainResult:
    transformer: InfinityTransformer
    text_model: nn.Module
    losses: LossLog = field(default_factory=LossLog)
    encode_seconds: float = 0.0
    train_seconds: float = 0.0


# --- initialisation -----------------------------------------------------------------------------------
def init_transformer(model: InfinityTransformer, *, std: float = 0.02, ada_init: float = 1e-3,
                     head_init: float = 0.02) -> None:
    """`init_param.init_weights(other_std=0.02)` then `Infinity.special_init(aln=1e-3, alng=1e-3, hd0=0.02, diva=1)`,
    plus the constructor-time inits (`pos_start`, pool query, `cfg_uncond`, `ada_gss`) of infinity.py / basic.py."""
    C, Ct5 = model.config.width, model.config.text_channels
    position_std = math.sqrt(1 / C / 3)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.trunc_normal_(module.weight, std=std)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.trunc_normal_(model.pos_start, std=position_std)
        nn.init.trunc_normal_(model.text_pool.mat_q, std=position_std)
        nn.init.trunc_normal_(model.cfg_uncond, std=1.2).div_(Ct5 ** 0.5)
        model.head_nm.ada_lin[-1].weight.mul_(ada_init)
        model.head.weight.mul_(head_init)
        proj_scale = 1 / math.sqrt(2 * model.config.depth)
        for block in model.blocks:
            block.ada_gss.copy_(torch.randn(block.ada_gss.shape) / C ** 0.5).mul_(ada_init)
            for layer in (block.sa.proj, block.ca.proj, block.ffn.fc2):
                layer.weight.mul_(proj_scale)


# --- loss ---------------------------------------------------------------------------------------------
def scale_balanced_weights(schedule: Schedule) -> torch.Tensor:
    """[L] token weights giving every scale the same total weight (`reweight_loss_by_scale`), summing to 1."""
    last_area = schedule.grids[-1][0] * schedule.grids[-1][1]
    weights = torch.cat([torch.full((h * w,), last_area / (h * w)) for h, w in schedule.grids])
    return weights / weights.sum()


def token_weights(pixel_weights: torch.Tensor, schedule: Schedule) -> torch.Tensor:
    """Latent-cell weights [B, 1, H, W] -> [B, L]: each token's mean pixel weight times its scale's share."""
    per_scale = [F.interpolate(pixel_weights, size=grid, mode="area").flatten(1) for grid in schedule.grids]
    return torch.cat(per_scale, dim=1) * scale_balanced_weights(schedule)


def bit_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Logits [B, L, 2d] (bit i's pair at 2i, 2i+1), labels [B, L, d], token weights [B, L] -> the weighted
    mean bit cross-entropy of each sample, averaged over the batch."""
    B, L, d = labels.shape
    per_bit = F.cross_entropy(logits.view(B, L, d, 2).permute(0, 3, 1, 2), labels, reduction="none")   # [B, L, d]
    return ((per_bit.mean(-1) * weights).sum(-1) / weights.sum(-1)).mean()


def truncated(schedule: Schedule, num_scales: int) -> Schedule:
    return Schedule(schedule.h_div_w, schedule.grids[:num_scales], schedule.rope_grid)


def text_with_dropout(model: InfinityTransformer, features: list[torch.Tensor], drop_rate: float,
                      generator: torch.Generator) -> TextCondition:
    """Replace each caption's features [len, Ct5] by `cfg_uncond[:len]` with probability `drop_rate`."""
    dropped = (torch.rand(len(features), generator=generator) < drop_rate).tolist()
    return TextCondition.from_features([model.cfg_uncond[:f.shape[0]] if drop else f
                                        for f, drop in zip(features, dropped)])


# --- training -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StepPlan:
    """What training step `step` of a run trains, and at which learning rate."""

    aspect: float
    pixels: str
    num_scales: int
    batch_size: int
    learning_rate: float
    two_object_share: float


def step_plan(config: TransformerTrainConfig, step: int) -> StepPlan:
    for phase in config.phases:
        if step < phase.steps:
            break
        step -= phase.steps
    else:
        raise ValueError(f"step {step} is past the last phase")
    aspect = phase.aspects[step % len(phase.aspects)]
    num_scales = phase.scale_cycle[step % len(phase.scale_cycle)]
    learning_rate = warmup_cosine(step, phase.steps, config.warmup_steps, phase.learning_rate)
    if num_scales == FULL_0_25M:
        return StepPlan(aspect, "0.25M", get_schedule(aspect, "0.25M").num_scales, config.batch_size_0_25m,
                        learning_rate, phase.two_object_share)
    return StepPlan(aspect, "0.06M", num_scales, config.batch_size, learning_rate, phase.two_object_share)


def encode_pools(vae: BitwiseVAE, seed: int, config: TransformerTrainConfig) -> dict[tuple[float, str], SizePools]:
    """The pools of every trained (aspect, pixel budget), each from its own dataset items (`offset` apart)."""
    pools = {}
    for pixels in config.sizes.pixels:
        for aspect in config.sizes.aspects:
            height, width = get_schedule(aspect, pixels).image_size
            pools[aspect, pixels] = encode_size_pools(vae, seed, config.pool_size(aspect, pixels),
                                                      config.pool_offset * (1 + len(pools)), config.object_weight,
                                                      Canvas(height, width))
    return pools


def train_transformer(config: TransformerTrainConfig, vae: BitwiseVAE, seed: int,
                      checkpoints: Checkpoints | None = None) -> TransformerTrainResult:
    """Train a fresh transformer and T5 against the frozen `vae`, deterministically by `seed`; with
    `checkpoints`, resume from the last one saved and save one every `config.checkpoint_every` steps and at the
    end of each phase."""
    torch.manual_seed(seed)
    started = time.perf_counter()
    pools = encode_pools(vae, seed, config)
    encode_seconds = time.perf_counter() - started
    log.info("encoded %d training images in %.0f s", sum(len(pool) for pool in pools.values()), encode_seconds)

    transformer = InfinityTransformer(config.architecture)
    init_transformer(transformer)
    text_model = build_text_model(config.text)
    transformer.train()
    text_model.train()
    tokenize = CaptionTokenizer()
    parameters = list(transformer.parameters()) + list(text_model.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=config.phases[0].learning_rate, betas=(0.9, 0.97),
                                  weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    result = TransformerTrainResult(transformer, text_model, encode_seconds=encode_seconds)
    modules = {"transformer": transformer, "text_model": text_model}
    first_step = checkpoints.resume("transformer", modules, optimizer, generator, result.losses) if checkpoints else 0
    train_started = time.perf_counter()
    for step in range(first_step, config.steps):
        plan = step_plan(config, step)
        for group in optimizer.param_groups:
            group["lr"] = plan.learning_rate
        aspect, pixels, num_scales = plan.aspect, plan.pixels, plan.num_scales
        full = get_schedule(aspect, pixels)
        schedule = truncated(full, num_scales)
        batch = pools[aspect, pixels].draw(plan.batch_size, plan.two_object_share, generator)
        forcing = flip_requant(batch.raw_features, full.grids, max_flip=config.max_flip,
                               noise_scales=full.num_scales, generator=generator)
        num_tokens = schedule.num_tokens
        text = text_with_dropout(transformer, caption_features(text_model, tokenize(batch.captions)),
                                 config.cond_drop_rate, generator)
        logits = transformer.forward_teacher(text, forcing.next_inputs[:, :num_tokens - 1], schedule)   # [B, L, 2d]
        labels = forcing.labels[:, :num_tokens]                                                          # [B, L, d]
        loss = bit_loss(logits, labels, token_weights(batch.pixel_weights, schedule))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
        optimizer.step()
        with torch.no_grad():
            correct = logits.view(*labels.shape, 2).argmax(-1).eq(labels).float()     # [B, L, d]
            first_scales = schedule.token_offset(3)                                   # the first three scales
            parts = {"bit_accuracy": correct.mean().item(), "layout_accuracy": correct[:, :first_scales].mean().item()}
        if num_scales == full.num_scales:
            result.losses.append(step, loss.item(), pixels=float(pixels == "0.25M"), **parts)
        if step % 20 == 0 or step == config.steps - 1:
            log.info("transformer step %d/%d (%s %s, %d scales) loss %.4f bit acc %.3f layout acc %.3f lr %.2e %.0f s",
                     step, config.steps, pixels, f"h/w {aspect:g}", num_scales, loss.item(), parts["bit_accuracy"],
                     parts["layout_accuracy"], plan.learning_rate, time.perf_counter() - train_started)
        if checkpoints and ((step + 1) % config.checkpoint_every == 0 or step + 1 in config.phase_ends):
            checkpoints.save("transformer", step + 1, modules, optimizer, generator, result.losses)
    transformer.eval()
    text_model.eval()
    result.train_seconds = time.perf_counter() - train_started
    return result
