//! Property tests for the K-quants (bit-exactness against ggml lives in `tests/golden_codecs.rs`).

use super::*;
use crate::quant::{self, Block, DotBlock, Path};
use crate::types::QuantType;
use proptest::prelude::*;

const WEIGHT_TYPES: [QuantType; 5] = [
    QuantType::Q2_K,
    QuantType::Q3_K,
    QuantType::Q4_K,
    QuantType::Q5_K,
    QuantType::Q6_K,
];
const ALL_TYPES: [QuantType; 6] = [
    QuantType::Q2_K,
    QuantType::Q3_K,
    QuantType::Q4_K,
    QuantType::Q5_K,
    QuantType::Q6_K,
    QuantType::Q8_K,
];

/// ggml test-quantize-fns `generate_data`: `0.1 + amplitude * cos(i + offset)`.
fn ggml_test_data(offset: f32, n: usize, amplitude: f32) -> Vec<f32> {
    (0..n)
        .map(|i| (0.1f64 + (amplitude * (i as f32 + offset).cos()) as f64) as f32)
        .collect()
}

/// ggml test-quantize-fns `array_rmse`: sqrt(Σ diff²) / n (its "total quantization error").
fn ggml_rmse(a: &[f32], b: &[f32]) -> f32 {
    let sum: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    (sum.sqrt() as f32) / a.len() as f32
}

/// ggml test-quantize-fns thresholds: MAX_QUANTIZATION_TOTAL_ERROR{,_2BITS,_3BITS}.
fn max_error(t: QuantType) -> f32 {
    match t {
        QuantType::Q2_K => 0.0075,
        QuantType::Q3_K => 0.0040,
        _ => 0.002,
    }
}

fn quantize_path(
    t: QuantType,
    x: &[f32],
    n: usize,
    imatrix: Option<&[f32]>,
    threads: Option<usize>,
) -> Vec<u8> {
    let path = if t.is_activation_only() {
        Path::Ref
    } else {
        Path::Chunk
    };
    let mut dst = vec![0u8; x.len() / n * t.row_bytes(n).unwrap()];
    quant::quantize_into(t, x, n, imatrix, path, &mut dst, threads).unwrap();
    dst
}

/// Values around ggml's test magnitude with occasional outliers and exact zeros.
fn row_values(n: usize) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(
        prop_oneof![
            8 => -2.0f32..2.0,
            1 => Just(0.0f32),
            1 => -50.0f32..50.0,
        ],
        n,
    )
}

fn imatrix_values(n: usize) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(prop_oneof![9 => 0.0f32..10.0, 1 => Just(0.0f32)], n)
}

#[test]
fn round_trip_error_below_ggml_thresholds() {
    // ggml's own test: 4096 values of 0.1 + 2 cos(i); we also shift the phase and use the
    // imatrix path with a smooth positive importance matrix.
    let n = 4096;
    for t in ALL_TYPES {
        for offset in [0.0f32, 0.37, 1.0, 5.5] {
            let x = ggml_test_data(offset, n, 2.0);
            let imat: Vec<f32> = (0..n)
                .map(|i| 1.0 + (i as f32 * 0.01).sin().abs())
                .collect();
            let mut paths = vec![None];
            if !t.is_activation_only() {
                paths.push(Some(&imat[..]));
            }
            for w in paths {
                let q = quantize_path(t, &x, n, w, None);
                let y = quant::dequantize(t, &q, None).unwrap();
                let err = ggml_rmse(&x, &y);
                assert!(
                    err < max_error(t),
                    "{t} offset {offset} imatrix {}: error {err}",
                    w.is_some()
                );
            }
        }
    }
}

#[test]
fn vec_dot_error_below_ggml_threshold() {
    // ggml test-quantize-fns `dot_product_error`: |vec_dot - exact float dot| / n against
    // MAX_DOT_PRODUCT_ERROR (0.02), or _LOWBIT (0.04) for Q2_K.
    let n = 4096;
    let a = ggml_test_data(0.0, n, 2.0);
    let b = ggml_test_data(1.0, n, 2.0);
    let exact: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let qb = quantize_path(QuantType::Q8_K, &b, n, None, None);
    for t in WEIGHT_TYPES {
        let qa = quantize_path(t, &a, n, None, None);
        let got = quant::vec_dot_ref(t, &qa, &qb, n).unwrap();
        let err = (got as f64 - exact).abs() / n as f64;
        let max = if t == QuantType::Q2_K { 0.04 } else { 0.02 };
        assert!(err < max, "{t}: dot error {err}");
    }
}

