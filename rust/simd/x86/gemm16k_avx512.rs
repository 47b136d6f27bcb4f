//! AVX-512 VNNI kernels over groups of 16 weight rows for the 256-value super-block types
//! against Q8_K activations: IQ4_XS, Q4_K, Q5_K and Q6_K.
//!
//! Same idea as `gemm16_avx512` (ggml's interleaved repacked GEMM done in registers): the bytes
//! of one super-block of 16 rows are transposed 16 at a time (`vpermt2d`) so that a zmm holds the
//! same 4 quant positions of all 16 rows, one per 32-bit lane. One `vpdpbusd` with a broadcast
//! activation dword then advances 16 outputs. A super-block of 16 rows is decoded once into 64
//! such vectors (unsigned values `u`, one dword of 4 values per lane) plus per-lane scale vectors,
//! and then every activation row of the call runs over it, 8 at a time.
//!
//! **Arithmetic of one output** (weight row `w`, activation row `a`), the same whatever the
//! number of weight or activation rows in the call:
//! - per scale group `g` (32 values for IQ4_XS / Q4_K, 16 for Q6_K) the exact integer
//!   `s_g = Σ (u − off)·a` (`off` = 128 for IQ4_XS's shifted codebook, 0 for Q4_K / Q5_K, 32
//!   for Q6_K;
//!   the `−off·Σa` start comes from the Q8_K block sums), then the exact super-block sum
//!   `S = Σ_g sc_g·s_g` in int32 (`sc_g` = IQ4_XS `ls − 32`, Q4_K / Q5_K's 6-bit scale, Q6_K's
//!   int8 scale; magnitudes stay below 2^28);
//! - Q4_K / Q5_K also the exact `M = Σ_j min_j·Σa_j` over their 8 sub-blocks;
//! - float: over super-blocks in order, `acc = fma(f32(S), d_w·d_a, acc)` (and for Q4_K / Q5_K
//!   `accm = fma(f32(M), dmin_w·d_a, accm)`); the result is `acc` (Q4_K / Q5_K: `acc − accm`).
//!
//! ggml's `vec_dot` instead keeps 8 float lanes of partial sums per row and adds them at the end,
//! so results differ from it by float rounding only (the integer parts are exact in both).
//!
//! Rows outside complete groups of [`crate::simd::ROW_GROUP`] (only the matrix's last, partial
//! group: callers split at multiples of 16 rows) are copied into a 16-row scratch group, padded
//! with copies of the last row, and run through the same kernel: every lane does the same
//! operations, so a row's result never depends on which rows share the call.

use core::arch::x86_64::*;

use crate::simd::{GemmFn, KVALUES_IQ4NL, ROW_GROUP};
use crate::types::QuantType as T;

/// The 16-row kernels of this module.
///
/// # Safety
/// The caller must have checked AVX-512 F/BW/VL/VNNI and AVX2/FMA/F16C.
pub(crate) unsafe fn gemm_overrides() -> Vec<(T, GemmFn)> {
    vec![
        (T::IQ4_XS, gemm::<IQ4XS> as _),
        (T::Q4_K, gemm::<Q4K> as _),
        (T::Q5_K, gemm::<Q5K> as _),
        (T::Q6_K, gemm::<Q6K> as _),
    ]
}

/// The same kernels over weights in the interleaved layout of [`crate::simd::interleave`]
/// (IQ4_XS, Q4_K and Q5_K: blocks of whole dwords): bit-identical results, without the
/// per-call transposes.
///
/// # Safety
/// As [`gemm_overrides`].
pub(crate) unsafe fn interleaved_overrides() -> Vec<(T, GemmFn)> {
    vec![(T::IQ4_XS, gemm_interleaved::<IQ4XS> as _), (T::Q4_K, gemm_interleaved::<Q4K> as _), (T::Q5_K, gemm_interleaved::<Q5K> as _)]
}

const IQ4XS: u8 = 0;
const Q4K: u8 = 1;
const Q6K: u8 = 2;
const Q5K: u8 = 3;

/// Whether the type has per-sub-block mins (`w = d·sc·u − dmin·min`).
const fn has_mins(kind: u8) -> bool {
    matches!(kind, Q4K | Q5K)
}

/// Bytes of one Q8_K block: f32 `d`, 256 int8 quants, 16 int16 sums of 16.
const Q8K: usize = 292;

/// Bytes of one weight super-block.
const fn block_bytes(kind: u8) -> usize {
    match kind {
        IQ4XS => 136,
        Q4K => 144,
        Q5K => 176,
        _ => 210,
    }
}

/// Activation dwords (4 values each) per scale group: 64 dwords make a super-block.
const fn group_dwords(kind: u8) -> usize {
    match kind {
        Q6K => 4,
        _ => 8,
    }
}

