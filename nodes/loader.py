"""Loader nodes: a file or folder name from ComfyUI's model folders -> a core model, placed by ComfyUI.

A loaded model is remembered (weakly) by file, modification time and dtype: a second loader node, or the
same one after ComfyUI dropped its cached output, gets the object that is already in memory instead of
reading the file again, and a model nobody holds any more is freed as usual.
"""
from __future__ import annotations

import os
import weakref
from typing import Callable, Hashable

import torch

from ..infinity_core import load_text_encoder, load_transformer, load_vae, prepack_for_cpu
from . import comfy_bridge, model_folders
from .types import (INFINITY_MODEL, INFINITY_TEXT_ENCODER, INFINITY_VAE, InfinityModel, InfinityTextEncoder,
                    InfinityVAE)

DTYPES: dict[str, torch.dtype | None] = {"auto": None, "bf16": torch.bfloat16, "fp16": torch.float16,
                                          "fp32": torch.float32}

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


def _dtype_input(what: str) -> tuple:
    return (list(DTYPES), {"default": "auto", "tooltip":
            f"Precision of the {what}'s weights. auto: what ComfyUI picks for this device "
            "(bf16 or fp16 on a GPU, fp32 on the CPU). fp32 is exact but needs twice the memory."})


class InfinityTransformerLoader:
    DISPLAY_NAME = "Load Infinity Model"
    DESCRIPTION = ("Loads an Infinity transformer (e.g. infinity_2b_reg.pth or a .safetensors) from models/infinity. "
                   "The architecture is read from the file.")
    CATEGORY = "Infinity"
    RETURN_TYPES = (INFINITY_MODEL,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The Infinity transformer, for the Infinity Bitwise Sampler.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        names = model_folders.transformer_files()
        return {"required": {
            "model_file": (names, {"default": model_folders.preferred_default(names, model_folders.DEMO_TRANSFORMER),
                                   "tooltip": "Transformer weights in models/infinity. The pack's tiny demo model "
                                              f"({model_folders.DEMO_TRANSFORMER}) draws coloured shapes."}),
            "dtype": _dtype_input("transformer"),
        }}

    def load(self, model_file: str, dtype: str):
        path = model_folders.transformer_path(model_file)
        placement = comfy_bridge.transformer_placement(DTYPES[dtype])

        def read() -> InfinityModel:
            module = load_transformer(path, placement.offload_device, placement.dtype)
            if placement.load_device.type == "cpu":   # it never leaves the CPU: use the oneDNN-prepacked matmuls
                prepack_for_cpu(module)
            return InfinityModel(comfy_bridge.managed(module, placement), model_file, placement.dtype)
        return (_reuse_or_load(("transformer", *_file_identity(path), placement), read),)


class InfinityVAELoader:
    DISPLAY_NAME = "Load Infinity VAE (Bitwise Tokenizer)"
    DESCRIPTION = ("Loads the bitwise (BSQ) tokenizer that turns Infinity's codes into pixels, from models/infinity "
                   "or models/vae. It must match the transformer (e.g. infinity_vae_d32reg for the 2B).")
    CATEGORY = "Infinity"
    RETURN_TYPES = (INFINITY_VAE,)
    RETURN_NAMES = ("vae",)
    OUTPUT_TOOLTIPS = ("The tokenizer's decoder, for Infinity Tokenizer Decode.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        names = model_folders.vae_files()
        return {"required": {
            "vae_file": (names, {"default": model_folders.preferred_default(names, model_folders.DEMO_VAE),
                                 "tooltip": "Tokenizer weights in models/infinity or models/vae; pick the one "
                                            "trained with your transformer."}),
            "dtype": _dtype_input("VAE"),
        }}

    def load(self, vae_file: str, dtype: str):
        path = model_folders.vae_path(vae_file)
        placement = comfy_bridge.vae_placement(DTYPES[dtype])

        def read() -> InfinityVAE:
            module = load_vae(path, placement.offload_device, placement.dtype, with_encoder=False)
            return InfinityVAE(comfy_bridge.managed(module, placement), vae_file)
        return (_reuse_or_load(("vae", *_file_identity(path), placement), read),)


class InfinityTextEncoderLoader:
    DISPLAY_NAME = "Load Infinity Text Encoder (T5)"
    DESCRIPTION = ("Loads a T5 encoder with its tokenizer from a folder under models/text_encoders "
                   "(for the published models: a local copy of google/flan-t5-xl).")
    CATEGORY = "Infinity"
    RETURN_TYPES = (INFINITY_TEXT_ENCODER,)
    RETURN_NAMES = ("text_encoder",)
    OUTPUT_TOOLTIPS = ("The T5 text encoder, for Infinity Text Encode.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        names = model_folders.text_encoder_folders()
        return {"required": {
            "text_encoder_folder": (names, {
                "default": model_folders.preferred_default(names, model_folders.DEMO_TEXT_ENCODER),
                "tooltip": "A folder under models/text_encoders holding config.json, the weights and the tokenizer "
                           "files (flan-t5-xl for the published models; the demo model has its own small T5)."}),
            "dtype": _dtype_input("text encoder"),
        }}

    def load(self, text_encoder_folder: str, dtype: str):
        folder = model_folders.text_encoder_path(text_encoder_folder)
        placement = comfy_bridge.text_encoder_placement(DTYPES[dtype])

        def read() -> InfinityTextEncoder:
            encoder = load_text_encoder(folder, placement.offload_device, placement.dtype)
            return InfinityTextEncoder(encoder, text_encoder_folder, placement.load_device, placement.offload_device)
        return (_reuse_or_load(("text_encoder", *_folder_identity(folder), placement), read),)
