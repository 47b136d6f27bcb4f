//! AVX2 (+FMA, F16C) kernels on raw ggml block bytes.
//!
//! Every kernel is an `unsafe fn` with `#[target_feature]`; the dispatch table installs them
//! only after run-time detection (`Isa::Avx2.is_available()`), so baseline x86-64 builds are safe.
//! Integer partial sums are exact; only the final float accumulation order differs from the
//! scalar references.

use core::arch::x86_64::*;

use crate::simd::{Overrides, VecDotRowsFn, DOT_ROWS};
use crate::types::QuantType as T;

/// The AVX2 entries of the dispatch table.
///
/// # Safety
/// Only call after checking that AVX2, FMA and F16C are available: the returned kernels use them.
pub(crate) unsafe fn overrides() -> Overrides {
    Overrides {
        dot: vec![
            (T::Q8_0, dot_q8_0 as _),
            (T::Q4_0, dot_q4_0 as _),
            (T::Q4_1, dot_q4_1 as _),
            (T::Q5_0, dot_q5_0 as _),
            (T::Q5_1, dot_q5_1 as _),
            (T::Q4_K, dot_q4_k as _),
            (T::Q5_K, dot_q5_k as _),
            (T::Q6_K, dot_q6_k as _),
            (T::Q2_K, dot_q2_k as _),
            (T::Q3_K, dot_q3_k as _),
            (T::IQ4_NL, dot_iq4_nl as _),
            (T::IQ4_XS, dot_iq4_xs as _),
        ],
        act: vec![(T::Q8_0, quantize_q8_0 as _), (T::Q8_1, quantize_q8_1 as _), (T::Q8_K, quantize_q8_k as _)],
    }
}

/// The AVX2 multi-row kernels (one weight row, [`DOT_ROWS`] activation rows), each the exact
/// float-operation mirror of the single-row kernel of the same type above.
///
/// # Safety
/// As for [`overrides`].
pub(crate) unsafe fn rows_overrides() -> Vec<(T, VecDotRowsFn)> {
    vec![
        (T::Q8_0, rows_q8_0 as _),
        (T::Q4_0, rows_q4_0 as _),
        (T::Q4_1, rows_q4_1 as _),
        (T::Q4_K, rows_q4_k as _),
        (T::Q6_K, rows_q6_k as _),
    ]
}

// ---------------------------------------------------------------------------------------------
// Small helpers. All are `#[inline]` + `#[target_feature]` so they fold into the kernels.

/// Read a little-endian f16 at `p` as f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees 2 readable bytes at `p`.
    let bits = unsafe { core::ptr::read_unaligned(p as *const u16) };
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
}

/// [`f16_at`] in asm, for kernels whose per-block scale conversion LLVM chained to the
/// accumulator: it folds the load into `vpinsrw xmm, xmm_any, [p], 0` with an arbitrary register
/// as the "don't care" upper part, often the float accumulator, a false dependency of each
/// block's scale on the previous block's sum (about 20 cycles per block). `vmovd` from a general
/// register does not merge. Measured faster for TQ1_0, TQ2_0, Q4_K, Q6_K and MXFP4; for
/// others (Q3_K) the extra uop made it slower, so they keep [`f16_at`]. Same value either way.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn f16_at_nodep(p: *const u8) -> f32 {
    let v: __m128;
    // SAFETY: the caller guarantees 2 readable bytes at `p`; the asm reads only those and writes
    // its two output registers (x86 is little-endian, as the format).
    unsafe {
        core::arch::asm!(
            "movzx {t:e}, word ptr [{p}]",
            "vmovd {v}, {t:e}",
            "vcvtph2ps {v}, {v}",
            p = in(reg) p, t = out(reg) _, v = out(xmm_reg) v,
            options(pure, readonly, nostack, preserves_flags),
        )
    };
    _mm_cvtss_f32(v)
}

/// Read a little-endian f32 at `p`.
#[inline(always)]
pub(crate) unsafe fn f32_at(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees 4 readable bytes at `p`.
    f32::from_bits(u32::from_le(unsafe { core::ptr::read_unaligned(p as *const u32) }))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn load256(p: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 32 readable bytes at `p`.
    unsafe { _mm256_loadu_si256(p as *const __m256i) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn load128(p: *const u8) -> __m128i {
    // SAFETY: the caller guarantees 16 readable bytes at `p`.
    unsafe { _mm_loadu_si128(p as *const __m128i) }
}

/// Horizontal sum of 8 floats.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// Horizontal sum of 8 i32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn hsum_epi32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
    _mm_cvtsi128_si32(s)
}

/// Sums of adjacent groups of four `u8 * i8` products as 8 x i32 (`u` in 0..=127 keeps the
/// intermediate i16 pair sums from saturating).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_u8i8(u: __m256i, s: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
}

/// Signed x signed byte products summed by four: `|x| * (y with x's sign)`. Exact for
/// x, y in -127..=127 (ggml's quantizers never emit -128).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_i8i8(x: __m256i, y: __m256i) -> __m256i {
    dot_u8i8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
}

/// 16 packed nibbles at `p` to 32 bytes: low nibbles in bytes 0..16, high nibbles in 16..32
/// (the order of ggml's 32-value blocks).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn nibbles32(p: *const u8) -> __m256i {
    // SAFETY: 16 readable bytes at `p` (caller).
    let lo = unsafe { load128(p) };
    let both = _mm256_set_m128i(_mm_srli_epi16(lo, 4), lo);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0f))
}

/// Broadcast the f32 at `p` to 8 lanes with a load (`vbroadcastss ymm, m32`), which uses only a
/// load port. Written in asm because LLVM turns `_mm256_set1_ps` of a value the kernel has just
/// stored into a shuffle on port 5, the port the 32-value kernels run out of first on the
/// Sapphire Rapids machine measured here.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn bcast1(p: *const f32) -> __m256 {
    let v: __m256;
    // SAFETY: the caller guarantees 4 readable bytes at `p`; the asm reads only those and writes
    // its output register.
    unsafe {
        core::arch::asm!(
            "vbroadcastss {v}, dword ptr [{p}]",
            p = in(reg) p, v = out(ymm_reg) v,
            options(pure, readonly, nostack, preserves_flags),
        )
    };
    v
}

