"""GGUF reading and writing, checked against gguf-py (the reference implementation's Python
package): the real SmolLM2 model, round trips in both directions, writer safety."""

from __future__ import annotations

import os
from pathlib import Path

import gguf as ggufpy
import numpy as np
import pytest

import kquants
from kquants._models import default_model_path
from kquants.gguf import infer_type

GT = ggufpy.GGUFValueType
_PY_TYPE_NAMES = {
    GT.UINT8: "u8",
    GT.INT8: "i8",
    GT.UINT16: "u16",
    GT.INT16: "i16",
    GT.UINT32: "u32",
    GT.INT32: "i32",
    GT.FLOAT32: "f32",
    GT.BOOL: "bool",
    GT.STRING: "str",
    GT.UINT64: "u64",
    GT.INT64: "i64",
    GT.FLOAT64: "f64",
}


def py_type_name(field) -> str:
    """Our type name for a gguf-py ReaderField (``array[array]`` nesting is not typed deeper)."""
    ts = field.types
    if ts[0] != GT.ARRAY:
        return _PY_TYPE_NAMES[ts[0]]
    if ts[-1] == GT.ARRAY or len(ts) > 2:
        return "array[array"  # prefix: our name adds the inner type
    return f"array[{_PY_TYPE_NAMES[ts[-1]]}]"


def same_value(ours, theirs) -> bool:
    """Exact equality, including the Python type of scalars (floats compare exactly: both sides
    widen the same stored f32/f64)."""
    if isinstance(ours, np.ndarray):
        return ours.tolist() == list(theirs)
    if isinstance(ours, list):
        return len(ours) == len(theirs) and all(same_value(a, b) for a, b in zip(ours, theirs))
    return type(ours) is type(theirs) and ours == theirs


def assert_matches_gguf_py(path: Path) -> None:
    ref = ggufpy.GGUFReader(path)
    with kquants.GGUFFile(path) as f:
        ref_keys = [k for k in ref.fields if not k.startswith("GGUF.")]
        assert list(f.metadata) == ref_keys
        for k in ref_keys:
            field = ref.fields[k]
            assert f.metadata.type_of(k).startswith(py_type_name(field)), k
            if field.types[0] == GT.ARRAY and len(field.types) > 1 and field.types[1] == GT.ARRAY:
                continue  # gguf-py's contents() cannot decode nested arrays; compared in the round-trip test
            theirs = field.contents()
            assert same_value(f.metadata[k], theirs), (k, f.metadata[k], theirs)
        assert list(f.tensors) == [t.name for t in ref.tensors]
        for rt in ref.tensors:
            t = f.tensors[rt.name]
            assert t.type_name == rt.tensor_type.name
            assert t.type is kquants.QuantType(int(rt.tensor_type)) and t.type_id == int(rt.tensor_type)
            assert t.ne == tuple(int(x) for x in rt.shape)
            assert t.shape == tuple(reversed(t.ne))
            assert t.nbytes == rt.n_bytes
            assert t.n_elements == rt.n_elements
            assert t.file_offset == rt.data_offset
            theirs = np.asarray(rt.data).reshape(-1).view(np.uint8)
            if not np.array_equal(t.raw, theirs):
                i = int(np.flatnonzero(t.raw != theirs)[0])
                pytest.fail(f"tensor {rt.name}: first differing byte {i}")


def test_smollm2_matches_gguf_py():
    path = default_model_path()
    assert_matches_gguf_py(path)
    with kquants.open(path) as f:
        assert f.version == 3
        assert len(f.tensors) > 100
        toks = f.metadata["tokenizer.ggml.tokens"]
        assert isinstance(toks, list) and len(toks) == f.metadata.length_of("tokenizer.ggml.tokens")
        assert isinstance(f.metadata["tokenizer.ggml.token_type"], np.ndarray)