/// One activation row's super-block: `d_a`, the integer start `−off·Σa` of each scale group,
/// and for Q4_K the sub-block sums `Σa` as int16 pairs (for `vpdpwssd` with the mins).
#[derive(Clone, Copy, Default)]
struct ActSb {
    d: f32,
    base: [i32; 16],
    sums: [i32; 4],
}

/// One super-block of 16 weight rows decoded: `q[i]` holds the unsigned values of dword `i`
/// (values `4i..4i + 4`) of every row, `sc[g]` the scale of group `g`, `mins[i]` Q4_K's mins
/// `2i, 2i + 1` as int16 pairs, `d` / `dmin` the f16 factors as f32.
struct Dec {
    q: [__m512i; 64],
    sc: [__m512i; 16],
    mins: [__m512i; 4],
    d: __m512,
    dmin: __m512,
}

impl Dec {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    fn zeroed() -> Dec {
        Dec {
        q: [_mm512_setzero_si512(); 64],
        sc: [_mm512_setzero_si512(); 16],
        mins: [_mm512_setzero_si512(); 4],
        d: _mm512_setzero_ps(),
        dmin: _mm512_setzero_ps(),
    }
    }
}

/// `out[i * m + j] = w_i · a_j` for `nr` weight rows of `w` and `m` activation rows of `a`
/// (`k` values each; see the module docs for the arithmetic).
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI available; `w` holds `nr` rows and `a` holds `m` rows of the type's
/// row size for `k` (a multiple of 256); `out` holds `nr * m` values.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn gemm<const K: u8>(k: usize, w: &[u8], nr: usize, a: &[u8], m: usize, out: &mut [f32]) {
    let nb = k / 256;
    let wrow = nb * block_bytes(K);
    let arow = nb * Q8K;
    assert!(w.len() >= nr * wrow && a.len() >= m * arow && out.len() >= nr * m, "gemm buffer sizes");
    if nb == 0 || m == 0 {
        out[..nr * m].fill(0.0);
        return;
    }
    let panel = act_panel::<K>(nb, a, m);
    let mut acc = vec![_mm512_setzero_ps(); 2 * m];
    let mut i = 0;
    while nr - i >= ROW_GROUP {
        // SAFETY: rows i..i+16 are inside `w` (length checked above); `out` has their `m`
        // values each; `a` holds `m` rows of `nb` Q8_K blocks and `panel` their summaries.
        unsafe { rows16::<K, false>(nb, w[i * wrow..].as_ptr(), wrow, a, &panel, m, &mut acc, &mut out[i * m..(i + 16) * m]) };
        i += ROW_GROUP;
    }
    if i < nr {
        // The partial last group: a scratch group of 16 rows, the missing ones copies of the last.
        let rem = nr - i;
        let mut tmp = vec![0u8; ROW_GROUP * wrow];
        for (r, dst) in tmp.chunks_exact_mut(wrow).enumerate() {
            let src = i + r.min(rem - 1);
            dst.copy_from_slice(&w[src * wrow..(src + 1) * wrow]);
        }
        let mut o = vec![0f32; ROW_GROUP * m];
        // SAFETY: `tmp` holds 16 rows of `wrow` bytes; the rest as above.
        unsafe { rows16::<K, false>(nb, tmp.as_ptr(), wrow, a, &panel, m, &mut acc, &mut o) };
        out[i * m..nr * m].copy_from_slice(&o[..rem * m]);
    }
}

/// [`gemm`] over `nr` weight rows stored interleaved ([`crate::simd::interleave`]: groups of 16
/// rows, the last one padded), with the same results.
///
/// # Safety
/// As [`gemm`], with `w` holding `nr.div_ceil(16)` interleaved groups of 16 rows.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn gemm_interleaved<const K: u8>(k: usize, w: &[u8], nr: usize, a: &[u8], m: usize, out: &mut [f32]) {
    const { assert!(K != Q6K, "Q6_K blocks are not whole dwords") };
    let nb = k / 256;
    let wrow = nb * block_bytes(K);
    let arow = nb * Q8K;
    let groups = nr.div_ceil(ROW_GROUP);
    assert!(w.len() >= groups * ROW_GROUP * wrow && a.len() >= m * arow && out.len() >= nr * m, "gemm buffer sizes");
    if nb == 0 || m == 0 {
        out[..nr * m].fill(0.0);
        return;
    }
    let panel = act_panel::<K>(nb, a, m);
    if m == 1 {
        // GEMV: groups two at a time, side by side (one memory stream each).
        let mut g = 0;
        while g < groups {
            let (i, left) = (g * ROW_GROUP, groups - g);
            // SAFETY: groups g.. are inside `w`; `a` holds one row and `panel` its summaries.
            let done = unsafe {
                if left >= 2 {
                    gemv_groups::<K, 2>(nb, w[i * wrow..].as_ptr(), wrow, a, &panel, &mut out[i..nr])
                } else {
                    gemv_groups::<K, 1>(nb, w[i * wrow..].as_ptr(), wrow, a, &panel, &mut out[i..nr])
                }
            };
            g += done;
        }
        return;
    }
    let mut acc = vec![_mm512_setzero_ps(); 2 * m];
    let mut o = vec![0f32; ROW_GROUP * m];
    for g in 0..groups {
        let i = g * ROW_GROUP;
        let rows = (nr - i).min(ROW_GROUP);
        let p = w[i * wrow..].as_ptr();
        // SAFETY: group g (16 * wrow bytes) is inside `w` (checked above); `a` holds `m` rows
        // of `nb` Q8_K blocks and `panel` their summaries; the outputs hold 16 * m values.
        unsafe {
            if rows == ROW_GROUP {
                rows16::<K, true>(nb, p, wrow, a, &panel, m, &mut acc, &mut out[i * m..(i + 16) * m]);
            } else {
                rows16::<K, true>(nb, p, wrow, a, &panel, m, &mut acc, &mut o);
                out[i * m..nr * m].copy_from_slice(&o[..rows * m]);
            }
        }
    }
}

