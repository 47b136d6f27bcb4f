//! The legacy block types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 (weights) and Q8_1 (activations dotted
//! with Q4_1/Q5_1). Every block holds 32 values.
//!
//! Layouts are ggml's (`ggml-common.h`). Without an importance matrix each type quantizes with
//! ggml's `quantize_row_<t>_ref` (a single scale from the block's extreme value); with one,
//! Q4_0/Q5_0 search a symmetric scale ([`search::make_qx_quants`]) and Q4_1/Q5_1 a scale and min
//! ([`search::make_qkx3_quants`]), weighting each value by `imatrix[j] * sqrt(sigma² + x_j²)` where
//! `sigma²` is the row's mean square. Q8_0 ignores the importance matrix, as ggml does.
//!
//! Float-to-integer conversions reproduce what ggml's C casts compile to on x86-64 (truncation,
//! and `i32::MIN` for NaN or out-of-range values, keeping the low byte for 8-bit targets), so even
//! degenerate blocks (subnormal maxima whose inverse scale overflows) give ggml's bytes.
#![forbid(unsafe_code)]

use super::search::{make_qkx3_quants, make_qx_quants, nearest_int};
use super::{f16_to_f32, f32_to_f16, Block, DotBlock};
use crate::types::QuantType;

/// Values per block of every legacy type.
pub const QK: usize = 32;
const HALF: usize = QK / 2;

/// Q4_0: `x = d * (q - 8)`, 4-bit `q`; value `j` in the low nibble of `qs[j]`, value `j + 16` in
/// the high nibble.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ4_0 {
    /// Scale, f16 little-endian.
    pub d: [u8; 2],
    /// Packed 4-bit quants.
    pub qs: [u8; HALF],
}

/// Q4_1: `x = d * q + m`, 4-bit `q`, packed like Q4_0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ4_1 {
    /// Scale, f16 little-endian.
    pub d: [u8; 2],
    /// Min (offset), f16 little-endian.
    pub m: [u8; 2],
    /// Packed 4-bit quants.
    pub qs: [u8; HALF],
}

/// Q5_0: `x = d * (q - 16)`, 5-bit `q`: low 4 bits packed like Q4_0, bit 4 of value `j` in bit
/// `j` of the little-endian `qh`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ5_0 {
    /// Scale, f16 little-endian.
    pub d: [u8; 2],
    /// Fifth bits of the 32 quants (u32 little-endian).
    pub qh: [u8; 4],
    /// Low 4 bits of the quants, packed.
    pub qs: [u8; HALF],
}

/// Q5_1: `x = d * q + m`, 5-bit `q`, packed like Q5_0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ5_1 {
    /// Scale, f16 little-endian.
    pub d: [u8; 2],
    /// Min (offset), f16 little-endian.
    pub m: [u8; 2],
    /// Fifth bits of the 32 quants (u32 little-endian).
    pub qh: [u8; 4],
    /// Low 4 bits of the quants, packed.
    pub qs: [u8; HALF],
}

/// Q8_0: `x = d * q`, int8 `q`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ8_0 {
    /// Scale, f16 little-endian.
    pub d: [u8; 2],
    /// Quants.
    pub qs: [i8; QK],
}

/// Q8_1 (activation type): Q8_0 plus `s = d * Σ q` in f16, which lets Q4_1/Q5_1 dot products
/// apply their min with one multiply.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ8_1 {
    /// Scale, f16 little-endian.
    pub d: [u8; 2],
    /// `d * Σ qs`, f16 little-endian.
    pub s: [u8; 2],
    /// Quants.
    pub qs: [i8; QK],
}

macro_rules! assert_layout {
    ($t:ty, $qt:expr) => {
        const _: () = assert!(
            core::mem::size_of::<$t>() == $qt.type_size()
                && core::mem::align_of::<$t>() == 1
                && $qt.block_size() == QK
        );
    };
}
assert_layout!(BlockQ4_0, QuantType::Q4_0);
assert_layout!(BlockQ4_1, QuantType::Q4_1);
assert_layout!(BlockQ5_0, QuantType::Q5_0);
assert_layout!(BlockQ5_1, QuantType::Q5_1);
assert_layout!(BlockQ8_0, QuantType::Q8_0);
assert_layout!(BlockQ8_1, QuantType::Q8_1);