def test_views_are_zero_copy_read_only_and_outlive_close():
    with kquants.open(default_model_path()) as f:
        t = next(iter(f.tensors.values()))
        raw = t.raw
        typed = [x for x in f.tensors.values() if x.type_name == "F32"][0]
        arr = typed.numpy()
    assert f.closed
    with pytest.raises(ValueError, match="closed"):
        f.metadata["general.architecture"]  # not decoded before close
    assert not raw.flags.writeable and not arr.flags.writeable
    with pytest.raises(ValueError):
        raw[0] = 1
    assert arr.dtype == np.float32 and arr.shape == typed.shape
    assert raw.size == t.nbytes
    assert int(raw.sum()) >= 0  # memory still mapped after close


ALL_VALUES = [
    ("k.u8", 200, "u8"),
    ("k.i8", -100, "i8"),
    ("k.u16", 60000, "u16"),
    ("k.i16", -30000, "i16"),
    ("k.u32", 4_000_000_000, "u32"),
    ("k.i32", -2_000_000_000, "i32"),
    ("k.u64", 2**64 - 1, "u64"),
    ("k.i64", -(2**63), "i64"),
    ("k.f32", 1.5, "f32"),
    ("k.f64", -2.25e100, "f64"),
    ("k.bool", True, "bool"),
    ("k.str", "héllo ✓", "str"),
    ("k.arr_u8", [1, 2, 255], "array[u8]"),
    ("k.arr_i16", [-5, 7], "array[i16]"),
    ("k.arr_u64", [2**63, 1], "array[u64]"),
    ("k.arr_f32", [0.5, -1.0], "array[f32]"),
    ("k.arr_f64", [0.1, 1e300], "array[f64]"),
    ("k.arr_bool", [True, False, True], "array[bool]"),
    ("k.arr_str", ["a", "", "ünï"], "array[str]"),
    ("k.nested", [[1, -2, 3], [4]], "array[array[i32]]"),
]
_GT_OF = {v: k for k, v in _PY_TYPE_NAMES.items()}


def test_round_trip_we_write_gguf_py_reads(tmp_path):
    path = tmp_path / "ours.gguf"
    f32 = np.arange(24, dtype=np.float32).reshape(4, 6) / 7
    f16 = (np.arange(8, dtype=np.float16) - 3).reshape(2, 4)
    i32 = np.array([[1, -2, 3]], dtype=np.int32)
    q40 = np.random.default_rng(0).integers(0, 256, size=2 * 3 * 18, dtype=np.uint8)
    bf16 = np.arange(64, dtype=np.uint16)
    with kquants.GGUFWriter(path, alignment=64) as w:
        w.add_metadata("general.architecture", "llama")
        for k, v, t in ALL_VALUES:
            w.add_metadata(k, v, type=t)
        w.add_tensor("f32", f32)
        w.add_tensor("f16", f16)
        w.add_tensor("i32", i32)
        w.add_tensor("q4_0", (q40.tobytes(), "Q4_0", (2, 3 * 32)))
        w.add_tensor("bf16", bf16, type="BF16", shape=(8, 8))
    ref = ggufpy.GGUFReader(path)
    assert ref.alignment == 64
    assert int(ref.fields["general.alignment"].contents()) == 64
    for k, v, t in ALL_VALUES:
        field = ref.fields[k]
        if t.startswith("array[array"):
            # gguf-py's contents() does not decode nested arrays: walk its parts.
            assert field.types[:2] == [GT.ARRAY, GT.ARRAY]
            continue
        assert field.types[-1] == _GT_OF[t.removeprefix("array[").removesuffix("]")], k
        theirs = field.contents()
        if t in ("f32", "array[f32]"):
            assert np.allclose(theirs, v, rtol=0, atol=0) or theirs == pytest.approx(v)
        else:
            assert theirs == v, k
    by = {t.name: t for t in ref.tensors}
    assert np.array_equal(by["f32"].data, f32)
    assert np.array_equal(by["f16"].data, f16)
    assert np.array_equal(by["i32"].data, i32)
    assert by["q4_0"].tensor_type.name == "Q4_0" and list(by["q4_0"].shape) == [96, 2]
    assert np.array_equal(np.asarray(by["q4_0"].data).reshape(-1).view(np.uint8), q40)
    assert np.array_equal(np.asarray(by["bf16"].data).reshape(-1).view(np.uint16), bf16)
    assert all(t.data_offset % 64 == 0 for t in ref.tensors)
    # and we read back what we wrote
    with kquants.open(path) as f:
        for k, v, t in ALL_VALUES:
            assert f.metadata.type_of(k) == t, k
            got = f.metadata[k]
            if t == "array[array[i32]]":
                assert [a.tolist() for a in got] == v
            elif isinstance(got, np.ndarray):
                assert got.tolist() == pytest.approx(v) if t == "array[f32]" else got.tolist() == v
            else:
                assert got == pytest.approx(v) if t == "f32" else got == v
        assert np.array_equal(f.tensors["f32"].numpy(), f32)
        assert np.array_equal(f.tensors["f16"].numpy(), f16)
        assert np.array_equal(f.tensors["i32"].numpy(), i32)
        assert f.tensors["q4_0"].numpy().shape == (2, 3 * 18)
        assert f.tensors["bf16"].numpy().shape == (8, 8)


