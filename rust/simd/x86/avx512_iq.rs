//! AVX-512 (F/BW/VL/VNNI) kernels for types of [`super::avx2_iq`] where they measured faster
//! than AVX2 here (NVFP4: one 64-value block per zmm; Q1_0: sign bits as a mask register;
//! BF16: 32 values per load, widened by mask and shift; MXFP4: the four-blocks-per-step ymm
//! kernel of [`super::avx512`]).
//! Installed over the AVX2 table only after run-time detection; types without an entry keep
//! their AVX2 kernel. zmm versions of TQ2_0, MXFP4 and Q2_0 measured no faster than AVX2 (or
//! slower) on this Xeon and were dropped (MXFP4 came back as a ymm kernel); the grid types stay on AVX2 because their cost is
//! the scalar grid lookups, which wider vectors do not reduce.

use core::arch::x86_64::*;

use super::avx2::{f16_at, nibbles_bcast};
use super::avx2_iq::{E8M0_HALF, UE4M3_HALF};
use super::avx512::{blocks4_gen, blocks4_kernels, Block32};
use crate::quant::fp4::KVALUES_FP4;
use crate::simd::{Overrides, DOT_ROWS};
use crate::types::QuantType as T;

/// The AVX-512 entries of the dispatch table for these types.
///
/// # Safety
/// Only call after checking AVX-512 F/BW/VL/VNNI and AVX2/FMA/F16C: the kernels use them.
pub(crate) unsafe fn overrides() -> Overrides {
    Overrides {
        dot: vec![
            (T::NVFP4, dot_nvfp4 as _),
            (T::Q1_0, dot_q1_0 as _),
            (T::BF16, dot_bf16 as _),
            (T::MXFP4, dot_mxfp4 as _),
        ],
        act: vec![],
    }
}

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

/// 32 bytes at `a` in the low half, 32 bytes at `b` in the high half.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn load2x256(a: *const u8, b: *const u8) -> __m512i {
    // SAFETY: 32 readable bytes at `a` and at `b` (caller).
    unsafe { _mm512_inserti64x4(_mm512_castsi256_si512(load256(a)), load256(b), 1) }
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
    /// Q1_0 x Q8_0: the 64 sign bits of two Q8_0 blocks are a mask register. The four scale
    /// products `d_w * d_a` of a block are converted together (one `vcvtph2ps` for the four
    /// activation scales) and spread to the zmm halves by one permute each.
    fn dot_q1_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
        let nb = n / 128;
        let (wp, ap) = (w.as_ptr(), a.as_ptr());
        let ones = _mm512_set1_epi8(1);
        // Scale k of the four in lanes 0..8 and scale k + 1 in lanes 8..16, k = 0 and 2.
        let spread = [
            _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
            _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3),
        ];
        let mut acc = [_mm512_setzero_ps(); 2];
        for i in 0..nb {
            // SAFETY: block i (18 bytes of Q1_0, 4 x 34 of Q8_0) is inside both rows.
            unsafe {
                let (x, y) = (wp.add(18 * i), ap.add(4 * Q80 * i));
                let r = |k: usize| core::ptr::read_unaligned(y.add(Q80 * k) as *const u16) as u64;
                let dy = _mm_cvtph_ps(_mm_cvtsi64_si128((r(0) | r(1) << 16 | r(2) << 32 | r(3) << 48) as i64));
                let d = _mm512_castps128_ps512(_mm_mul_ps(_mm_set1_ps(f16_at(x)), dy));
                for h in 0..2 {
                    let bits = core::ptr::read_unaligned(x.add(2 + 8 * h) as *const u64);
                    let (ya, yb) = (y.add(2 * Q80 * h), y.add(2 * Q80 * h + Q80));
                    let yv = load2x256(ya.add(2), yb.add(2));
                    // Clear bits are -1.
                    let sy = _mm512_mask_sub_epi8(yv, !bits, _mm512_setzero_si512(), yv);
                    let s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, sy);
                    acc[h] = _mm512_fmadd_ps(_mm512_permutexvar_ps(spread[h], d), _mm512_cvtepi32_ps(s), acc[h]);
                }
            }
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]))
    }
}

