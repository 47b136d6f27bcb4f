//! AVX-512 VNNI multi-row kernels for the 32-value block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
//! IQ4_NL): up to 4 weight rows times up to 4 activation rows per pass over the blocks, so each
//! weight block is decoded once for several activations and each activation block is loaded once
//! for several weights.
//!
//! Every weight block is decoded to 32 unsigned bytes `u` with `w = d·(u − off)` (+ `m` for the
//! types with a minimum), two blocks per zmm. `vpdpbusd` multiplies them with the signed
//! activation bytes; the offset is removed exactly in integers (the accumulator starts at
//! `−off·Σa`, from a second `vpdpbusd` of the activations with ones), so the 16 int32 lanes hold
//! exact partial sums of `Σ (u − off)·a` (8 lanes per block). Those are converted to f32 and
//! multiplied by `d_w·d_a` of their block into one f32 accumulator per (weight, activation) pair;
//! Q4_1/Q5_1 add `m_w·s_a` in lane 0 / 8 of their block.
//!
//! Each output's arithmetic depends only on its own weight row and activation row, never on how
//! many rows share a pass: a batch gives bit-for-bit the same values as one row at a time (the
//! forward pass relies on it). Against ggml's `vec_dot` the float rounding differs (ggml scales a
//! block's exact integer sum; here the 8 partial sums of a block are scaled before adding).

use core::arch::x86_64::*;

use super::avx2::KVALUES_IQ4NL;
use crate::simd::GemmFn;
use crate::types::QuantType as T;

/// The multi-row kernels of this level.
///
/// # Safety
/// The caller must have checked AVX-512 F/BW/VL/VNNI and AVX2/FMA/F16C.
pub(crate) unsafe fn gemm_overrides() -> Vec<(T, GemmFn)> {
    vec![
        (T::Q4_0, gemm::<Q4_0> as _),
        (T::Q4_1, super::gemm16_avx512::gemm_q4_1 as _),
        (T::Q5_0, gemm::<Q5_0> as _),
        (T::Q5_1, gemm::<Q5_1> as _),
        (T::Q8_0, gemm::<Q8_0> as _),
        (T::IQ4_NL, gemm::<IQ4NL> as _),
    ]
}

const Q4_0: u8 = 0;
const Q4_1: u8 = 1;
const Q5_0: u8 = 2;
const Q5_1: u8 = 3;
const Q8_0: u8 = 4;
const IQ4NL: u8 = 5;

/// Bytes of one weight block.
const fn block_bytes(kind: u8) -> usize {
    match kind {
        Q4_0 | IQ4NL => 18,
        Q4_1 => 20,
        Q5_0 => 22,
        Q5_1 => 24,
        _ => 34,
    }
}

/// Whether the activations are Q8_1 (36-byte blocks with `s = d·Σa`) rather than Q8_0.
const fn q8_1(kind: u8) -> bool {
    matches!(kind, Q4_1 | Q5_1)
}

/// The offset removed from the decoded unsigned values.
const fn offset(kind: u8) -> i32 {
    match kind {
        Q4_0 => 8,
        Q5_0 => 16,
        Q8_0 | IQ4NL => 128,
        _ => 0,
    }
}

/// # Safety
/// 2 readable bytes at `p`.
#[inline]
unsafe fn read_u16(p: *const u8) -> u32 {
    // SAFETY: by the caller.
    unsafe { core::ptr::read_unaligned(p as *const u16) as u32 }
}

/// # Safety
/// 4 readable bytes at `p`.
#[inline]
unsafe fn read_u32(p: *const u8) -> u32 {
    // SAFETY: by the caller.
    unsafe { core::ptr::read_unaligned(p as *const u32) }
}

/// 16 bytes at `a` and 16 at `b` as `[a, a, b, b]` (128-bit lanes).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn dup16(a: *const u8, b: *const u8) -> __m512i {
    // SAFETY: the caller guarantees 16 readable bytes at both.
    unsafe {
        let lo = _mm256_broadcastsi128_si256(_mm_loadu_si128(a as *const __m128i));
        let hi = _mm256_broadcastsi128_si256(_mm_loadu_si128(b as *const __m128i));
        _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1)
    }
}

