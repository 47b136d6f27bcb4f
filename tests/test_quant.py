"""The Python codec API: QuantType, quantize / dequantize, QTensor, argument checking, threads
and the GIL. Generic over ``kquants.quant_types()`` so new codecs are covered when they land."""

from __future__ import annotations

import re
import sys
import threading

import numpy as np
import pytest

import kquants
from kquants import QTensor, QuantType
from quant_common import manifest, supported, supported_quantized

gguf = pytest.importorskip("gguf")

ids = lambda t: t.name  # noqa: E731
SUPPORTED = supported()
QUANTIZED = supported_quantized()
# Types quantizable without extra arguments (the others need imatrix=).
PLAIN = [t for t in SUPPORTED if not t.requires_imatrix]


def _imatrix_for(t, n):
    return np.ones(n, dtype=np.float32) if t.requires_imatrix else None


def _x(rows, n, seed=0):
    return np.random.default_rng(seed).standard_normal((rows, n)).astype(np.float32)


# ---------------------------------------------------------------- QuantType


def test_quant_type_matches_gguf_py():
    """Ids, block sizes and bytes per block against gguf-py's independent table, and against
    ggml itself (the golden manifest) where it has the type: gguf-py 0.19 on PyPI still says
    Q8_1 blocks are 40 bytes, ggml 0.25.3 (and gguf-py at the pinned commit) says 36."""
    ggml = manifest()["types"]
    known = gguf.GGMLQuantizationType.__members__
    assert len(known) >= 30
    for t in QuantType:
        if t.name in ggml:
            assert (t.block_size, t.type_size) == (ggml[t.name]["blck_size"], ggml[t.name]["type_size"])
            assert t.ggml_id == ggml[t.name]["ggml_type_id"]
            assert bool(ggml[t.name]["requires_imatrix"]) == t.requires_imatrix
        assert t.bits_per_weight == 8 * t.type_size / t.block_size
        if t.name not in known:  # types newer than the installed gguf-py (Q1_0, Q2_0 in 0.19)
            assert t.name in ggml
            continue
        g = known[t.name]
        assert t.ggml_id == g.value == int(t)
        assert QuantType(g) is t
        if t is not QuantType.Q8_1:
            assert (t.block_size, t.type_size) == gguf.GGML_QUANT_SIZES[g]
    assert {g.name for g in gguf.GGMLQuantizationType} <= {t.name for t in QuantType}


def test_quant_type_parse():
    assert QuantType.parse("q4_k") is QuantType.Q4_K
    assert QuantType.parse(" IQ2_xxs ") is QuantType.IQ2_XXS
    assert QuantType("bf16") is QuantType.BF16
    assert QuantType.parse(12) is QuantType.Q4_K
    assert QuantType.parse(QuantType.Q8_0) is QuantType.Q8_0
    assert QuantType["Q4_K"] is QuantType.Q4_K
    assert str(QuantType.Q4_K) == "Q4_K" and f"{QuantType.Q4_K:>6}" == "  Q4_K"
    with pytest.raises(ValueError, match="unknown quantization type 'Q4_X'"):
        QuantType.parse("Q4_X")
    with pytest.raises(ValueError, match="unknown ggml type id 4"):
        QuantType.parse(4)  # Q4_2, removed from ggml
    for bad in (1.5, None, b"Q4_K", True):
        with pytest.raises(TypeError):
            QuantType.parse(bad)


def test_requires_imatrix_is_ggmls_rule():
    # ggml_quantize_requires_imatrix in ggml.c.
    assert {t for t in QuantType if t.requires_imatrix} == {QuantType.IQ2_XXS, QuantType.IQ2_XS, QuantType.IQ1_S}


def test_quant_types_lists_the_supported_ones():
    qt = kquants.quant_types()
    assert qt == [t for t in QuantType if t.supported]
    assert {QuantType.F32, QuantType.F16, QuantType.BF16} <= set(qt)
    # Integer and f64 tensors are not quantization targets.
    assert not {QuantType.I8, QuantType.I16, QuantType.I32, QuantType.I64, QuantType.F64} & set(qt)


def test_public_surface():
    for name in ("quantize", "dequantize", "QTensor", "QuantType", "quant_types"):
        assert name in kquants.__all__
        assert getattr(kquants, name).__doc__


# ---------------------------------------------------------------- quantize / QTensor


