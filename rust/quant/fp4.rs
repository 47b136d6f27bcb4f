//! The 4-bit float types MXFP4 and NVFP4: E2M1 values with a shared scale.
//!
//! * MXFP4 (OCP microscaling): 32 values per block, one E8M0 exponent byte (a power of two).
//! * NVFP4: 64 values per block in four sub-blocks of 16, each with an unsigned E4M3 (UE4M3)
//!   scale byte.
//!
//! Both store E2M1 codes as nibbles, low nibbles holding the first half of a (sub-)block and high
//! nibbles the second half, and both decode codes through [`KVALUES_FP4`] (E2M1 values doubled,
//! so the scales carry an extra factor ½). Quantization ignores importance weights, as ggml does.
#![forbid(unsafe_code)]

use super::legacy::BlockQ8_0 as Q8_0;
use super::{f16_to_f32, Block, DotBlock};
use crate::types::QuantType;

/// E2M1 code → value × 2 (ggml `kvalues_mxfp4`, shared by MXFP4 and NVFP4). Codes 0 and 8 both
/// decode to zero.
pub const KVALUES_FP4: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// Values per MXFP4 block.
pub const QK_MXFP4: usize = 32;
/// Values per NVFP4 block.
pub const QK_NVFP4: usize = 64;
/// Values per NVFP4 sub-block (one UE4M3 scale each).
pub const QK_NVFP4_SUB: usize = 16;

/// MXFP4 block (ggml `block_mxfp4`): 32 values as `KVALUES_FP4[code] * 2^(e - 128)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockMXFP4 {
    /// Shared E8M0 exponent.
    pub e: u8,
    /// E2M1 codes: value `j` in the low nibble of byte `j`, value `j + 16` in its high nibble.
    pub qs: [u8; QK_MXFP4 / 2],
}

/// NVFP4 block (ggml `block_nvfp4`): four sub-blocks of 16 values, each
/// `KVALUES_FP4[code] * ue4m3(d[s]) / 2`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockNVFP4 {
    /// UE4M3 scale per sub-block of 16.
    pub d: [u8; QK_NVFP4 / QK_NVFP4_SUB],
    /// E2M1 codes; sub-block `s` uses bytes `8s..8s+8` (low nibbles first half, high second).
    pub qs: [u8; QK_NVFP4 / 2],
}

const _: () = assert!(core::mem::size_of::<BlockMXFP4>() == 17 && core::mem::align_of::<BlockMXFP4>() == 1);
const _: () = assert!(core::mem::size_of::<BlockNVFP4>() == 36 && core::mem::align_of::<BlockNVFP4>() == 1);
const _: () = assert!(QuantType::MXFP4.type_size() == 17 && QuantType::MXFP4.block_size() == QK_MXFP4);
const _: () = assert!(QuantType::NVFP4.type_size() == 36 && QuantType::NVFP4.block_size() == QK_NVFP4);

/// E8M0 exponent byte → `2^(x - 128)`, i.e. half the E8M0 value (ggml `ggml_e8m0_to_fp32_half`).
/// `x` 0 and 1 give the subnormals 2^-128 and 2^-127; 255 (E8M0's NaN) is not special-cased.
#[inline(always)]
pub fn e8m0_to_f32_half(x: u8) -> f32 {
    let bits = if x < 2 { 0x0020_0000u32 << x } else { ((x - 1) as u32) << 23 };
    f32::from_bits(bits)
}

/// The E8M0 exponent MXFP4 picks for a block with absolute maximum `amax`:
/// `floor(log2(amax)) - 2 + 127` (so the largest code, 6 = 12/2, covers `amax`), 0 for `amax == 0`.
#[inline]
pub fn mxfp4_exponent(amax: f32) -> u8 {
    let bits = amax.to_bits();
    let (exp, man) = ((bits >> 23) as i32, bits & 0x7F_FFFF);
    if exp > 0 && exp < 255 && man < 0x7F_0000 {
        // Normal amax = m·2^(exp-127) with m < 1.9921875: log2(amax) lies in
        // [exp-127, exp-127+0.9929], at least 0.007 from the next integer, far more than the
        // rounding of a float of magnitude <= 128, so its floor is exp-127.
        (exp - 127 - 2 + 127) as u8
    } else if amax > 0.0 {
        // ggml: floorf(log2f(amax)). The f32 log2 is taken as the correctly rounded value of the
        // f64 log2 (what glibc's log2f returns); the floor then sees the same f32 near powers of
        // two (amax just below 2^k rounds to k for k >= 2).
        let l = ((amax as f64).log2() as f32).floor();
        // ggml converts this float to uint8_t; on x86 that is a truncating conversion to int32
        // followed by keeping the low byte (only reachable for amax < 2^-125).
        ((l - 2.0 + 127.0) as i32) as u8
    } else {
        0
    }
}

