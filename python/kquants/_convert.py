"""Hugging Face safetensors model directory -> GGUF: ``kquants.convert`` (llama.cpp's converter)."""

from __future__ import annotations

import os
from typing import Callable, Union

from . import _kquants
from ._quantize_model import QuantizeReport, TensorChange

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["convert"]


def convert(
    model_dir: PathLike,
    output: PathLike,
    outtype: str = "f16",
    *,
    threads: int | None = None,
    model_name: str | None = None,
    tokenizer_pre: str | None = None,
    progress: Callable[[int, int, str, str, str, int, int], None] | None = None,
) -> QuantizeReport:
    """Convert a Hugging Face model directory to GGUF the way llama.cpp's ``convert_hf_to_gguf.py`` does.

    Handles ``LlamaForCausalLM``, ``MistralForCausalLM`` (written as ``llama``) and
    ``Qwen2ForCausalLM`` with safetensors weights (``model.safetensors`` or a sharded
    ``model.safetensors.index.json``; F32, F16 or BF16) and a byte-level BPE ``tokenizer.json``.
    Tensor names, metadata keys, tensor order and the q/k row permutation are llama.cpp's.
    Weights are memory-mapped and converted a slab of rows at a time.

    Args:
        model_dir: directory with ``config.json``, the safetensors files, ``tokenizer.json`` and
            (optionally) ``tokenizer_config.json``.
        output: destination GGUF file, written to a temporary file and renamed into place only
            on success (an error or Ctrl-C leaves nothing behind).
        outtype: ``"f32"``, ``"f16"`` (default), ``"bf16"``, ``"q8_0"`` (1-D tensors, norms and
            biases stay F32, as llama.cpp writes them), or any llama-quantize mix such as
            ``"Q4_K_M"``, which converts to F32 first and then runs :func:`quantize_model`.
        threads: worker threads (default: all cores). The output does not depend on it.
        model_name: ``general.name`` (default: derived from the directory name as llama.cpp does).
        tokenizer_pre: force ``tokenizer.ggml.pre`` (otherwise detected from llama.cpp's
            fingerprint of the tokenizer, then from its pre-tokenizer pattern).
        progress: called after each tensor as
            ``progress(done, total, name, from_type, to_type, bytes_done, bytes_total)``.

    Returns:
        A :class:`QuantizeReport` (source dtype and size, output type and size per tensor).

    Raises:
        ValueError: missing or invalid config, tensors or tokenizer (the message names the file
            and key), or an unsupported model.

    Example:
        >>> import kquants
        >>> r = kquants.convert("SmolLM2-135M", "smollm2-f16.gguf")  # doctest: +SKIP
        >>> r = kquants.convert("SmolLM2-135M", "smollm2-q4km.gguf", "Q4_K_M")  # doctest: +SKIP
    """
    if not isinstance(outtype, str):
        raise TypeError(f"outtype must be a string such as 'f16' or 'Q4_K_M', not {type(outtype).__name__}")
    rows, n_elements = _kquants._convert(
        os.fspath(model_dir),
        os.fspath(output),
        outtype,
        threads=threads,
        model_name=model_name,
        tokenizer_pre=tokenizer_pre,
        progress=progress,
    )
    return QuantizeReport(
        tensors=[TensorChange(n, tuple(s), f, t, bi, bo, False) for n, s, f, t, bi, bo in rows],
        n_elements=n_elements,
    )
