//! `matmul` against ggml's golden weights: a batch gives bit-for-bit the values of one activation
//! row at a time (multi-row kernels compute each output the same way whatever the tile), the
//! result is independent of the thread count, and both it and the single-row kernel dot stay
//! within `error_bound` of the float64 product with the dequantized weights. Types without a
//! multi-row kernel equal the per-pair kernel dot exactly.

mod common;

use kquants::matmul::{self, error_bound};
use kquants::simd;
use kquants::QuantType;

/// Types whose multi-row kernel keeps ggml's `vec_dot` order, so its outputs equal the single-row
/// kernel bit for bit (Q4_1: the SmolLM2 golden logits depend on that order).
const SAME_ORDER: [QuantType; 1] = [QuantType::Q4_1];

#[test]
fn matmul_equals_pairwise_kernel_dots_and_error_bound() {
    for name in ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL", "IQ4_XS"] {
        let t = QuantType::from_name(name).unwrap();
        let g = common::codec_golden(name);
        for set in ["synth", "real"] {
            let w = g[&format!("{set}_q")].u8();
            let deq = g[&format!("{set}_deq")].f32();
            let (n, k) = (g[&format!("{set}_deq")].rows(), g[&format!("{set}_deq")].cols());
            let m = 6;
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * (1.0 + (i % 13) as f32)).collect();
            let acts = matmul::quantize_activations(t, &x, k, m).unwrap();
            let mut out1 = vec![0f32; m * n];
            matmul::matmul_quantized(t, w, n, &acts, &mut out1, Some(1)).unwrap();
            let mut out2 = vec![0f32; m * n];
            matmul::matmul(t, w, n, k, &x, m, &mut out2, Some(2)).unwrap();
            assert_eq!(out1, out2, "{name} {set}: thread count changed the result");
            let (wrow, arow) = simd::dot_row_bytes(t, k).unwrap();
            let multi = simd::kernels().has_gemm(t);
            for j in 0..m {
                let single = matmul::quantize_activations(t, &x[j * k..(j + 1) * k], k, 1).unwrap();
                let mut one = vec![0f32; n];
                matmul::matmul_quantized(t, w, n, &single, &mut one, Some(1)).unwrap();
                for r in 0..n {
                    let o = out1[j * n + r];
                    assert_eq!(o.to_bits(), one[r].to_bits(), "{name} {set} ({j},{r}): batch {o} vs single row {}", one[r]);
                    let d = simd::vec_dot(t, k, &w[r * wrow..(r + 1) * wrow], &acts.data()[j * arow..(j + 1) * arow]).unwrap();
                    if !multi || SAME_ORDER.contains(&t) {
                        assert_eq!(o.to_bits(), d.to_bits(), "{name} {set} ({j},{r})");
                    }
                    let xr = &x[j * k..(j + 1) * k];
                    let wr = &deq[r * k..(r + 1) * k];
                    let exact: f64 = xr.iter().zip(wr).map(|(a, b)| *a as f64 * *b as f64).sum();
                    let tol = error_bound(t, xr, wr);
                    assert!((d as f64 - exact).abs() <= tol, "{name} {set} ({j},{r}): {d} vs {exact}, tol {tol}");
                    assert!((o as f64 - exact).abs() <= tol, "{name} {set} ({j},{r}): matmul {o} vs {exact}, tol {tol}");
                }
            }
        }
    }
}

#[test]
fn matmul_validates_shapes() {
    let w = vec![0u8; 18 * 4];
    let x = vec![0f32; 64];
    let mut out = vec![0f32; 2];
    assert!(matmul::matmul(QuantType::Q4_0, &w, 2, 64, &x, 1, &mut out, None).is_ok());
    assert!(matmul::matmul(QuantType::Q4_0, &w, 3, 64, &x, 1, &mut out, None).is_err());
    assert!(matmul::matmul(QuantType::Q4_0, &w, 2, 64, &x[1..], 1, &mut out, None).is_err());
    assert!(matmul::matmul(QuantType::Q4_0, &w, 2, 64, &x, 1, &mut out[1..], None).is_err());
    assert!(matmul::matmul(QuantType::Q4_0, &w, 2, 64, &x, 1, &mut out, Some(0)).is_err());
    assert!(matmul::matmul(QuantType::F32, &w, 2, 64, &x, 1, &mut out, None).is_err());
    let acts = matmul::quantize_activations(QuantType::Q4_K, &vec![0f32; 256], 256, 1).unwrap();
    assert!(matmul::matmul_quantized(QuantType::Q4_0, &w, 2, &acts, &mut out, None).is_err());
}

