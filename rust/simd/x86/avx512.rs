//! AVX-512 (F/BW/VL/VNNI) kernels: `vpdpbusd` replaces AVX2's `maddubs` + `madd` pair, and the
//! activation quantizers narrow with `vpmovsdb`. Installed over the AVX2 table only after
//! run-time detection; types without an entry here keep their AVX2 kernel.
//!
//! The K-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) use 256-bit vectors with the AVX-512VL/VNNI
//! instructions (`vpdpbusd`, `vpackssdw` + `vpdpwssd` for the scales, `vpternlogd` to merge bit
//! fields); see the section note below. Earlier 512-bit versions (two sub-blocks per zmm) and
//! 256-bit VNNI versions that kept AVX2's per-32 scale `madd` ran 0-25 % slower than AVX2 on the
//! Sapphire Rapids machine this project is measured on: 512-bit integer ops issue on two ports
//! there and 256-bit ones on three, and the K-quants spend most of their uops on unpacking.
//! IQ4_XS's kernel is in [`super::avx512_iq`].
//!
//! Q4_1 keeps ggml's AVX2 `vec_dot` order here (one accumulator, blocks in order; its result
//! equals the AVX2 kernel's bit for bit): the SmolLM2 (Q4_1) forward pass is checked against
//! llama.cpp's position-0 logits at KL < 1e-8 (`tests/test_model_smollm2.py`), which a
//! two-blocks-per-zmm order misses (KL 2e-4).
//!
//! Q8_0, Q4_0, Q5_0, IQ4_NL, Q5_1 (against Q8_1; and MXFP4 in [`super::avx512_iq`]) use ymm
//! registers, four blocks per step ([`blocks4_gen`]): measured faster than two blocks per zmm,
//! see the section comment.

use core::arch::x86_64::*;

use super::avx2::{bcast1, f16_at, nibbles_bcast, KVALUES_IQ4NL};
use crate::simd::{Overrides, VecDotRowsFn, DOT_ROWS};
use crate::types::QuantType as T;

/// The AVX-512 entries of the dispatch table.
///
/// # Safety
/// Only call after checking AVX-512 F/BW/VL/VNNI and AVX2/FMA/F16C: the kernels use them.
pub(crate) unsafe fn overrides() -> Overrides {
    Overrides {
        dot: vec![
            (T::Q8_0, dot_q8_0 as _),
            (T::Q4_0, dot_q4_0 as _),
            (T::Q4_1, dot_q4_1 as _),
            (T::Q5_0, dot_q5_0 as _),
            (T::Q5_1, dot_q5_1 as _),
            (T::IQ4_NL, dot_iq4_nl as _),
            (T::Q2_K, dot_q2_k as _),
            (T::Q4_K, dot_q4_k as _),
            (T::Q5_K, dot_q5_k as _),
            (T::Q6_K, dot_q6_k as _),
            (T::Q3_K, dot_q3_k as _),
        ],
        act: vec![(T::Q8_0, quantize_q8_0 as _), (T::Q8_1, quantize_q8_1 as _), (T::Q8_K, quantize_q8_k as _)],
    }
}

/// The AVX-512 multi-row kernels: the same generic code as the single-row entries above.
///
/// # Safety
/// As for [`overrides`].
pub(crate) unsafe fn rows_overrides() -> Vec<(T, VecDotRowsFn)> {
    vec![
        (T::Q8_0, rows_q8_0 as _),
        (T::Q4_0, rows_q4_0 as _),
        (T::Q4_1, rows_q4_1 as _),
        (T::Q5_0, rows_q5_0 as _),
        (T::Q5_1, rows_q5_1 as _),
        (T::IQ4_NL, rows_iq4_nl as _),
        (T::Q2_K, rows_q2_k as _),
        (T::Q4_K, rows_q4_k as _),
        (T::Q5_K, rows_q5_k as _),
        (T::Q6_K, rows_q6_k as _),
        (T::Q3_K, rows_q3_k as _),
    ]
}

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
fn hsum512(v: __m512) -> f32 {
    _mm512_reduce_add_ps(v)
}

// ---------------------------------------------------------------------------------------------
// Activation quantizers (same arithmetic as ggml's AVX2 path, so bit-exact).