/// Two blocks' nibbles in value order: low nibbles of block a's 16 bytes, then its high
/// nibbles, then the same for block b.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn nibbles2(a: *const u8, b: *const u8) -> __m512i {
    // SAFETY: as `dup16`.
    unsafe {
        let v = dup16(a, b);
        // Shift the 16-bit words of lanes 1 and 3 right by 4.
        let sh = _mm512_set_epi64(
            0x0004_0004_0004_0004,
            0x0004_0004_0004_0004,
            0,
            0,
            0x0004_0004_0004_0004,
            0x0004_0004_0004_0004,
            0,
            0,
        );
        _mm512_and_si512(_mm512_srlv_epi16(v, sh), _mm512_set1_epi8(0x0f))
    }
}

/// Decoded unsigned values of the blocks at `a` and `b` (which may be the same block).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn decode<const K: u8>(a: *const u8, b: *const u8) -> __m512i {
    // SAFETY: `a` and `b` point at whole weight blocks of kind K (header offsets below stay
    // inside `block_bytes(K)`).
    unsafe {
        match K {
            Q4_0 => nibbles2(a.add(2), b.add(2)),
            Q4_1 => nibbles2(a.add(4), b.add(4)),
            IQ4NL => {
                let tbl = _mm512_broadcast_i32x4(_mm_add_epi8(
                    _mm_loadu_si128(KVALUES_IQ4NL.as_ptr() as *const __m128i),
                    _mm_set1_epi8(-128),
                ));
                _mm512_shuffle_epi8(tbl, nibbles2(a.add(2), b.add(2)))
            }
            Q5_0 | Q5_1 => {
                let (hq, qs) = if K == Q5_0 { (2, 6) } else { (4, 8) };
                let ha = core::ptr::read_unaligned(a.add(hq) as *const u32) as u64;
                let hb = core::ptr::read_unaligned(b.add(hq) as *const u32) as u64;
                let high = _mm512_maskz_mov_epi8(ha | hb << 32, _mm512_set1_epi8(0x10));
                _mm512_or_si512(nibbles2(a.add(qs), b.add(qs)), high)
            }
            _ => {
                let lo = _mm256_loadu_si256(a.add(2) as *const __m256i);
                let hi = _mm256_loadu_si256(b.add(2) as *const __m256i);
                let v = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
                _mm512_xor_si512(v, _mm512_set1_epi8(-128))
            }
        }
    }
}

/// One activation row's pass data for a pair of blocks: the 64 signed bytes, `d_a` per half,
/// the integer start `−off·Σa` per lane, and (Q8_1) `s_a` per half. Built once per call for all
/// activation rows, then read by every weight row.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct ActPass {
    q: __m512i,
    d: __m512,
    base: __m512i,
    s: __m512,
}

/// The pass data of `m` activation rows (`nb` blocks each) at `a`.
///
/// # Safety
/// As [`gemm`].
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn act_panel<const K: u8>(nb: usize, a: &[u8], m: usize) -> Vec<ActPass> {
    let ab = if q8_1(K) { 36 } else { 34 };
    let aq = if q8_1(K) { 4 } else { 2 };
    let passes = nb.div_ceil(2);
    let ones = _mm512_set1_epi8(1);
    let shift = _mm_cvtsi32_si128(offset(K).trailing_zeros() as i32);
    // Permutations of a 4-lane [x0, y0, x1, y1] vector: both halves' first values broadcast;
    // both halves' second values broadcast. For Q8_0 headers the lanes are [d0, d1].
    let first = _mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0);
    let first_q8_0 = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    let second = _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1);
    let mut out = Vec::with_capacity(m * passes);
    for j in 0..m {
        let row = &a[j * nb * ab..(j + 1) * nb * ab];
        for p in 0..passes {
            let (b0, b1) = (2 * p, (2 * p + 1).min(nb - 1));
            // SAFETY: blocks b0, b1 < nb are inside the row; the loads read 32 quants and the
            // 2- or 4-byte header of a block.
            unsafe {
                let (y0, y1) = (row.as_ptr().add(b0 * ab), row.as_ptr().add(b1 * ab));
                let lo = _mm256_loadu_si256(y0.add(aq) as *const __m256i);
                let hi = _mm256_loadu_si256(y1.add(aq) as *const __m256i);
                let q = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
                let (d, s) = if q8_1(K) {
                    let v = _mm512_zextps128_ps512(_mm_cvtph_ps(_mm_cvtsi64_si128(
                        (read_u32(y0) as u64 | (read_u32(y1) as u64) << 32) as i64,
                    )));
                    (_mm512_permutexvar_ps(first, v), _mm512_permutexvar_ps(second, v))
                } else {
                    let v = _mm512_zextps128_ps512(_mm_cvtph_ps(_mm_cvtsi32_si128((read_u16(y0) | read_u16(y1) << 16) as i32)));
                    (_mm512_permutexvar_ps(first_q8_0, v), _mm512_setzero_ps())
                };
                let base = if offset(K) != 0 {
                    // −off·Σa per lane (off is a power of two).
                    let sum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, q);
                    _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_sll_epi32(sum, shift))
                } else {
                    _mm512_setzero_si512()
                };
                out.push(ActPass { q, d, base, s });
            }
        }
    }
    out
}

