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

use super::search::{make_qkx3_quants, make_qkx3_quants_lanes, make_qx_quants, nearest_int};
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
//
// Each quantizer has a fast path, taken when the block's scale and inverse scale are finite: then
// every scaled value is small (|x * id| <= 127 and a few ulps), Rust's `as i32` equals the x86
// conversion, and the loops vectorize. Otherwise (inverse scale overflowed on a subnormal block,
// or the range overflowed) the `X86 = true` instantiation reproduces the x86 conversions exactly.

/// f32 → i32 with x86 `cvttss2si` semantics: truncation toward zero; NaN and values outside the
/// i32 range give `i32::MIN` (the "integer indefinite" value).
#[inline(always)]
fn cvtt_i32(v: f32) -> i32 {
    if (-2_147_483_648.0..2_147_483_648.0).contains(&v) {
        v as i32
    } else {
        i32::MIN
    }
}

/// Truncating conversion of a level: x86 semantics when `X86`; otherwise the caller guarantees
/// `0 < v < 2^22` (true for every scaled value of a block with finite scales) and the floor is
/// taken from the round-to-nearest trick, which vectorizes without range fix-ups.
#[inline(always)]
fn trunc<const X86: bool>(v: f32) -> i32 {
    if X86 {
        cvtt_i32(v)
    } else {
        let r = nearest_int(v);
        r - ((r as f32) > v) as i32
    }
}

/// C's `(int8_t)roundf(v)` on x86: round half away from zero, then keep the low byte. With `X86`
/// any input is handled; otherwise the caller guarantees `|v| < 2^22`.
///
/// Round-half-even (the magic-number trick) agrees with `roundf` except on exact ties that it
/// rounded toward zero; the remainder `v - r` is exact, so those are detected and moved out.
#[inline(always)]
fn roundf_i8<const X86: bool>(v: f32) -> i8 {
    if X86 && (v.is_nan() || v.abs() >= 4_194_304.0) {
        // NaN or |v| >= 2^22 (already an integer): x86 truncation; NaN and out-of-range values
        // give i32::MIN, whose low byte is 0.
        return cvtt_i32(v) as i8;
    }
    let r = nearest_int(v);
    let d = v - r as f32;
    let r = r + (d == 0.5 && v > 0.0) as i32 - (d == -0.5 && v < 0.0) as i32;
    r as i8
}

/// x86 `cvtps2dq` after `round_ps(NEAREST)`: round half to even; with `X86`, `i32::MIN` for NaN
/// or values outside the i32 range (without it, callers guarantee `|v| < 2^22`).
#[inline(always)]
fn round_even_i32<const X86: bool>(v: f32) -> i32 {
    if !X86 || v.abs() < 4_194_304.0 {
        nearest_int(v)
    } else {
        cvtt_i32(v.round_ties_even())
    }
}

/// f16 bits to f32, exactly [`super::f16_to_f32`] (NaNs quieted like F16C), inlined without a
/// run-time CPU-feature check: the per-block scale conversion dominates small dequantize loops.
#[inline(always)]
fn half(b: [u8; 2]) -> f32 {
    let h = u16::from_le_bytes(b);
    const SHIFTED_EXP: u32 = 0x7c00 << 13;
    let mut o = ((h & 0x7fff) as u32) << 13;
    let exp = o & SHIFTED_EXP;
    o += (127 - 15) << 23;
    if exp == SHIFTED_EXP {
        // Inf / NaN: exponent to 255; NaNs get the quiet bit.
        o += (128 - 16) << 23;
        if o & 0x007f_ffff != 0 {
            o |= 0x0040_0000;
        }
    } else if exp == 0 {
        // Zero / subnormal: renormalize with an exact float subtraction.
        o += 1 << 23;
        o = (f32::from_bits(o) - f32::from_bits(113 << 23)).to_bits();
    }
    f32::from_bits(o | ((h & 0x8000) as u32) << 16)
}

/// The 32-value blocks of a row (the row length is a multiple of 32 by the caller's contract).
#[inline(always)]
fn blocks(src: &[f32]) -> impl Iterator<Item = &[f32; QK]> {
    src.chunks_exact(QK).filter_map(|c| <&[f32; QK]>::try_from(c).ok())
}

