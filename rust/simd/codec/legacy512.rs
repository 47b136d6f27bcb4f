//! AVX-512 reference quantizers of the legacy types (ggml `quantize_row_<t>_ref` for Q4_0, Q4_1,
//! Q5_0, Q5_1, Q8_0 and Q8_1), sixteen blocks at a time.
//!
//! A block of 32 values is two zmm registers. The per-block statistics of a group of 16 blocks
//! (largest and smallest value, or largest magnitude) are reduced into one register, lane `k`
//! holding block `k`, by a transposing tree of shuffles (four levels instead of sixteen
//! separate horizontal reductions); the scale `d`, the inverse scale `id = d != 0 ? 1/d : 0`
//! and their f16 bytes are then computed for the sixteen blocks in one division each and one
//! `vcvtps2ph`. The float operations per value are those of the portable code
//! (`crate::quant::legacy`): IEEE division, multiply then add (never fused), truncating
//! conversion, `roundf` for Q8; `vcvtps2ph` rounds to nearest even like
//! `crate::quant::float::f32_to_f16_bits`.
//!
//! Blocks where a sequential scan could differ from the vector reduction (the largest magnitude
//! occurring as both `+a` and `-a`, or all zeros, for Q4_0/Q5_0; a zero minimum or maximum,
//! whose sign ggml keeps from the first one, for Q4_1/Q5_1) or whose scale or inverse scale is
//! not finite go to the portable code one block at a time, as do the blocks after the last whole
//! group. Tested against the scalar build by `tests/codec_isa.rs` (edge values) and against ggml
//! by the golden tests.

use core::arch::x86_64::*;

use crate::quant::legacy::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1, QK};
use crate::quant::Block;

/// Blocks per group: one per lane of a zmm register.
const G: usize = 16;

/// The types this file quantizes (the `T` parameter of [`quantize_groups`]).
const Q4_0: u8 = 0;
const Q4_1: u8 = 1;
const Q5_0: u8 = 2;
const Q5_1: u8 = 3;
const Q8_0: u8 = 4;
const Q8_1: u8 = 5;

/// `max` (or `min` when `!MAX`) of two registers.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn op<const MAX: bool>(a: __m512, b: __m512) -> __m512 {
    if MAX {
        _mm512_max_ps(a, b)
    } else {
        _mm512_min_ps(a, b)
    }
}

/// Lane `k` of the result: the max (min) of the 16 lanes of `v[k]`. Each level halves the lanes
/// per block and doubles the blocks per register; the last level leaves block `j + 4i` in lane
/// `4j + i`, which one permutation puts in order.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn reduce16<const MAX: bool>(v: &[__m512; G]) -> __m512 {
    // Level 1: 128-bit lanes 0,1 against 2,3; blocks 2i, 2i+1 in halves of one register.
    let mut l1 = [_mm512_setzero_ps(); 8];
    for (i, r) in l1.iter_mut().enumerate() {
        let (a, b) = (v[2 * i], v[2 * i + 1]);
        *r = op::<MAX>(_mm512_shuffle_f32x4::<0b01_00_01_00>(a, b), _mm512_shuffle_f32x4::<0b11_10_11_10>(a, b));
    }
    // Level 2: 128-bit lanes 0 against 1 of each half; four blocks, one per 128-bit lane.
    let mut l2 = [_mm512_setzero_ps(); 4];
    for (i, r) in l2.iter_mut().enumerate() {
        let (a, b) = (l1[2 * i], l1[2 * i + 1]);
        *r = op::<MAX>(_mm512_shuffle_f32x4::<0b10_00_10_00>(a, b), _mm512_shuffle_f32x4::<0b11_01_11_01>(a, b));
    }
    // Level 3: within each 128-bit lane, elements 0,1 against 2,3 (two blocks per lane).
    let mut l3 = [_mm512_setzero_ps(); 2];
    for (i, r) in l3.iter_mut().enumerate() {
        let (a, b) = (l2[2 * i], l2[2 * i + 1]);
        *r = op::<MAX>(_mm512_shuffle_ps::<0b01_00_01_00>(a, b), _mm512_shuffle_ps::<0b11_10_11_10>(a, b));
    }
    // Level 4: elements 0,2 against 1,3: one value per block.
    let (a, b) = (l3[0], l3[1]);
    let r = op::<MAX>(_mm512_shuffle_ps::<0b10_00_10_00>(a, b), _mm512_shuffle_ps::<0b11_01_11_01>(a, b));
    // Block k sits in lane 4 * (k % 4) + k / 4.
    let idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    _mm512_permutexvar_ps(idx, r)
}

