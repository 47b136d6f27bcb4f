//! Mutation fuzzer for the GGUF parser (stable Rust; `fuzz/` has a cargo-fuzz target for nightly).
//!
//! Seeds are small valid files written by our writer (every value type, nested arrays, several
//! tensor types) plus the real model's header. Each iteration flips, overwrites with interesting
//! values, truncates, inserts or deletes bytes, then parses. Parsing must return `Ok` or
//! `Err(Error::Gguf)` and never panic; on `Ok`, every accessor must work on the result. Runs about
//! 3 seconds by default; set `KQUANTS_FUZZ_SECS` for longer runs (and `KQUANTS_FUZZ_SEED`).

mod gguf_common;

use std::time::{Duration, Instant};

use kquants::gguf::{Array, GgufFile, GgufWriter, Value, ValueType};
use kquants::{Error, QuantType};
use proptest::prelude::*;

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn seed_files(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for (i, align) in [32usize, 1, 64].into_iter().enumerate() {
        let path = dir.join(format!("seed{i}.gguf"));
        let mut w = GgufWriter::with_alignment(&path, align).unwrap();
        w.add_metadata("general.architecture", Value::from("llama")).unwrap();
        w.add_metadata("u", Value::U64(7)).unwrap();
        w.add_metadata("b", Value::Bool(true)).unwrap();
        w.add_metadata("f", Value::F32(0.5)).unwrap();
        w.add_metadata("toks", Value::Array(Array::from_strs(&["a", "bc", "d\u{e9}f"]))).unwrap();
        w.add_metadata("scores", Value::Array(Array::from_slice(&[1.0f32, -2.0]))).unwrap();
        let nested = Array::from_values(
            ValueType::Array,
            &[Value::Array(Array::from_slice(&[1i16])), Value::Array(Array::from_strs(&["x"]))],
        )
        .unwrap();
        w.add_metadata("nested", Value::Array(nested)).unwrap();
        w.add_tensor_info("a", &[8, 2], QuantType::F32).unwrap();
        w.add_tensor_info("q", &[32], QuantType::Q4_0).unwrap();
        w.add_tensor_info("k", &[256], QuantType::Q4_K).unwrap();
        w.write_tensor_data(&[1; 64]).unwrap();
        w.write_tensor_data(&[2; 18]).unwrap();
        w.write_tensor_data(&[3; 144]).unwrap();
        w.finish().unwrap();
        seeds.push(std::fs::read(&path).unwrap());
    }
    // The real model's first 64 KiB (truncated inside the token list): real metadata layout.
    if let Ok(b) = std::fs::read(gguf_common::model_path()) {
        seeds.push(b[..b.len().min(64 << 10)].to_vec());
    }
    seeds
}

fn exercise(f: &GgufFile) {
    for (_, v) in f.metadata().iter() {
        if let Value::Array(a) = v {
            let n = a.iter().count();
            assert_eq!(n, a.len());
            let _ = a.to_strs();
            let _ = a.get(a.len().saturating_sub(1));
        }
    }
    for t in f.tensors() {
        assert_eq!(f.tensor_data(t).len(), t.nbytes);
        assert!(f.tensor_bytes_arc(t).is_some());
    }
}

const INTERESTING: [u64; 10] = [0, 1, 2, 3, 9, 0xff, 0xffff_ffff, 1 << 32, u64::MAX, 1 << 63];

fn mutate(rng: &mut Rng, b: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let len = b.len();
        match rng.below(6) {
            0 if len > 0 => {
                let i = rng.below(len);
                b[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                b[i] = rng.next() as u8;
            }
            2 if len >= 8 => {
                // overwrite a little-endian word with an interesting value (counts, lengths, ids)
                let i = rng.below(len - 7);
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let w = [4usize, 8][rng.below(2)];
                b[i..i + w].copy_from_slice(&v.to_le_bytes()[..w]);
            }
            3 => b.truncate(rng.below(len + 1)),
            4 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let ins: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                b.splice(i..i, ins);
            }
            _ if len > 0 => {
                let i = rng.below(len);
                let n = (1 + rng.below(16)).min(len - i);
                b.drain(i..i + n);
            }
            _ => {}
        }
    }
}

