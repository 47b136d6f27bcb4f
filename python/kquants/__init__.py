"""kquants: every ggml/GGUF quantization type from Python, bit-exact with ggml.

See the README for a tour. The native core is ``kquants._kquants`` (Rust, via PyO3).
"""

from __future__ import annotations

from ._kquants import GGUFError, __version__
from ._quantize_model import MIXES, QuantizeReport, TensorChange, quantize_model
from ._convert import convert
from ._kquants import PackedWeight, matmul, quantize_activations, simd_info, vec_dot
from ._quant import QTensor, dequantize, quantize
from ._types import QuantType, quant_types
from .gguf import GGUFFile, GGUFWriter, Tensor, open
from .model import Model, imatrix, load_imatrix, perplexity

__all__ = [
    "MIXES",
    "Model",
    "PackedWeight",
    "imatrix",
    "load_imatrix",
    "perplexity",
    "QuantizeReport",
    "TensorChange",
    "quantize_model",
    "convert",
    "GGUFError",
    "GGUFFile",
    "GGUFWriter",
    "QTensor",
    "QuantType",
    "Tensor",
    "__version__",
    "dequantize",
    "open",
    "matmul",
    "quant_types",
    "quantize",
    "quantize_activations",
    "simd_info",
    "vec_dot",
]
