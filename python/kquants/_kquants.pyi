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

# Llama-family models (rust/python/model.rs); the friendly API is kquants.model.
class _Model:
    """A loaded GGUF model (weights memory-mapped, kept quantized) with its tokenizer."""
    @staticmethod
    def load(path: str, threads: int | None = None) -> _Model: ...
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
    def forward(self, ids: list[int]) -> np.ndarray: ...
    def generate(self, ids: list[int], max_tokens: int, temperature: float, top_k: int, top_p: float,
                 seed: int, stop_ids: list[int]) -> _Generator: ...
    def apply_chat_template(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str: ...
    def perplexity(self, text: str, n_ctx: int, base: _Model | None = None, max_chunks: int | None = None,
                   progress: Any = None) -> dict[str, float]: ...
    def imatrix(self, text: str, out: str, n_ctx: int = 512, max_chunks: int | None = None, dataset: str = "",
                progress: Any = None) -> int: ...

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
