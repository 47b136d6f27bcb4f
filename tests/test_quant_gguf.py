"""kquants against gguf-py (``gguf.quants``), llama.cpp's own NumPy implementation: dequantize
on random blocks for every supported type gguf-py can dequantize, and quantize for every
supported type gguf-py can quantize. Generic: new codecs are covered as soon as they land."""

from __future__ import annotations

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as G  # noqa: E402
from gguf import quants as gq  # noqa: E402

import kquants  # noqa: E402
from quant_common import first_byte_diff, first_f32_diff, supported  # noqa: E402


def _gguf_can(op, t) -> bool:
    """Probe gguf-py the way its own tests/test_quants.py does: call it on one zero block.
    Types the installed gguf-py does not know, or knows with another block size (its Q8_1 is
    stale in 0.19), are not comparable."""
    if t.name not in G.__members__:
        return False
    g = G[t.name]
    if gguf.GGML_QUANT_SIZES[g] != (t.block_size, t.type_size):
        return False
    try:
        if op == "dequantize":
            gq.dequantize(np.zeros(t.type_size, dtype=np.uint8), g)
        else:
            gq.quantize(np.zeros(t.block_size, dtype=np.float32), g)
        return True
    except NotImplementedError:
        return False


DEQ_TYPES = [t for t in supported() if _gguf_can("dequantize", t)]
Q_TYPES = [t for t in supported() if _gguf_can("quantize", t)]
ids = lambda t: t.name  # noqa: E731


def _gguf_dequantize(raw: np.ndarray, t) -> np.ndarray:
    return np.asarray(gq.dequantize(raw, G(t.ggml_id)), dtype=np.float32)


@pytest.mark.parametrize("t", DEQ_TYPES, ids=ids)
def test_dequantize_random_f16_blocks(t):
    """gguf-py's own recipe (tests/test_quants.py): random float16 values in [0, 1) viewed as
    bytes, so every 2-byte field (the f16 scales) is finite."""
    rng = np.random.default_rng(1000 + t.ggml_id)
    shape = (16, 4 * max(256, t.block_size))
    nbytes = shape[0] * t.row_bytes(shape[1])
    raw = rng.random(nbytes // 2 + 1).astype(np.float16).view(np.uint8)[:nbytes].reshape(shape[0], -1)
    got = kquants.dequantize(raw, t, shape)
    want = _gguf_dequantize(raw, t).reshape(shape)
    d = first_f32_diff(got, want, t.block_size)
    assert d is None, f"{t.name}: {d}"


@pytest.mark.parametrize("t", DEQ_TYPES, ids=ids)
def test_dequantize_random_bytes(t):
    """Uniformly random bytes, so every bit pattern of every field occurs (NaN/Inf scales too).
    Finite outputs must be bit-identical; where a NaN scale makes the value NaN both sides must
    give NaN (NaN payloads are not specified by ggml)."""
    rng = np.random.default_rng(2000 + t.ggml_id)
    shape = (16, 4 * max(256, t.block_size))
    raw = rng.integers(0, 256, size=(shape[0], t.row_bytes(shape[1])), dtype=np.uint8)
    got = kquants.dequantize(raw, t, shape).reshape(-1)
    want = _gguf_dequantize(raw, t).reshape(-1)
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    assert np.array_equal(nan_g, nan_w), f"{t.name}: NaN at different values, first {np.flatnonzero(nan_g != nan_w)[:5]}"
    d = first_f32_diff(np.where(nan_g, 0, got), np.where(nan_w, 0, want), t.block_size)
    assert d is None, f"{t.name}: {d}"


def _gguf_quantize(x: np.ndarray, t) -> np.ndarray:
    q = gq.quantize(x, G(t.ggml_id))
    return np.ascontiguousarray(q).view(np.uint8).reshape(x.shape[0], -1)


def _quantize_input(t) -> np.ndarray:
    rng = np.random.default_rng(3000 + t.ggml_id)
    x = rng.standard_normal((32, 1024)).astype(np.float32)
    x[0] = 0  # zero blocks, as gguf-py's own test
    x[1] *= 1e-7
    x[2, ::17] = 30.0  # outliers
    return x




@pytest.mark.parametrize("t", Q_TYPES, ids=ids)
def test_quantize_matches_gguf_py(t):
    x = _quantize_input(t)
    got = kquants.quantize(x, t).data
    want = _gguf_quantize(x, t)
    d = first_byte_diff(got, want, t.type_size)
    assert d is None, f"{t.name}: {d}"


def test_probe_finds_what_gguf_py_implements():
    # The probe must see gguf-py's float and legacy quantizers, or the tests above test nothing.
    assert _gguf_can("quantize", kquants.QuantType.BF16)
    assert _gguf_can("dequantize", kquants.QuantType.Q4_K)
    assert not _gguf_can("quantize", kquants.QuantType.Q4_K)


@pytest.mark.parametrize("t", Q_TYPES, ids=ids)
def test_quantize_matches_gguf_py_on_ties(t):
    """Rows drawn from a coarse grid (k/4, |k| <= 16) so that x/d lands exactly on rounding
    boundaries and equal |max| values of both signs compete for the scale: where NumPy and C
    rounding or argmax rules could part."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    n = max(256, t.block_size)

    @settings(max_examples=40, deadline=None)
    @given(st.integers(0, 2**32 - 1), st.integers(1, 16))
    def prop(seed, kmax):
        rng = np.random.default_rng(seed)
        x = (rng.integers(-kmax, kmax + 1, size=(16, n)) / 4).astype(np.float32)
        d = first_byte_diff(kquants.quantize(x, t).data, _gguf_quantize(x, t), t.type_size)
        assert d is None, f"{t.name}: {d}"

    prop()
