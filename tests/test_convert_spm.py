"""``kquants.convert`` of a Hugging Face llama directory whose vocabulary is a SentencePiece
``tokenizer.model`` (trained here by the ``sentencepiece`` package, Llama-style: BPE, byte
fallback, identity normalization, dummy prefix, digits split), checked against

* what ``sentencepiece`` itself reports for every id (piece, score, type), mapped the way
  llama.cpp's ``_create_vocab_sentencepiece`` maps them: UNKNOWN, CONTROL, UNUSED and BYTE keep
  their type and everything else, user-defined pieces included, is NORMAL; ``added_tokens.json``
  and ``added_tokens_decoder`` overwrite ids with score -1000, and ids up to ``vocab_size`` that
  the model lacks are ``[PADn]`` / -10000 / UNUSED;
* gguf-py ``SpecialVocab``'s rules for the special ids, add_bos/add_eos and the chat template;
* ``sentencepiece``'s own encoding: ``Model.tokenize`` of the converted file gives the same ids
  for texts with unicode, digits, leading/repeated spaces, newlines and characters the model has
  never seen (byte fallback), and ``Model.detokenize`` gives back what ``sentencepiece`` decodes.
"""

from __future__ import annotations

import argparse
import collections
import functools
import io
import json
import re
import string
import textwrap
from pathlib import Path

import numpy as np
import pytest

spm = pytest.importorskip("sentencepiece")
st_numpy = pytest.importorskip("safetensors.numpy")
gguf = pytest.importorskip("gguf")

import kquants  # noqa: E402

D, FF, NH, NL = 32, 48, 4, 1
TEMPLATE = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}</s>{% endfor %}"
# Training text that needs no download: docstrings of standard-library modules.
TRAIN = "\n".join(m.__doc__ or "" for m in (json, string, textwrap, io, argparse, re, collections, functools))
TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    " leading space",
    "   three leading spaces and two  inside  ",
    "digits 1234567890 and 3.14159, 2024-11-22",
    "unicode: café naïve Ωμέγα Привет",
    "never seen: 🙂 漢字 ☃ \u00a0 \u200b",
    "tabs\tand\nnewlines\n\nend",
    "",
    "x",
    TRAIN[:400],
]
PAD_EXTRA = 6  # config vocab_size beyond the model's pieces


@pytest.fixture(scope="module")
def sp_model() -> bytes:
    buf = io.BytesIO()
    lines = [ln for ln in TRAIN.splitlines() if ln.strip()]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=buf,
        model_type="bpe",
        vocab_size=800,
        byte_fallback=True,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        add_dummy_prefix=True,
        character_coverage=0.9995,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        control_symbols=["<ctl>"],
        user_defined_symbols=["<usr>"],
        minloglevel=2,
    )
    return buf.getvalue()


