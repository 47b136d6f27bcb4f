//! The codec builds of every ISA level this machine runs (`simd::codec`: AVX2 and AVX-512
//! target-feature clones of the portable codecs) against the scalar build, bit for bit: every
//! supported type, every quantize path (plain, `_ref`, importance-weighted) and dequantize, on
//! rows of odd block counts (group tails of the 16-block legacy groups) holding edge values:
//! zeros of both signs, subnormals, tiny and huge values (up to 1e30), blocks whose largest
//! magnitude is negative, and blocks with +a and -a both present (the first one decides).
//!
//! The golden tests check the selected level against ggml; run them under
//! `KQUANTS_ISA=scalar|avx2|avx512` for ggml's bytes at each level. This file makes a lane-order
//! or tail bug at any level fail even on data the goldens do not contain.

use kquants::quant::{self, Path};
use kquants::simd::{available_isas, Isa};
use kquants::QuantType;

/// xorshift64 stream.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Roughly normal (sum of four uniforms), scaled.
    fn normal(&mut self, scale: f32) -> f32 {
        let mut s = 0.0f32;
        for _ in 0..4 {
            s += (self.next() >> 40) as f32 / (1u64 << 24) as f32;
        }
        (s - 2.0) * scale
    }
}

/// One row of `n` values made of 32-value segments of different kinds (edge cases mixed with
/// ordinary data, so every block size sees each kind somewhere).
fn edge_row(n: usize, rng: &mut Rng) -> Vec<f32> {
    let mut x = Vec::with_capacity(n);
    let mut kind = rng.next() as usize;
    while x.len() < n {
        kind = kind.wrapping_add(1);
        let seg: Vec<f32> = (0..32)
            .map(|j| match kind % 11 {
                0 => 0.0,
                1 => if j % 3 == 0 { -0.0 } else { 0.0 },
                2 => rng.normal(1e-7),           // below the f16 normal range
                3 => rng.normal(1e-40),          // f32 subnormals
                4 => rng.normal(65504.0),        // around the f16 maximum
                5 => rng.normal(1e30),           // huge: scales overflow f16
                6 => {
                    // Largest magnitude negative.
                    if j == 7 { -3.0 } else { rng.normal(0.5) }
                }
                7 => {
                    // +a and -a both present: the first one wins.
                    match j {
                        3 => 2.5,
                        20 => -2.5,
                        _ => rng.normal(0.3),
                    }
                }
                8 => if j % 2 == 0 { 1.0 } else { -1.0 },
                9 => rng.normal(0.02).abs() + 0.03, // all positive
                _ => rng.normal(0.02),
            })
            .collect();
        x.extend_from_slice(&seg);
    }
    x.truncate(n);
    x
}

/// Row lengths per type: 1, 3 and 17 blocks (17 > the 16-block legacy group), capped for the
/// slow grid types.
fn row_lengths(t: QuantType, slow: bool) -> Vec<usize> {
    let bs = t.block_size();
    let counts: &[usize] = if slow { &[1, 3] } else { &[1, 3, 17] };
    counts.iter().map(|&c| bs * c.max(1)).collect()
}

fn same_f32(a: &[f32], b: &[f32]) -> Option<usize> {
    // NaN payloads are not specified by Rust; a NaN only has to stay a NaN.
    a.iter().zip(b).position(|(x, y)| x.to_bits() != y.to_bits() && !(x.is_nan() && y.is_nan()))
}