/// UE4M3 scale byte → f32 (ggml `ggml_ue4m3_to_fp32`): the E4M3 value halved; 0 and 0x7F (NaN)
/// decode to zero. The sign bit is ignored.
#[inline(always)]
pub fn ue4m3_to_f32(x: u8) -> f32 {
    if x == 0 || x == 0x7F {
        return 0.0;
    }
    let exp = ((x >> 3) & 0xF) as i32;
    let man = (x & 7) as f32;
    // Every product below is exact: small integers times powers of two.
    let raw = if exp == 0 {
        man * f32::from_bits(((127 - 9) as u32) << 23)
    } else {
        (1.0 + man / 8.0) * f32::from_bits(((exp - 7 + 127) as u32) << 23)
    };
    raw * 0.5
}

/// f32 → UE4M3 byte (ggml `ggml_fp32_to_ue4m3`): non-positive (and NaN) → 0, clamp to 448,
/// subnormals rounded half up, normals rounded on the first dropped mantissa bit, overflow → 0x7E.
#[inline]
pub fn f32_to_ue4m3(x: f32) -> u8 {
    // Written as ggml does so that NaN also takes this branch.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    if !(x > 0.0) {
        return 0;
    }
    let x = if x > 448.0 { 448.0 } else { x };
    let bits = x.to_bits();
    let fp32_exp = ((bits >> 23) & 0xFF) as i32 - 127;
    let fp32_man = ((bits >> 20) & 7) as i32;
    let mut exp = fp32_exp + 7;
    if exp <= 0 {
        // x < 2^-6 here, so x * 512 + 0.5 < 9 and the truncation is exact.
        let man = ((x * 512.0 + 0.5) as i32).min(7);
        return if man < 1 { 0 } else { man as u8 };
    }
    if exp >= 15 {
        return 0x7E;
    }
    let mut man = fp32_man + ((bits >> 19) & 1) as i32;
    if man > 7 {
        man = 0;
        exp += 1;
        if exp >= 15 {
            return 0x7E;
        }
    }
    ((exp << 3) | man) as u8
}

/// Index of the E2M1 code whose value times `e` is nearest to `x`; the first such code on ties
/// (ggml `best_index_mxfp4`, which scans all 16 codes computing `|k·e - x|`).
///
/// Only the 8 non-negative codes are scanned, against `|x|`: float subtraction is sign-symmetric,
/// so code `8 + i` (value `-k_i`) has for `x` exactly the error code `i` has for `-x`; and for
/// `x >= 0` no negative code beats code 0 (error `x`), while for `x < 0` no positive one does.
/// Negative codes come after positive ones, so they win only when strictly better than code 0.
#[inline(always)]
fn best_index_fp4(x: f32, e: f32) -> u8 {
    let a = x.abs();
    let mut best = 0u8;
    let mut best_err = (KVALUES_FP4[0] as f32 * e - a).abs();
    for (i, &k) in KVALUES_FP4.iter().enumerate().take(8).skip(1) {
        let err = (k as f32 * e - a).abs();
        if err < best_err {
            best = i as u8;
            best_err = err;
        }
    }
    if x < 0.0 && best != 0 {
        best + 8
    } else {
        best
    }
}

/// Decision thresholds between neighbouring non-negative E2M1 values, in units of the scale
/// (midpoints of 0, 1, 2, 3, 4, 6, 8, 12).
const MIDPOINTS: [f32; 7] = [0.5, 1.5, 2.5, 3.5, 5.0, 7.0, 10.0];