#[test]
fn multi_row_kernels_handle_odd_blocks_and_ragged_tiles() {
    // k = 5 blocks of 32 (a last pass with one block); 37 weight rows (two groups of 16 for the
    // 16-row kernels plus 5 rows for the row-by-row ones) and 11 activation rows (a tile of 8 plus
    // remainders) or 19 (two tiles, which the 16-row kernels serve from weights decoded once):
    // batch equals single rows and 1 thread equals 2, all within the error bound.
    let (n, k) = (37usize, 160usize);
    let wf: Vec<f32> = (0..n * k).map(|i| ((i * 2654435761usize % 1000) as f32 / 500.0 - 1.0) * 0.05).collect();
    for (t, m) in [QuantType::Q4_0, QuantType::Q4_1, QuantType::Q5_0, QuantType::Q5_1, QuantType::Q8_0, QuantType::IQ4_NL]
        .into_iter()
        .flat_map(|t| [(t, 11usize), (t, 19)])
    {
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 40503 % 997) as f32 / 498.5 - 1.0) * (1.0 + (i % 7) as f32)).collect();
        let w = kquants::quant::quantize(t, &wf, k, None, Some(1)).unwrap();
        let deq = kquants::quant::dequantize(t, &w, Some(1)).unwrap();
        let acts = matmul::quantize_activations(t, &x, k, m).unwrap();
        let mut out = vec![0f32; m * n];
        matmul::matmul_quantized(t, &w, n, &acts, &mut out, Some(1)).unwrap();
        let mut out2 = vec![0f32; m * n];
        matmul::matmul_quantized(t, &w, n, &acts, &mut out2, Some(2)).unwrap();
        assert_eq!(out, out2, "{t}: thread count changed the result");
        let (wrow, arow) = simd::dot_row_bytes(t, k).unwrap();
        for j in 0..m {
            let single = matmul::quantize_activations(t, &x[j * k..(j + 1) * k], k, 1).unwrap();
            let mut one = vec![0f32; n];
            matmul::matmul_quantized(t, &w, n, &single, &mut one, Some(2)).unwrap();
            for r in 0..n {
                assert_eq!(out[j * n + r].to_bits(), one[r].to_bits(), "{t} ({j},{r})");
                if SAME_ORDER.contains(&t) {
                    let d = simd::vec_dot(t, k, &w[r * wrow..(r + 1) * wrow], &acts.data()[j * arow..(j + 1) * arow]).unwrap();
                    assert_eq!(out[j * n + r].to_bits(), d.to_bits(), "{t} ({j},{r}): multi-row {} vs row kernel {d}", out[j * n + r]);
                }
                let (xr, wr) = (&x[j * k..(j + 1) * k], &deq[r * k..(r + 1) * k]);
                let exact: f64 = xr.iter().zip(wr).map(|(a, b)| *a as f64 * *b as f64).sum();
                let tol = error_bound(t, xr, wr);
                assert!((out[j * n + r] as f64 - exact).abs() <= tol, "{t} ({j},{r}): {} vs {exact}, tol {tol}", out[j * n + r]);
            }
        }
    }
}