// ---------------------------------------------------------------------------------------------
// Conversions as ggml's x86 build performs them.

/// f32 → i32 with x86 `cvttss2si` semantics: truncation toward zero; NaN and values outside the
/// i32 range give `i32::MIN` (the "integer indefinite" value).
#[inline(always)]
fn cvtt_i32(v: f32) -> i32 {
    if v >= -2_147_483_648.0 && v < 2_147_483_648.0 {
        v as i32
    } else {
        i32::MIN
    }
}

/// C's `(int8_t)roundf(v)` on x86: round half away from zero, then keep the low byte.
///
/// Implemented without a `roundf` call (which is a library call on baseline x86-64): for
/// `|v| < 2^31` the truncated integer `t` and the exact remainder `v - t` decide the rounding.
#[inline(always)]
fn roundf_i8(v: f32) -> i8 {
    let t = cvtt_i32(v);
    if t == i32::MIN {
        // NaN, out of range, or exactly -2^31: all keep the low byte 0 either way.
        return 0;
    }
    // Exact: v and t share sign and exponent range, so the difference is representable.
    let frac = v - t as f32;
    let r = t + (frac >= 0.5) as i32 - (frac <= -0.5) as i32;
    r as i8
}

/// x86 `cvtps2dq` after `round_ps(NEAREST)`: round half to even, `i32::MIN` for NaN or values
/// outside the i32 range.
#[inline(always)]
fn round_even_i32(v: f32) -> i32 {
    if v.abs() < 4_194_304.0 {
        nearest_int(v)
    } else {
        cvtt_i32(v.round_ties_even())
    }
}