/// [`best_index_fp4`] without the scan, for `0 < d <= 2^123` and `|v| <= 16·d`.
///
/// Then every `k·d` and every `m·d` (m in [`MIDPOINTS`]) is exact (d is a power of two, or has
/// 4 significant bits for UE4M3, and nothing overflows), and ggml's float errors against the two
/// values bracketing `|x|` are exact (Sterbenz: neighbours differ by at most a factor 2, or one is
/// 0). Farther values have strictly larger rounded errors. So the scan picks the nearest value,
/// the lower one on ties: the number of midpoints strictly below `|x|`.
#[inline(always)]
fn fast_index(v: f32, t: &[f32; 7]) -> u8 {
    let a = v.abs();
    let mut i = 0u8;
    for tk in t {
        i += (a > *tk) as u8;
    }
    // Negative values use the mirrored codes 9..15; code 0 stays 0 (see best_index_fp4).
    i + (((v < 0.0) & (i != 0)) as u8) * 8
}

/// Quantize `x` (2·`half` values, largest magnitude `amax`) with scale `d` into `half` bytes: value `j` in the low nibble
/// of byte `j`, value `j + half` in the high nibble.
#[inline(always)]
fn pack_fp4(x: &[f32], amax: f32, d: f32, qs: &mut [u8]) {
    let half = qs.len();
    // Beyond 16·d the errors against 8·d and 12·d may round (and tie): scan there. The
    // quantizers' own scales keep amax below 16·d except for clamped UE4M3 scales.
    if d > 0.0 && d <= 2f32.powi(123) && amax <= 16.0 * d {
        let t = MIDPOINTS.map(|m| m * d);
        for (j, q) in qs.iter_mut().enumerate() {
            *q = fast_index(x[j], &t) | (fast_index(x[j + half], &t) << 4);
        }
    } else {
        // d == 0 (every code decodes to 0: ggml picks code 0) or 12·d overflows.
        for (j, q) in qs.iter_mut().enumerate() {
            *q = best_index_fp4(x[j], d) | (best_index_fp4(x[j + half], d) << 4);
        }
    }
}

#[inline(always)]
fn amax_of(x: &[f32]) -> f32 {
    // ggml: `if (amax < fabsf(v)) amax = fabsf(v);` — inputs are finite, so max is the same.
    super::abs_max(x)
}

impl Block for BlockMXFP4 {
    const TYPE: QuantType = QuantType::MXFP4;

    #[inline(always)]
    fn quantize_row(src: &[f32], dst: &mut [Self], _imatrix: Option<&[f32]>) {
        for (x, y) in src.chunks_exact(QK_MXFP4).zip(dst.iter_mut()) {
            let amax = amax_of(x);
            let e = mxfp4_exponent(amax);
            y.e = e;
            pack_fp4(x, amax, e8m0_to_f32_half(e), &mut y.qs);
        }
    }

    #[inline(always)]
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_MXFP4)) {
            let d = e8m0_to_f32_half(b.e);
            let (lo, hi) = y.split_at_mut(QK_MXFP4 / 2);
            for ((q, l), h) in b.qs.iter().zip(lo).zip(hi) {
                *l = KVALUES_FP4[(q & 0xF) as usize] as f32 * d;
                *h = KVALUES_FP4[(q >> 4) as usize] as f32 * d;
            }
        }
    }
}

impl Block for BlockNVFP4 {
    const TYPE: QuantType = QuantType::NVFP4;

    #[inline(always)]
    fn quantize_row(src: &[f32], dst: &mut [Self], _imatrix: Option<&[f32]>) {
        for (x, y) in src.chunks_exact(QK_NVFP4).zip(dst.iter_mut()) {
            for (s, xb) in x.chunks_exact(QK_NVFP4_SUB).enumerate() {
                let amax = amax_of(xb);
                let ue = f32_to_ue4m3(amax / 6.0);
                y.d[s] = ue;
                let d = ue4m3_to_f32(ue);
                pack_fp4(xb, amax, d, &mut y.qs[s * QK_NVFP4_SUB / 2..(s + 1) * QK_NVFP4_SUB / 2]);
            }
        }
    }