#[test]
fn superblock_kernels_any_row_count_batch_and_threads() {
    // The 256-value super-block types (16-row kernels on AVX-512 with multi-row kernels on):
    // k = 1, 2, 9 and 12 super-blocks; every weight row count 1..=40 (no, one, two complete
    // groups of 16 plus a partial one) gives each row bit for bit the value it has in the
    // 40-row call; a batch of 11 activation rows equals one row at a time; 1 thread equals 2;
    // everything within `error_bound` of the float64 product with the dequantized weights.
    let (n, m) = (40usize, 11usize);
    let kern = simd::kernels();
    for t in [QuantType::IQ4_XS, QuantType::Q4_K, QuantType::Q5_K, QuantType::Q6_K] {
        if kern.isa() == simd::Isa::Avx512 && kern.has_gemm(QuantType::Q4_0) {
            assert!(kern.has_gemm(t), "{t}: AVX-512 multi-row kernels are on but {t} has none");
        }
        for k in [256usize, 512, 2304, 3072] {
            // Rows of different magnitudes and signs so that block scales vary.
            let wf: Vec<f32> = (0..n * k)
                .map(|i| {
                    let r = i / k;
                    ((i * 2654435761usize % 1999) as f32 / 999.5 - 1.0) * (0.01 + 0.02 * (r % 5) as f32)
                        + if (i / 32) % 7 == 3 { 0.03 } else { 0.0 }
                })
                .collect();
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 40503 % 997) as f32 / 498.5 - 1.0) * (1.0 + (i / 256 % 5) as f32) * if i % 11 == 0 { 4.0 } else { 1.0 })
                .collect();
            let w = kquants::quant::quantize(t, &wf, k, None, Some(1)).unwrap();
            let deq = kquants::quant::dequantize(t, &w, Some(1)).unwrap();
            let (wrow, arow) = simd::dot_row_bytes(t, k).unwrap();
            let acts = matmul::quantize_activations(t, &x, k, m).unwrap();
            let mut full = vec![0f32; m * n];
            matmul::matmul_quantized(t, &w, n, &acts, &mut full, Some(1)).unwrap();
            let mut two = vec![0f32; m * n];
            matmul::matmul_quantized(t, &w, n, &acts, &mut two, Some(2)).unwrap();
            assert_eq!(full, two, "{t} k={k}: thread count changed the result");
            for nr in 1..n {
                let mut part = vec![0f32; m * nr];
                matmul::matmul_quantized(t, &w[..nr * wrow], nr, &acts, &mut part, Some(1)).unwrap();
                for j in 0..m {
                    for r in 0..nr {
                        let (a, b) = (part[j * nr + r], full[j * n + r]);
                        assert_eq!(a.to_bits(), b.to_bits(), "{t} k={k}: row {r} act {j}: {a} with {nr} rows, {b} with {n}");
                    }
                }
            }
            for j in 0..m {
                let single = matmul::quantize_activations(t, &x[j * k..(j + 1) * k], k, 1).unwrap();
                let mut one = vec![0f32; n];
                matmul::matmul_quantized(t, &w, n, &single, &mut one, Some(2)).unwrap();
                for r in 0..n {
                    let o = full[j * n + r];
                    assert_eq!(o.to_bits(), one[r].to_bits(), "{t} k={k} ({j},{r}): batch {o} vs single row {}", one[r]);
                    let (xr, wr) = (&x[j * k..(j + 1) * k], &deq[r * k..(r + 1) * k]);
                    let exact: f64 = xr.iter().zip(wr).map(|(a, b)| *a as f64 * *b as f64).sum();
                    let tol = error_bound(t, xr, wr);
                    assert!((o as f64 - exact).abs() <= tol, "{t} k={k} ({j},{r}): {o} vs {exact}, tol {tol}");
                    // Against the row-by-row kernel: both compute each super-block's integer sums
                    // exactly and differ only in float rounding, at most a few f32 roundings
                    // (2^-24 relative) of the running sum per super-block and per final add,
                    // each within the magnitude sum of the quantized products (<= 1.01 * mag: the
                    // activations move by at most 1/254 of their block's max).
                    let d = simd::vec_dot(t, k, &w[r * wrow..(r + 1) * wrow], &acts.data()[j * arow..(j + 1) * arow]).unwrap();
                    let mag: f64 = xr.iter().zip(wr).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum();
                    let tol2 = (4 * (k / 256) + 16) as f64 * f32::EPSILON as f64 / 2.0 * 1.01 * mag;
                    assert!((o as f64 - d as f64).abs() <= tol2, "{t} k={k} ({j},{r}): matmul {o} vs vec_dot {d}, tol {tol2}");
                }
            }
        }
    }
}

