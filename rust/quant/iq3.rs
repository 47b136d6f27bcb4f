//! IQ3_XXS (3.0625 bpw) and IQ3_S (3.4375 bpw): groups of 4 values coded as points of a
//! 256- or 512-point grid in {1,3,…,15}^4, with per-8 sign bytes and 4-bit scales per 32.
//!
//! Quantization ports ggml's `quantize_row_iq3_xxs_impl` / `quantize_row_iq3_s_impl` with the
//! same float32 operation order: for each 32-value sub-block, a scan over 31 (IQ3_XXS) or 19
//! (IQ3_S) trial scales, snapping each group of 4 to the grid (off-grid codes take the best of
//! their precomputed neighbours, [`super::grids::Lattice`]), keeping the scale that maximises
//! `sumqx^2 / sumq2`, then one refinement pass at the chosen scale.
#![forbid(unsafe_code)]
// Index loops mirror ggml's loops one to one, which keeps the operation order easy to audit.
#![allow(clippy::needless_range_loop)]

use super::grids::{self, even_signs, fmax, nearest_int, Lattice, Slot, QK_K};
use super::k::BlockQ8K;
use super::{f16_to_f32, f32_to_f16, Block, DotBlock};
use crate::types::QuantType;

/// IQ3_XXS super-block: 256 values in 98 bytes (ggml `block_iq3_xxs`).
///
/// `qs[0..64]` are grid indices (one per 4 values, `IQ3XXS_GRID`); `qs[64..96]` hold one
/// little-endian u32 per 32 values: four 7-bit sign fields (`KSIGNS_IQ2XS`) in bits 0..28 and
/// the 4-bit scale `s` in bits 28..32. Value = `d * (0.5 + s) * 0.5 * grid * sign`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockIQ3XXS {
    /// Super-block scale (f16, little-endian).
    pub d: [u8; 2],
    /// Grid indices, then scales and signs.
    pub qs: [u8; 3 * QK_K / 8],
}

/// IQ3_S super-block: 256 values in 110 bytes (ggml `block_iq3_s`).
///
/// Grid index `k` of sub-block `ib` is `qs[8*ib + k] | bit k of qh[ib] << 8` (`IQ3S_GRID`);
/// `signs` has one plain sign byte per 8 values; `scales` two 4-bit scales `s` per byte.
/// Value = `d * (1 + 2s) * grid * sign`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockIQ3S {
    /// Super-block scale (f16, little-endian).
    pub d: [u8; 2],
    /// Low 8 bits of the grid indices.
    pub qs: [u8; QK_K / 4],
    /// Ninth bit of the grid indices.
    pub qh: [u8; QK_K / 32],
    /// Sign bits, one per value.
    pub signs: [u8; QK_K / 8],
    /// 4-bit sub-block scales.
    pub scales: [u8; QK_K / 64],
}

const _: () = assert!(core::mem::size_of::<BlockIQ3XXS>() == 98 && core::mem::align_of::<BlockIQ3XXS>() == 1);
const _: () = assert!(core::mem::size_of::<BlockIQ3S>() == 110 && core::mem::align_of::<BlockIQ3S>() == 1);

/// Largest level (exclusive): levels are 0..8, grid coordinates 2l+1 in 1..=15.
const KMAXQ: i32 = 8;

/// The per-type differences of the shared sub-block search.
struct Search {
    /// Trial scales `is` in `-half..=half`.
    half: i32,
    /// Initial value of the per-group "on grid" flags.
    init_on_grid: bool,
    /// Refinement re-snaps only the groups that were off the grid (IQ3_XXS) or all (IQ3_S).
    skip_on_grid: bool,
}

const XXS: Search = Search { half: 15, init_on_grid: true, skip_on_grid: true };
const S: Search = Search { half: 9, init_on_grid: false, skip_on_grid: false };

/// `sum w*x*q` and `sum w*q*q` with `q = 2l+1`, in ggml's order.
#[inline(always)]
fn sums(weight: &[f32; 32], xval: &[f32; 32], l: &[i8; 32]) -> (f32, f32) {
    let (mut sumqx, mut sumq2) = (0f32, 0f32);
    for i in 0..32 {
        let w = weight[i];
        let q = (2 * l[i] as i32 + 1) as f32;
        sumqx += w * xval[i] * q;
        sumq2 += w * q * q;
    }
    (sumqx, sumq2)
}