@pytest.mark.parametrize("t", SUPPORTED, ids=ids)
def test_quantize_shapes_and_round_trip_types(t):
    n = 2 * max(256, t.block_size)
    x = _x(6, n).reshape(2, 3, n)
    q = kquants.quantize(x, t, imatrix=_imatrix_for(t, n))
    assert q.type is t and q.shape == (2, 3, n)
    assert q.data.dtype == np.uint8 and q.data.shape == (6, t.row_bytes(n))
    assert q.nbytes == 6 * t.row_bytes(n) and q.size == 6 * n
    assert q.bits_per_weight == t.bits_per_weight
    y = q.dequantize()
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.array_equal(kquants.dequantize(q), y)
    assert np.array_equal(kquants.dequantize((q.data.tobytes(), t.name, q.shape)), y)
    assert np.array_equal(kquants.dequantize(memoryview(q.data), t, q.shape), y)
    # By name too.
    assert kquants.quantize(x, t.name.lower(), imatrix=_imatrix_for(t, n)) == q


def test_data_is_written_in_place_not_copied():
    q = kquants.quantize(_x(4, 256), "F16")
    root = q.data
    while isinstance(root.base, np.ndarray):
        root = root.base
    # The codec writes straight into the array the binding allocates (numpy.empty, no zero
    # fill); QTensor.data is a view of that array, which owns the memory.
    assert root.base is None and root.flags.owndata
    assert np.shares_memory(q.data, root)
    y = q.dequantize()
    assert y.base is None or y.base.flags.owndata


def test_from_bytes_is_zero_copy_and_checks_size():
    q = kquants.quantize(_x(4, 512), QuantType.BF16)
    buf = bytearray(q.data.tobytes())
    t2 = QTensor.from_bytes(buf, "bf16", (4, 512))
    assert np.shares_memory(t2.data, np.frombuffer(buf, np.uint8))
    assert t2 == q
    arr = q.data.copy()
    assert np.shares_memory(QTensor.from_bytes(arr, "BF16", (2, 2, 512)).data, arr)
    with pytest.raises(ValueError, match="do not hold a BF16 tensor of shape"):
        QTensor.from_bytes(buf[:-2], "BF16", (4, 512))
    with pytest.raises(ValueError, match="C-contiguous"):
        QTensor.from_bytes(np.zeros((8, 8), np.uint8)[:, ::2], "BF16", (1, 16))
    with pytest.raises(TypeError, match="expected a buffer"):
        QTensor.from_bytes(12345, "BF16", (1,))
    with pytest.raises(TypeError, match="shape"):
        QTensor.from_bytes(buf, "BF16", "4x512")
    with pytest.raises(ValueError, match="negative"):
        QTensor.from_bytes(buf, "BF16", (-4, -512))


@pytest.mark.parametrize("t", QUANTIZED, ids=ids)
def test_from_bytes_rejects_partial_rows(t):
    with pytest.raises(ValueError, match="not a multiple of the .* block size"):
        QTensor.from_bytes(bytes(t.type_size), t, (t.block_size + 1,))


@pytest.mark.parametrize("t", [t for t in SUPPORTED if t.name in gguf.GGMLQuantizationType.__members__], ids=ids)
def test_from_gguf_tensor_without_copy(t, tmp_path):
    """A tensor written by gguf-py's GGUFWriter and read back by its GGUFReader (memory-mapped)
    wraps as a QTensor without a copy and decodes as gguf-py decodes it."""
    from gguf import GGUFReader, GGUFWriter

    if gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[t.name]] != (t.block_size, t.type_size):
        pytest.skip(f"the installed gguf-py has another {t.name} block layout")
    shape = (8, 2 * max(256, t.block_size))
    q = kquants.quantize(_x(*shape), t, imatrix=_imatrix_for(t, shape[1]))
    path = tmp_path / "t.gguf"
    w = GGUFWriter(str(path), "test")
    w.add_tensor("w", q.data, raw_shape=q.data.shape, raw_dtype=gguf.GGMLQuantizationType[t.name])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tt = GGUFReader(path).tensors[0]
    got = QTensor.from_bytes(tt.data, QuantType(tt.tensor_type), tuple(int(d) for d in reversed(tt.shape)))
    assert got.shape == shape
    assert np.shares_memory(got.data, tt.data)
    assert got == q
    g = gguf.GGMLQuantizationType[t.name]
    if g in gguf.quants._type_traits or t.name in ("F32", "F16"):  # gguf-py can decode it
        assert np.array_equal(got.dequantize(), gq_dequantize(tt.data, tt.tensor_type).reshape(shape))