/// C's `(int8_t)roundf(v)` (half away from zero) for |v| <= 128 as i32 lanes: truncate
/// `v + copysign(0.5 - 2^-25, v)`, which never rounds a value below a half up (LLVM's own
/// `round` lowering).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn roundf_i32(v: __m512) -> __m512i {
    let sign = _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(i32::MIN));
    let s = _mm512_castsi512_ps(_mm512_or_si512(sign, _mm512_castps_si512(_mm512_set1_ps(0.499_999_97))));
    _mm512_cvttps_epi32(_mm512_add_ps(v, s))
}

/// 32 levels of at most 4 bits (8 for `qh`-split 5-bit ones, masked here) into 16 bytes: value
/// `j` in the low nibble of byte `j`, value `j + 16` in the high nibble.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn nibbles(la: __m512i, lb: __m512i) -> __m128i {
    let m = _mm_set1_epi8(0x0f);
    let a = _mm_and_si128(_mm512_cvtepi32_epi8(la), m);
    // Masked to 4 bits, so the 16-bit shift moves no bits across bytes.
    let b = _mm_and_si128(_mm512_cvtepi32_epi8(lb), m);
    _mm_or_si128(a, _mm_slli_epi16::<4>(b))
}

/// Bit 4 of each of the 32 levels, value `j` in bit `j` (Q5's `qh`), little-endian bytes.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn fifth_bits(la: __m512i, lb: __m512i) -> [u8; 4] {
    let b4 = _mm512_set1_epi32(0x10);
    let lo = _mm512_test_epi32_mask(la, b4) as u32;
    let hi = _mm512_test_epi32_mask(lb, b4) as u32;
    (lo | hi << 16).to_le_bytes()
}

/// Truncated levels `min(cap, (int)(v))` of a block's two halves (`v > 0` and small on the fast
/// path, where the C cast to `int8_t` and the clamp agree with this).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn levels(va: __m512, vb: __m512, cap: i32) -> (__m512i, __m512i) {
    let c = _mm512_set1_epi32(cap);
    (_mm512_min_epi32(_mm512_cvttps_epi32(va), c), _mm512_min_epi32(_mm512_cvttps_epi32(vb), c))
}