/// One activation row against `G` consecutive interleaved groups at `w` (group stride
/// `16 * wrow`), their super-blocks taken in lock step so that the weight is read as `G`
/// streams. Measured on a 2-thread GEMV over 131072 x 8192 (huge-page memory, read peer 35-36
/// GB/s): Q4_K / IQ4_XS 82-85 / 71-80 % of the peer with one stream, 86-88 / 90-91 % with two,
/// 77 / 87 % with four, 72 / 77 % with eight. Each group's arithmetic is that of [`rows16`],
/// so results are the same.
/// Writes `min(16 G, out.len())` outputs and returns `G`.
///
/// # Safety
/// AVX-512 available; `G` interleaved groups at `w`; `a` holds one row of `nb` Q8_K blocks and
/// `panel` its `nb` summaries.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn gemv_groups<const K: u8, const G: usize>(
    nb: usize,
    w: *const u8,
    wrow: usize,
    a: &[u8],
    panel: &[ActSb],
    out: &mut [f32],
) -> usize {
    let bb = block_bytes(K);
    assert!(panel.len() >= nb && a.len() >= nb * Q8K, "gemv sizes");
    let mut acc = [_mm512_setzero_ps(); G];
    let mut accm = [_mm512_setzero_ps(); G];
    let mut dec = Dec::zeroed();
    let gstride = ROW_GROUP * wrow;
    for b in 0..nb {
        let y = a[b * Q8K..].as_ptr();
        for g in 0..G {
            let x = w.wrapping_add(g * gstride + ROW_GROUP * b * bb);
            // SAFETY: super-block b of group g is inside the groups (caller); block b of `a`
            // and `panel[b]` exist (asserted above).
            unsafe {
                if K == Q4K || K == IQ4XS {
                    gemv_block::<K>(x, y, &panel[b], &mut acc[g], &mut accm[g]);
                } else {
                    decode::<K, true>(x, wrow, &mut dec);
                    cols::<K, 1>(&dec, y, 0, &panel[b..], nb, &mut acc[g..], &mut accm[g..]);
                }
            }
        }
    }
    let mut lanes = [0f32; 16];
    for g in 0..G {
        let v = if has_mins(K) { _mm512_sub_ps(acc[g], accm[g]) } else { acc[g] };
        // SAFETY: 16 floats into a [f32; 16].
        unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), v) };
        for (r, x) in lanes.iter().enumerate() {
            if let Some(o) = out.get_mut(g * ROW_GROUP + r) {
                *o = *x;
            }
        }
    }
    G
}

/// The 4 vectors of bytes `16 * off ..` of an interleaved super-block at `x` (bytes
/// `off..off + 16` of its 16 rows, as `t16` gives them from plain rows), each line asking for the
/// same line `ahead` bytes further (a hint, may pass the end).
///
/// # Safety
/// AVX-512 available; 256 readable bytes at `x + 16 * off`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn il_load(x: *const u8, off: usize, ahead: usize) -> [__m512i; 4] {
    // SAFETY: by the caller.
    unsafe {
        let q = x.add(16 * off) as *const __m512i;
        for i in 0..4 {
            crate::simd::prefetch((q.add(i) as *const u8).wrapping_add(ahead), 1);
        }
        [_mm512_loadu_si512(q), _mm512_loadu_si512(q.add(1)), _mm512_loadu_si512(q.add(2)), _mm512_loadu_si512(q.add(3))]
    }
}

