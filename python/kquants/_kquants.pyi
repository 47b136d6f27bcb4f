"""Type stubs for the native module ``kquants._kquants``."""

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
