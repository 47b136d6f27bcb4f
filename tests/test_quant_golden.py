"""Bit-exactness with ggml through the Python API, for every supported type that has a golden
file (../shared/golden/codecs/<TYPE>.npz, ggml 0.25.3): both quantize paths (ggml_quantize_chunk
with and without the importance matrix, and quantize_row_*_ref), dequantize, the Q8 tie rows and
the scalar reference vec_dot. Failures name the first differing block and byte."""

from __future__ import annotations

import numpy as np
import pytest

import kquants
from kquants import QuantType
from quant_common import first_byte_diff, first_f32_diff, golden_dir, manifest, supported

MANIFEST = manifest()
GOLDEN_TYPES = [t for t in supported() if t.name in MANIFEST["types"]]


def test_every_supported_block_type_has_golden_data():
    # F32 is the only supported type ggml's golden set leaves out (it is the identity).
    missing = [t.name for t in supported() if t.name not in MANIFEST["types"] and t is not QuantType.F32]
    assert not missing


@pytest.fixture(scope="module", params=GOLDEN_TYPES, ids=lambda t: t.name)
def golden(request):
    t = request.param
    with np.load(golden_dir() / "codecs" / f"{t.name}.npz") as z:
        return t, {k: z[k] for k in z.files}, MANIFEST["types"][t.name]


def ggml_undefined_ref_bytes(t, x) -> np.ndarray:
    """Byte offsets of ggml's quantize_row_*_ref output that ggml computes from uninitialized
    memory (the same rule as tests/golden_codecs.rs): quantize_row_iq4_nl_ref (ntry = -1) does not
    write its code buffer for blocks with max |x| < 1e-15 (GROUP_MAX_EPS) and packs what it held,
    which for such blocks at the start of a row is uninitialized stack. Their scale (2 bytes, 0)
    is defined, and with scale 0 every code decodes to 0."""
    out = []
    if t is QuantType.IQ4_NL:
        bs, ts = t.block_size, t.type_size
        rows = x.reshape(-1, x.shape[-1])
        nb = rows.shape[1] // bs
        for r, row in enumerate(rows):
            for b in range(nb):
                if np.any(np.abs(row[b * bs : (b + 1) * bs]) >= 1e-15):
                    break
                start = (r * nb + b) * ts
                out.extend(range(start + 2, start + ts))
    return np.asarray(out, dtype=np.int64)


@pytest.mark.parametrize("dataset", ["synth", "real"])
def test_quantize_and_dequantize_bit_exact(golden, dataset):
    t, g, info = golden
    x, w = g[f"{dataset}_x"], g[f"{dataset}_imatrix"]
    flags = info["sets"][dataset]
    failures = []
    checked = 0

    def cmp(what, got, key):
        d = first_byte_diff(got.data, g[key], t.type_size)
        if d:
            failures.append(f"{t.name} {dataset} {what} ({key}): {d}")

    if f"{dataset}_q" in g:
        q = kquants.quantize(x, t)
        cmp("quantize", q, f"{dataset}_q")
        d = first_f32_diff(q.dequantize(), g[f"{dataset}_deq"], t.block_size)
        if d:
            failures.append(f"{t.name} {dataset} dequantize q: {d}")
        checked += 1
    if f"{dataset}_q_imat" in g:
        q = kquants.quantize(x, t, imatrix=w)
        cmp("quantize with imatrix", q, f"{dataset}_q_imat")
        d = first_f32_diff(q.dequantize(), g[f"{dataset}_deq_imat"], t.block_size)
        if d:
            failures.append(f"{t.name} {dataset} dequantize q_imat: {d}")
        checked += 1
    # quantize_row_*_ref: stored as q_ref when it differs from q, else equal to q.
    ref_key = f"{dataset}_q_ref" if f"{dataset}_q_ref" in g else (f"{dataset}_q" if flags.get("q_ref_equals_q") else None)
    if info["has_from_float_ref"] and ref_key is not None:
        q = kquants.quantize(x, t, ref=True)
        got_ref, want_ref = q.data.copy(), g[ref_key].copy()
        undefined = ggml_undefined_ref_bytes(t, x)
        got_ref.reshape(-1)[undefined] = 0
        want_ref.reshape(-1)[undefined] = 0
        d = first_byte_diff(got_ref, want_ref, t.type_size)
        if d:
            failures.append(f"{t.name} {dataset} reference quantize ({ref_key}): {d}")
        checked += 1
        if f"{dataset}_q" not in g:  # activation types: deq belongs to q_ref
            d = first_f32_diff(q.dequantize(), g[f"{dataset}_deq"], t.block_size)
            if d:
                failures.append(f"{t.name} {dataset} dequantize q_ref: {d}")
    # Dequantize ggml's own bytes too (not only ours), through the raw-buffer entry point.
    for qk, dk in (("q", "deq"), ("q_imat", "deq_imat"), ("q_ref", "deq")):
        if f"{dataset}_{qk}" in g and not (qk == "q_ref" and f"{dataset}_q" in g):
            got = kquants.dequantize(g[f"{dataset}_{qk}"].tobytes(), t, x.shape)
            d = first_f32_diff(got, g[f"{dataset}_{dk}"], t.block_size)
            if d:
                failures.append(f"{t.name} {dataset} dequantize golden {qk}: {d}")
    assert checked > 0, f"no quantize path checked for {t.name}"
    assert not failures, "\n".join(failures)


