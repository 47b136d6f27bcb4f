//! IQ2_XXS (2.0625 bpw), IQ2_XS (2.3125 bpw) and IQ2_S (2.5625 bpw): groups of 8 values coded
//! as points of a 256-, 512- or 1024-point grid in {1,3,5}^8, with sign bits and 4-bit scales.
//!
//! Quantization ports ggml's `quantize_row_iq2_xxs_impl`, `quantize_row_iq2_xs_impl` and
//! `quantize_row_iq2_s_impl` with the same float32 operation order. IQ2_XXS and IQ2_XS need an
//! importance matrix in ggml (`ggml_quantize_requires_imatrix`); [`crate::quant::quantize`]
//! refuses them without one.
#![forbid(unsafe_code)]
// Index loops mirror ggml's loops one to one, which keeps the operation order easy to audit.
#![allow(clippy::needless_range_loop)]

use super::grids::{self, even_signs, fmax, nearest_int, Lattice, Slot, QK_K};
use super::k::BlockQ8K;
use super::search::make_qp_quants;
use super::{f16_to_f32, f32_to_f16, Block, DotBlock};
use crate::types::QuantType;

/// IQ2_XXS super-block: 256 values in 66 bytes (ggml `block_iq2_xxs`).
///
/// `qs` holds, per 32 values, two little-endian u32: the first has four 8-bit grid indices
/// (`IQ2XXS_GRID`), the second four 7-bit sign fields (`KSIGNS_IQ2XS`) and the 4-bit scale `s`
/// in bits 28..32. Value = `d * (0.5 + s) * 0.25 * grid * sign`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockIQ2XXS {
    /// Super-block scale (f16, little-endian).
    pub d: [u8; 2],
    /// Grid indices, signs and scales (32 little-endian u16 in ggml).
    pub qs: [u8; QK_K / 4],
}

/// IQ2_XS super-block: 256 values in 74 bytes (ggml `block_iq2_xs`).
///
/// `qs` holds one little-endian u16 per 8 values: a 9-bit grid index (`IQ2XS_GRID`) and a 7-bit
/// sign field; `scales` two 4-bit scales per 32 values (one per 16).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockIQ2XS {
    /// Super-block scale (f16, little-endian).
    pub d: [u8; 2],
    /// Grid indices and signs (32 little-endian u16).
    pub qs: [u8; QK_K / 4],
    /// 4-bit scales, one per 16 values.
    pub scales: [u8; QK_K / 32],
}

/// IQ2_S super-block: 256 values in 82 bytes (ggml `block_iq2_s`).
///
/// `qs[0..32]` are the low 8 bits of the 10-bit grid indices (`IQ2S_GRID`), `qs[32..64]` one
/// plain sign byte per 8 values; `qh` the top 2 bits of 4 indices per byte; `scales` one 4-bit
/// scale per 16 values.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockIQ2S {
    /// Super-block scale (f16, little-endian).
    pub d: [u8; 2],
    /// Low index bits, then sign bytes.
    pub qs: [u8; QK_K / 4],
    /// High index bits.
    pub qh: [u8; QK_K / 32],
    /// 4-bit scales, one per 16 values.
    pub scales: [u8; QK_K / 32],
}

const _: () = assert!(core::mem::size_of::<BlockIQ2XXS>() == 66 && core::mem::align_of::<BlockIQ2XXS>() == 1);
const _: () = assert!(core::mem::size_of::<BlockIQ2XS>() == 74 && core::mem::align_of::<BlockIQ2XS>() == 1);
const _: () = assert!(core::mem::size_of::<BlockIQ2S>() == 82 && core::mem::align_of::<BlockIQ2S>() == 1);

/// Levels are 0..3 (grid coordinates 1, 3, 5).
const KMAXQ: i32 = 3;

/// `sum w*x*q` and `sum w*q*q` with `q = 2l+1`, in ggml's order.
#[inline(always)]
fn sums(weight: &[f32], xval: &[f32], l: &[i8]) -> (f32, f32) {
    let (mut sumqx, mut sumq2) = (0f32, 0f32);
    for i in 0..l.len() {
        let w = weight[i];
        let q = (2 * l[i] as i32 + 1) as f32;
        sumqx += w * xval[i] * q;
        sumq2 += w * q * q;
    }
    (sumqx, sumq2)
}

