//! AVX-512 (F/BW/VL/VNNI) kernels for types of [`super::avx2_iq`] where they measured faster
//! than AVX2 here (NVFP4: one 64-value block per zmm; Q1_0: sign bits as a mask register;
//! BF16: 32 values per load, widened by mask and shift; IQ1_S / IQ1_M / IQ2_S: grid indices
//! built in vector registers and looked up by `vpgatherdq`, see [`dot_iq1_s`]; TQ1_0: the trit
//! digits of 64 values per zmm by 16-bit multiplies, see [`dot_tq1_0`]; MXFP4: the
//! four-blocks-per-step ymm kernel of [`super::avx512`]; F16: 16 halves per `vcvtph2ps` into
//! four zmm accumulators; TQ2_0: 256-bit `vpdpbusd` of the unsigned codes, the activation sum
//! taken from the Q8_K per-16 sums; IQ2_XXS / IQ3_XXS / IQ3_S: grid rows gathered, signs as
//! mask registers, see [`iq2_xxs_gen`]; IQ4_XS: 256-bit `vpdpwssd` with the sub-block scales).
//! Installed over the AVX2 table only after run-time detection; types without an entry keep
//! their AVX2 kernel. zmm versions of TQ2_0, MXFP4 and Q2_0 measured no faster than AVX2 (or
//! slower) on this Xeon and were dropped (TQ2_0 and MXFP4 came back as ymm VNNI kernels).

use core::arch::x86_64::*;

use super::avx2::{f16_at, f16_at_nodep, f32_at, hsum_ps, nibbles_bcast};
use super::avx2_iq::{E8M0_HALF, UE4M3_HALF};
use super::avx512::{blocks4_gen, blocks4_kernels, Block32};
use crate::quant::fp4::KVALUES_FP4;
use crate::quant::grids::{IQ1S_GRID, IQ2S_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, KSIGNS_IQ2XS};
use crate::simd::{Overrides, VecDotRowsFn, DOT_ROWS, KVALUES_IQ4NL};
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
            (T::BF16, if std::arch::is_x86_feature_detected!("avx512bf16") { dot_bf16_dp as _ } else { dot_bf16 as _ }),
            (T::F16, dot_f16 as _),
            (T::TQ2_0, dot_tq2_0 as _),
            (T::IQ1_S, dot_iq1_s as _),
            (T::IQ1_M, dot_iq1_m as _),
            (T::IQ2_S, dot_iq2_s as _),
            (T::TQ1_0, dot_tq1_0 as _),
            (T::MXFP4, dot_mxfp4 as _),
            (T::IQ3_S, dot_iq3_s as _),
        ]
        .into_iter()
        .chain(extra_feature_kernels().into_iter().map(|(t, one, _)| (t, one)))
        .collect(),
        act: vec![],
    }
}

/// The multi-row instances of this level's generic IQ kernels (IQ2_XXS, IQ3_XXS, IQ3_S,
/// IQ4_XS), each the same code as its single-row entry in [`overrides`].
///
/// # Safety
/// As for [`overrides`].
pub(crate) unsafe fn rows_overrides() -> Vec<(T, VecDotRowsFn)> {
    let mut v: Vec<(T, VecDotRowsFn)> = vec![(T::IQ3_S, rows_iq3_s as _)];
    v.extend(extra_feature_kernels().into_iter().map(|(t, _, rows)| (t, rows)));
    v
}

/// The kernels of this level that need more than AVX-512 F/BW/VL/VNNI, where this machine has
/// it: IQ2_XXS and IQ3_XXS (AVX512_VBMI), IQ4_XS (BMI2). Without, those types keep AVX2's.
fn extra_feature_kernels() -> Vec<(T, crate::simd::VecDotFn, VecDotRowsFn)> {
    let mut v: Vec<(T, crate::simd::VecDotFn, VecDotRowsFn)> = Vec::new();
    if std::arch::is_x86_feature_detected!("avx512vbmi") {
        v.push((T::IQ2_XXS, dot_iq2_xxs as _, rows_iq2_xxs as _));
        v.push((T::IQ3_XXS, dot_iq3_xxs as _, rows_iq3_xxs as _));
    }
    if std::arch::is_x86_feature_detected!("bmi2") {
        v.push((T::IQ4_XS, dot_iq4_xs as _, rows_iq4_xs as _));
    }
    v
}

const Q80: usize = 34;
/// Bytes of a Q8_K block (f32 d, 256 i8, 16 i16 sums).
const Q8K: usize = 292;

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

/// BF16 x BF16 with AVX512_BF16's `vdpbf16ps` (32 products per instruction, as ggml does when
/// built for such a CPU), 128 values per step in four accumulators; the scalar tail in f32. The
/// instruction treats subnormal inputs as zero: a bf16 subnormal is below 1.2e-38, so a product
/// that loses it is below that times the other factor.
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI/BF16 are available; both rows hold `n` values (2 bytes each).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512bf16")]
unsafe fn dot_bf16_dp(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let mut acc = [_mm512_setzero_ps(); 4];
    let n128 = n / 128 * 128;
    let mut k = 0;
    while k < n128 {
        for (j, accj) in acc.iter_mut().enumerate() {
            // SAFETY: values k + 32j .. k + 32j + 32 < n of both rows.
            let (x, y) = unsafe {
                (
                    _mm512_loadu_si512(wp.add(2 * (k + 32 * j)) as *const __m512i),
                    _mm512_loadu_si512(ap.add(2 * (k + 32 * j)) as *const __m512i),
                )
            };
            // SAFETY: `__m512i` and `__m512bh` are both 64 bytes of plain bits.
            let (x, y) = unsafe { (core::mem::transmute::<__m512i, __m512bh>(x), core::mem::transmute::<__m512i, __m512bh>(y)) };
            *accj = _mm512_dpbf16_ps(*accj, x, y);
        }
        k += 128;
    }
    _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])))
        + bf16_tail(&w[2 * n128..2 * n], &a[2 * n128..2 * n])
}

/// Sum of the products of the bf16 pairs in `w` and `a` (2 bytes each), in order, in f32: the
/// scalar tail of the BF16 kernels.
#[inline]
fn bf16_tail(w: &[u8], a: &[u8]) -> f32 {
    let mut tail = 0f32;
    for (x, y) in w.chunks_exact(2).zip(a.chunks_exact(2)) {
        let (x, y) = (u16::from_le_bytes([x[0], x[1]]) as u32, u16::from_le_bytes([y[0], y[1]]) as u32);
        tail += f32::from_bits(x << 16) * f32::from_bits(y << 16);
    }
    tail
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
        _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])))
            + bf16_tail(&w[2 * n64..2 * n], &a[2 * n64..2 * n])
    }
}

