"""kquants: every ggml/GGUF quantization type from Python, bit-exact with ggml.

See the README for a tour. The native core is ``kquants._kquants`` (Rust, via PyO3).
"""

from __future__ import annotations

from ._kquants import GGUFError, __version__
from ._kquants import matmul, quantize_activations, simd_info, vec_dot
from .model import Model, imatrix, load_imatrix, perplexity

__all__ = ["GGUFError", "__version__", "matmul", "quantize_activations", "simd_info", "vec_dot"]
__all__ += ["Model", "imatrix", "load_imatrix", "perplexity"]
