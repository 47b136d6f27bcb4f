//! AVX-512 (F/BW/VL/VNNI) kernels for the simple types of [`super::avx2_iq`]: `vpdpbusd`
//! replaces `maddubs` + `madd`, mask registers replace sign-bit spreading, and 64 values go
//! through one zmm. Installed over the AVX2 table only after run-time detection; types
//! without an entry here keep their AVX2 kernel. The grid types stay on AVX2: their cost is
//! the scalar grid lookups, which wider vectors do not reduce.

use core::arch::x86_64::*;

use super::avx2::{f16_at, f32_at};
use super::avx2_iq::{E8M0_HALF, UE4M3_HALF};
use crate::quant::fp4::KVALUES_FP4;
use crate::simd::Overrides;
use crate::types::QuantType as T;

/// The AVX-512 entries of the dispatch table for these types.
///
/// # Safety
/// Only call after checking AVX-512 F/BW/VL/VNNI and AVX2/FMA/F16C: the kernels use them.
pub(crate) unsafe fn overrides() -> Overrides {
    Overrides {
        dot: vec![
            (T::TQ2_0, dot_tq2_0 as _),
            (T::MXFP4, dot_mxfp4 as _),
            (T::NVFP4, dot_nvfp4 as _),
            (T::Q1_0, dot_q1_0 as _),
            (T::Q2_0, dot_q2_0 as _),
        ],
        act: vec![],
    }
}

const Q8K: usize = 292;
const Q80: usize = 34;

macro_rules! kernel {
    ($(#[$m:meta])* fn $name:ident($($a:ident: $t:ty),*) $(-> $r:ty)? $body:block) => {
        $(#[$m])*
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        unsafe fn $name($($a: $t),*) $(-> $r)? $body
    };
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn load256(p: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 32 readable bytes at `p`.
    unsafe { _mm256_loadu_si256(p as *const __m256i) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn load128(p: *const u8) -> __m128i {
    // SAFETY: the caller guarantees 16 readable bytes at `p`.
    unsafe { _mm_loadu_si128(p as *const __m128i) }
}

/// 32 bytes at `a` in the low half, 32 bytes at `b` in the high half.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn load2x256(a: *const u8, b: *const u8) -> __m512i {
    // SAFETY: 32 readable bytes at `a` and at `b` (caller).
    unsafe { _mm512_inserti64x4(_mm512_castsi256_si512(load256(a)), load256(b), 1) }
}

/// `d0` in lanes 0..8, `d1` in lanes 8..16.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn halves(d0: f32, d1: f32) -> __m512 {
    _mm512_mask_mov_ps(_mm512_set1_ps(d0), 0xff00, _mm512_set1_ps(d1))
}

/// E2M1 codes (one per byte, 0..16) times activations, summed by fours: magnitudes from the
/// table, the sign (code bit 3) applied to the activation through a mask.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn fp4_dot(codes: __m512i, y: __m512i) -> __m512i {
    // |KVALUES_FP4| per 128-bit lane.
    // SAFETY: the table has 16 bytes.
    let mag = _mm512_broadcast_i32x4(_mm_abs_epi8(unsafe { _mm_loadu_si128(KVALUES_FP4.as_ptr() as *const __m128i) }));
    let neg = _mm512_test_epi8_mask(codes, _mm512_set1_epi8(8));
    let sy = _mm512_mask_sub_epi8(y, neg, _mm512_setzero_si512(), y);
    _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_shuffle_epi8(mag, codes), sy)
}

kernel! {
    /// TQ2_0 x Q8_K: codes 0..2 (unsigned) straight into `vpdpbusd`; the `-1` offset from the
    /// Q8_K sums. Each block's integer sum is exact and accumulated as `d * sum` in block order,
    /// so the result equals the scalar reference bit for bit.
    fn dot_tq2_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
        let nb = n / 256;
        let (wp, ap) = (w.as_ptr(), a.as_ptr());
        let m3 = _mm512_set1_epi8(3);
        let mut acc = 0f32;
        for i in 0..nb {
            // SAFETY: super-block i (66 bytes of TQ2_0, 292 of Q8_K) is inside both rows.
            unsafe {
                let (x, y) = (wp.add(66 * i), ap.add(Q8K * i));
                let q = _mm512_loadu_si512(x as *const _);
                let mut s = _mm512_setzero_si512();
                for l in 0..4 {
                    // Bytes 0..32 of the codes pair with y[32l..], bytes 32..64 with y[128 + 32l..].
                    let c = _mm512_and_si512(_mm512_srl_epi16(q, _mm_cvtsi32_si128(2 * l as i32)), m3);
                    s = _mm512_dpbusd_epi32(s, c, load2x256(y.add(4 + 32 * l), y.add(132 + 32 * l)));
                }
                let ysum = _mm512_cvtepi16_epi32(load256(y.add(260)));
                let total = _mm512_reduce_add_epi32(_mm512_sub_epi32(s, ysum));
                let d = f32_at(y) * f16_at(x.add(64));
                acc += d * total as f32;
            }
        }
        acc
    }
}