kernel! {
    /// F16 x F16, 64 values per step: 16 halves per `vcvtph2ps` into a zmm, four zmm
    /// accumulators. The scalar tail in f32.
    ///
    /// A `vcvtph2ps zmm` is two uops (ports 0 and 5) and the FMA one more on port 0, so the
    /// loop is bound by port 0 at about 3 cycles per 16 values (46-48 cycles per 256 measured at
    /// 3.9 GHz), as ggml's loop is: the two are at parity. Measured here (ns per 256 values,
    /// quiet runs): eight accumulators with `_mm512_cvtph_ps` (LLVM emits a separate load plus
    /// the `{sae}` register form) 12.9, this loop 11.8-12.1, ggml 11.8-11.9 in the same runs. In
    /// a C microbenchmark of the same loop, all-ymm conversions (12.0-12.9), zmm/ymm mixes
    /// (12.0-12.7) and a separate multiply and add (11.5-12.2) were no faster.
    fn dot_f16(n: usize, w: &[u8], a: &[u8]) -> f32 {
        let (wp, ap) = (w.as_ptr(), a.as_ptr());
        let mut acc = [_mm512_setzero_ps(); 4];
        let n64 = n / 64 * 64;
        let mut k = 0;
        while k < n64 {
            for (j, accj) in acc.iter_mut().enumerate() {
                // SAFETY: values k + 16j .. k + 16j + 16 < n of both rows (2 bytes each).
                let (x, y) = unsafe { (cvtph_mem(wp.add(2 * (k + 16 * j))), cvtph_mem(ap.add(2 * (k + 16 * j)))) };
                *accj = _mm512_fmadd_ps(x, y, *accj);
            }
            k += 64;
        }
        let mut tail = 0f32;
        for k in n64..n {
            // SAFETY: value k < n of both rows.
            tail += unsafe { f16_at(wp.add(2 * k)) * f16_at(ap.add(2 * k)) };
        }
        _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[2]), _mm512_add_ps(acc[1], acc[3]))) + tail
    }
}

kernel! {
    /// TQ2_0 x Q8_K (66-byte blocks: 64 bytes of 2-bit codes `t + 1`, f16 d): `sum(c y)` by
    /// 256-bit `vpdpbusd` (codes unsigned, activations signed; no 16-bit intermediate, no
    /// port-5 shuffles), minus `sum(y)` from the Q8_K per-16 sums. The block's integer sum is
    /// exact, and `d * sum` accumulates in block order as in the scalar reference.
    fn dot_tq2_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
        let nb = n / 256;
        let (wp, ap) = (w.as_ptr(), a.as_ptr());
        let m3 = _mm256_set1_epi8(3);
        let m12 = _mm256_set1_epi8(12);
        let ones = _mm256_set1_epi16(1);
        // The per-lane integer sums of super-block i, minus its activation sum. Codes 1 and 3 of
        // each byte are taken in place (`q & 12`, four times the code) rather than shifted down,
        // so one shift serves four codes; their sums `s1` are exact multiples of 4, divided back
        // by an exact arithmetic shift.
        // SAFETY (caller): i < nb, so super-block i (66 bytes of TQ2_0, 292 of Q8_K) is inside
        // both rows.
        let block = |i: usize| unsafe {
            let (x, y) = (wp.add(66 * i), ap.add(Q8K * i));
            let mut s0 = _mm256_setzero_si256();
            let mut s1 = _mm256_setzero_si256();
            for j in 0..2 {
                let q = load256(x.add(32 * j));
                let q4 = _mm256_srli_epi16(q, 4);
                let yq = y.add(4 + 128 * j);
                s0 = _mm256_dpbusd_epi32(s0, _mm256_and_si256(q, m3), load256(yq));
                s1 = _mm256_dpbusd_epi32(s1, _mm256_and_si256(q, m12), load256(yq.add(32)));
                s0 = _mm256_dpbusd_epi32(s0, _mm256_and_si256(q4, m3), load256(yq.add(64)));
                s1 = _mm256_dpbusd_epi32(s1, _mm256_and_si256(q4, m12), load256(yq.add(96)));
            }
            let ys = _mm256_madd_epi16(load256(y.add(260)), ones);
            let s = _mm256_add_epi32(s0, _mm256_srai_epi32(s1, 2));
            (_mm256_sub_epi32(s, ys), f32_at(y) * f16_at_nodep(x.add(64)))
        };
        let mut acc = 0f32;
        let mut i = 0;
        // Two super-blocks per horizontal reduction; `d * sum` still added in block order.
        while i + 2 <= nb {
            let ((sa, da), (sb, db)) = (block(i), block(i + 1));
            let (ta, tb) = hsum2_i32(sa, sb);
            acc += da * ta as f32;
            acc += db * tb as f32;
            i += 2;
        }
        if i < nb {
            let (s, d) = block(i);
            acc += d * hsum2_i32(s, s).0 as f32;
        }
        acc
    }
}

// ---------------------------------------------------------------------------------------------
// IQ1 types against Q8_K.
//
// The grid cost of the AVX2 kernels is index assembly in scalar registers (about five ALU
// uops per 8-value lookup). Here the 32 eleven-bit indices of a super-block are built in ymm
// registers (eight per `vpmovzxbd` of index bytes, variable shift of the high bits, one
// `vpternlogd`) and the grid rows fetched by `vpgatherdq`, eight per zmm. The rows come from
// [`IQ1S_GRID_U`], the grid plus one (bytes 0, 1, 2), so `vpmaddubsw` takes them as its
// unsigned operand with no sign juggling; the `+1` is taken back with the Q8_K per-16 sums
// (`bsums`), exact integers like every other part of the block sum, so the block's integer
// sums and then its float operations are the scalar reference's: the result is bit for bit
// the reference's. This relies on `bsums` being the sums of the block's values, as every
// Q8_K producer writes them (the reference's shift term and ggml's own kernels use them too).

/// [`IQ1S_GRID`] with 1 added to every byte: values -1, 0, 1 become 0, 1, 2.
static IQ1S_GRID_U: [u64; 2048] = grid_plus_one();

const fn grid_plus_one() -> [u64; 2048] {
    let mut t = [0u64; 2048];
    let mut i = 0;
    while i < 2048 {
        let mut v = 0u64;
        let mut j = 0;
        while j < 8 {
            v |= (((IQ1S_GRID[i] >> (8 * j)) as u8).wrapping_add(1) as u64) << (8 * j);
            j += 1;
        }
        t[i] = v;
        i += 1;
    }
    t
}

/// `acc + madd(a, b)` as one `vpdpwssd` (LLVM splits `_mm512_dpwssd_epi32` into `vpmaddwd` +
/// `vpaddd` for generic targets: one more uop per use).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn dpwssd(acc: __m512i, a: __m512i, b: __m512i) -> __m512i {
    let mut r = acc;
    // SAFETY: register-only AVX512-VNNI arithmetic (enabled for this function); no memory or
    // flags are touched.
    unsafe {
        core::arch::asm!(
            "vpdpwssd {r}, {a}, {b}",
            r = inout(zmm_reg) r, a = in(zmm_reg) a, b = in(zmm_reg) b,
            options(pure, nomem, nostack, preserves_flags),
        )
    };
    r
}

/// [`dpwssd`] in the i32 lanes selected by `k` (others keep `acc`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn dpwssd_mask(acc: __m512i, k: __mmask16, a: __m512i, b: __m512i) -> __m512i {
    let mut r = acc;
    // SAFETY: as in `dpwssd`; the mask register is only read.
    unsafe {
        core::arch::asm!(
            "vpdpwssd {r}{{{k}}}, {a}, {b}",
            r = inout(zmm_reg) r, k = in(kreg) k, a = in(zmm_reg) a, b = in(zmm_reg) b,
            options(pure, nomem, nostack, preserves_flags),
        )
    };
    r
}

/// The u32 at `p` in all 16 lanes, as one broadcast load (LLVM otherwise loads it into a
/// general register and broadcasts from there, a shuffle-port uop).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn bcast32(p: *const u8) -> __m512i {
    let r: __m512i;
    // SAFETY: the caller guarantees 4 readable bytes at `p`; the asm reads only those.
    unsafe {
        core::arch::asm!(
            "vpbroadcastd {r}, dword ptr [{p}]",
            r = out(zmm_reg) r, p = in(reg) p,
            options(pure, readonly, nostack, preserves_flags),
        )
    };
    r
}