/// Snap 4 values to levels at inverse scale `id` (ggml: `nearest_int(0.5*(id*x-1))` clamped).
#[inline(always)]
fn snap4(id: f32, x: &[f32], l: &mut [i8]) {
    for i in 0..4 {
        l[i] = nearest_int(0.5 * (id * x[i] - 1.0)).clamp(0, KMAXQ - 1) as i8;
    }
}

/// Scale search for one sub-block of 32 with maximum `max > 0`; leaves the levels in `l` and
/// returns the scale (may be negative or zero, as in ggml).
fn search(
    lat: &Lattice<4>,
    cfg: &Search,
    xval: &[f32; 32],
    weight: &[f32; 32],
    waux: &[f32; 32],
    max: f32,
    l: &mut [i8; 32],
) -> f32 {
    let mut best = 0f32;
    let mut scale = max / (2 * KMAXQ - 1) as f32;
    let mut on_grid = [cfg.init_on_grid; 8];
    let mut on_grid_aux = [true; 8];
    let mut laux = [0i8; 32];
    for is in -cfg.half..=cfg.half {
        let id = ((2 * KMAXQ - 1) as f32 + is as f32 * 0.2) / max;
        let this_scale = 1.0 / id;
        for k in 0..8 {
            let g = 4 * k..4 * k + 4;
            snap4(id, &xval[g.clone()], &mut laux[g.clone()]);
            on_grid_aux[k] = true;
            if let Slot::Off(c) = lat.slot(lat.code(&laux[g.clone()])) {
                on_grid_aux[k] = false;
                lat.best_neighbour(c, &xval[g.clone()], &waux[g.clone()], this_scale, &mut laux[g]);
            }
        }
        let (sumqx, sumq2) = sums(weight, xval, &laux);
        if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
            scale = sumqx / sumq2;
            best = scale * sumqx;
            *l = laux;
            on_grid = on_grid_aux;
        }
    }
    if on_grid.iter().any(|&g| !g) && scale > 0.0 {
        let id = 1.0 / scale;
        for k in 0..8 {
            if cfg.skip_on_grid && on_grid[k] {
                continue;
            }
            let g = 4 * k..4 * k + 4;
            let mut lk = [0i8; 4];
            snap4(id, &xval[g.clone()], &mut lk);
            let j = match lat.slot(lat.code(&lk)) {
                Slot::OnGrid(j) => j,
                Slot::Off(c) => lat.best_neighbour(c, &xval[g.clone()], &waux[g.clone()], scale, &mut l[g.clone()]),
            };
            l[g].copy_from_slice(lat.levels(j));
        }
        let (sumqx, sumq2) = sums(weight, xval, l);
        if sumq2 > 0.0 {
            scale = sumqx / sumq2;
        }
    }
    scale
}

/// Per-sub-block weights: `qw * sqrt(sigma2 + x^2)` with an importance matrix, else `x^2`.
#[inline(always)]
fn weights(xb: &[f32], qw: Option<&[f32]>, sigma2: f32, weight: &mut [f32; 32], waux: &mut [f32; 32]) {
    match qw {
        Some(qw) => {
            for i in 0..32 {
                weight[i] = qw[i] * (sigma2 + xb[i] * xb[i]).sqrt();
            }
        }
        None => {
            for i in 0..32 {
                weight[i] = xb[i] * xb[i];
            }
        }
    }
    for i in 0..32 {
        waux[i] = weight[i].sqrt();
    }
}

/// `2 * sum(x^2) / 256`, summed in order.
#[inline(always)]
fn sigma2(xbl: &[f32]) -> f32 {
    let mut sumx2 = 0f32;
    for &v in xbl {
        sumx2 += v * v;
    }
    2.0 * sumx2 / QK_K as f32
}

/// The 4-bit sub-block scale code for scale `s` at inverse super-block scale `id`.
#[inline(always)]
fn scale_code(id: f32, s: f32) -> u32 {
    nearest_int(0.5 * (id * s - 1.0)).clamp(0, 15) as u32
}

