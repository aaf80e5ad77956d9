"""The demo trainers resume from a checkpoint to exactly the weights an uninterrupted run reaches, and draw
each step's data from the step alone."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from infinity_core.config import TransformerConfig, VAEConfig
from training.checkpoints import Checkpoints
from training.feature_pools import PoolSize
from training.text_model import TextModelConfig
from training.transformer_trainer import FULL_0_25M, TransformerPhase, TransformerTrainConfig, step_plan, train_transformer
from training.vae_trainer import VAEPhase, VAETrainConfig, phase_batch, train_vae

# Tiny models: the trainers' state handling is what is tested, not what they learn.
TINY_VAE = VAETrainConfig(
    architecture=VAEConfig(codebook_dim=16, base_channels=24, channel_mult=(1, 1, 1, 1, 1), num_res_blocks=0),
    phases=(VAEPhase("0.06M", scale=2, steps=3, batch_size=2), VAEPhase("0.06M", scale=3, steps=3, batch_size=1)),
    checkpoint_every=2)
TINY_TEXT = TextModelConfig(d_model=16, num_layers=1, num_heads=2, d_kv=8, d_ff=16)
TINY_TRANSFORMER = TransformerConfig(depth=1, width=32, num_heads=2, ffn_hidden=32, bits_per_token=16,
                                     text_channels=16, text_maxlen=512, pool_heads=2, block_chunks=1)


class Killed(Exception):
    """Stands in for the process being killed right after a checkpoint."""


@dataclasses.dataclass(frozen=True)
class KilledAfter(Checkpoints):
    """Checkpoints that kill the run once the checkpoint of `stop_step` steps is written."""

    stop_step: int = 0

    def save(self, stage, step, *args) -> None:
        super().save(stage, step, *args)
        if step == self.stop_step:
            raise Killed


def _states_equal(first: torch.nn.Module, second: torch.nn.Module) -> bool:
    return all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def test_vae_resumed_after_a_stop_ends_where_an_uninterrupted_run_ends(tmp_path):
    uninterrupted = train_vae(TINY_VAE, seed=3).vae
    with pytest.raises(Killed):
        train_vae(TINY_VAE, seed=3, checkpoints=KilledAfter(tmp_path, stop_step=4))
    resumed = train_vae(TINY_VAE, seed=3, checkpoints=Checkpoints(tmp_path))
    assert _states_equal(resumed.vae, uninterrupted)
    assert resumed.losses.steps == list(range(TINY_VAE.total_steps))


def test_the_last_step_is_checkpointed_off_the_interval(tmp_path):
    """A run stopped after the VAE stage resumes with the finished VAE, not the one of the last interval."""
    config = dataclasses.replace(TINY_VAE, checkpoint_every=4)          # 6 steps: saved after 4 and 6
    with pytest.raises(Killed):
        train_vae(config, seed=3, checkpoints=KilledAfter(tmp_path, stop_step=config.total_steps))
    resumed = train_vae(config, seed=3, checkpoints=Checkpoints(tmp_path))
    assert _states_equal(resumed.vae, train_vae(config, seed=3).vae)
    assert len(resumed.losses.steps) == config.total_steps


def test_a_vae_step_draws_its_scenes_at_the_phase_size_and_step_aspect():
    for step, (height, width) in enumerate([(64, 64), (48, 64), (64, 48)]):   # 1:1, then 4:3 and 3:4 at grid 3
        images, grids = phase_batch(TINY_VAE, seed=0, step=step)
        assert images.shape[-2:] == (height, width)
        assert grids[-1] == (height // 16, width // 16)
    images, _ = phase_batch(TINY_VAE, seed=0, step=1)
    again, _ = phase_batch(TINY_VAE, seed=0, step=1)
    assert torch.equal(images, again)


@pytest.fixture(scope="module")
def tiny_vae():
    return train_vae(dataclasses.replace(TINY_VAE, phases=TINY_VAE.phases[:1]), seed=0).vae.requires_grad_(False)


def _tiny_transformer_config(phases: tuple[TransformerPhase, ...], checkpoint_every: int) -> TransformerTrainConfig:
    return TransformerTrainConfig(architecture=TINY_TRANSFORMER, text=TINY_TEXT, phases=phases,
                                  pool_first_phase=PoolSize(single=2, pair=1), pool_0_06m=PoolSize(single=2, pair=1),
                                  pool_0_25m=PoolSize(single=1, pair=1), batch_size=2, batch_size_0_25m=1,
                                  checkpoint_every=checkpoint_every,
                                  sizes=dataclasses.replace(TransformerTrainConfig().sizes, aspects=(1.0, 0.75)))


def test_transformer_resumed_after_a_stop_ends_where_an_uninterrupted_run_ends(tmp_path, tiny_vae):
    vae = tiny_vae
    phases = (TransformerPhase(steps=2, aspects=(1.0,), scale_cycle=(2,)),
              TransformerPhase(steps=3, aspects=(0.75, 1.0), scale_cycle=(3, FULL_0_25M), two_object_share=0.5))
    config = _tiny_transformer_config(phases, checkpoint_every=2)
    uninterrupted = train_transformer(config, vae, seed=1)
    with pytest.raises(Killed):
        train_transformer(config, vae, seed=1, checkpoints=KilledAfter(tmp_path, stop_step=2))
    resumed = train_transformer(config, vae, seed=1, checkpoints=Checkpoints(tmp_path))
    assert _states_equal(resumed.transformer, uninterrupted.transformer)
    assert _states_equal(resumed.text_model, uninterrupted.text_model)
    # the second phase starts at step 2 and cycles its own aspects and scales
    plans = [step_plan(config, step) for step in range(5)]
    assert [(p.aspect, p.pixels, p.num_scales, p.batch_size, p.two_object_share) for p in plans] == [
        (1.0, "0.06M", 2, 2, 0.0), (1.0, "0.06M", 2, 2, 0.0), (0.75, "0.06M", 3, 2, 0.5), (1.0, "0.25M", 10, 1, 0.5),
        (0.75, "0.06M", 3, 2, 0.5)]
    with pytest.raises(ValueError):
        step_plan(config, 5)


@dataclasses.dataclass(frozen=True)
class Recorded(Checkpoints):
    """Checkpoints that note the step count of each save."""

    saved: list = dataclasses.field(default_factory=list)

    def save(self, stage, step, *args) -> None:
        super().save(stage, step, *args)
        self.saved.append(step)


def test_a_checkpoint_is_saved_at_the_end_of_every_phase(tmp_path, tiny_vae):
    phases = (TransformerPhase(steps=3, aspects=(1.0,), scale_cycle=(2,)),
              TransformerPhase(steps=4, aspects=(0.75,), scale_cycle=(2,)))
    checkpoints = Recorded(tmp_path)
    train_transformer(_tiny_transformer_config(phases, checkpoint_every=2), tiny_vae, seed=0, checkpoints=checkpoints)
    assert checkpoints.saved == [2, 3, 4, 6, 7]


def test_every_transformer_phase_warms_up_to_its_own_peak_and_ends_annealed():
    config = TransformerTrainConfig()   # the demo recipe
    first = 0
    for phase in config.phases:
        plans = [step_plan(config, first + k) for k in (0, config.warmup_steps - 1, phase.steps - 1)]
        assert plans[0].learning_rate == pytest.approx(phase.learning_rate / config.warmup_steps)
        assert plans[1].learning_rate == pytest.approx(phase.learning_rate)
        assert plans[2].learning_rate == pytest.approx(0.05 * phase.learning_rate)
        first += phase.steps