/// The Q4_0 kernel over interleaved weights (`crate::simd::interleave`), bit-identical to the
/// plain one.
///
/// # Safety
/// As [`gemm_overrides`].
pub(crate) unsafe fn interleaved_overrides() -> Vec<(T, GemmFn)> {
    vec![(T::Q4_0, gemm_interleaved_q4_0 as _)]
}

/// [`gemm`] for Q4_0 over `nr` rows stored interleaved (whole groups of 16, the last padded),
/// with the same results: one activation row runs the interleaved GEMV two groups at a time,
/// more rows the 16-row kernel on blocks loaded from the interleaved group; the matrix's last
/// partial group runs the plain kernel on its rows recovered into a scratch.
///
/// # Safety
/// As [`gemm`], with `w` holding `nr.div_ceil(16)` interleaved groups.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn gemm_interleaved_q4_0(k: usize, w: &[u8], nr: usize, a: &[u8], m: usize, out: &mut [f32]) {
    use super::gemm16_avx512 as g16;
    const G16: usize = crate::simd::ROW_GROUP;
    let nb = k / 32;
    let wrow = nb * 18;
    let gb = G16 * wrow;
    let groups = nr.div_ceil(G16);
    assert!(w.len() >= groups * gb && a.len() >= m * nb * 34 && out.len() >= nr * m, "gemm buffer sizes");
    if nb == 0 || m == 0 {
        out[..nr * m].fill(0.0);
        return;
    }
    let full = nr / G16;
    let mut g = 0;
    if m > 1 {
        // SAFETY: `a` holds `m` rows of nb blocks (checked length).
        let panel = unsafe { g16::panel16::<Q4_0>(nb, a, m) };
        let mut scratch = Vec::new();
        while g < full {
            // SAFETY: group g is inside `w`; `out` rows 16g..16g+16 hold 16 * m values.
            unsafe { g16::gemm16_interleaved_q4_0(nb, w[g * gb..].as_ptr(), a, &panel, m, &mut out[g * G16 * m..], m, &mut scratch) };
            g += 1;
        }
    } else {
        // SAFETY: `a` holds one row of nb blocks (checked length).
        let panel = unsafe { g16::panel16::<Q4_0>(nb, a, 1) };
        while g < full {
            let step = if full - g >= 2 { 2 } else { 1 };
            // SAFETY: groups g..g+step are inside `w`; outputs 16g.. hold 16 * step values.
            unsafe {
                let (p, o) = (w[g * gb..].as_ptr(), &mut out[g * G16..(g + step) * G16]);
                if step == 2 {
                    g16::gemv_q4_0_interleaved::<2>(nb, p, gb, a, &panel, o);
                } else {
                    g16::gemv_q4_0_interleaved::<1>(nb, p, gb, a, &panel, o);
                }
            }
            g += step;
        }
    }
    if g == groups {
        return;
    }
    // The matrix's partial last group: its plain rows recovered into a scratch and run through
    // the plain kernel's row-by-row path, as the plain layout runs them.
    let rest = nr - g * G16;
    let mut tmp = vec![0u8; rest * wrow];
    crate::simd::interleave::group_rows(T::Q4_0, &w[g * gb..(g + 1) * gb], wrow, rest, &mut tmp);
    // SAFETY: `tmp` holds the `rest` (< 16) plain rows of the last group; `out` rows g*16.. hold
    // `rest * m` values.
    unsafe { gemm::<Q4_0>(k, &tmp, rest, a, m, &mut out[g * G16 * m..nr * m]) };
}