    #[inline(always)]
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_NVFP4)) {
            for (s, ys) in y.chunks_exact_mut(QK_NVFP4_SUB).enumerate() {
                let d = ue4m3_to_f32(b.d[s]);
                let qs = &b.qs[s * QK_NVFP4_SUB / 2..(s + 1) * QK_NVFP4_SUB / 2];
                let (lo, hi) = ys.split_at_mut(QK_NVFP4_SUB / 2);
                for ((q, l), h) in qs.iter().zip(lo).zip(hi) {
                    *l = KVALUES_FP4[(q & 0xF) as usize] as f32 * d;
                    *h = KVALUES_FP4[(q >> 4) as usize] as f32 * d;
                }
            }
        }
    }
}

/// Integer dot of `n` nibble-packed E2M1 codes (low nibbles against `y[..n/2]`, high nibbles
/// against `y[n/2..]`), in units of the doubled E2M1 values.
#[inline(always)]
fn dot_codes(qs: &[u8], y: &[i8]) -> i32 {
    let half = qs.len();
    let (mut lo, mut hi) = (0i32, 0i32);
    for (j, q) in qs.iter().enumerate() {
        lo += y[j] as i32 * KVALUES_FP4[(q & 0xF) as usize] as i32;
        hi += y[j + half] as i32 * KVALUES_FP4[(q >> 4) as usize] as i32;
    }
    lo + hi
}

/// Scalar MXFP4 · Q8_0 (ggml `ggml_vec_dot_mxfp4_q8_0_generic`): one Q8_0 block per MXFP4 block.
pub fn vec_dot_mxfp4_q8_0(x: &[BlockMXFP4], y: &[Q8_0]) -> f32 {
    let mut sumf = 0.0f32;
    for (b, a) in x.iter().zip(y) {
        let d = f16_to_f32(a.d) * e8m0_to_f32_half(b.e);
        sumf += d * dot_codes(&b.qs, &a.qs) as f32;
    }
    sumf
}

/// Scalar NVFP4 · Q8_0 (ggml `ggml_vec_dot_nvfp4_q8_0_generic`): two Q8_0 blocks per NVFP4
/// block, one float term per sub-block of 16.
pub fn vec_dot_nvfp4_q8_0(x: &[BlockNVFP4], y: &[Q8_0]) -> f32 {
    let mut sumf = 0.0f32;
    for (b, a) in x.iter().zip(y.chunks_exact(2)) {
        for s in 0..QK_NVFP4 / QK_NVFP4_SUB {
            let d = ue4m3_to_f32(b.d[s]);
            let ab = &a[s / 2];
            let dy = f16_to_f32(ab.d);
            let off = (s % 2) * QK_NVFP4_SUB;
            let qy = &ab.qs[off..off + QK_NVFP4_SUB];
            let sumi = dot_codes(&b.qs[s * QK_NVFP4_SUB / 2..(s + 1) * QK_NVFP4_SUB / 2], qy);
            sumf += dy * d * sumi as f32;
        }
    }
    sumf
}

impl DotBlock for BlockMXFP4 {
    type Dot = Q8_0;
    fn vec_dot_ref(lhs: &[Self], rhs: &[Self::Dot]) -> f32 {
        vec_dot_mxfp4_q8_0(lhs, rhs)
    }
}

