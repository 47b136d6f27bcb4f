//! Q4_K: 4.5 bits per weight. Eight sub-blocks of 32 values, `x ≈ d·sc_j·q - dmin·m_j` with
//! 4-bit `q`, 6-bit sub-block scale `sc_j` and min `m_j`, f16 `d` and `dmin`.

use super::super::search::{
    get_scale_min_k4, make_qkx_quants_lanes, make_qp_quants, nearest_int, pack_scale_min_k4,
    to_lanes,
};
use super::{block_weights, from_lanes, super_blocks, super_blocks_mut, BlockQ8K, QK_K};
use crate::quant::{f16_to_f32, f32_to_f16, Block, DotBlock};
use crate::types::QuantType;

/// ggml `block_q4_K`: 256 values in 144 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ4K {
    /// Super-block scale for the scales (f16, little-endian).
    pub d: [u8; 2],
    /// Super-block scale for the mins (f16, little-endian).
    pub dmin: [u8; 2],
    /// Eight 6-bit scales and mins (see `search::get_scale_min_k4`).
    pub scales: [u8; 12],
    /// 4-bit levels: byte `32 p + l` holds value `64 p + l` (low nibble) and `64 p + 32 + l` (high).
    pub qs: [u8; QK_K / 2],
}
const _: () =
    assert!(core::mem::size_of::<BlockQ4K>() == 144 && core::mem::align_of::<BlockQ4K>() == 1);

/// The per-sub-block (scale, min) search results of a super-block, turned into the stored
/// 6-bit scales and the levels requantized against them. Shared by Q4_K and Q5_K, which differ
/// only in `nmax` (15 or 31) and the level packing.
pub(super) fn requantize(
    x: &[f32; QK_K],
    d: [u8; 2],
    dmin: [u8; 2],
    scales: &[u8; 12],
    nmax: i32,
    levels: &mut [u8; QK_K],
) {
    let dall = f16_to_f32(d);
    let dmin = f16_to_f32(dmin);
    for j in 0..QK_K / 32 {
        let (sc, m) = get_scale_min_k4(j, scales);
        let d = dall * sc as f32;
        if d == 0.0 {
            continue;
        }
        let dm = dmin * m as f32;
        for ii in 0..32 {
            let l = nearest_int((x[32 * j + ii] + dm) / d);
            levels[32 * j + ii] = l.clamp(0, nmax) as u8;
        }
    }
}

