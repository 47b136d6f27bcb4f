//! Q8_K: the activation type the K-quants (and most IQ types) are dotted against. One f32 scale
//! per 256 values, 8-bit levels, and the sum of each group of 16 levels precomputed (`bsums`)
//! so the dot products can apply sub-block mins without touching the levels.

use super::super::search::nearest_int;
use super::{super_blocks, super_blocks_mut, QK_K};
use crate::quant::Block;
use crate::types::QuantType;

/// ggml `block_q8_K`: 256 values in 292 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ8K {
    /// Scale (f32, little-endian).
    pub d: [u8; 4],
    /// Levels in `[-127, 127]` (ggml's quantizer never writes -128).
    pub qs: [i8; QK_K],
    /// Sum of each group of 16 levels (i16, little-endian).
    pub bsums: [[u8; 2]; QK_K / 16],
}
const _: () =
    assert!(core::mem::size_of::<BlockQ8K>() == 292 && core::mem::align_of::<BlockQ8K>() == 1);

impl BlockQ8K {
    /// The scale `d`.
    #[inline(always)]
    pub fn d(&self) -> f32 {
        f32::from_le_bytes(self.d)
    }

    /// The 16 group sums.
    #[inline(always)]
    pub fn bsums(&self) -> [i16; QK_K / 16] {
        self.bsums.map(i16::from_le_bytes)
    }
}

/// ggml `quantize_row_q8_K_ref` for one super-block: `d = max / -127` where `max` is the value
/// of largest magnitude, levels `min(127, round(x / d))` (ties to even).
fn quantize_block(x: &[f32; QK_K], y: &mut BlockQ8K) {
    // ggml keeps the first value of largest magnitude. The largest magnitude does not depend on
    // the scan order (max is exact), so find it with a vectorizable fold, then the first value
    // that has it.
    let amax = crate::quant::abs_max(x);
    if amax == 0.0 {
        *y = bytemuck::Zeroable::zeroed();
        return;
    }
    // Finite input: some value has magnitude amax.
    let max = x.iter().copied().find(|v| v.abs() == amax).unwrap_or(amax);
    let iscale = -127.0f32 / max;
    for (q, &v) in y.qs.iter_mut().zip(x) {
        *q = nearest_int(iscale * v).min(127) as i8;
    }
    for j in 0..QK_K / 16 {
        let sum: i32 = y.qs[16 * j..16 * j + 16].iter().map(|&q| q as i32).sum();
        y.bsums[j] = (sum as i16).to_le_bytes();
    }
    y.d = (1.0 / iscale).to_le_bytes();
}

impl Block for BlockQ8K {
    const TYPE: QuantType = QuantType::Q8_K;

    /// ggml has no `ggml_quantize_chunk` path for Q8_K (an activation type); this is its only
    /// quantizer, `quantize_row_q8_K_ref`. The importance matrix does not apply and is ignored
    /// (the dispatcher rejects it before calling).
    #[inline(always)]
    fn quantize_row(src: &[f32], dst: &mut [Self], _imatrix: Option<&[f32]>) {
        for (x, y) in super_blocks(src).zip(dst.iter_mut()) {
            quantize_block(x, y);
        }
    }

    #[inline(always)]
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (b, y) in src.iter().zip(super_blocks_mut(dst)) {
            let d = b.d();
            for (o, &q) in y.iter_mut().zip(&b.qs) {
                *o = d * q as f32;
            }
        }
    }
}
