//! The float types F32, F16 and BF16 as one-value "blocks".
#![forbid(unsafe_code)]

use super::{f16_to_f32, Block, DotBlock};
use crate::types::QuantType;

/// One little-endian f32.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct F32Block(pub [u8; 4]);

/// One little-endian IEEE half float.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct F16Block(pub [u8; 2]);

/// One little-endian bfloat16.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BF16Block(pub [u8; 2]);

const _: () = assert!(core::mem::size_of::<F32Block>() == 4 && core::mem::align_of::<F32Block>() == 1);
const _: () = assert!(core::mem::size_of::<F16Block>() == 2 && core::mem::align_of::<F16Block>() == 1);
const _: () = assert!(core::mem::size_of::<BF16Block>() == 2 && core::mem::align_of::<BF16Block>() == 1);

/// IEEE half bits to f32, exactly as F16C's `vcvtph2ps` (and the `half` crate) convert: every
/// value exact, NaNs quieted. Branch-free (three candidates and selects), so loops over it
/// vectorize.
#[inline(always)]
pub fn f16_bits_to_f32(h: u16) -> f32 {
    let h = h as u32;
    let sign = (h & 0x8000) << 16;
    // Exponent and mantissa moved to their f32 positions.
    let em = (h & 0x7fff) << 13;
    let exp = em & 0x0f80_0000;
    // Normal: rebias the exponent (15 -> 127).
    let normal = em + ((127 - 15) << 23);
    // Infinity / NaN: exponent all ones; a NaN gets the quiet bit.
    let quiet = if em & 0x007f_e000 != 0 { 0x0040_0000 } else { 0 };
    let inf_nan = em | 0x7f80_0000 | quiet;
    // Zero / subnormal (m * 2^-24): 2^-14 * (1 + m/1024) - 2^-14, exact.
    let sub = (f32::from_bits(em + (113 << 23)) - f32::from_bits(113 << 23)).to_bits();
    let mag = if exp == 0x0f80_0000 {
        inf_nan
    } else if exp == 0 {
        sub
    } else {
        normal
    };
    f32::from_bits(mag | sign)
}

/// f32 to IEEE half bits, round to nearest even, exactly as F16C's `vcvtps2ph` (ggml's
/// `GGML_FP32_TO_FP16` on x86) and the `half` crate convert: overflow to infinity, NaNs
/// quieted with their top payload bits kept. Branch-free, so loops over it vectorize.
#[inline(always)]
pub fn f32_to_f16_bits(x: f32) -> u16 {
    let u = x.to_bits();
    let sign = (u >> 16) & 0x8000;
    let a = u & 0x7fff_ffff;
    // Normal half: rebias (127 -> 15) and round the 13 dropped bits to nearest even; a carry
    // out of the mantissa bumps the exponent, up to infinity (0x7c00) from 65520 on.
    let odd = (a >> 13) & 1;
    let normal = a.wrapping_sub((127 - 15) << 23).wrapping_add(0x0fff + odd) >> 13;
    // Subnormal half: adding 0.5 leaves the value in units of 2^-24 (the half subnormal step)
    // in the low mantissa bits, rounded to nearest even by the float addition.
    let sub = (f32::from_bits(a) + 0.5f32).to_bits().wrapping_sub(0x3f00_0000);
    let nan = 0x7e00 | ((a >> 13) & 0x03ff);
    let mag = if a > 0x7f80_0000 {
        nan
    } else if a >= 0x4780_0000 {
        // |x| >= 65536 (or infinity): infinity.
        0x7c00
    } else if a < 0x3880_0000 {
        // |x| < 2^-14.
        sub
    } else {
        normal
    };
    (mag | sign) as u16
}

/// f32 to bfloat16 bits as ggml does it (`ggml_compute_fp32_to_bf16`): round to nearest even,
/// NaN kept quiet.
#[inline(always)]
pub fn f32_to_bf16(x: f32) -> u16 {
    let u = x.to_bits();
    if (u & 0x7fff_ffff) > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    ((u + (0x7fff + ((u >> 16) & 1))) >> 16) as u16
}

/// bfloat16 bits to f32 (exact).
#[inline(always)]
pub fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

