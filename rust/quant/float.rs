//! The float types F32, F16 and BF16 as one-value "blocks".
#![forbid(unsafe_code)]

use super::{f16_to_f32, f32_to_f16, Block, DotBlock};
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
    fn quantize_row(src: &[f32], dst: &mut [Self], _imatrix: Option<&[f32]>) {
        for (d, s) in dst.iter_mut().zip(src) {
            d.0 = s.to_le_bytes();
        }
    }
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = f32::from_le_bytes(s.0);
        }
    }
}

impl Block for F16Block {
    const TYPE: QuantType = QuantType::F16;
    fn quantize_row(src: &[f32], dst: &mut [Self], _imatrix: Option<&[f32]>) {
        for (d, s) in dst.iter_mut().zip(src) {
            d.0 = f32_to_f16(*s);
        }
    }
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = f16_to_f32(s.0);
        }
    }
}

impl Block for BF16Block {
    const TYPE: QuantType = QuantType::BF16;
    fn quantize_row(src: &[f32], dst: &mut [Self], _imatrix: Option<&[f32]>) {
        for (d, s) in dst.iter_mut().zip(src) {
            d.0 = f32_to_bf16(*s).to_le_bytes();
        }
    }
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