/// IQ4_XS header vectors of 16 rows (`h[0]` = d | scales_h << 16, `h[1]` = scales_l): `d` and
/// the 8 group scales `ls − 32`, one dword lane per row.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn iq4xs_header(h: &[__m512i; 4]) -> (__m512, [__m512i; 8]) {
    let v32 = |x: i32| _mm512_set1_epi32(x);
    let sh = _mm512_srli_epi32(h[0], 16);
    let sc = core::array::from_fn(|g| {
        let lo = _mm512_and_si512(_mm512_srlv_epi32(h[1], v32(4 * g as i32)), v32(0x0f));
        let hi = _mm512_slli_epi32(_mm512_and_si512(_mm512_srlv_epi32(sh, v32(2 * g as i32)), v32(3)), 4);
        _mm512_sub_epi32(_mm512_or_si512(lo, hi), v32(32))
    });
    (f16_lanes(h[0]), sc)
}

/// The IQ4_NL codebook shifted by +128 to unsigned bytes, in every 128-bit lane.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn iq4_table() -> __m512i {
    // SAFETY: the 16-entry codebook.
    let t = unsafe { _mm_loadu_si128(KVALUES_IQ4NL.as_ptr() as *const __m128i) };
    _mm512_broadcast_i32x4(_mm_add_epi8(t, _mm_set1_epi8(-128)))
}

/// Q4_K / Q5_K header vectors of 16 rows (`h[0]` = d | dmin << 16, then the 12 scale bytes as
/// words a, b, c): `d`, `dmin`, the 8 six-bit scales (one dword lane per row) and the mins as
/// int16 pairs `2i, 2i + 1` (the forms of `Dec::sc` and `Dec::mins`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn k4_header(h: &[__m512i; 4]) -> (__m512, __m512, [__m512i; 8], [__m512i; 4]) {
    let v32 = |x: i32| _mm512_set1_epi32(x);
    let (wa, wb, wc) = (h[1], h[2], h[3]);
    let and = |v: __m512i, mask: u32| _mm512_and_si512(v, v32(mask as i32));
    let sc_lo = and(wa, 0x3f3f_3f3f);
    let mn_lo = and(wb, 0x3f3f_3f3f);
    let sc_hi = _mm512_or_si512(and(wc, 0x0f0f_0f0f), _mm512_slli_epi32(and(_mm512_srli_epi32(wa, 6), 0x0303_0303), 4));
    let mn_hi =
        _mm512_or_si512(and(_mm512_srli_epi32(wc, 4), 0x0f0f_0f0f), _mm512_slli_epi32(and(_mm512_srli_epi32(wb, 6), 0x0303_0303), 4));
    let sc = core::array::from_fn(|g| and(_mm512_srlv_epi32(if g < 4 { sc_lo } else { sc_hi }, v32(8 * (g % 4) as i32)), 0xff));
    // Bytes 0, 1 and 2, 3 of each mins word as int16 pairs.
    let mins = core::array::from_fn(|i| {
        let wv = if i < 2 { mn_lo } else { mn_hi };
        if i % 2 == 0 {
            _mm512_or_si512(and(wv, 0xff), _mm512_slli_epi32(and(wv, 0xff00), 8))
        } else {
            _mm512_or_si512(and(_mm512_srli_epi32(wv, 16), 0xff), and(_mm512_srli_epi32(wv, 8), 0x00ff_0000))
        }
    });
    (f16_lanes(h[0]), f16_lanes(_mm512_srli_epi32(h[0], 16)), sc, mins)
}

