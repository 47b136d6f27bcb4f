//! AVX-512 F16 and BF16 rows: 16 values per instruction sequence (F16 to F32 in two ymm halves,
//! which measured faster than one zmm; BF16 to F32 stays with the AVX2 clone for the same
//! reason, `examples/isa_timing.rs`).
//!
//! F16 uses the F16C conversions (`vcvtps2ph` rounding to nearest even, `vcvtph2ps`), which
//! [`crate::quant::float::f32_to_f16_bits`] and [`crate::quant::float::f16_bits_to_f32`] are
//! written to equal bit for bit (their tests compare every half and the f32 rounding
//! boundaries). BF16 is integer arithmetic: ggml's round to nearest even with NaNs kept quiet
//! ([`crate::quant::float::f32_to_bf16`]). The values after the last
//! whole group of 16 go through the portable functions. Tested against the scalar build by
//! `tests/codec_isa.rs` and against ggml by the golden tests. The quantizers have `_checked`
//! forms that also find the first non-finite value while converting (see `legacy512`).

use core::arch::x86_64::*;

use crate::quant::float::{f16_bits_to_f32, f32_to_bf16, f32_to_f16_bits};

/// Values per group.
const L: usize = 16;

/// F32 to F16 (ggml's `GGML_FP32_TO_FP16`); the importance matrix is ignored, as ggml does.
///
/// # Safety
/// The CPU has AVX-512 F/BW/VL/VNNI and AVX2/FMA/F16C.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn quantize_f16(src: &[f32], dst: &mut [u8], _imatrix: Option<&[f32]>) {
    // SAFETY: same features.
    unsafe { quantize_f16_ref(src, dst) }
}

/// F32 to F16 rows.
///
/// # Safety
/// As [`quantize_f16`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn quantize_f16_ref(src: &[f32], dst: &mut [u8]) {
    // SAFETY: same features. The rows are written whatever the values.
    let _ = unsafe { quantize_f16_checked(src, dst) };
}

/// F32 to F16 rows fused with the non-finite scan: `Some(i)` for the first NaN or infinity
/// `src[i]` (all of `dst` is written either way). The scan is one unsigned maximum of the
/// magnitude bits per 16 values (a NaN or infinity has the largest ones).
///
/// # Safety
/// As [`quantize_f16`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn quantize_f16_checked(src: &[f32], dst: &mut [u8]) -> Option<usize> {
    let n = src.len().min(dst.len() / 2);
    let full = n / L * L;
    let abs = _mm512_set1_epi32(i32::MAX);
    let mut top = _mm512_setzero_si512();
    for (x, y) in src[..full].chunks_exact(L).zip(dst.chunks_exact_mut(2 * L)) {
        // SAFETY: `x` holds 16 floats and `y` 32 bytes (unaligned load and store).
        unsafe {
            let u = _mm512_loadu_si512(x.as_ptr() as *const _);
            top = _mm512_max_epu32(top, _mm512_and_si512(u, abs));
            let h = _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_castsi512_ps(u));
            _mm256_storeu_si256(y.as_mut_ptr() as *mut __m256i, h);
        }
    }
    for (x, y) in src[full..n].iter().zip(dst[2 * full..].chunks_exact_mut(2)) {
        y.copy_from_slice(&f32_to_f16_bits(*x).to_le_bytes());
    }
    non_finite_at(src, full, top)
}

/// The first non-finite value of `src` when the vector maximum of magnitude bits `top` (of
/// `src[..full]`) or a value after `full` says there is one.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn non_finite_at(src: &[f32], full: usize, top: __m512i) -> Option<usize> {
    let tail_bad = src[full..].iter().any(|v| !v.is_finite());
    if _mm512_cmpge_epu32_mask(top, _mm512_set1_epi32(0x7f80_0000)) != 0 || tail_bad {
        return src.iter().position(|v| !v.is_finite());
    }
    None
}

