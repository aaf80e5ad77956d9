"""The ComfyUI nodes of the Infinity pack (V3 schema, `comfy_api.latest`): a thin layer that maps widgets,
ComfyUI's model folders, devices, progress and previews onto `infinity_core`. The graph they make:

    Load Infinity Text Encoder -> Infinity Text Encode -.
    Load Infinity Model --------------------------------+-> Infinity Bitwise Sampler -.
    Load Infinity VAE ---------------------------------(preview, optional)------------+-> Infinity VAE Decode
    IMAGE (+ MASK) -> Infinity Encode Image -----------(encoded_image, optional)-'
    IMAGE -> Infinity Pad for Outpainting -> IMAGE + MASK (for Infinity Encode Image)
"""
from comfy_api.latest import ComfyExtension, io

from . import model_folders, routes  # noqa: F401  (routes registers GET /infinity/output_sizes)
from .compile import InfinityCompileModel
from .decode import InfinityTokenizerDecode, InfinityTokenizerDecodeTiled
from .image_in import InfinityEncodeImage, InfinityPadForOutpainting
from .loader import InfinityTextEncoderLoader, InfinityTransformerLoader, InfinityVAELoader
from .sampler import InfinityBitwiseSampler, InfinityBitwiseSamplerAdvanced
from .text_encode import InfinityTextEncode

model_folders.register_infinity_folder()

NODES: tuple[type[io.ComfyNode], ...] = (
    InfinityTransformerLoader, InfinityVAELoader, InfinityTextEncoderLoader, InfinityTextEncode,
    InfinityBitwiseSampler, InfinityBitwiseSamplerAdvanced, InfinityTokenizerDecode, InfinityTokenizerDecodeTiled,
    InfinityEncodeImage, InfinityPadForOutpainting, InfinityCompileModel,
)


class InfinityExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)


async def comfy_entrypoint() -> InfinityExtension:
    return InfinityExtension()