/// 16 packed nibbles at `p` as 32 bytes in value order (low nibbles first), like
/// [`nibbles32`] but without its lane insert (a port-5 uop): the 16 bytes are loaded into both
/// lanes and the upper lane shifted right by 4.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn nibbles_bcast(p: *const u8) -> __m256i {
    // SAFETY: 16 readable bytes at `p` (caller).
    let v = _mm256_broadcastsi128_si256(unsafe { load128(p) });
    _mm256_and_si256(_mm256_srlv_epi64(v, _mm256_setr_epi64x(0, 0, 4, 4)), _mm256_set1_epi8(0x0f))
}

/// The product of the two f16 scales at `a` and `b`, broadcast.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn scale2(a: *const u8, b: *const u8) -> __m256 {
    // SAFETY: two readable bytes at `a` and `b` (caller).
    let (x, y) = unsafe { (core::ptr::read_unaligned(a as *const u16), core::ptr::read_unaligned(b as *const u16)) };
    let v = _mm_cvtph_ps(_mm_cvtsi32_si128((x as u32 | (y as u32) << 16) as i32));
    _mm256_broadcastss_ps(_mm_mul_ss(v, _mm_movehdup_ps(v)))
}

// ---------------------------------------------------------------------------------------------
// Activation quantizers (ggml-cpu `quantize_row_q8_0/q8_1/q8_K`; bit-exact).

/// Max |x| of 32 floats at `x`, and the four vectors.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load32_amax(x: *const f32) -> ([__m256; 4], f32) {
    // SAFETY: 32 readable floats at `x` (caller).
    let v = unsafe { [_mm256_loadu_ps(x), _mm256_loadu_ps(x.add(8)), _mm256_loadu_ps(x.add(16)), _mm256_loadu_ps(x.add(24))] };
    let sign = _mm256_set1_ps(-0.0);
    let m = _mm256_max_ps(
        _mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
        _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])),
    );
    let m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
    let m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    let m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    (v, _mm_cvtss_f32(m4))
}

/// Multiply by `id`, round half to even, convert: the four i32 vectors of a 32-value block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn round_block(v: [__m256; 4], id: f32) -> [__m256i; 4] {
    let mul = _mm256_set1_ps(id);
    let r = |x: __m256| {
        _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(x, mul), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC))
    };
    [r(v[0]), r(v[1]), r(v[2]), r(v[3])]
}

/// Pack 4 x 8 i32 (in order) into 32 i8 (saturating) in the original order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn pack_i8(i: [__m256i; 4]) -> __m256i {
    let a = _mm256_packs_epi32(i[0], i[1]);
    let b = _mm256_packs_epi32(i[2], i[3]);
    let p = _mm256_packs_epi16(a, b);
    _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// Q8_0 activations: `d = amax/127`, `id = 127/amax`, round half to even.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_q8_0(x: &[f32], dst: &mut [u8]) {
    for (xb, yb) in x.chunks_exact(32).zip(dst.chunks_exact_mut(34)) {
        // SAFETY: `xb` has 32 floats.
        let (v, amax) = unsafe { load32_amax(xb.as_ptr()) };
        let d = amax / 127.0;
        yb[..2].copy_from_slice(&half::f16::from_f32(d).to_bits().to_le_bytes());
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let q = pack_i8(round_block(v, id));
        // SAFETY: `yb` has 34 bytes, 32 written from offset 2.
        unsafe { _mm256_storeu_si256(yb.as_mut_ptr().add(2) as *mut __m256i, q) };
    }
}

/// Q8_1 activations: as Q8_0 plus `s = f16(d * sum(q))`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_q8_1(x: &[f32], dst: &mut [u8]) {
    for (xb, yb) in x.chunks_exact(32).zip(dst.chunks_exact_mut(36)) {
        // SAFETY: `xb` has 32 floats.
        let (v, amax) = unsafe { load32_amax(xb.as_ptr()) };
        let d = amax / 127.0;
        yb[..2].copy_from_slice(&half::f16::from_f32(d).to_bits().to_le_bytes());
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let i = round_block(v, id);
        let sum = hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3])));
        yb[2..4].copy_from_slice(&half::f16::from_f32(d * sum as f32).to_bits().to_le_bytes());
        let q = pack_i8(i);
        // SAFETY: `yb` has 36 bytes, 32 written from offset 4.
        unsafe { _mm256_storeu_si256(yb.as_mut_ptr().add(4) as *mut __m256i, q) };
    }
}