/// Index of the value of largest magnitude (the first one on ties) and that value; `(0.0)` when
/// every value is zero (ggml's loop starts from `max = 0` and only replaces on a strict increase).
#[inline(always)]
fn signed_absmax(x: &[f32]) -> f32 {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

/// `(min, max)` of a block starting from `(FLT_MAX, -FLT_MAX)`, as Q4_1/Q5_1 do.
#[inline(always)]
fn min_max(x: &[f32]) -> (f32, f32) {
    let mut min = f32::MAX;
    let mut max = -f32::MAX;
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

/// Largest |x| of a block (`MAX(amax, fabsf(v))` from 0).
#[inline(always)]
fn abs_max(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |a, &v| if a > v.abs() { a } else { v.abs() })
}

/// Pack 32 levels (< 32) into 4-bit pairs plus the fifth-bit word.
#[inline(always)]
fn pack5(l: &[u8; QK], qs: &mut [u8; HALF]) -> [u8; 4] {
    let mut qh = 0u32;
    for j in 0..HALF {
        let (a, b) = (l[j], l[j + HALF]);
        qs[j] = (a & 0x0f) | ((b & 0x0f) << 4);
        qh |= (((a & 0x10) >> 4) as u32) << j;
        qh |= (((b & 0x10) >> 4) as u32) << (j + HALF);
    }
    qh.to_le_bytes()
}

/// The 32 five-bit levels of a Q5 block.
#[inline(always)]
fn unpack5(qs: &[u8; HALF], qh: [u8; 4]) -> [u8; QK] {
    let qh = u32::from_le_bytes(qh);
    let mut l = [0u8; QK];
    for j in 0..HALF {
        l[j] = (qs[j] & 0x0f) | ((((qh >> j) << 4) & 0x10) as u8);
        l[j + HALF] = (qs[j] >> 4) | (((qh >> (j + 12)) & 0x10) as u8);
    }
    l
}

/// Per-row setup of ggml's importance-weighted legacy quantizers: `sigma² = Σ x² / n`.
#[inline]
fn row_sigma2(x: &[f32]) -> f32 {
    let mut sum_x2 = 0.0f32;
    for &v in x {
        sum_x2 += v * v;
    }
    sum_x2 / x.len() as f32
}

/// Block weights `qw[j] * sqrt(sigma² + x_j²)`.
#[inline(always)]
fn block_weights(xb: &[f32], qw: &[f32], sigma2: f32) -> [f32; QK] {
    let mut w = [0.0f32; QK];
    for j in 0..QK {
        w[j] = qw[j] * (sigma2 + xb[j] * xb[j]).sqrt();
    }
    w
}

// ---------------------------------------------------------------------------------------------
// Reference quantizers (ggml `quantize_row_<t>_ref`), one block at a time.

fn q4_0_ref(x: &[f32], y: &mut BlockQ4_0) {
    let max = signed_absmax(x);
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    y.d = f32_to_f16(d);
    for j in 0..HALF {
        let x0 = x[j] * id;
        let x1 = x[j + HALF] * id;
        let xi0 = (cvtt_i32(x0 + 8.5) as i8 as i32).min(15) as u8;
        let xi1 = (cvtt_i32(x1 + 8.5) as i8 as i32).min(15) as u8;
        y.qs[j] = xi0 | (xi1 << 4);
    }
}

fn q4_1_ref(x: &[f32], y: &mut BlockQ4_1) {
    let (min, max) = min_max(x);
    let d = (max - min) / 15.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    y.d = f32_to_f16(d);
    y.m = f32_to_f16(min);
    for j in 0..HALF {
        let x0 = (x[j] - min) * id;
        let x1 = (x[j + HALF] - min) * id;
        let xi0 = (cvtt_i32(x0 + 0.5) as i8 as i32).min(15) as u8;
        let xi1 = (cvtt_i32(x1 + 0.5) as i8 as i32).min(15) as u8;
        y.qs[j] = xi0 | (xi1 << 4);
    }
}

fn q5_0_ref(x: &[f32], y: &mut BlockQ5_0) {
    let max = signed_absmax(x);
    let d = max / -16.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    y.d = f32_to_f16(d);
    let mut l = [0u8; QK];
    for j in 0..QK {
        l[j] = (cvtt_i32(x[j] * id + 16.5) as i8 as i32).min(31) as u8;
    }
    y.qh = pack5(&l, &mut y.qs);
}

fn q5_1_ref(x: &[f32], y: &mut BlockQ5_1) {
    let (min, max) = min_max(x);
    let d = (max - min) / 31.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    y.d = f32_to_f16(d);
    y.m = f32_to_f16(min);
    let mut l = [0u8; QK];
    for j in 0..QK {
        l[j] = cvtt_i32((x[j] - min) * id + 0.5) as u8;
    }
    y.qh = pack5(&l, &mut y.qs);
}

/// Shared by Q8_0 and Q8_1 ref: `d = amax / 127`, `q = roundf(x / d)`. Returns `d`.
#[inline(always)]
fn q8_ref(x: &[f32], qs: &mut [i8; QK]) -> f32 {
    let amax = abs_max(x);
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for j in 0..QK {
        qs[j] = roundf_i8(x[j] * id);
    }
    d
}

fn q8_0_ref(x: &[f32], y: &mut BlockQ8_0) {
    let d = q8_ref(x, &mut y.qs);
    y.d = f32_to_f16(d);
}

fn q8_1_ref(x: &[f32], y: &mut BlockQ8_1) {
    let d = q8_ref(x, &mut y.qs);
    y.d = f32_to_f16(d);
    let sum: i32 = y.qs.iter().map(|&q| q as i32).sum();
    y.s = f32_to_f16(sum as f32 * d);
}

// ---------------------------------------------------------------------------------------------
// Importance-weighted quantizers (ggml `quantize_row_<t>_impl` with quant_weights).

fn q4_0_imat(x: &[f32], dst: &mut [BlockQ4_0], qw: &[f32]) {
    let sigma2 = row_sigma2(x);
    let mut l = [0i8; QK];
    for ((y, xb), qb) in dst.iter_mut().zip(x.chunks_exact(QK)).zip(qw.chunks_exact(QK)) {
        let w = block_weights(xb, qb, sigma2);
        let d = make_qx_quants(8, xb, &mut l, 1, Some(&w));
        y.d = f32_to_f16(d);
        for j in 0..HALF {
            y.qs[j] = (l[j] as u8) | ((l[j + HALF] as u8) << 4);
        }
    }
}

fn q5_0_imat(x: &[f32], dst: &mut [BlockQ5_0], qw: &[f32]) {
    let sigma2 = row_sigma2(x);
    let mut l = [0i8; QK];
    for ((y, xb), qb) in dst.iter_mut().zip(x.chunks_exact(QK)).zip(qw.chunks_exact(QK)) {
        let w = block_weights(xb, qb, sigma2);
        let d = make_qx_quants(16, xb, &mut l, 1, Some(&w));
        y.d = f32_to_f16(d);
        y.qh = pack5(&l.map(|v| v as u8), &mut y.qs);
    }
}

/// Q4_1 / Q5_1 weighted search; returns per block `(d, m)` via the callback with the levels.
fn qx_1_imat(x: &[f32], qw: &[f32], nmax: i32, mut emit: impl FnMut(usize, f32, f32, &[u8; QK])) {
    let sigma2 = row_sigma2(x);
    let (mut l, mut laux) = ([0u8; QK], [0u8; QK]);
    for (ib, (xb, qb)) in x.chunks_exact(QK).zip(qw.chunks_exact(QK)).enumerate() {
        let w = block_weights(xb, qb, sigma2);
        let (d, the_min) = make_qkx3_quants(nmax, xb, Some(&w), &mut l, &mut laux, -0.9, 0.05, 36, false);
        emit(ib, d, -the_min, &l);
    }
}

// ---------------------------------------------------------------------------------------------
// Block trait implementations.

/// Quantize a row block by block with `f`.
#[inline(always)]
fn per_block<B>(src: &[f32], dst: &mut [B], f: impl Fn(&[f32], &mut B)) {
    for (y, x) in dst.iter_mut().zip(src.chunks_exact(QK)) {
        f(x, y);
    }
}

impl Block for BlockQ4_0 {
    const TYPE: QuantType = QuantType::Q4_0;
    fn quantize_row(src: &[f32], dst: &mut [Self], imatrix: Option<&[f32]>) {
        match imatrix {
            None => per_block(src, dst, q4_0_ref),
            Some(qw) => q4_0_imat(src, dst, qw),
        }
    }
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK)) {
            let d = f16_to_f32(b.d);
            for j in 0..HALF {
                y[j] = ((b.qs[j] & 0x0f) as i32 - 8) as f32 * d;
                y[j + HALF] = ((b.qs[j] >> 4) as i32 - 8) as f32 * d;
            }
        }
    }
}

