//! The non-linear 4-bit types IQ4_NL and IQ4_XS: 4-bit indices into the 16-value codebook
//! [`KVALUES_IQ4NL`], scaled per block of 32.
//!
//! * IQ4_NL: blocks of 32 with an f16 scale (same size as Q4_0).
//! * IQ4_XS: super-blocks of 256 with an f16 super-scale and a 6-bit signed scale per 32
//!   (low 4 bits in `scales_l`, high 2 bits in `scales_h`).
//!
//! Quantization is ggml's `quantize_row_iq4_nl_impl`: per block of 32, a weighted least-squares
//! scale searched over `2·ntry + 1` candidate inverse scales. `ggml_quantize_chunk` uses
//! `ntry = 7` for both types; `quantize_row_iq4_nl_ref` uses `ntry = -1` (no search), which is
//! [`Block::quantize_row_ref`] here.
#![forbid(unsafe_code)]

use super::k::BlockQ8K as Q8K;
use super::legacy::BlockQ8_0 as Q8_0;
use super::{f16_to_f32, f32_to_f16, Block, DotBlock};
use crate::types::QuantType;

/// The IQ4 codebook (ggml `kvalues_iq4nl`), sorted ascending.
pub const KVALUES_IQ4NL: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/// Values per IQ4_NL block.
pub const QK4_NL: usize = 32;
const QK_K: usize = 256;
/// ggml `GROUP_MAX_EPS`: blocks whose largest magnitude is below this get scale 0.
const GROUP_MAX_EPS: f32 = 1e-15;

/// IQ4_NL block (ggml `block_iq4_nl`): `x = d · KVALUES_IQ4NL[code]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockIQ4NL {
    /// f16 scale, little-endian.
    pub d: [u8; 2],
    /// Codes: value `j` in the low nibble of byte `j`, value `j + 16` in its high nibble.
    pub qs: [u8; QK4_NL / 2],
}

/// IQ4_XS block (ggml `block_iq4_xs`): `x = d · (ls - 32) · KVALUES_IQ4NL[code]` with a 6-bit
/// `ls` per block of 32.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockIQ4XS {
    /// f16 super-scale, little-endian.
    pub d: [u8; 2],
    /// High 2 bits of the 8 block scales (block `ib` at bits `2ib..2ib+2`), little-endian u16.
    pub scales_h: [u8; 2],
    /// Low 4 bits of the block scales (block `ib` in nibble `ib % 2` of byte `ib / 2`).
    pub scales_l: [u8; QK_K / 64],
    /// Codes, 16 bytes per block of 32 laid out as in IQ4_NL.
    pub qs: [u8; QK_K / 2],
}

const _: () = assert!(core::mem::size_of::<BlockIQ4NL>() == 18 && core::mem::align_of::<BlockIQ4NL>() == 1);
const _: () = assert!(core::mem::size_of::<BlockIQ4XS>() == 136 && core::mem::align_of::<BlockIQ4XS>() == 1);
const _: () = assert!(QuantType::IQ4_NL.type_size() == 18 && QuantType::IQ4_NL.block_size() == QK4_NL);
const _: () = assert!(QuantType::IQ4_XS.type_size() == 136 && QuantType::IQ4_XS.block_size() == QK_K);

/// Round half to even through the 1.5·2^23 trick (ggml `nearest_int`); exact for |x| < 2^22.
#[inline(always)]
fn nearest_int(x: f32) -> i32 {
    ((x + 12582912.0).to_bits() & 0x007f_ffff) as i32 - 0x0040_0000
}

/// `V` as f32.
const VF: [f32; 16] = {
    let mut v = [0f32; 16];
    let mut i = 0;
    while i < 16 {
        v[i] = KVALUES_IQ4NL[i] as f32;
        i += 1;
    }
    v
};

/// For each integer `f` in `-127..=112`, at `f + 127`: the `i` in `0..15` with
/// `VF[i] <= f < VF[i + 1]` (the codebook values are integers, so this is the bracket of every
/// `x` with `floor(x) == f`).
const BRACKET: [u8; 240] = {
    let mut t = [0u8; 240];
    let mut f = 0;
    while f < 240 {
        let v = f as i32 - 127;
        let mut i = 0;
        while i < 14 && KVALUES_IQ4NL[i + 1] as i32 <= v {
            i += 1;
        }
        t[f] = i as u8;
        f += 1;
    }
    t
};

