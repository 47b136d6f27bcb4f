"""Type stubs for the native module ``kquants._kquants``."""

from typing import Any

import numpy as np
import numpy.typing as npt

__version__: str

class GGUFError(ValueError):
    """A GGUF file is malformed; the message names the field and its byte offset."""

# --- codecs (rust/python/quant.rs); the public API is kquants.quantize / dequantize / QTensor ---

def _type_table() -> list[tuple[str, int, int, int, bool, bool]]:
    """``[(name, ggml_id, block_size, type_size, supported, requires_imatrix)]`` for every ggml type."""

def _quantize(
    x: npt.NDArray[np.float32],
    type_id: int,
    imatrix: npt.NDArray[np.float32] | None = None,
    threads: int | None = None,
    reference: bool = False,
) -> npt.NDArray[np.uint8]:
    """Quantize rows (last axis) to ``uint8[rows, row_bytes]``; the GIL is released."""

def _dequantize(data: npt.NDArray[np.uint8], type_id: int, threads: int | None = None) -> npt.NDArray[np.float32]:
    """Dequantize whole blocks to a flat float32 array; the GIL is released."""

def _vec_dot_ref(type_id: int, a: npt.NDArray[np.uint8], b: npt.NDArray[np.uint8], n: int) -> float:
    """Scalar reference dot of a row of ``type_id`` with a row of its activation type, ``n`` values each."""

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