fn quantize_block_xxs(xbl: &[f32], qw: Option<&[f32]>, y: &mut BlockIQ3XXS) {
    let lat = grids::iq3xxs();
    let mut q3 = [0u8; 3 * QK_K / 8];
    let mut sas = [0u32; 8];
    let mut scales = [0f32; 8];
    let (mut weight, mut waux, mut xval) = ([0f32; 32], [0f32; 32], [0f32; 32]);
    let mut l = [0i8; 32];
    let mut max_scale = 0f32;
    let sigma2 = sigma2(xbl);
    for ib in 0..8 {
        let xb = &xbl[32 * ib..32 * ib + 32];
        weights(xb, qw.map(|q| &q[32 * ib..32 * ib + 32]), sigma2, &mut weight, &mut waux);
        let mut signs = [0u8; 4];
        for k in 0..4 {
            signs[k] = even_signs(&xb[8 * k..], &weight[8 * k..], &mut xval[8 * k..]);
        }
        let max = xval[1..].iter().fold(xval[0], |m, &v| fmax(m, v));
        if max < 1e-8 {
            scales[ib] = 0.0;
            continue;
        }
        l.fill(0);
        let mut scale = search(lat, &XXS, &xval, &weight, &waux, max, &mut l);
        if scale < 0.0 {
            scale = -scale;
            for s in &mut signs {
                *s = !*s & 127;
            }
        }
        for k in 0..8 {
            q3[8 * ib + k] = lat.index_or_fallback(lat.code(&l[4 * k..4 * k + 4])) as u8;
        }
        sas[ib] = signs[0] as u32 | (signs[1] as u32) << 7 | (signs[2] as u32) << 14 | (signs[3] as u32) << 21;
        scales[ib] = scale;
        max_scale = fmax(max_scale, scale);
    }
    if max_scale == 0.0 {
        *y = BlockIQ3XXS { d: f32_to_f16(0.0), qs: [0; 3 * QK_K / 8] };
        return;
    }
    let d = max_scale / 31.0;
    y.d = f32_to_f16(d * 1.0125);
    let id = 1.0 / d;
    for ib in 0..8 {
        sas[ib] |= scale_code(id, scales[ib]) << 28;
        q3[64 + 4 * ib..68 + 4 * ib].copy_from_slice(&sas[ib].to_le_bytes());
    }
    y.qs = q3;
}

fn quantize_block_s(xbl: &[f32], qw: Option<&[f32]>, y: &mut BlockIQ3S) {
    let lat = grids::iq3s();
    *y = bytemuck::Zeroable::zeroed();
    let mut done = 0;
    let mut scales = [0f32; 8];
    let (mut weight, mut waux, mut xval) = ([0f32; 32], [0f32; 32], [0f32; 32]);
    let mut l = [0i8; 32];
    let mut max_scale = 0f32;
    let sigma2 = sigma2(xbl);
    for ib in 0..8 {
        let xb = &xbl[32 * ib..32 * ib + 32];
        weights(xb, qw.map(|q| &q[32 * ib..32 * ib + 32]), sigma2, &mut weight, &mut waux);
        let mut signs = [0u8; 4];
        for (k, s) in signs.iter_mut().enumerate() {
            for i in 0..8 {
                let v = xb[8 * k + i];
                if v >= 0.0 {
                    xval[8 * k + i] = v;
                } else {
                    xval[8 * k + i] = -v;
                    *s |= 1 << i;
                }
            }
        }
        let max = xval[1..].iter().fold(xval[0], |m, &v| fmax(m, v));
        if max == 0.0 {
            scales[ib] = 0.0;
            continue;
        }
        l.fill(0);
        let mut scale = search(lat, &S, &xval, &weight, &waux, max, &mut l);
        if scale < 0.0 {
            scale = -scale;
            for s in &mut signs {
                *s = !*s;
            }
        }
        // ggml advances its `qs` and `signs` cursors only for sub-blocks it encodes (a skipped
        // all-zero sub-block leaves them in place), while `qh` is indexed by sub-block.
        for k in 0..8 {
            let j = lat.index_or_fallback(lat.code(&l[4 * k..4 * k + 4]));
            y.qs[8 * done + k] = (j & 255) as u8;
            y.qh[ib] |= ((j >> 8) as u8) << k;
        }
        y.signs[4 * done..4 * done + 4].copy_from_slice(&signs);
        done += 1;
        scales[ib] = scale;
        max_scale = fmax(max_scale, scale);
    }
    if max_scale == 0.0 {
        return;
    }
    let d = max_scale / 31.0;
    y.d = f32_to_f16(d * 1.033);
    let id = 1.0 / d;
    for ib in (0..8).step_by(2) {
        y.scales[ib / 2] = (scale_code(id, scales[ib]) | scale_code(id, scales[ib + 1]) << 4) as u8;
    }
}