/// Q8_K activations (`quantize_row_q8_K_ref`, which ggml's x86 build also uses for matmul):
/// `iscale = -127/max` where `max` is the first value of largest magnitude, round half to even,
/// `d = 1/iscale`, per-16 sums.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_q8_k(x: &[f32], dst: &mut [u8]) {
    for (xb, yb) in x.chunks_exact(256).zip(dst.chunks_exact_mut(292)) {
        let p = xb.as_ptr();
        let sign = _mm256_set1_ps(-0.0);
        let mut m = _mm256_setzero_ps();
        for j in 0..32 {
            // SAFETY: 8 floats at 8*j, j < 32, within the 256 of `xb`.
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, unsafe { _mm256_loadu_ps(p.add(8 * j)) }));
        }
        let m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
        let m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        let amax = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
        if amax == 0.0 || amax.is_nan() {
            // ggml: `if (!amax)` zeroes the block (a NaN row never reaches here from matmul,
            // which rejects non-finite activations).
            yb.fill(0);
            continue;
        }
        // The first value whose magnitude equals the maximum (the reference scans with `>`).
        let max = xb.iter().copied().find(|v| v.abs() == amax).unwrap_or(amax);
        let iscale = -127.0f32 / max;
        let mul = _mm256_set1_ps(iscale);
        let lim = _mm256_set1_epi32(127);
        let mut qs = [0i8; 256];
        for j in 0..8 {
            let mut iv = [_mm256_setzero_si256(); 4];
            for (k, ivk) in iv.iter_mut().enumerate() {
                // SAFETY: 8 floats at 32*j + 8*k < 256.
                let v = unsafe { _mm256_loadu_ps(p.add(32 * j + 8 * k)) };
                let r = _mm256_round_ps(_mm256_mul_ps(v, mul), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                *ivk = _mm256_min_epi32(_mm256_cvtps_epi32(r), lim);
            }
            // SAFETY: 32 bytes at 32*j within `qs`.
            unsafe { _mm256_storeu_si256(qs.as_mut_ptr().add(32 * j) as *mut __m256i, pack_i8(iv)) };
        }
        yb[..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
        for (d, s) in yb[4..260].iter_mut().zip(qs.iter()) {
            *d = *s as u8;
        }
        for (j, c) in qs.chunks_exact(16).enumerate() {
            let s: i16 = c.iter().map(|&v| v as i16).sum();
            yb[260 + 2 * j..262 + 2 * j].copy_from_slice(&s.to_le_bytes());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 32-value block types against Q8_0 / Q8_1.

/// Blocks `0..nb` accumulated alternately into two accumulators (block `i` into `i % 2`, the
/// order the 32-value kernels use), returned as their sum. Written as a loop over pairs with two
/// named accumulators: indexed as `acc[i & 1]`, LLVM kept them in memory (a store-to-load
/// chain per block).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn two_acc(nb: usize, mut block: impl FnMut(usize, __m256) -> __m256) -> __m256 {
    let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let mut i = 0;
    while i + 2 <= nb {
        acc0 = block(i, acc0);
        acc1 = block(i + 1, acc1);
        i += 2;
    }
    if i < nb {
        acc0 = block(i, acc0);
    }
    _mm256_add_ps(acc0, acc1)
}

/// Q8_0 x Q8_0.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_q8_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 32;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let acc = two_acc(nb, |i, acc| {
        // SAFETY: block i of 34 bytes is inside both rows (lengths guaranteed by the caller).
        unsafe {
            let (x, y) = (wp.add(34 * i), ap.add(34 * i));
            let p = dot_i8i8(load256(x.add(2)), load256(y.add(2)));
            _mm256_fmadd_ps(scale2(x, y), _mm256_cvtepi32_ps(p), acc)
        }
    });
    hsum_ps(acc)
}

/// Q4_0 x Q8_0: `(q - 8)` computed as `q*y - 8*y` in 16-bit pair sums.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_q4_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 32;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let eight = _mm256_set1_epi8(8);
    let ones = _mm256_set1_epi16(1);
    let acc = two_acc(nb, |i, acc| {
        // SAFETY: block i (18 bytes of Q4_0, 34 of Q8_0) is inside both rows.
        unsafe {
            let (x, y) = (wp.add(18 * i), ap.add(34 * i));
            let q = nibbles32(x.add(2));
            let yv = load256(y.add(2));
            let s16 = _mm256_sub_epi16(_mm256_maddubs_epi16(q, yv), _mm256_maddubs_epi16(eight, yv));
            let p = _mm256_madd_epi16(s16, ones);
            _mm256_fmadd_ps(scale2(x, y), _mm256_cvtepi32_ps(p), acc)
        }
    });
    hsum_ps(acc)
}

/// The high bits of a Q5 block as 0x10 in each byte whose bit is set (32 bytes, value order).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5_high(qh: *const u8) -> __m256i {
    // SAFETY: 4 readable bytes at `qh` (caller).
    let bits = unsafe { core::ptr::read_unaligned(qh as *const u32) };
    // Spread bit j of `bits` to byte j, then test it.
    let v = _mm256_set1_epi32(bits as i32);
    let shuf = _mm256_setr_epi64x(0, 0x0101_0101_0101_0101, 0x0202_0202_0202_0202, 0x0303_0303_0303_0303);
    let bytes = _mm256_shuffle_epi8(v, shuf);
    let mask = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, mask), mask);
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

/// Q5_0 x Q8_0: `q = (low nibble | high bit << 4) - 16`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_q5_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 32;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let sixteen = _mm256_set1_epi8(16);
    let ones = _mm256_set1_epi16(1);
    let acc = two_acc(nb, |i, acc| {
        // SAFETY: block i (22 bytes of Q5_0, 34 of Q8_0) is inside both rows.
        unsafe {
            let (x, y) = (wp.add(22 * i), ap.add(34 * i));
            let q = _mm256_or_si256(nibbles32(x.add(6)), q5_high(x.add(2)));
            let yv = load256(y.add(2));
            let s16 = _mm256_sub_epi16(_mm256_maddubs_epi16(q, yv), _mm256_maddubs_epi16(sixteen, yv));
            let p = _mm256_madd_epi16(s16, ones);
            _mm256_fmadd_ps(scale2(x, y), _mm256_cvtepi32_ps(p), acc)
        }
    });
    hsum_ps(acc)
}

/// Q4_1 x Q8_1: `d_w d_a sum(q y) + m_w s_a`, in ggml's AVX2 order (one accumulator, blocks
/// in order, `m_w s_a` summed apart).
///
/// The scale conversions read 8 bytes at each block start: `[d_w, m_w]` plus two quant bytes and
/// `[d_a, s_a]` plus two activation bytes; only lanes 0 and 1 of their product are used (the
/// other two are never subnormal: f16 magnitudes are at least 2^-24). Lane 0 is broadcast by a
/// load ([`bcast1`]).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_q4_1(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 32;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let mut acc = _mm256_setzero_ps();
    let mut summs = _mm_setzero_ps();
    let mut buf = [0f32; 4];
    for i in 0..nb {
        // SAFETY: block i (20 bytes, 36 of Q8_1) is inside both rows.
        unsafe {
            let (x, y) = (wp.add(20 * i), ap.add(36 * i));
            // [d_w d_a, m_w s_a, -, -]
            let p = _mm_mul_ps(_mm_cvtph_ps(_mm_loadl_epi64(x as *const __m128i)), _mm_cvtph_ps(_mm_loadl_epi64(y as *const __m128i)));
            summs = _mm_add_ps(summs, p);
            _mm_storeu_ps(buf.as_mut_ptr(), p);
            let pr = dot_u8i8(nibbles_bcast(x.add(4)), load256(y.add(4)));
            acc = _mm256_fmadd_ps(bcast1(buf.as_ptr()), _mm256_cvtepi32_ps(pr), acc);
        }
    }
    hsum_ps(acc) + _mm_cvtss_f32(_mm_movehdup_ps(summs))
}

