"""GGUF files: a memory-mapped, validating reader and a streaming writer.

Shapes
------
GGUF stores a tensor's dimensions as ``ne[]``, fastest-varying first: ``ne[0]`` is the row
length. kquants reports shapes in NumPy order, which is the reverse: a matrix with
``ne = [cols, rows]`` has ``Tensor.shape == (rows, cols)``, and ``Tensor.numpy()`` has that shape.
``Tensor.ne`` gives the GGUF order. ``GGUFWriter.add_tensor`` takes NumPy-order shapes too.

Metadata values
---------------
Scalars become ``int`` / ``float`` / ``bool`` / ``str``. Arrays of numbers or bools become
read-only-in-spirit NumPy arrays of the matching dtype (a fresh copy per access), arrays of
strings become ``list[str]`` built in one pass, nested arrays become lists. Values are decoded
when first accessed, so opening a file with a 49k-entry token list costs almost nothing.

Every malformed file raises :class:`kquants.GGUFError` (a ``ValueError``) naming the field and its
byte offset.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from os import PathLike
from types import MappingProxyType
from typing import Any, Union

import numpy as np

from . import _kquants
from ._kquants import GGUFError, Tensor
from ._types import QuantType

__all__ = ["GGUFFile", "GGUFWriter", "Tensor", "GGUFError", "open", "METADATA_TYPES"]

StrPath = Union[str, "PathLike[str]"]

# GGUF value type ids and the NumPy dtype of each fixed-size type.
_SCALARS: dict[str, tuple[int, str]] = {
    "u8": (0, "<u1"),
    "i8": (1, "<i1"),
    "u16": (2, "<u2"),
    "i16": (3, "<i2"),
    "u32": (4, "<u4"),
    "i32": (5, "<i4"),
    "f32": (6, "<f4"),
    "bool": (7, "|b1"),
    "u64": (10, "<u8"),
    "i64": (11, "<i8"),
    "f64": (12, "<f8"),
}
_STR_ID = 8
_ARRAY_ID = 9

#: Type names accepted by ``GGUFWriter.add_metadata(type=...)``: the scalars, ``"str"``, and
#: ``"array[T]"`` for any of them (``"array[array[i32]]"``, or ``"array[array]"`` to infer each
#: inner array's type).
METADATA_TYPES = tuple(_SCALARS) + ("str",)

# NumPy dtype of the typed view of each plain tensor type.
_TENSOR_DTYPES = {
    "F32": "<f4",
    "F16": "<f2",
    "F64": "<f8",
    "I8": "<i1",
    "I16": "<i2",
    "I32": "<i4",
    "I64": "<i8",
    "BF16": "<u2",  # ml_dtypes.bfloat16 when installed
}
_DTYPE_TO_TYPE = {np.dtype(v): k for k, v in _TENSOR_DTYPES.items() if k != "BF16"}


def _bf16_dtype() -> Any:
    try:
        import ml_dtypes  # type: ignore[import-not-found]

        return np.dtype(ml_dtypes.bfloat16)
    except ImportError:
        return np.dtype("<u2")


def _type_name(t: Any) -> str:
    """A ggml type given as QuantType, name, id (also gguf-py's ``GGMLQuantizationType``) or any
    enum-like object with a ``.name`` → canonical name."""
    if not isinstance(t, (str, int, np.integer)) and isinstance(getattr(t, "name", None), str):
        t = t.name
    if isinstance(t, np.integer):
        t = int(t)
    return QuantType.parse(t).name


def _expected_nbytes(tname: str, ne: list[int]) -> int | None:
    """Bytes a tensor of this type and GGUF-order shape takes, or None when the shape is invalid
    (the native writer then reports why)."""
    qt = QuantType.parse(tname)
    if not ne or ne[0] <= 0 or ne[0] % qt.block_size:
        return None
    n = qt.row_bytes(ne[0])
    for d in ne[1:]:
        n *= d
    return n


def _tensor_numpy(self: Tensor) -> np.ndarray:
    """Typed zero-copy read-only view in NumPy order.

    F32/F16/F64/I8/I16/I32/I64 get their NumPy dtype; BF16 is ``ml_dtypes.bfloat16`` when
    ml_dtypes is installed, else raw ``uint16``. Block-quantized types have no element dtype: they
    return the raw bytes as ``uint8`` with shape ``(*shape[:-1], bytes_per_row)`` (like gguf-py);
    use ``kquants`` dequantization to get floats.
    """
    raw = self.raw
    shape = tuple(self.shape)
    name = self.type_name
    if name == "BF16":
        return raw.view(_bf16_dtype()).reshape(shape)
    dt = _TENSOR_DTYPES.get(name)
    if dt is not None:
        return raw.view(np.dtype(dt)).reshape(shape)
    rows = shape[:-1]
    n_rows = int(np.prod(rows)) if rows else 1
    return raw.reshape(rows + (self.nbytes // n_rows,))


Tensor.numpy = _tensor_numpy  # type: ignore[method-assign]  # the stub declares it


class Metadata(Mapping):
    """Read-only, ordered mapping of a GGUF file's metadata; values decoded on first access."""

    def __init__(self, native: Any) -> None:
        self._native = native
        index = native.metadata_index()
        self._keys = [k for k, _, _ in index]
        self._types = {k: t for k, t, _ in index}
        self._lens = {k: n for k, _, n in index}
        self._cache: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        try:
            return self._cache[key]
        except KeyError:
            pass
        if key not in self._types:
            raise KeyError(key)
        v = self._native.metadata_value(key)
        self._cache[key] = v
        return v

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._types

    def type_of(self, key: str) -> str:
        """GGUF type of ``key``: ``"u32"``, ``"str"``, ``"array[str]"``, ``"array[array[i32]]"``..."""
        return self._types[key]

    def length_of(self, key: str) -> int | None:
        """Number of elements of an array value (without decoding it), or None for a scalar."""
        return self._lens[key]

    def __repr__(self) -> str:
        return f"<GGUF metadata: {len(self)} keys>"


class GGUFFile:
    """A memory-mapped, validated GGUF file (v2 or v3, little-endian).

    ``version``, ``alignment``, ``data_offset``; ``metadata`` (read-only ordered Mapping, see the
    module docs for value types); ``tensors`` (read-only ordered Mapping name → :class:`Tensor`).
    ``Tensor.raw`` / ``Tensor.numpy()`` are zero-copy views that keep the mapping alive, even
    after :meth:`close`. Use as a context manager or call :meth:`close`.

    Raises:
        GGUFError: the file is malformed (the message names the field and byte offset).
        OSError: the file cannot be opened.
    """

    def __init__(self, path: StrPath) -> None:
        self._native = _kquants._GGUFFile(path)
        self.path = self._native.path
        self.version: int = self._native.version
        self.alignment: int = self._native.alignment
        self.data_offset: int = self._native.data_offset
        self.metadata: Metadata = Metadata(self._native)
        self.tensors: Mapping[str, Tensor] = MappingProxyType({t.name: t for t in self._native.tensors()})

    def close(self) -> None:
        """Release this object's reference to the map (existing views stay valid)."""
        self._native.close()

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return bool(self._native.closed)

    def __enter__(self) -> GGUFFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<GGUFFile {str(self.path)!r} v{self.version}: {len(self.metadata)} keys, {len(self.tensors)} tensors>"


def open(path: StrPath) -> GGUFFile:  # noqa: A001 - mirrors the builtin on purpose
    """Open a GGUF file (same as ``GGUFFile(path)``)."""
    return GGUFFile(path)


# --- metadata type inference and encoding (validated again by the Rust parser) ---------------


def _int_type(lo: int, hi: int) -> str:
    if 0 <= lo and hi < 2**32:
        return "u32"
    if -(2**31) <= lo and hi < 2**31:
        return "i32"
    if 0 <= lo and hi < 2**64:
        return "u64"
    if -(2**63) <= lo and hi < 2**63:
        return "i64"
    raise ValueError(f"integer range [{lo}, {hi}] does not fit any GGUF integer type")


def _dtype_type(dt: np.dtype) -> str:
    if dt.kind == "b":
        return "bool"
    for name, (_, d) in _SCALARS.items():
        if dt.kind in "iuf" and np.dtype(d) == dt.newbyteorder("<"):
            return name
    raise ValueError(f"NumPy dtype {dt} has no GGUF metadata type")


def infer_type(value: Any) -> str:
    """The GGUF type ``GGUFWriter.add_metadata`` gives ``value`` when no type is passed.

    bool → ``bool``; Python int → the first of ``u32``, ``i32``, ``u64``, ``i64`` that holds it;
    Python float → ``f32`` (as gguf-py does); NumPy scalars and arrays → their dtype's type;
    str → ``str``; bytes → ``array[u8]``; list/tuple → ``array[T]`` with ``T`` inferred over all
    elements (ints: the first type that holds all of them; ints mixed with floats: ``f32``; lists
    of lists: ``array[array]``, each inner list inferred separately); an empty list is
    ``array[i32]``.
    """
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, np.generic):
        return _dtype_type(value.dtype)
    if isinstance(value, int):
        return _int_type(value, value)
    if isinstance(value, float):
        return "f32"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "array[u8]"
    if isinstance(value, np.ndarray):
        if value.ndim != 1:
            raise ValueError(f"metadata arrays must be 1-D, got shape {value.shape}")
        if value.dtype.kind in "US":
            return "array[str]"
        return f"array[{_dtype_type(value.dtype)}]"
    if isinstance(value, (list, tuple)):
        if not value:
            return "array[i32]"
        if all(isinstance(v, str) for v in value):
            return "array[str]"
        if all(isinstance(v, (bool, np.bool_)) for v in value):
            return "array[bool]"
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in value):
            return f"array[{_int_type(min(int(v) for v in value), max(int(v) for v in value))}]"
        if all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)) for v in value):
            return "array[f32]"
        if all(isinstance(v, (list, tuple, np.ndarray)) for v in value):
            return "array[array]"
        raise ValueError("cannot infer one GGUF element type for a list of mixed values; pass type=")
    raise TypeError(f"cannot store a {type(value).__name__} as GGUF metadata")


