//! GGUF reader and writer: the real model, round trips of every value type, and one test per
//! class of malformed input (each must be `Error::Gguf` naming the field and offset).

mod gguf_common;

use gguf_common::{model_path, Raw};
use kquants::gguf::{Array, GgufFile, GgufWriter, Value, ValueType};
use kquants::{Error, QuantType};

#[test]
fn opens_smollm2() {
    let f = GgufFile::open(model_path()).unwrap();
    assert_eq!(f.version(), 3);
    let md = f.metadata();
    assert_eq!(md.get_str("general.architecture"), Some("llama"));
    let tokens = md.get_str_array("tokenizer.ggml.tokens").unwrap();
    assert!(tokens.len() > 40_000, "{}", tokens.len());
    assert!(md.get_u32("llama.block_count").unwrap() > 0);
    assert!(!f.tensors().is_empty());
    let total: usize = f.tensors().iter().map(|t| t.nbytes).sum();
    assert!(total <= f.bytes().len() - f.data_offset());
    for t in f.tensors() {
        assert_eq!(f.tensor_data(t).len(), t.nbytes);
        assert_eq!(f.tensor(&t.name), Some(t));
        assert_eq!(t.offset % f.alignment(), 0);
    }
    // Views outlive the file.
    let t0 = f.tensors()[0].clone();
    let view = f.tensor_bytes_arc(&t0).unwrap();
    let copy = f.tensor_data(&t0).to_vec();
    drop(f);
    assert_eq!(&*view, &copy[..]);
}

fn all_values() -> Vec<(&'static str, Value)> {
    let nested = Array::from_values(
        ValueType::Array,
        &[Value::Array(Array::from_slice(&[1i32, -2, 3])), Value::Array(Array::from_strs(&["x", "yz"]))],
    )
    .unwrap();
    vec![
        ("u8", Value::U8(200)),
        ("i8", Value::I8(-100)),
        ("u16", Value::U16(60000)),
        ("i16", Value::I16(-30000)),
        ("u32", Value::U32(4_000_000_000)),
        ("i32", Value::I32(-2_000_000_000)),
        ("u64", Value::U64(u64::MAX)),
        ("i64", Value::I64(i64::MIN)),
        ("f32", Value::F32(1.5e-3)),
        ("f64", Value::F64(-2.25e100)),
        ("bool", Value::Bool(true)),
        ("str", Value::from("héllo ✓")),
        ("empty_str", Value::from("")),
        ("arr_u8", Value::Array(Array::from_slice(&[1u8, 2, 255]))),
        ("arr_i64", Value::Array(Array::from_slice(&[i64::MAX, -1]))),
        ("arr_f32", Value::Array(Array::from_slice(&[0.5f32, -1.0]))),
        ("arr_bool", Value::Array(Array::from_slice(&[true, false, true]))),
        ("arr_str", Value::Array(Array::from_strs(&["a", "", "ünï"]))),
        ("arr_empty", Value::Array(Array::from_slice::<u32>(&[]))),
        ("arr_nested", Value::Array(nested)),
    ]
}

#[test]
fn writer_round_trip_every_value_type_and_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rt.gguf");
    let mut w = GgufWriter::with_alignment(&path, 64).unwrap();
    for (k, v) in all_values() {
        w.add_metadata(k, v).unwrap();
    }
    let f32s: Vec<f32> = (0..24).map(|i| i as f32 * 0.25).collect();
    let q: Vec<u8> = (0..2 * 18).map(|i| i as u8).collect();
    w.add_tensor_info("a", &[6, 4], QuantType::F32).unwrap();
    w.add_tensor_info("q", &[32, 2], QuantType::Q4_0).unwrap();
    w.add_tensor_info("v", &[3], QuantType::I8).unwrap();
    let fb: &[u8] = bytemuck::cast_slice(&f32s);
    w.write_tensor_data(&fb[..40]).unwrap(); // chunked
    w.write_tensor_data(&fb[40..]).unwrap();
    w.write_tensor_data(&q).unwrap();
    w.write_tensor_data(&[1, 2, 3]).unwrap();
    w.finish().unwrap();

    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.alignment(), 64);
    assert_eq!(f.metadata().get("general.alignment"), Some(&Value::U32(64)));
    for (k, v) in all_values() {
        assert_eq!(f.metadata().get(k), Some(&v), "{k}");
    }
    let nested: Vec<Value> = f.metadata().get_array("arr_nested").unwrap().iter().collect();
    assert_eq!(nested[0].as_array().unwrap().to_vec::<i32>(), Some(vec![1, -2, 3]));
    assert_eq!(nested[1].as_array().unwrap().to_strs(), Some(vec!["x", "yz"]));
    assert_eq!(f.metadata().get_str_array("arr_str"), Some(vec!["a", "", "ünï"]));
    let a = f.tensor("a").unwrap();
    assert_eq!((a.dims.clone(), a.ty, a.nbytes, a.shape()), (vec![6, 4], QuantType::F32, 96, vec![4, 6]));
    assert_eq!(f.tensor_data(a), fb);
    assert_eq!(f.tensor_data(f.tensor("q").unwrap()), &q[..]);
    assert_eq!(f.tensor_data(f.tensor("v").unwrap()), &[1, 2, 3]);
    assert!(f.tensors().iter().all(|t| t.offset % 64 == 0));
    // No temporary file is left next to the target.
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec![std::ffi::OsString::from("rt.gguf")]);
}

