"""Helpers shared by the tests/test_quant*.py files: golden data location and diff reports."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import numpy as np

import kquants


def golden_dir() -> Path:
    """``../shared/golden`` beside the repository (override with ``KQUANTS_GOLDEN``)."""
    env = os.environ.get("KQUANTS_GOLDEN")
    return Path(env) if env else Path(__file__).resolve().parents[1] / ".." / "shared" / "golden"


def manifest() -> dict:
    return json.loads((golden_dir() / "codecs" / "manifest.json").read_text())


def supported() -> list:
    """Every type this build supports: the tests are generic over it."""
    return kquants.quant_types()


def supported_quantized() -> list:
    """Supported block types (no float types)."""
    return [t for t in supported() if t.block_size > 1]


def first_byte_diff(got: np.ndarray, want: np.ndarray, type_size: int) -> Optional[str]:
    """None when equal, else the first differing block and byte and how many blocks differ."""
    g = np.ascontiguousarray(got).reshape(-1).view(np.uint8)
    w = np.ascontiguousarray(want).reshape(-1).view(np.uint8)
    if g.shape != w.shape:
        return f"length {g.size} != {w.size}"
    bad = np.flatnonzero(g != w)
    if bad.size == 0:
        return None
    i = int(bad[0])
    nblocks = g.size // type_size
    nbad = int(np.any((g != w).reshape(nblocks, type_size), axis=1).sum())
    return (
        f"first difference in block {i // type_size} byte {i % type_size} "
        f"(got {g[i]:#04x}, want {w[i]:#04x}); {nbad} of {nblocks} blocks differ"
    )


def first_f32_diff(got: np.ndarray, want: np.ndarray, block_size: int = 1) -> Optional[str]:
    """None when bit-identical (NaN payloads too), else the first differing value and its block."""
    g = np.ascontiguousarray(got, dtype=np.float32).reshape(-1).view(np.uint32)
    w = np.ascontiguousarray(want, dtype=np.float32).reshape(-1).view(np.uint32)
    if g.shape != w.shape:
        return f"length {g.size} != {w.size}"
    bad = np.flatnonzero(g != w)
    if bad.size == 0:
        return None
    i = int(bad[0])
    gv, wv = g[i : i + 1].view(np.float32)[0], w[i : i + 1].view(np.float32)[0]
    return f"value {i} (block {i // block_size}): got {gv!r} want {wv!r}; {bad.size} values differ"