/// The 16 f16 at `p` as f32, by `vcvtph2ps zmm, m256` with the load folded in (the intrinsic
/// gives a separate load and the `{sae}` register form).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn cvtph_mem(p: *const u8) -> __m512 {
    let v: __m512;
    // SAFETY: the caller guarantees 32 readable bytes at `p`; the asm reads only those and
    // writes its output register (AVX-512F, enabled for this function).
    unsafe {
        core::arch::asm!(
            "vcvtph2ps {v}, ymmword ptr [{p}]",
            p = in(reg) p, v = out(zmm_reg) v,
            options(pure, readonly, nostack, preserves_flags),
        )
    };
    v
}

/// Horizontal sums of the 8 i32 of `a` and of `b` (exact; block sums stay far below 2^31).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn hsum2_i32(a: __m256i, b: __m256i) -> (i32, i32) {
    let h = _mm256_hadd_epi32(a, b);
    let h = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    let h = _mm_hadd_epi32(h, h);
    (_mm_cvtsi128_si32(h), _mm_extract_epi32(h, 1))
}

/// Sum of the two 256-bit halves of 16 i32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn fold256(v: __m512i) -> __m256i {
    _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1))
}

/// Eight rows of an 8-byte grid table (indices in the i32 lanes of `idx`).
///
/// # Safety
/// Every lane of `idx` must be below `t.len()` (callers mask their indices to the table's
/// bit width).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn gather_grid(t: &[u64], idx: __m256i) -> __m512i {
    // SAFETY: every index is below `t.len()` (caller), so each 8-byte read is inside `t`.
    unsafe { _mm512_i32gather_epi64::<8>(idx, t.as_ptr() as *const i64) }
}

/// Word-permute indices giving word `k` of 64-value step `j` (values `64j + 2k`, `64j + 2k + 1`)
/// the scale of its group: `per` words per scale, so scale `32 / per * j + k / per`
/// (`SPREAD16`: 16 words per 32-value sub-block, IQ1_S; `SPREAD8`: 8 words per 16 values,
/// IQ1_M and IQ2_S).
static SPREAD16: [[u16; 32]; 4] = scale_spread(16);
static SPREAD8: [[u16; 32]; 4] = scale_spread(8);

const fn scale_spread(per: usize) -> [[u16; 32]; 4] {
    let mut t = [[0u16; 32]; 4];
    let mut j = 0;
    while j < 4 {
        let mut k = 0;
        while k < 32 {
            t[j][k] = (32 / per * j + k / per) as u16;
            k += 1;
        }
        j += 1;
    }
    t
}

/// 64 bytes of a static table as a vector.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn table512(t: &[u16; 32]) -> __m512i {
    // SAFETY: `t` is 64 readable bytes.
    unsafe { _mm512_loadu_si512(t.as_ptr() as *const __m512i) }
}

kernel! {
    /// IQ1_S x Q8_K (50-byte blocks: f16 d, 32 low index bytes, 8 u16 holding 4 x 3 index
    /// bits, a 3-bit scale and the shift sign), per 64 values: one gather of eight grid rows,
    /// `vpmaddubsw` with the activations, `vpdpwssd` with the two sub-blocks' scales
    /// `2s + 1`. Block sum = that - sum(scale x bsums); shift term from the bsums as in the
    /// reference.
    fn dot_iq1_s(n: usize, w: &[u8], a: &[u8]) -> f32 {
        let nb = n / 256;
        let (wp, ap) = (w.as_ptr(), a.as_ptr());
        // Index l of a sub-block takes bits 3l..3l + 3 of its u16 (pre-shifted left by 8).
        let shifts = _mm256_setr_epi32(0, 3, 6, 9, 0, 3, 6, 9);
        let m700 = _mm256_set1_epi32(0x700);
        let perm = [0, 1, 2, 3].map(|j| _mm256_setr_epi32(2 * j, 2 * j, 2 * j, 2 * j, 2 * j + 1, 2 * j + 1, 2 * j + 1, 2 * j + 1));
        let spread = [0, 1, 2, 3].map(|j| table512(&SPREAD16[j]));
        let mut acc = 0f32;
        for i in 0..nb {
            // SAFETY: super-block i (50 bytes of IQ1_S, 292 of Q8_K) is inside both rows; the
            // reads below stay inside those blocks.
            unsafe {
                let (x, y) = (wp.add(50 * i), ap.add(Q8K * i));
                let (qs, qh) = (x.add(2), x.add(34));
                let hv = _mm_loadu_si128(qh as *const __m128i);
                let hi8 = _mm256_slli_epi32(_mm256_cvtepu16_epi32(hv), 8);
                let ls = _mm_add_epi16(_mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(hv, 12), _mm_set1_epi16(7)), 1), _mm_set1_epi16(1));
                let neg = _mm_srai_epi16(hv, 15);
                let lsg = _mm_sub_epi16(_mm_xor_si128(ls, neg), neg);
                // Per-16 copies of the scales (plain and signed), against the bsums.
                let ls2 = _mm256_set_m128i(_mm_unpackhi_epi16(ls, ls), _mm_unpacklo_epi16(ls, ls));
                let lsg2 = _mm256_set_m128i(_mm_unpackhi_epi16(lsg, lsg), _mm_unpacklo_epi16(lsg, lsg));
                let bs = load256(y.add(260));
                let lsz = _mm512_castsi128_si512(ls);
                let mut sum = _mm512_setzero_si512();
                for j in 0..4 {
                    let lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64(qs.add(8 * j) as *const __m128i));
                    let hi = _mm256_srlv_epi32(_mm256_permutevar8x32_epi32(hi8, perm[j]), shifts);
                    // (hi & 0x700) | lo: an 11-bit index.
                    let idx = _mm256_ternarylogic_epi32(hi, m700, lo, 0xea);
                    let p = _mm512_maddubs_epi16(gather_grid(&IQ1S_GRID_U, idx), _mm512_loadu_si512(y.add(4 + 64 * j) as *const __m512i));
                    sum = dpwssd(sum, p, _mm512_permutexvar_epi16(spread[j], lsz));
                }
                let s = _mm256_sub_epi32(fold256(sum), _mm256_madd_epi16(ls2, bs));
                let (sumi, sumi1) = hsum2_i32(s, _mm256_madd_epi16(lsg2, bs));
                let d = f32::from_bits(u32::from_le(core::ptr::read_unaligned(y as *const u32))) * f16_at(x);
                acc += d * (sumi as f32 + 0.125 * sumi1 as f32);
            }
        }
        acc
    }
}

