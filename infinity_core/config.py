"""Model configurations: frozen dataclasses holding only what inference needs.

Every field is either read from a checkpoint's keys and shapes (`*_config_from_state_dict`) or taken from
a named preset for the published models. The official code spreads these over ~40 constructor kwargs
and a ~165-field argparse Namespace (FoundationVision/Infinity `Infinity.__init__`,
`bsq_vae/vae.py:vae_model`); everything else in those is training-only or fixed by the release.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

import torch

from .errors import InfinityError


VAE_CODEBOOK_DIMS = (14, 16, 18, 20, 24, 32, 64)


@dataclass(frozen=True)
class TransformerConfig:
    """Architecture of the Infinity transformer (bitwise head, shared AdaLN, cos-attention, 2D RoPE)."""

    depth: int                 # number of CrossAttnBlocks
    width: int                 # embed_dim C
    num_heads: int             # self- and cross-attention heads (head_dim = width // num_heads)
    ffn_hidden: int            # FFN hidden width: round(width * mlp_ratio / 256) * 256 in the official code
    bits_per_token: int        # d of the transformer's tokens (d_vae): 32 for 2B; 56 (= 14 bits x 2x2) for 8B
    text_channels: int         # width of the text features (2048 for flan-t5-xl)
    text_maxlen: int = 512     # rows of the learned unconditional text embedding
    pool_heads: int = 16       # heads of the attentive text pool that makes the start token
    block_chunks: int = 8      # how the official checkpoint groups blocks (key layout only)
    num_levels: int = 15       # rows of the per-scale level embedding
    norm_eps: float = 1e-6

    @property
    def spatial_patchify(self) -> bool:
        """Whether a token carries a 2x2 patch of VAE latents (the 8B: 56 = 4 x 14 bits).

        The published BSQ VAEs have 14, 16, 18, 20, 24, 32 or 64 bits (tools/run_infinity.py:261); a token
        width outside that set can only be 4 latents of one of them."""
        return self.bits_per_token not in VAE_CODEBOOK_DIMS

    @property
    def head_dim(self) -> int:
        return self.width // self.num_heads

    @property
    def num_bit_logits(self) -> int:
        """Head output size V: two logits (bit = 0, bit = 1) for every bit of a token."""
        return 2 * self.bits_per_token


@dataclass(frozen=True)
class VAEConfig:
    """Architecture of the multi-scale BSQ autoencoder (flux-VQGAN style conv encoder/decoder)."""

    codebook_dim: int                      # bits per latent position (32 for d32, 14 for the 8B's d56 VAE)
    base_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 4, 4, 4)
    num_res_blocks: int = 2

    @property
    def downsample(self) -> int:
        """Pixels per latent position along each side (16 for d32, 8 for the patchify VAE)."""
        return 2 ** (len(self.channel_mult) - 1)


TRANSFORMER_PRESETS: dict[str, TransformerConfig] = {
    # tools/run_infinity.py:315-318 (infinity_2b: depth 32, C 2048, 16 heads, 8 block chunks, d32 VAE)
    "2b": TransformerConfig(depth=32, width=2048, num_heads=16, ffn_hidden=8192, bits_per_token=32,
                            text_channels=2048, pool_heads=16, block_chunks=8),
    # tools/run_infinity.py:319-320 + interactive_infer_8b.ipynb (d56 = 14 bits x 4, spatial patchify)
    "8b": TransformerConfig(depth=40, width=3584, num_heads=28, ffn_hidden=14336, bits_per_token=56,
                            text_channels=2048, pool_heads=16, block_chunks=8),
}

VAE_PRESETS: dict[str, VAEConfig] = {
    "d32": VAEConfig(codebook_dim=32, channel_mult=(1, 2, 4, 4, 4)),          # infinity_vae_d32reg.pth
    "d56_patchify": VAEConfig(codebook_dim=14, channel_mult=(1, 2, 4, 4)),    # infinity_vae_d56_f8_14_patchify.pth
}

_BLOCK_KEY = re.compile(r"^blocks\.(\d+)\.")


def _count_indices(keys, pattern: re.Pattern) -> int:
    found = {int(m.group(1)) for k in keys if (m := pattern.match(k))}
    return max(found) + 1 if found else 0


def _shape(state_dict: Mapping[str, torch.Tensor], key: str, source: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise InfinityError(f"{source}: expected key '{key}' is missing, so this is not an Infinity checkpoint of a known layout")
    return tuple(state_dict[key].shape)


def transformer_config_from_state_dict(state_dict: Mapping[str, torch.Tensor], *, block_chunks: int = 1,
                                       source: str = "state dict") -> TransformerConfig:
    """Infer the transformer architecture from an internal-layout state dict (keys `blocks.{i}.`)."""
    depth = _count_indices(state_dict.keys(), _BLOCK_KEY)
    if depth == 0:
        raise InfinityError(f"{source} is not an Infinity transformer checkpoint: it has no transformer blocks "
                            "(no 'block_chunks.N.module.M.' keys)")
    width, bits = _shape(state_dict, "word_embed.weight", source)
    num_heads = _shape(state_dict, "blocks.0.sa.scale_mul_1H11", source)[1]
    ffn_hidden = _shape(state_dict, "blocks.0.ffn.fc1.weight", source)[0]
    text_maxlen, text_channels = _shape(state_dict, "cfg_uncond", source)
    pool_heads = _shape(state_dict, "text_pool.mat_q", source)[1]
    num_levels = _shape(state_dict, "lvl_embed.weight", source)[0]
    head_out = _shape(state_dict, "head.weight", source)[0]
    if head_out != 2 * bits:
        raise InfinityError(f"{source}: the head predicts {head_out} logits but tokens have {bits} bits "
                            f"(a bitwise Infinity head has 2 x bits); only the bit-label head is supported")
    if width % num_heads:
        raise InfinityError(f"{source}: width {width} is not divisible by {num_heads} heads")
    return TransformerConfig(depth=depth, width=width, num_heads=num_heads, ffn_hidden=ffn_hidden,
                             bits_per_token=bits, text_channels=text_channels, text_maxlen=text_maxlen,
                             pool_heads=pool_heads, block_chunks=block_chunks, num_levels=num_levels)


_DOWN_BLOCK_KEY = re.compile(r"^encoder\.down\.(\d+)\.")
_DECODER_UP_KEY = re.compile(r"^decoder\.up\.(\d+)\.")
_RES_BLOCK_KEY = re.compile(r"^decoder\.up\.0\.block\.(\d+)\.")


def vae_config_from_state_dict(state_dict: Mapping[str, torch.Tensor], *, source: str = "state dict") -> VAEConfig:
    """Infer the autoencoder architecture from an internal-layout state dict (decoder keys suffice)."""
    codebook_dim = _shape(state_dict, "decoder.conv_in.weight", source)[1]
    base = _shape(state_dict, "decoder.conv_out.weight", source)[1]
    levels = _count_indices(state_dict.keys(), _DECODER_UP_KEY)
    if levels == 0:
        raise InfinityError(f"{source}: no 'decoder.up.N.' keys, so this is not an Infinity BSQ-VAE checkpoint")
    mult = tuple(_shape(state_dict, f"decoder.up.{i}.block.0.conv2.weight", source)[0] // base for i in range(levels))
    res_blocks = _count_indices(state_dict.keys(), _RES_BLOCK_KEY) - 1   # the decoder has num_res_blocks + 1 per level
    return VAEConfig(codebook_dim=codebook_dim, base_channels=base, channel_mult=mult, num_res_blocks=res_blocks)
