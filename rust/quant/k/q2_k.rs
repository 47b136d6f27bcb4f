//! Q2_K: 2.625 bits per weight. Sixteen sub-blocks of 16 values, `x ≈ d·sc_j·q - dmin·m_j` with
//! 2-bit `q`, 4-bit sub-block scale `sc_j` and min `m_j`, f16 `d` and `dmin`.

use super::super::search::{make_qkx_quants_lanes, make_qp_quants, nearest_int, to_lanes};
use super::{block_weights, from_lanes, pack_2bit, super_blocks, super_blocks_mut, BlockQ8K, QK_K};
use crate::quant::{f16_to_f32, f32_to_f16, Block, DotBlock};
use crate::types::QuantType;

/// ggml `block_q2_K`: 256 values in 84 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ2K {
    /// Sub-block `j` scale in the low nibble, min in the high nibble.
    pub scales: [u8; QK_K / 16],
    /// 2-bit levels, four per byte (layout of `pack_2bit`).
    pub qs: [u8; QK_K / 4],
    /// Super-block scale for the scales (f16, little-endian).
    pub d: [u8; 2],
    /// Super-block scale for the mins (f16, little-endian).
    pub dmin: [u8; 2],
}
const _: () =
    assert!(core::mem::size_of::<BlockQ2K>() == 84 && core::mem::align_of::<BlockQ2K>() == 1);

/// Requantize every sub-block whose scale is non-zero against the stored (f16-rounded) scales
/// and mins, then pack the levels. Shared tail of both quantizers.
fn finish(x: &[f32; QK_K], y: &mut BlockQ2K, levels: &mut [u8; QK_K]) {
    let dall = f16_to_f32(y.d);
    let dmin = f16_to_f32(y.dmin);
    for j in 0..QK_K / 16 {
        let d = dall * (y.scales[j] & 0xF) as f32;
        if d == 0.0 {
            continue;
        }
        let dm = dmin * (y.scales[j] >> 4) as f32;
        for ii in 0..16 {
            let l = nearest_int((x[16 * j + ii] + dm) / d);
            levels[16 * j + ii] = l.clamp(0, 3) as u8;
        }
    }
    pack_2bit(levels, &mut y.qs);
}