kernel! {
    /// IQ1_M x Q8_K (56-byte blocks: 32 low index bytes, 16 bytes of 2 x (3 index bits + shift
    /// sign), 8 bytes of 3-bit scales per 16 values with the f16 super-block scale in the top
    /// nibbles). Grid part as in [`dot_iq1_s`] with the eight per-16 scales of a 64-value step;
    /// the shift term `sum(scale x sign x group sum)` is `S - 2 N`: `S` the scales against the
    /// bsums, `N` the same over the groups of 8 whose sign bit is set, accumulated by a
    /// `vpdpwssd` masked to those groups' lanes.
    fn dot_iq1_m(n: usize, w: &[u8], a: &[u8]) -> f32 {
        let nb = n / 256;
        let (wp, ap) = (w.as_ptr(), a.as_ptr());
        // Group m (8 values) of a 64-value step: index bits and shift sign in nibble m of the
        // step's u32 of qh.
        let shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
        let m700 = _mm256_set1_epi32(0x700);
        // i32 lanes 2m, 2m + 1 of a `vpmaddwd` hold group m: they test sign bit 4m + 3.
        let sign_bits = _mm512_setr_epi32(
            8, 8, 0x80, 0x80, 0x800, 0x800, 0x8000, 0x8000, 0x8_0000, 0x8_0000, 0x80_0000, 0x80_0000, 0x800_0000,
            0x800_0000, 0x8000_0000u32 as i32, 0x8000_0000u32 as i32,
        );
        // Scale g (of 16) is bits 3(g % 4).. of scale word g / 4.
        let sc_word = _mm256_setr_epi16(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
        let sc_shift = _mm256_setr_epi16(0, 3, 6, 9, 0, 3, 6, 9, 0, 3, 6, 9, 0, 3, 6, 9);
        let spread = [0, 1, 2, 3].map(|j| table512(&SPREAD8[j]));
        let ones = _mm512_set1_epi8(1);
        let mut acc = 0f32;
        for i in 0..nb {
            // SAFETY: super-block i (56 bytes of IQ1_M, 292 of Q8_K) is inside both rows; the
            // reads below stay inside those blocks.
            unsafe {
                let (x, y) = (wp.add(56 * i), ap.add(Q8K * i));
                let (qs, qh, scp) = (x, x.add(32), x.add(48));
                let r16 = |k: usize| u16::from_le(core::ptr::read_unaligned(scp.add(2 * k) as *const u16)) as u32;
                let dbits = (r16(0) >> 12) | ((r16(1) >> 8) & 0x00f0) | ((r16(2) >> 4) & 0x0f00) | (r16(3) & 0xf000);
                let dx = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(dbits as i32)));
                let sw = _mm256_permutexvar_epi16(sc_word, _mm256_castsi128_si256(_mm_loadl_epi64(scp as *const __m128i)));
                let sw = _mm256_and_si256(_mm256_srlv_epi16(sw, sc_shift), _mm256_set1_epi16(7));
                let sw = _mm256_add_epi16(_mm256_add_epi16(sw, sw), _mm256_set1_epi16(1));
                let swz = _mm512_castsi256_si512(sw);
                let mut grid = _mm512_setzero_si512();
                let mut negs = _mm512_setzero_si512();
                for (j, &spread_j) in spread.iter().enumerate() {
                    let h = bcast32(qh.add(4 * j));
                    let hs = _mm256_srlv_epi32(_mm512_castsi512_si256(h), shifts);
                    let lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64(qs.add(8 * j) as *const __m128i));
                    let idx = _mm256_ternarylogic_epi32(_mm256_slli_epi32(hs, 8), m700, lo, 0xea);
                    let yv = _mm512_loadu_si512(y.add(4 + 64 * j) as *const __m512i);
                    let sc = _mm512_permutexvar_epi16(spread_j, swz);
                    grid = dpwssd(grid, _mm512_maddubs_epi16(gather_grid(&IQ1S_GRID_U, idx), yv), sc);
                    let k = _mm512_test_epi32_mask(h, sign_bits);
                    negs = dpwssd_mask(negs, k, _mm512_maddubs_epi16(ones, yv), sc);
                }
                let s = _mm256_madd_epi16(sw, load256(y.add(260)));
                let sumi1 = _mm256_sub_epi32(fold256(grid), s);
                let n2 = fold256(negs);
                let sumi2 = _mm256_sub_epi32(s, _mm256_add_epi32(n2, n2));
                let (sumi1, sumi2) = hsum2_i32(sumi1, sumi2);
                let d = dx * f32::from_bits(u32::from_le(core::ptr::read_unaligned(y as *const u32)));
                acc += d * (sumi1 as f32 + 0.125 * sumi2 as f32);
            }
        }
        acc
    }
}

// ---------------------------------------------------------------------------------------------
// IQ2_S and TQ1_0 against Q8_K.

kernel! {
    /// IQ2_S x Q8_K (82-byte blocks: f16 d, 32 low index bytes, 32 sign bytes, 8 bytes of 2-bit
    /// index tops, 8 bytes of two 4-bit scales). Per 64 values: ten-bit indices built as in
    /// [`dot_iq1_s`], one gather of grid magnitudes, the 64 sign bits as a mask negating the
    /// activations, `vpmaddubsw`, `vpdpwssd` with the four per-16 scales `2s + 1`. Integer
    /// block sums as the reference, so bit for bit its result.
    fn dot_iq2_s(n: usize, w: &[u8], a: &[u8]) -> f32 {
        let nb = n / 256;
        let (wp, ap) = (w.as_ptr(), a.as_ptr());
        // Index l of a sub-block takes bits 2l..2l + 2 of its qh byte; lanes 4..8 are the next
        // sub-block, whose byte is the high half of the u16 read.
        let shifts = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
        let m300 = _mm256_set1_epi32(0x300);
        let m4 = _mm_set1_epi8(0x0f);
        let spread = [0, 1, 2, 3].map(|j| table512(&SPREAD8[j]));
        let mut acc = 0f32;
        for i in 0..nb {
            // SAFETY: super-block i (82 bytes of IQ2_S, 292 of Q8_K) is inside both rows; the
            // reads below stay inside those blocks.
            unsafe {
                let (x, y) = (wp.add(82 * i), ap.add(Q8K * i));
                let (qs, signs, qh) = (x.add(2), x.add(34), x.add(66));
                // Scales 2s + 1 per 16 values, in value order (low nibble first), as words.
                let sc8 = _mm_loadl_epi64(x.add(74) as *const __m128i);
                let sc = _mm_unpacklo_epi8(_mm_and_si128(sc8, m4), _mm_and_si128(_mm_srli_epi16(sc8, 4), m4));
                let sc = _mm_add_epi8(_mm_add_epi8(sc, sc), _mm_set1_epi8(1));
                let sw = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(sc));
                let mut sum = _mm512_setzero_si512();
                for (j, &spread_j) in spread.iter().enumerate() {
                    let h = _mm256_set1_epi32(u16::from_le(core::ptr::read_unaligned(qh.add(2 * j) as *const u16)) as i32);
                    let hs = _mm256_slli_epi32(_mm256_srlv_epi32(h, shifts), 8);
                    let lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64(qs.add(8 * j) as *const __m128i));
                    // (hs & 0x300) | lo: a ten-bit index.
                    let idx = _mm256_ternarylogic_epi32(hs, m300, lo, 0xea);
                    let yv = _mm512_loadu_si512(y.add(4 + 64 * j) as *const __m512i);
                    let neg = u64::from_le(core::ptr::read_unaligned(signs.add(8 * j) as *const u64));
                    let ys = _mm512_mask_sub_epi8(yv, neg, _mm512_setzero_si512(), yv);
                    let sc = _mm512_permutexvar_epi16(spread_j, sw);
                    sum = dpwssd(sum, _mm512_maddubs_epi16(gather_grid(&IQ2S_GRID, idx), ys), sc);
                }
                let s = fold256(sum);
                let (sumi, _) = hsum2_i32(s, s);
                acc += f16_at(x) * f32::from_bits(u32::from_le(core::ptr::read_unaligned(y as *const u32))) * sumi as f32;
            }
        }
        0.125 * acc
    }
}

/// `acc + dpbusd(a, b)` as one `vpdpbusd` (see [`dpwssd`]).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn dpbusd(acc: __m512i, a: __m512i, b: __m512i) -> __m512i {
    let mut r = acc;
    // SAFETY: register-only AVX512-VNNI arithmetic; no memory or flags are touched.
    unsafe {
        core::arch::asm!(
            "vpdpbusd {r}, {a}, {b}",
            r = inout(zmm_reg) r, a = in(zmm_reg) a, b = in(zmm_reg) b,
            options(pure, nomem, nostack, preserves_flags),
        )
    };
    r
}

