"""Weight file formats, side by side: each module reads one, behind the same `TensorSource` interface.

| module               | format                                                    | quantized weights kept packed   |
|----------------------|-----------------------------------------------------------|---------------------------------|
| safetensors_plain.py | safetensors: fp32 / bf16 / fp16 (and float8 without scale) | float8 (scale 1)                |
| comfy_quant.py       | ComfyUI's per-layer quantized safetensors (+ `scaled_fp8`) | float8 / int8 with their scales |
| gguf_file.py         | GGUF (`general.architecture` "infinity")                   | Q8_0, Q4_K, Q5_K                |
| pickle_checkpoint.py | torch.save checkpoints (the official `.pth`), no code run  | none                            |

`detect.open_source` picks the reader from the file's contents; `quantized.QuantizedLinear` is the layer
that holds a packed weight and expands it at each use; `gguf_blocks` holds the GGUF block layouts.
"""
from .detect import READERS, detect_format, open_source
from .quantized import QuantizedLinear, QuantizedTensor
from .source import TensorSource

__all__ = ["READERS", "QuantizedLinear", "QuantizedTensor", "TensorSource", "detect_format", "open_source"]
