"""A tiny random-weight llama written to GGUF, run by kquants and by a plain NumPy
implementation of the same graph, compared position by position; plus API behaviour
(generation, errors) on the same file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

import kquants
from kquants import Model

GOLDEN_IMATRIX = Path(__file__).resolve().parent.parent.parent / "shared" / "golden" / "smollm2" / \
    "imatrix-smollm2-debian-handbook-calibration.gguf"
D, FF, NH, NKV, NL = 32, 48, 4, 2, 2
HD = D // NH
BASE, EPS = 10000.0, 1e-5


def _vocab():
    toks = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    toks += [chr(c) for c in range(ord("a"), ord("z") + 1)]
    toks += [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    toks += ["Ġ", "Ċ", ".", "ab", "Ġa", "Ġb", "ĠA", "ĠB", "!", "?"]
    toks += [f"x{i}" for i in range(64 - len(toks))]
    return toks[:64]


def _weights(arch: str, bias: bool, seed: int = 1):
    rng = np.random.default_rng(seed)
    nv = len(_vocab())
    w = {"token_embd.weight": rng.standard_normal((nv, D)).astype(np.float32)}
    for i in range(NL):
        p = f"blk.{i}"
        w[f"{p}.attn_norm.weight"] = (1 + 0.1 * rng.standard_normal(D)).astype(np.float32)
        w[f"{p}.attn_q.weight"] = (0.3 * rng.standard_normal((NH * HD, D))).astype(np.float32)
        w[f"{p}.attn_k.weight"] = (0.3 * rng.standard_normal((NKV * HD, D))).astype(np.float32)
        w[f"{p}.attn_v.weight"] = (0.3 * rng.standard_normal((NKV * HD, D))).astype(np.float32)
        if bias:
            w[f"{p}.attn_q.bias"] = (0.3 * rng.standard_normal(NH * HD)).astype(np.float32)
            w[f"{p}.attn_k.bias"] = (0.3 * rng.standard_normal(NKV * HD)).astype(np.float32)
            w[f"{p}.attn_v.bias"] = (0.3 * rng.standard_normal(NKV * HD)).astype(np.float32)
        w[f"{p}.attn_output.weight"] = (0.3 * rng.standard_normal((D, NH * HD))).astype(np.float32)
        w[f"{p}.ffn_norm.weight"] = (1 + 0.1 * rng.standard_normal(D)).astype(np.float32)
        w[f"{p}.ffn_gate.weight"] = (0.3 * rng.standard_normal((FF, D))).astype(np.float32)
        w[f"{p}.ffn_up.weight"] = (0.3 * rng.standard_normal((FF, D))).astype(np.float32)
        w[f"{p}.ffn_down.weight"] = (0.3 * rng.standard_normal((D, FF))).astype(np.float32)
    w["output_norm.weight"] = (1 + 0.1 * rng.standard_normal(D)).astype(np.float32)
    if arch == "qwen2":
        w["output.weight"] = (0.3 * rng.standard_normal((nv, D))).astype(np.float32)
    return w


def write_tiny(path: Path, arch: str = "llama", bias: bool = False, seed: int = 1,
               rope_freqs=None, rope_factor=None) -> dict:
    w = _weights(arch, bias, seed)
    if rope_freqs is not None:
        w["rope_freqs.weight"] = np.asarray(rope_freqs, np.float32)
    wr = gguf.GGUFWriter(str(path), arch)
    wr.add_block_count(NL)
    wr.add_context_length(256)
    wr.add_embedding_length(D)
    wr.add_feed_forward_length(FF)
    wr.add_head_count(NH)
    wr.add_head_count_kv(NKV)
    wr.add_rope_freq_base(BASE)
    wr.add_layer_norm_rms_eps(EPS)
    wr.add_rope_dimension_count(HD)
    if rope_factor is not None:
        wr.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        wr.add_rope_scaling_factor(rope_factor)
    wr.add_tokenizer_model("gpt2")
    wr.add_tokenizer_pre("smollm")
    toks = _vocab()
    wr.add_token_list(toks)
    wr.add_token_types([3, 3, 3] + [1] * (len(toks) - 3))
    wr.add_token_merges(["a b", "Ġ a", "Ġ b", "Ġ A", "Ġ B"])
    wr.add_bos_token_id(1)
    wr.add_eos_token_id(2)
    wr.add_add_bos_token(False)
    for name, arr in w.items():
        wr.add_tensor(name, arr)
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    return w


def _f16(x):
    return x.astype(np.float16).astype(np.float32)


def reference_forward(w: dict, ids, neox: bool, rope_factor: float = 1.0) -> np.ndarray:
    """The llama graph in NumPy (float64 math, f16-rounded K, V, Q and attention weights as in
    an f16 KV cache). RoPE angles are ``pos / rope_factor * base^(-2i/d) / rope_freqs[i]``."""
    n = len(ids)
    x = w["token_embd.weight"][ids].astype(np.float64)

    def rms(v, g):
        return v / np.sqrt((v * v).mean(-1, keepdims=True) + EPS) * g

    inv = BASE ** (-np.arange(0, HD, 2) / HD) / w.get("rope_freqs.weight", 1.0)
    ang = np.arange(n)[:, None] / rope_factor * inv[None, :]
    cos, sin = np.cos(ang), np.sin(ang)

    def rope(t, heads):
        t = t.reshape(n, heads, HD).copy()
        if neox:
            a, b = t[..., : HD // 2].copy(), t[..., HD // 2 :].copy()
            t[..., : HD // 2] = a * cos[:, None] - b * sin[:, None]
            t[..., HD // 2 :] = a * sin[:, None] + b * cos[:, None]
        else:
            a, b = t[..., 0::2].copy(), t[..., 1::2].copy()
            t[..., 0::2] = a * cos[:, None] - b * sin[:, None]
            t[..., 1::2] = a * sin[:, None] + b * cos[:, None]
        return t

    for i in range(NL):
        p = f"blk.{i}"
        h = rms(x, w[f"{p}.attn_norm.weight"])
        q = h @ w[f"{p}.attn_q.weight"].T + w.get(f"{p}.attn_q.bias", 0)
        k = h @ w[f"{p}.attn_k.weight"].T + w.get(f"{p}.attn_k.bias", 0)
        v = h @ w[f"{p}.attn_v.weight"].T + w.get(f"{p}.attn_v.bias", 0)
        q, k = _f16(rope(q, NH)), _f16(rope(k, NKV))
        v = _f16(v.reshape(n, NKV, HD))
        out = np.zeros((n, NH, HD))
        for hh in range(NH):
            kv = hh // (NH // NKV)
            s = q[:, hh] @ k[:, kv].T / np.sqrt(HD)
            s = np.where(np.tril(np.ones((n, n), bool)), s, -np.inf)
            pr = np.exp(s - s.max(-1, keepdims=True))
            pr = _f16(pr / pr.sum(-1, keepdims=True))
            out[:, hh] = pr @ v[:, kv]
        x = x + out.reshape(n, D) @ w[f"{p}.attn_output.weight"].T
        h = rms(x, w[f"{p}.ffn_norm.weight"])
        g = h @ w[f"{p}.ffn_gate.weight"].T
        u = h @ w[f"{p}.ffn_up.weight"].T
        x = x + (g / (1 + np.exp(-g)) * u) @ w[f"{p}.ffn_down.weight"].T
    out_w = w.get("output.weight", w["token_embd.weight"])
    return rms(x, w["output_norm.weight"]) @ out_w.T


@pytest.mark.parametrize("arch,bias", [("llama", False), ("qwen2", True)])
def test_tiny_model_matches_numpy(tmp_path, arch, bias):
    path = tmp_path / f"tiny-{arch}.gguf"
    w = write_tiny(path, arch, bias)
    m = Model.load(path, threads=2)
    assert m.config["architecture"] == arch and m.n_vocab == 64
    ids = [5, 9, 1, 30, 63, 2, 7, 7, 40, 11, 0, 22]
    ours = m.forward(ids)
    assert ours.dtype == np.float32 and ours.shape == (len(ids), 64)
    ref = reference_forward(w, ids, neox=(arch == "qwen2"))
    # Both sides round the same values to f16; what remains is f32-vs-f64 summation, which can
    # flip an f16 rounding: measured max |diff| 2e-3 over logits of std ~3 (bound 1e-2).
    err = np.abs(ours - ref).max()
    assert err < 1e-2, f"max |ours - numpy| = {err} (logit std {ref.std():.2f})"
    assert (ours.argmax(-1) == ref.argmax(-1)).all()
    # Only the last position's logits: the same bits as the last row of the full forward (every
    # matmul gives a row the same value whatever the batch).
    last = m.forward(ids, last_only=True)
    assert last.shape == (1, 64)
    np.testing.assert_array_equal(last[0], ours[-1])
    assert m.forward([], last_only=True).shape == (0, 64)


def test_rope_frequency_factors_and_linear_scaling(tmp_path):
    """`rope_freqs.weight` (Llama 3.1-style per-dimension divisors) and linear
    `rope.scaling.factor` change the angles as in ggml's rope; both checked against NumPy and
    shown to matter."""
    ids = [5, 9, 1, 30, 63, 2, 7, 7, 40, 11, 0, 22]
    freqs = np.array([1.0, 2.5, 8.0, 31.0], np.float32)
    path = tmp_path / "rope.gguf"
    w = write_tiny(path, rope_freqs=freqs, rope_factor=4.0)
    m = Model.load(path, threads=2)
    assert m.config["rope_freq_scale"] == 0.25
    ours = m.forward(ids)
    ref = reference_forward(w, ids, neox=False, rope_factor=4.0)
    # Same bound and reason as test_tiny_model_matches_numpy.
    assert np.abs(ours - ref).max() < 1e-2
    plain = tmp_path / "plain.gguf"
    write_tiny(plain)
    assert np.abs(Model.load(plain, threads=2).forward(ids) - ours).max() > 0.1
    bad = tmp_path / "bad.gguf"
    write_tiny(bad, rope_freqs=np.array([1.0, 0.0, 1.0, 1.0], np.float32))
    with pytest.raises(ValueError, match="rope_freqs"):
        Model.load(bad)


def test_warns_beyond_training_context(tmp_path):
    path = tmp_path / "tiny.gguf"
    write_tiny(path)  # context_length 256
    m = Model.load(path, threads=1)
    with pytest.warns(RuntimeWarning, match="256"):
        m.generate("ab", max_tokens=300)
    with pytest.warns(RuntimeWarning, match="trained on"):
        m.forward([5] * 257, last_only=True)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.forward([5] * 256, last_only=True)
        m.generate("ab", max_tokens=10)


def test_generation_api(tmp_path):
    path = tmp_path / "tiny.gguf"
    write_tiny(path)
    m = Model.load(path, threads=1)
    ids = m.tokenize("ab ab A")
    assert m.detokenize(ids) == "ab ab A"
    assert m.tokenize("<|im_start|>a<|im_end|>") == [1, 3, 2]
    g = m.generate("ab", max_tokens=8, seed=3)
    pieces = list(g)
    toks = g.tokens
    assert "".join(pieces) == m.detokenize(toks)
    # Greedy generation continues with the argmax of a full forward at every step.
    seq = m.tokenize("ab")
    for t in toks:
        assert m.forward(seq)[-1].argmax() == t
        seq.append(t)
    a = "".join(m.generate("ab", max_tokens=10, temperature=1.0, top_k=0, top_p=1.0, seed=11))
    b = "".join(m.generate("ab", max_tokens=10, temperature=1.0, top_k=0, top_p=1.0, seed=11))
    assert a == b
    with pytest.raises(ValueError):
        m.forward([64])
    with pytest.raises(ValueError):
        m.generate("ab", temperature=-1)
    with pytest.raises(ValueError, match="chat_template"):
        m.apply_chat_template([{"role": "user", "content": "hi"}])


def test_bad_files(tmp_path):
    p = tmp_path / "junk.gguf"
    p.write_bytes(b"GGUF" + b"\0" * 10)
    with pytest.raises(ValueError):
        Model.load(p)
    with pytest.raises(FileNotFoundError):
        Model.load(tmp_path / "missing.gguf")
    # An architecture we do not run is named in the error.
    path = tmp_path / "gptj.gguf"
    wr = gguf.GGUFWriter(str(path), "gptj")
    wr.add_tensor("token_embd.weight", np.zeros((4, 32), np.float32))
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()
    with pytest.raises(ValueError, match="unsupported model architecture"):
        Model.load(path)


def test_imatrix_roundtrip_and_layout(tmp_path):
    path = tmp_path / "tiny.gguf"
    w = write_tiny(path)
    m = Model.load(path, threads=1)
    text = " ".join(["ab A B a b"] * 40)
    out = tmp_path / "im.gguf"
    n = kquants.imatrix(m, text, out, ctx=32, progress=False)
    assert n >= 2
    # llama.cpp's layout, read with gguf-py.
    r = gguf.GGUFReader(str(out))
    assert r.fields["general.type"].contents() == "imatrix"
    assert r.fields["imatrix.chunk_size"].contents() == 32
    assert r.fields["imatrix.chunk_count"].contents() == n
    names = [t.name for t in r.tensors]
    # Same layout as llama-imatrix's own file: per weight (sorted) in_sum2 then counts, 1-D F32.
    golden = gguf.GGUFReader(str(GOLDEN_IMATRIX))
    assert [t.name.rsplit(".", 1)[1] for t in golden.tensors[:4]] == ["in_sum2", "counts"] * 2
    assert [t.name.rsplit(".", 1)[1] for t in r.tensors] == ["in_sum2", "counts"] * (len(names) // 2)
    bases = [nm.rsplit(".", 1)[0] for nm in names[0::2]]
    assert bases == sorted(bases)
    for ours_t, gold_t in zip(r.tensors[:2], golden.tensors[:2]):
        assert len(ours_t.field.parts[3]) == 1 and ours_t.field.parts[2][0] == gold_t.field.parts[2][0] == 1
        assert ours_t.tensor_type == gold_t.tensor_type == gguf.GGMLQuantizationType.F32
    assert set(r.fields) - {"GGUF.version", "GGUF.tensor_count", "GGUF.kv_count"} == set(golden.fields) - {
        "GGUF.version", "GGUF.tensor_count", "GGUF.kv_count"}
    assert f"blk.0.attn_q.weight.in_sum2" in names and f"blk.0.attn_q.weight.counts" in names
    assert len(names) == 2 * 7 * NL
    counts = {t.name: float(t.data[0]) for t in r.tensors if t.name.endswith(".counts")}
    assert set(counts.values()) == {32.0 * n}
    # Check one entry against NumPy: the ffn_down input is silu(gate)·up of the normed stream.
    back = kquants.load_imatrix(out)
    assert set(back) == {nm[: -len(".in_sum2")] for nm in names if nm.endswith(".in_sum2")}
    assert back["blk.0.attn_q.weight"].shape == (D,)
    np.testing.assert_allclose(back["blk.0.attn_q.weight"], back["blk.0.attn_k.weight"])
    ids = m.tokenize(text)
    x0 = w["token_embd.weight"][ids[: 32 * n]].astype(np.float64)
    h = x0 / np.sqrt((x0 * x0).mean(-1, keepdims=True) + EPS) * w["blk.0.attn_norm.weight"]
    np.testing.assert_allclose(back["blk.0.attn_q.weight"], (h * h).mean(0), rtol=1e-4)
    # The legacy .dat layout round-trips to the same means.
    dat = tmp_path / "im.dat"
    kquants.imatrix(m, text, dat, ctx=32, progress=False)
    back2 = kquants.load_imatrix(dat)
    for k in back:
        np.testing.assert_allclose(back2[k], back[k], rtol=1e-5)


def test_perplexity_self_kld_is_zero(tmp_path):
    path = tmp_path / "tiny.gguf"
    write_tiny(path)
    text = " ".join(["ab A B a b"] * 40)
    r = kquants.perplexity(path, text, ctx=32, base=path, progress=False, threads=1)
    assert r["chunks"] >= 2 and r["scored_tokens"] == r["chunks"] * 15
    assert r["mean_kld"] == pytest.approx(0.0, abs=1e-12)
    assert r["same_top1"] == 1.0 and r["ppl_ratio"] == pytest.approx(1.0)
    # PPL from a NumPy log-softmax over our own logits of the same chunk layout.
    m = Model.load(path, threads=1)
    ids = m.tokenize(text)
    nll = []
    for c in range(r["chunks"]):
        chunk = ids[c * 32 : (c + 1) * 32]
        lg = m.forward(chunk).astype(np.float64)
        lp = lg - np.log(np.exp(lg - lg.max(-1, keepdims=True)).sum(-1, keepdims=True)) - lg.max(-1, keepdims=True)
        nll += [-lp[j, chunk[j + 1]] for j in range(16, 31)]
    assert r["ppl"] == pytest.approx(float(np.exp(np.mean(nll))), rel=1e-9)


def test_reads_llamacpp_imatrix():
    im = kquants.load_imatrix(GOLDEN_IMATRIX)
    assert len(im) == 210
    r = gguf.GGUFReader(str(GOLDEN_IMATRIX))
    t = {x.name: np.array(x.data) for x in r.tensors}
    np.testing.assert_array_equal(
        im["blk.3.ffn_down.weight"], t["blk.3.ffn_down.weight.in_sum2"] / t["blk.3.ffn_down.weight.counts"][0])
    assert im["blk.3.ffn_down.weight"].shape == (1536,)


def test_cli(tmp_path, capsys):
    from kquants.cli import main

    path = tmp_path / "tiny.gguf"
    write_tiny(path)
    assert main(["run", str(path), "-p", "ab", "-n", "5", "-t", "1"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("ab") and "tokens/s" in err
    text = tmp_path / "t.txt"
    text.write_text(" ".join(["ab A B a b"] * 40))
    assert main(["perplexity", str(path), str(text), "--ctx", "32", "--kl-divergence", str(path), "-t", "1"]) == 0
    out, _ = capsys.readouterr()
    assert "PPL = " in out and "mean KLD = 0.000000" in out and "same top-1 = 100.00 %" in out
    im = tmp_path / "im.gguf"
    assert main(["imatrix", str(path), str(text), "-o", str(im), "--ctx", "32", "-t", "1"]) == 0
    assert set(kquants.load_imatrix(im)) == {f"blk.{i}.{w}.weight" for i in range(NL) for w in
                                              ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]}
    r = gguf.GGUFReader(str(im))
    assert r.fields["imatrix.datasets"].contents() == ["t.txt"]
    assert main(["run", str(tmp_path / "missing.gguf"), "-p", "x"]) == 1
