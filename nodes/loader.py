"""Loader nodes: a file or folder name from ComfyUI's model folders -> a core model, placed by ComfyUI.

A loaded model is remembered (weakly) by file, modification time and dtype: a second loader node, or the
same one after ComfyUI dropped its cached output, gets the object that is already in memory instead of
reading the file again, and a model nobody holds any more is freed as usual. `fingerprint_inputs` is the
same file identity, so a file replaced on disk is read again on the next run.
"""
from __future__ import annotations

import os
import weakref
from typing import Callable, Hashable

import torch
from comfy_api.latest import io

from infinity_core import InfinityError, load_text_encoder, load_transformer, load_vae
from infinity_core.trained_sizes import trained_sizes
from . import comfy_bridge, model_folders
from .schema import advanced, node_schema
from .types import (InfinityModel, InfinityModelSocket, InfinityTextEncoder, InfinityTextEncoderSocket, InfinityVAE,
                    InfinityVAESocket)

DTYPES: dict[str, torch.dtype | None] = {"auto": None, "bf16": torch.bfloat16, "fp16": torch.float16,
                                          "fp32": torch.float32}

OFFLOAD_OPTIONS = ("none", "blocks")

_in_memory: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def _reuse_or_load(key: Hashable, load: Callable[[], object]):
    model = _in_memory.get(key)
    if model is None:
        model = load()
        _in_memory[key] = model
    return model


def _file_identity(path: str) -> tuple:
    stat = os.stat(path)
    return os.path.realpath(path), stat.st_mtime_ns, stat.st_size


def _folder_identity(folder: str) -> tuple:
    return os.path.realpath(folder), tuple(sorted((entry.name, entry.stat().st_mtime_ns, entry.stat().st_size)
                                                  for entry in os.scandir(folder) if entry.is_file()))


def dtype_of(dtype: str) -> torch.dtype | None:
    """The torch dtype of a dtype widget value (None: auto); a value from a hand-edited workflow that is
    not in the list is an InfinityError naming the widget."""
    if dtype not in DTYPES:
        raise InfinityError(f"dtype: '{dtype}' is not an option; valid: {', '.join(DTYPES)}")
    return DTYPES[dtype]


def _dtype_input(what: str) -> io.Combo.Input:
    return io.Combo.Input("dtype", options=list(DTYPES), default="auto", tooltip=(
        f"Precision of the {what}'s weights. auto: what ComfyUI picks for this device "
        "(bf16 or fp16 on a GPU, fp32 on the CPU). fp32 is exact but needs twice the memory."))


def _validation_error(check: Callable[[], object]) -> bool | str:
    """True, or the InfinityError's message (ComfyUI shows it and refuses to queue the prompt)."""
    try:
        check()
    except InfinityError as error:
        return str(error)
    return True


class InfinityTransformerLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        names = model_folders.transformer_files()
        return node_schema(
            node_id="InfinityTransformerLoader", display_name="Load Infinity Model",
            description=("Loads an Infinity transformer (infinity_2b_reg.pth, a .safetensors, an fp8 / int8 "
                         "ComfyUI-quantized .safetensors or a .gguf) from "
                         "models/infinity. The architecture is read from the file; the list shows transformer "
                         "files only."),
            search_aliases=("Infinity 2B", "Infinity 8B", "load transformer", "checkpoint"),
            inputs=[
                io.Combo.Input("model_file", options=names,
                               default=model_folders.preferred_default(names, model_folders.DEMO_TRANSFORMER),
                               tooltip="Transformer weights in models/infinity. The pack's tiny demo model "
                                       f"({model_folders.DEMO_TRANSFORMER}) draws coloured shapes."),
                _dtype_input("transformer"),
                advanced(io.Combo.Input(
                    "offload", options=list(OFFLOAD_OPTIONS), default="none", optional=True,
                    tooltip="none: the whole model goes to the GPU. blocks: the model's blocks stay in RAM and each "
                            "is copied to the GPU as it runs, so a model larger than the card runs, slower (README, "
                            "Which file for which card).")),
            ],
            outputs=[InfinityModelSocket.Output(display_name="model",
                                                tooltip="The Infinity transformer, for the Infinity Bitwise Sampler.")],
        )

    @classmethod
    def validate_inputs(cls, model_file, dtype, offload="none") -> bool | str:
        return _validation_error(lambda: (dtype_of(dtype), stream_blocks_of(offload), model_file is None or
                                          model_folders.transformer_path(model_file)))

    @classmethod
    def fingerprint_inputs(cls, model_file, dtype, offload="none"):
        return _file_identity(model_folders.transformer_path(model_file))

    @classmethod
    def execute(cls, model_file: str, dtype: str, offload: str = "none") -> io.NodeOutput:
        path = model_folders.transformer_path(model_file)
        stream_blocks = stream_blocks_of(offload)
        placement = comfy_bridge.transformer_placement(dtype_of(dtype), stream_blocks)

        def read() -> InfinityModel:
            # prepacked for the CPU's fast matmuls only when it will run on the CPU (a packed model cannot move)
            module = load_transformer(path, placement.offload_device, placement.dtype,
                                      prepack=placement.load_device.type == "cpu")
            return InfinityModel(comfy_bridge.managed(module, placement), model_file, trained_sizes=trained_sizes(path),
                                 stream_blocks=stream_blocks)
        return io.NodeOutput(_reuse_or_load(("transformer", *_file_identity(path), placement), read))


