"""kquants.matmul / vec_dot / simd_info against ggml's golden data (../shared/golden/codecs).

Weights are ggml's own quantized rows (`{set}_q`) with their dequantization (`{set}_deq`), so
these tests need no quantizer. The tolerance is the activation-quantization bound documented in
`rust/matmul.rs` (`error_bound`): per activation block, half a quantization step (plus the f16
scale rounding) times sum |w| over the block.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

import kquants

GOLDEN = Path(__file__).resolve().parents[1] / ".." / "shared" / "golden" / "codecs"


class Q:
    """Minimal QTensor stand-in: .type, .shape, .data (kquants.QTensor has the same attributes)."""

    def __init__(self, type_: str, shape: tuple[int, ...], data: np.ndarray):
        self.type, self.shape, self.data = type_, shape, np.ascontiguousarray(data, dtype=np.uint8)


def golden(name: str) -> dict[str, np.ndarray]:
    with np.load(GOLDEN / f"{name}.npz") as g:
        return dict(g)


ACT = {"Q8_0": "Q8_0", "Q4_0": "Q8_0", "Q5_0": "Q8_0", "IQ4_NL": "Q8_0", "Q4_1": "Q8_1", "Q5_1": "Q8_1"}


def bound(wtype: str, x: np.ndarray, wdeq: np.ndarray) -> np.ndarray:
    """error_bound of rust/matmul.rs for every (x row, w row) pair, shape (m, n)."""
    at = ACT.get(wtype, "Q8_K")
    bs = 256 if at == "Q8_K" else 32
    step = 0.5 if at == "Q8_K" else 0.5 + 127 / 2048
    m, k = x.shape
    xb = x.reshape(m, k // bs, bs).astype(np.float64)
    wb = wdeq.reshape(wdeq.shape[0], k // bs, bs).astype(np.float64)
    amax = np.abs(xb).max(axis=2)  # (m, B)
    wsum = np.abs(wb).sum(axis=2)  # (n, B)
    b = (amax / 127 * step) @ wsum.T
    if at == "Q8_1":
        b += 32 * amax @ np.abs(wb).max(axis=2).T / 2048
    mag = np.abs(x.astype(np.float64)) @ np.abs(wdeq.astype(np.float64)).T
    return b + 1e-5 * mag


TYPES = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"]


@pytest.mark.parametrize("name", TYPES)
@pytest.mark.parametrize("m", [1, 3, 9])
def test_matmul_matches_dequantized_product(name: str, m: int):
    g = golden(name)
    rng = np.random.default_rng(7)
    for s in ("synth", "real"):
        q, deq = g[f"{s}_q"], g[f"{s}_deq"]
        n, k = deq.shape
        x = rng.standard_normal((m, k)).astype(np.float32)
        got = kquants.matmul(Q(name, (n, k), q), x)
        assert got.shape == (m, n) and got.dtype == np.float32
        exact = x.astype(np.float64) @ deq.astype(np.float64).T
        err = np.abs(got - exact)
        tol = bound(name, x, deq)
        ratio = err / np.where(tol > 0, tol, 1.0)
        assert (err <= tol).all(), f"{name} {s}: max err/tol {ratio.max():.3f}"
        # Not a vacuous bound: the error is a sizeable fraction of it somewhere.
        assert ratio.max() > 1e-3


@pytest.mark.parametrize("name", ["Q4_0", "Q8_0", "Q4_K", "Q6_K"])
def test_matmul_equals_vec_dot_of_golden_activations(name: str):
    """Row by row, matmul computes the kernel dot of ggml's quantized activation (`act_q` is
    bit-exact with ours), so it matches ggml's own `vecdot` within float summation order. The
    multi-row kernels (Q4_0, Q8_0 here) add a row's blocks in another order than the row kernel,
    so matmul gets the same tolerance against `vec_dot` as `vec_dot` gets against ggml."""
    g = golden(name)
    q, act, ggml = g["synth_q"], g["synth_act"], g["synth_vecdot"]
    n, k = g["synth_deq"].shape
    act_t = ACT.get(name, "Q8_K")
    aq = kquants.quantize_activations(act, name)
    np.testing.assert_array_equal(aq, g["synth_act_q"])
    for r in range(n):
        v = kquants.vec_dot(Q(name, (k,), q[r]), Q(act_t, (k,), aq[r]))
        full = kquants.matmul(Q(name, (1, k), q[r]), act[r])
        tol = dict(rel=1e-5, abs=1e-6 * float(np.abs(g["synth_deq"][r]).sum()))
        assert v == pytest.approx(float(ggml[r]), **tol)
        assert full.shape == (1,) and full[0] == pytest.approx(v, **tol)


def test_matmul_batched_shapes_threads_and_empty():
    g = golden("Q4_0")
    q, deq = g["real_q"], g["real_deq"]
    n, k = deq.shape
    w = Q("Q4_0", (n, k), q)
    x = np.random.default_rng(1).standard_normal((2, 5, k)).astype(np.float32)
    a = kquants.matmul(w, x)
    assert a.shape == (2, 5, n)
    for t in (1, 2):
        np.testing.assert_array_equal(kquants.matmul(w, x, threads=t), a)
    np.testing.assert_array_equal(kquants.matmul(w, x.reshape(10, k))[3], kquants.matmul(w, x[0, 3]))
    assert kquants.matmul(w, np.zeros((0, k), np.float32)).shape == (0, n)


def test_matmul_rejects_bad_input():
    g = golden("Q4_0")
    q = g["real_q"]
    n, k = g["real_deq"].shape
    w = Q("Q4_0", (n, k), q)
    with pytest.raises(ValueError):
        kquants.matmul(w, np.zeros((1, k + 32), np.float32))
    with pytest.raises(TypeError):
        kquants.matmul(w, np.zeros((1, k), np.float64))
    with pytest.raises(ValueError):
        kquants.matmul(Q("Q4_0", (n, k), q[:, :-1]), np.zeros((1, k), np.float32))
    with pytest.raises(ValueError):
        kquants.matmul(Q("Q4_0", (n, k - 1), q), np.zeros((1, k - 1), np.float32))
    with pytest.raises(TypeError):
        kquants.matmul(object(), np.zeros((1, k), np.float32))
    with pytest.raises(ValueError):
        kquants.vec_dot(Q("Q4_0", (k,), q[0]), Q("Q8_K", (k,), np.zeros(k // 256 * 292, np.uint8)))


def test_simd_info():
    info = kquants.simd_info()
    assert info["isa"] in info["available"] and "scalar" in info["available"]
    assert info["detected"] in info["available"]
    if info["isa"] != "scalar":
        assert info["vec_dot"]["Q4_0"] in ("avx2", "avx512", "neon")


def test_matmul_releases_the_gil():
    """Two Python threads in matmul at once: with the GIL held they would serialize; here we
    only check both complete with identical results while the other runs (a barrier start)."""
    g = golden("Q8_0")
    w = Q("Q8_0", g["synth_deq"].shape, g["synth_q"])
    x = np.random.default_rng(3).standard_normal((64, g["synth_deq"].shape[1])).astype(np.float32)
    ref = kquants.matmul(w, x, threads=1)
    barrier = threading.Barrier(2)
    out: list[np.ndarray] = []

    def work():
        barrier.wait()
        out.append(kquants.matmul(w, x, threads=1))

    ts = [threading.Thread(target=work) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(out) == 2 and all(np.array_equal(o, ref) for o in out)


@pytest.mark.parametrize("name", ["Q4_0", "Q4_K", "Q8_0", "IQ4_XS", "TQ2_0", "MXFP4"])
def test_matmul_with_quantized_qtensor(name: str):
    """kquants.quantize -> QTensor -> matmul, against the dequantized product (types without a
    SIMD kernel go through the scalar reference)."""
    rng = np.random.default_rng(11)
    w = rng.standard_normal((40, 512)).astype(np.float32) * 0.05
    x = rng.standard_normal((7, 512)).astype(np.float32)
    q = kquants.quantize(w, name)
    deq = kquants.dequantize(q).reshape(40, 512)
    got = kquants.matmul(q, x)
    err = np.abs(got - x.astype(np.float64) @ deq.astype(np.float64).T)
    assert (err <= bound(name, x, deq)).all()


@pytest.mark.parametrize("isa", ["scalar", "avx2", "avx512"])
def test_kquants_isa_forces_a_lower_level(isa: str):
    """KQUANTS_ISA lowers the level (never raises it); results agree within summation order."""
    import json
    import subprocess
    import sys

    code = (
        "import json, numpy as np, kquants\n"
        "g = np.load(%r)\n"
        "class Q: pass\n"
        "w = Q(); w.type = 'Q4_K'; w.shape = g['synth_deq'].shape; w.data = g['synth_q']\n"
        "print(json.dumps([kquants.simd_info()['isa'], kquants.matmul(w, g['synth_act']).tolist()]))\n"
    ) % str(GOLDEN / "Q4_K.npz")
    env = dict(__import__("os").environ, KQUANTS_ISA=isa)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    used, vals = json.loads(out)
    info = kquants.simd_info()
    order = ["scalar", "avx2", "avx512"]
    expect = max((a for a in info["available"] if a in order and order.index(a) <= order.index(isa)), key=order.index)
    assert used == expect
    ref = kquants.matmul(Q("Q4_K", golden("Q4_K")["synth_deq"].shape, golden("Q4_K")["synth_q"]), golden("Q4_K")["synth_act"])
    np.testing.assert_allclose(np.array(vals, np.float32), ref, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("wtype", ["Q4_K", "IQ4_XS", "Q5_K", "Q6_K", "Q4_0", "Q8_0"])
def test_packed_weight_matmul_equals_plain_matmul(wtype):
    # A PackedWeight (interleaved on AVX-512 for Q4_0/IQ4_XS/Q4_K/Q5_K) gives bit for bit what the
    # QTensor gives, for one row (GEMV) and a batch, and gives back the original bytes.
    rng = np.random.default_rng(7)
    n, k = 1100, 512
    q = kquants.quantize(rng.standard_normal((n, k)).astype(np.float32) * 0.05, wtype)
    p = kquants.PackedWeight(q)
    assert p.type == kquants.QuantType[wtype] and p.shape == (n, k)
    assert np.array_equal(p.to_bytes(), q.data)
    avx512 = kquants.simd_info()["isa"] == "avx512"
    assert p.interleaved == (avx512 and wtype in ("Q4_0", "Q4_K", "IQ4_XS", "Q5_K"))
    assert wtype in repr(p) and ("interleaved" if p.interleaved else "rows") in repr(p)
    for shape in [(k,), (1, k), (3, k), (2, 5, k)]:
        x = rng.standard_normal(shape).astype(np.float32)
        for threads in (1, 2):
            a = kquants.matmul(q, x, threads=threads)
            b = kquants.matmul(p, x, threads=threads)
            assert b.shape == shape[:-1] + (n,)
            assert a.tobytes() == b.tobytes(), (shape, threads)
    with pytest.raises(ValueError, match="last axis"):
        kquants.matmul(p, np.zeros((2, k - 1), np.float32))
    with pytest.raises(TypeError, match="float32"):
        kquants.matmul(p, np.zeros((2, k), np.float64))


def test_packed_weight_rejects_bad_weights():
    q = kquants.quantize(np.ones((4, 256), np.float32), "Q4_K")
    with pytest.raises(ValueError, match="2-D"):
        kquants.PackedWeight(kquants.QTensor.from_bytes(q.data, "Q4_K", (2, 2, 256)))
    with pytest.raises(ValueError, match="no quantized matmul"):
        kquants.PackedWeight(kquants.quantize(np.ones((4, 256), np.float32), "F16"))
    with pytest.raises(TypeError, match="QTensor"):
        kquants.PackedWeight(np.zeros((4, 144), np.uint8))
