//! Properties of the non-grid codecs IQ4_NL, IQ4_XS, TQ1_0, TQ2_0, MXFP4, NVFP4, Q1_0, Q2_0:
//! round-trip error within ggml's `test-quantize-fns` thresholds on its own test signal,
//! determinism and thread-count independence, all-zero blocks, and no panics on extreme values.

use kquants::quant::{self, Path};
use kquants::QuantType;
use proptest::prelude::*;

const TYPES: [QuantType; 8] = [
    QuantType::IQ4_NL,
    QuantType::IQ4_XS,
    QuantType::TQ1_0,
    QuantType::TQ2_0,
    QuantType::MXFP4,
    QuantType::NVFP4,
    QuantType::Q1_0,
    QuantType::Q2_0,
];

/// ggml `tests/test-quantize-fns.cpp` `generate_data`: `0.1 + amplitude·cos(i + offset)`.
fn ggml_test_data(offset: f32, n: usize) -> Vec<f32> {
    (0..n).map(|i| 0.1 + 2.0 * (i as f32 + offset).cos()).collect()
}

/// ggml `array_rmse`: sqrt(sum of squared differences) / n (sic: divided by n, not sqrt(n)).
fn ggml_rmse(a: &[f32], b: &[f32]) -> f32 {
    let s: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
    (s.sqrt() as f32) / a.len() as f32
}

/// `MAX_QUANTIZATION_TOTAL_ERROR*` from test-quantize-fns.cpp, per type: binary (Q1_0) 0.025,
/// ternary (TQ1_0, TQ2_0, Q2_0) 0.01, FP4 (NVFP4) 0.003, everything else 0.002.
fn ggml_threshold(t: QuantType) -> f32 {
    match t {
        QuantType::Q1_0 => 0.025,
        QuantType::TQ1_0 | QuantType::TQ2_0 | QuantType::Q2_0 => 0.01,
        QuantType::NVFP4 => 0.003,
        _ => 0.002,
    }
}

fn quantize_path(t: QuantType, x: &[f32], n: usize, imatrix: Option<&[f32]>, path: Path, threads: Option<usize>) -> Vec<u8> {
    let mut q = vec![0u8; x.len() / t.block_size() * t.type_size()];
    quant::quantize_into(t, x, n, imatrix, path, &mut q, threads).unwrap();
    q
}

#[test]
fn round_trip_error_within_ggml_thresholds() {
    // test-quantize-fns uses 32·128 values from generate_data(0.0, ...).
    let n = 32 * 128;
    let x = ggml_test_data(0.0, n);
    for t in TYPES {
        for path in [Path::Chunk, Path::Ref] {
            let q = quantize_path(t, &x, n, None, path, None);
            let y = quant::dequantize(t, &q, None).unwrap();
            let err = ggml_rmse(&x, &y);
            assert!(err < ggml_threshold(t), "{t} {path:?}: error {err} >= {}", ggml_threshold(t));
        }
    }
}

#[test]
fn all_zero_input_dequantizes_to_zero() {
    for t in TYPES {
        let n = 1024;
        let x = vec![0.0f32; 2 * n];
        let w = vec![1.0f32; n];
        for (imatrix, path) in [(None, Path::Chunk), (None, Path::Ref), (Some(&w[..]), Path::Chunk)] {
            let q = quantize_path(t, &x, n, imatrix, path, None);
            let y = quant::dequantize(t, &q, None).unwrap();
            assert!(y.iter().all(|v| *v == 0.0), "{t} {path:?}: nonzero output for zero input");
        }
        // Zero blocks between nonzero ones stay zero too.
        let mut x = ggml_test_data(1.0, n);
        x[256..512].fill(0.0);
        let q = quantize_path(t, &x, n, None, Path::Chunk, None);
        let y = quant::dequantize(t, &q, None).unwrap();
        assert!(y[256..512].iter().all(|v| *v == 0.0), "{t}: zero block not zero");
    }
}

#[test]
fn imatrix_ignored_where_ggml_ignores_it() {
    // Golden manifest: TQ1_0, TQ2_0, MXFP4, NVFP4, Q1_0 and Q2_0 give the same bytes with and
    // without an importance matrix; IQ4_NL and IQ4_XS use it.
    let n = 1024;
    let x = ggml_test_data(2.0, n);
    let w: Vec<f32> = (0..n).map(|i| 0.1 + (i % 7) as f32).collect();
    for t in TYPES {
        let plain = quantize_path(t, &x, n, None, Path::Chunk, None);
        let weighted = quantize_path(t, &x, n, Some(&w), Path::Chunk, None);
        let uses = matches!(t, QuantType::IQ4_NL | QuantType::IQ4_XS);
        assert_eq!(plain != weighted, uses, "{t}");
    }
}

/// Finite values of every magnitude, including the extremes.
fn extreme_value() -> impl Strategy<Value = f32> {
    prop_oneof![
        Just(0.0f32),
        Just(-0.0f32),
        Just(f32::MAX),
        Just(-f32::MAX),
        Just(f32::MIN_POSITIVE),
        Just(1e-45f32),
        Just(-1e-45f32),
        Just(65504.0f32),
        Just(1e30f32),
        -1e-30f32..1e-30f32,
        -1.0f32..1.0f32,
        any::<f32>().prop_filter("finite", |v| v.is_finite()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn deterministic_and_thread_count_independent(
        vals in prop::collection::vec(-3.0f32..3.0, 4 * 256),
        wts in prop::collection::vec(0.0f32..10.0, 256),
    ) {
        let n = 256;
        for t in TYPES {
            for imatrix in [None, Some(&wts[..])] {
                let a = quantize_path(t, &vals, n, imatrix, Path::Chunk, Some(1));
                let b = quantize_path(t, &vals, n, imatrix, Path::Chunk, Some(2));
                let c = quantize_path(t, &vals, n, imatrix, Path::Chunk, None);
                prop_assert_eq!(&a, &b, "{} threads 1 vs 2", t);
                prop_assert_eq!(&a, &c, "{} repeat", t);
            }
            let r1 = quantize_path(t, &vals, n, None, Path::Ref, Some(1));
            let r2 = quantize_path(t, &vals, n, None, Path::Ref, Some(2));
            prop_assert_eq!(r1, r2, "{} ref threads", t);
        }
    }

    #[test]
    fn extreme_values_never_panic(
        vals in prop::collection::vec(extreme_value(), 256),
        wts in prop::collection::vec(prop_oneof![Just(0.0f32), Just(f32::MAX), 0.0f32..1e6], 256),
        act in prop::collection::vec(any::<u8>(), 292),
    ) {
        let n = 256;
        for t in TYPES {
            for (imatrix, path) in [(None, Path::Chunk), (None, Path::Ref), (Some(&wts[..]), Path::Chunk)] {
                let q = quantize_path(t, &vals, n, imatrix, path, Some(1));
                let y = quant::dequantize(t, &q, None).unwrap();
                prop_assert_eq!(y.len(), n);
                // Any bytes are a valid activation row (Q8_0: f16 + int8; Q8_K: f32 + int8).
                let arow = t.dot_type().unwrap().row_bytes(n).unwrap();
                let _ = quant::vec_dot_ref(t, &q, &act[..arow], n).unwrap();
            }
        }
    }

    #[test]
    fn random_bytes_dequantize_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        for t in TYPES {
            let whole = bytes.len() / t.type_size() * t.type_size();
            let y = quant::dequantize(t, &bytes[..whole], None).unwrap();
            prop_assert_eq!(y.len(), whole / t.type_size() * t.block_size());
        }
    }
}