kernel! {
    /// BF16 x BF16, 64 values per step in four zmm accumulators, widened without shuffles as in
    /// the AVX2 kernel (odd values of each 32-bit lane masked, even ones shifted up 16 bits). The
    /// scalar tail in f32.
    fn dot_bf16(n: usize, w: &[u8], a: &[u8]) -> f32 {
        let (wp, ap) = (w.as_ptr(), a.as_ptr());
        let hi_mask = _mm512_set1_epi32(0xffff_0000u32 as i32);
        let mut acc = [_mm512_setzero_ps(); 4];
        let n64 = n / 64 * 64;
        let mut k = 0;
        while k < n64 {
            for h in 0..2 {
                // SAFETY: values k + 32h .. k + 32h + 32 < n of both rows (2 bytes each).
                let (x, y) = unsafe {
                    (
                        _mm512_loadu_si512(wp.add(2 * (k + 32 * h)) as *const __m512i),
                        _mm512_loadu_si512(ap.add(2 * (k + 32 * h)) as *const __m512i),
                    )
                };
                let odd = |v: __m512i| _mm512_castsi512_ps(_mm512_and_si512(v, hi_mask));
                let even = |v: __m512i| _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
                acc[2 * h] = _mm512_fmadd_ps(even(x), even(y), acc[2 * h]);
                acc[2 * h + 1] = _mm512_fmadd_ps(odd(x), odd(y), acc[2 * h + 1]);
            }
            k += 64;
        }
        let mut tail = 0f32;
        for k in n64..n {
            // SAFETY: value k < n of both rows.
            let (x, y) = unsafe {
                (
                    core::ptr::read_unaligned(wp.add(2 * k) as *const u16) as u32,
                    core::ptr::read_unaligned(ap.add(2 * k) as *const u16) as u32,
                )
            };
            tail += f32::from_bits(x << 16) * f32::from_bits(y << 16);
        }
        _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]))) + tail
    }
}

/// MXFP4 weights (17-byte blocks: E8M0 exponent, 16 bytes of E2M1 codes) for [`blocks4_gen`].
struct Mxfp4 {
    tbl: __m256i,
}

impl Block32 for Mxfp4 {
    const SIZE: usize = 17;
    type Vals = __m256i;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn new() -> Self {
        // SAFETY: the table has 16 bytes.
        Mxfp4 { tbl: _mm256_broadcastsi128_si256(unsafe { _mm_loadu_si128(KVALUES_FP4.as_ptr() as *const __m128i) }) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn scales4(&self, x: *const u8) -> __m128 {
        // SAFETY: four blocks at `x` (caller): their exponent bytes.
        let e = |k: usize| E8M0_HALF[unsafe { *x.add(17 * k) } as usize];
        _mm_setr_ps(e(0), e(1), e(2), e(3))
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn scale1(&self, x: *const u8) -> f32 {
        // SAFETY: one block at `x` (caller).
        E8M0_HALF[unsafe { *x } as usize]
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn decode(&self, x: *const u8) -> __m256i {
        // SAFETY: one block at `x` (caller): 16 code bytes at 1.
        _mm256_shuffle_epi8(self.tbl, unsafe { nibbles_bcast(x.add(1)) })
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn dot(&self, v: &__m256i, y: *const u8) -> __m256i {
        // SAFETY: 32 bytes at `y` (caller).
        let yv = unsafe { _mm256_loadu_si256(y as *const __m256i) };
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(*v, *v), _mm256_sign_epi8(yv, *v))
    }
}

blocks4_kernels! {
    /// MXFP4 x Q8_0.
    Mxfp4 => dot_mxfp4, rows_mxfp4
}
