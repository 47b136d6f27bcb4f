//! Self-check of every NEON kernel against the scalar reference, for aarch64 under qemu
//! (`scripts/aarch64_check.sh`). Single-threaded on purpose: threads hang under qemu-user 7.2
//! (../shared/notes/aarch64.md), so nothing here touches rayon. Exits non-zero on a mismatch.
//! On other targets it checks whatever SIMD level the machine has, the same way.

#[path = "../tests/common/mod.rs"]
mod common;

use kquants::quant::{iq4, k, legacy, Block};
use kquants::simd::{available_isas, dot_row_bytes, kernels_for, Isa, Kernels};
use kquants::QuantType;

/// Dequantize whole blocks with the codec's own scalar code (no rayon: threads hang under qemu).
fn deq_with<B: Block>(bytes: &[u8]) -> Vec<f32> {
    let blocks: Vec<B> = bytes.chunks_exact(std::mem::size_of::<B>()).map(bytemuck::pod_read_unaligned).collect();
    let mut out = vec![0f32; blocks.len() * B::TYPE.block_size()];
    B::dequantize_row(&blocks, &mut out);
    out
}

/// Values of a row of `t` (the weight and activation types with NEON kernels).
fn deq(t: QuantType, bytes: &[u8]) -> Option<Vec<f32>> {
    use QuantType as T;
    Some(match t {
        T::Q4_0 => deq_with::<legacy::BlockQ4_0>(bytes),
        T::Q4_1 => deq_with::<legacy::BlockQ4_1>(bytes),
        T::Q5_0 => deq_with::<legacy::BlockQ5_0>(bytes),
        T::Q5_1 => deq_with::<legacy::BlockQ5_1>(bytes),
        T::Q8_0 => deq_with::<legacy::BlockQ8_0>(bytes),
        T::Q8_1 => deq_with::<legacy::BlockQ8_1>(bytes),
        T::Q2_K => deq_with::<k::BlockQ2K>(bytes),
        T::Q3_K => deq_with::<k::BlockQ3K>(bytes),
        T::Q4_K => deq_with::<k::BlockQ4K>(bytes),
        T::Q5_K => deq_with::<k::BlockQ5K>(bytes),
        T::Q6_K => deq_with::<k::BlockQ6K>(bytes),
        T::Q8_K => deq_with::<k::BlockQ8K>(bytes),
        T::IQ4_NL => deq_with::<iq4::BlockIQ4NL>(bytes),
        T::IQ4_XS => deq_with::<iq4::BlockIQ4XS>(bytes),
        _ => return None,
    })
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn normal(&mut self) -> f32 {
        let u = |r: &mut Rng| ((r.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let (a, b) = (u(self), u(self));
        ((-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()) as f32
    }
}

fn f16_fields(t: QuantType) -> &'static [usize] {
    use QuantType as T;
    match t {
        T::Q4_1 | T::Q5_1 | T::Q4_K | T::Q5_K => &[0, 2],
        T::Q2_K => &[80, 82],
        T::Q3_K => &[108],
        T::Q6_K => &[208],
        _ => &[0],
    }
}

fn main() {
    let scalar = kernels_for(Isa::Scalar).expect("scalar table");
    let simd: Vec<&Kernels> = available_isas().into_iter().filter(|&i| i != Isa::Scalar).filter_map(kernels_for).collect();
    if simd.is_empty() {
        eprintln!("no SIMD level on this machine");
        std::process::exit(1);
    }
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut fails = 0usize;
    let mut checked = 0usize;
    for tab in &simd {
        let isa = tab.isa();
        // Activation quantizers: bit-exact with the scalar ports of ggml's rounding, and with
        // ggml's own bytes where golden data exists.
        for at in [QuantType::Q8_0, QuantType::Q8_1, QuantType::Q8_K] {
            if tab.quantize_act_isa(at) != Some(isa) {
                continue;
            }
            for n in [32usize, 256, 4096] {
                if !n.is_multiple_of(at.block_size()) {
                    continue; // Q8_K rows are whole 256-value blocks
                }
                let x: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
                let mut a = vec![0u8; at.row_bytes(n).unwrap()];
                let mut b = a.clone();
                tab.quantize_act(at, &x, &mut a).unwrap();
                scalar.quantize_act(at, &x, &mut b).unwrap();
                checked += 1;
                if a != b {
                    eprintln!("FAIL {isa} quantize {at} n={n}");
                    fails += 1;
                }
            }
            let (file, key) = match at {
                QuantType::Q8_0 => ("Q8_0", "ties"),
                QuantType::Q8_1 => ("Q8_1", "ties"),
                _ => ("Q4_K", ""),
            };
            let g = common::codec_golden(file);
            let (x, want) = if key.is_empty() {
                (g["synth_act"].f32(), g["synth_act_q"].u8().to_vec())
            } else {
                (g["ties_x"].f32(), g["ties_q_cpu"].u8().to_vec())
            };
            let mut got = vec![0u8; want.len()];
            tab.quantize_act(at, &x, &mut got).unwrap();
            checked += 1;
            if got != want {
                eprintln!("FAIL {isa} quantize {at} vs ggml golden");
                fails += 1;
            }
        }
        // Dot products on random valid blocks against the scalar reference.
        for &t in QuantType::ALL {
            if tab.vec_dot_isa(t) != Some(isa) {
                continue;
            }
            let at = t.dot_type().unwrap();
            for n in [256usize, 1024, 4096] {
                let (wr, _) = dot_row_bytes(t, n).unwrap();
                let mut w: Vec<u8> = (0..wr).map(|_| rng.next() as u8).collect();
                for b in w.chunks_exact_mut(t.type_size()) {
                    for &o in f16_fields(t) {
                        b[o..o + 2].copy_from_slice(&half::f16::from_f32(rng.normal() * 0.01).to_le_bytes());
                    }
                }
                let x: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
                let mut a = vec![0u8; at.row_bytes(n).unwrap()];
                scalar.quantize_act(at, &x, &mut a).unwrap();
                let got = tab.vec_dot(t, n, &w, &a).unwrap() as f64;
                let want = scalar.vec_dot(t, n, &w, &a).unwrap() as f64;
                // Two float summation orders of nb terms differ by at most 2 (nb + 4) u S, where
                // S bounds every partial sum either side forms (x4 for the T1 - T2 split of the
                // min types; see tests/simd_kernels.rs). S = sum |w_i a_i| over the dequantized
                // values: a reference may sum lanes that cancel (Q6_K's `-32` offset), so the
                // blocks' final values alone are not a bound.
                let bs = t.block_size();
                let s: f64 = match (deq(t, &w), deq(at, &a)) {
                    (Some(wv), Some(av)) => wv.iter().zip(&av).map(|(p, q)| (*p as f64 * *q as f64).abs()).sum(),
                    _ => {
                        eprintln!("FAIL {isa} vec_dot {t}: no dequantizer for the tolerance");
                        fails += 1;
                        continue;
                    }
                };
                let tol = 8.0 * ((n / bs) as f64 + 4.0) * s / (1u64 << 24) as f64 + 1e-30;
                checked += 1;
                if (got - want).abs() > tol || got.is_nan() {
                    eprintln!("FAIL {isa} vec_dot {t} n={n}: got {got} want {want} tol {tol:e}");
                    fails += 1;
                }
            }
        }
    }
    println!("neon_selfcheck: {checked} checks, {fails} failures, levels {:?}", simd.iter().map(|k| k.isa()).collect::<Vec<_>>());
    if fails > 0 || checked == 0 {
        std::process::exit(1);
    }
}