/// Index of the codebook value nearest to `x`, ties to the upper value (ggml `best_index_int8`
/// over `kvalues_iq4nl`: the same bracket and the same final float comparison, found through
/// `floor(x)` instead of bisection). `x <= -127` and `x >= 113` land in the end brackets, where
/// the comparison picks 0 or 15 as ggml's early returns do; NaN gives 15 as ggml's bisection does.
#[inline(always)]
fn best_index(x: f32) -> u8 {
    if x.is_nan() {
        return 15;
    }
    // floor(x) clamped to -127..=112 (saturating conversion; exact for the values that matter).
    let t = (x as i32).clamp(-200, 200);
    let f = t - ((t as f32) > x) as i32;
    let i = BRACKET[(f.clamp(-127, 112) + 127) as usize] as usize & 15;
    // Branch-free on purpose: the outcome is data dependent and mispredicts half the time.
    // (x is not NaN, so neither side is, and !(a < b) is a >= b.)
    i as u8 + (x - VF[i] >= VF[(i + 1) & 15] - x) as u8
}

/// Per-block scale search shared by IQ4_NL and IQ4_XS (the per-32 part of ggml's
/// `quantize_row_iq4_nl_impl`). Returns the block scale, or `None` when the block is below
/// [`GROUP_MAX_EPS`] (then `l` is left untouched, as ggml leaves it). Fills `l` with the codes of
/// the first (unsearched) pass otherwise.
#[inline(always)]
fn block_scale(xb: &[f32], weight: &[f32; 32], l: &mut [u8; 32], ntry: i32) -> Option<f32> {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in xb {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        return None;
    }
    let v0 = KVALUES_IQ4NL[0] as f32;
    let mut d = if ntry > 0 { -max / v0 } else { max / v0 };
    let id = 1.0 / d;
    let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
    for j in 0..32 {
        let k = best_index(id * xb[j]);
        l[j] = k;
        let q = KVALUES_IQ4NL[k as usize & 15] as f32;
        let w = weight[j];
        sumqx += w * q * xb[j];
        sumq2 += w * q * q;
    }
    d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
    let mut best = d * sumqx;
    for itry in -ntry..=ntry {
        let id = (itry + KVALUES_IQ4NL[0] as i32) as f32 / max;
        let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
        for j in 0..32 {
            let q = KVALUES_IQ4NL[best_index(id * xb[j]) as usize & 15] as f32;
            let w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    Some(d)
}

/// `sum(x²) · 2 / n` over a super-block (ggml's `sigma2`).
#[inline(always)]
fn sigma2_of(x: &[f32]) -> f32 {
    let mut s = 0.0f32;
    for v in x {
        s += v * v;
    }
    s * (2.0 / x.len() as f32)
}

/// The importance weights of one block of 32: `qw · sqrt(sigma2 + x²)` with an imatrix, `x²`
/// without.
#[inline(always)]
fn block_weights(xb: &[f32], qw: Option<&[f32]>, sigma2: f32) -> [f32; 32] {
    let mut w = [0f32; 32];
    match qw {
        Some(qw) => {
            for j in 0..32 {
                w[j] = qw[j] * (sigma2 + xb[j] * xb[j]).sqrt();
            }
        }
        None => {
            for j in 0..32 {
                w[j] = xb[j] * xb[j];
            }
        }
    }
    w
}

#[inline(always)]
fn pack_codes(l: &[u8; 32], qs: &mut [u8]) {
    for j in 0..16 {
        qs[j] = l[j] | (l[j + 16] << 4);
    }
}

/// Quantize one IQ4_NL block. `l` carries the codes of the previous block of the row: ggml's
/// `ntry <= 0` path reuses them for blocks below [`GROUP_MAX_EPS`] (their scale is 0, so the
/// codes do not affect values).
fn quantize_iq4nl_block(x: &[f32], qw: Option<&[f32]>, y: &mut BlockIQ4NL, l: &mut [u8; 32], ntry: i32) {
    let sigma2 = sigma2_of(x);
    let weight = block_weights(x, qw, sigma2);
    let scale = block_scale(x, &weight, l, ntry).unwrap_or(0.0);
    y.d = f32_to_f16(scale);
    if ntry > 0 {
        let id = if scale != 0.0 { 1.0 / scale } else { 0.0 };
        for j in 0..32 {
            l[j] = best_index(id * x[j]);
        }
    }
    pack_codes(l, &mut y.qs);
}

fn quantize_iq4xs_block(x: &[f32], qw: Option<&[f32]>, y: &mut BlockIQ4XS, ntry: i32) {
    let sigma2 = sigma2_of(x);
    let mut scales = [0f32; 8];
    let mut l = [0u8; 32];
    let (mut max_scale, mut amax_scale) = (0.0f32, 0.0f32);
    for ib in 0..8 {
        let xb = &x[32 * ib..32 * ib + 32];
        let weight = block_weights(xb, qw.map(|w| &w[32 * ib..32 * ib + 32]), sigma2);
        // The first-pass codes are recomputed below from the quantized scale.
        let d = block_scale(xb, &weight, &mut l, ntry).unwrap_or(0.0);
        scales[ib] = d;
        if d.abs() > amax_scale {
            amax_scale = d.abs();
            max_scale = d;
        }
    }
    let d = -max_scale / 32.0;
    y.d = f32_to_f16(d);
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut scales_h = 0u16;
    for ib in 0..8 {
        let ls = nearest_int(id * scales[ib]).clamp(-32, 31);
        let dl = d * ls as f32;
        let idl = if dl != 0.0 { 1.0 / dl } else { 0.0 };
        let xb = &x[32 * ib..32 * ib + 32];
        for j in 0..32 {
            l[j] = best_index(idl * xb[j]);
        }
        pack_codes(&l, &mut y.qs[16 * ib..16 * ib + 16]);
        let ls = (ls + 32) as u8;
        if ib % 2 == 0 {
            y.scales_l[ib / 2] = ls & 0xF;
        } else {
            y.scales_l[ib / 2] |= (ls & 0xF) << 4;
        }
        scales_h |= ((ls >> 4) as u16) << (2 * ib);
    }
    y.scales_h = scales_h.to_le_bytes();
}

impl BlockIQ4NL {
    fn quantize(src: &[f32], dst: &mut [Self], imatrix: Option<&[f32]>, ntry: i32) {
        // Codes before the first block of a row: ggml reads uninitialized stack memory there
        // (ref path, leading blocks below GROUP_MAX_EPS); we use code 8 (value 1, times scale 0),
        // which is what the chunk path writes for such blocks.
        let mut l = [8u8; 32];
        for (i, (x, y)) in src.chunks_exact(QK4_NL).zip(dst.iter_mut()).enumerate() {
            let qw = imatrix.map(|w| &w[QK4_NL * i..QK4_NL * (i + 1)]);
            quantize_iq4nl_block(x, qw, y, &mut l, ntry);
        }
    }
}

impl Block for BlockIQ4NL {
    const TYPE: QuantType = QuantType::IQ4_NL;

    #[inline(always)]
    fn quantize_row(src: &[f32], dst: &mut [Self], imatrix: Option<&[f32]>) {
        Self::quantize(src, dst, imatrix, 7);
    }

    #[inline(always)]
    fn quantize_row_ref(src: &[f32], dst: &mut [Self]) {
        Self::quantize(src, dst, None, -1);
    }

    #[inline(always)]
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK4_NL)) {
            let d = f16_to_f32(b.d);
            let (lo, hi) = y.split_at_mut(16);
            for ((q, l), h) in b.qs.iter().zip(lo).zip(hi) {
                *l = d * KVALUES_IQ4NL[(q & 0xF) as usize] as f32;
                *h = d * KVALUES_IQ4NL[(q >> 4) as usize] as f32;
            }
        }
    }
}

