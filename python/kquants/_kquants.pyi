"""Type stubs for the native module ``kquants._kquants``."""

from typing import Any

import numpy as np

__version__: str

class GGUFError(ValueError):
    """A GGUF file is malformed; the message names the field and its byte offset."""

def _type_table() -> list[tuple[str, int, int, int, bool]]: ...

# SIMD kernels and quantized matmul (rust/python/simd.rs).
def simd_info() -> dict[str, Any]:
    """The instruction set in use (``isa``), ``detected``, ``requested`` (``KQUANTS_ISA``),
    ``available`` levels, and per-type kernel levels (``vec_dot``, ``quantize_activations``)."""

def matmul(w: Any, x: np.ndarray, *, threads: int | None = None) -> np.ndarray:
    """``x @ dequantize(w).T`` with quantized kernels: ``w`` a 2-D QTensor (n, k), ``x`` float32
    (..., k) -> float32 (..., n). Activations are quantized once (Q8_0/Q8_1/Q8_K, ggml's SIMD
    rounding); the error against the float product is bounded by half an activation quantization
    step per block (see ``kquants::matmul::error_bound``). Releases the GIL."""

def vec_dot(qa: Any, qb: Any) -> float:
    """Dot product of one quantized row ``qa`` with one row ``qb`` of its activation type."""

def quantize_activations(x: np.ndarray, type: Any) -> np.ndarray:
    """Rows of float32 ``x`` quantized to the activation type of weight type ``type``
    (ggml's SIMD rounding, as matmul uses); uint8 (..., row_bytes)."""