def make_dir(path: Path, model: bytes, *, tokenizer_json: bool, seed: int = 0) -> "spm.SentencePieceProcessor":
    """A one-layer random llama HF directory with ``model`` as its tokenizer."""
    path.mkdir(parents=True)
    (path / "tokenizer.model").write_bytes(model)
    sp = spm.SentencePieceProcessor(model_proto=model)
    n_sp = sp.get_piece_size()
    nv = n_sp + PAD_EXTRA
    rng = np.random.default_rng(seed)

    def r(*shape, s=0.3):
        return (s * rng.standard_normal(shape)).astype(np.float32)

    w = {"model.embed_tokens.weight": r(nv, D, s=1.0), "model.norm.weight": 1 + r(D, s=0.1)}
    for i in range(NL):
        p = f"model.layers.{i}"
        w[f"{p}.input_layernorm.weight"] = 1 + r(D, s=0.1)
        w[f"{p}.post_attention_layernorm.weight"] = 1 + r(D, s=0.1)
        for n in ("q", "k", "v", "o"):
            w[f"{p}.self_attn.{n}_proj.weight"] = r(D, D)
        w[f"{p}.mlp.gate_proj.weight"] = r(FF, D)
        w[f"{p}.mlp.up_proj.weight"] = r(FF, D)
        w[f"{p}.mlp.down_proj.weight"] = r(D, FF)
    st_numpy.save_file(w, str(path / "model.safetensors"), metadata={"format": "pt"})
    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": D,
        "intermediate_size": FF,
        "num_attention_heads": NH,
        "num_key_value_heads": NH,
        "num_hidden_layers": NL,
        "max_position_embeddings": 256,
        "rms_norm_eps": 1e-5,
        "vocab_size": nv,
        "tie_word_embeddings": True,
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    (path / "config.json").write_text(json.dumps(cfg))
    # One added token past the model's pieces (USER_DEFINED) and one over an existing piece.
    (path / "added_tokens.json").write_text(json.dumps({"<extra>": n_sp, "<over>": 5}))
    tcfg = {
        "tokenizer_class": "LlamaTokenizer",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "add_bos_token": True,
        "add_eos_token": False,
        "chat_template": TEMPLATE,
        "added_tokens_decoder": {
            str(n_sp + 1): {"content": "<|im_start|>", "special": False},  # looks special: CONTROL
            str(n_sp + 2): {"content": "my\u2581word", "special": False},  # USER_DEFINED, ▁ -> space
            str(n_sp + 3): {"content": "<sys>", "special": True},
            str(nv + 10): {"content": "<beyond>", "special": True},  # out of range: ignored
        },
    }
    (path / "tokenizer_config.json").write_text(json.dumps(tcfg))
    if tokenizer_json:
        # What SpecialVocab reads from a Llama tokenizer.json: added tokens and the post-processor.
        tj = {
            "added_tokens": [{"id": i, "content": sp.id_to_piece(i), "special": True} for i in range(3)],
            "post_processor": {
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [],
                "special_tokens": {},
            },
            "model": {"type": "BPE", "byte_fallback": True, "vocab": {}, "merges": []},
        }
        (path / "tokenizer.json").write_text(json.dumps(tj))
    return sp


def expected_vocab(sp, n_sp: int) -> tuple[list[str], list[float], list[int]]:
    """llama.cpp's _create_vocab_sentencepiece, from what sentencepiece reports."""
    nv = n_sp + PAD_EXTRA
    tokens = [f"[PAD{i}]" for i in range(nv)]
    scores = [-10000.0] * nv
    types = [5] * nv
    for i in range(n_sp):
        t = 1
        if sp.is_unknown(i):
            t = 2
        elif sp.is_control(i):
            t = 3
        elif sp.is_unused(i):
            t = 5
        elif sp.is_byte(i):
            t = 6
        tokens[i], scores[i], types[i] = sp.id_to_piece(i), sp.get_score(i), t
    for tok, i in (("<extra>", n_sp), ("<over>", 5)):
        tokens[i], scores[i], types[i] = tok, -1000.0, 4
    for i, tok, t in ((n_sp + 1, "<|im_start|>", 3), (n_sp + 2, "my word", 4), (n_sp + 3, "<sys>", 3)):
        tokens[i], scores[i], types[i] = tok, -1000.0, t
    return tokens, scores, types


@pytest.mark.parametrize("tokenizer_json", [False, True])
def test_vocab_matches_sentencepiece(tmp_path, sp_model, tokenizer_json):
    d = tmp_path / "hf"
    sp = make_dir(d, sp_model, tokenizer_json=tokenizer_json)
    n_sp = sp.get_piece_size()
    # The trained model has every piece type llama.cpp distinguishes but UNUSED (the Rust unit
    # tests of rust/convert/spm.rs cover that one with a hand-built model).
    kinds = {(sp.is_unknown(i), sp.is_control(i), sp.is_byte(i)) for i in range(n_sp)}
    assert {(True, False, False), (False, True, False), (False, False, True), (False, False, False)} <= kinds
    assert sp.piece_to_id("<usr>") != sp.unk_id()  # a user-defined piece, written as NORMAL

    kquants.convert(d, tmp_path / "m.gguf", outtype="f32")
    r = gguf.GGUFReader(str(tmp_path / "m.gguf"))

    def field(key):
        f = r.fields[key]
        return f.contents()

    assert field("tokenizer.ggml.model") == "llama"
    assert field("tokenizer.ggml.pre") == "default"
    tokens, scores, types = expected_vocab(sp, n_sp)
    got_tokens = field("tokenizer.ggml.tokens")
    assert len(got_tokens) == n_sp + PAD_EXTRA
    for i, (g, w) in enumerate(zip(got_tokens, tokens)):
        assert g == w, f"token {i}: {g!r} != {w!r}"
    np.testing.assert_array_equal(np.array(field("tokenizer.ggml.scores"), np.float32), np.array(scores, np.float32))
    assert list(field("tokenizer.ggml.token_type")) == types
    assert field("tokenizer.ggml.bos_token_id") == 1
    assert field("tokenizer.ggml.eos_token_id") == 2
    assert field("tokenizer.ggml.add_bos_token") is True
    assert field("tokenizer.ggml.add_eos_token") is False
    assert field("tokenizer.chat_template") == TEMPLATE
    # unk_token is looked up in tokenizer.json's added tokens only (config.json has no unk id).
    if tokenizer_json:
        assert field("tokenizer.ggml.unknown_token_id") == 0
    else:
        assert "tokenizer.ggml.unknown_token_id" not in r.fields
    assert "tokenizer.ggml.merges" not in r.fields
    assert field("llama.vocab_size") == n_sp + PAD_EXTRA


