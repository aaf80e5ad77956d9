"""The opt-in compiled scale step: `torch.compile` of `InfinityTransformer.forward_scale`, and on CUDA a CUDA
graph per scale shape.

    result = generate(transformer, cond, compile=CompileConfig())

What it takes to compile the loop without a silent fallback:
- one graph for every scale of a shape class: `dynamic=True` makes token counts and cache offsets symbolic
  (with static shapes each of the 13 scales is a recompile, past dynamo's limit of 8); the 1x1 scale (no
  rotation, one key), a pruned scale (per-token rotation) and the last scale (its keys are not stored) are
  graphs of their own, so a generation needs a handful;
- `fullgraph=True` and, while it runs, `fail_on_recompile_limit_hit`: a graph break or a recompile past the
  limit raises instead of quietly running eager;
- plain weights: oneDNN's prepacked CPU weights (cpu_kernels.py) are opaque tensors torch.compile cannot trace,
  so a prepacked model is refused (load it with `prepack=False`).

On CUDA, `mode="reduce-overhead"` records a CUDA graph per shape and replays it: the early scales are
launch-bound (about 40 kernel launches per block per scale). A graph may write in place only into buffers
that keep their address between replays, so the engine keeps one KV cache per (rows, tokens, dtype) and hands
it to every generation of that shape (`CompiledScaleStep.cache`); its bytes stay allocated between runs
(`held_bytes`). The text context and each scale's input are copied by the graph into its own static inputs.
Not measured on a GPU here: tools/gpu_check_speed.py checks it on one.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch

from .errors import InfinityError
from .transformer.kv_cache import KVCache
from .transformer.model import InfinityTransformer

COMPILE_BACKENDS = ("inductor", "eager", "aot_eager", "cudagraphs")


@dataclass(frozen=True)
class CompileConfig:
    """How the scale step is compiled (torch.compile's own arguments)."""

    backend: str = "inductor"
    mode: str | None = None     # None: "reduce-overhead" (CUDA graphs) on CUDA with inductor, else torch's default

    def __post_init__(self):
        if self.backend not in COMPILE_BACKENDS:
            raise InfinityError(f"compile backend must be one of {list(COMPILE_BACKENDS)}, got {self.backend!r}")

    def mode_for(self, device: torch.device) -> str | None:
        if self.mode is not None:
            return self.mode
        return "reduce-overhead" if device.type == "cuda" and self.backend == "inductor" else None


def check_compilable(model: InfinityTransformer) -> None:
    """Refuse a model torch.compile cannot trace: one whose CPU weights are prepacked for oneDNN, or whose
    blocks are streamed (offload.BlockStreaming: the compiled graph would hold the weights)."""
    if model.blocks and model.blocks[0]._forward_pre_hooks:
        raise InfinityError("compile: this transformer's blocks are streamed from host memory (offload), which "
                            "a compiled step cannot follow; run it without compile, or load it whole")
    if model.blocks[0].sa.mat_qkv.weight.is_mkldnn:
        raise InfinityError("compile: this transformer's weights are prepacked for oneDNN (the CPU fast path), "
                            "which torch.compile cannot trace; load it with prepack=False to compile it, or run "
                            "it without compile (on a CPU the prepacked path is the faster one)")


class CompiledScaleStep:
    """`forward_scale` compiled once per model and CompileConfig, with the KV caches it writes into."""

    def __init__(self, model: InfinityTransformer, config: CompileConfig):
        check_compilable(model)
        self.device = model.device
        # the unbound method, called with the model: the step holds no reference that keeps the model alive
        self.step = torch.compile(InfinityTransformer.forward_scale, backend=config.backend,
                                  mode=config.mode_for(model.device), dynamic=True, fullgraph=True)
        self.caches: dict[tuple, KVCache] = {}

    def __call__(self, model: InfinityTransformer, *args) -> torch.Tensor:
        """`model.forward_scale(*args)`, compiled."""
        with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
            return self.step(model, *args)

    def cache(self, depth: int, rows: int, num_heads: int, head_dim: int, kept_tokens: int, dtype: torch.dtype,
              device: torch.device) -> KVCache:
        """The KV cache of this shape, reused across generations (rewound to the first scale)."""
        key = (depth, rows, num_heads, head_dim, kept_tokens, dtype, device)
        cache = self.caches.get(key)
        if cache is None:
            cache = self.caches[key] = KVCache(*key)
            if self.device.type == "cuda":
                for buffer in (*cache.keys, *cache.values):
                    torch._dynamo.mark_static_address(buffer)
        cache.start = cache.end = 0
        return cache

    @property
    def held_bytes(self) -> int:
        """Device bytes the kept KV caches hold between generations."""
        return sum(t.numel() * t.element_size() for c in self.caches.values() for t in (*c.keys, *c.values))


_STEPS: "weakref.WeakKeyDictionary[InfinityTransformer, dict[CompileConfig, CompiledScaleStep]]" = \
    weakref.WeakKeyDictionary()


def compiled_step(model: InfinityTransformer, config: CompileConfig) -> CompiledScaleStep:
    """The compiled step of `model` under `config`, built on first use and kept while the model lives
    (the model itself is not changed, so an uncompiled run of it stays as it was)."""
    check_compilable(model)          # again at each run: the model may be streamed since the step was built
    steps = _STEPS.setdefault(model, {})
    if config not in steps:
        steps[config] = CompiledScaleStep(model, config)
    return steps[config]