kernel! {
    /// MXFP4 x Q8_0, two blocks per zmm (an odd last block pairs with itself at scale 0).
    fn dot_mxfp4(n: usize, w: &[u8], a: &[u8]) -> f32 {
        let nb = n / 32;
        let (wp, ap) = (w.as_ptr(), a.as_ptr());
        let m4 = _mm256_set1_epi8(0x0f);
        let mut acc = _mm512_setzero_ps();
        let mut i = 0;
        while i < nb {
            // SAFETY: blocks i and i1 (17 bytes of MXFP4, 34 of Q8_0) are inside both rows.
            unsafe {
                let i1 = if i + 1 < nb { i + 1 } else { i };
                let (x0, y0, x1, y1) = (wp.add(17 * i), ap.add(Q80 * i), wp.add(17 * i1), ap.add(Q80 * i1));
                let nib = |p: *const u8| {
                    let b = load128(p);
                    _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(b, 4), b), m4)
                };
                let codes = _mm512_inserti64x4(_mm512_castsi256_si512(nib(x0.add(1))), nib(x1.add(1)), 1);
                let p = fp4_dot(codes, load2x256(y0.add(2), y1.add(2)));
                let d0 = f16_at(y0) * E8M0_HALF[*x0 as usize];
                let d1 = if i1 != i { f16_at(y1) * E8M0_HALF[*x1 as usize] } else { 0.0 };
                acc = _mm512_fmadd_ps(halves(d0, d1), _mm512_cvtepi32_ps(p), acc);
            }
            i += 2;
        }
        _mm512_reduce_add_ps(acc)
    }
}

kernel! {
    /// NVFP4 x Q8_0: one 64-value block per zmm, sub-block `s` in 128-bit lane `s`.
    fn dot_nvfp4(n: usize, w: &[u8], a: &[u8]) -> f32 {
        let nb = n / 64;
        let (wp, ap) = (w.as_ptr(), a.as_ptr());
        let m4 = _mm256_set1_epi8(0x0f);
        // Lanes of (sub-blocks 0|2) and (1|3) interleaved to 0, 1, 2, 3.
        let order = _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11);
        let spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
        let mut acc = _mm512_setzero_ps();
        for i in 0..nb {
            // SAFETY: block i (36 bytes of NVFP4, 2 x 34 of Q8_0) is inside both rows.
            unsafe {
                let (x, y) = (wp.add(36 * i), ap.add(2 * Q80 * i));
                let b = load256(x.add(4));
                let lo = _mm256_and_si256(b, m4);
                let hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), m4);
                let even = _mm512_castsi256_si512(_mm256_unpacklo_epi64(lo, hi));
                let odd = _mm512_castsi256_si512(_mm256_unpackhi_epi64(lo, hi));
                let codes = _mm512_permutex2var_epi64(even, order, odd);
                let p = fp4_dot(codes, load2x256(y.add(2), y.add(Q80 + 2)));
                let (dy0, dy1) = (f16_at(y), f16_at(y.add(Q80)));
                let s = _mm_setr_ps(
                    UE4M3_HALF[*x as usize] * dy0,
                    UE4M3_HALF[*x.add(1) as usize] * dy0,
                    UE4M3_HALF[*x.add(2) as usize] * dy1,
                    UE4M3_HALF[*x.add(3) as usize] * dy1,
                );
                let sc = _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(s));
                acc = _mm512_fmadd_ps(sc, _mm512_cvtepi32_ps(p), acc);
            }
        }
        _mm512_reduce_add_ps(acc)
    }
}