/// Q5_1 x Q8_1.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_q5_1(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 32;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let mut acc = _mm256_setzero_ps();
    let mut summs = _mm_setzero_ps();
    for i in 0..nb {
        // SAFETY: block i (24 bytes, 36 of Q8_1) is inside both rows.
        unsafe {
            let (x, y) = (wp.add(24 * i), ap.add(36 * i));
            // [d_w, m_w, d_a, s_a] in one conversion; lane 0 = d_w d_a, lane 1 = m_w s_a.
            let hx = core::ptr::read_unaligned(x as *const u32) as u64;
            let hy = core::ptr::read_unaligned(y as *const u32) as u64;
            let v = _mm_cvtph_ps(_mm_cvtsi64_si128((hx | hy << 32) as i64));
            let p = _mm_mul_ps(v, _mm_movehl_ps(v, v));
            summs = _mm_add_ps(summs, p);
            let q = _mm256_or_si256(nibbles32(x.add(8)), q5_high(x.add(4)));
            let pr = dot_u8i8(q, load256(y.add(4)));
            acc = _mm256_fmadd_ps(_mm256_broadcastss_ps(p), _mm256_cvtepi32_ps(pr), acc);
        }
    }
    hsum_ps(acc) + _mm_cvtss_f32(_mm_movehdup_ps(summs))
}

pub(crate) use crate::simd::KVALUES_IQ4NL;

/// IQ4_NL x Q8_0: nibbles looked up in the codebook.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn dot_iq4_nl(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 32;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    // SAFETY: the table has 16 bytes.
    let tbl = unsafe { _mm256_broadcastsi128_si256(load128(KVALUES_IQ4NL.as_ptr() as *const u8)) };
    let acc = two_acc(nb, |i, acc| {
        // SAFETY: block i (18 bytes of IQ4_NL, 34 of Q8_0) is inside both rows.
        unsafe {
            let (x, y) = (wp.add(18 * i), ap.add(34 * i));
            let q = _mm256_shuffle_epi8(tbl, nibbles32(x.add(2)));
            let p = dot_i8i8(q, load256(y.add(2)));
            _mm256_fmadd_ps(scale2(x, y), _mm256_cvtepi32_ps(p), acc)
        }
    });
    hsum_ps(acc)
}

// ---------------------------------------------------------------------------------------------
// K-quants against Q8_K (256-value super-blocks; Q8_K = f32 d, 256 i8, 16 i16 sums).

/// Q8_K block offsets.
pub(crate) const Q8K: usize = 292;

/// Per-16 sums of a Q8_K block as 16 x i16.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn bsums(y: *const u8) -> __m256i {
    // SAFETY: 32 bytes of sums at offset 260 (caller: `y` is a Q8_K block).
    unsafe { load256(y.add(260)) }
}

/// The scales (i16, the same 8 in both 128-bit halves) and mins (8 x i16) of a Q4_K/Q5_K
/// block's 12 scale bytes at `p`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn k4_scales_mins_vec(p: *const u8) -> (__m256i, __m128i) {
    // SAFETY: 12 readable bytes at `p` (caller).
    let w = crate::simd::k4_scale_words(&unsafe { core::ptr::read_unaligned(p as *const [u8; 12]) });
    let v = _mm256_cvtepu8_epi16(_mm_setr_epi32(w[0] as i32, w[1] as i32, w[2] as i32, w[3] as i32));
    (_mm256_permute2x128_si256(v, v, 0x00), _mm256_extracti128_si256(v, 1))
}

/// Shuffle broadcasting i16 element `k` (of 8 per 128-bit half) to every lane.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn bcast16_shuffle(k: usize) -> __m256i {
    let b = (2 * k) as i16;
    _mm256_set1_epi16(b | (b + 1) << 8)
}

/// `dmin * sum_j mins[j] * (bsums[2j] + bsums[2j+1])` added to 4 float lanes (the horizontal
/// sum is left to the end of the row).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn k4_mins_acc(y: *const u8, mins: __m128i, dmin: f32, acc: __m128) -> __m128 {
    // SAFETY: `y` is a Q8_K block (caller).
    let b = unsafe { bsums(y) };
    let pair = _mm_hadd_epi16(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
    _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(_mm_madd_epi16(mins, pair)), acc)
}

/// Horizontal sum of 4 floats.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn hsum128(v: __m128) -> f32 {
    let s = _mm_add_ps(v, _mm_movehl_ps(v, v));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// Q4_K x Q8_K: per 32 values one `maddubs` and one `madd` with the sub-block scale, which is
/// shuffled out of a vector of the 8 scales.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q4_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 256;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let m4 = _mm256_set1_epi8(0x0f);
    let shuf: [__m256i; 8] = core::array::from_fn(|k| bcast16_shuffle(k));
    let mut acc = _mm256_setzero_ps();
    let mut accm = _mm_setzero_ps();
    for i in 0..nb {
        // SAFETY: super-block i (144 bytes of Q4_K, 292 of Q8_K) is inside both rows.
        unsafe {
            let (x, y) = (wp.add(144 * i), ap.add(Q8K * i));
            let yd = f32_at(y);
            let (sc, mins) = k4_scales_mins_vec(x.add(4));
            accm = k4_mins_acc(y, mins, yd * f16_at_nodep(x.add(2)), accm);
            let mut sumi = [_mm256_setzero_si256(); 2];
            for j in 0..4 {
                let qb = load256(x.add(16 + 32 * j));
                let lo = _mm256_and_si256(qb, m4);
                let hi = _mm256_and_si256(_mm256_srli_epi16(qb, 4), m4);
                let pl = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, load256(y.add(4 + 64 * j))), _mm256_shuffle_epi8(sc, shuf[2 * j]));
                let ph = _mm256_madd_epi16(
                    _mm256_maddubs_epi16(hi, load256(y.add(4 + 64 * j + 32))),
                    _mm256_shuffle_epi8(sc, shuf[2 * j + 1]),
                );
                sumi[j & 1] = _mm256_add_epi32(sumi[j & 1], _mm256_add_epi32(pl, ph));
            }
            let d = yd * f16_at_nodep(x);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(_mm256_add_epi32(sumi[0], sumi[1])), acc);
        }
    }
    hsum_ps(acc) - hsum128(accm)
}

