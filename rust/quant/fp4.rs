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

use super::act_view::Q8_0;
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
    if amax > 0.0 {
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
/// (ggml `best_index_mxfp4`, same float operations).
#[inline(always)]
fn best_index_fp4(x: f32, e: f32) -> u8 {
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

/// Quantize `x` (2·`half` values) with scale `d` into `half` bytes: value `j` in the low nibble
/// of byte `j`, value `j + half` in the high nibble.
#[inline(always)]
fn pack_fp4(x: &[f32], d: f32, qs: &mut [u8]) {
    let half = qs.len();
    for (j, q) in qs.iter_mut().enumerate() {
        *q = best_index_fp4(x[j], d) | (best_index_fp4(x[j + half], d) << 4);
    }
}

#[inline(always)]
fn amax_of(x: &[f32]) -> f32 {
    // ggml: `if (amax < fabsf(v)) amax = fabsf(v);` — inputs are finite, so max is the same.
    x.iter().fold(0.0f32, |m, v| if m < v.abs() { v.abs() } else { m })
}

impl Block for BlockMXFP4 {
    const TYPE: QuantType = QuantType::MXFP4;

    fn quantize_row(src: &[f32], dst: &mut [Self], _imatrix: Option<&[f32]>) {
        for (x, y) in src.chunks_exact(QK_MXFP4).zip(dst.iter_mut()) {
            let e = mxfp4_exponent(amax_of(x));
            y.e = e;
            pack_fp4(x, e8m0_to_f32_half(e), &mut y.qs);
        }
    }

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

    fn quantize_row(src: &[f32], dst: &mut [Self], _imatrix: Option<&[f32]>) {
        for (x, y) in src.chunks_exact(QK_NVFP4).zip(dst.iter_mut()) {
            for (s, xb) in x.chunks_exact(QK_NVFP4_SUB).enumerate() {
                let ue = f32_to_ue4m3(amax_of(xb) / 6.0);
                y.d[s] = ue;
                let d = ue4m3_to_f32(ue);
                pack_fp4(xb, d, &mut y.qs[s * QK_NVFP4_SUB / 2..(s + 1) * QK_NVFP4_SUB / 2]);
            }
        }
    }

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
        sumf += d * dot_codes(&b.qs, bytemuck::cast_slice(&a.qs)) as f32;
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
            let qy: &[i8] = bytemuck::cast_slice(&ab.qs[off..off + QK_NVFP4_SUB]);
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