/// `±1` for bit `j` of a sign byte.
#[inline(always)]
fn sign(signs: u8, j: usize) -> f32 {
    if signs & grids::KMASK_IQ2XS[j] != 0 {
        -1.0
    } else {
        1.0
    }
}

impl Block for BlockIQ3XXS {
    const TYPE: QuantType = QuantType::IQ3_XXS;

    /// ggml `quantize_iq3_xxs` (with `imatrix`) / `quantize_row_iq3_xxs_ref` (without).
    #[inline(always)]
    fn quantize_row(src: &[f32], dst: &mut [Self], imatrix: Option<&[f32]>) {
        for (ibl, (xbl, y)) in src.chunks_exact(QK_K).zip(dst.iter_mut()).enumerate() {
            quantize_block_xxs(xbl, imatrix.map(|w| &w[QK_K * ibl..QK_K * (ibl + 1)]), y);
        }
    }

    #[inline(always)]
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (x, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
            let d = f16_to_f32(x.d);
            for ib in 0..8 {
                let aux = u32::from_le_bytes([x.qs[64 + 4 * ib], x.qs[65 + 4 * ib], x.qs[66 + 4 * ib], x.qs[67 + 4 * ib]]);
                let db = d * (0.5 + (aux >> 28) as f32) * 0.5;
                for l in 0..4 {
                    let signs = grids::KSIGNS_IQ2XS[((aux >> (7 * l)) & 127) as usize];
                    let g1 = grids::grid4(grids::IQ3XXS_GRID[x.qs[8 * ib + 2 * l] as usize]);
                    let g2 = grids::grid4(grids::IQ3XXS_GRID[x.qs[8 * ib + 2 * l + 1] as usize]);
                    let out = &mut y[32 * ib + 8 * l..32 * ib + 8 * l + 8];
                    for j in 0..4 {
                        out[j] = db * g1[j] as f32 * sign(signs, j);
                        out[j + 4] = db * g2[j] as f32 * sign(signs, j + 4);
                    }
                }
            }
        }
    }
}

impl Block for BlockIQ3S {
    const TYPE: QuantType = QuantType::IQ3_S;

    /// ggml `quantize_iq3_s` (with or without `imatrix`; `_ref` is the same without).
    #[inline(always)]
    fn quantize_row(src: &[f32], dst: &mut [Self], imatrix: Option<&[f32]>) {
        for (ibl, (xbl, y)) in src.chunks_exact(QK_K).zip(dst.iter_mut()).enumerate() {
            quantize_block_s(xbl, imatrix.map(|w| &w[QK_K * ibl..QK_K * (ibl + 1)]), y);
        }
    }

    #[inline(always)]
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (x, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
            let d = f16_to_f32(x.d);
            for ib in 0..8 {
                let sc = x.scales[ib / 2] >> (4 * (ib % 2)) & 0xf;
                let db = d * (1 + 2 * sc as i32) as f32;
                let qh = x.qh[ib] as u32;
                for l in 0..4 {
                    let i1 = x.qs[8 * ib + 2 * l] as u32 | ((qh << (8 - 2 * l)) & 256);
                    let i2 = x.qs[8 * ib + 2 * l + 1] as u32 | ((qh << (7 - 2 * l)) & 256);
                    let g1 = grids::grid4(grids::IQ3S_GRID[i1 as usize]);
                    let g2 = grids::grid4(grids::IQ3S_GRID[i2 as usize]);
                    let signs = x.signs[4 * ib + l];
                    let out = &mut y[32 * ib + 8 * l..32 * ib + 8 * l + 8];
                    for j in 0..4 {
                        out[j] = db * g1[j] as f32 * sign(signs, j);
                        out[j + 4] = db * g2[j] as f32 * sign(signs, j + 4);
                    }
                }
            }
        }
    }
}

