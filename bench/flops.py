"""Analytic matmul FLOPs of one generation (2*M*N*K per matmul), for efficiency = FLOPs / time / GEMM rate.

Counts what the model has to compute: every linear layer, self-attention over the KV cache, cross-
attention, the text path once per generation, the head and the word embedding, for the rows that run
(2B while the unconditional half is needed). Norms, RoPE, softmax and sampling are not counted, as in
the official bench protocol (the bench files' bench_config.json, "flops"). Upstream recomputes the text's
cross-attention keys/values at every scale; that repeated work is not model work and is not counted.
"""
from __future__ import annotations

from dataclasses import dataclass

from infinity_core.config import TransformerConfig
from infinity_core.schedules import Schedule


@dataclass(frozen=True)
class FlopCount:
    once: int                      # text path and per-block text keys/values
    per_scale: tuple[int, ...]     # transformer work of each scale

    @property
    def total(self) -> int:
        return self.once + sum(self.per_scale)


def generation_flops(config: TransformerConfig, schedule: Schedule, text_tokens: int, guided_scales: int,
                     batch: int = 1) -> FlopCount:
    """`guided_scales`: the unconditional half runs for scales < guided_scales (2 rows per image there)."""
    C, d, Ct5, depth = config.width, config.bits_per_token, config.text_channels, config.depth
    rows_text = 2 * batch if guided_scales else batch
    once = 2 * rows_text * text_tokens * (
        Ct5 * 2 * C                          # attentive pool keys/values
        + Ct5 * C + C * C                    # text projection MLP
        + depth * C * 2 * C)                 # every block's cross-attention keys/values
    once += 2 * rows_text * (C * C + C * 6 * C + 2 * text_tokens * C)   # pool output proj, shared AdaLN, pool QK^T + AV
    per_scale, seen = [], 0
    for index, (h, w) in enumerate(schedule.grids):
        rows, tokens = (2 * batch if index < guided_scales else batch), h * w
        seen += tokens
        linear = C * 3 * C + C * C + C * C + C * C + 2 * C * config.ffn_hidden   # qkv, proj, ca_q, ca_proj, ffn
        attention = 2 * tokens * seen * C + 2 * tokens * text_tokens * C          # QK^T + AV, self and cross
        block = 2 * rows * tokens * linear + 2 * rows * attention
        embed = 2 * rows * tokens * d * C if index else 0
        head = 2 * rows * tokens * C * 2 * d + 2 * rows * C * 2 * C                # head + its AdaLN
        per_scale.append(depth * block + embed + head)
    return FlopCount(once, tuple(per_scale))