impl Block for BlockQ4_1 {
    const TYPE: QuantType = QuantType::Q4_1;
    fn quantize_row(src: &[f32], dst: &mut [Self], imatrix: Option<&[f32]>) {
        match imatrix {
            None => per_block(src, dst, q4_1_ref),
            Some(qw) => qx_1_imat(src, qw, 15, |ib, d, m, l| {
                let y = &mut dst[ib];
                y.d = f32_to_f16(d);
                y.m = f32_to_f16(m);
                for j in 0..HALF {
                    y.qs[j] = l[j] | (l[j + HALF] << 4);
                }
            }),
        }
    }
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK)) {
            let (d, m) = (f16_to_f32(b.d), f16_to_f32(b.m));
            for j in 0..HALF {
                y[j] = (b.qs[j] & 0x0f) as f32 * d + m;
                y[j + HALF] = (b.qs[j] >> 4) as f32 * d + m;
            }
        }
    }
}

impl Block for BlockQ5_0 {
    const TYPE: QuantType = QuantType::Q5_0;
    fn quantize_row(src: &[f32], dst: &mut [Self], imatrix: Option<&[f32]>) {
        match imatrix {
            None => per_block(src, dst, q5_0_ref),
            Some(qw) => q5_0_imat(src, dst, qw),
        }
    }
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK)) {
            let d = f16_to_f32(b.d);
            let l = unpack5(&b.qs, b.qh);
            for j in 0..QK {
                y[j] = (l[j] as i32 - 16) as f32 * d;
            }
        }
    }
}

