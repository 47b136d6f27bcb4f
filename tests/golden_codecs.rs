//! Bit-exactness against ggml's own output (`../shared/golden/codecs`, ggml 0.25.3): for every
//! type kquants implements, both quantize paths (`q`: no imatrix, `q_imat`: with the golden
//! imatrix; `q_ref` where ggml's `_ref` quantizer differs), dequantize (`deq`, `deq_imat`) and the
//! scalar reference `vec_dot` against the exact value.

mod common;

use kquants::quant::{self, Path};
use kquants::QuantType;

/// Types whose codecs exist. Grows as codecs land; `every_listed_type_is_supported` keeps it honest.
const IMPLEMENTED: &[&str] = &[
    "F16",
    "BF16",
    "Q4_0",
    "Q4_1",
    "Q5_0",
    "Q5_1",
    "Q8_0",
    "Q8_1",
    "Q2_K",
    "Q3_K",
    "Q4_K",
    "Q5_K",
    "Q6_K",
    "Q8_K",
    "IQ4_NL",
    "IQ4_XS",
    "TQ1_0",
    "TQ2_0",
    "MXFP4",
    "NVFP4",
    "Q1_0",
    "Q2_0",
    "IQ2_XXS",
    "IQ2_XS",
    "IQ2_S",
    "IQ3_XXS",
    "IQ3_S",
    "IQ1_S",
    "IQ1_M",
];

#[test]
fn every_listed_type_is_supported() {
    for name in IMPLEMENTED {
        let t = QuantType::from_name(name).unwrap();
        assert!(quant::is_supported(t), "{name} listed but not implemented");
    }
}

fn check_type(name: &str) {
    let t = QuantType::from_name(name).unwrap();
    let g = common::codec_golden(name);
    let mut failures = Vec::new();
    let mut max_rel = 0.0f64;
    for set in ["synth", "real"] {
        let x = g[&format!("{set}_x")].f32();
        let n = g[&format!("{set}_x")].cols();
        let imatrix = g[&format!("{set}_imatrix")].f32();
        let ts = t.type_size();
        let mut cmp = |what: &str, got: &[u8], key: &str| {
            if let Some(d) = common::first_diff(got, g[key].u8(), ts) {
                failures.push(format!("{name} {set} {what} ({key}): {d}"));
            }
        };
        if let Some(want) = g.get(&format!("{set}_q")) {
            let got = quant::quantize(t, &x, n, None, None).unwrap();
            cmp("quantize", &got, &format!("{set}_q"));
            let _ = want;
        }
        if g.contains_key(&format!("{set}_q_imat")) {
            let got = quant::quantize(t, &x, n, Some(&imatrix), None).unwrap();
            cmp("quantize with imatrix", &got, &format!("{set}_q_imat"));
        }
        if let Some(want) = g.get(&format!("{set}_q_ref")) {
            let mut got = vec![0u8; want.data.len()];
            quant::quantize_into(t, &x, n, None, Path::Ref, &mut got, None).unwrap();
            let mut want = want.u8().to_vec();
            for i in ggml_undefined_ref_bytes(name, &x, n) {
                (got[i], want[i]) = (0, 0);
            }
            if let Some(d) = common::first_diff(&got, &want, ts) {
                failures.push(format!("{name} {set} reference quantize ({set}_q_ref): {d}"));
            }
        }
        for (qk, dk) in [("q", "deq"), ("q_imat", "deq_imat"), ("q_ref", "deq")] {
            let (Some(q), Some(d)) = (g.get(&format!("{set}_{qk}")), g.get(&format!("{set}_{dk}"))) else { continue };
            // deq belongs to q when q exists, else to q_ref (activation types).
            if qk == "q_ref" && g.contains_key(&format!("{set}_q")) {
                continue;
            }
            let got = quant::dequantize(t, q.u8(), None).unwrap();
            if let Some(diff) = common::first_f32_diff(&got, &d.f32()) {
                failures.push(format!("{name} {set} dequantize {qk}: {diff}"));
            }
        }
        // Scalar reference vec_dot against the exact f64 value of the same quantized operands.
        if let (Some(aq), Some(dt)) = (g.get(&format!("{set}_act_q")), t.dot_type()) {
            let arow = dt.row_bytes(n).unwrap();
            for (qk, vk) in [("q", "vecdot_f64"), ("q_imat", "vecdot_imat_f64")] {
                let (Some(q), Some(exact)) = (g.get(&format!("{set}_{qk}")), g.get(&format!("{set}_{vk}"))) else { continue };
                let exact = exact.f64();
                let wrow = t.row_bytes(n).unwrap();
                assert_eq!(exact.len(), q.rows(), "{name} {set}: {vk} needs one value per row");
                for (r, &ex) in exact.iter().enumerate() {
                    let w = &q.u8()[r * wrow..(r + 1) * wrow];
                    let a = &aq.u8()[r * arow..(r + 1) * arow];
                    let got = quant::vec_dot_ref(t, w, a, n).unwrap() as f64;
                    // Tolerance relative to sum|x*y| over the dequantized operands (the scale of the
                    // rounding error of any summation order). ggml's own kernels reach |err|/sum|x*y|
                    // of about 1e-8, except Q4_1/Q5_1 at up to ~5e-5 because the Q8_1 `s = d*sum(q)`
                    // field is fp16 (anchors/llamacpp.md §2). The scalar reference sums in f32 in its
                    // own order, so allow 1e-6 (measured max here: see `max_rel` below), and 1e-4
                    // (2x ggml's measured 5e-5) where the activation type carries an fp16 sum.
                    let wd = quant::dequantize(t, w, None).unwrap();
                    let ad = quant::dequantize(dt, a, None).unwrap();
                    let sum_abs: f64 = wd.iter().zip(&ad).map(|(&x, &y)| (x as f64 * y as f64).abs()).sum();
                    let rel = if dt == QuantType::Q8_1 { 1e-4 } else { 1e-6 };
                    let err = (got - ex).abs();
                    if sum_abs > 0.0 {
                        max_rel = max_rel.max(err / sum_abs);
                    }
                    if err > rel * sum_abs {
                        failures.push(format!(
                            "{name} {set} vec_dot_ref {qk} row {r}: got {got} exact {ex} (|err|/sum|x*y| = {:e}, allowed {rel:e})",
                            err / sum_abs
                        ));
                    }
                }
            }
        }
    }
    eprintln!("{name}: max |vec_dot_ref - exact| / sum|x*y| = {max_rel:e}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Byte offsets of `q_ref` that ggml computes from uninitialized memory. `quantize_row_iq4_nl_ref`
/// (ntry = -1) leaves its code buffer untouched for blocks with max |x| < GROUP_MAX_EPS (1e-15)
/// and packs whatever it held: the previous block's codes (defined, and checked), or, for such
/// blocks at the start of a row, uninitialized stack bytes. Only their 2 scale bytes are defined
/// there (scale 0, so the values are 0 whatever the codes).
fn ggml_undefined_ref_bytes(name: &str, x: &[f32], n: usize) -> Vec<usize> {
    let mut out = Vec::new();
    if name != "IQ4_NL" {
        return out;
    }
    let (bs, ts) = (32, 18);
    for (r, row) in x.chunks_exact(n).enumerate() {
        for (b, blk) in row.chunks_exact(bs).enumerate() {
            if blk.iter().any(|v| v.abs() >= 1e-15) {
                break;
            }
            let start = (r * (n / bs) + b) * ts;
            out.extend(start + 2..start + ts);
        }
    }
    out
}

#[test]
fn golden_bit_exact() {
    for name in IMPLEMENTED {
        check_type(name);
    }
}
