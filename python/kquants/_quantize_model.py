"""Whole-model quantization: ``kquants.quantize_model`` (llama-quantize's behaviour, bit-exact)."""

from __future__ import annotations

import builtins
import os
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Sequence, Union

from . import _kquants

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["MIXES", "QuantizeReport", "TensorChange", "quantize_model"]

#: llama-quantize's mixes: name -> (general.file_type id, default tensor type, description).
MIXES: dict[str, tuple[int, str, str]] = {name: (fid, default, help_) for name, fid, default, help_ in _kquants._file_types()}


@dataclass(frozen=True)
class TensorChange:
    """What quantization did to one tensor."""

    name: str
    shape: tuple[int, ...]
    from_type: str
    to_type: str
    bytes_in: int
    bytes_out: int
    used_imatrix: bool


@dataclass(frozen=True)
class QuantizeReport:
    """Summary of a :func:`quantize_model` run (also of a dry run)."""

    tensors: list[TensorChange] = field(default_factory=list)
    n_elements: int = 0
    needs_imatrix: bool = False

    @property
    def bytes_in(self) -> int:
        return sum(t.bytes_in for t in self.tensors)

    @property
    def bytes_out(self) -> int:
        return sum(t.bytes_out for t in self.tensors)

    @property
    def bpw_in(self) -> float:
        return 8.0 * self.bytes_in / max(self.n_elements, 1)

    @property
    def bpw_out(self) -> float:
        """Bits per weight of the output (tensor data over all weights, as llama-quantize reports)."""
        return 8.0 * self.bytes_out / max(self.n_elements, 1)

    def type_counts(self) -> dict[str, int]:
        """How many tensors end up in each type."""
        out: dict[str, int] = {}
        for t in self.tensors:
            out[t.to_type] = out.get(t.to_type, 0) + 1
        return out


def _type_id(t: object, what: str) -> int:
    from ._types import QuantType

    if isinstance(t, QuantType):
        return int(t.ggml_id)
    if isinstance(t, str):
        return int(QuantType.parse(t).ggml_id)
    raise TypeError(f"{what} must be a QuantType or a type name, not {type(t).__name__}")


def quantize_model(
    input: PathLike,
    output: PathLike,
    type: str,
    *,
    imatrix: PathLike | None = None,
    include_weights: Sequence[str] = (),
    exclude_weights: Sequence[str] = (),
    output_tensor_type: object | None = None,
    token_embedding_type: object | None = None,
    tensor_types: Mapping[str, object] | Iterable[tuple[str, object]] = (),
    pure: bool = False,
    leave_output_tensor: bool = False,
    allow_requantize: bool = False,
    dry_run: bool = False,
    threads: int | None = None,
    progress: Callable[[int, int, str, str, str, int, int], None] | None = None,
) -> QuantizeReport:
    """Quantize the GGUF model ``input`` into ``output`` like ``llama-quantize`` does.

    Args:
        input: source GGUF file (memory-mapped, never modified).
        output: destination; written to a temporary file beside it and renamed into place only
            on success, so an error, Ctrl-C or a crash never leaves a partial file. Refused when
            it is the input file.
        type: a llama-quantize mix (``"Q4_K_M"``, ``"IQ4_XS"``, ``"Q8_0"``, ``"F16"``...; see
            :data:`MIXES`) or ``"COPY"`` to copy tensors unchanged.
        imatrix: importance matrix file (llama.cpp GGUF imatrix or legacy ``.dat``).
        include_weights / exclude_weights: use the imatrix only for tensors whose name contains
            one of these substrings / none of them.
        output_tensor_type, token_embedding_type: force these tensors' types.
        tensor_types: ``{regex: type}`` overrides, first match wins (``--tensor-type``).
        pure: disable the mix's per-tensor rules (overrides still apply).
        leave_output_tensor: keep ``output.weight`` as it is.
        allow_requantize: allow quantizing tensors that are already quantized.
        dry_run: plan and report sizes without writing anything.
        threads: worker threads (default: all cores). The output does not depend on it.
        progress: called after each tensor as
            ``progress(done, total, name, from_type, to_type, bytes_done, bytes_total)``.

    Returns:
        A :class:`QuantizeReport` with every tensor's old and new type and size.

    Example:
        >>> import kquants
        >>> r = kquants.quantize_model("model-f32.gguf", "model-q4km.gguf", "Q4_K_M")  # doctest: +SKIP
        >>> print(f"{r.bpw_out:.2f} bits per weight")  # doctest: +SKIP
    """
    if not isinstance(type, str):
        raise TypeError(f"type must be a mix name such as 'Q4_K_M', not {builtins.type(type).__name__}")
    name = type.strip().upper()
    only_copy = name == "COPY"
    if only_copy:
        name = "F32"
    elif name not in MIXES and name not in ("Q3_K", "Q4_K", "Q5_K", "F32"):
        raise ValueError(f"unknown quantization type {type!r}; choose one of: COPY, {', '.join(MIXES)}")
    items = tensor_types.items() if isinstance(tensor_types, Mapping) else tensor_types
    overrides = [(str(p), _type_id(t, f"tensor_types[{p!r}]")) for p, t in items]
    rows, n_elements, needs = _kquants._quantize_model(
        os.fspath(input),
        os.fspath(output),
        name,
        only_copy=only_copy,
        imatrix=None if imatrix is None else os.fspath(imatrix),
        include_weights=list(include_weights),
        exclude_weights=list(exclude_weights),
        output_tensor_type=None if output_tensor_type is None else _type_id(output_tensor_type, "output_tensor_type"),
        token_embedding_type=None if token_embedding_type is None else _type_id(token_embedding_type, "token_embedding_type"),
        tensor_types=overrides,
        pure=pure,
        leave_output_tensor=leave_output_tensor,
        allow_requantize=allow_requantize,
        dry_run=dry_run,
        threads=threads,
        progress=progress,
    )
    return QuantizeReport(
        tensors=[TensorChange(n, tuple(s), f, t, bi, bo, u) for n, s, f, t, bi, bo, u in rows],
        n_elements=n_elements,
        needs_imatrix=needs,
    )