/// One interleaved super-block of 16 rows (IQ4_XS or Q4_K) times one activation block, decoded
/// and multiplied in registers (what `decode` + `cols::<K, 1>` compute, without storing the
/// decoded block): the same exact integers `S` (and Q4_K's `M`), the same float steps
/// `acc = fma(f32(S), d_w·d_a, acc)`, `accm = fma(f32(M), dmin_w·d_a, accm)`.
///
/// Q4_K's high nibbles are used in place (`byte & 0xf0` = 16·u), which makes the dot 16 times
/// the sum; the division by 16 is an exact shift. Half a group (16 values) sums to at most
/// 16·15·128 < 2^15, so its scale multiply is one `vpdpwssd` on the low 16 bits (the scales
/// have zero high halves).
///
/// # Safety
/// AVX-512 available; `16 * block_bytes(K)` interleaved bytes at `x`; a Q8_K block at `y`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn gemv_block<const K: u8>(x: *const u8, y: *const u8, p: &ActSb, acc: &mut __m512, accm: &mut __m512) {
    let v32 = |x: i32| _mm512_set1_epi32(x);
    // The 4 vectors of bytes `off..off + 16` of the 16 rows, prefetching one super-block ahead.
    // SAFETY: offsets inside the super-block (caller).
    let ld = |off: usize| unsafe { il_load(x, off, ROW_GROUP * block_bytes(K)) };
    // Activation dword i (values 4i..4i + 4) broadcast.
    // SAFETY: i < 64, inside the Q8_K block's quants.
    let ya = |i: usize| unsafe { _mm512_set1_epi32(core::ptr::read_unaligned(y.add(4 + 4 * i) as *const i32)) };
    let nib = _mm512_set1_epi8(0x0f);
    let da = _mm512_set1_ps(p.d);
    let mut isum = _mm512_setzero_si512();
    if K == IQ4XS {
        let (d, sc) = iq4xs_header(&ld(0));
        let tbl = iq4_table();
        for (g, sc) in sc.into_iter().enumerate() {
            // Values 32g..32g + 32: bytes 16g..16g + 16 (low nibbles: the first 16 values,
            // high nibbles: the next 16) at offset 8.
            let v = ld(8 + 16 * g);
            let mut s0 = v32(p.base[g]);
            let mut s1 = _mm512_setzero_si512();
            for (k, vk) in v.into_iter().enumerate() {
                let l = _mm512_shuffle_epi8(tbl, _mm512_and_si512(vk, nib));
                let u = _mm512_shuffle_epi8(tbl, _mm512_and_si512(_mm512_srli_epi16(vk, 4), nib));
                s0 = _mm512_dpbusd_epi32(s0, l, ya(8 * g + k));
                s1 = _mm512_dpbusd_epi32(s1, u, ya(8 * g + 4 + k));
            }
            isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(_mm512_add_epi32(s0, s1), sc));
        }
        *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(d, da), *acc);
        return;
    }
    // Q4_K.
    let (d, dmin, sc, mins) = k4_header(&ld(0));
    let hnib = _mm512_set1_epi8(0xf0u8 as i8);
    for j in 0..4 {
        for hh in 0..2 {
            // 16 bytes of chunk j: low nibbles are values of sub-block 2j, high ones of 2j + 1.
            let v = ld(16 + 32 * j + 16 * hh);
            let (mut sl, mut su) = (_mm512_setzero_si512(), _mm512_setzero_si512());
            for (k, vk) in v.into_iter().enumerate() {
                sl = _mm512_dpbusd_epi32(sl, _mm512_and_si512(vk, nib), ya(16 * j + 4 * hh + k));
                su = _mm512_dpbusd_epi32(su, _mm512_and_si512(vk, hnib), ya(16 * j + 8 + 4 * hh + k));
            }
            isum = _mm512_dpwssd_epi32(isum, sl, sc[2 * j]);
            isum = _mm512_dpwssd_epi32(isum, _mm512_srai_epi32(su, 4), sc[2 * j + 1]);
        }
    }
    *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(d, da), *acc);
    let mut ms = _mm512_setzero_si512();
    for (i, mi) in mins.into_iter().enumerate() {
        // Against the sub-block sums.
        ms = _mm512_dpwssd_epi32(ms, mi, v32(p.sums[i]));
    }
    *accm = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ms), _mm512_mul_ps(dmin, da), *accm);
}

/// How far ahead within each of the 16 rows [`rows16`] prefetches: 16 x 512 bytes in flight per
/// thread. Measured on a 2-thread GEMV over 131072 x 8192 (0.6 GB) of Q4_K / IQ4_XS: 22.5 / 20.6
/// GB/s without, 24.3 / 23.7 with 512 bytes, no better with 1 or 2 KiB or with PREFETCHT1.
const ROW_AHEAD: usize = 512;

/// Per activation row and super-block: `d_a`, the group starts and Q4_K's sub-block sums, from
/// the Q8_K block header and its int16 sums of 16.
fn act_panel<const K: u8>(nb: usize, a: &[u8], m: usize) -> Vec<ActSb> {
    let mut panel = vec![ActSb::default(); m * nb];
    for (p, blk) in panel.iter_mut().zip(a[..m * nb * Q8K].chunks_exact(Q8K)) {
        let bs: [i32; 16] = core::array::from_fn(|i| i16::from_le_bytes([blk[260 + 2 * i], blk[261 + 2 * i]]) as i32);
        p.d = f32::from_le_bytes([blk[0], blk[1], blk[2], blk[3]]);
        match K {
            IQ4XS => {
                for g in 0..8 {
                    p.base[g] = -128 * (bs[2 * g] + bs[2 * g + 1]);
                }
            }
            Q4K | Q5K => {
                // Σa of a 32-value sub-block is within ±32·127: it fits an int16.
                let s = |g: usize| (bs[2 * g] + bs[2 * g + 1]) as i16 as u16 as u32;
                for i in 0..4 {
                    p.sums[i] = (s(2 * i) | s(2 * i + 1) << 16) as i32;
                }
            }
            _ => {
                for (b, s) in p.base.iter_mut().zip(bs) {
                    *b = -32 * s;
                }
            }
        }
    }
    panel
}