/// Base-3 digit of every byte of `z` after multiplying it by a per-byte power of 3: with
/// `v = (q * c) mod 256`, the digit is `(3 v) >> 8` (0, 1 or 2), the same digit as
/// [`super::avx2_iq`]'s `top_trit`. In 16-bit lanes `v << 8` is one `vpmullw` (by `c << 8` for
/// the even byte, by `c` after masking for the odd one) and `(3 v) >> 8` one `vpmulhuw` (by 3;
/// by 768 for the odd byte, which leaves the digit in the high byte above 8 low bits that the
/// final mask drops). `even` holds `c << 8` of the even bytes (one per word), `odd` the `c` of
/// the odd bytes. Exact for every byte and power (the tests compare with the scalar kernel).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn trits(z: __m512i, even: __m512i, odd: __m512i) -> __m512i {
    let hi_byte = _mm512_set1_epi16(0xff00u16 as i16);
    let te = _mm512_mulhi_epu16(_mm512_mullo_epi16(z, even), _mm512_set1_epi16(3));
    let to = _mm512_mulhi_epu16(_mm512_mullo_epi16(_mm512_and_si512(z, hi_byte), odd), _mm512_set1_epi16(768));
    // (to & 0xff00) | te
    _mm512_ternarylogic_epi32(to, hi_byte, te, 0xea)
}

/// The powers of 3 that bring trit `k` of each byte to the top for the four 64-value steps
/// of a TQ1_0 block, byte by byte (see [`dot_tq1_0`]).
const TQ1_STEPS: [[u8; 64]; 4] = [
    bytes_of(&[(0, 32, 1), (32, 64, 3)]),
    bytes_of(&[(0, 32, 9), (32, 64, 27)]),
    bytes_of(&[(0, 32, 81), (32, 48, 1), (48, 64, 3)]),
    bytes_of(&[(0, 16, 9), (16, 32, 27), (32, 48, 81), (48, 52, 1), (52, 56, 3), (56, 60, 9), (60, 64, 27)]),
];

/// [`TQ1_STEPS`] split into the word constants of [`trits`]: `[even << 8, odd]` per step.
static TQ1_MULS: [[[u16; 32]; 2]; 4] = {
    let mut t = [[[0u16; 32]; 2]; 4];
    let mut s = 0;
    while s < 4 {
        let mut k = 0;
        while k < 32 {
            t[s][0][k] = (TQ1_STEPS[s][2 * k] as u16) << 8;
            t[s][1][k] = TQ1_STEPS[s][2 * k + 1] as u16;
            k += 1;
        }
        s += 1;
    }
    t
};

/// 64 bytes: value `v` in bytes `lo..hi` of each `(lo, hi, v)`, zero elsewhere.
const fn bytes_of(runs: &[(usize, usize, u8)]) -> [u8; 64] {
    let mut b = [0u8; 64];
    let mut i = 0;
    while i < runs.len() {
        let mut k = runs[i].0;
        while k < runs[i].1 {
            b[k] = runs[i].2;
            k += 1;
        }
        i += 1;
    }
    b
}

kernel! {
    /// TQ1_0 x Q8_K (54-byte blocks: 48 bytes of 5 trits, 4 bytes of 4 trits, f16 d). Each of
    /// the four 64-value steps is one zmm of packed bytes (`[qs0..32 | qs0..32]`,
    /// `[qs0..32 | qs32..48 x 2]`, `[qs32..48 x 3 | qh x 4]`) multiplied byte by byte by the
    /// power of 3 of its trit ([`TQ1_STEPS`]), so that the trit codes of 64 consecutive values
    /// come out of one [`trits`] and meet the activations in one `vpdpbusd`. Codes are
    /// `t + 1`; the `- sum(y)` comes from the bsums, as in the AVX2 kernel.
    fn dot_tq1_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
        let nb = n / 256;
        let (wp, ap) = (w.as_ptr(), a.as_ptr());
        let m = |s: usize, h: usize| table512(&TQ1_MULS[s][h]);
        let muls = [(m(0, 0), m(0, 1)), (m(1, 0), m(1, 1)), (m(2, 0), m(2, 1)), (m(3, 0), m(3, 1))];
        let mut acc = 0f32;
        for i in 0..nb {
            // SAFETY: super-block i (54 bytes of TQ1_0, 292 of Q8_K) is inside both rows; the
            // reads below stay inside those blocks.
            unsafe {
                let (x, y) = (wp.add(54 * i), ap.add(Q8K * i));
                let yq = y.add(4);
                let q0 = _mm512_broadcast_i64x4(load256(x));
                let r = _mm512_broadcast_i32x4(_mm_loadu_si128(x.add(32) as *const __m128i));
                let q0r = _mm512_inserti64x4(r, load256(x), 0);
                let rh = _mm512_mask_set1_epi32(r, 0xf000, core::ptr::read_unaligned(x.add(48) as *const i32));
                let step = |z: __m512i, s: usize| trits(z, muls[s].0, muls[s].1);
                let ld = |k: usize| _mm512_loadu_si512(yq.add(64 * k) as *const __m512i);
                let mut s = dpbusd(_mm512_setzero_si512(), step(q0, 0), ld(0));
                s = dpbusd(s, step(q0, 1), ld(1));
                s = dpbusd(s, step(q0r, 2), ld(2));
                s = dpbusd(s, step(rh, 3), ld(3));
                let s = _mm256_sub_epi32(fold256(s), _mm256_madd_epi16(load256(y.add(260)), _mm256_set1_epi16(1)));
                let (sum, _) = hsum2_i32(s, s);
                let d = f32::from_bits(u32::from_le(core::ptr::read_unaligned(y as *const u32))) * f16_at_nodep(x.add(52));
                acc += d * sum as f32;
            }
        }
        acc
    }
}

// ---------------------------------------------------------------------------------------------
// IQ2_XXS, IQ3_XXS, IQ3_S and IQ4_XS against Q8_K: one weight decode, `R` activation rows.
//
// The grid types take 64 values per step: their 8 (IQ2_XXS, 8-byte rows) or 16 (IQ3, 4-byte
// rows) grid indices are widened to dwords in a register (`vpermb` / `vpmovzxbd`, IQ3_S's ninth
// bits OR-ed in under a mask read straight from `qh`) and the rows fetched by one `vpgatherdq` /
// `vpgatherdd`; the 64 signs are a mask register that negates the activations (`vpsubb` under
// the mask), then `vpmaddubsw` (grid magnitudes unsigned, at most 62, so no pair saturates) and
// `vpdpwssd` with the sub-blocks' `2s + 1` in both words of each dword. IQ3_S stores its signs
// as plain bits; IQ2_XXS / IQ3_XXS store 7-bit fields whose eighth bit is the parity: the 32
// fields of a super-block are cut out of their u32 by one `vpmultishiftqb` and completed by one
// 128-byte table lookup (`vpermt2b` on `KSIGNS_IQ2XS`), so these two need AVX512_VBMI. Integer
// block sums are exact and `d * sum` accumulates in block order, the scalar reference's float
// operations: the results are the reference's bit for bit. On the bench's 16 x 4096 rows
// (quiet machine, ns per 256 values) AVX2 -> these: IQ2_XXS 15.4 -> 10.0, IQ3_XXS 20.5 -> 13.3,
// IQ3_S 26.7 -> 13.0; fetching the IQ2_XXS rows by eight masked broadcast loads instead of the
// gather measured 18.5.
//
// IQ4_XS stays in 256-bit registers (three vector ports): per 32 values the nibbles are looked
// up in the codebook, `|q| x sign(y, q)` by `vpmaddubsw` (|q| <= 127, so pairs stay below
// 2^15), and `vpdpwssd` against the sub-block scale `ls - 32`, broadcast from a per-super-block
// table built with two `pdep` (BMI2). One `fma` per super-block in float lanes, as the AVX2
// kernel (and ggml) do; the float sum order differs from the reference (tests bound it).
// AVX2 9.0 -> 7.5 ns per 256 values in the same runs.