def test_round_trip_gguf_py_writes_we_read(tmp_path):
    path = tmp_path / "theirs.gguf"
    w = ggufpy.GGUFWriter(path, "llama")
    for k, v, t in ALL_VALUES:
        if t.startswith("array[array"):
            w.add_key_value(k, v, GT.ARRAY, sub_type=GT.ARRAY)
        elif t.startswith("array["):
            w.add_key_value(k, v, GT.ARRAY, sub_type=_GT_OF[t[6:-1]])
        else:
            w.add_key_value(k, v, _GT_OF[t])
    rng = np.random.default_rng(1)
    f32 = rng.standard_normal((3, 32)).astype(np.float32)
    f16 = rng.standard_normal((5, 4)).astype(np.float16)
    i8 = np.arange(-4, 4, dtype=np.int8)
    q8 = rng.integers(0, 256, size=(4, 2 * 34), dtype=np.uint8)
    w.add_tensor("f32", f32)
    w.add_tensor("f16", f16)
    w.add_tensor("i8", i8)
    w.add_tensor("q8_0", q8, raw_dtype=ggufpy.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert_matches_gguf_py(path)
    with kquants.open(path) as f:
        assert [a.tolist() for a in f.metadata["k.nested"]] == [[1, -2, 3], [4]]
        assert f.metadata.type_of("k.nested") == "array[array[i32]]"
        assert np.array_equal(f.tensors["f32"].numpy(), f32)
        assert np.array_equal(f.tensors["f16"].numpy(), f16)
        assert np.array_equal(f.tensors["i8"].numpy(), i8)
        assert f.tensors["q8_0"].type_name == "Q8_0" and f.tensors["q8_0"].shape == (4, 64)
        assert np.array_equal(f.tensors["q8_0"].raw, q8.reshape(-1))


def test_metadata_type_inference():
    assert infer_type(True) == "bool"
    assert infer_type(5) == "u32"
    assert infer_type(-5) == "i32"
    assert infer_type(2**32) == "u64"
    assert infer_type(-(2**40)) == "i64"
    assert infer_type(1.0) == "f32"
    assert infer_type(np.float64(1.0)) == "f64"
    assert infer_type(np.uint8(1)) == "u8"
    assert infer_type("x") == "str"
    assert infer_type(["a", "b"]) == "array[str]"
    assert infer_type([1, -1]) == "array[i32]"
    assert infer_type([1, 2**33]) == "array[u64]"
    assert infer_type([1, 2.5]) == "array[f32]"
    assert infer_type(np.zeros(3, np.int16)) == "array[i16]"
    assert infer_type([[1], ["a"]]) == "array[array]"
    with pytest.raises(ValueError):
        infer_type(2**64)
    with pytest.raises(ValueError):
        infer_type([1, "a"])


def test_writer_rejects_bad_values(tmp_path):
    with kquants.GGUFWriter(tmp_path / "x.gguf") as w:
        with pytest.raises(ValueError):
            w.add_metadata("a", 300, type="u8")
        with pytest.raises(ValueError):
            w.add_metadata("a", [1, -1], type="array[u32]")
        with pytest.raises(TypeError):
            w.add_metadata("a", 1.5, type="i32")
        with pytest.raises(ValueError):
            w.add_metadata("a", 1, type="u128")
        w.add_metadata("a", 1)
        with pytest.raises(ValueError):
            w.add_metadata("a", 2)
        with pytest.raises(ValueError):
            w.add_tensor("t", (b"\0" * 17, "Q4_0", (1, 32)))  # needs 18 bytes
        with pytest.raises(ValueError, match="block size"):
            w.add_tensor("q", (b"\0" * 18, "Q4_0", (1, 16)))
    with kquants.open(tmp_path / "x.gguf") as f:
        assert dict(f.metadata) == {"a": 1}


def test_exception_leaves_no_file_and_no_temp(tmp_path):
    target = tmp_path / "m.gguf"
    with pytest.raises(RuntimeError):
        with kquants.GGUFWriter(target) as w:
            w.add_metadata("a", 1)
            w.add_tensor("t", np.ones(64, np.float32))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    # missing streamed data is an error at close, and nothing is left either
    w = kquants.GGUFWriter(target)
    w.add_tensor_info("t", (4,), "F32")
    with pytest.raises(ValueError, match="missing data"):
        w.close()
    assert list(tmp_path.iterdir()) == []


def test_streaming_chunks_and_held_tensors_in_order(tmp_path):
    target = tmp_path / "s.gguf"
    big = np.arange(4 * 1024, dtype=np.float32).reshape(4, 1024)
    with kquants.GGUFWriter(target) as w:
        w.add_tensor("held0", np.ones(3, np.int32))
        w.add_tensor_info("streamed", big.shape, "F32")
        w.add_tensor("held1", np.full(5, 7, np.int16))
        w.add_tensor_info("streamed2", (32,), kquants._kquants._type_table()[0][0])
        for row in big:  # one row at a time
            w.write_tensor_data(row)
        w.write_tensor_data(np.zeros(32, np.float32).tobytes())
        with pytest.raises(ValueError):
            w.add_metadata("late", 1)
    with kquants.open(target) as f:
        assert list(f.tensors) == ["held0", "streamed", "held1", "streamed2"]
        assert np.array_equal(f.tensors["streamed"].numpy(), big)
        assert f.tensors["held1"].numpy().tolist() == [7] * 5
        assert f.tensors["held0"].numpy().tolist() == [1] * 3
    assert_matches_gguf_py(target)


def test_overwriting_an_open_input_keeps_its_views(tmp_path):
    target = tmp_path / "o.gguf"
    with kquants.GGUFWriter(target) as w:
        w.add_tensor("t", np.full(8, 1.0, np.float32))
    f = kquants.open(target)
    old = f.tensors["t"].numpy()
    with kquants.GGUFWriter(target) as w:  # target == the open input
        w.add_tensor("t", np.full(8, 2.0, np.float32))
    assert old.tolist() == [1.0] * 8  # the open map still sees the old file
    with kquants.open(target) as g:
        assert g.tensors["t"].numpy().tolist() == [2.0] * 8
    f.close()


def test_written_file_permissions_follow_umask(tmp_path):
    if os.name != "posix":
        pytest.skip("POSIX permissions")
    target = tmp_path / "p.gguf"
    with kquants.GGUFWriter(target) as w:
        w.add_metadata("a", 1)
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_quant_type_accepted_as_name_id_or_enum(tmp_path):
    class FakeEnum:
        name = "Q8_0"

    target = tmp_path / "q.gguf"
    with kquants.GGUFWriter(target) as w:
        w.add_tensor("a", (bytes(34), "q8_0", (1, 32)))
        w.add_tensor("b", (bytes(34), 8, (1, 32)))
        w.add_tensor("c", (bytes(34), FakeEnum(), (1, 32)))

        class QT:  # duck-typed quantized tensor
            type = "Q4_0"
            shape = (2, 32)
            data = np.zeros(36, np.uint8)

        w.add_tensor("d", QT())
    with kquants.open(target) as f:
        assert [t.type_name for t in f.tensors.values()] == ["Q8_0", "Q8_0", "Q8_0", "Q4_0"]
        assert f.tensors["d"].shape == (2, 32)


def test_cli_inspect_table_and_json(tmp_path, capsys):
    import json

    from kquants.cli import main

    path = default_model_path()
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "tokenizer.ggml.tokens" in out and "(49152 items)]" in out
    assert "token_embd.weight" in out and "(49152, 576)" in out
    assert main(["inspect", "--json", str(path)]) == 0
    js = json.loads(capsys.readouterr().out)
    ref = ggufpy.GGUFReader(path)
    assert [t["name"] for t in js["tensors"]] == [t.name for t in ref.tensors]
    assert [t["file_offset"] for t in js["tensors"]] == [t.data_offset for t in ref.tensors]
    assert js["metadata"]["tokenizer.ggml.tokens"]["length"] == 49152
    assert js["metadata"]["tokenizer.ggml.tokens"]["truncated"] is True
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00")
    assert main(["inspect", str(bad)]) == 1
    assert "at byte offset 4" in capsys.readouterr().err


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_scalar = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(width=32, allow_nan=False),
    st.text(max_size=12),
)
_meta_value = st.one_of(
    _scalar,
    st.lists(st.text(max_size=6), min_size=1, max_size=5),
    st.lists(st.integers(min_value=-(2**31), max_value=2**31 - 1), min_size=1, max_size=5),
    st.lists(st.floats(width=32, allow_nan=False), min_size=1, max_size=5),
)


