"""Infinity Compile Model: ComfyUI's TorchCompileModel for an Infinity model (model in, the same model out,
its scale step compiled on first use). The loaded model is not changed: the returned one carries the compile
setting, which the sampler hands to `generate` (infinity_core/compiled.py)."""
from __future__ import annotations

from dataclasses import replace

from comfy_api.latest import io

from infinity_core import InfinityError
from infinity_core.compiled import CompileConfig, check_compilable
from .schema import node_schema
from .types import InfinityModel, InfinityModelSocket

BACKENDS = ("inductor", "cudagraphs")   # TorchCompileModel's choices


class InfinityCompileModel(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(
            node_id="InfinityCompileModel", display_name="Infinity Compile Model",
            description=("torch.compile for the Infinity transformer's scale step, like TorchCompileModel: the first "
                         "run of a size compiles (minutes), later ones reuse it; on CUDA with inductor each scale "
                         "is replayed as a CUDA graph. Not for the CPU fast path (prepacked weights)."),
            search_aliases=("TorchCompileModel", "torch.compile", "compile", "cuda graphs"),
            inputs=[InfinityModelSocket.Input("model", tooltip="From Load Infinity Model."),
                    io.Combo.Input("backend", options=list(BACKENDS), default=BACKENDS[0],
                                   tooltip="torch.compile's backend, as in TorchCompileModel.")],
            outputs=[InfinityModelSocket.Output(display_name="model", tooltip="The same model, compiled on first use.")],
        )

    @classmethod
    def execute(cls, model: InfinityModel, backend: str) -> io.NodeOutput:
        if backend not in BACKENDS:
            raise InfinityError(f"backend: '{backend}' is not an option; valid: {', '.join(BACKENDS)}")
        try:
            check_compilable(model.transformer)
        except InfinityError as error:
            raise InfinityError(f"model '{model.file_name}': {error}") from None
        return io.NodeOutput(replace(model, compile=CompileConfig(backend=backend)))