/// Q5_K x Q8_K: as Q4_K with the fifth bit of each value from `qh`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q5_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 256;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let m4 = _mm256_set1_epi8(0x0f);
    let bit16 = _mm256_set1_epi8(16);
    let shuf: [__m256i; 8] = core::array::from_fn(|k| bcast16_shuffle(k));
    let mut acc = _mm256_setzero_ps();
    let mut accm = _mm_setzero_ps();
    for i in 0..nb {
        // SAFETY: super-block i (176 bytes of Q5_K, 292 of Q8_K) is inside both rows.
        unsafe {
            let (x, y) = (wp.add(176 * i), ap.add(Q8K * i));
            let yd = f32_at(y);
            let (sc, mins) = k4_scales_mins_vec(x.add(4));
            accm = k4_mins_acc(y, mins, yd * f16_at(x.add(2)), accm);
            // High bit of value l in sub-block 2j is bit 2j of qh[l], in 2j+1 bit 2j+1: shift
            // `hb` right by 2 per j and read bits 0 and 1 (16-bit shifts never carry a
            // neighbouring byte's bits into them within the four steps).
            let mut hb = load256(x.add(16));
            let mut sumi = [_mm256_setzero_si256(); 2];
            for j in 0..4 {
                let qb = load256(x.add(48 + 32 * j));
                let lo = _mm256_or_si256(_mm256_and_si256(qb, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 4), bit16));
                let hi = _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16(qb, 4), m4),
                    _mm256_and_si256(_mm256_slli_epi16(hb, 3), bit16),
                );
                hb = _mm256_srli_epi16(hb, 2);
                let pl = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, load256(y.add(4 + 64 * j))), _mm256_shuffle_epi8(sc, shuf[2 * j]));
                let ph = _mm256_madd_epi16(
                    _mm256_maddubs_epi16(hi, load256(y.add(4 + 64 * j + 32))),
                    _mm256_shuffle_epi8(sc, shuf[2 * j + 1]),
                );
                sumi[j & 1] = _mm256_add_epi32(sumi[j & 1], _mm256_add_epi32(pl, ph));
            }
            let d = yd * f16_at(x);
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(_mm256_add_epi32(sumi[0], sumi[1])), acc);
        }
    }
    hsum_ps(acc) - hsum128(accm)
}

/// Q6_K x Q8_K: `q = (4 low bits | 2 high bits << 4) - 32`, int8 scale per 16 values.
/// Computed as `sum(q6 * y) - 32 * sum(y)` per 16 (the second term from the Q8_K sums), with
/// the scale pair of each 32 values shuffled out of a vector of the 16 scales.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q6_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 256;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let m4 = _mm256_set1_epi8(0x0f);
    let m2 = _mm256_set1_epi8(0x30);
    let shuf = [scale_pair_shuffle(0), scale_pair_shuffle(2), scale_pair_shuffle(4), scale_pair_shuffle(6)];
    let mut acc = 0.0f32;
    for i in 0..nb {
        // SAFETY: super-block i (210 bytes of Q6_K, 292 of Q8_K) is inside both rows.
        unsafe {
            let (x, y) = (wp.add(210 * i), ap.add(Q8K * i));
            // 16 int8 scales to i16.
            let sc = _mm256_cvtepi8_epi16(load128(x.add(192)));
            // Offset term: 32 * sum_k sc[k] * bsum[k].
            let off = _mm256_slli_epi32(_mm256_madd_epi16(sc, bsums(y)), 5);
            let mut sumi = [_mm256_sub_epi32(_mm256_setzero_si256(), off), _mm256_setzero_si256()];
            let scl = [_mm256_permute2x128_si256(sc, sc, 0x00), _mm256_permute2x128_si256(sc, sc, 0x11)];
            for (half, &sl) in scl.iter().enumerate() {
                let ql = x.add(64 * half);
                let qh = load256(x.add(128 + 32 * half));
                let q0 = load256(ql);
                let q1 = load256(ql.add(32));
                // Values l (0..32) of the four 32-groups of this half:
                // g0: ql[l]&15 | (qh>>0&3)<<4; g1: ql[l+32]&15 | (qh>>2&3)<<4;
                // g2: ql[l]>>4 | (qh>>4&3)<<4; g3: ql[l+32]>>4 | (qh>>6&3)<<4.
                let g = [
                    _mm256_or_si256(_mm256_and_si256(q0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2)),
                    _mm256_or_si256(_mm256_and_si256(q1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q0, 4), m4), _mm256_and_si256(qh, m2)),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16(q1, 4), m4),
                        _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2),
                    ),
                ];
                for (k, gk) in g.iter().enumerate() {
                    let p16 = _mm256_maddubs_epi16(*gk, load256(y.add(4 + 128 * half + 32 * k)));
                    let sv = _mm256_shuffle_epi8(sl, shuf[k]);
                    sumi[k & 1] = _mm256_add_epi32(sumi[k & 1], _mm256_madd_epi16(p16, sv));
                }
            }
            // Reduce exactly in integers first: lanes carry the large `-32 * sum` offset,
            // so converting them to float one by one would round away the cancellation.
            let d = f32_at(y) * f16_at_nodep(x.add(208));
            acc += d * hsum_epi32(_mm256_add_epi32(sumi[0], sumi[1])) as f32;
        }
    }
    acc
}