@settings(max_examples=40, deadline=None)
@given(values=st.lists(_meta_value, max_size=6))
def test_inferred_metadata_round_trips_through_gguf_py(tmp_path_factory, values):
    path = tmp_path_factory.mktemp("h") / "h.gguf"
    with kquants.GGUFWriter(path) as w:
        for i, v in enumerate(values):
            w.add_metadata(f"k{i}", v)
    ref = ggufpy.GGUFReader(path)
    with kquants.open(path) as f:
        for i, v in enumerate(values):
            ours = f.metadata[f"k{i}"]
            theirs = ref.fields[f"k{i}"].contents()
            assert same_value(ours, theirs), (v, ours, theirs)
            plain = ours.tolist() if isinstance(ours, np.ndarray) else ours
            assert plain == v  # f32 inputs are exactly representable: no rounding expected


def test_killed_writer_leaves_no_file_under_the_target_name(tmp_path):
    import signal
    import subprocess
    import sys

    if not hasattr(signal, "SIGKILL"):
        pytest.skip("needs SIGKILL")
    target = tmp_path / "killed.gguf"
    code = (
        "import os, signal, numpy as np, kquants\n"
        f"w = kquants.GGUFWriter({str(target)!r})\n"
        "w.add_metadata('a', 1)\n"
        "w.add_tensor_info('t', (1024, 1024), 'F32')\n"
        "w.write_tensor_data(np.zeros((512, 1024), np.float32))\n"  # half the data is on disk
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], timeout=120)
    assert r.returncode == -signal.SIGKILL
    assert not target.exists()
    # At most a hidden temporary file remains (none where the OS supports anonymous files).
    assert all(p.name.startswith(".killed.gguf.") for p in tmp_path.iterdir())
