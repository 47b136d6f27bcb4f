//! IQ1_S (1.5625 bpw) and IQ1_M (1.75 bpw): groups of 8 values coded as points of a 2048-point
//! grid in {-1, 0, 1}^8, shifted by `±IQ1S_DELTA` per sub-block, with 3-bit sub-block scales.
//!
//! Quantization ports ggml's `quantize_row_iq1_s_impl` and `quantize_row_iq1_m_impl` with the
//! same float32 operation order. IQ1_S needs an importance matrix in ggml
//! (`ggml_quantize_requires_imatrix`); [`crate::quant::quantize`] refuses it without one. IQ1_M
//! quantizes with or without one.
#![forbid(unsafe_code)]
// Index loops mirror ggml's loops one to one, which keeps the operation order easy to audit.
#![allow(clippy::needless_range_loop)]

use super::grids::{self, fmax, nearest_int, Lattice, Slot, QK_K};
use super::k::BlockQ8K;
use super::{f16_to_f32, f32_to_f16, Block, DotBlock};
use crate::types::QuantType;

/// The shift applied to the grid values of IQ1_S (ggml `IQ1S_DELTA`).
pub const IQ1S_DELTA: f32 = 0.125;
/// The shift applied to the grid values of IQ1_M (ggml `IQ1M_DELTA`).
pub const IQ1M_DELTA: f32 = 0.125;

/// Sub-blocks whose largest |x| is below this are stored as zero (ggml `GROUP_MAX_EPS_IQ1_S`).
const GROUP_MAX_EPS_IQ1_S: f32 = 1e-12;
/// The same for IQ1_M (ggml `GROUP_MAX_EPS_IQ1_M`).
const GROUP_MAX_EPS_IQ1_M: f32 = 1e-7;

/// IQ1_S super-block: 256 values in 50 bytes (ggml `block_iq1_s`).
///
/// Per 32 values: four low index bytes in `qs` and one little-endian u16 in `qh` holding the
/// top 3 bits of the four 11-bit grid indices (bits `3l..3l+3`), the 3-bit scale `s` (bits
/// 12..15) and the shift sign (bit 15). Value = `d * (2s + 1) * (grid ± IQ1S_DELTA)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockIQ1S {
    /// Super-block scale (f16, little-endian).
    pub d: [u8; 2],
    /// Low 8 bits of the grid indices.
    pub qs: [u8; QK_K / 8],
    /// High index bits, scales and shift signs (8 little-endian u16).
    pub qh: [u8; QK_K / 16],
}

/// IQ1_M super-block: 256 values in 56 bytes (ggml `block_iq1_m`).
///
/// Per 8 values a low index byte in `qs`; per 16 values a `qh` byte with the top 3 index bits
/// and the shift sign of each group of 8 (nibbles); per 32 values 6 bits of `scales` (two 3-bit
/// scales). The f16 super-block scale is spread over the top nibbles of the four u16 in `scales`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockIQ1M {
    /// Low 8 bits of the grid indices.
    pub qs: [u8; QK_K / 8],
    /// High index bits and shift signs.
    pub qh: [u8; QK_K / 16],
    /// Sub-block scales and the super-block scale (4 little-endian u16).
    pub scales: [u8; QK_K / 32],
}

const _: () = assert!(core::mem::size_of::<BlockIQ1S>() == 50 && core::mem::align_of::<BlockIQ1S>() == 1);
const _: () = assert!(core::mem::size_of::<BlockIQ1M>() == 56 && core::mem::align_of::<BlockIQ1M>() == 1);

