"""kquants: every ggml/GGUF quantization type from Python, bit-exact with ggml.

See the README for a tour. The native core is ``kquants._kquants`` (Rust, via PyO3).
"""

from __future__ import annotations

from ._kquants import GGUFError, __version__
from ._kquants import matmul, quantize_activations, simd_info, vec_dot
from ._quant import QTensor, dequantize, quantize
from ._types import QuantType, quant_types

__all__ = [
    "GGUFError",
    "QTensor",
    "QuantType",
    "__version__",
    "dequantize",
    "matmul",
    "quant_types",
    "quantize",
    "quantize_activations",
    "simd_info",
    "vec_dot",
]
