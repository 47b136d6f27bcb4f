//! AVX-512 reference quantizers for Q4_0 and Q8_0 (ggml `quantize_row_q4_0_ref` /
//! `quantize_row_q8_0_ref`), the most used plain paths: one block of 32 values is two zmm
//! registers. Same float32 operations per value as the portable code (`crate::quant::legacy`):
//! multiply then add (never fused), truncating conversion, round half away from zero; only
//! blocks whose scale and inverse scale are finite take this path, the others go to the portable
//! code, whose x86 conversion emulation covers them. Tested against the scalar build by
//! `tests/codec_isa.rs` and against ggml by the golden tests.

use core::arch::x86_64::*;

use crate::quant::legacy::{BlockQ4_0, BlockQ8_0, QK};
use crate::quant::{f32_to_f16, Block};

/// Largest lane of `v` (any of equal lanes; callers only rely on the value up to the sign of 0).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn hmax(v: __m512) -> f32 {
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
    let a = _mm256_max_ps(_mm512_castps512_ps256(v), hi);
    let b = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
    let c = _mm_max_ps(b, _mm_movehl_ps(b, b));
    _mm_cvtss_f32(_mm_max_ss(c, _mm_shuffle_ps::<1>(c, c)))
}

/// Smallest lane of `v` (as [`hmax`]).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn hmin(v: __m512) -> f32 {
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
    let a = _mm256_min_ps(_mm512_castps512_ps256(v), hi);
    let b = _mm_min_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
    let c = _mm_min_ps(b, _mm_movehl_ps(b, b));
    _mm_cvtss_f32(_mm_min_ss(c, _mm_shuffle_ps::<1>(c, c)))
}

/// The block's two halves and its `(max, min)`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn load_block(x: &[f32; QK]) -> (__m512, __m512, f32, f32) {
    // SAFETY: `x` holds 32 floats: two unaligned loads of 16.
    let (a, b) = unsafe { (_mm512_loadu_ps(x.as_ptr()), _mm512_loadu_ps(x.as_ptr().add(16))) };
    (a, b, hmax(_mm512_max_ps(a, b)), hmin(_mm512_min_ps(a, b)))
}

/// Q4_0 reference quantizer on whole blocks.
///
/// # Safety
/// The CPU has AVX-512 F/BW/VL/VNNI and AVX2/FMA/F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn quantize_q4_0_ref(src: &[f32], dst: &mut [u8]) {
    let ys: &mut [BlockQ4_0] = bytemuck::cast_slice_mut(dst);
    for (y, x) in ys.iter_mut().zip(src.chunks_exact(QK)) {
        let Ok(x) = <&[f32; QK]>::try_from(x) else { continue };
        let (a, b, hi, lo) = load_block(x);
        // The value of largest magnitude, the first one when +a and -a both occur (as
        // `legacy::signed_absmax`).
        let max = crate::quant::legacy::signed_absmax_of(x, hi, lo);
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        if !(d.is_finite() && id.is_finite()) {
            BlockQ4_0::quantize_row(x, core::slice::from_mut(y), None);
            continue;
        }
        y.d = f32_to_f16(d);
        // Finite scales: every x * id is within [-8, 8] up to rounding, so `x * id + 8.5` is in
        // (0, 17) and truncation is the conversion C's cast performs.
        let (vid, off, cap) = (_mm512_set1_ps(id), _mm512_set1_ps(8.5), _mm512_set1_epi32(15));
        let la = _mm512_min_epi32(_mm512_cvttps_epi32(_mm512_add_ps(_mm512_mul_ps(a, vid), off)), cap);
        let lb = _mm512_min_epi32(_mm512_cvttps_epi32(_mm512_add_ps(_mm512_mul_ps(b, vid), off)), cap);
        // Value j in the low nibble of byte j, value j + 16 in the high nibble (levels <= 15, so
        // the 16-bit shift moves no bits across bytes).
        let q = _mm_or_si128(_mm512_cvtepi32_epi8(la), _mm_slli_epi16::<4>(_mm512_cvtepi32_epi8(lb)));
        // SAFETY: `y.qs` is 16 bytes.
        unsafe { _mm_storeu_si128(y.qs.as_mut_ptr() as *mut __m128i, q) };
    }
}

/// Q4_0 quantize entry: the kernel without an importance matrix, the portable clone with one.
///
/// # Safety
/// As [`quantize_q4_0_ref`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn quantize_q4_0(src: &[f32], dst: &mut [u8], imatrix: Option<&[f32]>) {
    match imatrix {
        // SAFETY: same features.
        None => unsafe { quantize_q4_0_ref(src, dst) },
        // SAFETY: same features.
        Some(_) => unsafe { super::avx512::quantize::<BlockQ4_0>(src, dst, imatrix) },
    }
}

/// C's `(int8_t)roundf(v)` (half away from zero) for |v| <= 128: truncate `v + copysign(0.5 -
/// 2^-25, v)`, which never rounds a value below a half up (LLVM's own `round` lowering).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn roundf_i8(v: __m512) -> __m128i {
    let sign = _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(i32::MIN));
    let s = _mm512_castsi512_ps(_mm512_or_si512(sign, _mm512_castps_si512(_mm512_set1_ps(0.499_999_97))));
    _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(_mm512_add_ps(v, s)))
}

/// Q8_0 reference quantizer on whole blocks (ggml's Q8_0 ignores an importance matrix).
///
/// # Safety
/// As [`quantize_q4_0_ref`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn quantize_q8_0_ref(src: &[f32], dst: &mut [u8]) {
    let ys: &mut [BlockQ8_0] = bytemuck::cast_slice_mut(dst);
    for (y, x) in ys.iter_mut().zip(src.chunks_exact(QK)) {
        let Ok(x) = <&[f32; QK]>::try_from(x) else { continue };
        let (a, b, hi, lo) = load_block(x);
        let m = if hi > -lo { hi } else { -lo };
        let amax = if m > 0.0 { m } else { 0.0 };
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        if !(d.is_finite() && id.is_finite()) {
            BlockQ8_0::quantize_row(x, core::slice::from_mut(y), None);
            continue;
        }
        y.d = f32_to_f16(d);
        let vid = _mm512_set1_ps(id);
        let qa = roundf_i8(_mm512_mul_ps(a, vid));
        let qb = roundf_i8(_mm512_mul_ps(b, vid));
        // SAFETY: `y.qs` is 32 bytes.
        unsafe {
            _mm_storeu_si128(y.qs.as_mut_ptr() as *mut __m128i, qa);
            _mm_storeu_si128(y.qs.as_mut_ptr().add(16) as *mut __m128i, qb);
        }
    }
}

/// Q8_0 quantize entry (the importance matrix is ignored, as ggml does).
///
/// # Safety
/// As [`quantize_q4_0_ref`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn quantize_q8_0(src: &[f32], dst: &mut [u8], _imatrix: Option<&[f32]>) {
    // SAFETY: same features.
    unsafe { quantize_q8_0_ref(src, dst) }
}