/// ggml's `iq1_find_best_neighbour2`: among `cands`, the grid point minimising
/// `sum w[i] * (scale * xg[l_i] - x[i])^2` (accumulated in order, first strict minimum wins),
/// where `l_i` are the point's levels. Writes the levels to `l` and returns the index. With no
/// finite candidate (only overflowing data, where ggml's fallback scan reads out of bounds) the
/// first candidate is used; with no candidates, grid point 0.
#[inline]
fn best_neighbour(lat: &Lattice<8>, cands: &[u16], x: &[f32], w: &[f32], scale: f32, xg: &[f32; 3], l: &mut [i8]) -> u16 {
    // Each term depends only on the coordinate and the level: computed once with ggml's
    // operations (so the same float), then summed per candidate in coordinate order.
    let terms: [[f32; 3]; 8] = core::array::from_fn(|i| {
        xg.map(|q| {
            let diff = scale * q - x[i];
            w[i] * diff * diff
        })
    });
    let mut best_d2 = f32::MAX;
    let mut best = None;
    for &j in cands {
        let lv = lat.levels(j);
        let mut d2 = 0f32;
        for i in 0..8 {
            // Grid levels are 0..3 (the IQ1 grid uses levels 0, 1, 2 only).
            d2 += terms[i][(lv[i] as usize).min(2)];
        }
        if d2 < best_d2 {
            best_d2 = d2;
            best = Some(j);
        }
    }
    let j = best.or_else(|| cands.first().copied()).unwrap_or(0);
    l[..8].copy_from_slice(lat.levels(j));
    j
}

/// `x` sorted ascending with a stable sort: the indices, as ggml's `qsort` of (value, index)
/// pairs with `iq1_sort_helper` leaves them (glibc's qsort is a stable merge sort here, so
/// equal values keep index order).
#[inline(always)]
fn sorted_indices<const N: usize>(x: &[f32]) -> [usize; N] {
    let mut idx: [usize; N] = core::array::from_fn(|i| i);
    idx.sort_by(|&a, &b| {
        if x[a] < x[b] {
            core::cmp::Ordering::Less
        } else if x[a] > x[b] {
            core::cmp::Ordering::Greater
        } else {
            core::cmp::Ordering::Equal
        }
    });
    idx
}

/// `2 * sum(x^2) / 256`, summed in order.
#[inline(always)]
fn sigma2_of(xbl: &[f32]) -> f32 {
    let mut sumx2 = 0f32;
    for &v in xbl {
        sumx2 += v * v;
    }
    2.0 * sumx2 / QK_K as f32
}

/// Levels of the grid point with index `j` (any u16 is clamped into the grid).
#[inline(always)]
fn grid_levels(lat: &Lattice<8>, j: u16) -> &[i8; 8] {
    lat.levels(j.min(grids::NGRID_IQ1S as u16 - 1))
}