#[test]
fn mutated_files_never_panic() {
    let secs: f64 = std::env::var("KQUANTS_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let seed: u64 = std::env::var("KQUANTS_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_1234);
    let dir = tempfile::tempdir().unwrap();
    let seeds = seed_files(dir.path());
    // The writer-made seeds are valid (the model prefix is truncated on purpose).
    for s in &seeds[..3] {
        exercise(&GgufFile::from_vec(s.clone()).unwrap_or_else(|e| panic!("seed does not parse: {e}")));
    }
    let mut rng = Rng(seed | 1);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let (mut n, mut ok) = (0u64, 0u64);
    while Instant::now() < deadline {
        for _ in 0..64 {
            let mut b = seeds[rng.below(seeds.len())].clone();
            mutate(&mut rng, &mut b);
            let input = b.clone();
            let r = std::panic::catch_unwind(|| match GgufFile::from_vec(b) {
                Ok(f) => {
                    exercise(&f);
                    true
                }
                Err(Error::Gguf { .. }) => false,
                Err(e) => panic!("non-GGUF error {e}"),
            });
            match r {
                Ok(parsed) => ok += u64::from(parsed),
                Err(_) => {
                    let p = std::env::temp_dir().join(format!("kquants-fuzz-crash-{n}.gguf"));
                    std::fs::write(&p, &input).unwrap();
                    panic!("parser panicked on input saved to {}", p.display());
                }
            }
            n += 1;
        }
    }
    eprintln!("gguf fuzz: {n} inputs in {secs}s, {ok} parsed, seed {seed}");
    assert!(n > 100, "fuzzer ran only {n} inputs");
}

fn value_strategy() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<u8>().prop_map(Value::U8),
        any::<i8>().prop_map(Value::I8),
        any::<u16>().prop_map(Value::U16),
        any::<i16>().prop_map(Value::I16),
        any::<u32>().prop_map(Value::U32),
        any::<i32>().prop_map(Value::I32),
        any::<u64>().prop_map(Value::U64),
        any::<i64>().prop_map(Value::I64),
        any::<f32>().prop_filter("NaN != NaN", |x| !x.is_nan()).prop_map(Value::F32),
        any::<f64>().prop_filter("NaN != NaN", |x| !x.is_nan()).prop_map(Value::F64),
        any::<bool>().prop_map(Value::Bool),
        ".{0,12}".prop_map(Value::String),
        prop::collection::vec(".{0,6}", 0..6).prop_map(|v| Value::Array(Array::from_strs(&v))),
        prop::collection::vec(any::<i32>(), 0..6).prop_map(|v| Value::Array(Array::from_slice(&v))),
        prop::collection::vec(any::<bool>(), 0..6).prop_map(|v| Value::Array(Array::from_slice(&v))),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop::collection::vec(inner, 0..4).prop_filter_map("nested arrays hold arrays", |vs| {
            let arrays: Vec<Value> = vs.into_iter().filter(|v| matches!(v, Value::Array(_))).collect();
            Array::from_values(ValueType::Array, &arrays).ok().map(Value::Array)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn write_read_round_trip(
        values in prop::collection::vec(value_strategy(), 0..8),
        shapes in prop::collection::vec((1usize..4, 1usize..3, 0usize..3), 0..5),
        align_pow in 0u32..8,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.gguf");
        let alignment = 1usize << align_pow;
        let mut w = GgufWriter::with_alignment(&path, alignment).unwrap();
        for (i, v) in values.iter().enumerate() {
            w.add_metadata(&format!("key.{i}"), v.clone()).unwrap();
        }
        let types = [QuantType::F32, QuantType::Q4_0, QuantType::Q6_K];
        let mut datas = Vec::new();
        for (i, &(blocks, rows, ti)) in shapes.iter().enumerate() {
            let ty = types[ti];
            let info = w.add_tensor_info(&format!("t{i}"), &[blocks * ty.block_size(), rows], ty).unwrap().clone();
            datas.push((0..info.nbytes).map(|j| (j * 31 + i) as u8).collect::<Vec<u8>>());
        }
        for d in &datas {
            w.write_tensor_data(d).unwrap();
        }
        w.finish().unwrap();
        let f = GgufFile::open(&path).unwrap();
        prop_assert_eq!(f.alignment(), alignment);
        for (i, v) in values.iter().enumerate() {
            prop_assert_eq!(f.metadata().get(&format!("key.{i}")), Some(v));
        }
        prop_assert_eq!(f.tensors().len(), datas.len());
        for (t, d) in f.tensors().iter().zip(&datas) {
            prop_assert_eq!(f.tensor_data(t), &d[..]);
            prop_assert_eq!(t.offset % alignment, 0);
        }
    }
}
