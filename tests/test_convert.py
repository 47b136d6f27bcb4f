"""``kquants.convert``: a tiny random Hugging Face llama / qwen2 directory built here (config.json,
safetensors written by the ``safetensors`` package, a byte-level BPE tokenizer trained by the
``tokenizers`` package) converted to GGUF, then checked against

* a NumPy forward pass in Hugging Face's layout (rotate-half RoPE on the *unpermuted* q/k
  weights), which only agrees with our adjacent-pair RoPE if the q/k permutation is right;
* the HF tokenizer itself (same token ids for the same text after conversion);
* gguf-py: every metadata key and tensor name is one ``gguf.Keys`` / ``gguf.MODEL_TENSORS``
  knows, the file opens in ``gguf.GGUFReader``, and Q8_0 bytes equal ``gguf.quants.quantize``
  (what llama.cpp's converter calls);
* sharded input, tied embeddings, BF16 input, a K-quant mix, and error cases.
"""

from __future__ import annotations

import json
import os
import string
import struct
import textwrap
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
tokenizers = pytest.importorskip("tokenizers")
st_numpy = pytest.importorskip("safetensors.numpy")

import kquants  # noqa: E402

D, FF, NH, NKV, NL = 64, 96, 4, 2, 2
HD = D // NH
BASE, EPS = 10000.0, 1e-5
LLAMA3_RE = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_RE = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
TEMPLATE = "{% for m in messages %}<|start|>{{ m['role'] }}\n{{ m['content'] }}<|end|>\n{% endfor %}"
# Training and test text that needs no download: docstrings of standard-library modules.
TEXT = "\n\n".join(m.__doc__ or "" for m in (json, os, string, struct, textwrap))


def _train_tokenizer(kind: str):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    if kind == "gpt-2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    elif kind == "smollm":
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]
        )
    else:
        regex = LLAMA3_RE if kind == "llama-bpe" else QWEN2_RE
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
            ]
        )
    tok.decoder = decoders.ByteLevel()
    specials = ["<|bos|>", "<|eos|>", "<|start|>", "<|end|>"]
    if kind == "qwen2":
        specials.append("<|endoftext|>")  # every Qwen2 vocabulary has it (transformers adds it otherwise)
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator([TEXT] * 2, trainer)
    if kind == "llama-bpe":
        tok.post_processor = processors.TemplateProcessing(single="<|bos|> $A", special_tokens=[("<|bos|>", 0)])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's LlamaModel.permute (reshape / swapaxes), written out in NumPy."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def make_model(
    path: Path,
    arch: str = "llama",
    *,
    tied: bool = True,
    shards: int = 1,
    dtype=np.float32,
    pre: str | None = None,
    seed: int = 0,
    extra_vocab: int = 8,
) -> dict:
    """Write a random HF model directory; returns {"weights": {hf name: f32 array}, "tok": tokenizer}."""
    path.mkdir(parents=True, exist_ok=True)
    pre = pre or ("qwen2" if arch == "qwen2" else "llama-bpe")
    tok = _train_tokenizer(pre)
    tok.save(str(path / "tokenizer.json"))
    n_tok = tok.get_vocab_size()
    nv = n_tok + extra_vocab
    rng = np.random.default_rng(seed)

    def r(*shape, s=0.3):
        return (s * rng.standard_normal(shape)).astype(np.float32)

    w = {"model.embed_tokens.weight": r(nv, D, s=1.0), "model.norm.weight": 1 + r(D, s=0.1)}
    for i in range(NL):
        p = f"model.layers.{i}"
        w[f"{p}.input_layernorm.weight"] = 1 + r(D, s=0.1)
        w[f"{p}.post_attention_layernorm.weight"] = 1 + r(D, s=0.1)
        w[f"{p}.self_attn.q_proj.weight"] = r(NH * HD, D)
        w[f"{p}.self_attn.k_proj.weight"] = r(NKV * HD, D)
        w[f"{p}.self_attn.v_proj.weight"] = r(NKV * HD, D)
        w[f"{p}.self_attn.o_proj.weight"] = r(D, NH * HD)
        if arch == "qwen2":
            w[f"{p}.self_attn.q_proj.bias"] = r(NH * HD)
            w[f"{p}.self_attn.k_proj.bias"] = r(NKV * HD)
            w[f"{p}.self_attn.v_proj.bias"] = r(NKV * HD)
        w[f"{p}.mlp.gate_proj.weight"] = r(FF, D)
        w[f"{p}.mlp.up_proj.weight"] = r(FF, D)
        w[f"{p}.mlp.down_proj.weight"] = r(D, FF)
    if not tied:
        w["lm_head.weight"] = r(nv, D)
    if dtype is not np.float32:
        # Round to the stored precision so the reference sees what the file holds.
        w = {k: _round_bf16(v) if dtype == "bf16" else v.astype(dtype).astype(np.float32) for k, v in w.items()}
    names = sorted(w)
    parts = [names[i::shards] for i in range(shards)]
    files = ["model.safetensors"] if shards == 1 else [f"model-{i + 1:05d}-of-{shards:05d}.safetensors" for i in range(shards)]
    for fname, part in zip(files, parts):
        if dtype == "bf16":
            _save_bf16({k: w[k] for k in part}, path / fname)
        else:
            st_numpy.save_file({k: w[k].astype(dtype) for k in part}, str(path / fname), metadata={"format": "pt"})
    if shards > 1:
        index = {"metadata": {}, "weight_map": {k: f for f, part in zip(files, parts) for k in part}}
        (path / "model.safetensors.index.json").write_text(json.dumps(index))
    cfg = {
        "architectures": [{"qwen2": "Qwen2ForCausalLM", "mistral": "MistralForCausalLM"}.get(arch, "LlamaForCausalLM")],
        "model_type": arch,
        "hidden_size": D,
        "intermediate_size": FF,
        "num_attention_heads": NH,
        "num_key_value_heads": NKV,
        "num_hidden_layers": NL,
        "max_position_embeddings": 512,
        "rms_norm_eps": EPS,
        "rope_theta": BASE,
        "vocab_size": nv,
        "tie_word_embeddings": tied,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "torch_dtype": "float32",
    }
    (path / "config.json").write_text(json.dumps(cfg))
    tcfg = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|bos|>", "eos_token": "<|eos|>", "add_bos_token": pre == "llama-bpe", "chat_template": TEMPLATE}
    (path / "tokenizer_config.json").write_text(json.dumps(tcfg))
    return {"weights": w, "tok": tok, "n_vocab": nv, "n_tok": n_tok}