/// `out[i * m + j] = w_i · a_j` for `nr` weight rows of `w` and `m` activation rows of `a`
/// (`k` values each).
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI available; `w` holds `nr` rows and `a` holds `m` rows of the type's
/// row size for `k` (a multiple of 32); `out` holds `nr * m` values.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn gemm<const K: u8>(k: usize, w: &[u8], nr: usize, a: &[u8], m: usize, out: &mut [f32]) {
    let nb = k / 32;
    let wrow = nb * block_bytes(K);
    let arow = nb * if q8_1(K) { 36 } else { 34 };
    assert!(w.len() >= nr * wrow && a.len() >= m * arow && out.len() >= nr * m, "gemm buffer sizes");
    if nb == 0 {
        out[..nr * m].fill(0.0);
        return;
    }
    let passes = nb.div_ceil(2);
    // Tile shapes: few activation rows (generation) -> 4 weight rows per pass over one
    // activation row; many (prompts) -> 2 weight rows x 8 activation rows.
    let (rt, ct) = if m >= 8 { (2, 8) } else { (4, 1) };
    let mut i = 0;
    // Complete groups of 16 rows (the caller starts `w` at a multiple of 16 rows of its matrix).
    if super::gemm16_avx512::has_kernel(K) && wrow * 16 <= i32::MAX as usize && nr >= crate::simd::ROW_GROUP {
        use super::gemm16_avx512 as g16;
        // SAFETY: `a` holds `m` rows of `nb` blocks (checked length).
        let panel = unsafe { g16::panel16::<K>(nb, a, m) };
        let mut scratch = Vec::new();
        while nr - i >= crate::simd::ROW_GROUP {
            // SAFETY: rows i..i+16 are inside `w` (checked length), `out` has rows i..i+16 of
            // `m` values; `16 * wrow` fits an i32 (checked above); `panel` is `a`'s.
            unsafe { g16::gemm16::<K>(nb, w[i * wrow..].as_ptr(), wrow, a, &panel, m, &mut out[i * m..], m, &mut scratch) };
            i += crate::simd::ROW_GROUP;
        }
    }
    if i == nr {
        return;
    }
    // The rows left (all of them for types without a 16-row kernel; otherwise the matrix's last,
    // partial group) run over a panel of the activations, built only when there are such rows.
    // SAFETY: lengths checked above.
    let panel = unsafe { act_panel::<K>(nb, a, m) };
    while i < nr {
        let r = if nr - i >= rt { rt } else { 1 };
        let wp = w[i * wrow..].as_ptr();
        let mut j = 0;
        while j < m {
            let c = if m - j >= ct { ct } else { 1 };
            let ap = &panel[j * passes..];
            let mut res = [0f32; 16];
            // SAFETY: rows i..i+r of w are inside the checked buffer; panel rows j..j+c exist.
            unsafe {
                match (r, c) {
                    (2, 8) => tile::<K, 2, 8>(nb, wp, wrow, ap, passes, &mut res),
                    (1, 8) => tile::<K, 1, 8>(nb, wp, wrow, ap, passes, &mut res),
                    (4, _) => tile::<K, 4, 1>(nb, wp, wrow, ap, passes, &mut res),
                    (2, _) => tile::<K, 2, 1>(nb, wp, wrow, ap, passes, &mut res),
                    _ => tile::<K, 1, 1>(nb, wp, wrow, ap, passes, &mut res),
                }
            }
            for ri in 0..r {
                for ci in 0..c {
                    out[(i + ri) * m + j + ci] = res[ri * c + ci];
                }
            }
            j += c;
        }
        i += r;
    }
}