/// A float's order as an integer: for non-NaN values `key(a) < key(b)` iff `a < b`, except that
/// -0 sorts just below +0. Integer max/min reductions vectorize where float ones (whose NaN
/// and signed-zero rules LLVM must keep) do not.
#[inline(always)]
fn key(v: f32) -> i32 {
    let b = v.to_bits() as i32;
    b ^ ((b >> 31) & 0x7fff_ffff)
}

/// The inverse of [`key`].
#[inline(always)]
fn unkey(k: i32) -> f32 {
    f32::from_bits((k ^ ((k >> 31) & 0x7fff_ffff)) as u32)
}

/// `(max, min)` of a block. For finite values the results equal the sequential loops' except
/// possibly in the sign of a zero (callers fix that up where it matters).
#[inline(always)]
fn max_min(x: &[f32; QK]) -> (f32, f32) {
    let (mut hi, mut lo) = (i32::MIN, i32::MAX);
    for &v in x {
        let k = key(v);
        hi = hi.max(k);
        lo = lo.min(k);
    }
    (unkey(hi), unkey(lo))
}

/// Largest |x| (`MAX(amax, fabsf(v))` from 0 in ggml; the same value in any order).
#[inline(always)]
fn abs_max(x: &[f32; QK]) -> f32 {
    let (hi, lo) = max_min(x);
    let nlo = -lo;
    let m = if hi > nlo { hi } else { nlo };
    // All zeros: +0 like ggml's start value (|x| is never -0).
    if m > 0.0 {
        m
    } else {
        0.0
    }
}

/// The value of largest magnitude, the first one on ties, or `0.0` when all are zero: what
/// ggml's loop (start at 0, replace on a strict increase of |x|) leaves in `max`.
#[inline(always)]
fn signed_absmax(x: &[f32; QK]) -> f32 {
    let (hi, lo) = max_min(x);
    signed_absmax_of(x, hi, lo)
}

/// [`signed_absmax`] from the block's `max` (`hi`) and `min` (`lo`), either sign of zero. The
/// common case picks `hi` or `lo` without a branch (which of the two is random on real data, and
/// a mispredicted branch costs more than the rest of the block's scale computation).
#[inline(always)]
pub(crate) fn signed_absmax_of(x: &[f32; QK], hi: f32, lo: f32) -> f32 {
    let nlo = -lo;
    if hi == nlo {
        // All zeros (ggml keeps its start value +0), or +a and -a both occur: the first one
        // wins (rare; the sequential scan decides).
        return if hi == 0.0 { 0.0 } else { x.iter().copied().find(|v| v.abs() == hi).unwrap_or(0.0) };
    }
    // Every value lies in [lo, hi]. If hi > -lo, only `hi` itself has |x| = hi (and it is not a
    // zero, so its bits are unique); otherwise only `lo` has |x| = -lo.
    let m = ((hi > nlo) as u32).wrapping_neg();
    f32::from_bits((hi.to_bits() & m) | (lo.to_bits() & !m))
}

/// `(min, max)` of a block as Q4_1/Q5_1's sequential loop finds them (start at ±FLT_MAX, replace
/// on strict comparison). Equal values only differ in bits for ±0, where the first one wins.
#[inline(always)]
fn min_max(x: &[f32; QK]) -> (f32, f32) {
    let (mut max, mut min) = max_min(x);
    if min == 0.0 {
        min = x.iter().copied().find(|&v| v == 0.0).unwrap_or(min);
    }
    if max == 0.0 {
        max = x.iter().copied().find(|&v| v == 0.0).unwrap_or(max);
    }
    (min, max)
}

/// Pack 32 levels: value `j` in the low nibble of byte `j`, value `j + 16` in the high nibble.
#[inline(always)]
fn pack4(l: &[u8; QK], qs: &mut [u8; HALF]) {
    for j in 0..HALF {
        qs[j] = (l[j] & 0x0f) | (l[j + HALF] << 4);
    }
}

/// Bit 4 of 8 bytes gathered into one byte (byte `i` → bit `i`).
#[inline(always)]
fn gather_bit4(b: &[u8]) -> u8 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[..8]);
    let v = (u64::from_le_bytes(v) >> 4) & 0x0101_0101_0101_0101;
    // Byte i's bit (at 8i) is multiplied onto bit 56 + i; no two partial products collide.
    (v.wrapping_mul(0x0102_0408_1020_4080) >> 56) as u8
}