impl BlockIQ4XS {
    /// The 6-bit scale of block `ib` (0..8), minus 32.
    #[inline(always)]
    pub fn block_scale(&self, ib: usize) -> i32 {
        let h = u16::from_le_bytes(self.scales_h);
        let ls = ((self.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) as i32 | ((((h >> (2 * ib)) & 3) as i32) << 4);
        ls - 32
    }
}

impl Block for BlockIQ4XS {
    const TYPE: QuantType = QuantType::IQ4_XS;

    #[inline(always)]
    fn quantize_row(src: &[f32], dst: &mut [Self], imatrix: Option<&[f32]>) {
        for (i, (x, y)) in src.chunks_exact(QK_K).zip(dst.iter_mut()).enumerate() {
            let qw = imatrix.map(|w| &w[QK_K * i..QK_K * (i + 1)]);
            quantize_iq4xs_block(x, qw, y, 7);
        }
    }

    #[inline(always)]
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
            let d = f16_to_f32(b.d);
            for (ib, yb) in y.chunks_exact_mut(32).enumerate() {
                let dl = d * b.block_scale(ib) as f32;
                let qs = &b.qs[16 * ib..16 * ib + 16];
                let (lo, hi) = yb.split_at_mut(16);
                for ((q, l), h) in qs.iter().zip(lo).zip(hi) {
                    *l = dl * KVALUES_IQ4NL[(q & 0xF) as usize] as f32;
                    *h = dl * KVALUES_IQ4NL[(q >> 4) as usize] as f32;
                }
            }
        }
    }
}