fn quantize_block_s(xbl: &[f32], qw: &[f32], y: &mut BlockIQ1S) {
    const BS: usize = 32;
    let lat = grids::iq1s();
    let x_p = [-1.0 + IQ1S_DELTA, IQ1S_DELTA, 1.0 + IQ1S_DELTA];
    let x_m = [-1.0 - IQ1S_DELTA, -IQ1S_DELTA, 1.0 - IQ1S_DELTA];
    *y = bytemuck::Zeroable::zeroed();
    let mut qh = [0u16; QK_K / BS];
    let mut scales = [0f32; QK_K / BS];
    let mut shifts = [0i8; QK_K / BS];
    let mut weight = [0f32; BS];
    let (mut sumx, mut sumw) = ([0f32; BS + 1], [0f32; BS + 1]);
    let mut l = [0i8; BS];
    let mut index = [0u16; BS / 8];
    let mut max_scale = 0f32;
    let sigma2 = sigma2_of(xbl);
    for ib in 0..QK_K / BS {
        let xb = &xbl[BS * ib..BS * ib + BS];
        let qw = &qw[BS * ib..BS * ib + BS];
        for i in 0..BS {
            weight[i] = qw[i] * (sigma2 + xb[i] * xb[i]).sqrt();
        }
        let max = xb[1..].iter().fold(xb[0].abs(), |m, &v| fmax(m, v.abs()));
        if max < GROUP_MAX_EPS_IQ1_S {
            scales[ib] = 0.0;
            shifts[ib] = 1;
            continue;
        }
        let idx = sorted_indices::<BS>(xb);
        for j in 0..BS {
            let i = idx[j];
            sumx[j + 1] = sumx[j] + weight[i] * xb[i];
            sumw[j + 1] = sumw[j] + weight[i];
        }
        let mut best_score = -f32::MAX;
        let mut scale = max;
        let (mut besti1, mut besti2, mut best_shift) = (-1i32, -1i32, 0i8);
        // ggml's sums `(a*x0 + b*x1) + c*x2` (and `(a*x0*x0 + b*x1*x1) + c*x2*x2`) for the
        // three groups of a split (i1, i2); the first term depends on i1 only and the last on i2
        // only, so they are computed once each, with the same operations (hence the same floats).
        let tail: [[[f32; 2]; BS + 1]; 2] = core::array::from_fn(|s| {
            let xs = if s == 0 { &x_p } else { &x_m };
            core::array::from_fn(|i2| [(sumx[BS] - sumx[i2]) * xs[2], (sumw[BS] - sumw[i2]) * xs[2] * xs[2]])
        });
        for i1 in 0..=BS {
            let head = [&x_p, &x_m].map(|xs| [(sumx[i1] - sumx[0]) * xs[0], (sumw[i1] - sumw[0]) * xs[0] * xs[0]]);
            for i2 in i1..=BS {
                let (bx, bw) = (sumx[i2] - sumx[i1], sumw[i2] - sumw[i1]);
                for (s, (xs, shift)) in [(&x_p, 1i8), (&x_m, -1i8)].into_iter().enumerate() {
                    let sumqx = head[s][0] + bx * xs[1] + tail[s][i2][0];
                    let sumq2 = head[s][1] + bw * xs[1] * xs[1] + tail[s][i2][1];
                    if sumq2 > 0.0 && sumqx * sumqx > best_score * sumq2 {
                        scale = sumqx / sumq2;
                        best_score = scale * sumqx;
                        (besti1, besti2, best_shift) = (i1 as i32, i2 as i32, shift);
                    }
                }
            }
        }
        if besti1 < 0 || besti2 < 0 || best_shift == 0 {
            scales[ib] = 0.0;
            shifts[ib] = 1;
            continue;
        }
        let (b1, b2) = (besti1 as usize, besti2 as usize);
        for j in 0..BS {
            l[idx[j]] = if j < b1 { 0 } else if j < b2 { 1 } else { 2 };
        }
        if scale < 0.0 {
            for v in &mut l {
                *v = 2 - *v;
            }
            scale = -scale;
            best_shift = -best_shift;
        }
        let xx = if best_shift == 1 { &x_p } else { &x_m };
        let mut all_on_grid = true;
        for k in 0..BS / 8 {
            let g = 8 * k..8 * k + 8;
            index[k] = match lat.slot(lat.code(&l[g.clone()])) {
                Slot::OnGrid(j) => j,
                Slot::Off(c) => {
                    all_on_grid = false;
                    best_neighbour(lat, c, &xb[g.clone()], &weight[g.clone()], scale, xx, &mut l[g])
                }
            };
        }
        if !all_on_grid {
            let (mut sumqx, mut sumq2) = (0f32, 0f32);
            for k in 0..BS / 8 {
                let lv = grid_levels(lat, index[k]);
                for j in 0..8 {
                    let w = weight[8 * k + j];
                    let q = xx[(lv[j] as usize).min(2)];
                    sumqx += w * q * xb[8 * k + j];
                    sumq2 += w * q * q;
                }
            }
            if sumqx > 0.0 && sumq2 > 0.0 {
                scale = sumqx / sumq2;
            }
        }
        let mut h = 0u16;
        for k in 0..BS / 8 {
            y.qs[(BS / 8) * ib + k] = (index[k] & 255) as u8;
            h |= (index[k] >> 8) << (3 * k);
        }
        qh[ib] = h;
        scales[ib] = scale;
        shifts[ib] = best_shift;
        max_scale = fmax(max_scale, scale);
    }
    if max_scale != 0.0 {
        let d = max_scale / 15.0;
        y.d = f32_to_f16(d * 1.125);
        let id = 1.0 / d;
        for ib in 0..QK_K / BS {
            let mut l = nearest_int(0.5 * (id * scales[ib] - 1.0)).clamp(0, 7) as u16;
            if shifts[ib] == -1 {
                l |= 8;
            }
            qh[ib] |= l << 12;
        }
    }
    for (dst, v) in y.qh.chunks_exact_mut(2).zip(qh) {
        dst.copy_from_slice(&v.to_le_bytes());
    }
}

/// Unit importance weights for IQ1_S, which ggml refuses to quantize without an imatrix, when a
/// Rust caller bypasses [`crate::quant::quantize`] (which rejects that call). Not a ggml path.
static UNIT_WEIGHTS: [f32; QK_K] = [1.0; QK_K];

