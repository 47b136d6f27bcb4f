"""``QuantType``: every ggml tensor type, with its block geometry from the native table."""

from __future__ import annotations

import enum
from typing import Dict, List, Tuple, Union

from . import _kquants

# name -> (ggml_id, block_size, type_size, supported, requires_imatrix), from the Rust table
# (rust/types.rs), the single source of these facts.
_TABLE: Dict[str, Tuple[int, int, int, bool, bool]] = {
    name: (gid, bs, ts, sup, req) for (name, gid, bs, ts, sup, req) in _kquants._type_table()
}


class QuantType(enum.IntEnum):
    """A ggml tensor type; the value is the ggml type id stored in GGUF files.

    Values equal gguf-py's ``GGMLQuantizationType``, so ``QuantType(t)`` converts one of those.
    ``QuantType.parse("q4_k")`` and ``QuantType("q4_k")`` look a name up case-insensitively.
    """

    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q5_0 = 6
    Q5_1 = 7
    Q8_0 = 8
    Q8_1 = 9
    Q2_K = 10
    Q3_K = 11
    Q4_K = 12
    Q5_K = 13
    Q6_K = 14
    Q8_K = 15
    IQ2_XXS = 16
    IQ2_XS = 17
    IQ3_XXS = 18
    IQ1_S = 19
    IQ4_NL = 20
    IQ3_S = 21
    IQ2_S = 22
    IQ4_XS = 23
    I8 = 24
    I16 = 25
    I32 = 26
    I64 = 27
    F64 = 28
    IQ1_M = 29
    BF16 = 30
    TQ1_0 = 34
    TQ2_0 = 35
    MXFP4 = 39
    NVFP4 = 40
    Q1_0 = 41
    Q2_0 = 42

    @property
    def ggml_id(self) -> int:
        """The ggml type id (the enum value)."""
        return int(self.value)

    @property
    def block_size(self) -> int:
        """Number of values in one block (1 for the float and integer types)."""
        return _TABLE[self.name][1]

    @property
    def type_size(self) -> int:
        """Number of bytes in one block."""
        return _TABLE[self.name][2]

    @property
    def bits_per_weight(self) -> float:
        """``8 * type_size / block_size``."""
        return 8.0 * self.type_size / self.block_size

    @property
    def supported(self) -> bool:
        """Whether this build of kquants can quantize and dequantize the type."""
        return _TABLE[self.name][3]

    @property
    def requires_imatrix(self) -> bool:
        """True where ggml refuses to quantize without an importance matrix
        (``ggml_quantize_requires_imatrix``: IQ2_XXS, IQ2_XS, IQ1_S)."""
        return _TABLE[self.name][4]

    def row_bytes(self, n: int) -> int:
        """Bytes taken by a row of ``n`` values; ``ValueError`` unless ``n`` is a multiple of
        the block size."""
        if n < 0 or n % self.block_size:
            raise ValueError(f"row length {n} is not a multiple of the {self.name} block size {self.block_size}")
        return n // self.block_size * self.type_size

    @classmethod
    def parse(cls, value: Union["QuantType", str, int]) -> "QuantType":
        """A member from a member, a name (case-insensitive, ``"q4_k"``) or a ggml id (including
        gguf-py's ``GGMLQuantizationType``). ``TypeError`` for other objects, ``ValueError`` for
        unknown names and ids."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            member = _BY_NAME.get(value.strip().upper())
            if member is None:
                raise ValueError(f"unknown quantization type {value!r}; known: {', '.join(_BY_NAME)}")
            return member
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(int(value))
            except ValueError:
                raise ValueError(f"unknown ggml type id {int(value)}") from None
        raise TypeError(f"expected a QuantType, a type name or a ggml id, got {type(value).__name__}")

    @classmethod
    def _missing_(cls, value: object) -> "QuantType | None":
        if isinstance(value, str):
            return _BY_NAME.get(value.strip().upper())
        return None

    def __str__(self) -> str:
        return self.name

    def __format__(self, spec: str) -> str:
        return format(self.name, spec)


_BY_NAME: Dict[str, QuantType] = {t.name: t for t in QuantType}


def _check_table() -> None:
    """The members above must be exactly the native table (names and ids)."""
    native = {name: row[0] for name, row in _TABLE.items()}
    ours = {t.name: t.value for t in QuantType}
    if native != ours:
        raise ImportError(f"kquants.QuantType is out of sync with the native type table: {sorted(set(native.items()) ^ set(ours.items()))}")


_check_table()


def quant_types() -> List[QuantType]:
    """Every type this build can quantize and dequantize, in ggml id order."""
    return [t for t in QuantType if t.supported]