/// Snap 8 values to levels at inverse scale `id` (ggml: `nearest_int(0.5*(id*x-1))` clamped).
#[inline(always)]
fn snap8(id: f32, x: &[f32], l: &mut [i8]) {
    for i in 0..8 {
        l[i] = nearest_int(0.5 * (id * x[i] - 1.0)).clamp(0, KMAXQ - 1) as i8;
    }
}

/// `sum(x^2) / 256`, summed in order.
#[inline(always)]
fn sumx2_over_n(xbl: &[f32]) -> f32 {
    let mut sumx2 = 0f32;
    for &v in xbl {
        sumx2 += v * v;
    }
    sumx2 / QK_K as f32
}

/// The 4-bit sub-block scale code for scale `s` at inverse super-block scale `id`.
#[inline(always)]
fn scale_code(id: f32, s: f32) -> u32 {
    nearest_int(0.5 * (id * s - 1.0)).clamp(0, 15) as u32
}

fn quantize_block_xxs(xbl: &[f32], qw: &[f32], y: &mut BlockIQ2XXS) {
    let lat = grids::iq2xxs();
    let mut q2 = [0u32; 16];
    let mut scales = [0f32; 8];
    let (mut weight, mut waux, mut xval) = ([0f32; 32], [0f32; 32], [0f32; 32]);
    let (mut l, mut laux) = ([0i8; 32], [0i8; 32]);
    let mut max_scale = 0f32;
    let sigma2 = sumx2_over_n(xbl);
    for ib in 0..8 {
        let xb = &xbl[32 * ib..32 * ib + 32];
        let qw = &qw[32 * ib..32 * ib + 32];
        for i in 0..32 {
            weight[i] = qw[i] * (sigma2 + xb[i] * xb[i]).sqrt();
        }
        for i in 0..32 {
            waux[i] = weight[i].sqrt();
        }
        let mut signs = [0u8; 4];
        for k in 0..4 {
            signs[k] = even_signs(&xb[8 * k..], &weight[8 * k..], &mut xval[8 * k..]);
        }
        let max = xval[1..].iter().fold(xval[0], |m, &v| fmax(m, v));
        if max < 1e-15 {
            scales[ib] = 0.0;
            continue;
        }
        let mut lq = [0u8; 32];
        let mut scale = make_qp_quants(KMAXQ + 1, &xval, &mut lq, &weight);
        for i in 0..32 {
            l[i] = lq[i] as i8;
        }
        let eff_max = scale * KMAXQ as f32;
        if eff_max <= 0.0 {
            scales[ib] = 0.0;
            continue;
        }
        let mut best = 0f32;
        for is in -6..=6 {
            let id = ((2 * KMAXQ - 1) as f32 + is as f32 * 0.1) / eff_max;
            let this_scale = 1.0 / id;
            for k in 0..4 {
                let g = 8 * k..8 * k + 8;
                snap8(id, &xval[g.clone()], &mut laux[g.clone()]);
                if let Slot::Off(c) = lat.slot(lat.code(&laux[g.clone()])) {
                    lat.best_neighbour(c, &xval[g.clone()], &waux[g.clone()], this_scale, &mut laux[g]);
                }
            }
            let (sumqx, sumq2) = sums(&weight, &xval, &laux);
            if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
                scale = sumqx / sumq2;
                best = scale * sumqx;
                l = laux;
            }
        }
        if scale > 0.0 {
            let id = 1.0 / scale;
            for k in 0..4 {
                let g = 8 * k..8 * k + 8;
                let mut lk = [0i8; 8];
                snap8(id, &xval[g.clone()], &mut lk);
                let j = match lat.slot(lat.code(&lk)) {
                    Slot::OnGrid(j) => j,
                    Slot::Off(c) => lat.best_neighbour(c, &xval[g.clone()], &waux[g.clone()], scale, &mut l[g.clone()]),
                };
                l[g].copy_from_slice(lat.levels(j));
            }
            let (sumqx, sumq2) = sums(&weight, &xval, &l);
            if sumq2 > 0.0 {
                scale = sumqx / sumq2;
            }
        }
        if scale < 0.0 {
            scale = -scale;
            for s in &mut signs {
                *s = !*s & 127;
            }
        }
        for k in 0..4 {
            let j = lat.index_or_fallback(lat.code(&l[8 * k..8 * k + 8]));
            q2[2 * ib] |= (j as u32) << (8 * k);
            q2[2 * ib + 1] |= (signs[k] as u32) << (7 * k);
        }
        scales[ib] = scale;
        max_scale = fmax(max_scale, scale);
    }
    y.d = f32_to_f16(0.0);
    if max_scale == 0.0 {
        y.qs = [0; QK_K / 4];
        return;
    }
    let d = max_scale / 31.0;
    y.d = f32_to_f16(d);
    let id = 1.0 / d;
    for ib in 0..8 {
        q2[2 * ib + 1] |= scale_code(id, scales[ib]) << 28;
    }
    for (dst, v) in y.qs.chunks_exact_mut(4).zip(q2) {
        dst.copy_from_slice(&v.to_le_bytes());
    }
}

