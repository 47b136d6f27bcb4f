//! AVX-512 dequantizers of Q2_K and Q3_K (ggml `dequantize_row_q2_K` / `dequantize_row_q3_K`).
//!
//! One super-block is 256 values, sixteen sub-blocks of 16: one zmm register of f32 per
//! sub-block. The sixteen sub-block scales (and Q2_K's mins) are computed once per super-block
//! in one register, lane `j` for sub-block `j`, and broadcast from there. The float operations
//! per value are the portable code's (`crate::quant::k`): Q2_K `dl * q - ml` (multiply, then
//! subtract; never fused), Q3_K `dl * v` with `v` the exact integer level. Tested against the
//! scalar build by `tests/codec_isa.rs` and against ggml by the golden tests.

use core::arch::x86_64::*;

use crate::quant::float::f16_bits_to_f32;
use crate::quant::k::{BlockQ2K, BlockQ3K};

/// Lane `j` of `v` in every lane.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn lane(v: __m512, j: usize) -> __m512 {
    _mm512_permutexvar_ps(_mm512_set1_epi32(j as i32), v)
}

/// 16 bytes at `p`, widened to 16 f32 lanes (unsigned when `SIGNED` is false).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn widen<const SIGNED: bool>(b: __m128i) -> __m512 {
    _mm512_cvtepi32_ps(if SIGNED { _mm512_cvtepi8_epi32(b) } else { _mm512_cvtepu8_epi32(b) })
}

/// The sixteen signed 6-bit scales of a Q3_K block (`crate::quant::k` `unpack_scales`): the low
/// nibble of scale `j` is in byte `j % 8` (low half for `j < 8`), its top 2 bits in byte
/// `8 + j % 4` at bit `2 (j / 4)`; the result is `scale - 32` in byte `j`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn q3_k_scales_sse(scales: &[u8; 12]) -> __m128i {
    let mut raw = [0u8; 16];
    raw[..12].copy_from_slice(scales);
    // SAFETY: `raw` holds 16 bytes.
    let v = unsafe { _mm_loadu_si128(raw.as_ptr() as *const __m128i) };
    let nib = _mm_set1_epi8(0xF);
    let low = _mm_and_si128(_mm_unpacklo_epi64(v, _mm_srli_epi16(v, 4)), nib);
    // Bytes 8..12 in each 32-bit lane `i`, shifted right by 2 i: the top bits of scales 4i..4i+4.
    let hb = _mm_shuffle_epi8(v, _mm_setr_epi8(8, 9, 10, 11, 8, 9, 10, 11, 8, 9, 10, 11, 8, 9, 10, 11));
    let high = _mm_and_si128(_mm_srlv_epi32(hb, _mm_setr_epi32(0, 2, 4, 6)), _mm_set1_epi8(3));
    _mm_sub_epi8(_mm_or_si128(low, _mm_slli_epi16(high, 4)), _mm_set1_epi8(32))
}

/// Q2_K to f32: output `128 h + 32 s + 16 k + l` is bits `2s..2s+2` of `qs[32 h + 16 k + l]`,
/// sub-block `8 h + 2 s + k`.
///
/// # Safety
/// The CPU has the enabled features; `src` holds whole blocks and `dst` 256 values per block
/// (the [`crate::quant::Block`] contract; the cast panics on a partial block).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn dequantize_q2_k(src: &[u8], dst: &mut [f32]) {
    let blocks: &[BlockQ2K] = bytemuck::cast_slice(src);
    let three = _mm_set1_epi8(3);
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(256)) {
        let d = _mm512_set1_ps(f16_bits_to_f32(u16::from_le_bytes(b.d)));
        let dmin = _mm512_set1_ps(f16_bits_to_f32(u16::from_le_bytes(b.dmin)));
        // SAFETY: 16 scale bytes and 64 qs bytes in the block; 256 floats in `y`.
        unsafe {
            let sc = _mm_loadu_si128(b.scales.as_ptr() as *const __m128i);
            let dl = _mm512_mul_ps(d, widen::<false>(_mm_and_si128(sc, _mm_set1_epi8(0xF))));
            let ml = _mm512_mul_ps(dmin, widen::<false>(_mm_and_si128(_mm_srli_epi16(sc, 4), _mm_set1_epi8(0xF))));
            for h in 0..2 {
                for k in 0..2 {
                    let q = _mm_loadu_si128(b.qs.as_ptr().add(32 * h + 16 * k) as *const __m128i);
                    let mut qs = q;
                    for s in 0..4 {
                        let j = 8 * h + 2 * s + k;
                        let v = widen::<false>(_mm_and_si128(qs, three));
                        let out = _mm512_sub_ps(_mm512_mul_ps(lane(dl, j), v), lane(ml, j));
                        _mm512_storeu_ps(y.as_mut_ptr().add(128 * h + 32 * s + 16 * k), out);
                        qs = _mm_srli_epi16(qs, 2);
                    }
                }
            }
        }
    }
}

/// Q3_K to f32: output `128 h + 32 s + 16 k + l` has low bits `2s..2s+2` of
/// `qs[32 h + 16 k + l]`, minus 4 unless bit `4 h + s` of `hmask[16 k + l]` is set, in
/// sub-block `8 h + 2 s + k`.
///
/// # Safety
/// As [`dequantize_q2_k`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn dequantize_q3_k(src: &[u8], dst: &mut [f32]) {
    let blocks: &[BlockQ3K] = bytemuck::cast_slice(src);
    let (three, one, four) = (_mm_set1_epi8(3), _mm_set1_epi8(1), _mm_set1_epi8(4));
    for (b, y) in blocks.iter().zip(dst.chunks_exact_mut(256)) {
        let dall = _mm512_set1_ps(f16_bits_to_f32(u16::from_le_bytes(b.d)));
        // SAFETY: 64 qs bytes and 32 hmask bytes in the block; 256 floats in `y`.
        unsafe {
            let dl = _mm512_mul_ps(dall, widen::<true>(q3_k_scales_sse(&b.scales)));
            for k in 0..2 {
                let mut hm = _mm_loadu_si128(b.hmask.as_ptr().add(16 * k) as *const __m128i);
                for h in 0..2 {
                    let mut qs = _mm_loadu_si128(b.qs.as_ptr().add(32 * h + 16 * k) as *const __m128i);
                    for s in 0..4 {
                        let j = 8 * h + 2 * s + k;
                        // low + 4 * high - 4, with `hm` shifted so the wanted bit is bit 0.
                        let high = _mm_and_si128(hm, one);
                        let lvl = _mm_sub_epi8(_mm_or_si128(_mm_and_si128(qs, three), _mm_slli_epi16(high, 2)), four);
                        _mm512_storeu_ps(y.as_mut_ptr().add(128 * h + 32 * s + 16 * k), _mm512_mul_ps(lane(dl, j), widen::<true>(lvl)));
                        qs = _mm_srli_epi16(qs, 2);
                        hm = _mm_srli_epi16(hm, 1);
                    }
                }
            }
        }
    }
}
