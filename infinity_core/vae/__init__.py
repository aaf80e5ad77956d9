"""The multi-scale bitwise (BSQ) VAE: conv autoencoder plus the pure bits <-> codes functions."""
from .autoencoder import BitwiseVAE, EncodeResult
from .bsq import (
    accumulate_codes,
    bits_to_codes,
    downsample_residual,
    next_scale_input,
    patchify_bits,
    quantize,
    unpatchify_bits,
    upsample_codes,
)

__all__ = [
    "BitwiseVAE",
    "EncodeResult",
    "accumulate_codes",
    "bits_to_codes",
    "downsample_residual",
    "next_scale_input",
    "patchify_bits",
    "quantize",
    "unpatchify_bits",
    "upsample_codes",
]
