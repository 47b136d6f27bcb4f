"""kquants: every ggml/GGUF quantization type from Python, bit-exact with ggml.

See the README for a tour. The native core is ``kquants._kquants`` (Rust, via PyO3).
"""

from __future__ import annotations

from ._kquants import GGUFError, __version__
from .gguf import GGUFFile, GGUFWriter, Tensor, open

__all__ = ["GGUFError", "GGUFFile", "GGUFWriter", "Tensor", "__version__", "open"]
