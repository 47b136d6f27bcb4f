"""A corpus of malformed GGUF files, generated here: every one must raise kquants.GGUFError (a
ValueError) whose message names the field and the byte offset. Also: random truncations and
byte flips of a valid file never crash the interpreter."""

from __future__ import annotations

import random
import struct

import pytest

import kquants


class Raw:
    """Little-endian GGUF byte builder."""

    def __init__(self, b: bytes = b"") -> None:
        self.b = bytearray(b)

    def u8(self, v: int) -> Raw:
        self.b += struct.pack("<B", v)
        return self

    def u32(self, v: int) -> Raw:
        self.b += struct.pack("<I", v)
        return self

    def u64(self, v: int) -> Raw:
        self.b += struct.pack("<Q", v)
        return self

    def str(self, s: str) -> Raw:
        e = s.encode()
        self.b += struct.pack("<Q", len(e)) + e
        return self

    def raw(self, b: bytes) -> Raw:
        self.b += b
        return self

    def tensor(self, name: str, dims: list[int], ty: int, off: int) -> Raw:
        self.str(name).u32(len(dims))
        for d in dims:
            self.u64(d)
        return self.u32(ty).u64(off)

    def pad(self, a: int = 32) -> Raw:
        while len(self.b) % a:
            self.b.append(0)
        return self

    @staticmethod
    def header(n_tensors: int, n_kv: int) -> Raw:
        return Raw(b"GGUF").u32(3).u64(n_tensors).u64(n_kv)


def tensor_file(dims, ty=0, off=0, data=64):
    return Raw.header(1, 0).tensor("t", dims, ty, off).pad().raw(bytes(data)).b


def deep_array():
    r = Raw.header(0, 1).str("k").u32(9)
    for _ in range(20):
        r.u32(9).u64(1)
    return r.u32(0).u64(0).b


def bad_utf8():
    b = Raw.header(0, 1).str("k").u32(8).str("ab").b
    b[46] = 0xFF
    return bytes(b)


# (id, bytes, substring naming the field, byte offset)
CORPUS = [
    ("empty", b"", "magic", 0),
    ("short_magic", b"GGU", "magic", 0),
    ("bad_magic", Raw(b"GGML").u32(3).b, "bad magic", 0),
    ("truncated_version", b"GGUF\x03", "version", 4),
    ("version_1", Raw(b"GGUF").u32(1).b, "version 1", 4),
    ("version_99", Raw(b"GGUF").u32(99).b, "unsupported version 99", 4),
    ("big_endian", Raw(b"GGUF").raw(struct.pack(">I", 3)).raw(struct.pack(">QQ", 0, 0)).b, "big-endian", 4),
    ("truncated_counts", Raw(b"GGUF").u32(3).u64(0).b, "key/value count", 16),
    ("kv_count_too_big", Raw.header(0, 2**64 - 1).b, "metadata key/value count", 16),
    ("tensor_count_too_big", Raw.header(2**40, 0).b, "tensor count", 8),
    ("key_len_beyond_eof", Raw.header(0, 1).u64(2**50).u32(0).u8(0).b, "metadata key 0 length", 24),
    ("duplicate_key", Raw.header(0, 2).str("k").u32(0).u8(1).str("k").u32(0).u8(2).b, "duplicate metadata key", 38),
    ("unknown_value_type", Raw.header(0, 1).str("k").u32(13).u8(0).b, "unknown value type id 13", 33),
    ("truncated_value", Raw.header(0, 1).str("k").u32(10).u32(0).b, 'metadata "k"', 37),
    ("bad_bool", Raw.header(0, 1).str("k").u32(7).u8(2).b, "bool with byte value 2", 37),
    ("string_beyond_eof", Raw.header(0, 1).str("k").u32(8).u64(100).raw(b"abc").b, 'metadata "k" length', 37),
    ("bad_utf8", bad_utf8(), "not valid UTF-8", 46),
    ("unknown_array_elem_type", Raw.header(0, 1).str("k").u32(9).u32(99).u64(0).b, "element type id 99", 37),
    ("array_len_beyond_eof", Raw.header(0, 1).str("k").u32(9).u32(4).u64(2**61).u32(0).b, "array length", 41),
    ("string_array_elem_beyond_eof", Raw.header(0, 1).str("k").u32(9).u32(8).u64(2).str("a").u64(5).b, 'metadata "k"[1]', 58),
    ("arrays_nested_too_deep", deep_array(), "deeper than 8", 133),
    ("alignment_wrong_type", Raw.header(0, 1).str("general.alignment").u32(10).u64(32).b, "general.alignment has type u64", 49),
    ("alignment_zero", Raw.header(0, 1).str("general.alignment").u32(4).u32(0).b, "general.alignment is 0", 53),
    ("alignment_not_pow2", Raw.header(0, 1).str("general.alignment").u32(4).u32(48).b, "general.alignment is 48", 53),
    ("n_dims_0", tensor_file([]), "n_dims", 33),
    ("n_dims_5", tensor_file([1, 1, 1, 1, 1]), "n_dims", 33),
    ("zero_dim", tensor_file([4, 0]), "ne[1]", 45),
    ("overflowing_dims", tensor_file([2**32, 2**32]), "ne[1]", 45),
    ("row_not_block_multiple", tensor_file([16], ty=2), "row length ne[0]", 37),
    ("tensor_larger_than_file", tensor_file([2**40, 2]), "data size", 33),
    ("offset_unaligned", tensor_file([4], off=8), "not a multiple of the alignment", 49),
    ("offset_beyond_eof", tensor_file([4], off=2**40), "beyond the end of the file", 49),
    ("data_beyond_eof", tensor_file([32]), "extends beyond the end", 49),
    ("data_section_beyond_eof", Raw.header(1, 0).tensor("t", [4], 0, 0).b, "data section", 57),
    (
        "duplicate_tensor",
        Raw.header(2, 0).tensor("a", [8], 0, 0).tensor("a", [8], 0, 32).pad().raw(bytes(96)).b,
        "duplicate tensor name",
        57,
    ),
    (
        "overlapping_tensors",
        Raw.header(2, 0).tensor("a", [8], 0, 0).tensor("b", [8], 0, 0).pad().raw(bytes(96)).b,
        "overlaps",
        82,
    ),
    ("truncated_tensor_info", Raw.header(1, 0).tensor("t" * 40, [4], 0, 0).b[:92], "offset of tensor 0", 88),
] + [(f"removed_type_{t}", tensor_file([32], ty=t), f"removed ggml type id {t}", 45) for t in (4, 5, 31, 32, 33, 36, 37, 38, 1000)]


