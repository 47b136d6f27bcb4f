//! Crate-private stand-ins for the activation blocks Q8_0 and Q8_K, used as the `Dot` type of the
//! IQ4/FP4/ternary/binary codecs until the legacy and K-quant codec modules (which own the public
//! `Q8_0` / `Q8_K` block types) are merged; then these are replaced by those types.
//!
//! They are not registered in the codec table. Their quantizers are ggml's `_ref` quantizers.
#![forbid(unsafe_code)]

use super::{f16_to_f32, f32_to_f16, Block};
use crate::types::QuantType;

/// ggml `block_q8_0`: f16 scale, 32 int8 quants.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Q8_0 {
    /// f16 scale, little-endian.
    pub d: [u8; 2],
    /// Quants (int8 stored as bytes).
    pub qs: [u8; 32],
}

/// ggml `block_q8_K`: f32 scale, 256 int8 quants, per-16 sums.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Q8K {
    /// f32 scale, little-endian.
    pub d: [u8; 4],
    /// Quants (int8 stored as bytes).
    pub qs: [u8; 256],
    /// Sums of each 16 quants, little-endian int16.
    pub bsums: [u8; 32],
}

const _: () = assert!(core::mem::size_of::<Q8_0>() == 34 && core::mem::align_of::<Q8_0>() == 1);
const _: () = assert!(core::mem::size_of::<Q8K>() == 292 && core::mem::align_of::<Q8K>() == 1);

impl Q8K {
    /// The f32 scale.
    #[inline(always)]
    pub fn d(&self) -> f32 {
        f32::from_le_bytes(self.d)
    }
    /// The quants as int8.
    #[inline(always)]
    pub fn qs(&self) -> &[i8] {
        bytemuck::cast_slice(&self.qs)
    }
}

impl Q8_0 {
    /// The scale.
    #[inline(always)]
    pub fn d(&self) -> f32 {
        f16_to_f32(self.d)
    }
    /// The quants as int8.
    #[inline(always)]
    pub fn qs(&self) -> &[i8] {
        bytemuck::cast_slice(&self.qs)
    }
}

/// Round half to even through the 1.5·2^23 trick (ggml `nearest_int`), for |x| < 2^22.
#[inline(always)]
fn nearest_int(x: f32) -> i32 {
    ((x + 12582912.0).to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

impl Block for Q8_0 {
    const TYPE: QuantType = QuantType::Q8_0;
    fn quantize_row(src: &[f32], dst: &mut [Self], _imatrix: Option<&[f32]>) {
        for (x, y) in src.chunks_exact(32).zip(dst.iter_mut()) {
            let amax = x.iter().fold(0.0f32, |m, v| if m > v.abs() { m } else { v.abs() });
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            y.d = f32_to_f16(d);
            for (q, v) in y.qs.iter_mut().zip(x) {
                *q = ((v * id).round() as i8) as u8;
            }
        }
    }
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (b, y) in src.iter().zip(dst.chunks_exact_mut(32)) {
            let d = b.d();
            for (o, q) in y.iter_mut().zip(b.qs()) {
                *o = *q as f32 * d;
            }
        }
    }
}

impl Block for Q8K {
    const TYPE: QuantType = QuantType::Q8_K;
    fn quantize_row(src: &[f32], dst: &mut [Self], _imatrix: Option<&[f32]>) {
        for (x, y) in src.chunks_exact(256).zip(dst.iter_mut()) {
            let (mut max, mut amax) = (0.0f32, 0.0f32);
            for &v in x {
                if v.abs() > amax {
                    amax = v.abs();
                    max = v;
                }
            }
            if amax == 0.0 {
                *y = Q8K::zeroed_block();
                continue;
            }
            let iscale = -127.0 / max;
            for (q, v) in y.qs.iter_mut().zip(x) {
                *q = (nearest_int(iscale * v).min(127) as i8) as u8;
            }
            let qs: [i8; 256] = bytemuck::cast(y.qs);
            for (j, s) in y.bsums.chunks_exact_mut(2).enumerate() {
                let sum: i32 = qs[16 * j..16 * j + 16].iter().map(|&q| q as i32).sum();
                s.copy_from_slice(&(sum as i16).to_le_bytes());
            }
            y.d = (1.0 / iscale).to_le_bytes();
        }
    }
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (b, y) in src.iter().zip(dst.chunks_exact_mut(256)) {
            let d = b.d();
            for (o, q) in y.iter_mut().zip(b.qs()) {
                *o = d * *q as f32;
            }
        }
    }
}

impl Q8K {
    fn zeroed_block() -> Q8K {
        bytemuck::Zeroable::zeroed()
    }
}
