"""Per-generation attention state: self-attention keys/values of earlier scales, text keys/values.

The sampler creates one `KVCache` per generation and drops it at the end, so the cached model object
never holds state between runs (an interrupted run leaves nothing behind). Buffers are allocated once
for the schedule; every scale writes its slice in place instead of re-concatenating the past.

The last scale's keys/values are read by no later scale, so they are not kept: the buffers hold only
the tokens before it, and the last scale attends to that prefix concatenated with its own keys/values
(a transient copy, one block at a time). The last scale is the largest (64x64 of 10,521 tokens at 1M
pixels, 32x32 of 2,521 at 0.25M), so this drops ~40 % of the cache at no cost in output.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import TransformerConfig
from ..schedules import Schedule


@dataclass(frozen=True)
class TextKV:
    """One block's cross-attention keys/values over the (padded) text, computed once per generation."""

    keys: torch.Tensor             # [B, H, Lt, hd]
    values: torch.Tensor           # [B, H, Lt, hd]
    mask: torch.Tensor | None      # [B, 1, 1, Lt] bool (True = attend), None when every text has length Lt

    def rows(self, batch: int) -> "TextKV":
        """The first `batch` samples (the conditional half when the unconditional one is no longer needed)."""
        if batch == self.keys.shape[0]:
            return self
        mask = None if self.mask is None else self.mask[:batch]
        return TextKV(self.keys[:batch], self.values[:batch], mask)


class KVCache:
    """Preallocated self-attention keys/values for `depth` blocks, filled scale by scale.

    Stored token-major, [B, L, H, hd] (the layout the qkv projection produces, so a scale's write copies
    whole tokens, and the few tokens of the first scales land on a few fresh memory pages rather than
    on one per head); attention reads them as [B, H, L, hd] views. `kept_tokens` positions are stored
    (the tokens of every scale but the last); a scale that ends past them attends to the stored prefix
    and its own keys/values without storing them."""

    def __init__(self, depth: int, batch: int, num_heads: int, head_dim: int, kept_tokens: int,
                 dtype: torch.dtype, device: torch.device):
        self.kept_tokens = kept_tokens
        shape = (batch, kept_tokens, num_heads, head_dim)
        self.keys = [torch.empty(shape, dtype=dtype, device=device) for _ in range(depth)]     # [B, L, H, hd] each
        self.values = [torch.empty(shape, dtype=dtype, device=device) for _ in range(depth)]
        self.start = 0    # first token of the scale being computed
        self.end = 0      # one past its last token

    def begin_scale(self, num_tokens: int) -> None:
        """Move the write window to the next `num_tokens` positions."""
        self.start, self.end = self.end, self.end + num_tokens

    def store(self, block: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write this scale's keys/values [b, H, l, hd] and return all visible ones [b, H, end, hd] (views).

        `b` may be smaller than the allocated batch once the unconditional half is dropped."""
        b = keys.shape[0]
        keys, values = keys.transpose(1, 2), values.transpose(1, 2)                  # [b, l, H, hd]
        if self.end > self.kept_tokens:      # the last scale: nothing later reads its keys/values
            return (torch.cat([self.keys[block][:b, :self.start], keys], dim=1).transpose(1, 2),
                    torch.cat([self.values[block][:b, :self.start], values], dim=1).transpose(1, 2))
        self.keys[block][:b, self.start:self.end] = keys
        self.values[block][:b, self.start:self.end] = values
        return self.keys[block][:b, :self.end].transpose(1, 2), self.values[block][:b, :self.end].transpose(1, 2)


# What a generation takes beyond the tensors it holds: the allocator's slack (freed buffers that a larger one
# cannot reuse; a factor on the tensors) and oneDNN's and attention's scratch buffers and primitive caches (a
# fixed amount). Set from the peak RSS of the bench model's first generation after loading at 0.06M-1M, with
# and without CFG (tools/measure_sampling_memory.py prints both).
SAMPLING_ALLOCATOR_OVERHEAD = 1.1
SAMPLING_FIXED_BYTES = 20 * 2**20


def cached_tokens(schedule: Schedule) -> int:
    """Token positions a generation's KVCache stores: every scale's but the last."""
    last_h, last_w = schedule.final_grid
    return schedule.num_tokens - last_h * last_w


def sampling_memory(config: TransformerConfig, schedule: Schedule, batch_size: int, guided: bool,
                    dtype: torch.dtype) -> int:
    """Bytes a generation allocates besides the weights, for `batch_size` images (all prompts together).

    Rows are 2 x batch while guidance runs (conditional and unconditional halves), else batch. Terms:
    - the KV cache: keys and values of every block for the cached tokens, in the compute dtype;
    - the last scale's transient keys/values: one block's stored prefix concatenated with its own tokens;
    - the largest scale's attention activations: the fp32 residual and its norm (2C), q and k normalised and
      rotated in fp32 (2C), and in the compute dtype qkv (3C) and the attention output with its token-major
      copy (2C);
    - the bit logits and their sampling buffers (logits, probabilities, random draws: 3 x 2d, fp32);
    - the summed codes and the next input (small: d channels at the final grid);
    - the allocator's slack (`SAMPLING_ALLOCATOR_OVERHEAD` on all of the above), scratch buffers and caches
      (`SAMPLING_FIXED_BYTES`).
    The largest scale's self-attention is the peak: its activations and the transient keys/values are alive
    together on top of the cache (the bench model's live tensors peak there, 149 MiB at 0.25M with CFG, where
    this counts 134 MiB of them); the FFN after it holds less (the residual, its norm, the hidden 4C twice)."""
    rows = 2 * batch_size if guided else batch_size
    width, itemsize = config.width, dtype.itemsize
    largest = max(h * w for h, w in schedule.grids)
    kv_cache = 2 * config.depth * rows * cached_tokens(schedule) * width * itemsize
    last_scale_kv = 2 * rows * schedule.num_tokens * width * itemsize
    activations = rows * largest * width * (4 * 4 + 5 * itemsize)
    bit_sampling = 3 * batch_size * largest * config.num_bit_logits * 4
    codes = 2 * batch_size * config.bits_per_token * largest * 4
    tensors = kv_cache + last_scale_kv + activations + bit_sampling + codes
    return int(SAMPLING_ALLOCATOR_OVERHEAD * tensors) + SAMPLING_FIXED_BYTES