/// The reference (no imatrix) search of Q4_K (`nmax = 15`) and Q5_K (`nmax = 31`): per
/// sub-block `make_qkx2_quants` with weights `sqrt(mean x²) + |x|`, then the scales and mins
/// quantized to 6 bits against their maxima. Returns `(d, dmin, packed scales)`.
pub(super) fn search_ref(
    x: &[f32; QK_K],
    nmax: i32,
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    levels: &mut [u8; QK_K],
) -> ([u8; 2], [u8; 2], [u8; 12]) {
    // Per sub-block sqrt(Σx²/32), the weights av_x + |x|, and make_qkx2_quants on the eight
    // sub-blocks at once (lane g = sub-block g).
    let xt = to_lanes::<32, 8>(x);
    let mut sum_x2 = [0f32; 8];
    for row in &xt {
        for g in 0..8 {
            sum_x2[g] += row[g] * row[g];
        }
    }
    let av_x = sum_x2.map(|s| (s / 32.0).sqrt());
    let wt = xt.map(|row| core::array::from_fn(|g| av_x[g] + row[g].abs()));
    let mut lt = [[0u8; 8]; 32];
    let (scales, mins) =
        make_qkx_quants_lanes::<32, 8, false>(nmax, &xt, &wt, &mut lt, rmin, rdelta, nstep);
    from_lanes(&lt, levels);
    let mut max_scale = 0.0f32;
    let mut max_min = 0.0f32;
    for j in 0..QK_K / 32 {
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut ls = [0u8; QK_K / 32];
    let mut lm = [0u8; QK_K / 32];
    for j in 0..QK_K / 32 {
        ls[j] = (nearest_int(inv_scale * scales[j]) as u8).min(63);
        lm[j] = (nearest_int(inv_min * mins[j]) as u8).min(63);
    }
    (
        f32_to_f16(max_scale / 63.0),
        f32_to_f16(max_min / 63.0),
        pack_scale_min_k4(&ls, &lm),
    )
}

/// The importance-weighted search of Q4_K (`nmax = 15`) and Q5_K (`nmax = 31`): per sub-block
/// `make_qkx3_quants` with weights `qw · sqrt(2 mean x² + x²)`, then the scales and mins
/// quantized to 6 bits by `make_qp_quants` weighted by each sub-block's total weight. Returns
/// `(d, dmin, packed scales)`. `clamp_63` applies Q5_K's extra `min(63, ·)` on the levels.
pub(super) fn search_imatrix(
    x: &[f32; QK_K],
    qw: &[f32; QK_K],
    nmax: i32,
    clamp_63: bool,
    levels: &mut [u8; QK_K],
) -> ([u8; 2], [u8; 2], [u8; 12]) {
    let mut sum_x2 = 0.0f32;
    for v in x {
        sum_x2 += v * v;
    }
    let sigma2 = 2.0 * sum_x2 / QK_K as f32;
    // Per sub-block weights qw·sqrt(σ² + x²), their sums, and make_qkx3_quants(32, nmax, x_j,
    // weights, .., -0.9, 0.05, 36, false) on the eight sub-blocks at once.
    let xt = to_lanes::<32, 8>(x);
    let qwt = to_lanes::<32, 8>(qw);
    let mut wt = [[0f32; 8]; 32];
    let mut sw = [0f32; QK_K / 32];
    for i in 0..32 {
        for g in 0..8 {
            wt[i][g] = qwt[i][g] * (sigma2 + xt[i][g] * xt[i][g]).sqrt();
            sw[g] += wt[i][g];
        }
    }
    let mut lt = [[0u8; 8]; 32];
    let (scales, mins) =
        make_qkx_quants_lanes::<32, 8, false>(nmax, &xt, &wt, &mut lt, -0.9, 0.05, 36);
    from_lanes(&lt, levels);
    let mut ls = [0u8; QK_K / 32];
    let mut lm = [0u8; QK_K / 32];
    let d_block = make_qp_quants(63, &scales, &mut ls, &sw);
    let m_block = make_qp_quants(63, &mins, &mut lm, &sw);
    if clamp_63 {
        for v in ls.iter_mut().chain(lm.iter_mut()) {
            *v = (*v).min(63);
        }
    }
    (
        f32_to_f16(d_block),
        f32_to_f16(m_block),
        pack_scale_min_k4(&ls, &lm),
    )
}

fn quantize_block(x: &[f32; QK_K], qw: Option<&[f32; QK_K]>, y: &mut BlockQ4K) {
    let mut levels = [0u8; QK_K];
    let (d, dmin, scales) = match qw {
        None => search_ref(x, 15, -1.0, 0.1, 20, &mut levels),
        Some(qw) => search_imatrix(x, qw, 15, false, &mut levels),
    };
    y.d = d;
    y.dmin = dmin;
    y.scales = scales;
    requantize(x, d, dmin, &scales, 15, &mut levels);
    for p in 0..QK_K / 64 {
        for l in 0..32 {
            y.qs[32 * p + l] = levels[64 * p + l] | (levels[64 * p + 32 + l] << 4);
        }
    }
}

impl Block for BlockQ4K {
    const TYPE: QuantType = QuantType::Q4_K;

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
            for p in 0..QK_K / 64 {
                let (sc1, m1) = get_scale_min_k4(2 * p, &b.scales);
                let (sc2, m2) = get_scale_min_k4(2 * p + 1, &b.scales);
                let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
                let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
                let q = &b.qs[32 * p..32 * p + 32];
                let (lo, hi) = y[64 * p..64 * p + 64].split_at_mut(32);
                for (o, &v) in lo.iter_mut().zip(q) {
                    *o = d1 * (v & 0xF) as f32 - m1;
                }
                for (o, &v) in hi.iter_mut().zip(q) {
                    *o = d2 * (v >> 4) as f32 - m2;
                }
            }
        }
    }
}

/// Dot product of one Q4_K/Q5_K super-block's levels `a` (0..32) with a Q8_K block, as ggml's
/// generic kernel computes it: integer sums in 8 lanes, scaled by the block's f32 `d · d8` into
/// `sums`; returns the min term `dmin · d8 · Σ bsum_j m_{j/2}` that the caller subtracts.
pub(super) fn dot_block(
    a: &[i8; QK_K],
    d: [u8; 2],
    dmin: [u8; 2],
    scales: &[u8; 12],
    y: &BlockQ8K,
    sums: &mut [f32; 8],
) -> f32 {
    let mut sumi = 0i32;
    for (j, &b) in y.bsums().iter().enumerate() {
        sumi += b as i32 * get_scale_min_k4(j / 2, scales).1 as i32;
    }
    let mut aux32 = [0i32; 8];
    for (g, (q8, a)) in y.qs.chunks_exact(8).zip(a.chunks_exact(8)).enumerate() {
        let scale = get_scale_min_k4(g / 4, scales).0 as i32;
        for l in 0..8 {
            aux32[l] += scale * (q8[l] as i32 * a[l] as i32);
        }
    }
    let dy = y.d();
    let dd = f16_to_f32(d) * dy;
    for l in 0..8 {
        sums[l] += dd * aux32[l] as f32;
    }
    let dm = f16_to_f32(dmin) * dy;
    dm * sumi as f32
}

impl DotBlock for BlockQ4K {
    type Dot = BlockQ8K;

    /// ggml `ggml_vec_dot_q4_K_q8_K_generic`.
    fn vec_dot_ref(lhs: &[Self], rhs: &[BlockQ8K]) -> f32 {
        let mut sums = [0f32; 8];
        let mut sumf = 0.0f32;
        for (x, y) in lhs.iter().zip(rhs) {
            let mut a = [0i8; QK_K];
            for p in 0..QK_K / 64 {
                for l in 0..32 {
                    a[64 * p + l] = (x.qs[32 * p + l] & 0xF) as i8;
                    a[64 * p + 32 + l] = (x.qs[32 * p + l] >> 4) as i8;
                }
            }
            sumf -= dot_block(&a, x.d, x.dmin, &x.scales, y, &mut sums);
        }
        for s in sums {
            sumf += s;
        }
        sumf
    }
}