/// Q2_K x Q8_K: `d * sc * q - dmin * m` per 16 values, 2-bit q, 4-bit scales and mins.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q2_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 256;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let m3 = _mm256_set1_epi8(3);
    let shuf = [scale_pair_shuffle(0), scale_pair_shuffle(2), scale_pair_shuffle(4), scale_pair_shuffle(6)];
    let mut acc = _mm256_setzero_ps();
    let mut accm = _mm256_setzero_ps();
    for i in 0..nb {
        // SAFETY: super-block i (84 bytes of Q2_K, 292 of Q8_K) is inside both rows.
        unsafe {
            let (x, y) = (wp.add(84 * i), ap.add(Q8K * i));
            let yd = f32_at(y);
            let sb = load128(x);
            let sc = _mm256_cvtepu8_epi16(_mm_and_si128(sb, _mm_set1_epi8(0x0f)));
            let mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sb, 4), _mm_set1_epi8(0x0f)));
            let dmin = yd * f16_at(x.add(82));
            accm = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(_mm256_madd_epi16(mins, bsums(y))), accm);
            let scl = [_mm256_permute2x128_si256(sc, sc, 0x00), _mm256_permute2x128_si256(sc, sc, 0x11)];
            let mut sumi = [_mm256_setzero_si256(); 2];
            for (half, &sl) in scl.iter().enumerate() {
                let qb = load256(x.add(16 + 32 * half));
                let q2 = [qb, _mm256_srli_epi16(qb, 2), _mm256_srli_epi16(qb, 4), _mm256_srli_epi16(qb, 6)];
                for k in 0..4 {
                    let p16 = _mm256_maddubs_epi16(_mm256_and_si256(q2[k], m3), load256(y.add(4 + 128 * half + 32 * k)));
                    let sv = _mm256_shuffle_epi8(sl, shuf[k]);
                    sumi[k & 1] = _mm256_add_epi32(sumi[k & 1], _mm256_madd_epi16(p16, sv));
                }
            }
            let d = yd * f16_at(x.add(80));
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(_mm256_add_epi32(sumi[0], sumi[1])), acc);
        }
    }
    hsum_ps(acc) - hsum_ps(accm)
}

/// The 16 six-bit scales of a Q3_K block (12 bytes at `p`) minus 32, as 16 x i16, unpacked
/// four at a time in 32-bit words: word `k` holds the low nibbles (`k < 2`: bytes `4k..4k+4`
/// low halves; `k >= 2`: bytes `4(k-2)..` high halves) with bits `2k..2k+2` of bytes 8..12 on top.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn q3k_scales(p: *const u8) -> __m256i {
    // SAFETY: 12 readable bytes at `p` (caller).
    let s = unsafe { core::ptr::read_unaligned(p as *const [u8; 12]) };
    let w = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    let (a0, a1, a2) = (w(0), w(1), w(2));
    let (m2, m4) = (0x0303_0303u32, 0x0f0f_0f0fu32);
    let u0 = (a0 & m4) | (a2 & m2) << 4;
    let u1 = (a1 & m4) | ((a2 >> 2) & m2) << 4;
    let u2 = ((a0 >> 4) & m4) | ((a2 >> 4) & m2) << 4;
    let u3 = ((a1 >> 4) & m4) | ((a2 >> 6) & m2) << 4;
    let v = _mm_sub_epi8(_mm_setr_epi32(u0 as i32, u1 as i32, u2 as i32, u3 as i32), _mm_set1_epi8(32));
    _mm256_cvtepi8_epi16(v)
}

/// Shuffle taking i16 scale `s` (of 16, `s` even) into lanes 0..8 and `s + 1` into lanes 8..16
/// of a vector whose 128-bit halves both hold scales `s0..s0+8` (`s - s0` = 0, 2, 4 or 6).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn scale_pair_shuffle(s: usize) -> __m256i {
    let b = (2 * s) as i16;
    let lo = b | (b + 1) << 8;
    let hi = (b + 2) | (b + 3) << 8;
    _mm256_set_m128i(_mm_set1_epi16(hi), _mm_set1_epi16(lo))
}

/// Q3_K x Q8_K: `q = (2 low bits | hmask bit << 2) - 4` with six-bit scales minus 32. The
/// unsigned part `q2 | h << 2` (0..=7) goes through `maddubs`; the constant `-4` is taken from
/// the Q8_K per-16 sums as `-4 * sum(sc * bsum)`, all in exact i32.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q3_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 256;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let m3 = _mm256_set1_epi8(3);
    let m4 = _mm256_set1_epi8(4);
    let shuf = [scale_pair_shuffle(0), scale_pair_shuffle(2), scale_pair_shuffle(4), scale_pair_shuffle(6)];
    let mut acc = _mm256_setzero_ps();
    for i in 0..nb {
        // SAFETY: super-block i (110 bytes of Q3_K, 292 of Q8_K) is inside both rows.
        unsafe {
            let (x, y) = (wp.add(110 * i), ap.add(Q8K * i));
            let d = f32_at(y) * f16_at(x.add(108));
            let sc = q3k_scales(x.add(96));
            // -4 * sum_k sc[k] * bsum[k].
            let off = _mm256_slli_epi32(_mm256_madd_epi16(sc, bsums(y)), 2);
            let mut sumi = [_mm256_sub_epi32(_mm256_setzero_si256(), off), _mm256_setzero_si256()];
            // Scales 0..8 in both halves, then 8..16.
            let scl = [_mm256_permute2x128_si256(sc, sc, 0x00), _mm256_permute2x128_si256(sc, sc, 0x11)];
            let hm = load256(x);
            for (half, &sl) in scl.iter().enumerate() {
                let qb = load256(x.add(32 + 32 * half));
                let hmh = if half == 0 { hm } else { _mm256_srli_epi16(hm, 4) };
                let h = [
                    _mm256_slli_epi16(hmh, 2),
                    _mm256_slli_epi16(hmh, 1),
                    hmh,
                    _mm256_srli_epi16(hmh, 1),
                ];
                let q2 = [qb, _mm256_srli_epi16(qb, 2), _mm256_srli_epi16(qb, 4), _mm256_srli_epi16(qb, 6)];
                for k in 0..4 {
                    let q = _mm256_or_si256(_mm256_and_si256(q2[k], m3), _mm256_and_si256(h[k], m4));
                    let p16 = _mm256_maddubs_epi16(q, load256(y.add(4 + 128 * half + 32 * k)));
                    let sv = _mm256_shuffle_epi8(sl, shuf[k]);
                    sumi[k & 1] = _mm256_add_epi32(sumi[k & 1], _mm256_madd_epi16(p16, sv));
                }
            }
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(_mm256_add_epi32(sumi[0], sumi[1])), acc);
        }
    }
    hsum_ps(acc)
}