/// The IQ2_XS / IQ2_S scale search for one sub-block of 16 with maximum `max` (ggml's loop
/// over 19 trial scales, then re-snapping the groups that were off the grid). Leaves the levels
/// in `l` and returns the scale.
fn search16(lat: &Lattice<8>, xval: &[f32; 16], weight: &[f32; 16], waux: &[f32; 16], max: f32, l: &mut [i8; 16]) -> f32 {
    let mut best = 0f32;
    let mut scale = max / (2 * KMAXQ - 1) as f32;
    let mut on_grid = [true; 2];
    let mut on_grid_aux = [true; 2];
    let mut laux = [0i8; 16];
    for is in -9..=9 {
        let id = ((2 * KMAXQ - 1) as f32 + is as f32 * 0.1) / max;
        let this_scale = 1.0 / id;
        for k in 0..2 {
            let g = 8 * k..8 * k + 8;
            snap8(id, &xval[g.clone()], &mut laux[g.clone()]);
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
        for k in 0..2 {
            if on_grid[k] {
                continue;
            }
            let g = 8 * k..8 * k + 8;
            snap8(id, &xval[g.clone()], &mut l[g.clone()]);
            if let Slot::Off(c) = lat.slot(lat.code(&l[g.clone()])) {
                lat.best_neighbour(c, &xval[g.clone()], &waux[g.clone()], scale, &mut l[g]);
            }
        }
        let (sumqx, sumq2) = sums(weight, xval, l);
        if sumq2 > 0.0 {
            scale = sumqx / sumq2;
        }
    }
    scale
}

fn quantize_block_xs(xbl: &[f32], qw: &[f32], y: &mut BlockIQ2XS) {
    let lat = grids::iq2xs();
    let mut q2 = [0u16; 32];
    let mut scales = [0f32; 16];
    let (mut weight, mut waux, mut xval) = ([0f32; 16], [0f32; 16], [0f32; 16]);
    let mut l = [0i8; 16];
    let mut max_scale = 0f32;
    let sigma2 = sumx2_over_n(xbl);
    *y = bytemuck::Zeroable::zeroed();
    for ib in 0..16 {
        let xb = &xbl[16 * ib..16 * ib + 16];
        let qw = &qw[16 * ib..16 * ib + 16];
        for i in 0..16 {
            weight[i] = qw[i] * (sigma2 + xb[i] * xb[i]).sqrt();
        }
        for i in 0..16 {
            waux[i] = weight[i].sqrt();
        }
        let mut signs = [0u8; 2];
        for k in 0..2 {
            signs[k] = even_signs(&xb[8 * k..], &weight[8 * k..], &mut xval[8 * k..]);
        }
        let max = xval[1..].iter().fold(xval[0], |m, &v| fmax(m, v));
        l.fill(0);
        if max < 1e-15 {
            scales[ib] = 0.0;
            continue;
        }
        let mut scale = search16(lat, &xval, &weight, &waux, max, &mut l);
        if scale < 0.0 {
            scale = -scale;
            for s in &mut signs {
                *s = !*s & 127;
            }
        }
        for k in 0..2 {
            let j = lat.index_or_fallback(lat.code(&l[8 * k..8 * k + 8]));
            q2[2 * ib + k] = j | (signs[k] as u16) << 9;
        }
        scales[ib] = scale;
        max_scale = fmax(max_scale, scale);
    }
    if max_scale == 0.0 {
        return;
    }
    let d = max_scale / 31.0;
    y.d = f32_to_f16(d);
    let id = 1.0 / d;
    for ib in 0..16 {
        y.scales[ib / 2] |= (scale_code(id, scales[ib]) << (4 * (ib % 2))) as u8;
    }
    for (dst, v) in y.qs.chunks_exact_mut(2).zip(q2) {
        dst.copy_from_slice(&v.to_le_bytes());
    }
}

fn quantize_block_s(xbl: &[f32], qw: Option<&[f32]>, y: &mut BlockIQ2S) {
    let lat = grids::iq2s();
    let mut scales = [0f32; 16];
    let (mut weight, mut waux, mut xval) = ([0f32; 16], [0f32; 16], [0f32; 16]);
    let mut l = [0i8; 16];
    let mut max_scale = 0f32;
    let sigma2 = 2.0 * {
        let mut sumx2 = 0f32;
        for &v in xbl {
            sumx2 += v * v;
        }
        sumx2
    } / QK_K as f32;
    *y = bytemuck::Zeroable::zeroed();
    for ib in 0..16 {
        let xb = &xbl[16 * ib..16 * ib + 16];
        match qw {
            Some(qw) => {
                let qw = &qw[16 * ib..16 * ib + 16];
                for i in 0..16 {
                    weight[i] = qw[i] * (sigma2 + xb[i] * xb[i]).sqrt();
                }
            }
            None => {
                for i in 0..16 {
                    weight[i] = 0.25 * sigma2 + xb[i] * xb[i];
                }
            }
        }
        for i in 0..16 {
            waux[i] = weight[i].sqrt();
        }
        let mut signs = [0u8; 2];
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
        l.fill(0);
        if max < 1e-8 {
            scales[ib] = 0.0;
            continue;
        }
        let mut scale = search16(lat, &xval, &weight, &waux, max, &mut l);
        if scale < 0.0 {
            scale = -scale;
            for s in &mut signs {
                *s = !*s;
            }
        }
        for k in 0..2 {
            let j = lat.index_or_fallback(lat.code(&l[8 * k..8 * k + 8]));
            let i8 = 2 * ib + k;
            y.qs[i8] = (j & 255) as u8;
            y.qh[i8 / 4] |= ((j >> 8) as u8) << (2 * (i8 % 4));
            y.qs[QK_K / 8 + i8] = signs[k];
        }
        scales[ib] = scale;
        max_scale = fmax(max_scale, scale);
    }
    if max_scale == 0.0 {
        return;
    }
    let d = max_scale / 31.0;
    y.d = f32_to_f16(d * 0.9875);
    let id = 1.0 / d;
    for ib in 0..16 {
        y.scales[ib / 2] |= (scale_code(id, scales[ib]) << (4 * (ib % 2))) as u8;
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

/// Integer `±1` for bit `j` of a sign byte.
#[inline(always)]
fn isign(signs: u8, j: usize) -> i32 {
    if signs & grids::KMASK_IQ2XS[j] != 0 {
        -1
    } else {
        1
    }
}

/// Unit importance weights for the types ggml refuses to quantize without an imatrix, when a
/// Rust caller bypasses [`crate::quant::quantize`] (which rejects that call). Not a ggml path.
static UNIT_WEIGHTS: [f32; QK_K] = [1.0; QK_K];

fn block_weights(imatrix: Option<&[f32]>, ibl: usize) -> &[f32] {
    imatrix.map_or(&UNIT_WEIGHTS[..], |w| &w[QK_K * ibl..QK_K * (ibl + 1)])
}

impl Block for BlockIQ2XXS {
    const TYPE: QuantType = QuantType::IQ2_XXS;

    /// ggml `quantize_iq2_xxs`, which requires `imatrix` (see [`UNIT_WEIGHTS`] for `None`).
    #[inline(always)]
    fn quantize_row(src: &[f32], dst: &mut [Self], imatrix: Option<&[f32]>) {
        for (ibl, (xbl, y)) in src.chunks_exact(QK_K).zip(dst.iter_mut()).enumerate() {
            quantize_block_xxs(xbl, block_weights(imatrix, ibl), y);
        }
    }

    #[inline(always)]
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (x, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
            let d = f16_to_f32(x.d);
            for ib in 0..8 {
                let q = &x.qs[8 * ib..8 * ib + 8];
                let aux1 = u32::from_le_bytes([q[4], q[5], q[6], q[7]]);
                let db = d * (0.5 + (aux1 >> 28) as f32) * 0.25;
                for l in 0..4 {
                    let grid = grids::grid8(grids::IQ2XXS_GRID[q[l] as usize]);
                    let signs = grids::KSIGNS_IQ2XS[((aux1 >> (7 * l)) & 127) as usize];
                    let out = &mut y[32 * ib + 8 * l..32 * ib + 8 * l + 8];
                    for j in 0..8 {
                        out[j] = db * grid[j] as f32 * sign(signs, j);
                    }
                }
            }
        }
    }
}

impl Block for BlockIQ2XS {
    const TYPE: QuantType = QuantType::IQ2_XS;

    /// ggml `quantize_iq2_xs`, which requires `imatrix` (see [`UNIT_WEIGHTS`] for `None`).
    #[inline(always)]
    fn quantize_row(src: &[f32], dst: &mut [Self], imatrix: Option<&[f32]>) {
        for (ibl, (xbl, y)) in src.chunks_exact(QK_K).zip(dst.iter_mut()).enumerate() {
            quantize_block_xs(xbl, block_weights(imatrix, ibl), y);
        }
    }

    #[inline(always)]
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (x, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
            let d = f16_to_f32(x.d);
            for ib in 0..8 {
                let db = [
                    d * (0.5 + (x.scales[ib] & 0xf) as f32) * 0.25,
                    d * (0.5 + (x.scales[ib] >> 4) as f32) * 0.25,
                ];
                for l in 0..4 {
                    let q = u16::from_le_bytes([x.qs[8 * ib + 2 * l], x.qs[8 * ib + 2 * l + 1]]);
                    let grid = grids::grid8(grids::IQ2XS_GRID[(q & 511) as usize]);
                    let signs = grids::KSIGNS_IQ2XS[(q >> 9) as usize];
                    let out = &mut y[32 * ib + 8 * l..32 * ib + 8 * l + 8];
                    for j in 0..8 {
                        out[j] = db[l / 2] * grid[j] as f32 * sign(signs, j);
                    }
                }
            }
        }
    }
}

/// The 10-bit IQ2_S grid index of group `l` (0..4) in sub-block `ib` (0..8).
#[inline(always)]
fn iq2s_index(x: &BlockIQ2S, ib: usize, l: usize) -> usize {
    x.qs[4 * ib + l] as usize | (((x.qh[ib] as usize) << (8 - 2 * l)) & 0x300)
}

impl Block for BlockIQ2S {
    const TYPE: QuantType = QuantType::IQ2_S;

    /// ggml `quantize_iq2_s` (with or without `imatrix`; `_ref` is the same without).
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
                let db = [
                    d * (0.5 + (x.scales[ib] & 0xf) as f32) * 0.25,
                    d * (0.5 + (x.scales[ib] >> 4) as f32) * 0.25,
                ];
                for l in 0..4 {
                    let grid = grids::grid8(grids::IQ2S_GRID[iq2s_index(x, ib, l)]);
                    let signs = x.qs[QK_K / 8 + 4 * ib + l];
                    let out = &mut y[32 * ib + 8 * l..32 * ib + 8 * l + 8];
                    for j in 0..8 {
                        out[j] = db[l / 2] * grid[j] as f32 * sign(signs, j);
                    }
                }
            }
        }
    }
}