/// Dword lanes 0..8 take source dword `2j`, lanes 8..16 dword `2j + 1`: the scales of the two
/// 32-value sub-blocks of 64-value step `j`.
static SPREAD_SUB: [[u32; 16]; 4] = {
    let mut t = [[0u32; 16]; 4];
    let mut j = 0;
    while j < 4 {
        let mut k = 0;
        while k < 16 {
            t[j][k] = (2 * j + k / 8) as u32;
            k += 1;
        }
        j += 1;
    }
    t
};

/// `vpermb` indices moving IQ2_XXS grid byte `k` of step `j` (bytes `16j + 0..4` and
/// `16j + 8..12` of `qs`) to the low byte of dword `k` (the other bytes are zeroed by the mask
/// [`DWORD_LOW_BYTES`]).
static IQ2XXS_GRID_BYTES: [[u8; 64]; 4] = {
    let mut t = [[0u8; 64]; 4];
    let mut j = 0;
    while j < 4 {
        let mut k = 0;
        while k < 8 {
            t[j][4 * k] = (16 * j + if k < 4 { k } else { k + 4 }) as u8;
            k += 1;
        }
        j += 1;
    }
    t
};

/// The low byte of every dword.
const DWORD_LOW_BYTES: u64 = 0x1111_1111_1111_1111;

/// `vpermb` indices packing the eight IQ2_XXS sign/scale u32 (bytes `8s + 4..8s + 8` of `qs`)
/// into the low 32 bytes.
static IQ2XXS_SIGN_WORDS: [u8; 64] = {
    let mut t = [0u8; 64];
    let mut s = 0;
    while s < 8 {
        let mut k = 0;
        while k < 4 {
            t[4 * s + k] = (8 * s + 4 + k) as u8;
            k += 1;
        }
        s += 1;
    }
    t
};

/// Store 32 bytes at `p` with one `vmovdqu` (LLVM otherwise splits a store that later loads
/// read only in parts, and for the IQ4_XS scales replaces those loads by shuffles on port 5:
/// measured 3 % (IQ2_XXS) and 7 % (IQ4_XS) slower than this).
///
/// # Safety
/// 32 writable bytes at `p`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn store256(p: *mut u8, v: __m256i) {
    // SAFETY: the caller guarantees 32 writable bytes at `p`; the asm writes only those.
    unsafe {
        core::arch::asm!(
            "vmovdqu ymmword ptr [{p}], {v}",
            p = in(reg) p, v = in(ymm_reg) v,
            options(nostack, preserves_flags),
        )
    };
}

/// The u32 at `p` in all 8 lanes, as one broadcast load (see [`bcast32`]).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn bcast32_256(p: &u32) -> __m256i {
    let r: __m256i;
    // SAFETY: `p` is a valid reference to 4 bytes; the asm reads only those.
    unsafe {
        core::arch::asm!(
            "vpbroadcastd {r}, dword ptr [{p}]",
            r = out(ymm_reg) r, p = in(reg) p as *const u32,
            options(pure, readonly, nostack, preserves_flags),
        )
    };
    r
}

/// The 16 dwords of `t` as a vector.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn dwords512(t: &[u32; 16]) -> __m512i {
    // SAFETY: `t` is 64 readable bytes.
    unsafe { _mm512_loadu_si512(t.as_ptr() as *const __m512i) }
}

/// The 64-byte table `t` as a vector.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn bytes512(t: &[u8; 64]) -> __m512i {
    // SAFETY: `t` is 64 readable bytes.
    unsafe { _mm512_loadu_si512(t.as_ptr() as *const __m512i) }
}

/// [`dpwssd`] on 256-bit vectors.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn dpwssd256(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
    let mut r = acc;
    // SAFETY: register-only AVX512-VL/VNNI arithmetic; no memory or flags are touched.
    unsafe {
        core::arch::asm!(
            "vpdpwssd {r}, {a}, {b}",
            r = inout(ymm_reg) r, a = in(ymm_reg) a, b = in(ymm_reg) b,
            options(pure, nomem, nostack, preserves_flags),
        )
    };
    r
}

/// The 32 sign bytes of a super-block of IQ2_XXS / IQ3_XXS from its eight sign/scale u32 (in
/// the low 32 bytes of `c`): byte `g` holds the signs of values `8g..8g + 8` (bit `l` set:
/// value `8g + l` negative). Field `m` of u32 `s` (bits `7m..7m + 7`) goes to byte `4s + m` by
/// one `vpmultishiftqb`, and `KSIGNS_IQ2XS` (`ks`, its 128 bytes in two vectors) adds the parity
/// bit; the lookup ignores the eighth bit that the shift brings along.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")]
fn sign_bytes(c: __m512i, ks: &(__m512i, __m512i)) -> __m512i {
    let ctrl = _mm512_set1_epi64(i64::from_le_bytes([0, 7, 14, 21, 32, 39, 46, 53]));
    _mm512_permutex2var_epi8(ks.0, _mm512_multishift_epi64_epi8(ctrl, c), ks.1)
}

/// `2s + 1` in both 16-bit halves of each dword, `s` the top nibble of that dword of `c` (the
/// IQ2_XXS / IQ3_XXS sub-block scale).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn top_nibble_scales(c: __m512i) -> __m512i {
    // ((c >> 27) & 0x1e) | 1
    let s = _mm512_ternarylogic_epi32(_mm512_srli_epi32(c, 27), _mm512_set1_epi32(0x1e), _mm512_set1_epi32(1), 0xea);
    _mm512_or_si512(s, _mm512_slli_epi32(s, 16))
}

/// Adds to each row's `sum[r]` the 64 grid values `g` (unsigned bytes) times that row's
/// activations at step `j` of super-block `i`, negated where `neg` has a bit, with the
/// pair-sums weighted by the scales `sc` (`vpdpwssd`).
///
/// # Safety
/// Super-block `i` of every one of the `R` activation rows (`arow` bytes apart) is readable; `j < 4`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[allow(clippy::too_many_arguments)]
unsafe fn add_signed_products<const R: usize>(sum: &mut [__m512i; R], g: __m512i, neg: u64, sc: __m512i, ap: *const u8, arow: usize, i: usize, j: usize) {
    for (r, s) in sum.iter_mut().enumerate() {
        // SAFETY: the 64 quants of step j of super-block i of row r (caller).
        let yv = unsafe { _mm512_loadu_si512(ap.add(r * arow + Q8K * i + 4 + 64 * j) as *const __m512i) };
        let ys = _mm512_mask_sub_epi8(yv, neg, _mm512_setzero_si512(), yv);
        *s = dpwssd(*s, _mm512_maddubs_epi16(g, ys), sc);
    }
}

/// The exact integer sum of each row's 64-value products `sum[r]` times `d_w * d_a` added to
/// `acc[r]` (`a` at super-block `i` of each row, rows `arow` bytes apart).
///
/// # Safety
/// Super-block `i` of every one of the `R` activation rows is readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn add_block_sums<const R: usize>(acc: &mut [f32; R], sum: &[__m512i; R], dx: f32, ap: *const u8, arow: usize, i: usize) {
    for r in 0..R {
        let s = fold256(sum[r]);
        let (t, _) = hsum2_i32(s, s);
        // SAFETY: super-block i of row r (caller).
        let dy = unsafe { f32_at(ap.add(r * arow + Q8K * i)) };
        acc[r] += dx * dy * t as f32;
    }
}

