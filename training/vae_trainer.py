"""Stage 1 of the demo: train the multi-scale BSQ autoencoder (the visual tokenizer) on the shapes images.

Follows the structure of the official tokenizer (FoundationVision/Infinity `bsq_vae/multiscale_bsq.py`):
the encoder's features are residual-quantized scale by scale (area-downsample the residual, l2-normalise,
snap every coordinate to +-1/sqrt(d), upsample and subtract), with a straight-through estimator so the
gradient reaches the encoder (`BSQ.quantize`: x + (q - x).detach()). The loss is reconstruction (L1 + MSE)
of the decoded summed codes plus the usual commitment term; the LPIPS / GAN / entropy terms of the
published VAE are left out: flat coloured shapes do not need them at this size.

Shapes: B images, d code bits, (H, W) the latent grid (image / 16), (h, w) one scale's grid.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from infinity_core.config import VAEConfig
from infinity_core.schedules import PIXELS_PER_TOKEN, get_schedule
from infinity_core.trained_sizes import TrainedSizes
from infinity_core.vae.autoencoder import BitwiseVAE
from infinity_core.vae.bsq import downsample_residual, upsample_codes

from .checkpoints import Checkpoints
from .shapes import Canvas, ShapesDataset
from .schedule import LossLog, warmup_cosine

log = logging.getLogger(__name__)

FOREGROUND_THRESHOLD = 0.1   # in [-1, 1] units, far below the gap between any two palette colours
# 48 channels: GroupNorm then normalises pairs of channels (24 groups). With 24 channels (one per group) a
# region's absolute colour is normalised away before every nonlinearity and colours are barely learnt.
DEMO_VAE = VAEConfig(codebook_dim=16, base_channels=48, channel_mult=(1, 1, 1, 1, 1), num_res_blocks=0)


@dataclass(frozen=True)
class VAEPhase:
    """A run of steps on whole scenes drawn at the size of one scale of a schedule: the image of grid
    `scale` (an index into the schedule's grids; -1 = the final image) of the `pixels` schedule, at each
    trained aspect ratio in turn."""

    pixels: str
    scale: int
    steps: int
    batch_size: int


# Coarse to fine: colours and layout are learnt on small images (the 4th grid of the 0.06M schedules,
# 96 px for 1:1, about 12x cheaper per image than 256 px), then shapes at the 5th grid (128 px), then the
# 0.06M images (256 px). There is no 0.25M phase: the VAE is convolutional, so it codes and draws 512 px
# images with what it learnt at 256 px, and 300 steps at 512 px cost 47 minutes of the 2.5-hour budget
# (9.4 s a step), which the transformer's 0.25M steps need more. The 5th grid is where the transformer
# can learn a shape, so a phase has it as its finest codes, to teach the decoder to draw shapes from them:
# the shipped VAE, trained with such a phase, decodes the right shape from the 8x8 prefix of the 1:1 codes
# 95 % of the time; the first multi-size VAE, whose second phase was the 6th grid (192 px), 65 %
# (training/README.md).
DEMO_PHASES = (VAEPhase("0.06M", scale=3, steps=1400, batch_size=8),
               VAEPhase("0.06M", scale=4, steps=500, batch_size=4),
               VAEPhase("0.06M", scale=-1, steps=500, batch_size=2))

# The demo's trained sizes: the official 0.06M and 0.25M budgets at 1:1 and six aspect templates (h/w keys):
# 4:3 and 3:4, 3:2 and 2:3, and the 16:9-like 7:4 and 4:7.
DEMO_SIZES = TrainedSizes(pixels=("0.06M", "0.25M"), aspects=(1.0, 0.75, 1.333, 0.666, 1.5, 0.571, 1.75))


@dataclass(frozen=True)
class VAETrainConfig:
    architecture: VAEConfig = DEMO_VAE
    phases: tuple[VAEPhase, ...] = DEMO_PHASES
    sizes: TrainedSizes = DEMO_SIZES   # step k of a phase draws its scenes at aspect sizes.aspects[k % len]
    learning_rate: float = 2e-3
    final_learning_rate_ratio: float = 0.2   # the cosine ends at this share of the peak (the last phases still learn)
    warmup_steps: int = 50
    commitment_weight: float = 0.25    # beta of the VQ/BSQ commitment loss
    foreground_weight: float = 5.0     # reconstruction weight of pixels unlike the background (objects cover 11-14 %)
    # Bits flipped while quantizing, only on the scales from `flip_from_scale` on (the 0.06M schedules' last
    # grid and every finer one): the transformer predicts those bits worst, near chance at object edges, so
    # the decoder learns not to rely on them and draws edges from the coarser codes, which it gets clean.
    # At most 30 %: flipping up to 50 % left a blurred, colour-mixed fringe around objects.
    max_code_flip: float = 0.3         # share p ~ U[0, max_code_flip] of a flipped scale's bits
    flip_from_scale: int = 6
    # Reconstruction from the codes up to grid `prefix_scale` alone (the 5th grid: 8x8 at 1:1) is added with
    # this weight wherever finer grids follow it. The transformer learns a shape only where a shape is decided
    # by few tokens; this term makes the encoder put the shape there and the decoder draw it from there.
    prefix_weight: float = 1.0
    prefix_scale: int = 4
    two_object_probability: float = 0.3
    data_offset: int = 0               # first ShapesDataset index used (keeps VAE and transformer images apart)
    checkpoint_every: int = 500

    @property
    def total_steps(self) -> int:
        return sum(phase.steps for phase in self.phases)


@dataclass
class VAETrainResult:
    vae: BitwiseVAE
    losses: LossLog = field(default_factory=LossLog)
    seconds: float = 0.0


def images_to_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """uint8 [H, W, 3] images -> float32 [B, 3, H, W] in [-1, 1] (channels-last memory, faster convs on CPU)."""
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
    return batch.contiguous(memory_format=torch.channels_last)


def quantize_straight_through(residual: torch.Tensor) -> torch.Tensor:
    """Residual [B, d, 1, h, w] -> codes +-1/sqrt(d) with an identity gradient through the l2-normalised input."""
    unit = F.normalize(residual, dim=1)
    scale = residual.shape[1] ** -0.5
    snapped = torch.where(unit > 0, scale, -scale)
    return unit + (snapped - unit).detach()


def multiscale_codes(features: torch.Tensor, grids: tuple[tuple[int, int], ...],
                     max_flips: tuple[float, ...] | None = None,
                     generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """Features [B, d, H, W] -> each scale's codes upsampled to the latent grid, [B, d, 1, H, W] per grid,
    differentiable (straight-through).

    `max_flips` (one per grid): where > 0, a share p ~ U[0, max_flip] of that scale's bits is flipped and
    later scales re-quantize what is then missing (as `flip_requant` does for the transformer), so the
    decoder learns to draw clean images from the imperfect codes a sampler produces."""
    latent_grid = tuple(features.shape[-2:])
    residual = features.unsqueeze(2)                                   # [B, d, 1, H, W]
    per_scale = []
    for grid, max_flip in zip(grids, max_flips or (0.0,) * len(grids)):
        codes = quantize_straight_through(downsample_residual(residual, grid))   # [B, d, 1, h, w]
        if max_flip > 0:
            ratio = float(torch.rand((), generator=generator)) * max_flip
            flip = torch.rand(codes.shape, generator=generator) < ratio
            codes = torch.where(flip, -codes, codes)
        codes = upsample_codes(codes, latent_grid)                     # [B, d, 1, H, W]
        residual = residual - codes
        per_scale.append(codes)
    return per_scale


def sum_codes(per_scale: list[torch.Tensor]) -> torch.Tensor:
    """The decoder's input: the sum of some scales' upsampled codes ([B, d, 1, H, W] each), [B, d, H, W]."""
    return torch.stack(per_scale).sum(0).squeeze(2)


def foreground_weights(images: torch.Tensor, weight: float) -> torch.Tensor:
    """[B, 3, S, S] -> [B, 1, S, S]: `weight` where a pixel differs from the image's border colour, else 1."""
    border = torch.cat([images[..., 0, :], images[..., -1, :], images[..., :, 0], images[..., :, -1]], dim=-1)
    background = border.median(dim=-1).values[..., None, None]          # [B, 3, 1, 1]
    foreground = (images - background).abs().amax(dim=1, keepdim=True) > FOREGROUND_THRESHOLD
    return 1 + (weight - 1) * foreground.float()


def weighted_errors(decoded: torch.Tensor, images: torch.Tensor,
                    weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L1, MSE) of decoded vs images [B, 3, S, S], each pixel weighted by weights [B, 1, S, S]."""
    error = decoded - images
    return (error.abs() * weights).mean() / weights.mean(), (error.square() * weights).mean() / weights.mean()


def autoencoder_loss(vae: BitwiseVAE, images: torch.Tensor, grids, config: VAETrainConfig,
                     generator: torch.Generator) -> tuple[torch.Tensor, dict]:
    """Foreground-weighted reconstruction through the quantizer, from all the codes and (where finer grids
    follow it) from the prefix up to `config.prefix_scale`, plus commitment; images [B, 3, S, S] in [-1, 1]."""
    features = vae.encoder(images)                                     # [B, d, H, W]
    max_flips = tuple(config.max_code_flip if index >= config.flip_from_scale else 0.0 for index in range(len(grids)))
    per_scale = multiscale_codes(features, grids, max_flips, generator)   # [B, d, 1, H, W] per grid
    summed = sum_codes(per_scale)                                      # [B, d, H, W]
    weights = foreground_weights(images, config.foreground_weight)     # [B, 1, S, S]
    l1, mse = weighted_errors(vae.decoder(summed), images, weights)
    commitment = (features - summed.detach()).square().mean()
    prefix = torch.zeros(())
    if len(grids) > config.prefix_scale + 1:
        prefix = sum(weighted_errors(vae.decoder(sum_codes(per_scale[:config.prefix_scale + 1])), images, weights))
    total = l1 + mse + config.prefix_weight * prefix + config.commitment_weight * commitment
    return total, {"l1": l1.item(), "mse": mse.item(), "prefix": prefix.item(), "commitment": commitment.item()}


def phase_batch(config: VAETrainConfig, seed: int, step: int) -> tuple[torch.Tensor, tuple[tuple[int, int], ...]]:
    """(images [B, 3, H, W], the grids to quantize) of training step `step`, computed from the step alone (so a
    resumed run continues with the same data): whole scenes drawn at the phase's size for the step's aspect,
    quantized with the schedule's grids up to that size."""
    first_step, index = 0, config.data_offset
    for phase in config.phases:
        if step < first_step + phase.steps:
            break
        first_step += phase.steps
        index += phase.steps * phase.batch_size
    else:
        raise IndexError(f"step {step} is past the {config.total_steps} steps of the phases")
    in_phase = step - first_step
    aspect = config.sizes.aspects[in_phase % len(config.sizes.aspects)]
    schedule = get_schedule(aspect, phase.pixels)
    last = phase.scale % schedule.num_scales
    grids = schedule.grids[:last + 1]
    height, width = grids[-1]
    canvas = Canvas(height * PIXELS_PER_TOKEN, width * PIXELS_PER_TOKEN)
    dataset = ShapesDataset(seed, length=index + (in_phase + 1) * phase.batch_size,
                            two_object_probability=config.two_object_probability, canvas=canvas)
    first = index + in_phase * phase.batch_size
    images = images_to_tensor([dataset[i][0] for i in range(first, first + phase.batch_size)])
    return images, grids


def train_vae(config: VAETrainConfig, seed: int, checkpoints: Checkpoints | None = None) -> VAETrainResult:
    """Train a fresh BitwiseVAE on the train split, deterministically by `seed`; with `checkpoints`, resume
    from the last one saved and save one every `config.checkpoint_every` steps."""
    torch.manual_seed(seed)
    started = time.perf_counter()
    vae = BitwiseVAE(config.architecture).to(memory_format=torch.channels_last)
    vae.train()
    total_steps = config.total_steps
    optimizer = torch.optim.Adam(vae.parameters(), lr=config.learning_rate, betas=(0.9, 0.99))
    generator = torch.Generator().manual_seed(seed)
    result = VAETrainResult(vae)
    first_step = checkpoints.resume("vae", vae, optimizer, generator, result.losses) if checkpoints else 0
    for step in range(first_step, total_steps):
        images, grids = phase_batch(config, seed, step)
        lr = warmup_cosine(step, total_steps, config.warmup_steps, config.learning_rate,
                          config.final_learning_rate_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss, parts = autoencoder_loss(vae, images, grids, config, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        result.losses.append(step, loss.item(), **parts)
        if step % 100 == 0 or step == total_steps - 1:
            log.info("vae step %d/%d %s loss %.4f (l1 %.4f mse %.4f prefix %.4f commit %.4f) lr %.2e %.0f s", step,
                     total_steps, tuple(images.shape[-2:]), loss.item(), parts["l1"], parts["mse"], parts["prefix"],
                     parts["commitment"], lr, time.perf_counter() - started)
        if checkpoints and ((step + 1) % config.checkpoint_every == 0 or step + 1 == total_steps):
            checkpoints.save("vae", step + 1, vae, optimizer, generator, result.losses)
    vae.eval()
    result.seconds = time.perf_counter() - started
    return result