def stream_blocks_of(offload: str) -> bool:
    """Whether the offload widget's value streams the blocks; a value not in the list names the widget."""
    if offload not in OFFLOAD_OPTIONS:
        raise InfinityError(f"offload: '{offload}' is not an option; valid: {', '.join(OFFLOAD_OPTIONS)}")
    return offload == "blocks"


class InfinityVAELoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        names = model_folders.vae_files()
        return node_schema(
            node_id="InfinityVAELoader", display_name="Load Infinity VAE",
            description=("Loads Infinity's VAE from models/infinity or models/vae: it turns the sampler's result "
                         "into pixels, and a picture into the model's form for image to image and inpainting. It "
                         "must be the one made with the model (e.g. infinity_vae_d32reg for the 2B)."),
            search_aliases=("VAE", "tokenizer", "BSQ", "load vae"),
            inputs=[
                io.Combo.Input("vae_file", options=names,
                               default=model_folders.preferred_default(names, model_folders.DEMO_VAE),
                               tooltip="VAE weights in models/infinity or models/vae; pick the one made with your "
                                       "model."),
                _dtype_input("VAE"),
            ],
            outputs=[InfinityVAESocket.Output(display_name="vae", tooltip=(
                "The VAE, for Infinity VAE Decode, Infinity Encode Image and the sampler's preview."))],
        )

    @classmethod
    def validate_inputs(cls, vae_file, dtype) -> bool | str:
        return _validation_error(lambda: (dtype_of(dtype), vae_file is None or model_folders.vae_path(vae_file)))

    @classmethod
    def fingerprint_inputs(cls, vae_file, dtype):
        return _file_identity(model_folders.vae_path(vae_file))

    @classmethod
    def execute(cls, vae_file: str, dtype: str) -> io.NodeOutput:
        path = model_folders.vae_path(vae_file)
        placement = comfy_bridge.vae_placement(dtype_of(dtype))

        def read() -> InfinityVAE:
            with_encoder = model_folders.vae_has_encoder(path)   # a decoder-only file still decodes
            module = load_vae(path, placement.offload_device, placement.dtype, with_encoder=with_encoder)
            return InfinityVAE(comfy_bridge.managed(module, placement), vae_file)
        return io.NodeOutput(_reuse_or_load(("vae", *_file_identity(path), placement), read))


class InfinityTextEncoderLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        names = model_folders.text_encoder_folders()
        return node_schema(
            node_id="InfinityTextEncoderLoader", display_name="Load Infinity Text Encoder (T5)",
            description=("Loads a T5 encoder with its tokenizer from a folder under models/text_encoders "
                         "(for the published models: a local copy of google/flan-t5-xl). ComfyUI's model "
                         "management moves it to the GPU to encode and frees it with the other models."),
            search_aliases=("T5", "flan-t5", "text encoder", "clip"),
            inputs=[
                io.Combo.Input("text_encoder_folder", options=names,
                               default=model_folders.preferred_default(names, model_folders.DEMO_TEXT_ENCODER),
                               tooltip="A folder under models/text_encoders holding config.json, the weights and "
                                       "the tokenizer files (flan-t5-xl for the published models; the demo model "
                                       "has its own small T5)."),
                _dtype_input("text encoder"),
            ],
            outputs=[InfinityTextEncoderSocket.Output(display_name="text_encoder",
                                                      tooltip="The T5 text encoder, for Infinity Text Encode.")],
        )

    @classmethod
    def validate_inputs(cls, text_encoder_folder, dtype) -> bool | str:
        return _validation_error(lambda: (dtype_of(dtype), text_encoder_folder is None or
                                          model_folders.text_encoder_path(text_encoder_folder)))

    @classmethod
    def fingerprint_inputs(cls, text_encoder_folder, dtype):
        return _folder_identity(model_folders.text_encoder_path(text_encoder_folder))

    @classmethod
    def execute(cls, text_encoder_folder: str, dtype: str) -> io.NodeOutput:
        folder = model_folders.text_encoder_path(text_encoder_folder)
        placement = comfy_bridge.text_encoder_placement(dtype_of(dtype))

        def read() -> InfinityTextEncoder:
            encoder = load_text_encoder(folder, placement.offload_device, placement.dtype)
            return InfinityTextEncoder(encoder, comfy_bridge.managed(encoder.model, placement), text_encoder_folder)
        return io.NodeOutput(_reuse_or_load(("text_encoder", *_folder_identity(folder), placement), read))