impl Block for BlockIQ1S {
    const TYPE: QuantType = QuantType::IQ1_S;

    /// ggml `quantize_iq1_s`, which requires `imatrix` (see [`UNIT_WEIGHTS`] for `None`).
    #[inline(always)]
    fn quantize_row(src: &[f32], dst: &mut [Self], imatrix: Option<&[f32]>) {
        for (ibl, (xbl, y)) in src.chunks_exact(QK_K).zip(dst.iter_mut()).enumerate() {
            let qw = imatrix.map_or(&UNIT_WEIGHTS[..], |w| &w[QK_K * ibl..QK_K * (ibl + 1)]);
            quantize_block_s(xbl, qw, y);
        }
    }

    #[inline(always)]
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (x, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
            let d = f16_to_f32(x.d);
            for ib in 0..8 {
                let qh = u16::from_le_bytes([x.qh[2 * ib], x.qh[2 * ib + 1]]);
                let dl = d * (2 * ((qh >> 12) & 7) + 1) as f32;
                let delta = if qh & 0x8000 != 0 { -IQ1S_DELTA } else { IQ1S_DELTA };
                for l in 0..4 {
                    let j = x.qs[4 * ib + l] as usize | ((((qh >> (3 * l)) & 7) as usize) << 8);
                    let grid = grids::IQ1S_GRID[j].to_le_bytes();
                    let out = &mut y[32 * ib + 8 * l..32 * ib + 8 * l + 8];
                    for k in 0..8 {
                        out[k] = dl * (grid[k] as i8 as f32 + delta);
                    }
                }
            }
        }
    }
}

/// `sum grid * q8` over one group of 8 (grid bytes are i8 -1/0/1).
#[inline(always)]
fn group_dot(grid: u64, q8: &[i8]) -> i32 {
    let g = grid.to_le_bytes();
    let mut s = 0i32;
    for j in 0..8 {
        s += q8[j] as i32 * g[j] as i8 as i32;
    }
    s
}

impl DotBlock for BlockIQ1S {
    type Dot = BlockQ8K;

    /// ggml `ggml_vec_dot_iq1_s_q8_K_generic`.
    fn vec_dot_ref(lhs: &[Self], rhs: &[BlockQ8K]) -> f32 {
        let mut sumf = 0f32;
        for (x, y) in lhs.iter().zip(rhs) {
            let bsums = y.bsums();
            let (mut sumi, mut sumi1) = (0i32, 0i32);
            for ib in 0..8 {
                let qh = u16::from_le_bytes([x.qh[2 * ib], x.qh[2 * ib + 1]]);
                let ls = 2 * ((qh >> 12) & 7) as i32 + 1;
                let delta = if qh & 0x8000 != 0 { -1 } else { 1 };
                let mut lsum = 0i32;
                for l in 0..4 {
                    let j = x.qs[4 * ib + l] as usize | ((((qh >> (3 * l)) & 7) as usize) << 8);
                    lsum += group_dot(grids::IQ1S_GRID[j], &y.qs[32 * ib + 8 * l..]);
                }
                sumi += ls * lsum;
                sumi1 += ls * delta * (bsums[2 * ib] as i32 + bsums[2 * ib + 1] as i32);
            }
            sumf += f16_to_f32(x.d) * y.d() * (sumi as f32 + IQ1S_DELTA * sumi1 as f32);
        }
        sumf
    }
}

/// The shift table of a sub-block of 16 for shift choice `k` (bit 1: first group of 8 negative,
/// bit 0: second group), as in ggml's 0..4 code.
#[inline(always)]
fn iq1m_xx<'a>(k: usize, group: usize, x_p: &'a [f32; 3], x_m: &'a [f32; 3]) -> &'a [f32; 3] {
    let positive = if group == 0 { k < 2 } else { k.is_multiple_of(2) };
    if positive {
        x_p
    } else {
        x_m
    }
}

/// IQ1_M sub-block weights: `qw * sqrt(sigma2 + x^2)` with an imatrix, `x^2` without.
#[inline(always)]
fn iq1m_weights(xb: &[f32], qw: Option<&[f32]>, sigma2: f32, weight: &mut [f32; 16]) {
    match qw {
        Some(qw) => {
            for i in 0..16 {
                weight[i] = qw[i] * (sigma2 + xb[i] * xb[i]).sqrt();
            }
        }
        None => {
            for i in 0..16 {
                weight[i] = xb[i] * xb[i];
            }
        }
    }
}