/// ggml `quantize_row_q2_K_ref` for one super-block.
fn quantize_block_ref(x: &[f32; QK_K], y: &mut BlockQ2K) {
    const Q4SCALE: f32 = 15.0;
    // make_qkx2_quants(16, 3, x_j, |x_j|, .., -0.5, 0.1, 15, use_mad) on the 16 sub-blocks at once.
    let xt = to_lanes::<16, 16>(x);
    let wt = xt.map(|row| row.map(f32::abs));
    let mut lt = [[0u8; 16]; 16];
    let (scales, mins) = make_qkx_quants_lanes::<16, 16, true>(3, &xt, &wt, &mut lt, -0.5, 0.1, 15);
    let mut levels = [0u8; QK_K];
    from_lanes(&lt, &mut levels);
    let mut max_scale = 0.0f32;
    let mut max_min = 0.0f32;
    for j in 0..QK_K / 16 {
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    if max_scale > 0.0 {
        let iscale = Q4SCALE / max_scale;
        for (sc, &s) in y.scales.iter_mut().zip(&scales) {
            *sc = nearest_int(iscale * s) as u8;
        }
        y.d = f32_to_f16(max_scale / Q4SCALE);
    } else {
        y.scales = [0; QK_K / 16];
        y.d = f32_to_f16(0.0);
    }
    if max_min > 0.0 {
        let iscale = Q4SCALE / max_min;
        for (sc, &m) in y.scales.iter_mut().zip(&mins) {
            *sc |= (nearest_int(iscale * m).wrapping_shl(4)) as u8;
        }
        y.dmin = f32_to_f16(max_min / Q4SCALE);
    } else {
        y.dmin = f32_to_f16(0.0);
    }
    finish(x, y, &mut levels);
}

/// ggml `quantize_row_q2_K_impl` for one super-block with importance weights `qw`.
fn quantize_block_imatrix(x: &[f32; QK_K], qw: &[f32; QK_K], y: &mut BlockQ2K) {
    let mut sumx2 = 0.0f32;
    for v in x {
        sumx2 += v * v;
    }
    let sigma2 = sumx2 / QK_K as f32;
    // Per sub-block weights qw·sqrt(σ² + x²), their sums, and make_qkx3_quants(16, 3, x_j,
    // weights, .., -0.9, 0.05, 36, false) on the 16 sub-blocks at once.
    let xt = to_lanes::<16, 16>(x);
    let qwt = to_lanes::<16, 16>(qw);
    let mut wt = [[0f32; 16]; 16];
    let mut sw = [0f32; QK_K / 16];
    for i in 0..16 {
        for g in 0..16 {
            wt[i][g] = qwt[i][g] * (sigma2 + xt[i][g] * xt[i][g]).sqrt();
            sw[g] += wt[i][g];
        }
    }
    let mut lt = [[0u8; 16]; 16];
    let (scales, mins) =
        make_qkx_quants_lanes::<16, 16, false>(3, &xt, &wt, &mut lt, -0.9, 0.05, 36);
    let mut levels = [0u8; QK_K];
    from_lanes(&lt, &mut levels);
    let mut ls = [0u8; QK_K / 16];
    let mut lm = [0u8; QK_K / 16];
    let dm = make_qp_quants(15, &scales, &mut ls, &sw);
    let mm = make_qp_quants(15, &mins, &mut lm, &sw);
    y.d = f32_to_f16(dm);
    y.dmin = f32_to_f16(mm);
    for j in 0..QK_K / 16 {
        y.scales[j] = ls[j] | (lm[j] << 4);
    }
    finish(x, y, &mut levels);
}

impl Block for BlockQ2K {
    const TYPE: QuantType = QuantType::Q2_K;

    #[inline(always)]
    fn quantize_row(src: &[f32], dst: &mut [Self], imatrix: Option<&[f32]>) {
        for (i, (x, y)) in super_blocks(src).zip(dst.iter_mut()).enumerate() {
            match imatrix {
                None => quantize_block_ref(x, y),
                Some(w) => quantize_block_imatrix(x, block_weights(w, i), y),
            }
        }
    }

    #[inline(always)]
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (b, y) in src.iter().zip(super_blocks_mut(dst)) {
            let d = f16_to_f32(b.d);
            let min = f16_to_f32(b.dmin);
            // Output position 128 h + 32 s + 16 k + l holds bits 2s..2s+2 of qs[32 h + 16 k + l],
            // sub-block 8 h + 2 s + k.
            for h in 0..2 {
                for s in 0..4 {
                    for k in 0..2 {
                        let sc = b.scales[8 * h + 2 * s + k];
                        let dl = d * (sc & 0xF) as f32;
                        let ml = min * (sc >> 4) as f32;
                        let q = &b.qs[32 * h + 16 * k..32 * h + 16 * k + 16];
                        let out = &mut y[128 * h + 32 * s + 16 * k..][..16];
                        for (o, &qv) in out.iter_mut().zip(q) {
                            *o = dl * ((qv >> (2 * s)) & 3) as f32 - ml;
                        }
                    }
                }
            }
        }
    }
}

impl DotBlock for BlockQ2K {
    type Dot = BlockQ8K;

    /// ggml `ggml_vec_dot_q2_K_q8_K_generic`.
    fn vec_dot_ref(lhs: &[Self], rhs: &[BlockQ8K]) -> f32 {
        let mut sumf = 0.0f32;
        for (x, y) in lhs.iter().zip(rhs) {
            // Σ_j bsum_j · m_j: the min term, in integers (|value| < 2^20, no overflow).
            let mut summs = 0i32;
            for (&b, &sc) in y.bsums().iter().zip(&x.scales) {
                summs += b as i32 * (sc >> 4) as i32;
            }
            let dy = y.d();
            let dall = dy * f16_to_f32(x.d);
            let dmin = dy * f16_to_f32(x.dmin);
            // Σ_j sc_j Σ_l q8 · q2 in integers (|value| < 2^24).
            let mut isum = 0i32;
            for h in 0..2 {
                for s in 0..4 {
                    for k in 0..2 {
                        let d = (x.scales[8 * h + 2 * s + k] & 0xF) as i32;
                        let q2 = &x.qs[32 * h + 16 * k..][..16];
                        let q8 = &y.qs[128 * h + 32 * s + 16 * k..][..16];
                        let mut isuml = 0i32;
                        for l in 0..16 {
                            isuml += q8[l] as i32 * ((q2[l] >> (2 * s)) & 3) as i32;
                        }
                        isum += d * isuml;
                    }
                }
            }
            sumf += dall * isum as f32 - dmin * summs as f32;
        }
        sumf
    }
}
