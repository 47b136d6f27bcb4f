"""Type stubs for the native module ``kquants._kquants``."""

import numpy as np
import numpy.typing as npt
from os import PathLike
from typing import Any, Optional, Union, final

__version__: str

class GGUFError(ValueError):
    """A GGUF file is malformed; the message names the field and its byte offset."""

# --- codecs (rust/python/quant.rs); the public API is kquants.quantize / dequantize / QTensor ---

def _type_table() -> list[tuple[str, int, int, int, bool]]:
    """``[(name, ggml_id, block_size, type_size, supported)]`` for every ggml type."""

def _imatrix_required() -> list[str]:
    """Names of the types ggml refuses to quantize without an importance matrix."""

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
# --- GGUF (rust/python/gguf.rs; the public wrappers are in kquants/gguf.py) ---
@final
class Tensor:
    """One tensor of a GGUF file (shape in NumPy order: GGUF ne[] reversed)."""
    @property
    def name(self) -> str: ...
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def ne(self) -> tuple[int, ...]: ...
    @property
    def type(self) -> Any:
        """A ``kquants.QuantType`` member when kquants defines that enum, else the type name."""
    @property
    def type_name(self) -> str: ...
    @property
    def type_id(self) -> int: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def offset(self) -> int:
        """Offset of the data relative to the data section."""
    @property
    def file_offset(self) -> int:
        """Absolute offset of the data in the file."""
    @property
    def n_elements(self) -> int: ...
    @property
    def raw(self) -> npt.NDArray[np.uint8]:
        """Zero-copy read-only uint8 view that keeps the file mapped."""
    def numpy(self) -> np.ndarray:
        """Typed zero-copy view (see kquants.gguf)."""
@final
class _GGUFFile:
    def __new__(cls, path: Union[str, PathLike[str]]) -> _GGUFFile: ...
    @property
    def path(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def alignment(self) -> int: ...
    @property
    def data_offset(self) -> int: ...
    @property
    def closed(self) -> bool: ...
    def metadata_index(self) -> list[tuple[str, str, Optional[int]]]: ...
    def metadata_value(self, key: str) -> Any: ...
    def tensors(self) -> list[Tensor]: ...
    def close(self) -> None: ...
@final
class _GGUFWriter:
    def __new__(cls, path: Union[str, PathLike[str]], alignment: int = 32) -> _GGUFWriter: ...
    def add_metadata_encoded(self, key: str, type_id: int, encoded: bytes) -> None: ...
    def add_tensor_info(self, name: str, ne: list[int], type_name: str) -> tuple[int, int]: ...
    def write_tensor_data(self, data: npt.NDArray[np.uint8]) -> None: ...
    def next_tensor(self) -> Optional[tuple[str, int]]: ...
    def finish(self) -> None: ...
    def abort(self) -> None: ...
@final
class _Buffer:
    def __len__(self) -> int: ...
