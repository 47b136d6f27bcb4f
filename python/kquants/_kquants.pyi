"""Type stubs for the native module ``kquants._kquants``."""


import numpy as np
import numpy.typing as npt
from os import PathLike
from typing import Any, Optional, Sequence, Union, final

from kquants._types import QuantType

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

def _dequantize(
    data: npt.NDArray[np.uint8], type_id: int, threads: int | None = None, shape: Sequence[int] | None = None
) -> npt.NDArray[np.float32]:
    """Dequantize whole blocks to a float32 array (flat, or of ``shape``); the GIL is released."""

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
    def type(self) -> QuantType:
        """The ggml type (a ``kquants.QuantType`` member)."""
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
# SIMD kernels and quantized matmul (rust/python/simd.rs).
def simd_info() -> dict[str, Any]:
    """The instruction set in use (``isa``), ``detected``, ``requested`` (``KQUANTS_ISA``),
    ``available`` levels, and per-type kernel levels (``vec_dot``, ``quantize_activations``)."""
@final
class PackedWeight:
    """A 2-D quantized weight prepared once for many :func:`matmul` calls.

    ``PackedWeight(w)`` copies the QTensor ``w`` (n, k) into the layout this machine's kernels
    read fastest: on AVX-512, Q4_0, IQ4_XS, Q4_K and Q5_K rows are interleaved in groups of 16 (as
    ggml repacks weights at load time), other types keep their rows. ``matmul(packed, x)`` gives
    bit for bit what ``matmul(w, x)`` gives."""
    def __new__(cls, w: Any) -> PackedWeight: ...
    @property
    def type(self) -> QuantType: ...
    @property
    def shape(self) -> tuple[int, int]: ...
    @property
    def interleaved(self) -> bool: ...
    @property
    def nbytes(self) -> int: ...
    def to_bytes(self) -> np.ndarray:
        """The original ggml row bytes, uint8 (n, row_bytes)."""
def matmul(w: Any, x: np.ndarray, *, threads: int | None = None) -> np.ndarray:
    """``x @ dequantize(w).T`` with quantized kernels: ``w`` a 2-D QTensor (n, k) or a
    :class:`PackedWeight`, ``x`` float32
    (..., k) -> float32 (..., n). Activations are quantized once (Q8_0/Q8_1/Q8_K, ggml's SIMD
    rounding); the error against the float product is bounded by half an activation quantization
    step per block (see ``kquants::matmul::error_bound``). Releases the GIL."""
def vec_dot(qa: Any, qb: Any) -> float:
    """Dot product of one quantized row ``qa`` with one row ``qb`` of its activation type."""
def quantize_activations(x: np.ndarray, type: Any) -> np.ndarray:
    """Rows of float32 ``x`` quantized to the activation type of weight type ``type``
    (ggml's SIMD rounding, as matmul uses); uint8 (..., row_bytes)."""
def _read_bandwidth(buf: np.ndarray, threads: int, reps: int = 3) -> tuple[float, int, int]:
    """Benchmark helper: the fastest plain read of the C-contiguous uint8 array ``buf`` with
    ``threads`` threads (best of ``reps`` passes per prefetch setting), as
    ``(bytes_per_second, streams, ahead)``: the peer of a memory-bound GEMV over the same bytes."""

# Llama-family models (rust/python/model.rs); the friendly API is kquants.model.
@final
class _Model:
    """A loaded GGUF model (weights memory-mapped, kept quantized) with its tokenizer."""
    @staticmethod
    def load(path: str, threads: int | None = None, repack: bool = True) -> _Model: ...
    @property
    def config(self) -> dict[str, Any]: ...
    @property
    def n_vocab(self) -> int: ...
    @property
    def bos_token_id(self) -> int | None: ...
    @property
    def eos_token_id(self) -> int | None: ...
    @property
    def eot_token_id(self) -> int | None: ...
    @property
    def add_bos(self) -> bool: ...
    @property
    def chat_template(self) -> str | None: ...
    def tokenize(self, text: str, add_special: bool = True) -> list[int]: ...
    def detokenize(self, ids: list[int]) -> str: ...
    def token_bytes(self, id: int) -> bytes: ...
    def forward(self, ids: list[int], last_only: bool = False) -> np.ndarray: ...
    def generate(self, ids: list[int], max_tokens: int, temperature: float, top_k: int, top_p: float,
                 seed: int, stop_ids: list[int]) -> _Generator: ...
    def apply_chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str: ...
    def perplexity(self, text: str, n_ctx: int, base: _Model | None = None, max_chunks: int | None = None,
                   progress: Any = None) -> dict[str, float]: ...
    def imatrix(self, text: str, out: str, n_ctx: int = 512, max_chunks: int | None = None, dataset: str = ...,
                progress: Any = None) -> int: ...

@final
class _Generator:
    """Streaming generation: yields text pieces."""
    def __iter__(self) -> _Generator: ...
    def __next__(self) -> str: ...
    @property
    def tokens(self) -> list[int]: ...
    @property
    def timings(self) -> tuple[int, float, int, float]: ...

def load_imatrix(path: str) -> dict[str, np.ndarray]:
    """Read an importance matrix (GGUF or legacy .dat): {weight name: mean squared activation}."""

# Whole-model quantization (rust/python/quantize.rs); the public API is kquants.quantize_model.
def _file_types() -> list[tuple[str, int, str, str]]:
    """``[(name, general.file_type id, default tensor type, description)]`` for every llama-quantize mix."""

def _quantize_model(
    input: str,
    output: str,
    ftype: str,
    *,
    only_copy: bool = False,
    imatrix: str | None = None,
    include_weights: list[str] = ...,
    exclude_weights: list[str] = ...,
    output_tensor_type: int | None = None,
    token_embedding_type: int | None = None,
    tensor_types: list[tuple[str, int]] = ...,
    pure: bool = False,
    leave_output_tensor: bool = False,
    allow_requantize: bool = False,
    dry_run: bool = False,
    threads: int | None = None,
    progress: Any = None,
) -> tuple[list[tuple[str, list[int], str, str, int, int, bool]], int, bool]:
    """Quantize a GGUF model file; returns (per-tensor rows, number of weights, needs_imatrix)."""

# Hugging Face safetensors -> GGUF (rust/python/convert.rs); the public API is kquants.convert.
def _convert(
    model_dir: str,
    output: str,
    outtype: str,
    *,
    threads: int | None = None,
    model_name: str | None = None,
    tokenizer_pre: str | None = None,
    progress: Any = None,
) -> tuple[list[tuple[str, list[int], str, str, int, int]], int]:
    """Convert a Hugging Face model directory to GGUF; returns (per-tensor rows, number of weights)."""
