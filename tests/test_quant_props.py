"""Property tests (hypothesis) over every supported type: determinism, thread-count
independence, ggml's round-trip error thresholds, zero blocks, extreme values, error messages."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import kquants
from kquants import QuantType
from quant_common import manifest, supported

ids = lambda t: t.name  # noqa: E731
SUPPORTED = supported()
MANIFEST = manifest()["types"]
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _imatrix(t, n):
    return np.ones(n, dtype=np.float32) if t.requires_imatrix else None


@st.composite
def arrays_for(draw, t, elements=None):
    """A float32 array whose last axis is 1..3 blocks (at least 256 values for the float types)."""
    unit = max(t.block_size, 32)
    n = unit * draw(st.integers(1, 3))
    lead = draw(st.lists(st.integers(0, 3), min_size=0, max_size=2))
    if elements is None:
        elements = st.floats(-1e4, 1e4, width=32, allow_nan=False, allow_infinity=False)
    return draw(hnp.arrays(np.float32, (*lead, n), elements=elements))


@pytest.mark.parametrize("t", SUPPORTED, ids=ids)
def test_deterministic_and_thread_independent(t):
    @SETTINGS
    @given(arrays_for(t), st.integers(1, 4))
    def prop(x, threads):
        w = _imatrix(t, x.shape[-1])
        a = kquants.quantize(x, t, imatrix=w, threads=1)
        b = kquants.quantize(x, t, imatrix=w, threads=threads)
        assert a == b
        assert np.array_equal(a.dequantize(threads=1).view(np.uint32), b.dequantize(threads=threads).view(np.uint32))

    prop()


EXTREMES = [0.0, -0.0, 65504.0, -65504.0, 1e30, -1e30, 3.4e38, -3.4e38, 1e-40, -1e-40, 1.4e-45, 6e-8, 1.0]


@pytest.mark.parametrize("t", SUPPORTED, ids=ids)
def test_extreme_values_never_fail(t):
    """±65504, ±1e30, ±3.4e38, subnormals: quantize and dequantize succeed (no panic reaches
    Python); the result has the right shape. ggml gives no accuracy promise here."""

    @SETTINGS
    @given(arrays_for(t, elements=st.sampled_from(EXTREMES)), st.booleans())
    def prop(x, with_imatrix):
        w = np.linspace(0.0, 5.0, x.shape[-1], dtype=np.float32) if (with_imatrix or t.requires_imatrix) else None
        if t.name in ("Q8_1", "Q8_K"):
            w = None  # activation types take no imatrix
        q = kquants.quantize(x, t, imatrix=w)
        assert q.dequantize().shape == x.shape

    prop()


@pytest.mark.parametrize("t", SUPPORTED, ids=ids)
def test_zero_blocks_give_zeros(t):
    n = 2 * max(256, t.block_size)
    x = np.zeros((3, n), np.float32)
    x[1, : n // 2] = np.random.default_rng(0).standard_normal(n // 2)  # zero blocks beside data
    y = kquants.quantize(x, t, imatrix=_imatrix(t, n)).dequantize()
    assert not np.any(y[0]) and not np.any(y[2]) and not np.any(y[1, n // 2 :])


# ggml tests/test-quantize-fns.cpp: sqrt(sum of squared error) / n on its cosine test data must be
# below these (MAX_QUANTIZATION_TOTAL_ERROR*), per type. ggml runs the check only for types with a
# CPU from_float and a to_float (the manifest records both per type).
GGML_THRESHOLDS = {
    "Q1_0": 0.025,
    "TQ1_0": 0.01, "TQ2_0": 0.01, "Q2_0": 0.01,
    "Q2_K": 0.0075, "IQ2_S": 0.0075,
    "Q3_K": 0.0040, "IQ3_S": 0.0040,
    "IQ3_XXS": 0.0050,
    "NVFP4": 0.0030,
}
THRESHOLD_TYPES = [
    t for t in SUPPORTED
    if t.name not in MANIFEST or (MANIFEST[t.name]["has_cpu_from_float"] and MANIFEST[t.name]["has_to_float"])
]


def _ggml_test_data(offset: float, n: int) -> np.ndarray:
    # generate_data(): dst[i] = 0.1 + amplitude*cosf(i + offset), amplitude 2, float32 math.
    i = np.arange(n, dtype=np.float32) + np.float32(offset)
    return (0.1 + np.float32(2.0) * np.cos(i)).astype(np.float32)


@pytest.mark.parametrize("t", THRESHOLD_TYPES, ids=ids)
def test_round_trip_error_below_ggml_threshold(t):
    for offset in (0.0, 1.0):
        x = _ggml_test_data(offset, 32 * 128)
        y = kquants.quantize(x, t).dequantize()
        err = math.sqrt(float(np.sum((x.astype(np.float64) - y) ** 2))) / x.size
        assert err < GGML_THRESHOLDS.get(t.name, 0.002), f"{t.name} offset {offset}: {err}"


# ggml's ternary threshold (0.01) is calibrated on its cosine data, whose values sit near
# ±0.1±2. On N(0, 1) rows ggml's own TQ1_0/TQ2_0/Q2_0 quantizers (ours are bit-exact with them,
# see test_quant_golden.py) give 0.0122-0.0129 (TQ1_0, TQ2_0) and 0.0110-0.0115 (Q2_0), measured
# over 20 seeds: above 0.01 by the nature of a 3-level format with an absmax scale, so these are
# held to the threshold on ggml's data only (test above).
NOT_ON_NORMAL_DATA = {"TQ1_0", "TQ2_0", "Q2_0"}


@pytest.mark.parametrize("t", [t for t in THRESHOLD_TYPES if t.name not in NOT_ON_NORMAL_DATA], ids=ids)
def test_round_trip_error_on_normal_data(t):
    """The same measure and thresholds on standard-normal rows (issue 3 asks for normal data)."""

    @SETTINGS
    @given(st.integers(0, 2**32 - 1))
    def prop(seed):
        x = np.random.default_rng(seed).standard_normal(4096).astype(np.float32)
        y = kquants.quantize(x, t).dequantize()
        err = math.sqrt(float(np.sum((x.astype(np.float64) - y) ** 2))) / x.size
        assert err < GGML_THRESHOLDS.get(t.name, 0.002), f"{t.name}: {err}"

    prop()


@pytest.mark.parametrize("t", SUPPORTED, ids=ids)
def test_non_finite_error_names_first_bad_index(t):
    @SETTINGS
    @given(st.data())
    def prop(data):
        x = data.draw(arrays_for(t, elements=st.floats(-10, 10, width=32)))
        if x.size == 0:
            return
        flat = x.reshape(-1)
        i = data.draw(st.integers(0, flat.size - 1))
        bad = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        flat[i] = bad
        # A later bad value must not change the report.
        if i + 1 < flat.size:
            flat[data.draw(st.integers(i + 1, flat.size - 1))] = np.nan
        idx = np.unravel_index(i, x.shape)
        n = x.shape[-1]
        with pytest.raises(ValueError) as e:
            kquants.quantize(x, t, imatrix=_imatrix(t, n))
        msg = str(e.value)
        assert f"row {i // n}, col {i % n}" in msg
        assert "NumPy index " + str(tuple(int(v) for v in idx)) in msg

    prop()


@pytest.mark.parametrize("t", [t for t in SUPPORTED if t.name not in ("Q8_1", "Q8_K")], ids=ids)
def test_bad_imatrix_entry_is_named(t):
    @SETTINGS
    @given(st.data())
    def prop(data):
        n = max(t.block_size, 32) * data.draw(st.integers(1, 3))
        w = np.ones(n, np.float32)
        i = data.draw(st.integers(0, n - 1))
        w[i] = data.draw(st.sampled_from([-1.0, -1e-30, np.nan, np.inf, -np.inf]))
        with pytest.raises(ValueError, match=re.escape(f"imatrix[{i}]")):
            kquants.quantize(np.ones((2, n), np.float32), t, imatrix=w)

    prop()


def test_threshold_table_names_real_types():
    assert all(name in QuantType.__members__ for name in GGML_THRESHOLDS)