/// Pack 32 five-bit levels: low nibbles like [`pack4`], bit 4 of value `j` into bit `j` of `qh`.
#[inline(always)]
fn pack5(l: &[u8; QK], qs: &mut [u8; HALF]) -> [u8; 4] {
    pack4(l, qs);
    [gather_bit4(&l[0..8]), gather_bit4(&l[8..16]), gather_bit4(&l[16..24]), gather_bit4(&l[24..32])]
}

/// The 32 five-bit levels of a Q5 block. Bit `j` of `qh` is tested with a per-lane mask (no
/// table lookup, no variable shift), which vectorizes at every ISA level.
#[inline(always)]
fn unpack5(qs: &[u8; HALF], qh: [u8; 4]) -> [u8; QK] {
    let h = u32::from_le_bytes(qh);
    let mut l = [0u8; QK];
    for j in 0..HALF {
        let lo = if h & (1 << j) != 0 { 0x10 } else { 0 };
        let hi = if h & (1 << (j + HALF)) != 0 { 0x10 } else { 0 };
        l[j] = (qs[j] & 0x0f) | lo;
        l[j + HALF] = (qs[j] >> 4) | hi;
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
fn block_weights(xb: &[f32; QK], qw: &[f32], sigma2: f32) -> [f32; QK] {
    let mut w = [0.0f32; QK];
    for ((w, &x), &q) in w.iter_mut().zip(xb).zip(qw) {
        *w = q * (sigma2 + x * x).sqrt();
    }
    w
}

/// Whether a block's scale and inverse scale keep every scaled value small (the fast path).
#[inline(always)]
fn fast(d: f32, id: f32) -> bool {
    d.is_finite() && id.is_finite()
}

// ---------------------------------------------------------------------------------------------
// Reference quantizers (ggml `quantize_row_<t>_ref`), one block at a time.

/// `min(cap, (int8_t)(v))` as an unsigned level, where `v = scaled + offset`.
#[inline(always)]
fn level<const X86: bool>(v: f32, cap: i32) -> u8 {
    (trunc::<X86>(v) as i8 as i32).min(cap) as u8
}

#[inline(always)]
fn sym_levels<const X86: bool>(x: &[f32; QK], id: f32, offset: f32, cap: i32) -> [u8; QK] {
    let mut l = [0u8; QK];
    for (l, &v) in l.iter_mut().zip(x) {
        *l = level::<X86>(v * id + offset, cap);
    }
    l
}

#[inline(always)]
fn asym_levels<const X86: bool>(x: &[f32; QK], min: f32, id: f32, cap: i32) -> [u8; QK] {
    let mut l = [0u8; QK];
    for (l, &v) in l.iter_mut().zip(x) {
        *l = level::<X86>((v - min) * id + 0.5, cap);
    }
    l
}

/// Blocks whose scales the reference quantizers finish side by side: the inverse scale and the
/// f16 rounding of each block's `d` (and `m`) run on `G` lanes instead of one block at a time.
const G: usize = 16;

/// One block's scale and min as the reference quantizers derive them.
#[derive(Clone, Copy)]
struct Scale {
    /// Scale `d`.
    d: f32,
    /// `1 / d`, or 0 when `d` is 0.
    id: f32,
    /// Min (0 for the symmetric types).
    m: f32,
    /// f16 bytes of `d`.
    dh: [u8; 2],
    /// f16 bytes of `m`.
    mh: [u8; 2],
}

/// A legacy type's reference quantizer, split so [`ref_row`] can finish the scales of a group
/// of blocks together. Methods are `#[inline(always)]` so they compile into the caller's
/// target-feature clone (`crate::simd::codec`).
trait RefQuant: Sized {
    /// The block's scale `d` and min `m` (0 for symmetric types).
    fn stats(x: &[f32; QK]) -> (f32, f32);
    /// Write the block from its values and scale.
    fn emit(y: &mut Self, x: &[f32; QK], s: Scale);
}

/// A legacy reference quantizer over a row, `G` blocks at a time: [`RefQuant::stats`] gives each
/// block's scale `d` and min `m`, then `id = d != 0 ? 1/d : 0` and the f16 bytes of `d` and `m`
/// are computed for the whole group, and [`RefQuant::emit`] writes each block. Per block these
/// are the same float operations as ggml's loop.
#[inline(always)]
fn ref_row<B: RefQuant>(src: &[f32], dst: &mut [B]) {
    for (ys, xs) in dst.chunks_mut(G).zip(src.chunks(G * QK)) {
        let mut d = [0.0f32; G];
        let mut m = [0.0f32; G];
        for ((d, m), x) in d.iter_mut().zip(m.iter_mut()).zip(blocks(xs)) {
            (*d, *m) = B::stats(x);
        }
        let mut id = [0.0f32; G];
        let mut dh = [[0u8; 2]; G];
        let mut mh = [[0u8; 2]; G];
        for k in 0..G {
            id[k] = if d[k] != 0.0 { 1.0 / d[k] } else { 0.0 };
            dh[k] = f32_to_f16(d[k]);
            mh[k] = f32_to_f16(m[k]);
        }
        for (k, (y, x)) in ys.iter_mut().zip(blocks(xs)).enumerate() {
            B::emit(y, x, Scale { d: d[k], id: id[k], m: m[k], dh: dh[k], mh: mh[k] });
        }
    }
}

/// ggml `quantize_row_q4_0_ref`: `d = max / -8` (max: the value of largest magnitude),
/// `q = min(15, (int8_t)(x * id + 8.5))`.
impl RefQuant for BlockQ4_0 {
    #[inline(always)]
    fn stats(x: &[f32; QK]) -> (f32, f32) {
        (signed_absmax(x) / -8.0, 0.0)
    }
    #[inline(always)]
    fn emit(y: &mut Self, x: &[f32; QK], s: Scale) {
        y.d = s.dh;
        let l = if fast(s.d, s.id) { sym_levels::<false>(x, s.id, 8.5, 15) } else { sym_levels::<true>(x, s.id, 8.5, 15) };
        pack4(&l, &mut y.qs);
    }
}

/// ggml `quantize_row_q4_1_ref`: `d = (max - min) / 15`, `q = min(15, (int8_t)((x - min) * id + 0.5))`.
impl RefQuant for BlockQ4_1 {
    #[inline(always)]
    fn stats(x: &[f32; QK]) -> (f32, f32) {
        let (min, max) = min_max(x);
        ((max - min) / 15.0, min)
    }
    #[inline(always)]
    fn emit(y: &mut Self, x: &[f32; QK], s: Scale) {
        y.d = s.dh;
        y.m = s.mh;
        let l = if fast(s.d, s.id) {
            asym_levels::<false>(x, s.m, s.id, 15)
        } else {
            asym_levels::<true>(x, s.m, s.id, 15)
        };
        pack4(&l, &mut y.qs);
    }
}

/// ggml `quantize_row_q5_0_ref`: `d = max / -16`, `q = min(31, (int8_t)(x * id + 16.5))`.
impl RefQuant for BlockQ5_0 {
    #[inline(always)]
    fn stats(x: &[f32; QK]) -> (f32, f32) {
        (signed_absmax(x) / -16.0, 0.0)
    }
    #[inline(always)]
    fn emit(y: &mut Self, x: &[f32; QK], s: Scale) {
        y.d = s.dh;
        let l = if fast(s.d, s.id) { sym_levels::<false>(x, s.id, 16.5, 31) } else { sym_levels::<true>(x, s.id, 16.5, 31) };
        y.qh = pack5(&l, &mut y.qs);
    }
}

/// ggml `quantize_row_q5_1_ref`: `d = (max - min) / 31`, `q = (uint8_t)((x - min) * id + 0.5)`.
impl RefQuant for BlockQ5_1 {
    #[inline(always)]
    fn stats(x: &[f32; QK]) -> (f32, f32) {
        let (min, max) = min_max(x);
        ((max - min) / 31.0, min)
    }
    #[inline(always)]
    fn emit(y: &mut Self, x: &[f32; QK], s: Scale) {
        y.d = s.dh;
        y.m = s.mh;
        // ggml casts straight to uint8_t here (no clamp): keep the low byte.
        let l = if fast(s.d, s.id) {
            asym_levels::<false>(x, s.m, s.id, 255)
        } else {
            asym_levels::<true>(x, s.m, s.id, 255)
        };
        y.qh = pack5(&l, &mut y.qs);
    }
}

/// ggml `quantize_row_q8_0_ref`: `d = amax / 127`, `q = roundf(x * id)`.
impl RefQuant for BlockQ8_0 {
    #[inline(always)]
    fn stats(x: &[f32; QK]) -> (f32, f32) {
        (abs_max(x) / 127.0, 0.0)
    }
    #[inline(always)]
    fn emit(y: &mut Self, x: &[f32; QK], s: Scale) {
        y.d = s.dh;
        q8_ref_levels(x, s, &mut y.qs);
    }
}

/// ggml `quantize_row_q8_1_ref`: Q8_0 plus `s = f16(Σ q * d)`.
impl RefQuant for BlockQ8_1 {
    #[inline(always)]
    fn stats(x: &[f32; QK]) -> (f32, f32) {
        (abs_max(x) / 127.0, 0.0)
    }
    #[inline(always)]
    fn emit(y: &mut Self, x: &[f32; QK], s: Scale) {
        y.d = s.dh;
        q8_ref_levels(x, s, &mut y.qs);
        let sum: i32 = y.qs.iter().map(|&q| q as i32).sum();
        y.s = f32_to_f16(sum as f32 * s.d);
    }
}

/// Q8_0 / Q8_1 ref levels: `q = roundf(x * id)` with `d = amax / 127`.
#[inline(always)]
fn q8_ref_levels(x: &[f32; QK], s: Scale, qs: &mut [i8; QK]) {
    if fast(s.d, s.id) {
        q8_levels::<false>(x, s.id, qs)
    } else {
        q8_levels::<true>(x, s.id, qs)
    }
}

#[inline(always)]
fn q8_levels<const X86: bool>(x: &[f32; QK], id: f32, qs: &mut [i8; QK]) {
    for (q, &v) in qs.iter_mut().zip(x) {
        *q = roundf_i8::<X86>(v * id);
    }
}

// ---------------------------------------------------------------------------------------------
// Importance-weighted quantizers (ggml `quantize_row_<t>_impl` with quant_weights).

/// Q4_0 / Q5_0: symmetric search with `nmax` (8 or 16); `emit` stores scale and levels.
fn qx_0_imat<B>(x: &[f32], dst: &mut [B], qw: &[f32], nmax: i32, emit: impl Fn(&mut B, f32, &[u8; QK])) {
    let sigma2 = row_sigma2(x);
    let mut l = [0i8; QK];
    for ((y, xb), qb) in dst.iter_mut().zip(blocks(x)).zip(qw.chunks_exact(QK)) {
        let w = block_weights(xb, qb, sigma2);
        let d = make_qx_quants(nmax, xb, &mut l, 1, Some(&w));
        emit(y, d, &l.map(|v| v as u8));
    }
}

/// Q4_1 / Q5_1: scale-and-min search with `nmax` (15 or 31); `emit` stores `(d, m)` and levels.
/// Eight blocks at a time go through the lane-parallel search (bit-identical to the scalar one).
fn qx_1_imat<B>(x: &[f32], dst: &mut [B], qw: &[f32], nmax: i32, emit: impl Fn(&mut B, f32, f32, &[u8; QK])) {
    const G: usize = 8;
    let sigma2 = row_sigma2(x);
    // Whole blocks present in all three (equal under the Block contract; never index past any).
    let nb = dst.len().min(x.len() / QK).min(qw.len() / QK);
    let full = nb / G * G;
    let mut w = [0.0f32; G * QK];
    let mut l = [0u8; G * QK];
    for (gi, ys) in dst[..full].chunks_exact_mut(G).enumerate() {
        let xs = &x[gi * G * QK..(gi + 1) * G * QK];
        for ((wb, xb), qb) in w.chunks_exact_mut(QK).zip(blocks(xs)).zip(qw[gi * G * QK..].chunks_exact(QK)) {
            wb.copy_from_slice(&block_weights(xb, qb, sigma2));
        }
        let res = make_qkx3_quants_lanes::<G>(nmax, xs, Some(&w), &mut l, -0.9, 0.05, 36, false);
        for ((y, &(d, the_min)), lb) in ys.iter_mut().zip(&res).zip(l.chunks_exact(QK)) {
            if let Ok(lb) = <&[u8; QK]>::try_from(lb) {
                emit(y, d, -the_min, lb);
            }
        }
    }
    let (mut lb, mut laux) = ([0u8; QK], [0u8; QK]);
    let tail = blocks(&x[full * QK..]).zip(qw[full * QK..].chunks_exact(QK));
    for (y, (xb, qb)) in dst[full..nb].iter_mut().zip(tail) {
        let w = block_weights(xb, qb, sigma2);
        let (d, the_min) = make_qkx3_quants(nmax, xb, Some(&w), &mut lb, &mut laux, -0.9, 0.05, 36, false);
        emit(y, d, -the_min, &lb);
    }
}

// ---------------------------------------------------------------------------------------------
// Block trait implementations.

/// The output blocks of a row, 32 values each.
#[inline(always)]
fn out_blocks(dst: &mut [f32]) -> impl Iterator<Item = &mut [f32; QK]> {
    dst.chunks_exact_mut(QK).filter_map(|c| <&mut [f32; QK]>::try_from(c).ok())
}

impl Block for BlockQ4_0 {
    const TYPE: QuantType = QuantType::Q4_0;
    #[inline(always)]
    fn quantize_row(src: &[f32], dst: &mut [Self], imatrix: Option<&[f32]>) {
        match imatrix {
            None => ref_row(src, dst),
            Some(qw) => qx_0_imat(src, dst, qw, 8, |y, d, l| {
                y.d = f32_to_f16(d);
                pack4(l, &mut y.qs);
            }),
        }
    }
    #[inline(always)]
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (b, y) in src.iter().zip(out_blocks(dst)) {
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
    #[inline(always)]
    fn quantize_row(src: &[f32], dst: &mut [Self], imatrix: Option<&[f32]>) {
        match imatrix {
            None => ref_row(src, dst),
            Some(qw) => qx_1_imat(src, dst, qw, 15, |y, d, m, l| {
                y.d = f32_to_f16(d);
                y.m = f32_to_f16(m);
                pack4(l, &mut y.qs);
            }),
        }
    }
    #[inline(always)]
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (b, y) in src.iter().zip(out_blocks(dst)) {
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
    #[inline(always)]
    fn quantize_row(src: &[f32], dst: &mut [Self], imatrix: Option<&[f32]>) {
        match imatrix {
            None => ref_row(src, dst),
            Some(qw) => qx_0_imat(src, dst, qw, 16, |y, d, l| {
                y.d = f32_to_f16(d);
                y.qh = pack5(l, &mut y.qs);
            }),
        }
    }
    #[inline(always)]
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (b, y) in src.iter().zip(out_blocks(dst)) {
            let d = half(b.d);
            let l = unpack5(&b.qs, b.qh);
            for (y, &l) in y.iter_mut().zip(&l) {
                *y = (l as i32 - 16) as f32 * d;
            }
        }
    }
}

impl Block for BlockQ5_1 {
    const TYPE: QuantType = QuantType::Q5_1;
    #[inline(always)]
    fn quantize_row(src: &[f32], dst: &mut [Self], imatrix: Option<&[f32]>) {
        match imatrix {
            None => ref_row(src, dst),
            Some(qw) => qx_1_imat(src, dst, qw, 31, |y, d, m, l| {
                y.d = f32_to_f16(d);
                y.m = f32_to_f16(m);
                y.qh = pack5(l, &mut y.qs);
            }),
        }
    }
    #[inline(always)]
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (b, y) in src.iter().zip(out_blocks(dst)) {
            let (d, m) = (half(b.d), half(b.m));
            let l = unpack5(&b.qs, b.qh);
            for (y, &l) in y.iter_mut().zip(&l) {
                *y = l as f32 * d + m;
            }
        }
    }
}

/// `x = d * q` for Q8_0 and Q8_1.
#[inline(always)]
fn dequantize_q8(d: [u8; 2], qs: &[i8; QK], y: &mut [f32; QK]) {
    let d = half(d);
    for (y, &q) in y.iter_mut().zip(qs) {
        *y = q as f32 * d;
    }
}

impl Block for BlockQ8_0 {
    const TYPE: QuantType = QuantType::Q8_0;
    /// ggml's Q8_0 quantizer ignores the importance matrix.
    #[inline(always)]
    fn quantize_row(src: &[f32], dst: &mut [Self], _imatrix: Option<&[f32]>) {
        ref_row(src, dst)
    }
    #[inline(always)]
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (b, y) in src.iter().zip(out_blocks(dst)) {
            dequantize_q8(b.d, &b.qs, y);
        }
    }
}

impl Block for BlockQ8_1 {
    const TYPE: QuantType = QuantType::Q8_1;
    /// Activation type: ggml has only the reference row quantizer (no importance matrix).
    #[inline(always)]
    fn quantize_row(src: &[f32], dst: &mut [Self], _imatrix: Option<&[f32]>) {
        ref_row(src, dst)
    }
    /// `x = d * q` (the `s` field is redundant for dequantization).
    #[inline(always)]
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (b, y) in src.iter().zip(out_blocks(dst)) {
            dequantize_q8(b.d, &b.qs, y);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Activation quantizers used by ggml-cpu's matmul on x86 (AVX/AVX2 `quantize_row_q8_0/1`).

#[inline(always)]
fn q8_act_levels<const X86: bool>(x: &[f32; QK], id: f32, qs: &mut [i8; QK]) -> i32 {
    let mut sum = 0i32;
    for (q, &v) in qs.iter_mut().zip(x) {
        let r = round_even_i32::<X86>(v * id);
        sum = sum.wrapping_add(r);
        *q = r.clamp(-128, 127) as i8;
    }
    sum
}

/// Shared by the Q8_0/Q8_1 activation quantizers: `d = amax / 127`, `id = 127 / amax`,
/// `q = saturate_i8(round_half_even(x * id))`. Returns `d` and the wrapping sum of the
/// pre-saturation integers (what ggml-cpu sums for Q8_1's `s`).
#[inline(always)]
fn q8_act(x: &[f32; QK], qs: &mut [i8; QK]) -> (f32, i32) {
    let amax = abs_max(x);
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let sum = if id.is_finite() { q8_act_levels::<false>(x, id, qs) } else { q8_act_levels::<true>(x, id, qs) };
    (d, sum)
}

/// Quantize activations to Q8_0 as ggml-cpu's x86 `quantize_row_q8_0` does before a matmul (the
/// bytes `vec_dot` sees in llama.cpp): `id = 127 / amax` and round-half-even, which differs from
/// [`Block::quantize_row_ref`] (`id = 1 / (amax / 127)`, round-half-away) on near-ties.
/// `src.len()` must equal `32 * dst.len()`.
pub fn quantize_row_q8_0_act(src: &[f32], dst: &mut [BlockQ8_0]) {
    for (y, x) in dst.iter_mut().zip(blocks(src)) {
        let (d, _) = q8_act(x, &mut y.qs);
        y.d = f32_to_f16(d);
    }
}

/// Quantize activations to Q8_1 as ggml-cpu's x86 `quantize_row_q8_1` does: like
/// [`quantize_row_q8_0_act`], plus `s = f16(d * Σ q)`.
/// `src.len()` must equal `32 * dst.len()`.
pub fn quantize_row_q8_1_act(src: &[f32], dst: &mut [BlockQ8_1]) {
    for (y, x) in dst.iter_mut().zip(blocks(src)) {
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
            sumf += sumi as f32 * half(x.d) * half(y.d);
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
            sumf += (half(x.d) * half(y.d)) * sumi as f32 + half(x.m) * half(y.s);
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
            sumf += (half(x.d) * half(y.d)) * sumi as f32;
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
            sumf += (half(x.d) * half(y.d)) * sumi as f32 + half(x.m) * half(y.s);
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
            sumf += sumi as f32 * (half(x.d) * half(y.d));
        }
        sumf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ggml's sequential loops, literally, as the specification of the lane-wise helpers.
    fn seq_signed_absmax(x: &[f32]) -> f32 {
        let (mut amax, mut max) = (0.0f32, 0.0f32);
        for &v in x {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        max
    }
    fn seq_min_max(x: &[f32]) -> (f32, f32) {
        let (mut min, mut max) = (f32::MAX, -f32::MAX);
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

    fn sample(seed: &mut u64) -> [f32; QK] {
        let mut x = [0.0f32; QK];
        for v in x.iter_mut() {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *v = match *seed % 6 {
                0 => 0.0,
                1 => -0.0,
                2 => 1.0,
                3 => -1.0,
                _ => ((*seed >> 40) as f32 / 16_777_216.0) - 0.5,
            };
        }
        x
    }

    #[test]
    fn lane_helpers_match_sequential_loops_bitwise() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            let x = sample(&mut seed);
            assert_eq!(signed_absmax(&x).to_bits(), seq_signed_absmax(&x).to_bits(), "{x:?}");
            let (a, b) = min_max(&x);
            let (c, d) = seq_min_max(&x);
            assert_eq!((a.to_bits(), b.to_bits()), (c.to_bits(), d.to_bits()), "{x:?}");
        }
        // Signed zeros: the first zero seen wins.
        let mut x = [1.0f32; QK];
        x[3] = -0.0;
        x[5] = 0.0;
        assert_eq!(min_max(&x).0.to_bits(), (-0.0f32).to_bits());
        x[3] = 0.0;
        x[5] = -0.0;
        assert_eq!(min_max(&x).0.to_bits(), 0.0f32.to_bits());
        assert_eq!(signed_absmax(&[-0.0; QK]).to_bits(), 0.0f32.to_bits());
    }

    #[test]
    fn inline_half_conversion_matches_crate_conversion() {
        for h in 0..=u16::MAX {
            let b = h.to_le_bytes();
            assert_eq!(half(b).to_bits(), f16_to_f32(b).to_bits(), "{h:#06x}");
        }
    }

    /// Mismatched lengths (outside the Block contract) truncate instead of panicking.
    #[test]
    fn mismatched_lengths_do_not_panic() {
        let x = vec![0.5f32; 32 * 20];
        let w = vec![1.0f32; 32 * 3];
        let mut q41 = vec![BlockQ4_1::default(); 17];
        BlockQ4_1::quantize_row(&x, &mut q41, Some(&w));
        let mut q50 = vec![BlockQ5_0::default(); 25];
        BlockQ5_0::quantize_row(&x, &mut q50, Some(&w));
        BlockQ5_0::quantize_row(&x[..40], &mut q50, None);
        let mut out = vec![0.0f32; 100];
        BlockQ5_0::dequantize_row(&q50, &mut out);
        let _ = BlockQ4_1::vec_dot_ref(&q41, &[BlockQ8_1::default(); 2]);
    }

    #[test]
    fn pack5_unpack5_round_trip() {
        let mut seed = 7u64;
        for _ in 0..2000 {
            let mut l = [0u8; QK];
            for v in l.iter_mut() {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                *v = (seed >> 59) as u8;
            }
            let mut qs = [0u8; HALF];
            let qh = pack5(&l, &mut qs);
            let bits = u32::from_le_bytes(qh);
            for (j, &v) in l.iter().enumerate() {
                assert_eq!((bits >> j) & 1, (v as u32 >> 4) & 1);
            }
            assert_eq!(unpack5(&qs, qh), l);
        }
    }

    #[test]
    fn rounding_helpers() {
        // roundf: half away from zero; low byte kept.
        for (v, want) in [(0.5f32, 1i8), (-0.5, -1), (1.5, 2), (2.5, 3), (-2.5, -3), (0.49999997, 0), (127.4, 127)] {
            assert_eq!(roundf_i8::<false>(v), want, "{v}");
            assert_eq!(roundf_i8::<true>(v), want, "{v}");
        }
        assert_eq!(roundf_i8::<true>(f32::NAN), 0);
        assert_eq!(roundf_i8::<true>(f32::INFINITY), 0);
        assert_eq!(roundf_i8::<true>(300.0), 300i32 as i8);
        // Half to even, x86 indefinite integer out of range.
        for (v, want) in [(0.5f32, 0), (1.5, 2), (2.5, 2), (-2.5, -2), (126.5, 126)] {
            assert_eq!(round_even_i32::<false>(v), want, "{v}");
            assert_eq!(round_even_i32::<true>(v), want, "{v}");
        }
        assert_eq!(round_even_i32::<true>(f32::NAN), i32::MIN);
        assert_eq!(round_even_i32::<true>(-f32::INFINITY), i32::MIN);
        assert_eq!(round_even_i32::<true>(5_000_000.5), 5_000_000);
        assert_eq!(cvtt_i32(2_147_483_648.0), i32::MIN);
        assert_eq!(cvtt_i32(-2_147_483_648.0), i32::MIN);
        assert_eq!(cvtt_i32(-3.7), -3);
    }
}