/// The 16 weight rows at `w` (stride `wrow`, `nb` super-blocks; or with `IL` one interleaved
/// group of them, `16 * wrow` bytes) times the `m` activation rows of `a`: `out[r * m + j]`.
/// `acc` is scratch for `2 m` accumulators.
///
/// # Safety
/// AVX-512 available; 16 rows of `nb` super-blocks at `w` (see above); `a` holds `m` rows
/// of `nb` Q8_K blocks and `panel` their `m * nb` summaries; `acc.len() >= 2 m`;
/// `out.len() >= 16 m`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[allow(clippy::too_many_arguments)]
unsafe fn rows16<const K: u8, const IL: bool>(
    nb: usize,
    w: *const u8,
    wrow: usize,
    a: &[u8],
    panel: &[ActSb],
    m: usize,
    acc: &mut [__m512],
    out: &mut [f32],
) {
    let bb = block_bytes(K);
    let arow = nb * Q8K;
    assert!(acc.len() >= 2 * m && out.len() >= ROW_GROUP * m && panel.len() >= m * nb && a.len() >= m * arow, "rows16 sizes");
    let (acc, accm) = acc.split_at_mut(m);
    acc.fill(_mm512_setzero_ps());
    accm.fill(_mm512_setzero_ps());
    let mut dec = Dec::zeroed();
    for b in 0..nb {
        // Each of the 16 rows is a stream: prefetch every row ROW_AHEAD bytes in front of the
        // super-block being decoded, continuing into the same row of the next group of 16 when
        // that passes the row's end (a hint: may point past the buffer).
        // Interleaved: the group's super-blocks one after another (`decode` prefetches).
        let x = if IL {
            w.wrapping_add(ROW_GROUP * b * bb)
        } else {
            let off = b * bb + ROW_AHEAD;
            let at = if off < wrow { off } else { ROW_GROUP * wrow + off - wrow };
            for r in 0..ROW_GROUP {
                crate::simd::prefetch(w.wrapping_add(r * wrow + at), bb);
            }
            w.wrapping_add(b * bb)
        };
        // SAFETY: super-block b of each of the 16 rows is inside the rows (caller).
        unsafe { decode::<K, IL>(x, wrow, &mut dec) };
        let mut j = 0;
        while j < m {
            let y = a[j * arow + b * Q8K..].as_ptr();
            let p = &panel[j * nb + b..];
            let (acc_j, accm_j) = (&mut acc[j..], &mut accm[j..]);
            // SAFETY: activation rows j..j+C exist (checked by the branch), so their block b
            // and panel entries (stride nb) are inside `a` and `panel`.
            unsafe {
                if m - j >= 8 {
                    cols::<K, 8>(&dec, y, arow, p, nb, acc_j, accm_j);
                    j += 8;
                } else if m - j >= 4 {
                    cols::<K, 4>(&dec, y, arow, p, nb, acc_j, accm_j);
                    j += 4;
                } else {
                    cols::<K, 1>(&dec, y, arow, p, nb, acc_j, accm_j);
                    j += 1;
                }
            }
        }
    }
    let mut lanes = [0f32; 16];
    for j in 0..m {
        let v = if has_mins(K) { _mm512_sub_ps(acc[j], accm[j]) } else { acc[j] };
        // SAFETY: 16 floats into a [f32; 16].
        unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), v) };
        for (r, x) in lanes.iter().enumerate() {
            out[r * m + j] = *x;
        }
    }
}

/// `C` activation rows (block at `y`, stride `arow`; summaries at `p`, stride `ps`) against a
/// decoded super-block: adds each row's share to `acc[c]` (and `accm[c]` for Q4_K).
///
/// # Safety
/// AVX-512 available; `y + c * arow` is a whole Q8_K block and `p[c * ps]` exists for `c < C`;
/// `acc` and `accm` have at least `C` entries.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn cols<const K: u8, const C: usize>(
    dec: &Dec,
    y: *const u8,
    arow: usize,
    p: &[ActSb],
    ps: usize,
    acc: &mut [__m512],
    accm: &mut [__m512],
) {
    let gd = group_dwords(K);
    // Independent integer chains per activation row (`vpdpbusd` latency): a group's sum is
    // split over `split` accumulators, added at its end (exact in int32, so the split never
    // changes a result).
    let split = match C {
        1 => 4,
        2..=4 => 2,
        _ => 1,
    };
    let mut isum = [_mm512_setzero_si512(); C];
    // SAFETY: the dword reads are inside the Q8_K blocks (4 + 4 * 63 + 4 <= 260); panel
    // entries c * ps exist (caller).
    unsafe {
        for g in 0..64 / gd {
            // Chain u of row c is s[c * split + u] (C * split <= 8).
            let mut s = [_mm512_setzero_si512(); 8];
            for c in 0..C {
                s[c * split] = _mm512_set1_epi32(p.get_unchecked(c * ps).base[g]);
            }
            for t in 0..gd {
                let i = g * gd + t;
                let v = dec.q[i];
                for c in 0..C {
                    let yd = core::ptr::read_unaligned(y.add(c * arow + 4 + 4 * i) as *const i32);
                    let x = &mut s[c * split + t % split];
                    *x = _mm512_dpbusd_epi32(*x, v, _mm512_set1_epi32(yd));
                }
            }
            for c in 0..C {
                let mut tot = s[c * split];
                for u in 1..split {
                    tot = _mm512_add_epi32(tot, s[c * split + u]);
                }
                isum[c] = _mm512_add_epi32(isum[c], _mm512_mullo_epi32(tot, dec.sc[g]));
            }
        }
        for c in 0..C {
            let pc = p.get_unchecked(c * ps);
            let da = _mm512_set1_ps(pc.d);
            acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[c]), _mm512_mul_ps(dec.d, da), acc[c]);
            if has_mins(K) {
                let mut ms = _mm512_setzero_si512();
                for i in 0..4 {
                    ms = _mm512_dpwssd_epi32(ms, dec.mins[i], _mm512_set1_epi32(pc.sums[i]));
                }
                accm[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ms), _mm512_mul_ps(dec.dmin, da), accm[c]);
            }
        }
    }
}

