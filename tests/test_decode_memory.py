"""The VAE decode's memory estimate: its activation count is what a real decode holds alive, and the
estimate follows batch, tiling and dtype as the decode does."""
import weakref

import pytest
import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from infinity_core import VAE_PRESETS
from infinity_core.config import VAEConfig
from infinity_core.vae.autoencoder import (DECODE_FIXED_BYTES, BitwiseVAE, decode_memory,
                                                 decoder_peak_elements)
from infinity_core.vae.tiling import Tiling

CONFIGS = {
    "two levels, widening": VAEConfig(codebook_dim=4, base_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1),
    "demo": VAEConfig(codebook_dim=16, base_channels=48, channel_mult=(1, 1, 1, 1, 1), num_res_blocks=0),
    "d56 (8B)": VAE_PRESETS["d56_patchify"],
}


class LiveTensorBytes(TorchDispatchMode):
    """Peak bytes of the tensors that the ops run under it create and that are still referenced."""

    def __init__(self):
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = self.peak = 0

    def _free(self, pointer: int) -> None:
        self.current -= self.live.pop(pointer)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in pytree.tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                pointer = tensor.untyped_storage().data_ptr()
                if pointer and pointer not in self.live:      # a new storage (in-place ops return the old one)
                    self.live[pointer] = tensor.untyped_storage().nbytes()
                    self.current += self.live[pointer]
                    self.peak = max(self.peak, self.current)
                    weakref.finalize(tensor, self._free, pointer)
        return out


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("grid", [(4, 4), (4, 6)])
def test_activation_count_is_what_a_real_decode_holds(name, grid):
    config = CONFIGS[name]
    decoder = BitwiseVAE(config, with_encoder=False).eval().decoder
    codes = torch.randn(1, config.codebook_dim, *grid)
    tracker = LiveTensorBytes()
    with torch.inference_mode(), tracker:
        decoder(codes)
    assert tracker.peak == decoder_peak_elements(config, *grid) * 4


def test_estimate_follows_batch_tiling_and_dtype():
    config = VAE_PRESETS["d32"]
    one, four = decode_memory(config, (64, 64)), decode_memory(config, (64, 64), batch_size=4)
    assert four - DECODE_FIXED_BYTES == 4 * (one - DECODE_FIXED_BYTES)
    tiling = Tiling(tile=16, overlap=4)
    assert decode_memory(config, (16, 16), tiling) == decode_memory(config, (16, 16))     # one tile: no tiling
    tiled = decode_memory(config, (64, 64), tiling)
    assert decode_memory(config, (16, 16)) < tiled < one / 8        # a tile's activations, a full-size output
    assert decode_memory(config, (64, 64), dtype=torch.bfloat16) < one
    assert decode_memory(config, (64, 32)) < one