/// `sum grid * sign * q8` over one group of 8.
#[inline(always)]
fn group_dot(grid: [u8; 8], signs: u8, q8: &[i8]) -> i32 {
    let mut s = 0i32;
    for j in 0..8 {
        s += grid[j] as i32 * q8[j] as i32 * isign(signs, j);
    }
    s
}

/// Integer part of the IQ2_XXS · Q8_K block dot product (ggml `ggml_vec_dot_iq2_xxs_q8_K_generic`).
#[inline]
pub fn dot_block_xxs(x: &BlockIQ2XXS, q8: &[i8; QK_K]) -> i32 {
    let mut bsum = 0i32;
    for ib in 0..8 {
        let q = &x.qs[8 * ib..8 * ib + 8];
        let aux1 = u32::from_le_bytes([q[4], q[5], q[6], q[7]]);
        let ls = (2 * (aux1 >> 28) + 1) as i32;
        let mut sumi = 0i32;
        for l in 0..4 {
            let grid = grids::grid8(grids::IQ2XXS_GRID[q[l] as usize]);
            let signs = grids::KSIGNS_IQ2XS[((aux1 >> (7 * l)) & 127) as usize];
            sumi += group_dot(grid, signs, &q8[32 * ib + 8 * l..]);
        }
        bsum = bsum.wrapping_add(sumi.wrapping_mul(ls));
    }
    bsum
}