/// The 16 bytes at `p + r * stride` of rows `r = 0..16`, transposed: element `k` is a zmm whose
/// lane `r` holds bytes `4k..4k + 4` of row `r`.
///
/// # Safety
/// AVX-512 available; 16 readable bytes at each `p + r * stride`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn t16(p: *const u8, stride: usize) -> [__m512i; 4] {
    use super::gemm16_avx512::four;
    // SAFETY: rows 4i..4i+4 of the 16 (caller).
    let (z0, z1, z2, z3) =
        unsafe { (four(p, stride), four(p.add(4 * stride), stride), four(p.add(8 * stride), stride), four(p.add(12 * stride), stride)) };
    // z0 holds rows 0..4 (dword 4r + k = dword k of row r), z1 rows 4..8, and so on. First
    // dwords k and k + 1 of rows 0..8 (z0, z1) and of rows 8..16 (z2, z3); then dword k of all 16.
    let idx01 = _mm512_set_epi32(29, 25, 21, 17, 13, 9, 5, 1, 28, 24, 20, 16, 12, 8, 4, 0);
    let idx23 = _mm512_set_epi32(31, 27, 23, 19, 15, 11, 7, 3, 30, 26, 22, 18, 14, 10, 6, 2);
    let lo = _mm512_set_epi32(23, 22, 21, 20, 19, 18, 17, 16, 7, 6, 5, 4, 3, 2, 1, 0);
    let hi = _mm512_set_epi32(31, 30, 29, 28, 27, 26, 25, 24, 15, 14, 13, 12, 11, 10, 9, 8);
    let a01 = _mm512_permutex2var_epi32(z0, idx01, z1);
    let b01 = _mm512_permutex2var_epi32(z2, idx01, z3);
    let a23 = _mm512_permutex2var_epi32(z0, idx23, z1);
    let b23 = _mm512_permutex2var_epi32(z2, idx23, z3);
    [
        _mm512_permutex2var_epi32(a01, lo, b01),
        _mm512_permutex2var_epi32(a01, hi, b01),
        _mm512_permutex2var_epi32(a23, lo, b23),
        _mm512_permutex2var_epi32(a23, hi, b23),
    ]
}

/// Per-lane f16 in the low 16 bits of each dword to f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn f16_lanes(v: __m512i) -> __m512 {
    _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v))
}