/// IQ4_XS x Q8_K: codebook nibbles, 6-bit scales (minus 32) per 32 values.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_iq4_xs(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 256;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    // SAFETY: the table has 16 bytes.
    let tbl = unsafe { _mm256_broadcastsi128_si256(load128(KVALUES_IQ4NL.as_ptr() as *const u8)) };
    let mut acc = _mm256_setzero_ps();
    for i in 0..nb {
        // SAFETY: super-block i (136 bytes of IQ4_XS, 292 of Q8_K) is inside both rows.
        unsafe {
            let (x, y) = (wp.add(136 * i), ap.add(Q8K * i));
            let d = f32_at(y) * f16_at(x);
            let sh = core::ptr::read_unaligned(x.add(2) as *const u16);
            let sl = core::ptr::read_unaligned(x.add(4) as *const [u8; 4]);
            let mut sumi = _mm256_setzero_si256();
            for j in 0..8 {
                let ls = ((sl[j / 2] >> (4 * (j % 2))) & 0x0f) as i16 | ((((sh >> (2 * j)) & 3) as i16) << 4);
                let q = _mm256_shuffle_epi8(tbl, nibbles32(x.add(8 + 16 * j)));
                let yv = load256(y.add(4 + 32 * j));
                let p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(yv, q));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p16, _mm256_set1_epi16(ls - 32)));
            }
            acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        }
    }
    hsum_ps(acc)
}

// ---------------------------------------------------------------------------------------------
// Multi-row kernels: one weight row against DOT_ROWS activation rows. Each repeats its
// single-row kernel's float operations per activation row in the same order (integer sums are
// exact in any order), so results are bit-identical; the weight row is decoded once.

/// Q8_0 x DOT_ROWS Q8_0 rows (mirror of [`dot_q8_0`]).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows_q8_0(n: usize, w: &[u8], a: &[u8], out: &mut [f32; DOT_ROWS]) {
    let nb = n / 32;
    let arow = a.len() / DOT_ROWS;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let mut acc = [[_mm256_setzero_ps(); 2]; DOT_ROWS];
    // Accumulator `i % 2` per block as in the single-row kernel, unrolled so that the
    // index is a constant (the accumulators stay in registers).
    macro_rules! block {
        ($i:expr, $k:literal) => {{
            let i = $i;
            // SAFETY: block i (34 bytes) is inside the weight row and each activation row.
            unsafe {
                let x = wp.add(34 * i);
                let xv = load256(x.add(2));
                let ax = _mm256_sign_epi8(xv, xv);
                for (r, accr) in acc.iter_mut().enumerate() {
                    let y = ap.add(r * arow + 34 * i);
                    let p = dot_u8i8(ax, _mm256_sign_epi8(load256(y.add(2)), xv));
                    accr[$k] = _mm256_fmadd_ps(scale2(x, y), _mm256_cvtepi32_ps(p), accr[$k]);
                }
            }
        }};
    }
    let mut i = 0;
    while i + 2 <= nb {
        block!(i, 0);
        block!(i + 1, 1);
        i += 2;
    }
    if i < nb {
        block!(i, 0);
    }
    for (o, accr) in out.iter_mut().zip(acc) {
        *o = hsum_ps(_mm256_add_ps(accr[0], accr[1]));
    }
}

/// Q4_0 x DOT_ROWS Q8_0 rows (mirror of [`dot_q4_0`]).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows_q4_0(n: usize, w: &[u8], a: &[u8], out: &mut [f32; DOT_ROWS]) {
    let nb = n / 32;
    let arow = a.len() / DOT_ROWS;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let eight = _mm256_set1_epi8(8);
    let ones = _mm256_set1_epi16(1);
    let mut acc = [[_mm256_setzero_ps(); 2]; DOT_ROWS];
    // Accumulator `i % 2` per block as in the single-row kernel, unrolled so that the
    // index is a constant (the accumulators stay in registers).
    macro_rules! block {
        ($i:expr, $k:literal) => {{
            let i = $i;
            // SAFETY: block i (18 bytes of Q4_0, 34 of Q8_0) is inside the weight row and each
            // activation row.
            unsafe {
                let x = wp.add(18 * i);
                let q = nibbles32(x.add(2));
                for (r, accr) in acc.iter_mut().enumerate() {
                    let y = ap.add(r * arow + 34 * i);
                    let yv = load256(y.add(2));
                    let s16 = _mm256_sub_epi16(_mm256_maddubs_epi16(q, yv), _mm256_maddubs_epi16(eight, yv));
                    let p = _mm256_madd_epi16(s16, ones);
                    accr[$k] = _mm256_fmadd_ps(scale2(x, y), _mm256_cvtepi32_ps(p), accr[$k]);
                }
            }
        }};
    }
    let mut i = 0;
    while i + 2 <= nb {
        block!(i, 0);
        block!(i + 1, 1);
        i += 2;
    }
    if i < nb {
        block!(i, 0);
    }
    for (o, accr) in out.iter_mut().zip(acc) {
        *o = hsum_ps(_mm256_add_ps(accr[0], accr[1]));
    }
}