/// Integer part of the IQ3_XXS · Q8_K block dot product (ggml `ggml_vec_dot_iq3_xxs_q8_K_generic`):
/// `sum over sub-blocks of (2s+1) * sum(grid * sign * q8)`.
#[inline]
pub fn dot_block_xxs(x: &BlockIQ3XXS, q8: &[i8; QK_K]) -> i32 {
    let mut bsum = 0i32;
    for ib in 0..8 {
        let aux = u32::from_le_bytes([x.qs[64 + 4 * ib], x.qs[65 + 4 * ib], x.qs[66 + 4 * ib], x.qs[67 + 4 * ib]]);
        let ls = 2 * (aux >> 28) + 1;
        let mut sumi = 0i32;
        for l in 0..4 {
            let g1 = grids::grid4(grids::IQ3XXS_GRID[x.qs[8 * ib + 2 * l] as usize]);
            let g2 = grids::grid4(grids::IQ3XXS_GRID[x.qs[8 * ib + 2 * l + 1] as usize]);
            let signs = grids::KSIGNS_IQ2XS[((aux >> (7 * l)) & 127) as usize];
            let q = &q8[32 * ib + 8 * l..32 * ib + 8 * l + 8];
            for j in 0..4 {
                sumi += g1[j] as i32 * q[j] as i32 * isign(signs, j);
                sumi += g2[j] as i32 * q[j + 4] as i32 * isign(signs, j + 4);
            }
        }
        bsum = bsum.wrapping_add(sumi.wrapping_mul(ls as i32));
    }
    bsum
}

/// Integer part of the IQ3_S · Q8_K block dot product (ggml `ggml_vec_dot_iq3_s_q8_K_generic`).
#[inline]
pub fn dot_block_s(x: &BlockIQ3S, q8: &[i8; QK_K]) -> i32 {
    let mut bsum = 0i32;
    for ib in 0..8 {
        let ls = 2 * ((x.scales[ib / 2] >> (4 * (ib % 2))) & 0xf) as i32 + 1;
        let qh = x.qh[ib] as u32;
        let mut sumi = 0i32;
        for l in 0..4 {
            let i1 = x.qs[8 * ib + 2 * l] as u32 | ((qh << (8 - 2 * l)) & 256);
            let i2 = x.qs[8 * ib + 2 * l + 1] as u32 | ((qh << (7 - 2 * l)) & 256);
            let g1 = grids::grid4(grids::IQ3S_GRID[i1 as usize]);
            let g2 = grids::grid4(grids::IQ3S_GRID[i2 as usize]);
            let signs = x.signs[4 * ib + l];
            let q = &q8[32 * ib + 8 * l..32 * ib + 8 * l + 8];
            for j in 0..4 {
                sumi += g1[j] as i32 * q[j] as i32 * isign(signs, j);
                sumi += g2[j] as i32 * q[j + 4] as i32 * isign(signs, j + 4);
            }
        }
        bsum = bsum.wrapping_add(sumi.wrapping_mul(ls));
    }
    bsum
}

/// Integer `±1` for bit `j` of a sign byte.
#[inline(always)]
pub(crate) fn isign(signs: u8, j: usize) -> i32 {
    if signs & grids::KMASK_IQ2XS[j] != 0 {
        -1
    } else {
        1
    }
}

impl DotBlock for BlockIQ3XXS {
    type Dot = BlockQ8K;
    /// ggml `ggml_vec_dot_iq3_xxs_q8_K_generic`.
    fn vec_dot_ref(lhs: &[Self], rhs: &[BlockQ8K]) -> f32 {
        let mut sumf = 0f32;
        for (x, y) in lhs.iter().zip(rhs) {
            sumf += f16_to_f32(x.d) * y.d() * dot_block_xxs(x, &y.qs) as f32;
        }
        0.25 * sumf
    }
}

impl DotBlock for BlockIQ3S {
    type Dot = BlockQ8K;
    /// ggml `ggml_vec_dot_iq3_s_q8_K_generic`.
    fn vec_dot_ref(lhs: &[Self], rhs: &[BlockQ8K]) -> f32 {
        let mut sumf = 0f32;
        for (x, y) in lhs.iter().zip(rhs) {
            sumf += f16_to_f32(x.d) * y.d() * dot_block_s(x, &y.qs) as f32;
        }
        sumf
    }
}
