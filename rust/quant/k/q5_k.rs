//! Q5_K: 5.5 bits per weight. Like Q4_K (eight sub-blocks of 32, 6-bit scales and mins, f16
//! `d` and `dmin`) with 5-bit levels: low 4 bits in `qs`, high bit in `qh`.

use super::q4_k::{dot_block, requantize, search_imatrix, search_ref};
use super::{block_weights, super_blocks, super_blocks_mut, BlockQ8K, QK_K};
use crate::quant::search::get_scale_min_k4;
use crate::quant::{f16_to_f32, Block, DotBlock};
use crate::types::QuantType;

/// ggml `block_q5_K`: 256 values in 176 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ5K {
    /// Super-block scale for the scales (f16, little-endian).
    pub d: [u8; 2],
    /// Super-block scale for the mins (f16, little-endian).
    pub dmin: [u8; 2],
    /// Eight 6-bit scales and mins (see `search::get_scale_min_k4`).
    pub scales: [u8; 12],
    /// High bit of each level: bit `2 p` (`2 p + 1`) of byte `l` belongs to value `64 p + l`
    /// (`64 p + 32 + l`).
    pub qh: [u8; QK_K / 8],
    /// Low 4 bits, laid out as Q4_K's `qs`.
    pub qs: [u8; QK_K / 2],
}
const _: () =
    assert!(core::mem::size_of::<BlockQ5K>() == 176 && core::mem::align_of::<BlockQ5K>() == 1);

fn quantize_block(x: &[f32; QK_K], qw: Option<&[f32; QK_K]>, y: &mut BlockQ5K) {
    let mut levels = [0u8; QK_K];
    let (d, dmin, scales) = match qw {
        None => search_ref(x, 31, -0.5, 0.1, 15, &mut levels),
        Some(qw) => search_imatrix(x, qw, 31, true, &mut levels),
    };
    y.d = d;
    y.dmin = dmin;
    y.scales = scales;
    requantize(x, d, dmin, &scales, 31, &mut levels);
    y.qh = [0; QK_K / 8];
    for p in 0..QK_K / 64 {
        let (m1, m2) = (1u8 << (2 * p), 2u8 << (2 * p));
        for j in 0..32 {
            let mut l1 = levels[64 * p + j];
            if l1 > 15 {
                l1 -= 16;
                y.qh[j] |= m1;
            }
            let mut l2 = levels[64 * p + 32 + j];
            if l2 > 15 {
                l2 -= 16;
                y.qh[j] |= m2;
            }
            y.qs[32 * p + j] = l1 | (l2 << 4);
        }
    }
}

/// The levels (0..32) of a block in value order.
#[inline]
fn levels(x: &BlockQ5K) -> [i8; QK_K] {
    let mut a = [0i8; QK_K];
    for p in 0..QK_K / 64 {
        let (u1, u2) = (1u8 << (2 * p), 2u8 << (2 * p));
        for l in 0..32 {
            let q = x.qs[32 * p + l];
            a[64 * p + l] = ((q & 0xF) + if x.qh[l] & u1 != 0 { 16 } else { 0 }) as i8;
            a[64 * p + 32 + l] = ((q >> 4) + if x.qh[l] & u2 != 0 { 16 } else { 0 }) as i8;
        }
    }
    a
}

impl Block for BlockQ5K {
    const TYPE: QuantType = QuantType::Q5_K;

    #[inline(always)]
    fn quantize_row(src: &[f32], dst: &mut [Self], imatrix: Option<&[f32]>) {
        for (i, (x, y)) in super_blocks(src).zip(dst.iter_mut()).enumerate() {
            quantize_block(x, imatrix.map(|w| block_weights(w, i)), y);
        }
    }

    #[inline(always)]
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (b, y) in src.iter().zip(super_blocks_mut(dst)) {
            let d = f16_to_f32(b.d);
            let min = f16_to_f32(b.dmin);
            // Unpack the 5-bit levels first (byte operations), then scale each sub-block of 32.
            let a = levels(b);
            for (j, (out, q)) in y.chunks_exact_mut(32).zip(a.chunks_exact(32)).enumerate() {
                let (sc, m) = get_scale_min_k4(j, &b.scales);
                let (dl, ml) = (d * sc as f32, min * m as f32);
                for (o, &v) in out.iter_mut().zip(q) {
                    *o = dl * v as f32 - ml;
                }
            }
        }
    }
}

impl DotBlock for BlockQ5K {
    type Dot = BlockQ8K;

    /// ggml `ggml_vec_dot_q5_K_q8_K_generic`.
    fn vec_dot_ref(lhs: &[Self], rhs: &[BlockQ8K]) -> f32 {
        let mut sums = [0f32; 8];
        let mut sumf = 0.0f32;
        for (x, y) in lhs.iter().zip(rhs) {
            sumf -= dot_block(&levels(x), x.d, x.dmin, &x.scales, y, &mut sums);
        }
        for s in sums {
            sumf += s;
        }
        sumf
    }
}