kernel! {
    /// Q8_0 (and, with `with_sum`, Q8_1) blocks: `id = 127/amax`, round half to even.
    #[inline]
    fn q8_blocks(x: &[f32], dst: &mut [u8], bsize: usize, with_sum: bool) {
        let off = bsize - 32;
        for (xb, yb) in x.chunks_exact(32).zip(dst.chunks_exact_mut(bsize)) {
            // SAFETY: `xb` has 32 floats.
            let (v0, v1) = unsafe { (_mm512_loadu_ps(xb.as_ptr()), _mm512_loadu_ps(xb.as_ptr().add(16))) };
            let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
            let d = amax / 127.0;
            yb[..2].copy_from_slice(&half::f16::from_f32(d).to_bits().to_le_bytes());
            let id = _mm512_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
            let r = |v: __m512| {
                _mm512_cvtps_epi32(_mm512_roundscale_ps(_mm512_mul_ps(v, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC))
            };
            let (i0, i1) = (r(v0), r(v1));
            if with_sum {
                let s = _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
                yb[2..4].copy_from_slice(&half::f16::from_f32(d * s as f32).to_bits().to_le_bytes());
            }
            // SAFETY: 32 bytes written at `off..off + 32` of the `bsize`-byte block.
            unsafe {
                _mm_storeu_si128(yb.as_mut_ptr().add(off) as *mut __m128i, _mm512_cvtsepi32_epi8(i0));
                _mm_storeu_si128(yb.as_mut_ptr().add(off + 16) as *mut __m128i, _mm512_cvtsepi32_epi8(i1));
            }
        }
    }
}

kernel! {
    fn quantize_q8_0(x: &[f32], dst: &mut [u8]) {
        // SAFETY: same features and contract.
        unsafe { q8_blocks(x, dst, 34, false) }
    }
}

kernel! {
    fn quantize_q8_1(x: &[f32], dst: &mut [u8]) {
        // SAFETY: same features and contract.
        unsafe { q8_blocks(x, dst, 36, true) }
    }
}

kernel! {
    /// Q8_K (`quantize_row_q8_K_ref` arithmetic; see the AVX2 version).
    fn quantize_q8_k(x: &[f32], dst: &mut [u8]) {
        for (xb, yb) in x.chunks_exact(256).zip(dst.chunks_exact_mut(292)) {
            let p = xb.as_ptr();
            let mut m = _mm512_setzero_ps();
            for j in 0..16 {
                // SAFETY: 16 floats at 16*j < 256.
                m = _mm512_max_ps(m, _mm512_abs_ps(unsafe { _mm512_loadu_ps(p.add(16 * j)) }));
            }
            let amax = _mm512_reduce_max_ps(m);
            if amax == 0.0 || amax.is_nan() {
                yb.fill(0);
                continue;
            }
            let max = xb.iter().copied().find(|v| v.abs() == amax).unwrap_or(amax);
            let iscale = -127.0f32 / max;
            let mul = _mm512_set1_ps(iscale);
            let lim = _mm512_set1_epi32(127);
            let mut sums = [0i16; 16];
            for (j, s) in sums.iter_mut().enumerate() {
                // SAFETY: 16 floats at 16*j < 256; 16 bytes stored at 4 + 16*j < 260.
                unsafe {
                    let v = _mm512_loadu_ps(p.add(16 * j));
                    let r = _mm512_roundscale_ps(_mm512_mul_ps(v, mul), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                    let q = _mm512_min_epi32(_mm512_cvtps_epi32(r), lim);
                    *s = _mm512_reduce_add_epi32(q) as i16;
                    _mm_storeu_si128(yb.as_mut_ptr().add(4 + 16 * j) as *mut __m128i, _mm512_cvtsepi32_epi8(q));
                }
            }
            yb[..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
            for (j, s) in sums.iter().enumerate() {
                yb[260 + 2 * j..262 + 2 * j].copy_from_slice(&s.to_le_bytes());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Generic single-row / multi-row kernel pairs.

/// Defines a single-row kernel `$one` and a [`DOT_ROWS`]-row kernel `$rows` as the
/// instances `R = 1` and `R = DOT_ROWS` of the generic `$gen`, so the two agree bit for bit.
macro_rules! one_and_rows {
    ($(#[$m:meta])* $gen:ident => $one:ident, $rows:ident) => {
        kernel! {
            $(#[$m])*
            fn $one(n: usize, w: &[u8], a: &[u8]) -> f32 {
                let mut o = [0f32; 1];
                // SAFETY: same features; one activation row of `a.len()` bytes.
                unsafe { $gen::<1>(n, w, a, a.len(), &mut o) };
                o[0]
            }
        }
        kernel! {
            /// The multi-row instance of the same generic kernel.
            fn $rows(n: usize, w: &[u8], a: &[u8], out: &mut [f32; DOT_ROWS]) {
                // SAFETY: same features; `a` holds DOT_ROWS rows (caller).
                unsafe { $gen::<DOT_ROWS>(n, w, a, a.len() / DOT_ROWS, out) }
            }
        }
    };
}


// ---------------------------------------------------------------------------------------------
// 32-value blocks against Q8_0 in ymm registers, four blocks per step.
//
// On the Sapphire Rapids machine measured here these kernels were bound by port 5 (the one
// port for lane-crossing shuffles and for moving general registers into vectors), not by
// arithmetic. So they avoid it where they can:
// - the f16 scales of four blocks are gathered with `punpcklwd`/`punpckldq` on 16-byte loads
//   (one conversion per four blocks) and the four products stored to the stack; each is read
//   back by a broadcasting load ([`bcast_pair`], [`bcast1`]), which uses only a load port;
// - packed nibbles are unpacked by a broadcasting 16-byte load and a per-lane variable shift
//   (`avx2::nibbles_bcast`) instead of a lane insert;
// - `vpdpbusd ymm` (two ports) instead of the zmm form (one).
// Two blocks' eight i32 lanes are folded into one vector (even lanes block `a`, odd lanes block
// `b`) before the conversion to float, so a block costs half a conversion and half an FMA.

/// The f32 pair at `p` repeated over 8 lanes (`vbroadcastsd ymm, m64`, a load only): lanes
/// `2j` hold `p[0]`, lanes `2j + 1` hold `p[1]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn bcast_pair(p: *const f32) -> __m256 {
    let v: __m256;
    // SAFETY: the caller guarantees 8 readable bytes at `p`; the asm reads only those and writes
    // its output register.
    unsafe {
        core::arch::asm!(
            "vbroadcastsd {v}, qword ptr [{p}]",
            p = in(reg) p, v = out(ymm_reg) v,
            options(pure, readonly, nostack, preserves_flags),
        )
    };
    v
}

/// The f16 values at `p`, `p + st`, `p + 2 st`, `p + 3 st` as f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn f16x4(p: *const u8, st: usize) -> __m128 {
    // SAFETY: 16 readable bytes at each of the four addresses (caller).
    let l = |k: usize| unsafe { _mm_loadu_si128(p.add(k * st) as *const __m128i) };
    let h = _mm_unpacklo_epi32(_mm_unpacklo_epi16(l(0), l(1)), _mm_unpacklo_epi16(l(2), l(3)));
    _mm_cvtph_ps(h)
}

/// The f16 pairs at `p`, `p + st`, `p + 2 st`, `p + 3 st` as f32: the first value of each pair in
/// lanes 0..4, the second in lanes 4..8 (the same three unpacks as [`f16x4`], one conversion).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn f16x4x2(p: *const u8, st: usize) -> __m256 {
    // SAFETY: 16 readable bytes at each of the four addresses (caller).
    let l = |k: usize| unsafe { _mm_loadu_si128(p.add(k * st) as *const __m128i) };
    let h = _mm_unpacklo_epi32(_mm_unpacklo_epi16(l(0), l(1)), _mm_unpacklo_epi16(l(2), l(3)));
    _mm256_cvtph_ps(h)
}

/// `lo` plus 16 in the bytes whose bit is set in the 32-bit little-endian mask at `qh` (the
/// fifth bits of a Q5 block). The mask is loaded straight into a mask register (a load-port uop;
/// LLVM otherwise reuses a vector load of the same bytes and moves them over a general register,
/// three uops of which `kmovd k, r32` takes port 5) and added by one merge-masked `vpaddb`
/// (LLVM splits `_mm256_mask_add_epi8` into `vpor` + a masked move).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn add16_where(lo: __m256i, qh: *const u8, sixteen: __m256i) -> __m256i {
    let mut v = lo;
    // SAFETY: the caller guarantees 4 readable bytes at `qh`; the asm reads only those, writes a
    // scratch mask register and `v`, and needs the AVX-512BW/VL this function is compiled for.
    unsafe {
        core::arch::asm!(
            "kmovd {k}, dword ptr [{p}]",
            "vpaddb {v} {{{k}}}, {v}, {s}",
            p = in(reg) qh, k = out(kreg) _, v = inout(ymm_reg) v, s = in(ymm_reg) sixteen,
            options(pure, readonly, nostack, preserves_flags),
        )
    };
    v
}

/// Two blocks' 8 x i32 partial sums folded into one float vector: even lanes hold block `a`'s
/// sums, odd lanes block `b`'s (exact integer adds, then one conversion).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn fold_pair(a: __m256i, b: __m256i) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_unpacklo_epi32(a, b), _mm256_unpackhi_epi32(a, b)))
}

/// Horizontal sum of 8 i32 (exact: block sums stay far below 2^31).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn hsum_epi32(v: __m256i) -> i32 {
    _mm512_reduce_add_epi32(_mm512_zextsi256_si512(v))
}

/// `|x|` and `y` with the sign of `x`, summed by fours: signed x signed bytes (exact for
/// -127..=127; ggml's quantizers and codebooks never give -128).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn dot_signed(x: __m256i, y: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
}

/// A 32-value weight block format dotted with Q8_0 (or Q8_1) by [`blocks4_gen`].
pub(super) trait Block32 {
    /// Bytes per weight block.
    const SIZE: usize;
    /// Bytes per activation block: 34 (Q8_0) or 36 (Q8_1: f16 `d`, f16 `s = d * sum(q)`); the
    /// 32 quants are the last 32 bytes.
    const ACT: usize = Q80;
    /// Whether the block starts with f16 `d` and f16 `m` (Q4_1 / Q5_1) and the dot product is
    /// `d_w d_a sum(q y) + m_w s_a` against Q8_1 (`ACT` = 36).
    const MIN: bool = false;
    /// A block's values as the kernel keeps them between activation rows.
    type Vals: Copy;
    /// Build the constants (codebooks) once per call.
    ///
    /// # Safety
    /// The AVX-512 level's features are available.
    unsafe fn new() -> Self;
    /// The f32 scales of the four blocks at `x`, `x + SIZE`, ...
    ///
    /// # Safety
    /// Four whole blocks at `x`.
    unsafe fn scales4(&self, x: *const u8) -> __m128;
    /// The f32 scale of the block at `x`.
    ///
    /// # Safety
    /// One whole block at `x`.
    unsafe fn scale1(&self, x: *const u8) -> f32;
    /// Decode the block at `x`.
    ///
    /// # Safety
    /// One whole block at `x`.
    unsafe fn decode(&self, x: *const u8) -> Self::Vals;
    /// The block's values times the 32 activation bytes at `y`, summed by fours (8 x i32).
    ///
    /// # Safety
    /// 32 readable bytes at `y`.
    unsafe fn dot(&self, v: &Self::Vals, y: *const u8) -> __m256i;
}

/// Q8_0 activation block bytes.
const Q80: usize = 34;

/// `R` dot products of one weight row (blocks of `K`) with `R` Q8_0 (Q8_1 when `K::ACT` = 36)
/// rows `arow` bytes apart. Four blocks per step: block `4s + j` goes to accumulator `j / 2`
/// through [`fold_pair`]; with `K::MIN` the four `m_w s_a` go to lanes 4..8 of `accm`, converted
/// with the scales by one `vcvtph2ps ymm`. The last `nb % 4` blocks are added one by one after
/// the horizontal sums. Every row goes through the same float operations whatever `R` is.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) unsafe fn blocks4_gen<K: Block32, const R: usize>(n: usize, w: &[u8], a: &[u8], arow: usize, out: &mut [f32; R]) {
    let nb = n / 32;
    // SAFETY (whole function): the caller guarantees `w` = `nb` blocks of `K` and `a` = `R`
    // rows of `nb` Q8_0 blocks, `arow` bytes apart; every access below is inside block
    // `i + j < nb` of those rows.
    let k = unsafe { K::new() };
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let (act, aq) = (K::ACT, K::ACT - 32);
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    let mut accm = [_mm256_setzero_ps(); R];
    let mut buf = [[0f32; 8]; R];
    let mut i = 0;
    while i + 4 <= nb {
        // SAFETY: blocks i..i+4 of the weight row and of every activation row (see above).
        unsafe {
            let x = wp.add(K::SIZE * i);
            // [d; 4] (or [d; 4, m; 4] with MIN) of the four weight blocks.
            let dx = if K::MIN { f16x4x2(x, K::SIZE) } else { _mm256_castps128_ps256(k.scales4(x)) };
            let v: [K::Vals; 4] = core::array::from_fn(|j| k.decode(x.add(K::SIZE * j)));
            for (r, (accr, b)) in acc.iter_mut().zip(buf.iter_mut()).enumerate() {
                let y = ap.add(r * arow + act * i);
                if K::MIN {
                    let p = _mm256_mul_ps(dx, f16x4x2(y, act));
                    accm[r] = _mm256_add_ps(accm[r], p);
                    _mm256_storeu_ps(b.as_mut_ptr(), p);
                } else {
                    _mm_storeu_ps(b.as_mut_ptr(), _mm_mul_ps(_mm256_castps256_ps128(dx), f16x4(y, act)));
                }
                let p: [__m256i; 4] = core::array::from_fn(|j| k.dot(&v[j], y.add(act * j + aq)));
                accr[0] = _mm256_fmadd_ps(bcast_pair(b.as_ptr()), fold_pair(p[0], p[1]), accr[0]);
                accr[1] = _mm256_fmadd_ps(bcast_pair(b.as_ptr().add(2)), fold_pair(p[2], p[3]), accr[1]);
            }
        }
        i += 4;
    }
    for (r, o) in out.iter_mut().enumerate() {
        let mut s = hsum512(_mm512_castps256_ps512(_mm256_add_ps(acc[r][0], acc[r][1])));
        if K::MIN {
            s += hsum128(_mm256_extractf128_ps(accm[r], 1));
        }
        for j in i..nb {
            // SAFETY: block j < nb of the weight row and of activation row r (see above).
            unsafe {
                let (x, y) = (wp.add(K::SIZE * j), ap.add(r * arow + act * j));
                let p = k.dot(&k.decode(x), y.add(aq));
                s += k.scale1(x) * f16_at(y) * hsum_epi32(p) as f32;
                if K::MIN {
                    s += f16_at(x.add(2)) * f16_at(y.add(2));
                }
            }
        }
        *o = s;
    }
}

/// Q8_0 weights: signed bytes at 2.
struct Q8_0;

impl Block32 for Q8_0 {
    const SIZE: usize = 34;
    type Vals = __m256i;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn new() -> Self {
        Q8_0
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn scales4(&self, x: *const u8) -> __m128 {
        // SAFETY: four blocks at `x` (caller).
        unsafe { f16x4(x, 34) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn scale1(&self, x: *const u8) -> f32 {
        // SAFETY: one block at `x` (caller).
        unsafe { f16_at(x) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn decode(&self, x: *const u8) -> __m256i {
        // SAFETY: one block at `x` (caller).
        unsafe { load256(x.add(2)) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn dot(&self, v: &__m256i, y: *const u8) -> __m256i {
        // SAFETY: 32 bytes at `y` (caller).
        dot_signed(*v, unsafe { load256(y) })
    }
}

/// Q4_0 weights: f16 scale, 16 bytes of nibbles, value `q - 8`.
struct Q4_0 {
    eight: __m256i,
}

impl Block32 for Q4_0 {
    const SIZE: usize = 18;
    type Vals = __m256i;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn new() -> Self {
        Q4_0 { eight: _mm256_set1_epi8(8) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn scales4(&self, x: *const u8) -> __m128 {
        // SAFETY: four blocks at `x` (caller; 16 bytes from each block start stay inside it).
        unsafe { f16x4(x, 18) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn scale1(&self, x: *const u8) -> f32 {
        // SAFETY: one block at `x` (caller).
        unsafe { f16_at(x) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn decode(&self, x: *const u8) -> __m256i {
        // SAFETY: one block at `x` (caller).
        unsafe { nibbles_bcast(x.add(2)) }
    }
    /// `sum(q y) - 8 sum(y)`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn dot(&self, v: &__m256i, y: *const u8) -> __m256i {
        // SAFETY: 32 bytes at `y` (caller).
        let yv = unsafe { load256(y) };
        let z = _mm256_setzero_si256();
        _mm256_sub_epi32(_mm256_dpbusd_epi32(z, *v, yv), _mm256_dpbusd_epi32(z, self.eight, yv))
    }
}

/// Q5_0 weights: f16 scale, 32 fifth bits, 16 bytes of nibbles; value `q - 16`.
struct Q5_0 {
    sixteen: __m256i,
}

impl Block32 for Q5_0 {
    const SIZE: usize = 22;
    type Vals = __m256i;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn new() -> Self {
        Q5_0 { sixteen: _mm256_set1_epi8(16) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn scales4(&self, x: *const u8) -> __m128 {
        // SAFETY: four blocks at `x` (caller; 16 bytes from each block start stay inside them).
        unsafe { f16x4(x, 22) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn scale1(&self, x: *const u8) -> f32 {
        // SAFETY: one block at `x` (caller).
        unsafe { f16_at(x) }
    }
    /// `q` in 0..32: the nibbles plus 16 where the block's fifth bit is set (a masked add).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn decode(&self, x: *const u8) -> __m256i {
        // SAFETY: one block at `x` (caller): qh at 2..6, nibbles at 6..22.
        unsafe { add16_where(nibbles_bcast(x.add(6)), x.add(2), self.sixteen) }
    }
    /// `sum(q y) - 16 sum(y)`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn dot(&self, v: &__m256i, y: *const u8) -> __m256i {
        // SAFETY: 32 bytes at `y` (caller).
        let yv = unsafe { load256(y) };
        let z = _mm256_setzero_si256();
        _mm256_sub_epi32(_mm256_dpbusd_epi32(z, *v, yv), _mm256_dpbusd_epi32(z, self.sixteen, yv))
    }
}

/// Q5_1 weights against Q8_1: f16 `d`, f16 `m`, 32 fifth bits, 16 bytes of nibbles; value
/// `d q + m` with `q` in 0..32 (unsigned, so one `vpdpbusd` per block).
struct Q5_1 {
    sixteen: __m256i,
}

impl Block32 for Q5_1 {
    const SIZE: usize = 24;
    const ACT: usize = 36;
    const MIN: bool = true;
    type Vals = __m256i;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn new() -> Self {
        Q5_1 { sixteen: _mm256_set1_epi8(16) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn scales4(&self, x: *const u8) -> __m128 {
        // SAFETY: four blocks at `x` (caller; 16 bytes from each block start stay inside them).
        unsafe { f16x4(x, 24) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn scale1(&self, x: *const u8) -> f32 {
        // SAFETY: one block at `x` (caller).
        unsafe { f16_at(x) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn decode(&self, x: *const u8) -> __m256i {
        // SAFETY: one block at `x` (caller): qh at 4..8, nibbles at 8..24.
        unsafe { add16_where(nibbles_bcast(x.add(8)), x.add(4), self.sixteen) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn dot(&self, v: &__m256i, y: *const u8) -> __m256i {
        // SAFETY: 32 bytes at `y` (caller).
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), *v, unsafe { load256(y) })
    }
}

/// IQ4_NL weights: f16 scale, 16 bytes of nibbles indexing the codebook.
struct Iq4Nl {
    tbl: __m256i,
}

impl Block32 for Iq4Nl {
    const SIZE: usize = 18;
    type Vals = __m256i;
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn new() -> Self {
        // SAFETY: the table has 16 bytes.
        Iq4Nl { tbl: _mm256_broadcastsi128_si256(unsafe { _mm_loadu_si128(KVALUES_IQ4NL.as_ptr() as *const __m128i) }) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn scales4(&self, x: *const u8) -> __m128 {
        // SAFETY: four blocks at `x` (caller).
        unsafe { f16x4(x, 18) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn scale1(&self, x: *const u8) -> f32 {
        // SAFETY: one block at `x` (caller).
        unsafe { f16_at(x) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn decode(&self, x: *const u8) -> __m256i {
        // SAFETY: one block at `x` (caller).
        _mm256_shuffle_epi8(self.tbl, unsafe { nibbles_bcast(x.add(2)) })
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn dot(&self, v: &__m256i, y: *const u8) -> __m256i {
        // SAFETY: 32 bytes at `y` (caller).
        dot_signed(*v, unsafe { load256(y) })
    }
}

/// Defines a single-row kernel `$one` and a [`DOT_ROWS`]-row kernel `$rows` as the instances
/// `R = 1` and `R = DOT_ROWS` of [`blocks4_gen`] for block type `$k`.
macro_rules! blocks4_kernels {
    ($(#[$m:meta])* $k:ty => $one:ident, $rows:ident) => {
        kernel! {
            $(#[$m])*
            fn $one(n: usize, w: &[u8], a: &[u8]) -> f32 {
                let mut o = [0f32; 1];
                // SAFETY: same features; one activation row of `a.len()` bytes.
                unsafe { blocks4_gen::<$k, 1>(n, w, a, a.len(), &mut o) };
                o[0]
            }
        }
        kernel! {
            /// The multi-row instance of the same generic kernel.
            #[allow(dead_code)] // not every type installs its multi-row instance
            fn $rows(n: usize, w: &[u8], a: &[u8], out: &mut [f32; DOT_ROWS]) {
                // SAFETY: same features; `a` holds DOT_ROWS rows (caller).
                unsafe { blocks4_gen::<$k, DOT_ROWS>(n, w, a, a.len() / DOT_ROWS, out) }
            }
        }
    };
}
pub(super) use blocks4_kernels;

blocks4_kernels! {
    /// Q8_0 x Q8_0.
    Q8_0 => dot_q8_0, rows_q8_0
}

blocks4_kernels! {
    /// Q4_0 x Q8_0.
    Q4_0 => dot_q4_0, rows_q4_0
}

blocks4_kernels! {
    /// Q5_0 x Q8_0.
    Q5_0 => dot_q5_0, rows_q5_0
}

blocks4_kernels! {
    /// Q5_1 x Q8_1.
    Q5_1 => dot_q5_1, rows_q5_1
}

blocks4_kernels! {
    /// IQ4_NL x Q8_0.
    Iq4Nl => dot_iq4_nl, rows_iq4_nl
}

/// Q4_1 x `R` Q8_1 rows in ggml's AVX2 `vec_dot` order, bit for bit what the AVX2 kernel
/// [`super::avx2::dot_q4_1`] gives: per block `acc = fma(d_w d_a, sum(q y), acc)` in 8 float
/// lanes (lane `j` = values `4j..4j+4`) and `m_w s_a` added to `summs` in block order. Faster
/// only in how it gets there: the scale pairs are converted straight from memory, the product is
/// broadcast by a load (`avx2::bcast1`) and the nibbles unpacked by `avx2::nibbles_bcast`.
///
/// The conversions read 8 bytes at each block start: `[d_w, m_w]` plus two quant bytes, and
/// `[d_a, s_a]` plus two activation bytes. Only lanes 0 and 1 of their product are used; the
/// other two hold whatever those bytes give (never a subnormal f32: f16 magnitudes are at
/// least 2^-24, so products are at least 2^-48).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn q4_1_gen<const R: usize>(n: usize, w: &[u8], a: &[u8], arow: usize, out: &mut [f32; R]) {
    let nb = n / 32;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let z = _mm256_setzero_si256();
    let mut acc = [_mm256_setzero_ps(); R];
    let mut summs = [_mm_setzero_ps(); R];
    let mut buf = [[0f32; 4]; R];
    for i in 0..nb {
        // SAFETY: block i (20 bytes of Q4_1, 36 of Q8_1) is inside the weight row and every
        // activation row (lengths guaranteed by the caller).
        unsafe {
            let x = wp.add(20 * i);
            let fx = _mm_cvtph_ps(_mm_loadl_epi64(x as *const __m128i));
            let q = nibbles_bcast(x.add(4));
            for r in 0..R {
                let y = ap.add(r * arow + 36 * i);
                // [d_w d_a, m_w s_a, -, -]
                let p = _mm_mul_ps(fx, _mm_cvtph_ps(_mm_loadl_epi64(y as *const __m128i)));
                summs[r] = _mm_add_ps(summs[r], p);
                _mm_storeu_ps(buf[r].as_mut_ptr(), p);
                let pr = _mm256_dpbusd_epi32(z, q, load256(y.add(4)));
                acc[r] = _mm256_fmadd_ps(bcast1(buf[r].as_ptr()), _mm256_cvtepi32_ps(pr), acc[r]);
            }
        }
    }
    for r in 0..R {
        out[r] = super::avx2::hsum_ps(acc[r]) + _mm_cvtss_f32(_mm_movehdup_ps(summs[r]));
    }
}

one_and_rows! {
    /// Q4_1 x Q8_1 (ggml's order, see [`q4_1_gen`]).
    q4_1_gen => dot_q4_1, rows_q4_1
}

// ---------------------------------------------------------------------------------------------
// K-quants against Q8_K: 256-bit AVX-512VL + VNNI.
//
// Each 32 weight bytes are dotted with 32 activation bytes by one `vpdpbusd` into 8 i32 lanes
// of four products each. For these types a lane fits in i16 (|lane| <= 4 * 63 * 127 = 32004
// for Q6_K's six-bit values, less for the others), so two such vectors are narrowed with one
// `vpackssdw` (exact) and multiplied by their scales and summed into the i32 accumulator with
// one `vpdpwssd`: three uops per 64 values where AVX2 spends `maddubs` + `madd` + a scale
// shuffle per 32. Bit fields are merged with `vpternlogd` (one uop for `and`+`or`). 256-bit
// vectors, not 512: on Sapphire Rapids 256-bit integer uops issue on three ports, 512-bit on
// two. Integer sums are exact; float accumulation differs from the scalar reference only in
// order (bounds in tests/simd_kernels.rs).

use super::avx2::{f32_at, hsum128, hsum_ps, k4_mins_acc, q3k_scales, Q8K};

/// `vpternlogd` truth table of `(a & c) | (b & !c)`: bits of `a` where `c` is set, else `b`.
const SELECT: i32 = 0xE4;
/// `vpternlogd` truth table of `(a & c) | b`.
const AND_OR: i32 = 0xEC;

/// Per-4 dot products of two 32-byte chunks (`u8` weights `w0`, `w1` against `i8` activations
/// at `y0`, `y1`), narrowed to i16 with `vpackssdw`: in each 128-bit half, four lanes of chunk 0
/// then four of chunk 1. Exact when every lane fits in i16 (see the section note).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn dot_pair(w0: __m256i, y0: *const u8, w1: __m256i, y1: *const u8) -> __m256i {
    let z = _mm256_setzero_si256();
    // SAFETY: 32 readable bytes at `y0` and `y1` (caller).
    let (a, b) = unsafe { (load256(y0), load256(y1)) };
    _mm256_packs_epi32(_mm256_dpbusd_epi32(z, w0, a), _mm256_dpbusd_epi32(z, w1, b))
}

/// `vpshufb` control taking, in every 128-bit half, i16 element `e0` of that half to the four
/// words 0..4 and element `e1` to words 4..8 (the layout of [`dot_pair`]), with `e0 + lo` and
/// `e1 + lo` in the low half and `e0 + hi`, `e1 + hi` in the high half.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn pair_scale_shuffle(e0: usize, e1: usize, lo: usize, hi: usize) -> __m256i {
    let word = |e: usize| {
        let b = (2 * e) as i16;
        b | (b + 1) << 8
    };
    let half = |d: usize| {
        let (a, b) = (word(e0 + d), word(e1 + d));
        _mm_setr_epi16(a, a, a, a, b, b, b, b)
    };
    _mm256_set_m128i(half(hi), half(lo))
}

/// `vpshufb` control making i16 words of unsigned bytes (the high byte zeroed): in the low
/// 128-bit half, byte `l0` to words 0..4 and `l1` to words 4..8; in the high half `h0`, `h1`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn pair_byte_shuffle(l0: usize, l1: usize, h0: usize, h1: usize) -> __m256i {
    // Control byte 0x80 writes a zero.
    let word = |b: usize| (b as i16) | (0x80 << 8);
    let half = |a: usize, b: usize| {
        let (a, b) = (word(a), word(b));
        _mm_setr_epi16(a, a, a, a, b, b, b, b)
    };
    _mm256_set_m128i(half(h0, h1), half(l0, l1))
}

/// The 8 six-bit scales and 8 mins of a Q4_K/Q5_K block as bytes `[scales, mins]`, unpacked
/// in vector registers from the 12 scale bytes at `p` (16 bytes are read: the caller
/// guarantees 4 more readable bytes after the 12). The same bit layout as
/// `crate::simd::k4_scale_words`, one 32-bit lane per word.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn k4_scales_mins_bytes(p: *const u8) -> __m128i {
    // SAFETY: 16 readable bytes at `p` (caller).
    let v = unsafe { _mm_loadu_si128(p as *const __m128i) };
    // Words a, b, c of the 12 bytes: lanes [a, c, b, c >> 4] and [_, a >> 2, _, b >> 2].
    let x = _mm_srlv_epi32(_mm_shuffle_epi32(v, 0b10_01_10_00), _mm_setr_epi32(0, 0, 0, 4));
    let y = _mm_srli_epi32(_mm_shuffle_epi32(v, 0b01_01_00_00), 2);
    // scales 0..4: a & 0x3f; scales 4..8: (c & 0x0f) | (a >> 6) << 4; mins likewise from b, c >> 4.
    let m1 = _mm_setr_epi32(0x3f3f_3f3f, 0x0f0f_0f0f, 0x3f3f_3f3f, 0x0f0f_0f0f);
    let m2 = _mm_setr_epi32(0, 0x3030_3030, 0, 0x3030_3030);
    _mm_or_si128(_mm_and_si128(x, m1), _mm_and_si128(y, m2))
}

/// Q6_K x `R` Q8_K rows: `q = (4 low bits | 2 high bits << 4) - 32`, computed as
/// `sum(sc * q6 * y) - 32 * sum(sc * bsum)` per super-block and reduced exactly in integers
/// before the float multiply (the lanes carry the large `-32` offset; converting them one by
/// one would round away the cancellation).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn q6_k_gen<const R: usize>(n: usize, w: &[u8], a: &[u8], arow: usize, out: &mut [f32; R]) {
    let nb = n / 256;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let m4 = _mm256_set1_epi8(0x0f);
    let m33 = _mm256_set1_epi8(0x33);
    // Chunk k of a 128-value half covers scales 2k (low 16 values) and 2k + 1 (high 16).
    let shuf = [pair_scale_shuffle(0, 2, 0, 1), pair_scale_shuffle(4, 6, 0, 1)];
    // Super-blocks are reduced in pairs: the even block's exact i32 lanes wait in `pend` (its
    // `d` in `dpend`), and with the odd block's they are summed by two `vphaddd` into two exact
    // i32 sums, converted and multiply-added into float lanes 0 and 1 of `acc`.
    let mut acc = [_mm_setzero_ps(); R];
    let mut pend = [_mm256_setzero_si256(); R];
    let mut dpend = [0f32; R];
    for i in 0..nb {
        // SAFETY: super-block i (210 bytes of Q6_K, 292 of Q8_K) is inside the weight row and
        // every activation row.
        unsafe {
            let x = wp.add(210 * i);
            let sc = _mm256_cvtepi8_epi16(_mm_loadu_si128(x.add(192) as *const __m128i));
            let dw = f16_at(x.add(208));
            // Per half: the four 32-value groups (six-bit values) and the two scale vectors.
            let mut g = [[_mm256_setzero_si256(); 4]; 2];
            let mut s = [[_mm256_setzero_si256(); 2]; 2];
            // Both 128-bit halves hold scales 0..8 (first half) or 8..16 (second).
            let scl = [_mm256_permute2x128_si256(sc, sc, 0x00), _mm256_permute2x128_si256(sc, sc, 0x11)];
            for h in 0..2 {
                let ql = x.add(64 * h);
                let qh = load256(x.add(128 + 32 * h));
                let (q0, q1) = (load256(ql), load256(ql.add(32)));
                // High-bit pairs 0 and 2 (b0), 1 and 3 (b1) at bits 0-1 and 4-5 of each byte.
                let b0 = _mm256_and_si256(qh, m33);
                let b1 = _mm256_and_si256(_mm256_srli_epi16(qh, 2), m33);
                // A 16-bit shift moves bits across bytes only into the nibble `SELECT`
                // takes from the other operand.
                g[h] = [
                    _mm256_ternarylogic_epi32(q0, _mm256_slli_epi16(b0, 4), m4, SELECT),
                    _mm256_ternarylogic_epi32(q1, _mm256_slli_epi16(b1, 4), m4, SELECT),
                    _mm256_ternarylogic_epi32(_mm256_srli_epi16(q0, 4), b0, m4, SELECT),
                    _mm256_ternarylogic_epi32(_mm256_srli_epi16(q1, 4), b1, m4, SELECT),
                ];
                s[h] = [_mm256_shuffle_epi8(scl[h], shuf[0]), _mm256_shuffle_epi8(scl[h], shuf[1])];
            }
            for (r, accr) in acc.iter_mut().enumerate() {
                let y = ap.add(r * arow + Q8K * i);
                let off = _mm256_madd_epi16(sc, load256(y.add(260)));
                let mut sumi = _mm256_setzero_si256();
                for h in 0..2 {
                    let yb = y.add(4 + 128 * h);
                    sumi = _mm256_dpwssd_epi32(sumi, dot_pair(g[h][0], yb, g[h][1], yb.add(32)), s[h][0]);
                    sumi = _mm256_dpwssd_epi32(sumi, dot_pair(g[h][2], yb.add(64), g[h][3], yb.add(96)), s[h][1]);
                }
                let d = f32_at(y) * dw;
                let sum = _mm256_sub_epi32(sumi, _mm256_slli_epi32(off, 5));
                if i % 2 == 0 {
                    (pend[r], dpend[r]) = (sum, d);
                } else {
                    *accr = pair_exact_acc(pend[r], dpend[r], sum, d, *accr);
                }
            }
        }
    }
    for r in 0..R {
        out[r] = pair_exact_finish(acc[r], nb, pend[r], dpend[r]);
    }
}

/// `acc[0] += da * sum(a)`, `acc[1] += db * sum(b)` with the two i32 sums exact (two
/// `vphaddd`), for kernels whose lanes must not be converted to float one by one.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn pair_exact_acc(a: __m256i, da: f32, b: __m256i, db: f32, acc: __m128) -> __m128 {
    let t = _mm256_hadd_epi32(a, b);
    let t = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
    let t = _mm_hadd_epi32(t, t);
    _mm_fmadd_ps(_mm_setr_ps(da, db, 0.0, 0.0), _mm_cvtepi32_ps(t), acc)
}

/// The row total of a [`pair_exact_acc`] accumulator over `nb` blocks: lanes 0 + 1, plus the
/// unpaired last block `d * sum(pend)` when `nb` is odd.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn pair_exact_finish(acc: __m128, nb: usize, pend: __m256i, d: f32) -> f32 {
    let mut s = _mm_cvtss_f32(acc) + _mm_cvtss_f32(_mm_movehdup_ps(acc));
    if nb % 2 == 1 {
        s += d * hsum_epi32(pend) as f32;
    }
    s
}

one_and_rows! {
    /// Q6_K x Q8_K.
    q6_k_gen => dot_q6_k, rows_q6_k
}

/// Q4_K (`Q5 = false`) and Q5_K x `R` Q8_K rows: `d * sc * q - dmin * m` per 32 values, the
/// min term from the Q8_K per-16 sums.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn q45_k_gen<const R: usize, const Q5: bool>(n: usize, w: &[u8], a: &[u8], arow: usize, out: &mut [f32; R]) {
    let nb = n / 256;
    let bsize = if Q5 { 176 } else { 144 };
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let m4 = _mm256_set1_epi8(0x0f);
    let bit4 = _mm256_set1_epi8(0x10);
    // Byte pair j holds sub-blocks 2j (low nibbles) and 2j + 1 (high nibbles).
    let shuf: [__m256i; 4] = core::array::from_fn(|j| pair_byte_shuffle(2 * j, 2 * j + 1, 2 * j, 2 * j + 1));
    let mut acc = [_mm256_setzero_ps(); R];
    let mut accm = [_mm_setzero_ps(); R];
    for i in 0..nb {
        // SAFETY: super-block i (`bsize` bytes, 292 of Q8_K) is inside the weight row and every
        // activation row.
        unsafe {
            let x = wp.add(bsize * i);
            // 16 bytes from offset 4 end inside the block's quants.
            let sm = k4_scales_mins_bytes(x.add(4));
            let (sc, mins) = (_mm256_broadcastsi128_si256(sm), _mm_cvtepu8_epi16(_mm_unpackhi_epi64(sm, sm)));
            let (dw, dminw) = (f16_at(x), f16_at(x.add(2)));
            let qs = x.add(if Q5 { 48 } else { 16 });
            // Q5_K: the fifth bit of value l of sub-block k is bit k of qh[l]; `hb` is
            // shifted right by 2 per byte pair (16-bit shifts never carry a neighbouring byte's
            // bits into bits 0 and 1 within the four steps).
            let mut hb = if Q5 { load256(x.add(16)) } else { _mm256_setzero_si256() };
            let mut q = [[_mm256_setzero_si256(); 2]; 4];
            for (j, qj) in q.iter_mut().enumerate() {
                let qb = load256(qs.add(32 * j));
                *qj = if Q5 {
                    let (h0, h1) = (_mm256_slli_epi16(hb, 4), _mm256_slli_epi16(hb, 3));
                    hb = _mm256_srli_epi16(hb, 2);
                    [
                        _mm256_ternarylogic_epi32(qb, _mm256_and_si256(h0, bit4), m4, AND_OR),
                        _mm256_ternarylogic_epi32(_mm256_srli_epi16(qb, 4), _mm256_and_si256(h1, bit4), m4, AND_OR),
                    ]
                } else {
                    [_mm256_and_si256(qb, m4), _mm256_and_si256(_mm256_srli_epi16(qb, 4), m4)]
                };
            }
            let s: [__m256i; 4] = core::array::from_fn(|j| _mm256_shuffle_epi8(sc, shuf[j]));
            for r in 0..R {
                let y = ap.add(r * arow + Q8K * i);
                let yd = f32_at(y);
                accm[r] = k4_mins_acc(y, mins, yd * dminw, accm[r]);
                let mut sumi = _mm256_setzero_si256();
                for j in 0..4 {
                    let yb = y.add(4 + 64 * j);
                    sumi = _mm256_dpwssd_epi32(sumi, dot_pair(q[j][0], yb, q[j][1], yb.add(32)), s[j]);
                }
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(yd * dw), _mm256_cvtepi32_ps(sumi), acc[r]);
            }
        }
    }
    for r in 0..R {
        out[r] = hsum_ps(acc[r]) - hsum128(accm[r]);
    }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn q4_k_gen<const R: usize>(n: usize, w: &[u8], a: &[u8], arow: usize, out: &mut [f32; R]) {
    // SAFETY: same features and contract.
    unsafe { q45_k_gen::<R, false>(n, w, a, arow, out) }
}

one_and_rows! {
    /// Q4_K x Q8_K.
    q4_k_gen => dot_q4_k, rows_q4_k
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn q5_k_gen<const R: usize>(n: usize, w: &[u8], a: &[u8], arow: usize, out: &mut [f32; R]) {
    // SAFETY: same features and contract.
    unsafe { q45_k_gen::<R, true>(n, w, a, arow, out) }
}

one_and_rows! {
    /// Q5_K x Q8_K.
    q5_k_gen => dot_q5_k, rows_q5_k
}

/// Q2_K x `R` Q8_K rows: `d * sc * q - dmin * m` per 16 values, 2-bit q, 4-bit scales and mins.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn q2_k_gen<const R: usize>(n: usize, w: &[u8], a: &[u8], arow: usize, out: &mut [f32; R]) {
    let nb = n / 256;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let m3 = _mm256_set1_epi8(3);
    // Half h, chunk pair (k, k + 1): scales 8h + 2k and 8h + 2k + 2 (low 16 values of each
    // chunk), 8h + 2k + 1 and 8h + 2k + 3 (high 16), taken as bytes.
    let shuf: [[__m256i; 2]; 2] = core::array::from_fn(|h| {
        core::array::from_fn(|p| {
            let b = 8 * h + 4 * p;
            pair_byte_shuffle(b, b + 2, b + 1, b + 3)
        })
    });
    let mut acc = [_mm256_setzero_ps(); R];
    let mut accm = [_mm256_setzero_ps(); R];
    for i in 0..nb {
        // SAFETY: super-block i (84 bytes of Q2_K, 292 of Q8_K) is inside the weight row and
        // every activation row.
        unsafe {
            let x = wp.add(84 * i);
            let sb = _mm_loadu_si128(x as *const __m128i);
            // The 16 four-bit scales as bytes in both 128-bit halves.
            let sc = _mm256_and_si256(_mm256_broadcastsi128_si256(sb), _mm256_set1_epi8(0x0f));
            let mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sb, 4), _mm_set1_epi8(0x0f)));
            let (dw, dminw) = (f16_at(x.add(80)), f16_at(x.add(82)));
            let mut q = [[_mm256_setzero_si256(); 4]; 2];
            let mut s = [[_mm256_setzero_si256(); 2]; 2];
            for h in 0..2 {
                let qb = load256(x.add(16 + 32 * h));
                q[h] = [
                    _mm256_and_si256(qb, m3),
                    _mm256_and_si256(_mm256_srli_epi16(qb, 2), m3),
                    _mm256_and_si256(_mm256_srli_epi16(qb, 4), m3),
                    _mm256_and_si256(_mm256_srli_epi16(qb, 6), m3),
                ];
                s[h] = [_mm256_shuffle_epi8(sc, shuf[h][0]), _mm256_shuffle_epi8(sc, shuf[h][1])];
            }
            for r in 0..R {
                let y = ap.add(r * arow + Q8K * i);
                let yd = f32_at(y);
                let m = _mm256_madd_epi16(mins, load256(y.add(260)));
                accm[r] = _mm256_fmadd_ps(_mm256_set1_ps(yd * dminw), _mm256_cvtepi32_ps(m), accm[r]);
                let mut sumi = _mm256_setzero_si256();
                for h in 0..2 {
                    let yb = y.add(4 + 128 * h);
                    sumi = _mm256_dpwssd_epi32(sumi, dot_pair(q[h][0], yb, q[h][1], yb.add(32)), s[h][0]);
                    sumi = _mm256_dpwssd_epi32(sumi, dot_pair(q[h][2], yb.add(64), q[h][3], yb.add(96)), s[h][1]);
                }
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(yd * dw), _mm256_cvtepi32_ps(sumi), acc[r]);
            }
        }
    }
    for r in 0..R {
        out[r] = hsum_ps(acc[r]) - hsum_ps(accm[r]);
    }
}

one_and_rows! {
    /// Q2_K x Q8_K.
    q2_k_gen => dot_q2_k, rows_q2_k
}

/// Q3_K x `R` Q8_K rows: `q = (2 low bits | hmask bit << 2) - 4` with six-bit scales minus 32.
/// The unsigned `q2 | h << 2` (0..=7) goes through `vpdpbusd`; the `-4` is taken from the Q8_K
/// per-16 sums as `-4 * sum(sc * bsum)`, all in exact i32 up to the block sum.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn q3_k_gen<const R: usize>(n: usize, w: &[u8], a: &[u8], arow: usize, out: &mut [f32; R]) {
    let nb = n / 256;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let m3 = _mm256_set1_epi8(3);
    let m4 = _mm256_set1_epi8(4);
    let shuf = [pair_scale_shuffle(0, 2, 0, 1), pair_scale_shuffle(4, 6, 0, 1)];
    // Exact i32 block sums, paired as in Q6_K: the lanes carry parts of the `-4` offset that
    // cancel only in the total.
    let mut acc = [_mm_setzero_ps(); R];
    let mut pend = [_mm256_setzero_si256(); R];
    let mut dpend = [0f32; R];
    for i in 0..nb {
        // SAFETY: super-block i (110 bytes of Q3_K, 292 of Q8_K) is inside the weight row and
        // every activation row.
        unsafe {
            let x = wp.add(110 * i);
            let dw = f16_at(x.add(108));
            let sc = q3k_scales(x.add(96));
            let scl = [_mm256_permute2x128_si256(sc, sc, 0x00), _mm256_permute2x128_si256(sc, sc, 0x11)];
            let hm = load256(x);
            let mut q = [[_mm256_setzero_si256(); 4]; 2];
            let mut s = [[_mm256_setzero_si256(); 2]; 2];
            for h in 0..2 {
                let qb = load256(x.add(32 + 32 * h));
                // hmask bit k (half 0) or k + 4 (half 1) of byte l belongs to value l of chunk k.
                let hmh = if h == 0 { hm } else { _mm256_srli_epi16(hm, 4) };
                let hb = [_mm256_slli_epi16(hmh, 2), _mm256_slli_epi16(hmh, 1), hmh, _mm256_srli_epi16(hmh, 1)];
                let q2 = [qb, _mm256_srli_epi16(qb, 2), _mm256_srli_epi16(qb, 4), _mm256_srli_epi16(qb, 6)];
                q[h] = core::array::from_fn(|k| _mm256_ternarylogic_epi32(q2[k], _mm256_and_si256(hb[k], m4), m3, AND_OR));
                s[h] = [_mm256_shuffle_epi8(scl[h], shuf[0]), _mm256_shuffle_epi8(scl[h], shuf[1])];
            }
            for r in 0..R {
                let y = ap.add(r * arow + Q8K * i);
                let d = f32_at(y) * dw;
                let off = _mm256_slli_epi32(_mm256_madd_epi16(sc, load256(y.add(260))), 2);
                let mut sumi = _mm256_sub_epi32(_mm256_setzero_si256(), off);
                for h in 0..2 {
                    let yb = y.add(4 + 128 * h);
                    sumi = _mm256_dpwssd_epi32(sumi, dot_pair(q[h][0], yb, q[h][1], yb.add(32)), s[h][0]);
                    sumi = _mm256_dpwssd_epi32(sumi, dot_pair(q[h][2], yb.add(64), q[h][3], yb.add(96)), s[h][1]);
                }
                if i % 2 == 0 {
                    (pend[r], dpend[r]) = (sumi, d);
                } else {
                    acc[r] = pair_exact_acc(pend[r], dpend[r], sumi, d, acc[r]);
                }
            }
        }
    }
    for r in 0..R {
        out[r] = pair_exact_finish(acc[r], nb, pend[r], dpend[r]);
    }
}

one_and_rows! {
    /// Q3_K x Q8_K.
    q3_k_gen => dot_q3_k, rows_q3_k
}
