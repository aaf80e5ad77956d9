"""The ComfyUI nodes of the Infinity pack: a thin layer that maps widgets, ComfyUI's model folders,
devices and progress onto `infinity_core`. The graph they make:

    Load Infinity Text Encoder -> Infinity Text Encode -.
    Load Infinity Model --------------------------------+-> Infinity Bitwise Sampler -.
    Load Infinity VAE ----------------------------------------------------------------+-> Infinity Tokenizer Decode
"""
from . import model_folders, routes  # noqa: F401  (routes registers GET /infinity/output_sizes)
from .decode import InfinityTokenizerDecode, InfinityTokenizerDecodeTiled
from .loader import InfinityTextEncoderLoader, InfinityTransformerLoader, InfinityVAELoader
from .sampler import InfinityBitwiseSampler, InfinityBitwiseSamplerAdvanced
from .text_encode import InfinityTextEncode

model_folders.register_infinity_folder()

NODE_CLASSES = (InfinityTransformerLoader, InfinityVAELoader, InfinityTextEncoderLoader, InfinityTextEncode,
                InfinityBitwiseSampler, InfinityBitwiseSamplerAdvanced, InfinityTokenizerDecode,
                InfinityTokenizerDecodeTiled)

NODE_CLASS_MAPPINGS = {cls.__name__: cls for cls in NODE_CLASSES}
NODE_DISPLAY_NAME_MAPPINGS = {cls.__name__: cls.DISPLAY_NAME for cls in NODE_CLASSES}
