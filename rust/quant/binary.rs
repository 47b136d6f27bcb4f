//! The low-bit types Q1_0 and Q2_0 (ggml ids 41 and 42).
//!
//! * Q1_0: 128 values per block, one sign bit each, scale `d = mean |x|`: `x = ±d`.
//! * Q2_0: 64 values per block, 2-bit codes `q` with scale `d = max |x|`: `x = (q - 1) · d`
//!   (the quantizer only produces codes 0..=2; code 3 decodes to `2d`).
//!
//! Both ignore importance weights, as ggml does.
#![forbid(unsafe_code)]

use super::legacy::BlockQ8_0 as Q8_0;
use super::{f16_to_f32, f32_to_f16, Block, DotBlock};
use crate::types::QuantType;

/// Values per Q1_0 block.
pub const QK1_0: usize = 128;
/// Values per Q2_0 block.
pub const QK2_0: usize = 64;

/// Q1_0 block (ggml `block_q1_0`): f16 scale and 128 sign bits (bit set: `+d`, clear: `-d`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ1_0 {
    /// f16 scale, little-endian.
    pub d: [u8; 2],
    /// Value `j` is bit `j % 8` of byte `j / 8`.
    pub qs: [u8; QK1_0 / 8],
}

/// Q2_0 block (ggml `block_q2_0`): f16 scale and 64 2-bit codes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ2_0 {
    /// f16 scale, little-endian.
    pub d: [u8; 2],
    /// Value `j` is bits `2(j % 4)..2(j % 4)+2` of byte `j / 4`.
    pub qs: [u8; QK2_0 / 4],
}

const _: () = assert!(core::mem::size_of::<BlockQ1_0>() == 18 && core::mem::align_of::<BlockQ1_0>() == 1);
const _: () = assert!(core::mem::size_of::<BlockQ2_0>() == 18 && core::mem::align_of::<BlockQ2_0>() == 1);
const _: () = assert!(QuantType::Q1_0.type_size() == 18 && QuantType::Q1_0.block_size() == QK1_0);
const _: () = assert!(QuantType::Q2_0.type_size() == 18 && QuantType::Q2_0.block_size() == QK2_0);

/// C's `(int)f` as x86 compiles it (`cvttss2si`): truncation toward zero, and `i32::MIN` for NaN
/// and for values outside the int range (C leaves those undefined; this is what ggml's binaries do).
#[inline(always)]
fn c_f32_to_int(f: f32) -> i32 {
    if f > -2147483904.0 && f < 2147483648.0 {
        f as i32
    } else {
        i32::MIN
    }
}

impl Block for BlockQ1_0 {
    const TYPE: QuantType = QuantType::Q1_0;

    #[inline(always)]
    fn quantize_row(src: &[f32], dst: &mut [Self], _imatrix: Option<&[f32]>) {
        for (x, y) in src.chunks_exact(QK1_0).zip(dst.iter_mut()) {
            let mut sum_abs = 0.0f32;
            for v in x {
                sum_abs += v.abs();
            }
            y.d = f32_to_f16(sum_abs / QK1_0 as f32);
            for (q, xb) in y.qs.iter_mut().zip(x.chunks_exact(8)) {
                // Sign bit set for x >= 0 (so -0.0 and 0.0 both map to +d).
                *q = xb.iter().enumerate().fold(0u8, |acc, (b, v)| acc | (((*v >= 0.0) as u8) << b));
            }
        }
    }

    #[inline(always)]
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK1_0)) {
            let d = f16_to_f32(b.d);
            let nd = -d;
            for (q, yb) in b.qs.iter().zip(y.chunks_exact_mut(8)) {
                for (bit, o) in yb.iter_mut().enumerate() {
                    *o = if (q >> bit) & 1 != 0 { d } else { nd };
                }
            }
        }
    }
}

impl Block for BlockQ2_0 {
    const TYPE: QuantType = QuantType::Q2_0;