/// How far ahead within a weight row the tile kernels prefetch. With `R` rows streamed at once
/// that is `R` times as many bytes in flight: 4 rows x 2 KiB keeps a DRAM-bound GEMV near the
/// kernel's in-cache rate (see `benches/kernels_vs_llamacpp.py`).
const ROW_AHEAD: usize = 2048;

/// `R` weight rows at `w` (stride `wrow`) times the `C` activation rows of `ap` (stride
/// `passes`); result `res[row * C + act]`.
///
/// # Safety
/// As [`gemm`]; `ap` holds `C * passes` entries.
#[inline]
#[allow(clippy::needless_range_loop)] // activations c index parallel arrays (accumulators, panel)
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn tile<const K: u8, const R: usize, const C: usize>(
    nb: usize,
    w: *const u8,
    wrow: usize,
    ap: &[ActPass],
    passes: usize,
    res: &mut [f32; 16],
) {
    let wb = block_bytes(K);
    let mut acc = [[_mm512_setzero_ps(); C]; R];
    // Permutations of the 4-lane weight header vector [d0, m0, d1, m1] (Q4_1/Q5_1; upper lanes
    // zero) or [d0, d1]: d per half; m in lanes 0 and 8 only.
    let first = _mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0);
    let first_q8_0 = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    let second_lane = _mm512_set_epi32(4, 4, 4, 4, 4, 4, 4, 3, 4, 4, 4, 4, 4, 4, 4, 1);
    // Each of the R rows is a stream read front to back: prefetch every row ROW_AHEAD bytes
    // ahead of the blocks being read, continuing into the same row of the next tile (R rows
    // further on) when that passes the row's end, so that a tile's first blocks are in cache
    // when it starts. One range of two blocks per row and pass keeps the requests spread.
    for p in 0..passes {
        let off = 2 * p * wb + ROW_AHEAD;
        let at = if off < wrow { off } else { R * wrow + off - wrow };
        for r in 0..R {
            crate::simd::prefetch(w.wrapping_add(r * wrow + at), 2 * wb);
        }
        // Blocks 2p and 2p+1, or block 2p twice with the second half's scale zero.
        let b = 2 * p;
        let two = b + 1 < nb;
        let b2 = if two { b + 1 } else { b };
        // SAFETY: blocks b and b2 < nb of every row are inside the rows; each header read is
        // the first 2 or 4 bytes of a block.
        unsafe {
            let mut wv = [_mm512_setzero_si512(); R];
            let mut dw = [_mm512_setzero_ps(); R];
            let mut mw = [_mm512_setzero_ps(); R];
            for r in 0..R {
                let (x0, x1) = (w.add(r * wrow + b * wb), w.add(r * wrow + b2 * wb));
                wv[r] = decode::<K>(x0, x1);
                let (h0, h1) = if q8_1(K) { (read_u32(x0), read_u32(x1)) } else { (read_u16(x0), read_u16(x1)) };
                let h1 = if two { h1 } else { 0 };
                let v = _mm512_zextps128_ps512(_mm_cvtph_ps(_mm_cvtsi64_si128(
                    (h0 as u64 | (h1 as u64) << if q8_1(K) { 32 } else { 16 }) as i64,
                )));
                if q8_1(K) {
                    dw[r] = _mm512_permutexvar_ps(first, v);
                    mw[r] = _mm512_permutexvar_ps(second_lane, v);
                } else {
                    dw[r] = _mm512_permutexvar_ps(first_q8_0, v);
                }
            }
            for c in 0..C {
                let x = ap.get_unchecked(c * passes + p);
                for r in 0..R {
                    let i = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(x.base, wv[r], x.q));
                    acc[r][c] = _mm512_fmadd_ps(i, _mm512_mul_ps(dw[r], x.d), acc[r][c]);
                    if q8_1(K) {
                        acc[r][c] = _mm512_fmadd_ps(mw[r], x.s, acc[r][c]);
                    }
                }
            }
        }
    }
    for r in 0..R {
        for c in 0..C {
            res[r * C + c] = _mm512_reduce_add_ps(acc[r][c]);
        }
    }
}