fn quantize_block_m(xbl: &[f32], qwbl: Option<&[f32]>, y: &mut BlockIQ1M) {
    const BS: usize = 16;
    let lat = grids::iq1s();
    let x_p = [-1.0 + IQ1M_DELTA, IQ1M_DELTA, 1.0 + IQ1M_DELTA];
    let x_m = [-1.0 - IQ1M_DELTA, -IQ1M_DELTA, 1.0 - IQ1M_DELTA];
    const MASKS: [u8; 4] = [0x00, 0x80, 0x08, 0x88];
    *y = bytemuck::Zeroable::zeroed();
    let mut scales = [0f32; QK_K / BS];
    let mut shifts = [0usize; QK_K / BS];
    let mut weight = [0f32; BS];
    let mut l = [0i8; BS];
    let mut index = [0u16; BS / 8];
    let mut max_scale = 0f32;
    let sigma2 = sigma2_of(xbl);
    let qw_of = |ib: usize| qwbl.map(|w| &w[BS * ib..BS * ib + BS]);
    for ib in 0..QK_K / BS {
        let xb = &xbl[BS * ib..BS * ib + BS];
        iq1m_weights(xb, qw_of(ib), sigma2, &mut weight);
        let max = xb[1..].iter().fold(xb[0].abs(), |m, &v| fmax(m, v.abs()));
        if max < GROUP_MAX_EPS_IQ1_M {
            scales[ib] = 0.0;
            shifts[ib] = 0;
            continue;
        }
        let idx = sorted_indices::<BS>(xb);
        // Prefix sums of w*x and w over the sorted values, kept per half (each group of 8 has
        // its own shift sign).
        let mut px = [[0f32; BS + 1]; 2];
        let mut pw = [[0f32; BS + 1]; 2];
        for j in 0..BS {
            let i = idx[j];
            let h = usize::from(i >= BS / 2);
            px[h][j + 1] = px[h][j] + weight[i] * xb[i];
            px[1 - h][j + 1] = px[1 - h][j];
            pw[h][j + 1] = pw[h][j] + weight[i];
            pw[1 - h][j + 1] = pw[1 - h][j];
        }
        let txs = [px[0][BS], px[1][BS]];
        let tws = [pw[0][BS], pw[1][BS]];
        let (p2, m2) = (x_p[2], x_m[2]);
        let cp1 = x_p[0] * x_p[0] - x_p[1] * x_p[1];
        let cp2 = x_p[1] * x_p[1] - x_p[2] * x_p[2];
        let cm1 = x_m[0] * x_m[0] - x_m[1] * x_m[1];
        let cm2 = x_m[1] * x_m[1] - x_m[2] * x_m[2];
        let mut best_score = -f32::MAX;
        let mut scale = max;
        let (mut besti1, mut besti2, mut best_k) = (-1i32, -1i32, -1i32);
        for i1 in 0..=BS {
            for i2 in i1..=BS {
                let (mut qx_p, mut qx_m, mut q2_p, mut q2_m) = ([0f32; 2], [0f32; 2], [0f32; 2], [0f32; 2]);
                for h in 0..2 {
                    let sx = px[h][i1] + px[h][i2];
                    qx_p[h] = txs[h] * p2 - sx;
                    qx_m[h] = txs[h] * m2 - sx;
                    q2_p[h] = tws[h] * p2 * p2 + pw[h][i1] * cp1 + pw[h][i2] * cp2;
                    q2_m[h] = tws[h] * m2 * m2 + pw[h][i1] * cm1 + pw[h][i2] * cm2;
                }
                let sumqx = [qx_p[0] + qx_p[1], qx_p[0] + qx_m[1], qx_m[0] + qx_p[1], qx_m[0] + qx_m[1]];
                let sumq2 = [q2_p[0] + q2_p[1], q2_p[0] + q2_m[1], q2_m[0] + q2_p[1], q2_m[0] + q2_m[1]];
                for k in 0..4 {
                    if sumq2[k] > 0.0 && sumqx[k] * sumqx[k] > best_score * sumq2[k] {
                        scale = sumqx[k] / sumq2[k];
                        best_score = scale * sumqx[k];
                        (besti1, besti2, best_k) = (i1 as i32, i2 as i32, k as i32);
                    }
                }
            }
        }
        if besti1 < 0 || besti2 < 0 || best_k < 0 {
            scales[ib] = 0.0;
            shifts[ib] = 0;
            continue;
        }
        let (b1, b2) = (besti1 as usize, besti2 as usize);
        let mut best_k = best_k as usize;
        for j in 0..BS {
            l[idx[j]] = if j < b1 { 0 } else if j < b2 { 1 } else { 2 };
        }
        if scale < 0.0 {
            for v in &mut l {
                *v = 2 - *v;
            }
            scale = -scale;
            best_k = 3 - best_k;
        }
        let mut all_on_grid = true;
        for k in 0..BS / 8 {
            let xx = iq1m_xx(best_k, k, &x_p, &x_m);
            let g = 8 * k..8 * k + 8;
            index[k] = match lat.slot(lat.code(&l[g.clone()])) {
                Slot::OnGrid(j) => j,
                Slot::Off(c) => {
                    all_on_grid = false;
                    best_neighbour(lat, c, &xb[g.clone()], &weight[g.clone()], scale, xx, &mut l[g])
                }
            };
        }
        if !all_on_grid {
            let (mut sumqx, mut sumq2) = (0f32, 0f32);
            for k in 0..BS / 8 {
                let xx = iq1m_xx(best_k, k, &x_p, &x_m);
                let lv = grid_levels(lat, index[k]);
                for j in 0..8 {
                    let w = weight[8 * k + j];
                    let q = xx[(lv[j] as usize).min(2)];
                    sumqx += w * q * xb[8 * k + j];
                    sumq2 += w * q * q;
                }
            }
            if sumqx > 0.0 && sumq2 > 0.0 {
                scale = sumqx / sumq2;
            }
        }
        y.qs[2 * ib] = (index[0] & 255) as u8;
        y.qs[2 * ib + 1] = (index[1] & 255) as u8;
        y.qh[ib] = ((index[0] >> 8) | ((index[1] >> 8) << 4)) as u8;
        scales[ib] = scale;
        shifts[ib] = best_k;
        max_scale = fmax(max_scale, scale);
    }
    if max_scale == 0.0 {
        return;
    }
    let mut sc = [0u16; 4];
    let mut d = max_scale / 15.0;
    let id = 1.0 / d;
    let (mut sumqx, mut sumq2) = (0f32, 0f32);
    for ib in 0..QK_K / BS {
        let ls = nearest_int(0.5 * (id * scales[ib] - 1.0)).clamp(0, 7);
        sc[ib / 4] |= (ls as u16) << (3 * (ib % 4));
        y.qh[ib] |= MASKS[shifts[ib]];
        let xb = &xbl[BS * ib..BS * ib + BS];
        iq1m_weights(xb, qw_of(ib), sigma2, &mut weight);
        for k in 0..BS / 8 {
            let xx = iq1m_xx(shifts[ib], k, &x_p, &x_m);
            let j = y.qs[2 * ib + k] as u16 | (((y.qh[ib] as u16) << (8 - 4 * k)) & 0x700);
            let lv = grid_levels(lat, j);
            for i in 0..8 {
                let w = weight[8 * k + i];
                let q = xx[(lv[i] as usize).min(2)] * (2 * ls + 1) as f32;
                sumqx += w * q * xb[8 * k + i];
                sumq2 += w * q * q;
            }
        }
    }
    if sumq2 > 0.0 {
        d = sumqx / sumq2;
    }
    let s = u16::from_le_bytes(f32_to_f16(d * 1.1125));
    sc[0] |= (s & 0x000f) << 12;
    sc[1] |= (s & 0x00f0) << 8;
    sc[2] |= (s & 0x0f00) << 4;
    sc[3] |= s & 0xf000;
    for (dst, v) in y.scales.chunks_exact_mut(2).zip(sc) {
        dst.copy_from_slice(&v.to_le_bytes());
    }
}