@pytest.mark.parametrize("t", SUPPORTED, ids=ids)
def test_qtensor_through_kquants_gguf(t, tmp_path):
    """GGUFWriter takes a QTensor; the reader's ``Tensor.raw`` wraps back without a copy."""
    shape = (2, 3, 2 * max(256, t.block_size))
    q = kquants.quantize(_x(6, shape[-1]).reshape(shape), t, imatrix=_imatrix_for(t, shape[-1]))
    path = tmp_path / "q.gguf"
    with kquants.GGUFWriter(path) as w:
        w.add_tensor("q", q)
    with kquants.open(path) as f:
        tt = f.tensors["q"]
        assert tt.type is t and tuple(tt.shape) == shape
        raw = tt.raw
        back = QTensor.from_bytes(raw, tt.type, tt.shape)
        assert np.shares_memory(back.data, raw)
        assert back == q
        assert np.array_equal(back.dequantize(), q.dequantize())
        del raw, back


def gq_dequantize(data, qtype):
    from gguf import quants

    return np.asarray(quants.dequantize(data, qtype), dtype=np.float32)


def test_repr():
    q = QTensor.from_bytes(bytes(2 * 4096 * 4096), "F16", (4096, 4096))
    assert repr(q) == "QTensor(F16, shape=(4096, 4096), 32.0 MiB, 16.00 bpw)"
    assert repr(kquants.quantize(np.zeros(3, np.float32), "f32")) == "QTensor(F32, shape=(3,), 12 B, 32.00 bpw)"
    assert "KiB" in repr(QTensor.from_bytes(bytes(4096), "BF16", (2048,)))


def test_equality():
    x = _x(2, 256)
    a, b = kquants.quantize(x, "F16"), kquants.quantize(x, "F16")
    assert a == b and not (a != b)
    assert a != kquants.quantize(x + 1, "F16")
    assert a != kquants.quantize(x, "BF16")
    assert a != QTensor.from_bytes(a.data, "F16", (512,))
    assert a != "not a tensor"


# ---------------------------------------------------------------- input conversion


@pytest.mark.parametrize("t", PLAIN, ids=ids)
def test_dtypes_and_layouts(t):
    n = 2 * max(256, t.block_size)
    x = _x(4, n)
    want = kquants.quantize(x, t)
    # float16 converts exactly; float64 and lists round to float32 first.
    h = x.astype(np.float16)
    assert kquants.quantize(h, t) == kquants.quantize(h.astype(np.float32), t)
    assert kquants.quantize(x.astype(np.float64), t) == want
    assert kquants.quantize(x.tolist(), t) == want
    # Non-contiguous input is copied: a strided view, a Fortran-order array, a transpose.
    big = np.zeros((8, 2 * n), np.float32)
    big[::2, ::2] = x
    assert kquants.quantize(big[::2, ::2], t) == want
    assert kquants.quantize(np.asfortranarray(x), t) == want
    assert kquants.quantize(np.ascontiguousarray(x.T).T, t) == want
    # bfloat16 as raw bits: exactly the float32 value whose top half they are.
    bits = (x.view(np.uint32) >> 16).astype(np.uint16)
    widened = (bits.astype(np.uint32) << 16).view(np.float32)
    assert kquants.quantize(bits, t, bfloat16=True) == kquants.quantize(widened, t)


def test_ml_dtypes_bfloat16_if_installed():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = _x(2, 256)
    b = x.astype(ml_dtypes.bfloat16)
    assert kquants.quantize(b, "F32") == kquants.quantize(b.astype(np.float32), "F32")


def test_wrong_dtypes_are_type_errors():
    with pytest.raises(TypeError, match="floating-point"):
        kquants.quantize(np.arange(256), "F16")
    with pytest.raises(TypeError, match="bfloat16=True"):
        kquants.quantize(np.zeros(256, np.uint16), "F16")
    with pytest.raises(TypeError, match="uint16"):
        kquants.quantize(np.zeros(256, np.float32), "F16", bfloat16=True)
    with pytest.raises(TypeError):
        kquants.quantize(np.zeros(256, np.complex64), "F16")
    with pytest.raises(TypeError):
        kquants.quantize(np.zeros(256, np.float32), 3.5)
    with pytest.raises(TypeError, match="imatrix must be a real array"):
        kquants.quantize(np.zeros(256, np.float32), "F16", imatrix=np.array(["a"] * 256))
    with pytest.raises(TypeError, match="threads"):
        kquants.quantize(np.zeros(256, np.float32), "F16", threads="2")
    with pytest.raises(TypeError):
        kquants.dequantize(object(), "F16", (1,))
    with pytest.raises(TypeError):
        kquants.dequantize(b"\0\0")