def _encode(value: Any, spec: str) -> tuple[int, bytes]:
    """``(type_id, encoding)`` of ``value`` as GGUF type ``spec``."""
    if spec in _SCALARS:
        tid, dt = _SCALARS[spec]
        if spec == "bool":
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"expected a bool for type bool, got {type(value).__name__}")
            return tid, b"\x01" if value else b"\x00"
        if spec[0] in "ui":
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"expected an int for type {spec}, got {type(value).__name__}")
            info = np.iinfo(np.dtype(dt))
            if not info.min <= int(value) <= info.max:
                raise ValueError(f"{int(value)} does not fit in {spec}")
            return tid, np.array(int(value), dtype=dt).tobytes()
        if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, (bool, np.bool_)):
            raise TypeError(f"expected a number for type {spec}, got {type(value).__name__}")
        return tid, np.array(float(value), dtype=dt).tobytes()
    if spec in ("str", "string"):
        if not isinstance(value, str):
            raise TypeError(f"expected a str for type str, got {type(value).__name__}")
        b = value.encode("utf-8")
        return _STR_ID, struct.pack("<Q", len(b)) + b
    if spec.startswith("array[") and spec.endswith("]"):
        inner = spec[6:-1]
        if isinstance(value, (str, bytes)) and inner != "u8":
            raise TypeError(f"expected a sequence for type {spec}, got {type(value).__name__}")
        if inner == "array":
            items = [_encode(v, infer_type(v)) for v in value]
            if any(t != _ARRAY_ID for t, _ in items):
                raise TypeError("array[array] elements must all be sequences")
            return _ARRAY_ID, struct.pack("<IQ", _ARRAY_ID, len(items)) + b"".join(b for _, b in items)
        if inner.startswith("array["):
            items = [_encode(v, inner) for v in value]
            return _ARRAY_ID, struct.pack("<IQ", _ARRAY_ID, len(items)) + b"".join(b for _, b in items)
        if inner in ("str", "string"):
            parts = []
            for v in value:
                if not isinstance(v, str):
                    raise TypeError(f"array[str] elements must be str, got {type(v).__name__}")
                b = v.encode("utf-8")
                parts.append(struct.pack("<Q", len(b)))
                parts.append(b)
            return _ARRAY_ID, struct.pack("<IQ", _STR_ID, len(value)) + b"".join(parts)
        if inner in _SCALARS:
            tid, dt = _SCALARS[inner]
            if isinstance(value, (bytes, bytearray, memoryview)):
                arr = np.frombuffer(value, dtype=np.uint8)
            else:
                arr = np.asarray(value)
            if arr.ndim != 1:
                raise ValueError(f"metadata arrays must be 1-D, got shape {arr.shape}")
            if arr.size and inner == "bool" and arr.dtype.kind != "b":
                raise TypeError(f"array[bool] needs bool elements, got dtype {arr.dtype}")
            if arr.size and inner[0] in "ui":
                if arr.dtype.kind not in "iu":
                    # Python ints beyond int64 (e.g. [2**63, 1]) make NumPy pick float or object.
                    vals = list(value)
                    if not all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in vals):
                        raise TypeError(f"{spec} needs integer elements, got dtype {arr.dtype}")
                    arr = np.array([int(v) for v in vals], dtype=object)
                info = np.iinfo(np.dtype(dt))
                lo, hi = int(arr.min()), int(arr.max())
                if lo < info.min or hi > info.max:
                    raise ValueError(f"values in [{lo}, {hi}] do not fit in {inner}")
            if arr.size and inner[0] == "f" and arr.dtype.kind not in "iuf":
                raise TypeError(f"{spec} needs numeric elements, got dtype {arr.dtype}")
            data = np.ascontiguousarray(arr, dtype=np.dtype(dt)).tobytes()
            return _ARRAY_ID, struct.pack("<IQ", tid, arr.size) + data
    raise ValueError(f"unknown GGUF metadata type {spec!r}; use one of {METADATA_TYPES} or 'array[T]'")