/// Integer part of the IQ2_XS · Q8_K block dot product (ggml `ggml_vec_dot_iq2_xs_q8_K_generic`).
#[inline]
pub fn dot_block_xs(x: &BlockIQ2XS, q8: &[i8; QK_K]) -> i32 {
    let mut bsum = 0i32;
    for ib in 0..8 {
        let ls = [2 * (x.scales[ib] & 0xf) as i32 + 1, 2 * (x.scales[ib] >> 4) as i32 + 1];
        for half in 0..2 {
            let mut sumi = 0i32;
            for l in 2 * half..2 * half + 2 {
                let q = u16::from_le_bytes([x.qs[8 * ib + 2 * l], x.qs[8 * ib + 2 * l + 1]]);
                let grid = grids::grid8(grids::IQ2XS_GRID[(q & 511) as usize]);
                let signs = grids::KSIGNS_IQ2XS[(q >> 9) as usize];
                sumi += group_dot(grid, signs, &q8[32 * ib + 8 * l..]);
            }
            bsum = bsum.wrapping_add(sumi.wrapping_mul(ls[half]));
        }
    }
    bsum
}

/// Integer part of the IQ2_S · Q8_K block dot product (ggml `ggml_vec_dot_iq2_s_q8_K_generic`).
#[inline]
pub fn dot_block_s(x: &BlockIQ2S, q8: &[i8; QK_K]) -> i32 {
    let mut bsum = 0i32;
    for ib in 0..8 {
        let ls = [2 * (x.scales[ib] & 0xf) as i32 + 1, 2 * (x.scales[ib] >> 4) as i32 + 1];
        for half in 0..2 {
            let mut sumi = 0i32;
            for l in 2 * half..2 * half + 2 {
                let grid = grids::grid8(grids::IQ2S_GRID[iq2s_index(x, ib, l)]);
                sumi += group_dot(grid, x.qs[QK_K / 8 + 4 * ib + l], &q8[32 * ib + 8 * l..]);
            }
            bsum = bsum.wrapping_add(sumi.wrapping_mul(ls[half]));
        }
    }
    bsum
}