# ---------------------------------------------------------------- errors


def test_non_finite_names_the_full_index():
    x = np.zeros((2, 3, 64), np.float32)
    x[1, 2, 17] = np.nan
    x[1, 2, 40] = np.inf  # only the first is named
    with pytest.raises(ValueError) as e:
        kquants.quantize(x, "F16")
    msg = str(e.value)
    assert "(1, 2, 17)" in msg and "row 5, col 17" in msg and "NaN" in msg
    y = np.zeros(64, np.float32)
    y[9] = -np.inf
    with pytest.raises(ValueError, match=re.escape("(9,)")):
        kquants.quantize(y, "BF16")
    # float64 values beyond float32 range become inf in the conversion and are reported.
    with pytest.raises(ValueError, match="not finite"):
        kquants.quantize(np.full(32, 1e300), "F32")


@pytest.mark.parametrize("t", QUANTIZED, ids=ids)
def test_row_length_must_be_whole_blocks(t):
    with pytest.raises(ValueError, match=f"not a multiple of the {t.name} block size {t.block_size}"):
        kquants.quantize(np.zeros((2, t.block_size + 1), np.float32), t)


ACTIVATION_ONLY = {"Q8_1", "Q8_K"}  # ggml has only row quantizers for them, no imatrix path


@pytest.mark.parametrize("t", [t for t in SUPPORTED if t.name in ACTIVATION_ONLY], ids=ids)
def test_activation_types_take_no_imatrix(t):
    with pytest.raises(ValueError, match="does not support importance-weighted quantization"):
        kquants.quantize(_x(1, 256), t, imatrix=np.ones(256, np.float32))


@pytest.mark.parametrize("t", [t for t in SUPPORTED if t.name not in ACTIVATION_ONLY], ids=ids)
def test_imatrix_errors(t):
    n = max(256, t.block_size)
    x = _x(2, n)
    with pytest.raises(ValueError, match=f"imatrix has {n - 1} values but rows have {n} columns"):
        kquants.quantize(x, t, imatrix=np.ones(n - 1, np.float32))
    for bad in (-1.0, np.nan, np.inf):
        w = np.ones(n, np.float32)
        w[5] = bad
        with pytest.raises(ValueError, match=r"imatrix\[5\]"):
            kquants.quantize(x, t, imatrix=w)
    with pytest.raises(ValueError, match="1-D"):
        kquants.quantize(x, t, imatrix=np.ones((1, n), np.float32))
    with pytest.raises(ValueError, match="reference quantizer takes no importance matrix"):
        kquants.quantize(x, t, imatrix=np.ones(n, np.float32), ref=True)


@pytest.mark.parametrize("t", [t for t in SUPPORTED if t.requires_imatrix], ids=ids)
def test_required_imatrix_missing(t):
    with pytest.raises(ValueError, match=f"{t.name} requires an importance matrix"):
        kquants.quantize(_x(1, 256), t)


def test_unsupported_and_unknown_types():
    for t in (QuantType.I8, QuantType.I32, QuantType.F64):
        with pytest.raises(ValueError, match=f"{t.name} does not support"):
            kquants.quantize(np.zeros(32, np.float32), t)
        with pytest.raises(ValueError, match=f"{t.name} does not support"):
            QTensor.from_bytes(bytes(t.type_size * 4), t, (4,)).dequantize()
    with pytest.raises(ValueError, match="unknown quantization type"):
        kquants.quantize(np.zeros(32, np.float32), "Q9_K")


def test_bad_threads_and_shapes():
    x = np.zeros(32, np.float32)
    with pytest.raises(ValueError, match="threads must be at least 1"):
        kquants.quantize(x, "F16", threads=0)
    with pytest.raises(ValueError, match="0-d"):
        kquants.quantize(np.float32(1.0), "F16")
    with pytest.raises(ValueError, match="bytes do not hold"):
        kquants.dequantize(b"\0" * 3, "F16", (2,))
    # The native primitive checks the output shape it is given against the blocks' values.
    from kquants import _kquants

    with pytest.raises(ValueError, match=r"shape \[3, 5\] does not hold the 16 values"):
        _kquants._dequantize(np.zeros(32, np.uint8), kquants.QuantType.F16, None, (3, 5))
    assert _kquants._dequantize(np.zeros(32, np.uint8), kquants.QuantType.F16, None, (2, 8)).shape == (2, 8)