fn first_diff(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

fn supported() -> Vec<QuantType> {
    QuantType::ALL.iter().copied().filter(|&t| quant::is_supported(t)).collect()
}

/// Quantize with `isa`; `None` where the call is not valid for the type (the same error at
/// every level is checked by comparing results).
fn quantize(isa: Isa, t: QuantType, x: &[f32], n: usize, w: Option<&[f32]>, path: Path) -> Result<Vec<u8>, String> {
    let rows = x.len() / n;
    let mut q = vec![0u8; rows * t.row_bytes(n).unwrap()];
    quant::quantize_into_isa(isa, t, x, n, w, path, &mut q, Some(1)).map(|()| q).map_err(|e| e.to_string())
}

fn dequantize(isa: Isa, t: QuantType, raw: &[u8]) -> Vec<f32> {
    let mut y = vec![0f32; raw.len() / t.type_size() * t.block_size()];
    quant::dequantize_into_isa(isa, t, raw, &mut y, Some(1)).unwrap();
    y
}

#[test]
fn every_level_quantizes_like_scalar() {
    let isas = available_isas();
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut checked = 0;
    for t in supported() {
        // Grid types' imatrix searches are slow (tens of µs per 256 values): fewer blocks.
        let slow = t.block_size() == 256 && t.name().starts_with("IQ");
        for n in row_lengths(t, slow) {
            let rows = 3;
            let x: Vec<f32> = (0..rows).flat_map(|_| edge_row(n, &mut rng)).collect();
            let w: Vec<f32> = (0..n).map(|_| rng.normal(1.0).abs() + 1e-3).collect();
            let mut paths: Vec<(&str, Option<&[f32]>, Path)> = vec![("ref", None, Path::Ref)];
            if !t.requires_imatrix() {
                paths.push(("chunk", None, Path::Chunk));
            }
            if !t.is_activation_only() {
                paths.push(("imatrix", Some(&w), Path::Chunk));
            }
            for (name, w, path) in paths {
                let want = quantize(Isa::Scalar, t, &x, n, w, path);
                for &isa in &isas[1..] {
                    let got = quantize(isa, t, &x, n, w, path);
                    match (&want, &got) {
                        (Ok(a), Ok(b)) => {
                            if let Some(i) = first_diff(a, b) {
                                let ts = t.type_size();
                                panic!(
                                    "{t} {name} n={n}: {isa} differs from scalar at block {} byte {} ({} vs {})",
                                    i / ts,
                                    i % ts,
                                    b[i],
                                    a[i]
                                );
                            }
                            checked += 1;
                        }
                        (a, b) => assert_eq!(a.is_ok(), b.is_ok(), "{t} {name} n={n} {isa}: {a:?} vs {b:?}"),
                    }
                }
            }
        }
    }
    if isas.len() > 1 {
        assert!(checked > 0);
    }
}

#[test]
fn every_level_dequantizes_like_scalar() {
    let isas = available_isas();
    let mut rng = Rng(0x0dd_b10c_0002);
    for t in supported() {
        let n = t.block_size() * 17;
        // Random bytes (any scale, NaN and infinity included) and the codec's own output.
        let mut raw: Vec<u8> = (0..t.row_bytes(n).unwrap()).map(|_| rng.next() as u8).collect();
        let x = edge_row(n, &mut rng);
        let w: Vec<f32> = vec![1.0; n];
        let wq = t.requires_imatrix().then_some(w.as_slice());
        if let Ok(q) = quantize(Isa::Scalar, t, &x, n, wq, Path::Chunk) {
            raw.extend_from_slice(&q);
        }
        let want = dequantize(Isa::Scalar, t, &raw);
        for &isa in &isas[1..] {
            let got = dequantize(isa, t, &raw);
            if let Some(i) = same_f32(&want, &got) {
                panic!("{t}: {isa} dequantize differs at value {i}: {} vs {}", got[i], want[i]);
            }
        }
    }
}

/// The fused per-row finite check reports the first bad value whatever the task split and
/// level.
#[test]
fn first_non_finite_value_is_reported_at_every_level() {
    let n = 256;
    let rows = 200; // several rayon tasks
    for isa in available_isas() {
        for (r, c) in [(0usize, 0usize), (5, 255), (150, 31)] {
            let mut x = vec![0.5f32; rows * n];
            x[r * n + c] = f32::NAN;
            x[190 * n + 3] = f32::INFINITY; // a later one
            let mut q = vec![0u8; rows * QuantType::Q8_0.row_bytes(n).unwrap()];
            let e = quant::quantize_into_isa(isa, QuantType::Q8_0, &x, n, None, Path::Chunk, &mut q, Some(2))
                .expect_err("non-finite input");
            let msg = e.to_string();
            assert!(msg.contains(&format!("(row {r}, col {c})")), "{isa}: {msg}");
        }
    }
}

/// Every type, level and quantize path finds the first NaN or infinity of the input, wherever it
/// is: inside a 16-block group of the fused AVX-512 kernels (`simd::codec::legacy512`,
/// `float512`), in the blocks after the last whole group, in a later row, with a second bad
/// value after it in the same group.
#[test]
fn non_finite_input_is_found_by_every_quantizer() {
    let mut rng = Rng(0x0bad_f10a_0003);
    for t in supported() {
        // 1184 values: 37 blocks of 32 (two whole 16-block groups and five blocks after them),
        // 74 float groups of 16, or 5 blocks of 256.
        let n = 1184usize.div_ceil(t.block_size()) * t.block_size();
        let rows = 3;
        let w: Vec<f32> = (0..n).map(|_| rng.normal(1.0).abs() + 1e-3).collect();
        let mut paths: Vec<(&str, Option<&[f32]>, Path)> = Vec::new();
        if !t.requires_imatrix() {
            paths.push(("ref", None, Path::Ref));
            paths.push(("chunk", None, Path::Chunk));
        }
        if !t.is_activation_only() {
            paths.push(("imatrix", Some(&w), Path::Chunk));
        }
        let cols = [0, 17, 511, 512 + 300, 1024 + 3, n - 1];
        for (k, &c) in cols.iter().enumerate() {
            let c = c.min(n - 1);
            let r = k % rows;
            let bad = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][k % 3];
            let mut x: Vec<f32> = (0..rows * n).map(|_| rng.normal(0.5)).collect();
            x[r * n + c] = bad;
            if c + 5 < n {
                x[r * n + c + 5] = f32::INFINITY; // a later one in the same group
            }
            x[(rows - 1) * n + n - 1] = f32::NAN; // and one in the last row
            for (name, w, path) in &paths {
                for isa in available_isas() {
                    let Err(e) = quantize(isa, t, &x, n, *w, *path) else {
                        panic!("{t} {name} {isa}: the non-finite value at ({r}, {c}) was accepted");
                    };
                    assert!(e.contains(&format!("(row {r}, col {c})")), "{t} {name} {isa}, bad at ({r}, {c}): {e}");
                }
            }
        }
    }
}

/// Dequantizing into an output at each of the 16 float offsets within a 64-byte line gives the
/// scalar values (the AVX-512 Q4_0 kernel aligns its stores, with partial vectors at both ends),
/// and writes nothing outside the output.
#[test]
fn dequantize_at_every_output_alignment() {
    let mut rng = Rng(0x0a11_9e0d_0004);
    for t in supported() {
        let n = t.block_size() * 5;
        let raw: Vec<u8> = (0..t.row_bytes(n).unwrap()).map(|_| rng.next() as u8).collect();
        let want = dequantize(Isa::Scalar, t, &raw);
        for isa in available_isas() {
            for off in 0..16 {
                let mut buf = vec![7.0f32; n + 32];
                quant::dequantize_into_isa(isa, t, &raw, &mut buf[off..off + n], Some(1)).unwrap();
                if let Some(i) = same_f32(&want, &buf[off..off + n]) {
                    panic!("{t} {isa} offset {off}: value {i} is {} not {}", buf[off + i], want[i]);
                }
                let outside = buf[..off].iter().chain(&buf[off + n..]).any(|&v| v.to_bits() != 7.0f32.to_bits());
                assert!(!outside, "{t} {isa} offset {off}: wrote outside the output");
            }
        }
    }
}