/// Decode super-block `x` of row 0 and the same super-block of rows 1..16 (stride `wrow`) into
/// `dec` (see [`Dec`]); with `IL`, the 16 rows' super-block interleaved at `x`.
///
/// # Safety
/// AVX-512 available; a whole super-block of kind `K` at each `x + r * wrow`, `r < 16` (`IL`:
/// `16 * block_bytes(K)` bytes at `x`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn decode<const K: u8, const IL: bool>(x: *const u8, wrow: usize, dec: &mut Dec) {
    // Bytes `off..off + 16` of the 16 rows as 4 dword vectors (see `t16`); interleaved, those
    // are the 4 vectors at `16 * off` (dword `t` of all rows is the vector at `64 t`), and each
    // line read asks for the same line of the group's next super-block (a hint, may pass the
    // end): prefetches spread over the decode, one super-block ahead, measured best (see
    // `gemv_groups`).
    let t16 = |p: *const u8, stride: usize| -> [__m512i; 4] {
        // SAFETY: as the caller's `t16` reads (offsets inside the super-block).
        unsafe {
            if IL {
                let off = p.offset_from(x) as usize;
                debug_assert!(off.is_multiple_of(4));
                il_load(x, off, ROW_GROUP * block_bytes(K))
            } else {
                t16(p, stride)
            }
        }
    };
    let nib = _mm512_set1_epi8(0x0f);
    let v32 = |x: i32| _mm512_set1_epi32(x);
    // SAFETY: every t16 below reads 16 bytes inside the super-block (offsets + 16 <= size).
    unsafe {
        match K {
            IQ4XS => {
                // d (f16) | scales_h (u16) << 16, then scales_l (4 bytes).
                let (d, sc) = iq4xs_header(&t16(x, wrow));
                dec.d = d;
                dec.sc[..8].copy_from_slice(&sc);
                let tbl = iq4_table();
                for g in 0..8 {
                    let v = t16(x.add(8 + 16 * g), wrow);
                    for (k, vk) in v.into_iter().enumerate() {
                        dec.q[8 * g + k] = _mm512_shuffle_epi8(tbl, _mm512_and_si512(vk, nib));
                        dec.q[8 * g + 4 + k] = _mm512_shuffle_epi8(tbl, _mm512_and_si512(_mm512_srli_epi16(vk, 4), nib));
                    }
                }
            }
            Q4K | Q5K => {
                // d | dmin << 16, then the 12 scale bytes as words a, b, c.
                let (d, dmin, sc, mins) = k4_header(&t16(x, wrow));
                (dec.d, dec.dmin, dec.mins) = (d, dmin, mins);
                dec.sc[..8].copy_from_slice(&sc);
                // 4 chunks of 32 bytes: low nibbles are sub-block 2j, high nibbles 2j + 1. Q5_K:
                // bit 2j / 2j + 1 of qh[l] is the fifth bit (16) of value l of those sub-blocks.
                let qs = if K == Q5K { 48 } else { 16 };
                let qh = if K == Q5K { [t16(x.add(16), wrow), t16(x.add(32), wrow)] } else { [[_mm512_setzero_si512(); 4]; 2] };
                let one = _mm512_set1_epi8(1);
                let bit = |h: __m512i, s: i32| {
                    _mm512_slli_epi16(_mm512_and_si512(_mm512_srl_epi16(h, _mm_cvtsi32_si128(s)), one), 4)
                };
                for j in 0..4 {
                    for (hh, qhh) in qh.iter().enumerate() {
                        let v = t16(x.add(qs + 32 * j + 16 * hh), wrow);
                        for (k, (vk, hk)) in v.into_iter().zip(qhh).enumerate() {
                            let mut lo = _mm512_and_si512(vk, nib);
                            let mut hi = _mm512_and_si512(_mm512_srli_epi16(vk, 4), nib);
                            if K == Q5K {
                                lo = _mm512_or_si512(lo, bit(*hk, 2 * j as i32));
                                hi = _mm512_or_si512(hi, bit(*hk, 2 * j as i32 + 1));
                            }
                            dec.q[16 * j + 4 * hh + k] = lo;
                            dec.q[16 * j + 8 + 4 * hh + k] = hi;
                        }
                    }
                }
            }
            _ => {
                // ql[128], qh[64], int8 scales[16] at 192, d at 208.
                let s = t16(x.add(192), wrow);
                dec.d = f16_lanes(_mm512_srli_epi32(t16(x.add(194), wrow)[3], 16));
                for g in 0..16 {
                    let shl = v32(24 - 8 * (g % 4) as i32);
                    dec.sc[g] = _mm512_srai_epi32(_mm512_sllv_epi32(s[g / 4], shl), 24);
                }
                let m2 = _mm512_set1_epi8(0x30);
                for h in 0..2 {
                    for hh in 0..2 {
                        let l0 = t16(x.add(64 * h + 16 * hh), wrow);
                        let l1 = t16(x.add(64 * h + 32 + 16 * hh), wrow);
                        let qh = t16(x.add(128 + 32 * h + 16 * hh), wrow);
                        for k in 0..4 {
                            // Values l, l + 32, l + 64, l + 96 of this half, l = 16 hh + 4 k.
                            let i = 32 * h + 4 * hh + k;
                            let (a, b, c) = (l0[k], l1[k], qh[k]);
                            let lo4 = |v: __m512i| _mm512_and_si512(v, nib);
                            let hi4 = |v: __m512i| _mm512_and_si512(_mm512_srli_epi16(v, 4), nib);
                            dec.q[i] = _mm512_or_si512(lo4(a), _mm512_and_si512(_mm512_slli_epi16(c, 4), m2));
                            dec.q[i + 8] = _mm512_or_si512(lo4(b), _mm512_and_si512(_mm512_slli_epi16(c, 2), m2));
                            dec.q[i + 16] = _mm512_or_si512(hi4(a), _mm512_and_si512(c, m2));
                            dec.q[i + 24] = _mm512_or_si512(hi4(b), _mm512_and_si512(_mm512_srli_epi16(c, 2), m2));
                        }
                    }
                }
            }
        }
    }
}