/// Q4_K x DOT_ROWS Q8_K rows (mirror of [`dot_q4_k`]).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows_q4_k(n: usize, w: &[u8], a: &[u8], out: &mut [f32; DOT_ROWS]) {
    let nb = n / 256;
    let arow = a.len() / DOT_ROWS;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let m4 = _mm256_set1_epi8(0x0f);
    let shuf: [__m256i; 8] = core::array::from_fn(|k| bcast16_shuffle(k));
    let mut acc = [_mm256_setzero_ps(); DOT_ROWS];
    let mut accm = [_mm_setzero_ps(); DOT_ROWS];
    for i in 0..nb {
        // SAFETY: super-block i (144 bytes of Q4_K, 292 of Q8_K) is inside the weight row and
        // each activation row.
        unsafe {
            let x = wp.add(144 * i);
            let (sc, mins) = k4_scales_mins_vec(x.add(4));
            let (dw, dminw) = (f16_at_nodep(x), f16_at_nodep(x.add(2)));
            let mut sumi = [_mm256_setzero_si256(); DOT_ROWS];
            for j in 0..4 {
                let qb = load256(x.add(16 + 32 * j));
                let lo = _mm256_and_si256(qb, m4);
                let hi = _mm256_and_si256(_mm256_srli_epi16(qb, 4), m4);
                let (sl, sh) = (_mm256_shuffle_epi8(sc, shuf[2 * j]), _mm256_shuffle_epi8(sc, shuf[2 * j + 1]));
                for (r, s) in sumi.iter_mut().enumerate() {
                    let y = ap.add(r * arow + Q8K * i);
                    let pl = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, load256(y.add(4 + 64 * j))), sl);
                    let ph = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, load256(y.add(4 + 64 * j + 32))), sh);
                    *s = _mm256_add_epi32(*s, _mm256_add_epi32(pl, ph));
                }
            }
            for r in 0..DOT_ROWS {
                let y = ap.add(r * arow + Q8K * i);
                let yd = f32_at(y);
                accm[r] = k4_mins_acc(y, mins, yd * dminw, accm[r]);
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(yd * dw), _mm256_cvtepi32_ps(sumi[r]), acc[r]);
            }
        }
    }
    for r in 0..DOT_ROWS {
        out[r] = hsum_ps(acc[r]) - hsum128(accm[r]);
    }
}

/// Q6_K x DOT_ROWS Q8_K rows (mirror of [`dot_q6_k`]).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows_q6_k(n: usize, w: &[u8], a: &[u8], out: &mut [f32; DOT_ROWS]) {
    let nb = n / 256;
    let arow = a.len() / DOT_ROWS;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let m4 = _mm256_set1_epi8(0x0f);
    let m2 = _mm256_set1_epi8(0x30);
    let shuf = [scale_pair_shuffle(0), scale_pair_shuffle(2), scale_pair_shuffle(4), scale_pair_shuffle(6)];
    let mut acc = [0.0f32; DOT_ROWS];
    for i in 0..nb {
        // SAFETY: super-block i (210 bytes of Q6_K, 292 of Q8_K) is inside the weight row and
        // each activation row.
        unsafe {
            let x = wp.add(210 * i);
            let sc = _mm256_cvtepi8_epi16(load128(x.add(192)));
            let mut sumi = [_mm256_setzero_si256(); DOT_ROWS];
            for (r, s) in sumi.iter_mut().enumerate() {
                let y = ap.add(r * arow + Q8K * i);
                *s = _mm256_sub_epi32(*s, _mm256_slli_epi32(_mm256_madd_epi16(sc, bsums(y)), 5));
            }
            let scl = [_mm256_permute2x128_si256(sc, sc, 0x00), _mm256_permute2x128_si256(sc, sc, 0x11)];
            for (half, &sl) in scl.iter().enumerate() {
                let ql = x.add(64 * half);
                let qh = load256(x.add(128 + 32 * half));
                let q0 = load256(ql);
                let q1 = load256(ql.add(32));
                let g = [
                    _mm256_or_si256(_mm256_and_si256(q0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2)),
                    _mm256_or_si256(_mm256_and_si256(q1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2)),
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q0, 4), m4), _mm256_and_si256(qh, m2)),
                    _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16(q1, 4), m4),
                        _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2),
                    ),
                ];
                for (k, gk) in g.iter().enumerate() {
                    let sv = _mm256_shuffle_epi8(sl, shuf[k]);
                    for (r, s) in sumi.iter_mut().enumerate() {
                        let y = ap.add(r * arow + Q8K * i);
                        let p16 = _mm256_maddubs_epi16(*gk, load256(y.add(4 + 128 * half + 32 * k)));
                        *s = _mm256_add_epi32(*s, _mm256_madd_epi16(p16, sv));
                    }
                }
            }
            let dw = f16_at_nodep(x.add(208));
            for (r, s) in sumi.iter().enumerate() {
                let d = f32_at(ap.add(r * arow + Q8K * i)) * dw;
                acc[r] += d * hsum_epi32(*s) as f32;
            }
        }
    }
    *out = acc;
}

/// Q4_1 x DOT_ROWS Q8_1 rows (mirror of [`dot_q4_1`]).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows_q4_1(n: usize, w: &[u8], a: &[u8], out: &mut [f32; DOT_ROWS]) {
    let nb = n / 32;
    let arow = a.len() / DOT_ROWS;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let mut acc = [_mm256_setzero_ps(); DOT_ROWS];
    let mut summs = [_mm_setzero_ps(); DOT_ROWS];
    let mut buf = [[0f32; 4]; DOT_ROWS];
    for i in 0..nb {
        // SAFETY: block i (20 bytes, 36 of Q8_1) is inside the weight row and each activation row.
        unsafe {
            let x = wp.add(20 * i);
            let fx = _mm_cvtph_ps(_mm_loadl_epi64(x as *const __m128i));
            let q = nibbles_bcast(x.add(4));
            for r in 0..DOT_ROWS {
                let y = ap.add(r * arow + 36 * i);
                let p = _mm_mul_ps(fx, _mm_cvtph_ps(_mm_loadl_epi64(y as *const __m128i)));
                summs[r] = _mm_add_ps(summs[r], p);
                _mm_storeu_ps(buf[r].as_mut_ptr(), p);
                let pr = dot_u8i8(q, load256(y.add(4)));
                acc[r] = _mm256_fmadd_ps(bcast1(buf[r].as_ptr()), _mm256_cvtepi32_ps(pr), acc[r]);
            }
        }
    }
    for r in 0..DOT_ROWS {
        out[r] = hsum_ps(acc[r]) + _mm_cvtss_f32(_mm_movehdup_ps(summs[r]));
    }
}