/// ggml's generic `vec_dot` shape for the IQ types: `scale * sum over blocks of (d_x * d_y) * bsum`.
#[inline(always)]
fn vec_dot<B>(lhs: &[B], rhs: &[BlockQ8K], d: impl Fn(&B) -> [u8; 2], bsum: impl Fn(&B, &[i8; QK_K]) -> i32) -> f32 {
    let mut sumf = 0f32;
    for (x, y) in lhs.iter().zip(rhs) {
        sumf += f16_to_f32(d(x)) * y.d() * bsum(x, &y.qs) as f32;
    }
    sumf
}

impl DotBlock for BlockIQ2XXS {
    type Dot = BlockQ8K;
    fn vec_dot_ref(lhs: &[Self], rhs: &[BlockQ8K]) -> f32 {
        0.125 * vec_dot(lhs, rhs, |x| x.d, dot_block_xxs)
    }
}

impl DotBlock for BlockIQ2XS {
    type Dot = BlockQ8K;
    fn vec_dot_ref(lhs: &[Self], rhs: &[BlockQ8K]) -> f32 {
        0.125 * vec_dot(lhs, rhs, |x| x.d, dot_block_xs)
    }
}

impl DotBlock for BlockIQ2S {
    type Dot = BlockQ8K;
    fn vec_dot_ref(lhs: &[Self], rhs: &[BlockQ8K]) -> f32 {
        0.125 * vec_dot(lhs, rhs, |x| x.d, dot_block_s)
    }
}