/// The reference quantizer of type `T` (block type `B`) over a row of whole blocks.
///
/// # Safety
/// The CPU has AVX-512 F/BW/VL/VNNI and AVX2/FMA/F16C.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn quantize_groups<B: Block, const T: u8>(src: &[f32], dst: &mut [u8]) {
    let ys: &mut [B] = bytemuck::cast_slice_mut(dst);
    // Whole blocks present in both (equal under the Block contract; never index past either).
    let nb = ys.len().min(src.len() / QK);
    let full = nb / G * G;
    let abs_mask = _mm512_set1_epi32(i32::MAX);
    for (ys, xs) in ys[..full].chunks_exact_mut(G).zip(src.chunks_exact(G * QK)) {
        let mut va = [_mm512_setzero_ps(); G];
        let mut vb = [_mm512_setzero_ps(); G];
        let mut mx = [_mm512_setzero_ps(); G];
        let mut mn = [_mm512_setzero_ps(); G];
        for k in 0..G {
            // SAFETY: `xs` holds G * QK floats; block k is floats [32k, 32k + 32).
            let (a, b) = unsafe { (_mm512_loadu_ps(xs.as_ptr().add(k * QK)), _mm512_loadu_ps(xs.as_ptr().add(k * QK + 16))) };
            (va[k], vb[k]) = (a, b);
            if T == Q8_0 || T == Q8_1 {
                let (aa, ab) = (_mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(a), abs_mask)),
                                _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(b), abs_mask)));
                mx[k] = _mm512_max_ps(aa, ab);
            } else {
                mx[k] = _mm512_max_ps(a, b);
                mn[k] = _mm512_min_ps(a, b);
            }
        }
        let hi = reduce16::<true>(&mx);
        let zero = _mm512_setzero_ps();
        // Per block: scale `d`, min `m`, and the lanes the vector path can take.
        let (d, m, ok) = match T {
            // |x| >= +0, so the max is ggml's `amax` (start 0, MAX with each |x|) exactly.
            Q8_0 | Q8_1 => (_mm512_div_ps(hi, _mm512_set1_ps(127.0)), zero, 0xffff),
            Q4_0 | Q5_0 => {
                let lo = reduce16::<false>(&mn);
                let nlo = _mm512_sub_ps(zero, lo);
                // hi > -lo: the value of largest magnitude is `hi` (positive, the only one with
                // that magnitude); hi < -lo: it is `lo`; equal: both +a and -a occur, or all
                // zeros (the scalar scan decides).
                let ok = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(hi, nlo);
                let max = _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(hi, nlo), lo, hi);
                let div = if T == Q4_0 { -8.0 } else { -16.0 };
                (_mm512_div_ps(max, _mm512_set1_ps(div)), zero, ok)
            }
            _ => {
                // Q4_1 / Q5_1: d = (max - min) / nmax; a zero max or min goes scalar (its sign).
                let lo = reduce16::<false>(&mn);
                let ok = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(hi, zero) & _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(lo, zero);
                let div = if T == Q4_1 { 15.0 } else { 31.0 };
                (_mm512_div_ps(_mm512_sub_ps(hi, lo), _mm512_set1_ps(div)), lo, ok)
            }
        };
        let nz = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(d, zero);
        let id = _mm512_maskz_div_ps(nz, _mm512_set1_ps(1.0), d);
        let inf = _mm512_set1_ps(f32::INFINITY);
        let finite = |v: __m512| _mm512_cmp_ps_mask::<_CMP_LT_OQ>(_mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), abs_mask)), inf);
        let ok = ok & finite(d) & finite(id);
        let mut df = [0f32; G];
        let mut idf = [0f32; G];
        let mut mf = [0f32; G];
        let mut dh = [0u16; G];
        let mut mh = [0u16; G];
        // SAFETY: each array holds 16 lanes of the stored type.
        unsafe {
            _mm512_storeu_ps(df.as_mut_ptr(), d);
            _mm512_storeu_ps(idf.as_mut_ptr(), id);
            _mm512_storeu_ps(mf.as_mut_ptr(), m);
            _mm256_storeu_si256(dh.as_mut_ptr() as *mut __m256i, _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(d));
            _mm256_storeu_si256(mh.as_mut_ptr() as *mut __m256i, _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(m));
        }
        for (k, y) in ys.iter_mut().enumerate() {
            if ok & (1 << k) != 0 {
                emit::<T>(bytemuck::bytes_of_mut(y), Lanes { a: va[k], b: vb[k], d: df[k], id: idf[k], m: mf[k], dh: dh[k].to_le_bytes(), mh: mh[k].to_le_bytes() });
            } else {
                B::quantize_row_ref(&xs[k * QK..(k + 1) * QK], core::slice::from_mut(y));
            }
        }
    }
    // SAFETY: same features; the remaining blocks of both slices.
    unsafe { super::avx512::quantize_ref::<B>(&src[full * QK..nb * QK], bytemuck::cast_slice_mut(&mut ys[full..nb])) };
}

/// One block's values and scales on the vector path.
#[derive(Clone, Copy)]
struct Lanes {
    /// Values 0..16.
    a: __m512,
    /// Values 16..32.
    b: __m512,
    /// Scale.
    d: f32,
    /// Inverse scale (finite).
    id: f32,
    /// Min (Q4_1/Q5_1).
    m: f32,
    /// f16 bytes of `d`.
    dh: [u8; 2],
    /// f16 bytes of `m`.
    mh: [u8; 2],
}



/// Write one block of type `T` (its bytes `y`, ggml's layout) on the vector path.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn emit<const T: u8>(y: &mut [u8], l: Lanes) {
    let vid = _mm512_set1_ps(l.id);
    let (a, b) = (_mm512_mul_ps(l.a, vid), _mm512_mul_ps(l.b, vid));
    // `x * id + off` for Q4_0/Q5_0, `(x - m) * id + 0.5` for Q4_1/Q5_1.
    let affine = |off: f32| {
        let off = _mm512_set1_ps(off);
        (_mm512_add_ps(a, off), _mm512_add_ps(b, off))
    };
    let shifted = || {
        let (vm, half) = (_mm512_set1_ps(l.m), _mm512_set1_ps(0.5));
        (
            _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(l.a, vm), vid), half),
            _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(l.b, vm), vid), half),
        )
    };
    // Byte offsets of the fields (ggml-common.h): d, then m / s / qh, then qs.
    let put = |y: &mut [u8], at: usize, bytes: &[u8]| {
        if let Some(dst) = y.get_mut(at..at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    };
    put(y, 0, &l.dh);
    match T {
        Q4_0 => {
            let (va, vb) = affine(8.5);
            let (la, lb) = levels(va, vb, 15);
            put(y, 2, &to_bytes(nibbles(la, lb)));
        }
        Q5_0 => {
            let (va, vb) = affine(16.5);
            let (la, lb) = levels(va, vb, 31);
            put(y, 2, &fifth_bits(la, lb));
            put(y, 6, &to_bytes(nibbles(la, lb)));
        }
        Q4_1 => {
            let (va, vb) = shifted();
            let (la, lb) = levels(va, vb, 15);
            put(y, 2, &l.mh);
            put(y, 4, &to_bytes(nibbles(la, lb)));
        }
        Q5_1 => {
            let (va, vb) = shifted();
            // Below 32 on the fast path: the C cast to uint8_t keeps the value (cap 255 = none).
            let (la, lb) = levels(va, vb, 255);
            put(y, 2, &l.mh);
            put(y, 4, &fifth_bits(la, lb));
            put(y, 8, &to_bytes(nibbles(la, lb)));
        }
        _ => {
            // Q8_0 / Q8_1: q = roundf(x * id); Q8_1 adds s = f16(Σq * d) before the quants.
            let (qa, qb) = (roundf_i32(a), roundf_i32(b));
            let at = if T == Q8_1 {
                let sum = _mm512_reduce_add_epi32(_mm512_add_epi32(qa, qb));
                put(y, 2, &crate::quant::f32_to_f16(sum as f32 * l.d));
                4
            } else {
                2
            };
            put(y, at, &to_bytes(_mm512_cvtepi32_epi8(qa)));
            put(y, at + 16, &to_bytes(_mm512_cvtepi32_epi8(qb)));
        }
    }
}