#[test]
fn dropped_or_incomplete_writer_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.gguf");
    {
        let mut w = GgufWriter::create(&path).unwrap();
        w.add_tensor_info("t", &[4], QuantType::F32).unwrap();
        w.write_tensor_data(&[0; 8]).unwrap();
        // dropped mid-tensor
    }
    let mut w = GgufWriter::create(&path).unwrap();
    w.add_tensor_info("t", &[4], QuantType::F32).unwrap();
    assert!(w.write_tensor_data(&[0; 20]).is_err(), "chunk larger than the tensor");
    assert!(matches!(w.finish(), Err(Error::Value(m)) if m.contains("missing data")));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn writer_rejects_bad_declarations() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = GgufWriter::create(dir.path().join("y.gguf")).unwrap();
    w.add_metadata("k", Value::U8(1)).unwrap();
    assert!(w.add_metadata("k", Value::U8(2)).is_err());
    assert!(w.add_metadata("general.alignment", Value::U32(3)).is_err());
    assert!(w.add_tensor_info("t", &[], QuantType::F32).is_err());
    assert!(w.add_tensor_info("t", &[1, 1, 1, 1, 1], QuantType::F32).is_err());
    assert!(w.add_tensor_info("t", &[0], QuantType::F32).is_err());
    assert!(w.add_tensor_info("t", &[33], QuantType::Q4_0).is_err());
    assert!(w.add_tensor_info("t", &[usize::MAX, 2], QuantType::F32).is_err());
    w.add_tensor_info("t", &[32], QuantType::Q4_0).unwrap();
    assert!(w.add_tensor_info("t", &[32], QuantType::Q4_0).is_err());
    w.write_tensor_data(&[0; 18]).unwrap();
    assert!(w.add_tensor_info("u", &[32], QuantType::Q4_0).is_err(), "declared after data started");
    assert!(w.write_tensor_data(&[0]).is_err(), "more data than declared");
}

/// Expect `Error::Gguf` at `offset` with a message containing `needle`.
#[track_caller]
fn bad(bytes: Vec<u8>, offset: u64, needle: &str) {
    match GgufFile::from_vec(bytes) {
        Err(Error::Gguf { offset: o, what }) => {
            assert!(what.contains(needle), "message {what:?} lacks {needle:?}");
            assert_eq!(o, offset, "offset for {what:?}");
        }
        other => panic!("expected a GGUF error containing {needle:?}, got {other:?}"),
    }
}

/// A valid file with one key and one F32 tensor of 4 values.
fn valid() -> Raw {
    Raw::header(1, 1).str("k").u32(4).u32(7).tensor("t", &[4], 0, 0).pad(32).bytes(&[0; 16])
}

#[test]
fn valid_base_parses() {
    let f = GgufFile::from_vec(valid().0).unwrap();
    assert_eq!(f.tensors()[0].nbytes, 16);
    assert_eq!(f.metadata().get_u32("k"), Some(7));
}

#[test]
fn malformed_header() {
    bad(b"GGU".to_vec(), 0, "magic needs 4 bytes");
    bad(b"GGUFXX".to_vec(), 4, "version needs 4 bytes");
    bad(Raw::default().bytes(b"GGML").u32(3).0, 0, "bad magic");
    bad(Raw::default().bytes(b"GGUF").u32(1).0, 4, "version 1");
    bad(Raw::default().bytes(b"GGUF").u32(4).0, 4, "unsupported version 4");
    bad(Raw::default().bytes(b"GGUF").u32(3u32.swap_bytes()).u64(0).u64(0).0, 4, "big-endian");
    bad(Raw::default().bytes(b"GGUF").u32(3).u64(0).0, 16, "metadata key/value count needs 8 bytes");
    bad(Raw::header(0, u64::MAX).0, 16, "metadata key/value count is 18446744073709551615, which cannot fit");
    bad(Raw::header(1 << 40, 0).0, 8, "tensor count is 1099511627776, which cannot fit");
}