#[test]
fn vec_dot_matches_dequantized_dot() {
    // The scalar reference equals Σ dequant(w) dequant(a) up to f32 rounding: measured
    // |diff| / Σ|w a| ≈ 1e-8 on the golden sets, so 1e-5 is a loose but meaningful bound.
    let n = 1024;
    let w = ggml_test_data(0.3, n, 1.0);
    let act = ggml_test_data(2.0, n, 1.5);
    let qa = quantize_path(QuantType::Q8_K, &act, n, None, None);
    let da = quant::dequantize(QuantType::Q8_K, &qa, None).unwrap();
    for t in WEIGHT_TYPES {
        let qw = quantize_path(t, &w, n, None, None);
        let dw = quant::dequantize(t, &qw, None).unwrap();
        let exact: f64 = dw.iter().zip(&da).map(|(x, y)| *x as f64 * *y as f64).sum();
        let mag: f64 = dw
            .iter()
            .zip(&da)
            .map(|(x, y)| (*x as f64 * *y as f64).abs())
            .sum();
        let got = quant::vec_dot_ref(t, &qw, &qa, n).unwrap() as f64;
        assert!((got - exact).abs() <= 1e-5 * mag, "{t}: {got} vs {exact}");
    }
}

#[test]
fn all_zero_blocks_give_zeros() {
    let n = 512;
    let x = vec![0.0f32; n];
    let imat = vec![1.0f32; n];
    for t in ALL_TYPES {
        let mut paths = vec![None];
        if !t.is_activation_only() {
            paths.push(Some(&imat[..]));
        }
        for w in paths {
            let q = quantize_path(t, &x, n, w, None);
            let y = quant::dequantize(t, &q, None).unwrap();
            assert!(y.iter().all(|v| *v == 0.0), "{t} imatrix {}", w.is_some());
        }
    }
}