impl Block for F32Block {
    const TYPE: QuantType = QuantType::F32;
    #[inline(always)]
    fn quantize_row(src: &[f32], dst: &mut [Self], _imatrix: Option<&[f32]>) {
        for (d, s) in dst.iter_mut().zip(src) {
            d.0 = s.to_le_bytes();
        }
    }
    #[inline(always)]
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = f32::from_le_bytes(s.0);
        }
    }
}

impl Block for F16Block {
    const TYPE: QuantType = QuantType::F16;
    #[inline(always)]
    fn quantize_row(src: &[f32], dst: &mut [Self], _imatrix: Option<&[f32]>) {
        for (d, s) in dst.iter_mut().zip(src) {
            d.0 = f32_to_f16_bits(*s).to_le_bytes();
        }
    }
    #[inline(always)]
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = f16_bits_to_f32(u16::from_le_bytes(s.0));
        }
    }
}

impl Block for BF16Block {
    const TYPE: QuantType = QuantType::BF16;
    #[inline(always)]
    fn quantize_row(src: &[f32], dst: &mut [Self], _imatrix: Option<&[f32]>) {
        for (d, s) in dst.iter_mut().zip(src) {
            d.0 = f32_to_bf16(*s).to_le_bytes();
        }
    }
    #[inline(always)]
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = bf16_to_f32(u16::from_le_bytes(s.0));
        }
    }
}

/// Dot product of two float rows, accumulated in f64 (ggml's scalar `ggml_float` sum).
fn dot_f64(a: impl Iterator<Item = f32>, b: impl Iterator<Item = f32>) -> f32 {
    a.zip(b).map(|(x, y)| x as f64 * y as f64).sum::<f64>() as f32
}

impl DotBlock for F32Block {
    type Dot = F32Block;
    fn vec_dot_ref(lhs: &[Self], rhs: &[Self]) -> f32 {
        dot_f64(lhs.iter().map(|b| f32::from_le_bytes(b.0)), rhs.iter().map(|b| f32::from_le_bytes(b.0)))
    }
}

impl DotBlock for F16Block {
    type Dot = F16Block;
    fn vec_dot_ref(lhs: &[Self], rhs: &[Self]) -> f32 {
        dot_f64(lhs.iter().map(|b| f16_to_f32(b.0)), rhs.iter().map(|b| f16_to_f32(b.0)))
    }
}

impl DotBlock for BF16Block {
    type Dot = BF16Block;
    fn vec_dot_ref(lhs: &[Self], rhs: &[Self]) -> f32 {
        let f = |b: &BF16Block| bf16_to_f32(u16::from_le_bytes(b.0));
        dot_f64(lhs.iter().map(f), rhs.iter().map(f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every half converts like the `half` crate (F16C where the CPU has it).
    #[test]
    fn half_to_f32_matches_half_crate_for_every_value() {
        for h in 0..=u16::MAX {
            let want = half::f16::from_bits(h).to_f32().to_bits();
            assert_eq!(f16_bits_to_f32(h).to_bits(), want, "{h:#06x}");
        }
    }

    fn check_f32(u: u32) {
        let x = f32::from_bits(u);
        let want = half::f16::from_f32(x).to_bits();
        let got = f32_to_f16_bits(x);
        if x.is_nan() {
            // NaN: both quiet NaNs with the same sign and top payload bits.
            assert_eq!(got, want | 0x0200, "{u:#010x}");
        } else {
            assert_eq!(got, want, "{u:#010x}");
        }
    }

    /// f32 -> half against the `half` crate: every exponent with mantissas whose dropped 13
    /// bits sit at and around the rounding boundaries, both signs, plus a pseudo-random sweep.
    #[test]
    fn f32_to_half_matches_half_crate() {
        let lows = [0u32, 1, 0x0fff, 0x1000, 0x1001, 0x1fff, 0x0800, 0x17ff];
        for sign in [0u32, 0x8000_0000] {
            for exp in 0u32..=255 {
                for hi in 0u32..1024 {
                    for &lo in &lows {
                        check_f32(sign | exp << 23 | hi << 13 | lo);
                    }
                }
            }
        }
        let mut s = 0x1234_5678_9abc_def0u64;
        for _ in 0..4_000_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            check_f32((s >> 16) as u32);
        }
    }
}