@pytest.mark.parametrize("t", SUPPORTED, ids=ids)
def test_empty_inputs(t):
    bs = t.block_size
    q = kquants.quantize(np.zeros((0, bs), np.float32), t, imatrix=_imatrix_for(t, bs))
    assert q.data.shape == (0, t.type_size) and q.nbytes == 0
    assert q.dequantize().shape == (0, bs)
    q = kquants.quantize(np.zeros((3, 0), np.float32), t, imatrix=_imatrix_for(t, 0))
    assert q.data.shape == (3, 0) and q.dequantize().shape == (3, 0)
    assert kquants.dequantize(b"", t, (0, 5 * bs)).shape == (0, 5 * bs)


# ---------------------------------------------------------------- threads and the GIL


@pytest.mark.parametrize("t", PLAIN, ids=ids)
def test_output_independent_of_thread_count(t):
    # 40 rows x 8192: several rayon tasks (16384 values each), so the split really varies.
    x = _x(40, 8192, seed=7)
    q = kquants.quantize(x, t, threads=1)
    for n in (2, 3, None):
        assert kquants.quantize(x, t, threads=n) == q
    y = q.dequantize(threads=1)
    for n in (2, 3, None):
        assert np.array_equal(q.dequantize(threads=n), y)


def _progress_during(fn) -> int:
    """How many steps a second Python thread makes while ``fn`` runs in this one.

    The switch interval is made huge, so while this thread holds the GIL the other never gets
    it: the only chance it has to run is a call that releases the GIL. Once it has the GIL it
    keeps it until it finishes all its steps (it never blocks), so the count read right after
    ``fn`` is either 0 (GIL held throughout) or the full count."""
    steps = 20_000
    counter = [0]
    go = threading.Event()

    def other():
        go.wait()
        for _ in range(steps):
            counter[0] += 1

    th = threading.Thread(target=other)
    old = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    try:
        th.start()
        go.set()
        fn()
        seen = counter[0]
    finally:
        sys.setswitchinterval(old)
        th.join()
    return seen


def test_gil_is_released_while_quantizing_and_dequantizing():
    if not getattr(sys, "_is_gil_enabled", lambda: True)():
        pytest.skip("free-threaded Python without a GIL: nothing to release")
    # Tens of milliseconds of work: Q4_K (~17 us per 256 values in ggml) when present.
    t = QuantType.Q4_K if QuantType.Q4_K.supported else QuantType.F16
    x = _x(64 if t is QuantType.Q4_K else 256, 16384, seed=3)
    q = kquants.quantize(x, t, threads=1)

    # Control: a pure-Python loop holds the GIL, so the other thread makes no progress. This
    # shows the probe can fail.
    assert _progress_during(lambda: sum(range(200_000))) == 0
    # The other thread gets the GIL at least once during a big call; retried because the OS may
    # not schedule it in time on a loaded machine (a held GIL gives 0 every time).
    assert any(_progress_during(lambda: kquants.quantize(x, t, threads=1)) for _ in range(10))
    # Dequantizing is two orders of magnitude faster than quantizing (and `threads=1` runs it
    # on the calling thread, with no pool hand-off): probe it on a tensor big enough for
    # milliseconds of work, so the other thread has time to be scheduled.
    qd = kquants.quantize(_x(512, 16384, seed=4), QuantType.Q8_0)
    assert any(_progress_during(lambda: qd.dequantize(threads=1)) for _ in range(10))


# ---------------------------------------------------------------- vec_dot_ref (private)


def test_vec_dot_ref_checks_lengths():
    a = kquants.quantize(_x(1, 64), "F16").data[0]
    v = kquants._kquants._vec_dot_ref(QuantType.F16.ggml_id, a, a, 64)
    y = kquants.dequantize(a.tobytes(), "F16", (64,)).astype(np.float64)
    assert abs(v - float(y @ y)) <= 1e-6 * float(y @ y)  # f64 accumulation, rounded to f32 once
    with pytest.raises(ValueError, match="vec_dot of 32 values"):
        kquants._kquants._vec_dot_ref(QuantType.F16.ggml_id, a, a, 32)
    with pytest.raises(ValueError, match="unknown ggml type id"):
        kquants._kquants._vec_dot_ref(4, a, a, 64)