kernel! {
    /// Q1_0 x Q8_0: the 64 sign bits of two Q8_0 blocks are a mask register.
    fn dot_q1_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
        let nb = n / 128;
        let (wp, ap) = (w.as_ptr(), a.as_ptr());
        let ones = _mm512_set1_epi8(1);
        let mut acc = _mm512_setzero_ps();
        for i in 0..nb {
            // SAFETY: block i (18 bytes of Q1_0, 4 x 34 of Q8_0) is inside both rows.
            unsafe {
                let (x, y) = (wp.add(18 * i), ap.add(4 * Q80 * i));
                let mut blk = _mm512_setzero_ps();
                for h in 0..2 {
                    let bits = core::ptr::read_unaligned(x.add(2 + 8 * h) as *const u64);
                    let (ya, yb) = (y.add(2 * Q80 * h), y.add(2 * Q80 * h + Q80));
                    let yv = load2x256(ya.add(2), yb.add(2));
                    // Clear bits are -1.
                    let sy = _mm512_mask_sub_epi8(yv, !bits, _mm512_setzero_si512(), yv);
                    let s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, sy);
                    blk = _mm512_fmadd_ps(halves(f16_at(ya), f16_at(yb)), _mm512_cvtepi32_ps(s), blk);
                }
                acc = _mm512_fmadd_ps(_mm512_set1_ps(f16_at(x)), blk, acc);
            }
        }
        _mm512_reduce_add_ps(acc)
    }
}

kernel! {
    /// Q2_0 x Q8_0: one 64-value block per zmm; codes unpacked shift-major per 128-bit lane and
    /// the activations permuted to match, as in the AVX2 kernel; `sum((c - 1) y)` as
    /// `sum(c y) - sum(y)`.
    fn dot_q2_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
        let nb = n / 64;
        let (wp, ap) = (w.as_ptr(), a.as_ptr());
        let ones = _mm512_set1_epi8(1);
        let m3 = _mm512_set1_epi8(3);
        let shifts = _mm512_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6, 0, 2, 4, 6, 0, 2, 4, 6);
        let dup = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
        let perm = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15));
        let mut acc = _mm512_setzero_ps();
        for i in 0..nb {
            // SAFETY: block i (18 bytes of Q2_0, 2 x 34 of Q8_0) is inside both rows.
            unsafe {
                let (x, y) = (wp.add(18 * i), ap.add(2 * Q80 * i));
                let b = _mm512_castsi128_si512(load128(x.add(2)));
                let c = _mm512_and_si512(_mm512_srlv_epi32(_mm512_permutexvar_epi32(dup, b), shifts), m3);
                let yv = _mm512_shuffle_epi8(load2x256(y.add(2), y.add(Q80 + 2)), perm);
                let cy = _mm512_dpbusd_epi32(_mm512_setzero_si512(), c, yv);
                let s = _mm512_sub_epi32(cy, _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, yv));
                let blk = _mm512_mul_ps(halves(f16_at(y), f16_at(y.add(Q80))), _mm512_cvtepi32_ps(s));
                acc = _mm512_fmadd_ps(_mm512_set1_ps(f16_at(x)), blk, acc);
            }
        }
        _mm512_reduce_add_ps(acc)
    }
}