#[test]
fn extreme_values_never_panic() {
    let specials = [
        65504.0f32,
        -65504.0,
        1e30,
        -1e30,
        f32::MIN_POSITIVE,
        1e-40,
        -1e-45,
        0.0,
        -0.0,
        3.4e38,
        -3.4e38,
    ];
    let n = 256;
    let mut rows = Vec::new();
    for &s in &specials {
        rows.push(vec![s; n]);
        // One extreme among ordinary values, and alternating extremes.
        let mut r = ggml_test_data(0.0, n, 0.02);
        r[17] = s;
        rows.push(r);
        rows.push(
            (0..n)
                .map(|i| if i % 2 == 0 { s } else { -s * 0.5 })
                .collect(),
        );
        rows.push((0..n).map(|i| if i % 3 == 0 { s } else { 1e-3 }).collect());
    }
    let imats = [
        vec![1.0f32; n],
        vec![0.0f32; n],
        vec![1e30f32; n],
        (0..n).map(|i| (i % 2) as f32 * 1e-40).collect(),
    ];
    let act = quantize_path(QuantType::Q8_K, &ggml_test_data(1.0, n, 1.0), n, None, None);
    for t in ALL_TYPES {
        for x in &rows {
            let mut outs = vec![quantize_path(t, x, n, None, None)];
            if !t.is_activation_only() {
                for w in &imats {
                    outs.push(quantize_path(t, x, n, Some(w), None));
                }
            }
            for q in outs {
                let _ = quant::dequantize(t, &q, None).unwrap();
                if t.dot_type().is_some() {
                    let _ = quant::vec_dot_ref(t, &q, &act, n).unwrap();
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn deterministic_and_ref_equals_chunk(x in row_values(512), w in imatrix_values(512)) {
        let n = 512;
        for t in WEIGHT_TYPES {
            let a = quantize_path(t, &x, n, None, None);
            prop_assert_eq!(&a, &quantize_path(t, &x, n, None, None));
            let mut r = vec![0u8; a.len()];
            quant::quantize_into(t, &x, n, None, Path::Ref, &mut r, None).unwrap();
            prop_assert_eq!(&a, &r, "{} chunk without imatrix must equal the ref quantizer", t);
            let b = quantize_path(t, &x, n, Some(&w), None);
            prop_assert_eq!(&b, &quantize_path(t, &x, n, Some(&w), None));
        }
        let a = quantize_path(QuantType::Q8_K, &x, n, None, None);
        prop_assert_eq!(&a, &quantize_path(QuantType::Q8_K, &x, n, None, None));
    }

    #[test]
    fn random_bytes_dequantize_and_dot_without_panic(bytes in prop::collection::vec(any::<u8>(), 292 * 2)) {
        // Any bytes are valid blocks: decoding and the dot product must not panic (no overflow).
        let act = &bytes[..292];
        for t in ALL_TYPES {
            let q = &bytes[..t.type_size()];
            let y = quant::dequantize(t, q, None).unwrap();
            prop_assert_eq!(y.len(), 256);
            if t.dot_type().is_some() {
                let _ = quant::vec_dot_ref(t, q, act, 256).unwrap();
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4))]

    #[test]
    fn thread_count_independent(seed in any::<u64>()) {
        // 130 rows of 256: rows_per_task is 64, so two threads split the work.
        let (rows, n) = (130, 256);
        let mut s = seed | 1;
        let mut next = || { s ^= s << 13; s ^= s >> 7; s ^= s << 17; (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5 };
        let x: Vec<f32> = (0..rows * n).map(|_| next()).collect();
        let w: Vec<f32> = (0..n).map(|_| next() + 0.5).collect();
        for t in ALL_TYPES {
            prop_assert_eq!(quantize_path(t, &x, n, None, Some(1)), quantize_path(t, &x, n, None, Some(2)));
            if !t.is_activation_only() {
                prop_assert_eq!(quantize_path(t, &x, n, Some(&w), Some(1)), quantize_path(t, &x, n, Some(&w), Some(2)));
            }
        }
    }
}

#[test]
fn block_layouts_match_ggml() {
    assert_eq!(
        core::mem::size_of::<BlockQ2K>(),
        QuantType::Q2_K.type_size()
    );
    assert_eq!(
        core::mem::size_of::<BlockQ3K>(),
        QuantType::Q3_K.type_size()
    );
    assert_eq!(
        core::mem::size_of::<BlockQ4K>(),
        QuantType::Q4_K.type_size()
    );
    assert_eq!(
        core::mem::size_of::<BlockQ5K>(),
        QuantType::Q5_K.type_size()
    );
    assert_eq!(
        core::mem::size_of::<BlockQ6K>(),
        QuantType::Q6_K.type_size()
    );
    assert_eq!(
        core::mem::size_of::<BlockQ8K>(),
        QuantType::Q8_K.type_size()
    );
    // Codecs are registered under their own type.
    assert_eq!(<BlockQ4K as Block>::TYPE, QuantType::Q4_K);
    fn dot_is_q8k<B: DotBlock<Dot = BlockQ8K>>() {}
    dot_is_q8k::<BlockQ2K>();
    dot_is_q8k::<BlockQ6K>();
}

#[test]
fn scale_min_k4_round_trip() {
    use crate::quant::search::{get_scale_min_k4, pack_scale_min_k4};
    let ls = [0u8, 63, 17, 40, 1, 62, 33, 48];
    let lm = [63u8, 0, 5, 59, 31, 32, 16, 15];
    let q = pack_scale_min_k4(&ls, &lm);
    for j in 0..8 {
        assert_eq!(get_scale_min_k4(j, &q), (ls[j], lm[j]));
    }
}

mod lanes {
    use crate::quant::search::*;
    use proptest::prelude::*;

    /// Groups mixing ordinary values, constant groups (degenerate), zeros and negatives.
    fn groups<const N: usize, const K: usize>() -> impl Strategy<Value = Vec<[f32; N]>> {
        let group = prop_oneof![
            4 => prop::array::uniform::<_, N>(-1.0f32..1.0).prop_map(|a| a),
            1 => (-1.0f32..1.0).prop_map(|v| [v; N]),
            1 => Just([0.0f32; N]),
            1 => prop::array::uniform::<_, N>(-1.0f32..-0.01),
            1 => prop::array::uniform::<_, N>(prop_oneof![Just(0.0f32), 0.0f32..3.0]),
        ];
        prop::collection::vec(group, K)
    }

    fn lanes_of<const N: usize, const K: usize>(g: &[[f32; N]]) -> [[f32; K]; N] {
        let flat: Vec<f32> = g.iter().flatten().copied().collect();
        to_lanes::<N, K>(&flat)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn qkx_lanes_equal_scalar(x in groups::<32, 8>(), w in groups::<32, 8>(), mad in any::<bool>()) {
            let w: Vec<[f32; 32]> = w.iter().map(|g| g.map(f32::abs)).collect();
            let (xt, wt) = (lanes_of::<32, 8>(&x), lanes_of::<32, 8>(&w));
            let mut lt = [[0u8; 8]; 32];
            let (s, m) = if mad {
                make_qkx_quants_lanes::<32, 8, true>(15, &xt, &wt, &mut lt, -1.0, 0.1, 20)
            } else {
                make_qkx_quants_lanes::<32, 8, false>(15, &xt, &wt, &mut lt, -1.0, 0.1, 20)
            };
            for g in 0..8 {
                let (mut l, mut aux) = ([0u8; 32], [0u8; 32]);
                let (s2, m2) = make_qkx2_quants(15, &x[g], &w[g], &mut l, &mut aux, -1.0, 0.1, 20, mad);
                prop_assert_eq!((s[g].to_bits(), m[g].to_bits()), (s2.to_bits(), m2.to_bits()), "group {}", g);
                prop_assert_eq!(l, core::array::from_fn(|i| lt[i][g]));
                let (s3, m3) = make_qkx3_quants(15, &x[g], Some(&w[g]), &mut l, &mut aux, -1.0, 0.1, 20, mad);
                prop_assert_eq!((s3.to_bits(), m3.to_bits()), (s2.to_bits(), m2.to_bits()));
            }
        }

        #[test]
        fn qx_lanes_equal_scalar(x in groups::<16, 16>(), w in groups::<16, 16>(), weighted in any::<bool>()) {
            let xt = lanes_of::<16, 16>(&x);
            let w: Vec<[f32; 16]> = if weighted {
                w.iter().map(|g| g.map(f32::abs)).collect()
            } else {
                x.iter().map(|g| g.map(|v| v * v)).collect()
            };
            let wt = lanes_of::<16, 16>(&w);
            for nmax in [4, 32] {
                let mut lt = [[0i8; 16]; 16];
                let s = make_qx_quants_lanes::<16, 16>(nmax, &xt, &wt, &mut lt);
                for g in 0..16 {
                    let mut l = [0i8; 16];
                    let s2 = make_qx_quants(nmax, &x[g], &mut l, 1, if weighted { Some(&w[g]) } else { None });
                    prop_assert_eq!(s[g].to_bits(), s2.to_bits(), "nmax {} group {}", nmax, g);
                    prop_assert_eq!(l, core::array::from_fn(|i| lt[i][g]));
                }
            }
        }

        #[test]
        fn q3_lanes_equal_scalar(x in groups::<16, 16>(), tiny in any::<bool>()) {
            // `tiny`: scale a group below GROUP_MAX_EPS into the degenerate path.
            let mut x = x;
            if tiny {
                x[3] = x[3].map(|v| v * 1e-16);
            }
            let xt = lanes_of::<16, 16>(&x);
            let mut lt = [[0i8; 16]; 16];
            let s = make_q3_quants_lanes::<16, 16>(4, &xt, &mut lt);
            for g in 0..16 {
                let mut l = [0i8; 16];
                let s2 = make_q3_quants(4, &x[g], &mut l, true);
                prop_assert_eq!(s[g].to_bits(), s2.to_bits(), "group {}", g);
                prop_assert_eq!(l, core::array::from_fn(|i| lt[i][g]), "group {}", g);
            }
        }
    }
}