/// Integer dot of 32 IQ4 codes (16 bytes) with 32 int8 activations.
#[inline(always)]
fn dot32(qs: &[u8], y: &[i8]) -> i32 {
    let (mut s1, mut s2) = (0i32, 0i32);
    for j in 0..16 {
        s1 += y[j] as i32 * KVALUES_IQ4NL[(qs[j] & 0xF) as usize] as i32;
        s2 += y[j + 16] as i32 * KVALUES_IQ4NL[(qs[j] >> 4) as usize] as i32;
    }
    s1 + s2
}

/// Scalar IQ4_NL · Q8_0 (ggml `ggml_vec_dot_iq4_nl_q8_0_generic`).
pub fn vec_dot_iq4nl_q8_0(x: &[BlockIQ4NL], y: &[Q8_0]) -> f32 {
    let mut sumf = 0.0f32;
    for (b, a) in x.iter().zip(y) {
        let d = f16_to_f32(a.d) * f16_to_f32(b.d);
        sumf += d * dot32(&b.qs, &a.qs) as f32;
    }
    sumf
}

/// Scalar IQ4_XS · Q8_K (ggml `ggml_vec_dot_iq4_xs_q8_K_generic`).
pub fn vec_dot_iq4xs_q8_k(x: &[BlockIQ4XS], y: &[Q8K]) -> f32 {
    let mut sumf = 0.0f32;
    for (b, a) in x.iter().zip(y) {
        let d4d8 = f16_to_f32(b.d) * a.d();
        let q8 = &a.qs;
        for ib in 0..8 {
            let dl = d4d8 * b.block_scale(ib) as f32;
            sumf += dl * dot32(&b.qs[16 * ib..16 * ib + 16], &q8[32 * ib..32 * ib + 32]) as f32;
        }
    }
    sumf
}

impl DotBlock for BlockIQ4NL {
    type Dot = Q8_0;
    fn vec_dot_ref(lhs: &[Self], rhs: &[Self::Dot]) -> f32 {
        vec_dot_iq4nl_q8_0(lhs, rhs)
    }
}

impl DotBlock for BlockIQ4XS {
    type Dot = Q8K;
    fn vec_dot_ref(lhs: &[Self], rhs: &[Self::Dot]) -> f32 {
        vec_dot_iq4xs_q8_k(lhs, rhs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ggml's bisection, written out, to check the branch-free [`best_index`].
    fn best_index_bisect(x: f32) -> u8 {
        let v = |i: usize| KVALUES_IQ4NL[i] as f32;
        if x <= v(0) {
            return 0;
        }
        if x >= v(15) {
            return 15;
        }
        let (mut ml, mut mu) = (0usize, 15usize);
        while mu - ml > 1 {
            let mav = (ml + mu) / 2;
            if x < v(mav) {
                mu = mav
            } else {
                ml = mav
            }
        }
        if x - v(mu - 1) < v(mu) - x {
            (mu - 1) as u8
        } else {
            mu as u8
        }
    }

    #[test]
    fn best_index_matches_bisection() {
        let mut x = -140.0f32;
        while x < 140.0 {
            assert_eq!(best_index(x), best_index_bisect(x), "x = {x}");
            x += 0.0009765625;
        }
        for f in -200i32..200 {
            let v = f as f32;
            for x in [v, f32::from_bits(v.to_bits() + 1), f32::from_bits(v.to_bits().wrapping_sub(1)), v + 0.5, v - 0.5] {
                assert_eq!(best_index(x), best_index_bisect(x), "x = {x}");
            }
        }
        for x in [f32::MAX, -f32::MAX, f32::INFINITY, f32::NEG_INFINITY, 3e9, -3e9, 0.0, -0.0, 1e-45] {
            assert_eq!(best_index(x), best_index_bisect(x), "x = {x}");
        }
        for k in KVALUES_IQ4NL {
            for x in [k as f32, f32::from_bits((k as f32).to_bits() + 1), f32::from_bits((k as f32).to_bits() - 1)] {
                assert_eq!(best_index(x), best_index_bisect(x), "x = {x}");
            }
        }
    }
}