/// The four little-endian u16 of an IQ1_M `scales` field and the f16 super-block scale they carry.
#[inline(always)]
fn iq1m_scales(x: &BlockIQ1M) -> ([u16; 4], f32) {
    let sc: [u16; 4] = core::array::from_fn(|i| u16::from_le_bytes([x.scales[2 * i], x.scales[2 * i + 1]]));
    let s = (sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000);
    (sc, f16_to_f32(s.to_le_bytes()))
}

/// Grid index of group `l` (0..4) of IQ1_M sub-block `ib` (0..8).
#[inline(always)]
fn iq1m_index(x: &BlockIQ1M, ib: usize, l: usize) -> usize {
    let qh = x.qh[2 * ib + l / 2] as usize;
    x.qs[4 * ib + l] as usize | ((qh << (8 - 4 * (l % 2))) & 0x700)
}

/// Whether group `l` of IQ1_M sub-block `ib` uses the negative shift.
#[inline(always)]
fn iq1m_negative(x: &BlockIQ1M, ib: usize, l: usize) -> bool {
    x.qh[2 * ib + l / 2] & (0x08 << (4 * (l % 2))) != 0
}

impl Block for BlockIQ1M {
    const TYPE: QuantType = QuantType::IQ1_M;

    /// ggml `quantize_iq1_m` (with or without `imatrix`; `_ref` is the same without).
    #[inline(always)]
    fn quantize_row(src: &[f32], dst: &mut [Self], imatrix: Option<&[f32]>) {
        for (ibl, (xbl, y)) in src.chunks_exact(QK_K).zip(dst.iter_mut()).enumerate() {
            quantize_block_m(xbl, imatrix.map(|w| &w[QK_K * ibl..QK_K * (ibl + 1)]), y);
        }
    }