#[test]
fn packed_weights_give_the_plain_results_bit_for_bit() {
    // `PackedWeight` (interleaved on AVX-512 for Q4_0 / IQ4_XS / Q4_K / Q5_K, a plain copy otherwise)
    // against `matmul` on the original rows: every row count from 1 to 150 crossed with
    // 1, 3 and 19 activation rows (GEMV, a ragged tile, two tiles decoded once), 1 and 2 threads.
    // 150 rows are 9 full groups of 16 and a partial one: the GEMV runs groups 2 and 1 at a time.
    let kern = simd::kernels();
    for t in [QuantType::IQ4_XS, QuantType::Q4_K, QuantType::Q5_K, QuantType::Q6_K, QuantType::Q4_0] {
        let interleaves = kern.isa() == simd::Isa::Avx512 && kern.has_gemm(t) && t != QuantType::Q6_K;
        assert_eq!(kern.has_interleaved(t), interleaves, "{t}: interleaved kernel");
        // Q4_0 also with an odd number of 32-value blocks (groups then start 32 bytes off a line).
        let ks: &[usize] = if t == QuantType::Q4_0 { &[160, 256, 768] } else { &[256, 768] };
        for &k in ks {
            let n = 150usize;
            let wf: Vec<f32> = (0..n * k)
                .map(|i| ((i * 2654435761usize % 1999) as f32 / 999.5 - 1.0) * (0.01 + 0.02 * ((i / k) % 5) as f32))
                .collect();
            let w = kquants::quant::quantize(t, &wf, k, None, Some(1)).unwrap();
            let (wrow, _) = simd::dot_row_bytes(t, k).unwrap();
            for m in [1usize, 3, 19] {
                let x: Vec<f32> = (0..m * k).map(|i| ((i * 40503 % 997) as f32 / 498.5 - 1.0) * (1.0 + (i % 7) as f32)).collect();
                let acts = matmul::quantize_activations(t, &x, k, m).unwrap();
                for nr in (1..=n).filter(|v| m == 1 || v % 7 == 1 || *v == n) {
                    let wr = &w[..nr * wrow];
                    let p = matmul::PackedWeight::new(t, wr, nr, k).unwrap();
                    assert_eq!(p.is_interleaved(), interleaves, "{t}");
                    assert_eq!(p.to_rows(), wr, "{t} n={nr}: to_rows");
                    let mut plain = vec![0f32; m * nr];
                    matmul::matmul_quantized(t, wr, nr, &acts, &mut plain, Some(1)).unwrap();
                    for th in [1, 2] {
                        let mut packed = vec![0f32; m * nr];
                        matmul::matmul_packed_quantized(&p, &acts, &mut packed, Some(th)).unwrap();
                        let same = plain.iter().zip(&packed).all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "{t} k={k} n={nr} m={m} threads={th}: packed differs from plain");
                    }
                }
                // The float entry point quantizes the activations the same way.
                let p = matmul::PackedWeight::new(t, &w, n, k).unwrap();
                let (mut a, mut b) = (vec![0f32; m * n], vec![0f32; m * n]);
                matmul::matmul(t, &w, n, k, &x, m, &mut a, None).unwrap();
                matmul::matmul_packed(&p, &x, m, &mut b, None).unwrap();
                assert_eq!(a, b, "{t} k={k} m={m}: matmul_packed");
            }
        }
        // GEMV tasks of 64 rows and more (n / 8 per thread, up to 256): the interleaved GEMV
        // then runs two groups side by side.
        let (n, k) = (1100usize, 256usize);
        let wf: Vec<f32> = (0..n * k).map(|i| ((i * 2654435761usize % 1999) as f32 / 999.5 - 1.0) * 0.02).collect();
        let w = kquants::quant::quantize(t, &wf, k, None, Some(1)).unwrap();
        let x: Vec<f32> = (0..k).map(|i| (i % 19) as f32 / 9.0 - 1.0).collect();
        let p = matmul::PackedWeight::new(t, &w, n, k).unwrap();
        for th in [1, 2] {
            let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
            matmul::matmul(t, &w, n, k, &x, 1, &mut a, Some(th)).unwrap();
            matmul::matmul_packed(&p, &x, 1, &mut b, Some(th)).unwrap();
            assert_eq!(a, b, "{t} n={n} threads={th}: matmul_packed");
        }
    }
}

#[test]
fn packed_weights_run_on_every_level_and_validate_shapes() {
    // An interleaved weight multiplied with a kernel table that has no interleaved kernel (a
    // lower level) gives that level's plain result.
    let (n, k, m) = (37usize, 512usize, 2usize);
    let t = QuantType::Q4_K;
    let wf: Vec<f32> = (0..n * k).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.1).collect();
    let w = kquants::quant::quantize(t, &wf, k, None, Some(1)).unwrap();
    let x: Vec<f32> = (0..m * k).map(|i| (i % 17) as f32 / 8.0 - 1.0).collect();
    let p = matmul::PackedWeight::new(t, &w, n, k).unwrap();
    for isa in simd::Isa::ALL {
        let Some(kern) = simd::kernels_for(isa) else { continue };
        let acts = matmul::quantize_activations_with(kern, t, &x, k, m).unwrap();
        let (mut a, mut b) = (vec![0f32; m * n], vec![0f32; m * n]);
        matmul::matmul_quantized_with(kern, t, &w, n, &acts, &mut a, Some(1)).unwrap();
        matmul::matmul_packed_quantized_with(kern, &p, &acts, &mut b, Some(2)).unwrap();
        assert_eq!(a, b, "{isa:?}");
        let q = matmul::PackedWeight::new_with(kern, t, &w, n, k).unwrap();
        assert_eq!(q.is_interleaved(), kern.has_interleaved(t), "{isa:?}");
    }
    assert!(matmul::PackedWeight::new(t, &w[1..], n, k).is_err(), "wrong byte count");
    assert!(matmul::PackedWeight::new(t, &w, n, 300).is_err(), "k not a multiple of 256");
    assert!(matmul::PackedWeight::new(QuantType::F32, &w, n, k).is_err(), "float weight");
    let mut out = vec![0f32; n];
    assert!(matmul::matmul_packed(&p, &x[..k - 1], 1, &mut out, None).is_err(), "short activation row");
    assert!(matmul::matmul_packed(&p, &x[..k], 1, &mut out[1..], None).is_err(), "short output");
    let other = matmul::quantize_activations(t, &x[..512], 256, 2).unwrap();
    assert!(matmul::matmul_packed_quantized(&p, &other, &mut out, None).is_err(), "activation width");
    let q8 = matmul::quantize_activations(QuantType::Q4_0, &x[..k], k, 1).unwrap();
    assert!(matmul::matmul_packed_quantized(&p, &q8, &mut out, None).is_err(), "activation type");
}