def test_corpus_base_is_valid(tmp_path):
    p = tmp_path / "ok.gguf"
    p.write_bytes(tensor_file([4]))
    with kquants.open(p) as f:
        assert f.tensors["t"].nbytes == 16


@pytest.mark.parametrize("name,data,field,offset", CORPUS, ids=[c[0] for c in CORPUS])
def test_malformed_file_raises_gguf_error(tmp_path, name, data, field, offset):
    p = tmp_path / f"{name}.gguf"
    p.write_bytes(bytes(data))
    with pytest.raises(kquants.GGUFError) as ei:
        kquants.GGUFFile(p)
    msg = str(ei.value)
    assert isinstance(ei.value, ValueError)
    assert field in msg, msg
    assert f"at byte offset {offset})" in msg, msg


def test_random_corruptions_never_crash(tmp_path):
    """Mutations of a small valid file: each either opens (then every tensor view is readable)
    or raises GGUFError; never anything else."""
    from kquants import GGUFWriter

    import numpy as np

    src = tmp_path / "seed.gguf"
    with GGUFWriter(src) as w:
        w.add_metadata("general.architecture", "llama")
        w.add_metadata("tokens", ["a", "bc", "déf"])
        w.add_metadata("scores", [0.5, 1.5])
        w.add_tensor("w", np.ones((2, 32), np.float32))
        w.add_tensor("q", (bytes(36), "Q4_0", (2, 32)))
    seed = src.read_bytes()
    rng = random.Random(1234)
    p = tmp_path / "m.gguf"
    ok = 0
    for i in range(400):
        b = bytearray(seed)
        kind = i % 3
        if kind == 0:
            b = b[: rng.randrange(len(b))]
        elif kind == 1:
            for _ in range(rng.randint(1, 4)):
                b[rng.randrange(len(b))] = rng.randrange(256)
        else:
            pos = rng.randrange(len(b))
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        p.write_bytes(bytes(b))
        try:
            with kquants.open(p) as f:
                for k in f.metadata:
                    f.metadata[k]
                for t in f.tensors.values():
                    assert t.raw.size == t.nbytes
                    t.numpy()
                ok += 1
        except kquants.GGUFError as e:
            assert "at byte offset" in str(e)
    assert 0 < ok < 400
