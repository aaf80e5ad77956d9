"""Text encode node: prompt and negative prompt -> INFINITY_COND (T5 features, via the core's encoder).

What the tokenizer silently loses (words it does not know become <unk>; text past 512 tokens is cut) is
logged by the core and shown on the node as text, without failing the run."""
from __future__ import annotations

from comfy_api.latest import io, ui

from infinity_core import TextCondition
from . import comfy_bridge
from .schema import node_schema
from .types import InfinityConditioning, InfinityConditioningSocket, InfinityTextEncoder, InfinityTextEncoderSocket


class InfinityTextEncode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(
            node_id="InfinityTextEncode", display_name="Infinity Text Encode",
            description=("Encodes a prompt and a negative prompt with the T5 text encoder, loaded by ComfyUI's "
                         "model management for the encode."),
            search_aliases=("prompt", "T5", "text encode", "conditioning"),
            inputs=[
                InfinityTextEncoderSocket.Input("text_encoder", tooltip="From Load Infinity Text Encoder (T5)."),
                io.String.Input("prompt", multiline=True, dynamic_prompts=True, default="",
                                tooltip="What the image should show. Very long prompts are cut (about 400 words); "
                                        "words the text encoder does not know are named in a message after a run."),
                io.String.Input("negative_prompt", multiline=True, dynamic_prompts=True, default="",
                                tooltip="What the image should avoid. Empty is fine: the model then steers away "
                                        "from an image of nothing in particular, as the official code does."),
            ],
            outputs=[InfinityConditioningSocket.Output(
                display_name="conditioning", tooltip="Both prompts, encoded, for the Infinity Bitwise Sampler.")],
        )

    @classmethod
    def execute(cls, text_encoder: InfinityTextEncoder, prompt: str, negative_prompt: str) -> io.NodeOutput:
        prompts = [prompt] + ([negative_prompt] if negative_prompt.strip() else [])
        comfy_bridge.load_for_inference(text_encoder.patcher)
        features = text_encoder.encoder.encode(prompts).split()          # one [tokens, channels] tensor per prompt
        negative = TextCondition.from_features(features[1:]) if len(features) > 1 else None
        conditioning = InfinityConditioning(TextCondition.from_features(features[:1]), negative,
                                            text_encoder.folder_name)
        warnings = [f"{name}: {warning}" for name, text in (("prompt", prompt), ("negative_prompt", negative_prompt))
                    for warning in text_encoder.encoder.prompt_warnings(text)]
        return io.NodeOutput(conditioning, ui=ui.PreviewText("\n".join(warnings)))