impl Block for BlockQ5_1 {
    const TYPE: QuantType = QuantType::Q5_1;
    fn quantize_row(src: &[f32], dst: &mut [Self], imatrix: Option<&[f32]>) {
        match imatrix {
            None => per_block(src, dst, q5_1_ref),
            Some(qw) => qx_1_imat(src, qw, 31, |ib, d, m, l| {
                let y = &mut dst[ib];
                y.d = f32_to_f16(d);
                y.m = f32_to_f16(m);
                y.qh = pack5(l, &mut y.qs);
            }),
        }
    }
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK)) {
            let (d, m) = (f16_to_f32(b.d), f16_to_f32(b.m));
            let l = unpack5(&b.qs, b.qh);
            for j in 0..QK {
                y[j] = l[j] as f32 * d + m;
            }
        }
    }
}

impl Block for BlockQ8_0 {
    const TYPE: QuantType = QuantType::Q8_0;
    /// ggml's Q8_0 quantizer ignores the importance matrix.
    fn quantize_row(src: &[f32], dst: &mut [Self], _imatrix: Option<&[f32]>) {
        per_block(src, dst, q8_0_ref)
    }
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK)) {
            let d = f16_to_f32(b.d);
            for j in 0..QK {
                y[j] = b.qs[j] as f32 * d;
            }
        }
    }
}