# --- writer -------------------------------------------------------------------------------


def _as_bytes_array(data: Any) -> np.ndarray:
    """Any bytes-like or array → a flat C-contiguous uint8 view (no copy when already contiguous)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, dtype=np.uint8)
    arr = np.ascontiguousarray(data)
    return arr.reshape(-1).view(np.uint8)


class GGUFWriter:
    """Streaming GGUF v3 writer.

    Metadata first (:meth:`add_metadata`), then tensors, either held until :meth:`close`
    (:meth:`add_tensor`, like gguf-py) or streamed (:meth:`add_tensor_info` for all of them, then
    :meth:`write_tensor_data` in order), or both; data is written in declaration order. The
    file is written to a temporary file in the same directory and renamed onto ``path`` by
    :meth:`close`; leaving a ``with`` block by an exception (or :meth:`abort`) deletes it and
    leaves ``path`` untouched. An input file that is open while being overwritten keeps its old
    contents for its readers (the target is replaced, never rewritten in place).

    Args:
        path: target file.
        alignment: tensor data alignment in bytes (a power of two; recorded as
            ``general.alignment`` when not 32).
    """

    def __init__(self, path: StrPath, alignment: int = 32) -> None:
        self._w = _kquants._GGUFWriter(path, alignment)
        self._pending: list[np.ndarray | None] = []  # held data per declared tensor
        self._sizes: list[int] = []  # nbytes per declared tensor
        self._next = 0  # index of the first tensor whose data is not complete
        self._written = 0  # bytes of tensor `_next` written so far
        self._closed = False

    def add_metadata(self, key: str, value: Any, type: str | None = None) -> None:  # noqa: A002
        """Add a key. ``type`` overrides inference (see :func:`infer_type`): ``"u8"``...``"f64"``,
        ``"bool"``, ``"str"``, ``"array[T]"``."""
        spec = type if type is not None else infer_type(value)
        tid, enc = _encode(value, spec)
        self._w.add_metadata_encoded(key, tid, enc)

    def add_tensor_info(self, name: str, shape: Any, type: Any) -> None:  # noqa: A002
        """Declare a tensor whose data :meth:`write_tensor_data` will stream (NumPy-order
        ``shape`` in elements, ggml ``type`` as name, id or QuantType)."""
        ne = [int(d) for d in reversed(tuple(shape))]
        _, nbytes = self._w.add_tensor_info(name, ne, _type_name(type))
        self._sizes.append(nbytes)
        self._pending.append(None)

    def add_tensor(self, name: str, data: Any, type: Any = None, shape: Any = None) -> None:  # noqa: A002
        """Add a tensor whose data is held and written at :meth:`close`.

        ``data`` is a NumPy array (float32/float16/float64/int8/16/32/64 stored as that type;
        ``ml_dtypes.bfloat16`` as BF16), raw bytes with ``type`` and NumPy-order ``shape``, a tuple
        ``(raw_bytes, type, shape)``, or any object with ``.type``, ``.shape`` and ``.data``
        (such as a quantized tensor).
        """
        if isinstance(data, tuple) and len(data) == 3 and type is None and shape is None:
            data, type, shape = data
        elif type is None and all(hasattr(data, a) for a in ("type", "shape", "data")) and not isinstance(data, np.ndarray):
            data, type, shape = data.data, data.type, data.shape
        if type is None:
            arr = np.asarray(data)
            if getattr(arr.dtype, "name", "") == "bfloat16":
                tname = "BF16"
            elif arr.dtype in _DTYPE_TO_TYPE:
                tname = _DTYPE_TO_TYPE[arr.dtype]
            elif arr.dtype.newbyteorder("<") in _DTYPE_TO_TYPE:
                arr = arr.astype(arr.dtype.newbyteorder("<"))
                tname = _DTYPE_TO_TYPE[arr.dtype]
            else:
                raise TypeError(f"cannot store dtype {arr.dtype} as a GGUF tensor; pass raw bytes with type=")
            if shape is None:
                shape = arr.shape
            if arr.ndim == 0:
                raise ValueError("a GGUF tensor needs at least one dimension")
            buf = _as_bytes_array(arr)
        else:
            tname = _type_name(type)
            if shape is None:
                raise ValueError("shape= is required with raw tensor bytes")
            buf = _as_bytes_array(data)
        ne = [int(d) for d in reversed(tuple(shape))]
        expected = _expected_nbytes(tname, ne)
        if expected is not None and buf.size != expected:
            raise ValueError(f"tensor {name!r}: {tname} with shape {tuple(shape)} takes {expected} bytes, got {buf.size}")
        _, nbytes = self._w.add_tensor_info(name, ne, tname)  # validates the shape
        self._sizes.append(nbytes)
        self._pending.append(buf)

    def _flush_held(self) -> None:
        while self._next < len(self._pending) and self._pending[self._next] is not None:
            buf = self._pending[self._next]
            assert buf is not None  # the loop condition
            self._pending[self._next] = None
            self._w.write_tensor_data(buf)
            self._next += 1

    def write_tensor_data(self, data: Any) -> None:
        """Write data (array or bytes, all of it or a chunk) of the next streamed tensor (tensors
        added with held data before it are written first). Once data has started, no metadata or
        tensor can be added."""
        self._flush_held()
        buf = _as_bytes_array(data)
        self._w.write_tensor_data(buf)
        self._written += buf.size
        if self._next < len(self._sizes) and self._written == self._sizes[self._next]:
            self._next += 1
            self._written = 0

    def close(self) -> None:
        """Write remaining held data and rename the file into place."""
        if self._closed:
            return
        try:
            self._flush_held()
            self._w.finish()
        except BaseException:
            self.abort()
            raise
        self._closed = True

    finish = close

    def abort(self) -> None:
        """Discard the file being written; ``path`` is untouched."""
        self._closed = True
        self._pending.clear()
        self._w.abort()

    def __enter__(self) -> GGUFWriter:
        return self

    def __exit__(self, exc_type: Any, *rest: object) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()