impl DotBlock for BlockNVFP4 {
    type Dot = Q8_0;
    fn vec_dot_ref(lhs: &[Self], rhs: &[Self::Dot]) -> f32 {
        vec_dot_nvfp4_q8_0(lhs, rhs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ggml's 16-code scan, written out.
    fn best_index_scan(x: f32, e: f32) -> u8 {
        let mut best = 0u8;
        let mut best_err = (KVALUES_FP4[0] as f32 * e - x).abs();
        for (i, &k) in KVALUES_FP4.iter().enumerate().skip(1) {
            let err = (k as f32 * e - x).abs();
            if err < best_err {
                best = i as u8;
                best_err = err;
            }
        }
        best
    }

    #[test]
    fn fast_index_matches_full_scan() {
        // Every MXFP4 scale and every UE4M3 scale the quantizers can use.
        let mut scales: Vec<f32> = (0u8..=253).map(e8m0_to_f32_half).collect();
        scales.extend((1u8..0x7F).map(ue4m3_to_f32));
        for d in scales {
            if !(d > 0.0 && d <= 2f32.powi(123)) {
                continue;
            }
            let t = MIDPOINTS.map(|m| m * d);
            for k in -128i32..=128 {
                let v = k as f32 / 8.0 * d;
                for v in [v, f32::from_bits(v.to_bits().wrapping_add(1)), f32::from_bits(v.to_bits().wrapping_sub(1))] {
                    if v.is_finite() && v.abs() <= 16.0 * d {
                        assert_eq!(fast_index(v, &t), best_index_scan(v, d), "x {v:e} d {d:e}");
                    }
                }
            }
            // Pseudo-random magnitudes across the whole range up to 16·d.
            let mut s = 0x9E37_79B9u32 ^ d.to_bits();
            for _ in 0..2000 {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let v = (s >> 8) as f32 / (1u32 << 24) as f32 * 32.0 * d - 16.0 * d;
                assert_eq!(fast_index(v, &t), best_index_scan(v, d), "x {v:e} d {d:e}");
            }
            for v in [0.0, -0.0, 1e-45, -1e-45, 16.0 * d, -16.0 * d] {
                assert_eq!(fast_index(v, &t), best_index_scan(v, d), "x {v:e} d {d:e}");
            }
        }
    }

    #[test]
    fn best_index_matches_full_scan() {
        for e in [1.0f32, 0.25, 2f32.powi(-128), 2f32.powi(125), 3.0e-5] {
            let mut x = -14.0f32;
            while x <= 14.0 {
                for v in [x * e, -x * e, f32::from_bits((x * e).to_bits().wrapping_add(1))] {
                    assert_eq!(best_index_fp4(v, e), best_index_scan(v, e), "x {v:e} e {e:e}");
                }
                x += 0.125;
            }
        }
        for v in [f32::MAX, -f32::MAX, 0.0, -0.0, f32::MIN_POSITIVE, -1e-45] {
            for e in [1.0f32, 2f32.powi(125), 2f32.powi(-128)] {
                assert_eq!(best_index_fp4(v, e), best_index_scan(v, e), "x {v:e} e {e:e}");
            }
        }
    }

    #[test]
    fn ue4m3_round_trips_every_code() {
        // Every code with exponent field < 15 decodes to a value that encodes back to the same
        // code (after undoing the ½ factor of the decoder). ggml's encoder sends every value with
        // exponent 15 (256..448) to 0x7E, so codes 0x78..0x7D are never produced.
        for code in 1u8..0x7F {
            let v = ue4m3_to_f32(code) * 2.0;
            let want = if code >= 0x78 { 0x7E } else { code };
            assert_eq!(f32_to_ue4m3(v), want, "code {code:#x} value {v}");
        }
        assert_eq!(f32_to_ue4m3(1e9), 0x7E);
        assert_eq!(f32_to_ue4m3(-1.0), 0);
        assert_eq!(f32_to_ue4m3(f32::NAN), 0);
        assert_eq!(ue4m3_to_f32(0x7F), 0.0);
    }

    #[test]
    fn e8m0_half_is_a_power_of_two() {
        for e in 0u8..=254 {
            assert_eq!(e8m0_to_f32_half(e) as f64, 2f64.powi(e as i32 - 128), "e = {e}");
        }
    }

    #[test]
    fn mxfp4_exponent_matches_platform_log2f_everywhere() {
        // Every 997th positive finite float, plus the last 300 floats below each power of two.
        let want = |v: f32| ((v.log2().floor() - 2.0 + 127.0) as i32) as u8;
        let mut b = 1u32;
        while b < 0x7F80_0000 {
            let v = f32::from_bits(b);
            assert_eq!(mxfp4_exponent(v), want(v), "amax {v:e}");
            b += 997;
        }
        for e in 1u32..255 {
            for k in 1..300 {
                let v = f32::from_bits((e << 23) - k);
                assert_eq!(mxfp4_exponent(v), want(v), "amax {v:e}");
            }
        }
    }

    #[test]
    fn mxfp4_exponent_matches_platform_log2f_near_powers_of_two() {
        // ggml calls log2f; our f64-based value must floor the same way around every power of two.
        for k in -126i32..=127 {
            let p = 2f32.powi(k);
            for v in [p, f32::from_bits(p.to_bits() - 1), f32::from_bits(p.to_bits() + 1)] {
                if v > 0.0 && v.is_finite() {
                    let want = ((v.log2().floor() - 2.0 + 127.0) as i32) as u8;
                    assert_eq!(mxfp4_exponent(v), want, "amax {v:e}");
                }
            }
        }
    }
}
