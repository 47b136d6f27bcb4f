//! Legacy codecs (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1) beyond the shared golden harness:
//! the matmul activation quantizers against ggml-cpu's bytes, and property tests.

mod common;

use kquants::quant::legacy::{quantize_row_q8_0_act, quantize_row_q8_1_act, BlockQ8_0, BlockQ8_1};
use kquants::quant::{self, Path};
use kquants::QuantType;
use proptest::prelude::*;

const WEIGHT_TYPES: [QuantType; 5] = [QuantType::Q4_0, QuantType::Q4_1, QuantType::Q5_0, QuantType::Q5_1, QuantType::Q8_0];
const ALL_TYPES: [QuantType; 6] =
    [QuantType::Q4_0, QuantType::Q4_1, QuantType::Q5_0, QuantType::Q5_1, QuantType::Q8_0, QuantType::Q8_1];

fn act_q8_0(x: &[f32]) -> Vec<u8> {
    let mut out = vec![BlockQ8_0::default(); x.len() / 32];
    quantize_row_q8_0_act(x, &mut out);
    bytemuck::cast_slice(&out).to_vec()
}

fn act_q8_1(x: &[f32]) -> Vec<u8> {
    let mut out = vec![BlockQ8_1::default(); x.len() / 32];
    quantize_row_q8_1_act(x, &mut out);
    bytemuck::cast_slice(&out).to_vec()
}

/// `act_q` in every file whose vec_dot type is Q8_0/Q8_1 is ggml-cpu's x86 activation quantizer.
#[test]
fn activation_quantizers_match_ggml_cpu_act_q() {
    for name in ["Q4_0", "Q5_0", "Q8_0", "Q4_1", "Q5_1"] {
        let g = common::codec_golden(name);
        let q8_1 = name.ends_with("_1");
        for set in ["synth", "real"] {
            let x = g[&format!("{set}_act")].f32();
            let got = if q8_1 { act_q8_1(&x) } else { act_q8_0(&x) };
            let ts = if q8_1 { 36 } else { 34 };
            if let Some(d) = common::first_diff(&got, g[&format!("{set}_act_q")].u8(), ts) {
                panic!("{name} {set} act_q: {d}");
            }
        }
    }
}

/// The `ties_*` rows, built so that the SIMD and reference quantizers disagree: the activation
/// quantizer gives `ties_q_cpu`, the reference path `ties_q_ref`.
#[test]
fn tie_rows_separate_reference_and_activation_quantizers() {
    for (t, act) in [(QuantType::Q8_0, act_q8_0 as fn(&[f32]) -> Vec<u8>), (QuantType::Q8_1, act_q8_1)] {
        let g = common::codec_golden(t.name());
        let x = g["ties_x"].f32();
        let n = g["ties_x"].cols();
        let want_cpu = g["ties_q_cpu"].u8();
        let want_ref = g["ties_q_ref"].u8();
        assert_ne!(want_cpu, want_ref, "tie rows must discriminate");
        let got = act(&x);
        if let Some(d) = common::first_diff(&got, want_cpu, t.type_size()) {
            panic!("{t} ties activation quantizer: {d}");
        }
        let mut got = vec![0u8; want_ref.len()];
        quant::quantize_into(t, &x, n, None, Path::Ref, &mut got, None).unwrap();
        if let Some(d) = common::first_diff(&got, want_ref, t.type_size()) {
            panic!("{t} ties reference quantizer: {d}");
        }
    }
}

/// ggml test-quantize-fns' synthetic data: `0.1 + amplitude * cos(i + offset)`.
fn cosine_data(offset: f32, n: usize, amplitude: f32) -> Vec<f32> {
    (0..n).map(|i| (0.1f64 + (amplitude * (i as f32 + offset).cos()) as f64) as f32).collect()
}