#[test]
fn malformed_metadata() {
    // key length beyond EOF
    bad(Raw::header(0, 1).u64(1 << 50).u32(0).u8(0).0, 24, "metadata key 0 length is 1125899906842624");
    // duplicate key
    bad(Raw::header(0, 2).str("k").u32(0).u8(1).str("k").u32(0).u8(2).0, 38, "duplicate metadata key \"k\"");
    // unknown value type
    bad(Raw::header(0, 1).str("k").u32(13).u8(0).0, 33, "unknown value type id 13");
    // truncated value
    bad(Raw::header(0, 1).str("k").u32(10).u32(0).0, 37, "metadata \"k\" needs 8 bytes");
    // bad bool
    bad(Raw::header(0, 1).str("k").u32(7).u8(2).0, 37, "bool with byte value 2");
    // string length beyond EOF
    bad(Raw::header(0, 1).str("k").u32(8).u64(100).bytes(b"abc").0, 37, "metadata \"k\" length is 100");
    // invalid UTF-8
    let mut b = Raw::header(0, 1).str("k").u32(8).str("ab").0;
    b[46] = 0xff;
    bad(b, 46, "metadata \"k\" is not valid UTF-8");
    // array: unknown element type, count beyond EOF, string element beyond EOF, nested too deep
    bad(Raw::header(0, 1).str("k").u32(9).u32(99).u64(0).0, 37, "unknown array element type id 99");
    bad(Raw::header(0, 1).str("k").u32(9).u32(4).u64(1 << 61).u32(0).0, 41, "array length is 2305843009213693952");
    bad(Raw::header(0, 1).str("k").u32(9).u32(8).u64(2).str("a").u64(5).0, 58, "metadata \"k\"[1] length is 5, which cannot fit");
    let mut deep = Raw::header(0, 1).str("k").u32(9);
    for _ in 0..20 {
        deep = deep.u32(9).u64(1);
    }
    bad(deep.u32(0).u64(0).0, 133, "deeper than 8");
    // alignment: wrong type, zero, not a power of two
    bad(Raw::header(0, 1).str("general.alignment").u32(10).u64(32).0, 49, "general.alignment has type u64");
    bad(Raw::header(0, 1).str("general.alignment").u32(4).u32(0).0, 53, "general.alignment is 0");
    bad(Raw::header(0, 1).str("general.alignment").u32(4).u32(48).0, 53, "general.alignment is 48");
}

#[test]
fn malformed_tensor_infos() {
    let t = |dims: &[u64], ty: u32, off: u64| Raw::header(1, 0).tensor("t", dims, ty, off).pad(32).bytes(&[0; 64]).0;
    bad(t(&[], 0, 0), 33, "n_dims of tensor 0 (\"t\") is 0");
    bad(t(&[1, 1, 1, 1, 1], 0, 0), 33, "n_dims of tensor 0 (\"t\") is 5");
    bad(t(&[4, 0], 0, 0), 45, "ne[1] of tensor 0 (\"t\") is 0");
    bad(t(&[1 << 32, 1 << 32], 0, 0), 45, "ne[1] of tensor 0 (\"t\") = 4294967296 makes the element count overflow");
    for removed in [4, 5, 31, 32, 33, 36, 37, 38, 43, 1000] {
        bad(t(&[32], removed, 0), 45, &format!("unknown or removed ggml type id {removed}"));
    }
    bad(t(&[16], QuantType::Q4_0.id(), 0), 37, "row length ne[0] of tensor 0 (\"t\") = 16 is not a multiple of the Q4_0 block size 32");
    bad(t(&[1 << 40, 2], 0, 0), 33, "larger than the whole file");
    bad(t(&[4], 0, 8), 49, "offset of tensor 0 (\"t\") = 8 is not a multiple of the alignment 32");
    bad(t(&[4], 0, 1 << 40), 49, "beyond the end of the file");
    bad(t(&[32], 0, 0), 49, "data of tensor \"t\" (128 bytes at data offset 0) extends beyond the end");
    bad(Raw::header(1, 0).tensor("t", &[4], 0, 0).0, 57, "data section would start at 64");
    // truncated inside the tensor info
    let full = t(&[4], 0, 0);
    for cut in 24..57 {
        assert!(matches!(GgufFile::from_vec(full[..cut].to_vec()), Err(Error::Gguf { .. })), "cut {cut}");
    }
    // duplicate names and overlapping data
    let two = |n2: &str, off2: u64| {
        Raw::header(2, 0).tensor("a", &[8], 0, 0).tensor(n2, &[8], 0, off2).pad(32).bytes(&[0; 96]).0
    };
    bad(two("a", 32), 57, "duplicate tensor name \"a\"");
    bad(two("b", 0), 82, "tensor \"b\" (data offset 0) overlaps tensor \"a\"");
    assert!(GgufFile::from_vec(two("b", 32)).is_ok());
}

#[test]
fn v2_is_accepted() {
    let mut v = valid().0;
    v[4] = 2;
    assert_eq!(GgufFile::from_vec(v).unwrap().version(), 2);
}