/// The 16 bytes of `v`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn to_bytes(v: __m128i) -> [u8; 16] {
    let mut out = [0u8; 16];
    // SAFETY: `out` is 16 bytes.
    unsafe { _mm_storeu_si128(out.as_mut_ptr() as *mut __m128i, v) };
    out
}

macro_rules! kernel {
    ($name:ident, $block:ty, $t:expr, $doc:literal) => {
        #[doc = $doc]
        ///
        /// # Safety
        /// The CPU has AVX-512 F/BW/VL/VNNI and AVX2/FMA/F16C.
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        pub(super) unsafe fn $name(src: &[f32], dst: &mut [u8]) {
            // SAFETY: same features.
            unsafe { quantize_groups::<$block, { $t }>(src, dst) }
        }
    };
}
kernel!(quantize_q4_0_ref, BlockQ4_0, Q4_0, "Q4_0 reference quantizer: `d = max / -8`, `q = min(15, (int8_t)(x * id + 8.5))`.");
kernel!(quantize_q5_0_ref, BlockQ5_0, Q5_0, "Q5_0 reference quantizer: `d = max / -16`, `q = min(31, (int8_t)(x * id + 16.5))`.");
kernel!(quantize_q4_1_ref, BlockQ4_1, Q4_1, "Q4_1 reference quantizer: `d = (max - min) / 15`, `q = min(15, (int8_t)((x - min) * id + 0.5))`.");
kernel!(quantize_q5_1_ref, BlockQ5_1, Q5_1, "Q5_1 reference quantizer: `d = (max - min) / 31`, `q = (uint8_t)((x - min) * id + 0.5)`.");
kernel!(quantize_q8_0_ref, BlockQ8_0, Q8_0, "Q8_0 reference quantizer: `d = amax / 127`, `q = roundf(x * id)`.");
kernel!(quantize_q8_1_ref, BlockQ8_1, Q8_1, "Q8_1 reference quantizer: Q8_0 plus `s = f16(Σ q * d)`.");

/// The `quantize` entry of a legacy type: the kernel above without an importance matrix, the
/// portable AVX-512 clone with one (Q8_0 and Q8_1 ignore it, as ggml does).
macro_rules! entry {
    ($name:ident, $kernel:ident, $block:ty, $uses_imatrix:expr) => {
        /// # Safety
        /// The CPU has AVX-512 F/BW/VL/VNNI and AVX2/FMA/F16C.
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        pub(super) unsafe fn $name(src: &[f32], dst: &mut [u8], imatrix: Option<&[f32]>) {
            match imatrix {
                // SAFETY: same features.
                Some(_) if $uses_imatrix => unsafe { super::avx512::quantize::<$block>(src, dst, imatrix) },
                // SAFETY: same features.
                _ => unsafe { $kernel(src, dst) },
            }
        }
    };
}
entry!(quantize_q4_0, quantize_q4_0_ref, BlockQ4_0, true);
entry!(quantize_q4_1, quantize_q4_1_ref, BlockQ4_1, true);
entry!(quantize_q5_0, quantize_q5_0_ref, BlockQ5_0, true);
entry!(quantize_q5_1, quantize_q5_1_ref, BlockQ5_1, true);
entry!(quantize_q8_0, quantize_q8_0_ref, BlockQ8_0, false);
entry!(quantize_q8_1, quantize_q8_1_ref, BlockQ8_1, false);