impl Block for BlockQ8_1 {
    const TYPE: QuantType = QuantType::Q8_1;
    /// Activation type: ggml has only the reference row quantizer (no importance matrix).
    fn quantize_row(src: &[f32], dst: &mut [Self], _imatrix: Option<&[f32]>) {
        per_block(src, dst, q8_1_ref)
    }
    /// `x = d * q` (the `s` field is redundant for dequantization).
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK)) {
            let d = f16_to_f32(b.d);
            for j in 0..QK {
                y[j] = b.qs[j] as f32 * d;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Activation quantizers used by ggml-cpu's matmul on x86 (AVX/AVX2 `quantize_row_q8_0/1`).

/// Shared by the Q8_0/Q8_1 activation quantizers: `d = amax / 127`, `id = 127 / amax`,
/// `q = saturate_i8(round_half_even(x * id))`. Returns `d` and the wrapping sum of the
/// pre-saturation integers (what ggml-cpu sums for Q8_1's `s`).
#[inline(always)]
fn q8_act(x: &[f32], qs: &mut [i8; QK]) -> (f32, i32) {
    let amax = abs_max(x);
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut sum = 0i32;
    for j in 0..QK {
        let q = round_even_i32(x[j] * id);
        sum = sum.wrapping_add(q);
        qs[j] = q.clamp(-128, 127) as i8;
    }
    (d, sum)
}

/// Quantize activations to Q8_0 as ggml-cpu's x86 `quantize_row_q8_0` does before a matmul (the
/// bytes `vec_dot` sees in llama.cpp): `id = 127 / amax` and round-half-even, which differs from
/// [`Block::quantize_row_ref`] (`id = 1 / (amax / 127)`, round-half-away) on near-ties.
/// `src.len()` must equal `32 * dst.len()`.
pub fn quantize_row_q8_0_act(src: &[f32], dst: &mut [BlockQ8_0]) {
    for (y, x) in dst.iter_mut().zip(src.chunks_exact(QK)) {
        let (d, _) = q8_act(x, &mut y.qs);
        y.d = f32_to_f16(d);
    }
}

/// Quantize activations to Q8_1 as ggml-cpu's x86 `quantize_row_q8_1` does: like
/// [`quantize_row_q8_0_act`], plus `s = f16(d * Σ q)`.
/// `src.len()` must equal `32 * dst.len()`.
pub fn quantize_row_q8_1_act(src: &[f32], dst: &mut [BlockQ8_1]) {
    for (y, x) in dst.iter_mut().zip(src.chunks_exact(QK)) {
        let (d, sum) = q8_act(x, &mut y.qs);
        y.d = f32_to_f16(d);
        y.s = f32_to_f16(d * sum as f32);
    }
}

// ---------------------------------------------------------------------------------------------
// Scalar reference dot products (ggml-cpu `ggml_vec_dot_<t>_q8_<k>_generic`, same order).

/// Σ over the two half-block integer sums, as ggml's generic kernels split them.
#[inline(always)]
fn isum(lv: impl Fn(usize) -> i32, q: &[i8; QK]) -> i32 {
    let (mut s0, mut s1) = (0i32, 0i32);
    for j in 0..HALF {
        s0 += lv(j) * q[j] as i32;
        s1 += lv(j + HALF) * q[j + HALF] as i32;
    }
    s0 + s1
}

impl DotBlock for BlockQ4_0 {
    type Dot = BlockQ8_0;
    fn vec_dot_ref(lhs: &[Self], rhs: &[BlockQ8_0]) -> f32 {
        let mut sumf = 0.0f32;
        for (x, y) in lhs.iter().zip(rhs) {
            let sumi = isum(
                |j| if j < HALF { (x.qs[j] & 0x0f) as i32 - 8 } else { (x.qs[j - HALF] >> 4) as i32 - 8 },
                &y.qs,
            );
            sumf += sumi as f32 * f16_to_f32(x.d) * f16_to_f32(y.d);
        }
        sumf
    }
}

impl DotBlock for BlockQ4_1 {
    type Dot = BlockQ8_1;
    fn vec_dot_ref(lhs: &[Self], rhs: &[BlockQ8_1]) -> f32 {
        let mut sumf = 0.0f32;
        for (x, y) in lhs.iter().zip(rhs) {
            let sumi = isum(
                |j| if j < HALF { (x.qs[j] & 0x0f) as i32 } else { (x.qs[j - HALF] >> 4) as i32 },
                &y.qs,
            );
            sumf += (f16_to_f32(x.d) * f16_to_f32(y.d)) * sumi as f32 + f16_to_f32(x.m) * f16_to_f32(y.s);
        }
        sumf
    }
}

impl DotBlock for BlockQ5_0 {
    type Dot = BlockQ8_0;
    fn vec_dot_ref(lhs: &[Self], rhs: &[BlockQ8_0]) -> f32 {
        let mut sumf = 0.0f32;
        for (x, y) in lhs.iter().zip(rhs) {
            let l = unpack5(&x.qs, x.qh);
            let sumi = isum(|j| l[j] as i32 - 16, &y.qs);
            sumf += (f16_to_f32(x.d) * f16_to_f32(y.d)) * sumi as f32;
        }
        sumf
    }
}

impl DotBlock for BlockQ5_1 {
    type Dot = BlockQ8_1;
    fn vec_dot_ref(lhs: &[Self], rhs: &[BlockQ8_1]) -> f32 {
        let mut sumf = 0.0f32;
        for (x, y) in lhs.iter().zip(rhs) {
            let l = unpack5(&x.qs, x.qh);
            let sumi = isum(|j| l[j] as i32, &y.qs);
            sumf += (f16_to_f32(x.d) * f16_to_f32(y.d)) * sumi as f32 + f16_to_f32(x.m) * f16_to_f32(y.s);
        }
        sumf
    }
}

impl DotBlock for BlockQ8_0 {
    type Dot = BlockQ8_0;
    fn vec_dot_ref(lhs: &[Self], rhs: &[BlockQ8_0]) -> f32 {
        let mut sumf = 0.0f32;
        for (x, y) in lhs.iter().zip(rhs) {
            let sumi: i32 = x.qs.iter().zip(&y.qs).map(|(&a, &b)| a as i32 * b as i32).sum();
            sumf += sumi as f32 * (f16_to_f32(x.d) * f16_to_f32(y.d));
        }
        sumf
    }
}
