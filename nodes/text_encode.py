"""Text encode node: prompt and negative prompt -> INFINITY_COND (T5 features, via the core's encoder)."""
from __future__ import annotations

from ..infinity_core import TextCondition
from . import comfy_bridge
from .types import INFINITY_COND, INFINITY_TEXT_ENCODER, InfinityConditioning, InfinityTextEncoder


class InfinityTextEncode:
    DISPLAY_NAME = "Infinity Text Encode"
    DESCRIPTION = ("Encodes a prompt and a negative prompt with the T5 text encoder. "
                   "The encoder is on the GPU only while it encodes.")
    CATEGORY = "Infinity"
    RETURN_TYPES = (INFINITY_COND,)
    RETURN_NAMES = ("conditioning",)
    OUTPUT_TOOLTIPS = ("Text features of both prompts, for the Infinity Bitwise Sampler.",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "text_encoder": (INFINITY_TEXT_ENCODER, {"tooltip": "From Load Infinity Text Encoder (T5)."}),
            "prompt": ("STRING", {"multiline": True, "dynamicPrompts": True, "default": "",
                                  "tooltip": "What the image should show (at most 512 T5 tokens; the rest is cut)."}),
            "negative_prompt": ("STRING", {"multiline": True, "dynamicPrompts": True, "default": "",
                                           "tooltip": "What guidance steers away from. Empty: the model's learned "
                                                      "'no prompt' embedding, as the official code does."}),
        }}

    def encode(self, text_encoder: InfinityTextEncoder, prompt: str, negative_prompt: str):
        prompts = [prompt] + ([negative_prompt] if negative_prompt.strip() else [])
        with comfy_bridge.text_encoder_on_device(text_encoder) as encoder:
            features = encoder.encode(prompts).split()          # one [tokens, channels] tensor per prompt
        negative = TextCondition.from_features(features[1:]) if len(features) > 1 else None
        return (InfinityConditioning(TextCondition.from_features(features[:1]), negative, text_encoder.folder_name),)
