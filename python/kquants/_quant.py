"""``quantize`` / ``dequantize`` / ``QTensor``: argument handling over the native codecs.

The work (validation of values, quantization, dequantization) is done in Rust with the GIL
released; this module only normalizes arguments and wraps the resulting ``uint8`` array.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

from . import _kquants
from ._types import QuantType

TypeLike = Union[QuantType, str, int]

_F32 = np.dtype(np.float32)
_new_object = object.__new__


def _threads(threads: Optional[int]) -> Optional[int]:
    if threads is None or (threads.__class__ is int and threads >= 1):
        return threads  # the common cases, before the slower checks below
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)):
        raise TypeError(f"threads must be an int or None, got {type(threads).__name__}")
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    return int(threads)


def _shape(shape: Any) -> Tuple[int, ...]:
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(f"shape must be a sequence of ints, got {type(shape).__name__}") from None
    out = []
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
            raise TypeError(f"shape must be a sequence of ints, got {shape!r}")
        if d < 0:
            raise ValueError(f"shape {dims} has a negative dimension")
        out.append(int(d))
    if not out:
        raise ValueError("shape must have at least one axis (the last axis is a row)")
    return tuple(out)


def _as_uint8(buffer: Any) -> npt.NDArray[np.uint8]:
    """A flat ``uint8`` view of any C-contiguous buffer (no copy)."""
    if isinstance(buffer, np.ndarray):
        if not buffer.flags.c_contiguous:
            raise ValueError("buffer must be C-contiguous")
        return buffer.reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(buffer, dtype=np.uint8)
    except TypeError:
        raise TypeError(f"expected a buffer (bytes, memoryview, NumPy array), got {type(buffer).__name__}") from None


def _fmt_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # unreachable


class QTensor:
    """A quantized tensor: ggml blocks of ``type`` holding a float array of ``shape``.

    ``data`` is a ``uint8`` array of shape ``(rows, row_bytes)`` where ``rows`` is the product of
    all axes but the last; it is the memory of the tensor (not a copy). Make one with
    :func:`kquants.quantize` or :meth:`QTensor.from_bytes`.
    """

    __slots__ = ("_type", "_shape", "_data")

    def __init__(self, data: npt.NDArray[np.uint8], type: TypeLike, shape: Sequence[int]) -> None:
        t = QuantType.parse(type)
        shp = _shape(shape)
        flat = _as_uint8(data)
        row_bytes = t.row_bytes(shp[-1])
        rows = math.prod(shp[:-1])
        if flat.size != rows * row_bytes:
            raise ValueError(
                f"{flat.size} bytes do not hold a {t.name} tensor of shape {shp} ({rows * row_bytes} bytes)"
            )
        self._type = t
        self._shape = shp
        self._data = flat.reshape(rows, row_bytes)

    @classmethod
    def _trusted(cls, data: npt.NDArray[np.uint8], t: QuantType, shape: Tuple[int, ...]) -> "QTensor":
        """Wrap ``_kquants._quantize``'s output, already ``uint8[rows, row_bytes]`` for ``shape``
        (skips the checks of ``__init__``, a few microseconds per call)."""
        self = _new_object(cls)
        self._type = t
        self._shape = shape  # a NumPy shape: already a tuple of Python ints
        self._data = data
        return self

    @classmethod
    def from_bytes(cls, buffer: Any, type: TypeLike, shape: Sequence[int]) -> "QTensor":
        """Wrap the bytes of a quantized tensor without copying: ``bytes``, ``memoryview``,
        ``mmap``, a NumPy array (e.g. a GGUF tensor's data), anything C-contiguous with the
        buffer protocol. ``shape`` is the logical float shape (ggml's ``ne`` reversed). The size
        is checked: ``ValueError`` if it does not match."""
        return cls(buffer, type, shape)

    @property
    def type(self) -> QuantType:
        """The ggml type of the blocks."""
        return self._type

    @property
    def shape(self) -> Tuple[int, ...]:
        """The logical shape of the float tensor."""
        return self._shape

    @property
    def data(self) -> npt.NDArray[np.uint8]:
        """The quantized bytes, ``uint8[rows, row_bytes]`` (the tensor's own memory)."""
        return self._data

    @property
    def nbytes(self) -> int:
        """Size of the quantized data in bytes."""
        return int(self._data.size)

    @property
    def size(self) -> int:
        """Number of float values the tensor holds."""
        return math.prod(self._shape)

    @property
    def bits_per_weight(self) -> float:
        """Bits per value of the type (``8 * type_size / block_size``)."""
        return self._type.bits_per_weight

    def dequantize(self, *, threads: Optional[int] = None) -> npt.NDArray[np.float32]:
        """Decode to a new float32 array of ``shape`` (bit-exact with ggml's ``to_float``)."""
        # QuantType is an IntEnum: the member is its ggml id.
        return _kquants._dequantize(self._data, self._type, _threads(threads), self._shape)

    def __repr__(self) -> str:
        return (
            f"QTensor({self._type.name}, shape={self._shape}, {_fmt_bytes(self.nbytes)}, "
            f"{self.bits_per_weight:.2f} bpw)"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QTensor):
            return NotImplemented
        return (
            self._type == other._type and self._shape == other._shape and bool(np.array_equal(self._data, other._data))
        )

    __hash__ = None  # type: ignore[assignment]


def _float32(x: Any, bfloat16: bool) -> npt.NDArray[np.float32]:
    if not bfloat16 and type(x) is np.ndarray and x.dtype is _F32:
        return x  # the common case, without the slower dtype checks below
    arr = np.asarray(x)
    if bfloat16:
        if arr.dtype != np.uint16:
            raise TypeError(f"bfloat16=True expects a uint16 array of bfloat16 bit patterns, got {arr.dtype}")
        return (arr.astype(np.uint32) << 16).view(np.float32)
    if arr.dtype.name == "bfloat16":  # ml_dtypes.bfloat16: widen the bits exactly
        return (arr.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    if arr.dtype.kind != "f":
        hint = " (pass bfloat16=True for bfloat16 bits stored as uint16)" if arr.dtype == np.uint16 else ""
        raise TypeError(f"quantize expects a floating-point array, got dtype {arr.dtype}{hint}")
    if arr.dtype != np.float32:
        # Values beyond float32 range become inf here and are reported as non-finite input.
        with np.errstate(over="ignore"):
            arr = arr.astype(np.float32)
    return arr


def quantize(
    x: Any,
    type: TypeLike,
    *,
    imatrix: Any = None,
    threads: Optional[int] = None,
    ref: bool = False,
    bfloat16: bool = False,
) -> QTensor:
    """Quantize an array to ``type``, bit-exactly as ggml does.

    ``x``: a float array (float32; float16, float64 and ``ml_dtypes.bfloat16`` are converted
    exactly or by rounding to float32; bfloat16 bit patterns in a ``uint16`` array with
    ``bfloat16=True``) with at least one axis. The last axis is a row; its length must be a
    multiple of ``type.block_size``. A non-contiguous array is copied first.

    ``type``: a :class:`QuantType` or its name (``"Q4_K"``, case-insensitive).

    ``imatrix``: optional importance weights, one finite non-negative value per column (the
    last axis), as llama-quantize passes them. Required for types where
    ``type.requires_imatrix``.

    ``threads``: worker threads (``None``: all cores); the output does not depend on it.

    ``ref=True`` runs ggml's ``quantize_row_<t>_ref`` instead of ``ggml_quantize_chunk`` (they
    differ only for IQ4_NL; for Q8_1/Q8_K, which have no chunk quantizer, both are the same);
    it takes no imatrix.

    Raises ``ValueError`` for non-finite input (naming the first bad index), a bad row length,
    a bad imatrix, a missing required imatrix or an unsupported type; ``TypeError`` for
    arguments of the wrong kind. The GIL is released while quantizing.
    """
    # Fast paths (a call costs about a microsecond of Python, 4 ns per 256 values of a 16 x 4096
    # array): a QuantType member, a float32 ndarray, threads None or a positive int.
    t = type if type.__class__ is QuantType else QuantType.parse(type)
    arr = x if (x.__class__ is np.ndarray and x.dtype is _F32 and not bfloat16) else _float32(x, bfloat16)
    # A 0-d array is refused by `_quantize` ("cannot quantize a 0-d array: the last axis is a row").
    w = None
    if imatrix is not None:
        w = np.asarray(imatrix)
        if w.dtype.kind not in "fiu":
            raise TypeError(f"imatrix must be a real array, got dtype {w.dtype}")
        if w.ndim != 1:
            raise ValueError(f"imatrix must be 1-D (one weight per column), got shape {w.shape}")
        w = np.ascontiguousarray(w, dtype=np.float32)
    # The native side reads a C-contiguous array in place and copies any other layout once.
    data = _kquants._quantize(arr, t, w, _threads(threads), ref is True or bool(ref))
    q = _new_object(QTensor)  # QTensor._trusted, inlined
    q._type = t
    q._shape = arr.shape
    q._data = data
    return q


def dequantize(
    q: Any,
    type: Optional[TypeLike] = None,
    shape: Optional[Sequence[int]] = None,
    *,
    threads: Optional[int] = None,
) -> npt.NDArray[np.float32]:
    """Decode to float32, bit-exactly as ggml's ``to_float``.

    ``q``: a :class:`QTensor`, a ``(buffer, type, shape)`` tuple, or a buffer with ``type`` and
    ``shape`` given as arguments. Returns a new array of the tensor's shape.
    """
    if q.__class__ is QTensor and type is None and shape is None:
        return q.dequantize(threads=threads)
    if isinstance(q, QTensor):
        if type is not None or shape is not None:
            raise TypeError("dequantize(QTensor) takes no type or shape")
        return q.dequantize(threads=threads)
    if isinstance(q, tuple) and type is None and shape is None:
        if len(q) != 3:
            raise TypeError("dequantize expects a QTensor or a (buffer, type, shape) tuple")
        q, type, shape = q
    if type is None or shape is None:
        raise TypeError("dequantize of a raw buffer needs its type and shape")
    return QTensor.from_bytes(q, type, shape).dequantize(threads=threads)