def _round_bf16(x: np.ndarray) -> np.ndarray:
    b = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    b = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint32) << 16
    return b.view(np.float32)


def _save_bf16(tensors: dict, path: Path) -> None:
    """A minimal safetensors writer for BF16 (NumPy has no bfloat16): header length, JSON, data."""
    header, blobs, off = {}, [], 0
    for k in sorted(tensors):
        data = (tensors[k].view(np.uint32) >> 16).astype("<u2").tobytes()
        header[k] = {"dtype": "BF16", "shape": list(tensors[k].shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def _f16(x):
    return x.astype(np.float16).astype(np.float32)


def hf_forward(w: dict, ids, arch: str) -> np.ndarray:
    """Hugging Face's Llama/Qwen2 forward in NumPy on the HF weights (rotate_half RoPE on
    unpermuted q/k). Q, K, V and attention weights are rounded to f16 where kquants' f16 KV cache
    rounds them (the rounding is elementwise, so it commutes with the head-internal permutation)."""
    n = len(ids)
    x = w["model.embed_tokens.weight"][ids].astype(np.float64)

    def rms(v, g):
        return v / np.sqrt((v * v).mean(-1, keepdims=True) + EPS) * g

    inv = 1.0 / BASE ** (np.arange(0, HD, 2) / HD)
    freqs = np.arange(n)[:, None] * inv[None, :]
    emb = np.concatenate([freqs, freqs], -1)
    cos, sin = np.cos(emb)[:, None, :], np.sin(emb)[:, None, :]

    def rotate_half(t):
        return np.concatenate([-t[..., HD // 2 :], t[..., : HD // 2]], -1)

    for i in range(NL):
        p = f"model.layers.{i}"
        h = rms(x, w[f"{p}.input_layernorm.weight"])
        q = h @ w[f"{p}.self_attn.q_proj.weight"].T + w.get(f"{p}.self_attn.q_proj.bias", 0)
        k = h @ w[f"{p}.self_attn.k_proj.weight"].T + w.get(f"{p}.self_attn.k_proj.bias", 0)
        v = h @ w[f"{p}.self_attn.v_proj.weight"].T + w.get(f"{p}.self_attn.v_proj.bias", 0)
        q, k, v = q.reshape(n, NH, HD), k.reshape(n, NKV, HD), v.reshape(n, NKV, HD)
        q = _f16(q * cos + rotate_half(q) * sin)
        k = _f16(k * cos + rotate_half(k) * sin)
        v = _f16(v)
        out = np.zeros((n, NH, HD))
        for hh in range(NH):
            kv = hh // (NH // NKV)
            s = q[:, hh] @ k[:, kv].T / np.sqrt(HD)
            s = np.where(np.tril(np.ones((n, n), bool)), s, -np.inf)
            pr = np.exp(s - s.max(-1, keepdims=True))
            pr = _f16(pr / pr.sum(-1, keepdims=True))
            out[:, hh] = pr @ v[:, kv]
        x = x + out.reshape(n, D) @ w[f"{p}.self_attn.o_proj.weight"].T
        h = rms(x, w[f"{p}.post_attention_layernorm.weight"])
        g = h @ w[f"{p}.mlp.gate_proj.weight"].T
        u = h @ w[f"{p}.mlp.up_proj.weight"].T
        x = x + (g / (1 + np.exp(-g)) * u) @ w[f"{p}.mlp.down_proj.weight"].T
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return rms(x, w["model.norm.weight"]) @ head.T


IDS = [0, 5, 9, 31, 77, 120, 2, 7, 7, 40, 200, 11, 3, 150]

# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch,tied", [("llama", True), ("llama", False), ("mistral", False), ("qwen2", False)])
def test_f32_logits_match_hf_numpy(tmp_path, arch, tied):
    m = make_model(tmp_path / "hf", arch, tied=tied)
    out = tmp_path / "m.gguf"
    r = kquants.convert(tmp_path / "hf", out, "f32")
    assert {t.to_type for t in r.tensors} == {"F32"}
    model = kquants.Model.load(out, threads=2)
    assert model.n_vocab == m["n_vocab"]
    ours = model.forward(IDS)
    ref = hf_forward(m["weights"], IDS, arch)
    # Both sides round the same values to f16; the rest is f32 vs f64 arithmetic. Measured max
    # |diff| 2.1e-3 (tied llama, logit std 8.1), 6.4e-4 (llama, mistral) and 3.4e-4 (qwen2)
    # (std 2.5) (bound 2e-2).
    err = np.abs(ours - ref).max()
    assert err < 2e-2, f"max |ours - HF numpy| = {err} (logit std {ref.std():.2f})"
    assert (ours.argmax(-1) == ref.argmax(-1)).all()


def test_without_permutation_logits_differ(tmp_path):
    """The comparison above can fail: a file whose q/k rows keep HF's layout (the converter's
    permutation undone on the input) gives clearly different logits."""
    m = make_model(tmp_path / "hf", "llama")
    st = tmp_path / "hf" / "model.safetensors"
    t = st_numpy.load_file(str(st))
    for k in t:
        if k.endswith(("q_proj.weight", "k_proj.weight")):
            h = NH if "q_proj" in k else NKV
            a = t[k]
            t[k] = np.ascontiguousarray(a.reshape(h, a.shape[0] // h // 2, 2, -1).swapaxes(1, 2).reshape(a.shape))
            assert np.array_equal(_permute(t[k], h), a)  # the exact inverse
    st_numpy.save_file(t, str(st))
    kquants.convert(tmp_path / "hf", tmp_path / "m.gguf", "f32")
    with kquants.GGUFFile(tmp_path / "m.gguf") as f:
        q = f.tensors["blk.0.attn_q.weight"].raw.view(np.float32).reshape(NH * HD, D)
        np.testing.assert_array_equal(q, m["weights"]["model.layers.0.self_attn.q_proj.weight"])
    err = np.abs(kquants.Model.load(tmp_path / "m.gguf").forward(IDS) - hf_forward(m["weights"], IDS, "llama")).max()
    assert err > 0.5, err


def _known_keys(arch: str) -> set[str]:
    keys = set()
    for group in vars(gguf.Keys).values():
        if isinstance(group, type):
            for v in vars(group).values():
                if isinstance(v, str) and "." in v:
                    keys.add(v.replace("{arch}", arch))
    return keys


def _tensor_names(arch: gguf.MODEL_ARCH, n_layer: int) -> set[str]:
    names = set()
    for t in gguf.MODEL_TENSORS[arch]:
        base = gguf.TENSOR_NAMES[t]
        for i in range(n_layer) if "{bid}" in base else [None]:
            n = base.format(bid=i) if i is not None else base
            names |= {n + ".weight", n + ".bias"}
    return names


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_metadata_and_names_follow_gguf_py(tmp_path, arch):
    m = make_model(tmp_path / "hf", arch, tied=(arch == "llama"))
    out = tmp_path / "m.gguf"
    kquants.convert(tmp_path / "hf", out)
    rd = gguf.GGUFReader(out)  # opens in gguf-py
    fields = {k: v for k, v in rd.fields.items() if not k.startswith("GGUF.")}
    known = _known_keys(arch)
    assert set(fields) <= known, sorted(set(fields) - known)
    mt = gguf.MODEL_ARCH.LLAMA if arch == "llama" else gguf.MODEL_ARCH.QWEN2
    allowed = _tensor_names(mt, NL)
    names = [t.name for t in rd.tensors]
    assert set(names) <= allowed, sorted(set(names) - allowed)

    def val(key):
        return rd.fields[key].contents()

    assert val("general.architecture") == arch
    assert val("general.type") == "model"
    assert val("general.name") == "Hf"  # gguf-py's id_to_title of the directory name
    assert val(f"{arch}.block_count") == NL
    assert val(f"{arch}.context_length") == 512
    assert val(f"{arch}.embedding_length") == D
    assert val(f"{arch}.feed_forward_length") == FF
    assert val(f"{arch}.attention.head_count") == NH
    assert val(f"{arch}.attention.head_count_kv") == NKV
    assert val(f"{arch}.rope.freq_base") == BASE
    assert val(f"{arch}.attention.layer_norm_rms_epsilon") == pytest.approx(EPS)
    assert val("general.file_type") == gguf.LlamaFileType.MOSTLY_F16
    assert val("general.quantization_version") == gguf.GGML_QUANT_VERSION
    if arch == "llama":  # LlamaModel adds these (and AutoConfig's head_dim default); qwen2's does not
        assert val("llama.vocab_size") == m["n_vocab"]
        assert val("llama.rope.dimension_count") == HD
        assert val("llama.attention.key_length") == HD and val("llama.attention.value_length") == HD
    else:
        assert not {"qwen2.vocab_size", "qwen2.rope.dimension_count", "qwen2.attention.key_length"} & set(fields)
    # Tokenizer: every HF token in id order, padding tokens after, HF's merges as strings.
    tj = json.loads((tmp_path / "hf" / "tokenizer.json").read_text())
    by_id = {i: t for t, i in m["tok"].get_vocab(with_added_tokens=True).items()}
    expect = [by_id.get(i, f"[PAD{i}]") for i in range(m["n_vocab"])]
    assert val("tokenizer.ggml.model") == "gpt2"
    assert val("tokenizer.ggml.pre") == ("qwen2" if arch == "qwen2" else "llama-bpe")
    assert val("tokenizer.ggml.tokens") == expect
    types = val("tokenizer.ggml.token_type")
    n_special = 5 if arch == "qwen2" else 4
    assert types[:n_special] == [gguf.TokenType.CONTROL] * n_special
    assert set(types[n_special : m["n_tok"]]) == {gguf.TokenType.NORMAL}
    assert set(types[m["n_tok"] :]) == {gguf.TokenType.UNUSED}
    merges = [" ".join(p) if isinstance(p, list) else p for p in tj["model"]["merges"]]
    assert val("tokenizer.ggml.merges") == merges
    assert val("tokenizer.ggml.bos_token_id") == 0
    assert val("tokenizer.ggml.eos_token_id") == 1
    assert val("tokenizer.chat_template") == TEMPLATE
    # llama: TemplateProcessing puts BOS first -> add_bos_token; qwen2: ByteLevel -> false.
    assert val("tokenizer.ggml.add_bos_token") == (arch == "llama")
    if arch == "qwen2":
        assert val("tokenizer.ggml.add_eos_token") is False
    # Tied embeddings: no output.weight; qwen2 with its own head, and biases.
    assert ("output.weight" in names) == (arch != "llama")
    assert ("blk.0.attn_q.bias" in names) == (arch == "qwen2")
    # Types as llama.cpp writes them for f16: 2-D weights F16, norms and biases F32.
    for t in rd.tensors:
        want = gguf.GGMLQuantizationType.F16 if len(t.shape) == 2 else gguf.GGMLQuantizationType.F32
        assert t.tensor_type == want, t.name
    # Order: llama.cpp's (HF names sorted within the shard).
    hf_sorted = sorted(m["weights"])
    mapped = [n for n in names]
    assert mapped[0] == ("output.weight" if "lm_head.weight" in hf_sorted else "token_embd.weight")
    assert mapped.index("blk.0.ffn_down.weight") < mapped.index("blk.0.ffn_gate.weight")


@pytest.mark.parametrize("outtype", ["f16", "bf16", "q8_0"])
def test_tensor_bytes_equal_llama_cpp_conversion(tmp_path, outtype):
    """Each tensor equals what llama.cpp's converter computes: HF array, q/k permuted with
    LlamaModel.permute, then gguf-py's ``quants.quantize`` for the output type."""
    m = make_model(tmp_path / "hf", "llama", tied=False)
    out = tmp_path / "m.gguf"
    kquants.convert(tmp_path / "hf", out, outtype)
    qt = {"f16": gguf.GGMLQuantizationType.F16, "bf16": gguf.GGMLQuantizationType.BF16, "q8_0": gguf.GGMLQuantizationType.Q8_0}[outtype]
    rd = gguf.GGUFReader(out)
    hf_of = {}
    for k in m["weights"]:
        hf_of[k] = k
    inv = {}
    for k in m["weights"]:
        name = (
            k.replace("model.embed_tokens", "token_embd").replace("model.norm", "output_norm").replace("lm_head", "output")
            .replace("model.layers.", "blk.").replace("input_layernorm", "attn_norm").replace("post_attention_layernorm", "ffn_norm")
            .replace("self_attn.q_proj", "attn_q").replace("self_attn.k_proj", "attn_k").replace("self_attn.v_proj", "attn_v")
            .replace("self_attn.o_proj", "attn_output").replace("mlp.gate_proj", "ffn_gate").replace("mlp.up_proj", "ffn_up")
            .replace("mlp.down_proj", "ffn_down")
        )
        inv[name] = k
    assert sorted(inv) == sorted(t.name for t in rd.tensors)
    for t in rd.tensors:
        a = m["weights"][inv[t.name]]
        if ".attn_q." in t.name:
            a = _permute(a, NH)
        elif ".attn_k." in t.name:
            a = _permute(a, NKV)
        if a.ndim == 1:
            assert t.tensor_type == gguf.GGMLQuantizationType.F32
            np.testing.assert_array_equal(np.asarray(t.data), a)
            continue
        assert t.tensor_type == qt, t.name
        want = gguf.quants.quantize(a, qt)
        got = np.asarray(t.data)
        assert got.tobytes() == np.ascontiguousarray(want).tobytes(), t.name


@pytest.mark.parametrize(
    "dirname, name_or_path",
    [
        ("hf", None),
        ("SmolLM2-135M-Instruct", None),
        ("tiny-llama-v0.1-chat", None),
        ("Mixtral-8x7B-Instruct-v0.1", None),
        ("Meta-Llama-3-8B-262k", None),
        ("bloom-7b1-petals", None),
        ("model", "my-org/Super-Llama-2-70B-Chat-v1.5"),
        ("model", "/home/someone/checkpoints/x"),  # a path, not a model id: ignored
    ],
)
def test_general_naming_follows_gguf_py_metadata(tmp_path, dirname, name_or_path):
    """general.name / basename / finetune / version / organization / size_label equal what
    gguf-py's Metadata.load (llama.cpp's converter) derives for the same directory, with the
    size label from the parameter count when the name has none (gguf.size_label)."""
    from gguf.metadata import Metadata
    from gguf.utility import size_label

    src = tmp_path / dirname
    make_model(src, "llama")
    if name_or_path is not None:
        _edit_json(src / "config.json", _name_or_path=name_or_path)
    if dirname == "SmolLM2-135M-Instruct":
        gen = {"temperature": 0.6, "top_p": 0.9, "top_k": 20, "repetition_penalty": 1.1, "do_sample": True, "min_p": None}
        (src / "generation_config.json").write_text(json.dumps(gen))
    out = tmp_path / "m.gguf"
    kquants.convert(src, out)
    rd = gguf.GGUFReader(out)
    total = sum(int(np.prod(t.shape)) for t in rd.tensors)
    md = Metadata.load(None, src, None, total)
    if md.name is None:
        md.name = src.name
    if md.size_label is None and total > 0:
        md.size_label = size_label(total, total, 0, 0)
    want = {
        "general.name": md.name,
        "general.version": md.version,
        "general.organization": md.organization,
        "general.finetune": md.finetune,
        "general.basename": md.basename,
        "general.size_label": md.size_label,
    }
    for key in ("top_k", "top_p", "min_p", "temp", "penalty_last_n", "penalty_repeat", "mirostat", "mirostat_tau"):
        v = getattr(md, f"sampling_{key}")
        want[f"general.sampling.{key}"] = None if v is None else (v if isinstance(v, int) else float(np.float32(v)))
    if dirname == "SmolLM2-135M-Instruct":
        # llama.cpp's gguf-py at the pinned commit falls back to HF's "repetition_penalty"
        # (Metadata.load); the gguf 0.19 package installed for the tests predates that.
        want["general.sampling.penalty_repeat"] = float(np.float32(1.1))
    got = {k: (rd.fields[k].contents() if k in rd.fields else None) for k in want}
    got = {k: (float(np.float32(v)) if isinstance(v, float) else v) for k, v in got.items()}
    assert got == want
    if dirname == "SmolLM2-135M-Instruct":
        assert got["general.sampling.top_k"] == 20 and got["general.sampling.temp"] == pytest.approx(0.6)


def test_tokenizer_round_trip(tmp_path):
    """The converted vocabulary tokenizes like the HF tokenizer it came from."""
    for arch, pre in [("llama", "llama-bpe"), ("llama", "smollm"), ("llama", "gpt-2"), ("qwen2", "qwen2")]:
        d = tmp_path / pre
        m = make_model(d, arch, pre=pre, tied=(arch == "llama"))
        kquants.convert(d, d / "m.gguf")
        model = kquants.Model.load(d / "m.gguf")
        with kquants.GGUFFile(d / "m.gguf") as f:
            assert f.metadata["tokenizer.ggml.pre"] == pre
        for text in [TEXT[:300], "Beautiful is better than ugly. 12345 and 3.14!", "  spaces\n\nnewlines\ttabs"]:
            want = m["tok"].encode(text, add_special_tokens=False).ids
            assert model.tokenize(text, add_special=False) == want, (pre, text)
        assert model.bos_token_id == 0 and model.eos_token_id == 1


def test_sharded_input_equals_single_file(tmp_path):
    make_model(tmp_path / "one", "qwen2", tied=False, seed=3)
    make_model(tmp_path / "three", "qwen2", tied=False, seed=3, shards=3)
    assert (tmp_path / "three" / "model.safetensors.index.json").is_file()
    kquants.convert(tmp_path / "one", tmp_path / "a.gguf", model_name="m")
    kquants.convert(tmp_path / "three", tmp_path / "b.gguf", model_name="m")
    # llama.cpp orders tensors by shard, then by name; the data are the same tensors.
    ra, rb = gguf.GGUFReader(tmp_path / "a.gguf"), gguf.GGUFReader(tmp_path / "b.gguf")
    da = {t.name: np.asarray(t.data).tobytes() for t in ra.tensors}
    db = {t.name: np.asarray(t.data).tobytes() for t in rb.tensors}
    assert da == db
    ids = [1, 2, 3, 50, 60]
    np.testing.assert_array_equal(kquants.Model.load(tmp_path / "a.gguf").forward(ids), kquants.Model.load(tmp_path / "b.gguf").forward(ids))


def test_bf16_and_f16_inputs(tmp_path):
    for dtype, name in [("bf16", "bf16"), (np.float16, "f16")]:
        m = make_model(tmp_path / name, "llama", tied=False, dtype=dtype)
        kquants.convert(tmp_path / name, tmp_path / f"{name}.gguf", "f32")
        ours = kquants.Model.load(tmp_path / f"{name}.gguf").forward(IDS)
        ref = hf_forward(m["weights"], IDS, "llama")
        assert np.abs(ours - ref).max() < 2e-2  # same bound as the f32 test (weights are exact in f32)
        # Same dtype in and out: the stored bits are copied (through the permutation).
        out = tmp_path / f"{name}-same.gguf"
        kquants.convert(tmp_path / name, out, name)
        rd = gguf.GGUFReader(out)
        t = next(t for t in rd.tensors if t.name == "blk.1.attn_k.weight")
        a = _permute(m["weights"]["model.layers.1.self_attn.k_proj.weight"], NKV)
        if name == "f16":
            np.testing.assert_array_equal(np.asarray(t.data), a.astype(np.float16))
        else:
            np.testing.assert_array_equal(np.asarray(t.data).view(np.uint16), (a.view(np.uint32) >> 16).astype(np.uint16))


def test_mix_outtype_equals_convert_then_quantize(tmp_path):
    make_model(tmp_path / "hf", "llama", tied=False)
    seen = []
    r = kquants.convert(tmp_path / "hf", tmp_path / "q.gguf", "Q4_K_M", progress=lambda *a: seen.append(a))
    kquants.convert(tmp_path / "hf", tmp_path / "f32.gguf", "f32")
    kquants.quantize_model(tmp_path / "f32.gguf", tmp_path / "q2.gguf", "Q4_K_M")
    assert (tmp_path / "q.gguf").read_bytes() == (tmp_path / "q2.gguf").read_bytes()
    with kquants.GGUFFile(tmp_path / "q.gguf") as f:
        assert f.metadata["general.file_type"] == 15  # LLAMA_FTYPE_MOSTLY_Q4_K_M
        types = {t.type.name if hasattr(t.type, "name") else str(t.type) for t in f.tensors.values()}
    assert len(types) > 1  # a mix, not one type
    n = len(r.tensors)
    assert [s[0] for s in seen] == list(range(1, 2 * n + 1)) and all(s[1] == 2 * n for s in seen)
    assert {t.from_type for t in r.tensors} == {"F32"}
    # no temporary directory left beside the output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f32.gguf", "hf", "q.gguf", "q2.gguf"]
    model = kquants.Model.load(tmp_path / "q.gguf")
    assert model.forward(IDS).shape == (len(IDS), model.n_vocab)


def test_cli(tmp_path, capsys):
    from kquants.cli import main

    make_model(tmp_path / "hf", "llama")
    assert main(["convert", str(tmp_path / "hf"), str(tmp_path / "c.gguf"), "--outtype", "q8_0", "--threads", "1"]) == 0
    assert "wrote" in capsys.readouterr().out
    with kquants.GGUFFile(tmp_path / "c.gguf") as f:
        assert f.metadata["general.file_type"] == 7
    assert main(["convert", str(tmp_path / "nope"), str(tmp_path / "d.gguf")]) == 1
    assert "not a directory" in capsys.readouterr().err


def _edit_json(p: Path, **changes):
    d = json.loads(p.read_text())
    for k, v in changes.items():
        if v is None:
            d.pop(k, None)
        else:
            d[k] = v
    p.write_text(json.dumps(d))


def test_errors_name_file_and_key(tmp_path):
    src = tmp_path / "hf"
    make_model(src, "llama", shards=2)
    out = tmp_path / "out" / "m.gguf"
    out.parent.mkdir()

    def fails(match, **kw):
        with pytest.raises(ValueError, match=match):
            kquants.convert(src, out, **kw)
        assert list(out.parent.iterdir()) == [], "a failed convert must leave nothing behind"

    fails("unknown outtype", outtype="q9_x")
    cfg = src / "config.json"
    saved = cfg.read_text()
    _edit_json(cfg, num_hidden_layers=None)
    fails(r"config\.json: required key \"n_layers\" or \"num_hidden_layers\"")
    cfg.write_text(saved)
    _edit_json(cfg, architectures=["GPT2LMHeadModel"])
    fails(r"config\.json: architecture \"GPT2LMHeadModel\" is not supported")
    cfg.write_text(saved)
    _edit_json(cfg, num_attention_heads="four")
    fails(r"config\.json: key \"num_attention_heads\" should be a non-negative integer")
    cfg.write_text("{not json")
    fails(r"config\.json: invalid JSON")
    cfg.unlink()
    fails(r"config\.json is missing")
    cfg.write_text(saved)
    # index lists a tensor no shard has
    idx = src / "model.safetensors.index.json"
    saved_idx = idx.read_text()
    d = json.loads(saved_idx)
    d["weight_map"]["model.layers.9.mlp.up_proj.weight"] = "model-00001-of-00002.safetensors"
    idx.write_text(json.dumps(d))
    fails(r"model\.safetensors\.index\.json: the weight map and the shards disagree: missing tensors \[.model\.layers\.9")
    idx.write_text(saved_idx)
    # a truncated shard
    shard = src / "model-00002-of-00002.safetensors"
    good = shard.read_bytes()
    shard.write_bytes(good[: len(good) // 2])
    fails(r"model-00002-of-00002\.safetensors: invalid safetensors file")
    shard.write_bytes(good)
    # an unknown tensor and an integer tensor
    st_numpy.save_file({"model.vision_tower.weight": np.zeros((2, 2), np.float32)}, str(tmp_path / "x.safetensors"))
    d["weight_map"] = {k: v for k, v in json.loads(saved_idx)["weight_map"].items()}
    one = src / "model-00001-of-00002.safetensors"
    saved_one = one.read_bytes()
    tensors = st_numpy.load_file(str(one))
    tensors["model.layers.0.self_attn.rotary_emb.inv_freq"] = np.ones(4, np.float32)  # ignored, as in llama.cpp
    tensors["model.vision_tower.weight"] = np.zeros((2, 2), np.float32)
    st_numpy.save_file(tensors, str(one))
    idx.write_text(json.dumps({"weight_map": {**d["weight_map"], "model.vision_tower.weight": one.name,
                                              "model.layers.0.self_attn.rotary_emb.inv_freq": one.name}}))
    fails(r"cannot map tensor \"model\.vision_tower\.weight\"")
    del tensors["model.vision_tower.weight"]
    tensors["model.layers.0.mlp.up_proj.weight"] = tensors["model.layers.0.mlp.up_proj.weight"].astype(np.int32)
    st_numpy.save_file(tensors, str(one))
    idx.write_text(json.dumps({"weight_map": {**d["weight_map"], "model.layers.0.self_attn.rotary_emb.inv_freq": one.name}}))
    fails(r"tensor \"model\.layers\.0\.mlp\.up_proj\.weight\" has dtype I32")
    one.write_bytes(saved_one)
    idx.write_text(saved_idx)
    # tokenizer problems
    (src / "tokenizer.model").write_bytes(b"\x00")
    fails(r"tokenizer\.model: not a SentencePiece model")
    (src / "tokenizer.model").unlink()
    tj = src / "tokenizer.json"
    saved_tj = tj.read_text()
    t = json.loads(saved_tj)
    t["pre_tokenizer"] = {"type": "Whitespace"}
    tj.write_text(json.dumps(t))
    fails(r"pre-tokenizer was not recognized")
    kquants.convert(src, out, tokenizer_pre="default")  # the override works
    with kquants.GGUFFile(out) as f:
        assert f.metadata["tokenizer.ggml.pre"] == "default"
    out.unlink()
    tj.unlink()
    fails(r"tokenizer\.json is missing")
    tj.write_text(saved_tj)
    # and the directory is fine again
    kquants.convert(src, out)
    assert out.is_file()


def test_progress_abort_leaves_nothing(tmp_path):
    make_model(tmp_path / "hf", "llama")
    out = tmp_path / "o" / "m.gguf"
    out.parent.mkdir()

    def stop(done, *_):
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        kquants.convert(tmp_path / "hf", out, progress=stop)
    with pytest.raises(KeyboardInterrupt):
        kquants.convert(tmp_path / "hf", out, "Q4_K_M", progress=stop)
    assert list(out.parent.iterdir()) == []
    assert os.path.isdir(tmp_path / "hf")


@pytest.mark.parametrize("outtype,at", [("f16", 3), ("Q4_K_M", 3), ("Q4_K_M", 30)])
def test_kill_9_leaves_nothing(tmp_path, outtype, at):
    """SIGKILL in the middle of a conversion (for a mix: during the F32 pass, then during the
    quantization pass) leaves no file of any name beside the output."""
    import subprocess
    import sys

    make_model(tmp_path / "hf", "llama")
    out = tmp_path / "o" / "m.gguf"
    out.parent.mkdir()
    code = (
        "import os, signal, sys, kquants\n"
        "def cb(done, total, *_):\n"
        f"    if done == {at}:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        f"kquants.convert(sys.argv[1], sys.argv[2], {outtype!r}, progress=cb)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "hf"), str(out)], capture_output=True, timeout=300)
    assert r.returncode == -9, r.stderr.decode()
    assert list(out.parent.iterdir()) == []


@pytest.mark.parametrize("arch,ctx,kv", [("llama", 2048, NH), ("qwen2", 32768, 32)])
def test_absent_keys_take_transformers_defaults(tmp_path, arch, ctx, kv):
    """llama.cpp reads config.json through transformers' AutoConfig, so absent keys take the
    config class's defaults (LlamaConfig / Qwen2Config: max_position_embeddings 2048 / 32768,
    rms_norm_eps 1e-6, rope_theta 10000, num_key_value_heads num_attention_heads / 32; checked
    with scripts/compare_convert_llamacpp.py against transformers 5.23)."""
    make_model(tmp_path / "hf", arch, tied=(arch == "llama"))
    _edit_json(tmp_path / "hf" / "config.json", max_position_embeddings=None, rms_norm_eps=None, rope_theta=None,
               num_key_value_heads=None)
    # num_key_value_heads = num_attention_heads changes the k/v shapes the config implies, not
    # the file's tensors; only the metadata is looked at here.
    kquants.convert(tmp_path / "hf", tmp_path / "m.gguf")
    rd = gguf.GGUFReader(tmp_path / "m.gguf")
    assert rd.fields[f"{arch}.context_length"].contents() == ctx
    assert rd.fields[f"{arch}.attention.layer_norm_rms_epsilon"].contents() == pytest.approx(1e-6)
    assert rd.fields[f"{arch}.rope.freq_base"].contents() == 10000.0
    assert rd.fields[f"{arch}.attention.head_count_kv"].contents() == kv
