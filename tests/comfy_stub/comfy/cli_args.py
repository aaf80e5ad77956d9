"""Stand-in for comfy.cli_args: the parsed command line, reduced to the preview settings."""
import enum
from types import SimpleNamespace


class LatentPreviewMethod(enum.Enum):
    NoPreviews = "none"
    Auto = "auto"
    Latent2RGB = "latent2rgb"
    TAESD = "taesd"


args = SimpleNamespace(preview_method=LatentPreviewMethod.NoPreviews, preview_size=512,
                       fp32_unet=False, bf16_unet=False, fp16_unet=False)   # ComfyUI's defaults