TIES_TYPES = [t for t in GOLDEN_TYPES if "ties_x" in MANIFEST["types"][t.name]["keys"]]
DOT_TYPES = [t for t in GOLDEN_TYPES if "synth_act_q" in MANIFEST["types"][t.name]["keys"]]


def _load(t):
    with np.load(golden_dir() / "codecs" / f"{t.name}.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("t", TIES_TYPES, ids=lambda t: t.name)
def test_ties_rows(t):
    """Q8_0/Q8_1 rows where ggml's SIMD and reference quantizers disagree: ours is the reference."""
    g = _load(t)
    d = first_byte_diff(kquants.quantize(g["ties_x"], t, ref=True).data, g["ties_q_ref"], t.type_size)
    assert d is None, d


@pytest.mark.parametrize("dataset", ["synth", "real"])
@pytest.mark.parametrize("t", DOT_TYPES, ids=lambda t: t.name)
def test_vec_dot_ref(t, dataset):
    g = _load(t)
    n = g[f"{dataset}_x"].shape[-1]
    dot = QuantType.parse(MANIFEST["types"][t.name]["vec_dot_type_name"])
    checked = 0
    for qk, vk in (("q", "vecdot_f64"), ("q_imat", "vecdot_imat_f64")):
        if f"{dataset}_{qk}" not in g:
            continue
        q, a, exact = g[f"{dataset}_{qk}"], g[f"{dataset}_act_q"], g[f"{dataset}_{vk}"]
        for r in range(q.shape[0]):
            got = kquants._kquants._vec_dot_ref(t.ggml_id, q[r], a[r], n)
            # Same bound as tests/golden_codecs.rs: relative to sum|x*y| of the dequantized
            # operands. ggml's kernels reach ~1e-8 of it, Q4_1/Q5_1 up to ~5e-5 because Q8_1's
            # s = d*sum(q) is fp16 (anchors/llamacpp.md §2); allow 1e-6, and 1e-4 against Q8_1.
            wd = kquants.dequantize(q[r].tobytes(), t, (n,)).astype(np.float64)
            ad = kquants.dequantize(a[r].tobytes(), dot, (n,)).astype(np.float64)
            sum_abs = float(np.sum(np.abs(wd * ad)))
            rel = 1e-4 if dot is QuantType.Q8_1 else 1e-6
            err = abs(got - exact[r])
            assert err <= rel * sum_abs, (
                f"{t.name} {dataset} {qk} row {r}: got {got} exact {exact[r]} (|err|/sum|x*y| = {err / sum_abs:e})"
            )
            checked += 1
    assert checked > 0