    #[inline(always)]
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (x, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
            let (sc, d) = iq1m_scales(x);
            for ib in 0..8 {
                let dl = [
                    d * (2 * ((sc[ib / 2] >> (6 * (ib % 2))) & 7) + 1) as f32,
                    d * (2 * ((sc[ib / 2] >> (6 * (ib % 2) + 3)) & 7) + 1) as f32,
                ];
                for l in 0..4 {
                    let delta = if iq1m_negative(x, ib, l) { -IQ1M_DELTA } else { IQ1M_DELTA };
                    let grid = grids::IQ1S_GRID[iq1m_index(x, ib, l)].to_le_bytes();
                    let out = &mut y[32 * ib + 8 * l..32 * ib + 8 * l + 8];
                    for k in 0..8 {
                        out[k] = dl[l / 2] * (grid[k] as i8 as f32 + delta);
                    }
                }
            }
        }
    }
}

impl DotBlock for BlockIQ1M {
    type Dot = BlockQ8K;

    /// ggml `ggml_vec_dot_iq1_m_q8_K_generic`.
    fn vec_dot_ref(lhs: &[Self], rhs: &[BlockQ8K]) -> f32 {
        let mut sumf = 0f32;
        for (x, y) in lhs.iter().zip(rhs) {
            let (sc, d) = iq1m_scales(x);
            let (mut sumi1, mut sumi2) = (0i32, 0i32);
            for ib in 0..8 {
                let (mut sum1, mut sum2) = ([0i32; 2], [0i32; 2]);
                for l in 0..4 {
                    let q8 = &y.qs[32 * ib + 8 * l..32 * ib + 8 * l + 8];
                    let lsum1 = group_dot(grids::IQ1S_GRID[iq1m_index(x, ib, l)], q8);
                    let lsum2: i32 = q8.iter().map(|&v| v as i32).sum();
                    let delta = if iq1m_negative(x, ib, l) { -1 } else { 1 };
                    sum1[l / 2] += lsum1;
                    sum2[l / 2] += lsum2 * delta;
                }
                let ls1 = 2 * ((sc[ib / 2] >> (6 * (ib % 2))) & 7) as i32 + 1;
                let ls2 = 2 * ((sc[ib / 2] >> (6 * (ib % 2) + 3)) & 7) as i32 + 1;
                sumi1 += sum1[0] * ls1 + sum1[1] * ls2;
                sumi2 += sum2[0] * ls1 + sum2[1] * ls2;
            }
            sumf += d * y.d() * (sumi1 as f32 + IQ1M_DELTA * sumi2 as f32);
        }
        sumf
    }
}