/// test-quantize-fns' error measure: `sqrt(Σ (a - b)²) / n` (in f64, as ggml computes it).
/// Not a true RMS: it scales as `1/sqrt(n)`, so it is only compared at ggml's `n = 4096`.
fn ggml_rmse(a: &[f32], b: &[f32]) -> f64 {
    let s: f64 = a.iter().zip(b).map(|(&x, &y)| ((x - y) as f64).powi(2)).sum();
    s.sqrt() / a.len() as f64
}

/// ggml's MAX_QUANTIZATION_TOTAL_ERROR (test-quantize-fns.cpp) for every 4-bit-or-more type.
const MAX_QUANTIZATION_TOTAL_ERROR: f64 = 0.002;

#[test]
fn round_trip_error_on_ggml_test_data() {
    // test_size 32*128 and the data sets of test-quantize-fns.
    let n = 32 * 128;
    for (offset, amp) in [(0.0, 2.0), (1.0, 2.0), (3.0, 1.0), (4.0, 1.5)] {
        let x = cosine_data(offset, n, amp);
        for t in ALL_TYPES {
            let q = quant::quantize(t, &x, n, None, None).unwrap();
            let e = ggml_rmse(&x, &quant::dequantize(t, &q, None).unwrap());
            assert!(e < MAX_QUANTIZATION_TOTAL_ERROR, "{t} offset {offset}: error {e}");
        }
    }
}

fn imatrix_strategy(n: usize) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(prop_oneof![Just(0.0f32), 0.0f32..10.0, 1e-6f32..1e-3], n)
}