/// IQ2_XXS (66-byte blocks: f16 d, then per 32 values 4 grid bytes and a u32 of four 7-bit
/// sign fields and the 4-bit scale) x `R` Q8_K rows `arow` bytes apart.
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI/VBMI are available; `w` holds `n / 256` blocks and `a` `R` rows of
/// `n / 256` Q8_K blocks, `arow` bytes apart.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")]
unsafe fn iq2_xxs_gen<const R: usize>(n: usize, w: &[u8], a: &[u8], arow: usize, out: &mut [f32; R]) {
    let nb = n / 256;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    // SAFETY: the table has 128 bytes.
    let ks = unsafe { (_mm512_loadu_si512(KSIGNS_IQ2XS.as_ptr() as *const __m512i), _mm512_loadu_si512(KSIGNS_IQ2XS.as_ptr().add(64) as *const __m512i)) };
    let gperm = [0, 1, 2, 3].map(|j| bytes512(&IQ2XXS_GRID_BYTES[j]));
    let sperm = bytes512(&IQ2XXS_SIGN_WORDS);
    let spread = [0, 1, 2, 3].map(|j| dwords512(&SPREAD_SUB[j]));
    let mut acc = [0f32; R];
    let mut signs = [0u64; 4];
    for i in 0..nb {
        // SAFETY: super-block i (66 bytes of IQ2_XXS, 292 of Q8_K in each row) is inside the
        // rows (caller); the reads below stay inside those blocks.
        unsafe {
            let x = wp.add(66 * i);
            let q = _mm512_loadu_si512(x.add(2) as *const __m512i);
            let c = _mm512_permutexvar_epi8(sperm, q);
            store256(signs.as_mut_ptr() as *mut u8, _mm512_castsi512_si256(sign_bytes(c, &ks)));
            let sc = top_nibble_scales(c);
            let mut sum = [_mm512_setzero_si512(); R];
            for (j, (&gp, &sp)) in gperm.iter().zip(&spread).enumerate() {
                // Byte indices below 256: every gathered row is inside the grid.
                let idx = _mm512_castsi512_si256(_mm512_maskz_permutexvar_epi8(DWORD_LOW_BYTES, gp, q));
                let g = gather_grid(&IQ2XXS_GRID, idx);
                let scj = _mm512_permutexvar_epi32(sp, sc);
                add_signed_products(&mut sum, g, signs[j], scj, ap, arow, i, j);
            }
            add_block_sums(&mut acc, &sum, f16_at(x), ap, arow, i);
        }
    }
    for (o, s) in out.iter_mut().zip(acc) {
        *o = 0.125 * s;
    }
}

/// IQ3_XXS (98-byte blocks: f16 d, 64 grid bytes, then per 32 values a u32 of four 7-bit sign
/// fields and the 4-bit scale) x `R` Q8_K rows `arow` bytes apart.
///
/// # Safety
/// As [`iq2_xxs_gen`].
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")]
unsafe fn iq3_xxs_gen<const R: usize>(n: usize, w: &[u8], a: &[u8], arow: usize, out: &mut [f32; R]) {
    let nb = n / 256;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    // SAFETY: the table has 128 bytes.
    let ks = unsafe { (_mm512_loadu_si512(KSIGNS_IQ2XS.as_ptr() as *const __m512i), _mm512_loadu_si512(KSIGNS_IQ2XS.as_ptr().add(64) as *const __m512i)) };
    let spread = [0, 1, 2, 3].map(|j| dwords512(&SPREAD_SUB[j]));
    let mut acc = [0f32; R];
    let mut signs = [0u64; 4];
    for i in 0..nb {
        // SAFETY: super-block i (98 bytes of IQ3_XXS, 292 of Q8_K in each row) is inside the
        // rows (caller); the reads below stay inside those blocks.
        unsafe {
            let x = wp.add(98 * i);
            let c = _mm512_castsi256_si512(load256(x.add(66)));
            store256(signs.as_mut_ptr() as *mut u8, _mm512_castsi512_si256(sign_bytes(c, &ks)));
            let sc = top_nibble_scales(c);
            let mut sum = [_mm512_setzero_si512(); R];
            for (j, &sp) in spread.iter().enumerate() {
                let idx = _mm512_cvtepu8_epi32(_mm_loadu_si128(x.add(2 + 16 * j) as *const __m128i));
                // Byte indices below 256: every gathered row is inside the grid.
                let g = _mm512_i32gather_epi32::<4>(idx, IQ3XXS_GRID.as_ptr() as *const i32);
                let scj = _mm512_permutexvar_epi32(sp, sc);
                add_signed_products(&mut sum, g, signs[j], scj, ap, arow, i, j);
            }
            add_block_sums(&mut acc, &sum, f16_at(x), ap, arow, i);
        }
    }
    for (o, s) in out.iter_mut().zip(acc) {
        *o = 0.25 * s;
    }
}

/// IQ3_S (110-byte blocks: f16 d, 64 low index bytes, 8 bytes of ninth index bits, 32 sign
/// bytes, 4 bytes of two 4-bit scales) x `R` Q8_K rows `arow` bytes apart.
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI are available; lengths as [`iq2_xxs_gen`].
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn iq3_s_gen<const R: usize>(n: usize, w: &[u8], a: &[u8], arow: usize, out: &mut [f32; R]) {
    let nb = n / 256;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let spread = [0, 1, 2, 3].map(|j| dwords512(&SPREAD_SUB[j]));
    let m4 = _mm_set1_epi8(0x0f);
    let bit8 = _mm512_set1_epi32(0x100);
    let mut acc = [0f32; R];
    for i in 0..nb {
        // SAFETY: super-block i (110 bytes of IQ3_S, 292 of Q8_K in each row) is inside the
        // rows (caller); the reads below stay inside those blocks.
        unsafe {
            let x = wp.add(110 * i);
            let (qs, qh, sg) = (x.add(2), x.add(66), x.add(74));
            // Scales 2s + 1 of sub-blocks 0..8 (low nibble first) in both words of dword k.
            let s4 = _mm_cvtsi32_si128(core::ptr::read_unaligned(x.add(106) as *const i32));
            let s8 = _mm_unpacklo_epi8(_mm_and_si128(s4, m4), _mm_and_si128(_mm_srli_epi16(s4, 4), m4));
            let s8 = _mm_add_epi8(_mm_add_epi8(s8, s8), _mm_set1_epi8(1));
            let s32 = _mm512_cvtepu8_epi32(s8);
            let sc = _mm512_or_si512(s32, _mm512_slli_epi32(s32, 16));
            let mut sum = [_mm512_setzero_si512(); R];
            for (j, &sp) in spread.iter().enumerate() {
                let lo = _mm512_cvtepu8_epi32(_mm_loadu_si128(qs.add(16 * j) as *const __m128i));
                // Bit k of the two qh bytes of the step: ninth bit of index k.
                let h = u16::from_le(core::ptr::read_unaligned(qh.add(2 * j) as *const u16));
                // Nine-bit indices, below 512: every gathered row is inside the grid.
                let idx = _mm512_mask_or_epi32(lo, h, lo, bit8);
                let g = _mm512_i32gather_epi32::<4>(idx, IQ3S_GRID.as_ptr() as *const i32);
                let scj = _mm512_permutexvar_epi32(sp, sc);
                let neg = u64::from_le(core::ptr::read_unaligned(sg.add(8 * j) as *const u64));
                add_signed_products(&mut sum, g, neg, scj, ap, arow, i, j);
            }
            add_block_sums(&mut acc, &sum, f16_at(x), ap, arow, i);
        }
    }
    *out = acc;
}