    #[inline(always)]
    fn quantize_row(src: &[f32], dst: &mut [Self], _imatrix: Option<&[f32]>) {
        for (x, y) in src.chunks_exact(QK2_0).zip(dst.iter_mut()) {
            let amax = super::abs_max(x);
            let d = amax;
            let id = if d > 0.0 { 1.0 / d } else { 0.0 };
            y.d = f32_to_f16(d);
            let mut c = [0u8; QK2_0];
            if id.is_finite() {
                // id is 0 or 1/max|x|, so w·id lies in [-1-2⁻²², 1+2⁻²²]: roundf(w·id) + 1 is
                // decided by two comparisons.
                for (c, w) in c.iter_mut().zip(x) {
                    let v = w * id;
                    *c = 1 + (v >= 0.5) as u8 - (v <= -0.5) as u8;
                }
            } else {
                // 0 < max|x| < 2^-128: 1/d overflowed, w·id is ±inf or NaN.
                for (c, w) in c.iter_mut().zip(x) {
                    // roundf is half away from zero, as f32::round; +1 then clamp to 0..=3.
                    *c = c_f32_to_int((w * id).round()).wrapping_add(1).clamp(0, 3) as u8;
                }
            }
            for (q, c4) in y.qs.iter_mut().zip(c.chunks_exact(4)) {
                *q = c4[0] | (c4[1] << 2) | (c4[2] << 4) | (c4[3] << 6);
            }
        }
    }

    #[inline(always)]
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK2_0)) {
            let d = f16_to_f32(b.d);
            for (q, yb) in b.qs.iter().zip(y.chunks_exact_mut(4)) {
                for (k, o) in yb.iter_mut().enumerate() {
                    *o = (((q >> (2 * k)) & 3) as i32 - 1) as f32 * d;
                }
            }
        }
    }
}

/// Scalar Q1_0 · Q8_0 (ggml `ggml_vec_dot_q1_0_q8_0_generic`): four Q8_0 blocks per Q1_0 block.
pub fn vec_dot_q1_0_q8_0(x: &[BlockQ1_0], y: &[Q8_0]) -> f32 {
    let mut sumf = 0.0f32;
    for (b, ys) in x.iter().zip(y.chunks_exact(4)) {
        let d0 = f16_to_f32(b.d);
        let mut sumi = 0.0f32;
        for (k, yb) in ys.iter().enumerate() {
            let d1 = f16_to_f32(yb.d);
            let qy = &yb.qs;
            let mut s = 0i32;
            for (j, &q) in qy.iter().enumerate() {
                let bit = (b.qs[4 * k + j / 8] >> (j % 8)) & 1;
                s += if bit != 0 { q as i32 } else { -(q as i32) };
            }
            sumi += d1 * s as f32;
        }
        sumf += d0 * sumi;
    }
    sumf
}

/// Scalar Q2_0 · Q8_0 (ggml `ggml_vec_dot_q2_0_q8_0_generic`): two Q8_0 blocks per Q2_0 block.
pub fn vec_dot_q2_0_q8_0(x: &[BlockQ2_0], y: &[Q8_0]) -> f32 {
    let mut sumf = 0.0f32;
    for (b, ys) in x.iter().zip(y.chunks_exact(2)) {
        let d0 = f16_to_f32(b.d);
        let mut sumi = 0.0f32;
        for (k, yb) in ys.iter().enumerate() {
            let d1 = f16_to_f32(yb.d);
            let qy = &yb.qs;
            let mut s = 0i32;
            for (j, &q) in qy.iter().enumerate() {
                let c = ((b.qs[8 * k + j / 4] >> (2 * (j % 4))) & 3) as i32 - 1;
                s += c * q as i32;
            }
            sumi += d1 * s as f32;
        }
        sumf += d0 * sumi;
    }
    sumf
}

impl DotBlock for BlockQ1_0 {
    type Dot = Q8_0;
    fn vec_dot_ref(lhs: &[Self], rhs: &[Self::Dot]) -> f32 {
        vec_dot_q1_0_q8_0(lhs, rhs)
    }
}

impl DotBlock for BlockQ2_0 {
    type Dot = Q8_0;
    fn vec_dot_ref(lhs: &[Self], rhs: &[Self::Dot]) -> f32 {
        vec_dot_q2_0_q8_0(lhs, rhs)
    }
}