/// Values that stress the conversions: fp16 limits, huge, subnormal, signed zeros.
fn extreme_value() -> impl Strategy<Value = f32> {
    prop_oneof![
        Just(65504.0f32),
        Just(-65504.0f32),
        Just(1e30f32),
        Just(-1e30f32),
        Just(f32::MAX),
        Just(f32::MIN),
        Just(1e-40f32),
        Just(-1e-45f32),
        Just(f32::MIN_POSITIVE),
        Just(0.0f32),
        Just(-0.0f32),
        -1.0f32..1.0,
        (-1e-38f32..1e-38),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Same bytes on every call and for any thread count, with and without an importance matrix.
    /// Rows of 32 and more than 512 rows, so that the work is split into several rayon tasks.
    #[test]
    fn deterministic_and_thread_count_independent(seed in any::<u64>(), rows in 513usize..1100, imatrix in imatrix_strategy(32)) {
        let mut s = seed | 1;
        let x: Vec<f32> = (0..rows * 32)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / 16_777_216.0 - 0.5) * 4.0
            })
            .collect();
        for t in WEIGHT_TYPES {
            for w in [None, Some(imatrix.as_slice())] {
                let a = quant::quantize(t, &x, 32, w, Some(1)).unwrap();
                let b = quant::quantize(t, &x, 32, w, Some(2)).unwrap();
                let c = quant::quantize(t, &x, 32, w, Some(2)).unwrap();
                prop_assert_eq!(&a, &b, "{} threads 1 vs 2", t);
                prop_assert_eq!(&b, &c, "{} repeat", t);
            }
        }
        let mut a = vec![0u8; QuantType::Q8_1.row_bytes(x.len()).unwrap()];
        let mut b = a.clone();
        quant::quantize_into(QuantType::Q8_1, &x, 32, None, Path::Ref, &mut a, Some(1)).unwrap();
        quant::quantize_into(QuantType::Q8_1, &x, 32, None, Path::Ref, &mut b, Some(2)).unwrap();
        prop_assert_eq!(a, b);
    }

    /// Round-trip error of ggml's test data at random phase and amplitude, both quantize paths.
    #[test]
    fn round_trip_error_below_ggml_threshold(offset in 0.0f32..100.0, amp in 0.25f32..2.0, imatrix in imatrix_strategy(4096)) {
        // The measure divides by n, so the threshold only means something at ggml's test size.
        let n = 32 * 128;
        let x = cosine_data(offset, n, amp);
        // Strictly positive weights for the imatrix path: a zero weight lets a value go anywhere.
        let w: Vec<f32> = imatrix.iter().map(|v| v + 0.1).collect();
        for t in ALL_TYPES {
            let q = quant::quantize(t, &x, n, None, None).unwrap();
            let e = ggml_rmse(&x, &quant::dequantize(t, &q, None).unwrap());
            prop_assert!(e < MAX_QUANTIZATION_TOTAL_ERROR, "{} error {}", t, e);
            if t != QuantType::Q8_1 {
                let q = quant::quantize(t, &x, n, Some(&w), None).unwrap();
                let e = ggml_rmse(&x, &quant::dequantize(t, &q, None).unwrap());
                prop_assert!(e < MAX_QUANTIZATION_TOTAL_ERROR, "{} imatrix error {}", t, e);
            }
        }
    }

    /// Zero blocks dequantize to zeros, whatever their neighbours and the imatrix.
    #[test]
    fn zero_blocks_give_zeros(
        other in prop::collection::vec(-3.0f32..3.0, 32),
        zero_at in 0usize..4,
        imatrix in imatrix_strategy(128),
    ) {
        let mut x = vec![0.0f32; 128];
        for b in 0..4 {
            if b != zero_at {
                x[b * 32..b * 32 + 32].copy_from_slice(&other);
            }
        }
        for t in ALL_TYPES {
            let paths: &[Option<&[f32]>] = if t == QuantType::Q8_1 { &[None] } else { &[None, Some(&imatrix)] };
            for &w in paths {
                let q = quant::quantize(t, &x, 128, w, None).unwrap();
                let d = quant::dequantize(t, &q, None).unwrap();
                prop_assert!(d[zero_at * 32..zero_at * 32 + 32].iter().all(|&v| v == 0.0), "{} {:?}", t, &d[zero_at * 32..zero_at * 32 + 32]);
                let q = quant::quantize(t, &[0.0; 128], 128, w, None).unwrap();
                prop_assert!(quant::dequantize(t, &q, None).unwrap().iter().all(|&v| v == 0.0), "{} all zero", t);
            }
        }
    }

    /// Extreme finite inputs never panic in quantize (both paths), dequantize, the activation
    /// quantizers or the reference dot product.
    #[test]
    fn extreme_values_never_panic(x in prop::collection::vec(extreme_value(), 64), imatrix in imatrix_strategy(64)) {
        for t in WEIGHT_TYPES {
            for w in [None, Some(imatrix.as_slice())] {
                let q = quant::quantize(t, &x, 64, w, None).unwrap();
                let _ = quant::dequantize(t, &q, None).unwrap();
                let dt = t.dot_type().unwrap();
                let a = if dt == QuantType::Q8_1 { act_q8_1(&x) } else { act_q8_0(&x) };
                let _ = quant::vec_dot_ref(t, &q, &a, 64).unwrap();
            }
        }
        let mut q = vec![0u8; QuantType::Q8_1.row_bytes(64).unwrap()];
        quant::quantize_into(QuantType::Q8_1, &x, 64, None, Path::Ref, &mut q, None).unwrap();
        let _ = quant::dequantize(QuantType::Q8_1, &q, None).unwrap();
    }

    /// The activation quantizers and the reference quantizers agree except at near-ties: every
    /// level differs by at most one and the scales are equal.
    #[test]
    fn activation_and_reference_quantizers_differ_at_most_by_one(x in prop::collection::vec(-4.0f32..4.0, 256)) {
        let a = act_q8_0(&x);
        let mut r = vec![0u8; a.len()];
        quant::quantize_into(QuantType::Q8_0, &x, 256, None, Path::Ref, &mut r, None).unwrap();
        let (a, r): (&[BlockQ8_0], &[BlockQ8_0]) = (bytemuck::cast_slice(&a), bytemuck::cast_slice(&r));
        for (ba, br) in a.iter().zip(r) {
            prop_assert_eq!(ba.d, br.d);
            for (qa, qr) in ba.qs.iter().zip(&br.qs) {
                prop_assert!((*qa as i32 - *qr as i32).abs() <= 1);
            }
        }
    }
}