def test_tokenize_matches_sentencepiece(tmp_path, sp_model):
    d = tmp_path / "hf"
    sp = make_dir(d, sp_model, tokenizer_json=False)
    kquants.convert(d, tmp_path / "m.gguf", outtype="f32")
    model = kquants.Model.load(tmp_path / "m.gguf")
    fallback = 0
    for text in TEXTS:
        want = sp.encode(text)
        got = model.tokenize(text, add_special=False)
        assert got == want, (text, [sp.id_to_piece(i) for i in want], [sp.id_to_piece(i) if i < len(sp) else i for i in got])
        assert model.tokenize(text) == [1] + want  # add_bos_token
        fallback += sum(sp.is_byte(i) for i in want)
        assert model.detokenize(got) == sp.decode(want), text
    assert fallback > 0, "the texts should exercise byte fallback"
    # Training text is mostly multi-character pieces, so merges are exercised, not just
    # characters (sentencepiece gives 0.47 tokens per character here, measured).
    ids = model.tokenize(TRAIN[:2000], add_special=False)
    assert ids == sp.encode(TRAIN[:2000])
    assert len(ids) < 0.6 * len(TRAIN[:2000])
    # A control token written in the text is parsed as one token (llama.cpp's parse_special).
    assert model.tokenize("<|im_start|>Hi", add_special=False) == [len(sp) + 1] + sp.encode("Hi")
    # The converted model runs.
    ids = model.tokenize("Hello world")
    logits = model.forward(ids)
    assert logits.shape == (len(ids), len(sp) + PAD_EXTRA) and np.isfinite(logits).all()
    # add_eos_token: llama.cpp's tokenizer appends EOS when special tokens are added.
    tc = json.loads((d / "tokenizer_config.json").read_text())
    tc["add_eos_token"] = True
    (d / "tokenizer_config.json").write_text(json.dumps(tc))
    kquants.convert(d, tmp_path / "eos.gguf", outtype="f32")
    model = kquants.Model.load(tmp_path / "eos.gguf")
    assert model.tokenize("Hi there") == [1] + sp.encode("Hi there") + [2]
    assert model.tokenize("Hi there", add_special=False) == sp.encode("Hi there")


def test_bad_tokenizer_model(tmp_path, sp_model):
    d = tmp_path / "hf"
    make_dir(d, sp_model, tokenizer_json=False)
    (d / "tokenizer.model").write_bytes(sp_model[: len(sp_model) // 2])
    with pytest.raises(ValueError, match=r"tokenizer\.model: not a SentencePiece model"):
        kquants.convert(d, tmp_path / "m.gguf")
    (d / "tokenizer.model").write_bytes(sp_model)
    (d / "added_tokens.json").write_text(json.dumps({"<x>": "seven"}))
    with pytest.raises(ValueError, match=r"added_tokens\.json: the value of \"<x>\" is not a token id"):
        kquants.convert(d, tmp_path / "m.gguf")
    assert not (tmp_path / "m.gguf").exists()