/// F16 to F32 (ggml's `GGML_FP16_TO_FP32`).
///
/// # Safety
/// As [`quantize_f16`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn dequantize_f16(src: &[u8], dst: &mut [f32]) {
    let n = dst.len().min(src.len() / 2);
    let full = n / L * L;
    for (x, y) in src.chunks_exact(2 * L).zip(dst[..full].chunks_exact_mut(L)) {
        // SAFETY: `x` holds 32 bytes and `y` 16 floats (unaligned load and store).
        unsafe {
            let h0 = _mm_loadu_si128(x.as_ptr() as *const __m128i);
            let h1 = _mm_loadu_si128(x.as_ptr().add(16) as *const __m128i);
            _mm256_storeu_ps(y.as_mut_ptr(), _mm256_cvtph_ps(h0));
            _mm256_storeu_ps(y.as_mut_ptr().add(8), _mm256_cvtph_ps(h1));
        }
    }
    for (x, y) in src[2 * full..].chunks_exact(2).zip(dst[full..n].iter_mut()) {
        *y = f16_bits_to_f32(u16::from_le_bytes([x[0], x[1]]));
    }
}

/// F32 to BF16 (ggml's `GGML_FP32_TO_BF16`); the importance matrix is ignored, as ggml does.
///
/// # Safety
/// As [`quantize_f16`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn quantize_bf16(src: &[f32], dst: &mut [u8], _imatrix: Option<&[f32]>) {
    // SAFETY: same features.
    unsafe { quantize_bf16_ref(src, dst) }
}

/// F32 to BF16 rows: `(u + 0x7fff + ((u >> 16) & 1)) >> 16`, NaN `(u >> 16) | 64`.
///
/// # Safety
/// As [`quantize_f16`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn quantize_bf16_ref(src: &[f32], dst: &mut [u8]) {
    // SAFETY: same features. The rows are written whatever the values.
    let _ = unsafe { quantize_bf16_checked(src, dst) };
}

/// F32 to BF16 rows fused with the non-finite scan, as [`quantize_f16_checked`].
///
/// # Safety
/// As [`quantize_f16`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn quantize_bf16_checked(src: &[f32], dst: &mut [u8]) -> Option<usize> {
    let n = src.len().min(dst.len() / 2);
    let full = n / L * L;
    let (abs, inf, one, bias, quiet) = (
        _mm512_set1_epi32(i32::MAX),
        _mm512_set1_epi32(0x7f80_0000),
        _mm512_set1_epi32(1),
        _mm512_set1_epi32(0x7fff),
        _mm512_set1_epi32(64),
    );
    let mut top = _mm512_setzero_si512();
    for (x, y) in src[..full].chunks_exact(L).zip(dst.chunks_exact_mut(2 * L)) {
        // SAFETY: `x` holds 16 floats (unaligned load).
        let u = unsafe { _mm512_loadu_si512(x.as_ptr() as *const _) };
        let mag = _mm512_and_si512(u, abs);
        top = _mm512_max_epu32(top, mag);
        let nan = _mm512_cmpgt_epu32_mask(mag, inf);
        let hi = _mm512_srli_epi32::<16>(u);
        let rounded = _mm512_srli_epi32::<16>(_mm512_add_epi32(u, _mm512_add_epi32(bias, _mm512_and_si512(hi, one))));
        let r = _mm512_mask_blend_epi32(nan, rounded, _mm512_or_si512(hi, quiet));
        // SAFETY: `y` holds 32 bytes (unaligned store).
        unsafe { _mm256_storeu_si256(y.as_mut_ptr() as *mut __m256i, _mm512_cvtepi32_epi16(r)) };
    }
    for (x, y) in src[full..n].iter().zip(dst[2 * full..].chunks_exact_mut(2)) {
        y.copy_from_slice(&f32_to_bf16(*x).to_le_bytes());
    }
    non_finite_at(src, full, top)
}