/// IQ4_XS (136-byte blocks: f16 d, u16 of 2-bit scale tops, 4 bytes of 4-bit scale bottoms,
/// 128 bytes of codebook nibbles) x `R` Q8_K rows `arow` bytes apart.
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI and BMI2 are available; lengths as [`iq2_xxs_gen`].
#[inline]
#[target_feature(enable = "avx2,fma,f16c,bmi2,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn iq4_xs_gen<const R: usize>(n: usize, w: &[u8], a: &[u8], arow: usize, out: &mut [f32; R]) {
    let nb = n / 256;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    // SAFETY: the codebook has 16 bytes.
    let tbl = _mm256_broadcastsi128_si256(unsafe { _mm_loadu_si128(KVALUES_IQ4NL.as_ptr() as *const __m128i) });
    let m4 = _mm256_set1_epi8(0x0f);
    let mut acc = [_mm256_setzero_ps(); R];
    // `ls - 32` of the eight sub-blocks, in both words of each u32.
    let mut scales = [0u32; 8];
    for i in 0..nb {
        // SAFETY: super-block i (136 bytes of IQ4_XS, 292 of Q8_K in each row) is inside the
        // rows (caller); the reads below stay inside those blocks.
        unsafe {
            let x = wp.add(136 * i);
            let sh = u16::from_le(core::ptr::read_unaligned(x.add(2) as *const u16)) as u64;
            let sl = u32::from_le(core::ptr::read_unaligned(x.add(4) as *const u32)) as u64;
            // Byte k: low nibble k of `sl`, bits 2k..2k + 2 of `sh` above it.
            let ls = _pdep_u64(sl, 0x0f0f_0f0f_0f0f_0f0f) | _pdep_u64(sh, 0x3030_3030_3030_3030);
            let lw = _mm256_cvtepi8_epi32(_mm_sub_epi8(_mm_cvtsi64_si128(ls as i64), _mm_set1_epi8(32)));
            // (lw & 0xffff) | (lw << 16)
            let lw = _mm256_ternarylogic_epi32(lw, _mm256_set1_epi32(0xffff), _mm256_slli_epi32(lw, 16), 0xea);
            store256(scales.as_mut_ptr() as *mut u8, lw);
            let mut sum = [_mm256_setzero_si256(); R];
            for (j, sj) in scales.iter().enumerate() {
                // Low nibbles in the low half (values 0..16), high nibbles in the high half.
                let v = _mm256_broadcastsi128_si256(_mm_loadu_si128(x.add(8 + 16 * j) as *const __m128i));
                let q = _mm256_shuffle_epi8(tbl, _mm256_and_si256(_mm256_mask_srli_epi16(v, 0xff00, v, 4), m4));
                let aq = _mm256_sign_epi8(q, q);
                let scj = bcast32_256(sj);
                for (r, s) in sum.iter_mut().enumerate() {
                    let yv = load256(ap.add(r * arow + Q8K * i + 4 + 32 * j));
                    *s = dpwssd256(*s, _mm256_maddubs_epi16(aq, _mm256_sign_epi8(yv, q)), scj);
                }
            }
            let dx = f16_at_nodep(x);
            for r in 0..R {
                let d = dx * f32_at(ap.add(r * arow + Q8K * i));
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sum[r]), acc[r]);
            }
        }
    }
    for (o, v) in out.iter_mut().zip(acc) {
        *o = hsum_ps(v);
    }
}

/// Defines a single-row kernel `$one` and a [`DOT_ROWS`]-row kernel `$rows` as the instances
/// `R = 1` and `R = DOT_ROWS` of the generic kernel `$gen`, compiled for the features `$f`.
macro_rules! iq_kernels {
    ($f:literal, $(#[$m:meta])* $gen:ident => $one:ident, $rows:ident) => {
        $(#[$m])*
        ///
        /// # Safety
        /// The generic kernel's features are available; lengths as for a `VecDotFn`.
        #[target_feature(enable = $f)]
        unsafe fn $one(n: usize, w: &[u8], a: &[u8]) -> f32 {
            let mut o = [0f32; 1];
            // SAFETY: same features; one activation row of `a.len()` bytes.
            unsafe { $gen::<1>(n, w, a, a.len(), &mut o) };
            o[0]
        }
        /// The multi-row instance of the same generic kernel.
        ///
        /// # Safety
        /// As for the single-row instance; `a` holds [`DOT_ROWS`] rows.
        #[target_feature(enable = $f)]
        unsafe fn $rows(n: usize, w: &[u8], a: &[u8], out: &mut [f32; DOT_ROWS]) {
            // SAFETY: same features; `a` holds DOT_ROWS rows (caller).
            unsafe { $gen::<DOT_ROWS>(n, w, a, a.len() / DOT_ROWS, out) }
        }
    };
}

iq_kernels! {
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi",
    /// IQ2_XXS x Q8_K (see [`iq2_xxs_gen`]).
    iq2_xxs_gen => dot_iq2_xxs, rows_iq2_xxs
}

iq_kernels! {
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi",
    /// IQ3_XXS x Q8_K (see [`iq3_xxs_gen`]).
    iq3_xxs_gen => dot_iq3_xxs, rows_iq3_xxs
}

iq_kernels! {
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    /// IQ3_S x Q8_K (see [`iq3_s_gen`]).
    iq3_s_gen => dot_iq3_s, rows_iq3_s
}

iq_kernels! {
    "avx2,fma,f16c,bmi2,avx512f,avx512bw,avx512vl,avx512vnni",
    /// IQ4_XS x Q8_K (see [`iq4_xs_gen`]).
    iq4_xs_gen => dot_iq4_xs, rows_iq4_xs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn have_avx512() -> bool {
        crate::simd::Isa::Avx512.is_available()
    }

    #[test]
    fn trits_match_scalar_digit_for_every_byte_and_step() {
        if !have_avx512() {
            return;
        }
        for (s, steps) in TQ1_STEPS.iter().enumerate() {
            for q in 0..=255u8 {
                let z = [q; 64];
                let mut out = [0u8; 64];
                // SAFETY: AVX-512 checked above; `z` and `out` are 64 bytes.
                unsafe {
                    let zv = _mm512_loadu_si512(z.as_ptr() as *const __m512i);
                    let t = trits(zv, table512(&TQ1_MULS[s][0]), table512(&TQ1_MULS[s][1]));
                    _mm512_storeu_si512(out.as_mut_ptr() as *mut __m512i, t);
                }
                for (k, &c) in steps.iter().enumerate() {
                    let want = ((q.wrapping_mul(c) as u32 * 3) >> 8) as u8;
                    assert_eq!(out[k], want, "step {s} byte {k} q {q} power {c}");
                }
            }
        }
    }

    #[test]
    fn tq1_steps_are_the_trit_powers_of_the_layout() {
        // Values 0..160 from qs[0..32] (trit v / 32), 160..240 from qs[32..48] (trit
        // (v - 160) / 16), 240..256 from qh (trit (v - 240) / 4): step s covers values 64s..64s + 64.
        for (s, step) in TQ1_STEPS.iter().enumerate() {
            for (k, &c) in step.iter().enumerate() {
                let v = 64 * s + k;
                let trit = if v < 160 { v / 32 } else if v < 240 { (v - 160) / 16 } else { (v - 240) / 4 };
                assert_eq!(c as u32, 3u32.pow(trit as u32), "value {v}");
            }
        }
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
