//! AVX-512 VNNI kernels over groups of 16 weight rows for the 32-value block types Q4_0,
//! Q4_1, Q5_0, IQ4_NL and Q8_0 (its bytes + 128 as the unsigned values), the "interleaved" form of ggml's repacked GEMM done in registers: the
//! 16 bytes of quants of one block of 16 rows are transposed (8 `vpermt2d`) so that each zmm
//! holds the same 4 quant positions of all 16 rows. One `vpdpbusd` with a broadcast activation
//! dword then advances 16 outputs at once, and one int32 lane ends up with a block's exact sum
//! `Σ (u − off)·a` for one row: the float work (convert, scale by `d_w·d_a`, add) is one
//! instruction per 16 outputs per block instead of per output.
//!
//! Which kernel computes a row must not depend on the batch or the thread count: the caller
//! passes row ranges starting at multiples of [`crate::simd::ROW_GROUP`] rows of the matrix, so
//! a row is in a complete group of 16 (this kernel) or in the matrix's last, partial group (the
//! row-by-row kernels) whatever the split.

use core::arch::x86_64::*;

use super::avx2::KVALUES_IQ4NL;

const Q4_0: u8 = 0;
const Q4_1: u8 = 1;
const Q5_0: u8 = 2;
const Q8_0: u8 = 4;
const IQ4NL: u8 = 5;

/// Bytes of one weight block.
const fn block_bytes(kind: u8) -> usize {
    match kind {
        Q4_1 => 20,
        Q5_0 => 22,
        Q8_0 => 34,
        _ => 18,
    }
}

/// Offset of the quant bytes in a block.
const fn quants_at(kind: u8) -> usize {
    match kind {
        Q4_1 => 4,
        Q5_0 => 6,
        _ => 2,
    }
}

/// Whether the activations are Q8_1 (36-byte blocks with `s = d·Σa`) rather than Q8_0.
const fn q8_1(kind: u8) -> bool {
    kind == Q4_1
}

/// The offset removed from the decoded unsigned values.
const fn offset(kind: u8) -> i32 {
    match kind {
        Q4_0 => 8,
        Q5_0 => 16,
        IQ4NL | Q8_0 => 128,
        _ => 0,
    }
}

/// How far ahead within each of the 16 rows the kernels prefetch. Measured on a 2-thread GEMV
/// over 131072 x 8192 Q4_0 (0.6 GB): 23.0-24.2 GB/s when prefetching the next group of 16 rows
/// instead, 24.6-25.0 with 512 bytes ahead, 24.4-24.7 with 1 KiB, 21.3 with 2 KiB.
const ROW_AHEAD: usize = 512;

/// Per activation row and block: `d_a`, the integer start `−off·Σa`, and `s_a` (Q8_1).
#[derive(Clone, Copy, Default)]
pub(crate) struct ActBlock {
    d: f32,
    base: i32,
    s: f32,
}

/// Whether `kind` has a 16-row kernel (see [`gemm16`]).
pub(crate) const fn has_kernel(kind: u8) -> bool {
    matches!(kind, Q4_0 | Q4_1 | Q5_0 | Q8_0 | IQ4NL)
}

/// The per-block activation data of [`gemm16`] for the `m` activation rows of `a` (`nb` blocks
/// each): built once per call and shared by every group of 16 weight rows.
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI available; `a` holds `m` rows of `nb` activation blocks of kind `K`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn panel16<const K: u8>(nb: usize, a: &[u8], m: usize) -> Vec<ActBlock> {
    let ab = if q8_1(K) { 36 } else { 34 };
    assert!(a.len() >= m * nb * ab, "panel16 buffer size");
    let mut panel = vec![ActBlock::default(); m * nb];
    let ones = _mm256_set1_epi8(1);
    for (p, blk) in panel.iter_mut().zip(a.chunks_exact(ab)) {
        let h = |i: usize| half::f16::from_bits(u16::from_le_bytes([blk[i], blk[i + 1]])).to_f32();
        // SAFETY: 32 quant bytes at the end of the block.
        let q = unsafe { _mm256_loadu_si256(blk[ab - 32..].as_ptr() as *const __m256i) };
        // Σa of the 32 signed quants: vpdpbusd with ones, then a horizontal add.
        let sum = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, q);
        let s128 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
        let s64 = _mm_add_epi32(s128, _mm_unpackhi_epi64(s128, s128));
        let total = _mm_cvtsi128_si32(_mm_add_epi32(s64, _mm_shuffle_epi32(s64, 0b01)));
        *p = ActBlock { d: h(0), base: -offset(K) * total, s: if q8_1(K) { h(2) } else { 0.0 } };
    }
    panel
}

/// 16 bytes at `p`, `p + stride`, `p + 2 stride`, `p + 3 stride` as the four 128-bit lanes.
///
/// # Safety
/// 16 readable bytes at each address.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn four(p: *const u8, stride: usize) -> __m512i {
    // SAFETY: by the caller.
    unsafe {
        let ld = |i: usize| p.add(i * stride) as *const __m128i;
        // Masked broadcasts from memory merge on ports 0 or 5; inserts would all need port 5.
        let z = _mm512_castsi128_si512(_mm_loadu_si128(ld(0)));
        let z = _mm512_mask_broadcast_i32x4(z, 0x00f0, _mm_loadu_si128(ld(1)));
        let z = _mm512_mask_broadcast_i32x4(z, 0x0f00, _mm_loadu_si128(ld(2)));
        _mm512_mask_broadcast_i32x4(z, 0xf000, _mm_loadu_si128(ld(3)))
    }
}

/// The constants that decode one block of 16 rows (see [`decode_block`]).
struct Decoder {
    nib: __m512i,
    tbl: __m512i,
    rows: __m512i,
    idx_a0: __m512i,
    idx_a1: __m512i,
    idx_lo: __m512i,
    idx_hi: __m512i,
    /// Q5_0: dword `t` has byte `j` = 0x10 if bit `j` of `t` is set.
    bits: __m512i,
}

/// One block of 16 rows, decoded (by [`decode_block`]): the scales `d` (and minimums `m` for Q4_1) per row, and the
/// unsigned values `lo[k]` = values 4k..4k+4, `hi[k]` = values 16+4k..16+4k+4 of every row (row =
/// dword lane).
pub(crate) struct Block16 {
    d: __m512,
    m: __m512,
    lo: [__m512i; 4],
    hi: [__m512i; 4],
}

impl Decoder {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
    fn new(wrow: usize) -> Decoder {
        // SAFETY: 16 readable bytes (the table).
        let tbl = unsafe {
            _mm512_broadcast_i32x4(_mm_add_epi8(
                _mm_loadu_si128(KVALUES_IQ4NL.as_ptr() as *const __m128i),
                _mm_set1_epi8(-128),
            ))
        };
        Decoder {
            nib: _mm512_set1_epi8(0x0f),
            tbl,
            // Gather offsets of the 16 rows' block headers.
            rows: _mm512_mullo_epi32(
                _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                _mm512_set1_epi32(wrow as i32),
            ),
            // Transposition indices (vpermt2d: 0..15 first source, 16..31 second).
            // Step 1: rows 0..7 (or 8..15) of two 4-row registers, dwords k and k+1: out = (k-k0)*8 + r.
            idx_a0: _mm512_set_epi32(29, 25, 21, 17, 13, 9, 5, 1, 28, 24, 20, 16, 12, 8, 4, 0),
            idx_a1: _mm512_set_epi32(31, 27, 23, 19, 15, 11, 7, 3, 30, 26, 22, 18, 14, 10, 6, 2),
            // Step 2: dword k of rows 0..7 (first) and 8..15 (second).
            idx_lo: _mm512_set_epi32(23, 22, 21, 20, 19, 18, 17, 16, 7, 6, 5, 4, 3, 2, 1, 0),
            idx_hi: _mm512_set_epi32(31, 30, 29, 28, 27, 26, 25, 24, 15, 14, 13, 12, 11, 10, 9, 8),
            bits: {
                let t: [i32; 16] = core::array::from_fn(|t| (0..4).map(|j| if t >> j & 1 == 1 { 0x10 << (8 * j) } else { 0 }).sum());
                // SAFETY: 64 readable bytes (the array).
                unsafe { _mm512_loadu_si512(t.as_ptr() as *const _) }
            },
        }
    }
}

/// Decode block `$b` of the 16 rows at `$w` (stride `$wrow`) of kind `$k` with decoder `$dec`
/// into a [`Block16`] (a macro so that it is inlined into the kernels' loops: as a function it
/// is not, and its ten-register result goes through memory).
///
/// Safety (of the expansion, inside an `unsafe` block): block `$b` of each of the 16 rows is
/// readable. Gathers read the first 4 bytes of a block, loads its quant bytes; prefetches
/// are hints (may pass the end).
macro_rules! decode_block {
    ($dec:expr, $k:expr, $w:expr, $wrow:expr, $b:expr) => {{
        let (w, wrow, b) = ($w, $wrow, $b);
        let (wb, qa) = (block_bytes($k), quants_at($k));
        let blk = w.add(b * wb);
        let hdr = _mm512_i32gather_epi32::<1>($dec.rows, blk as *const i32);
        let d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(hdr));
        let m = if q8_1($k) { _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(hdr, 16))) } else { _mm512_setzero_ps() };
        let q = blk.add(qa);
        let (z0, z1, z2, z3) = (four(q, wrow), four(q.add(4 * wrow), wrow), four(q.add(8 * wrow), wrow), four(q.add(12 * wrow), wrow));
        // The same block of the next group of rows, a line at a time.
        // Each of the 16 rows is a stream: once per 64 bytes of a row, prefetch the line
        // ROW_AHEAD bytes further, past the row's end into the same row of the next group.
        if (b * wb) % 64 < wb {
            let off = b * wb + ROW_AHEAD;
            let at = if off < wrow { off } else { 16 * wrow + off - wrow };
            for r in 0..16 {
                crate::simd::prefetch(w.wrapping_add(r * wrow + at), 1);
            }
        }
        // 16 bytes of 16 rows (4 per zmm) -> dword k of every row in zmm k.
        let transpose = |z0: __m512i, z1: __m512i, z2: __m512i, z3: __m512i| {
            let a01 = _mm512_permutex2var_epi32(z0, $dec.idx_a0, z1);
            let b01 = _mm512_permutex2var_epi32(z2, $dec.idx_a0, z3);
            let a23 = _mm512_permutex2var_epi32(z0, $dec.idx_a1, z1);
            let b23 = _mm512_permutex2var_epi32(z2, $dec.idx_a1, z3);
            [
                _mm512_permutex2var_epi32(a01, $dec.idx_lo, b01),
                _mm512_permutex2var_epi32(a01, $dec.idx_hi, b01),
                _mm512_permutex2var_epi32(a23, $dec.idx_lo, b23),
                _mm512_permutex2var_epi32(a23, $dec.idx_hi, b23),
            ]
        };
        let v = transpose(z0, z1, z2, z3);
        let mut lo = [_mm512_setzero_si512(); 4];
        let mut hi = [_mm512_setzero_si512(); 4];
        if $k == Q8_0 {
            // Values 16..32 are the next 16 bytes; the signed bytes + 128 are the unsigned values.
            let q2 = q.add(16);
            let h = transpose(four(q2, wrow), four(q2.add(4 * wrow), wrow), four(q2.add(8 * wrow), wrow), four(q2.add(12 * wrow), wrow));
            let flip = _mm512_set1_epi8(-128);
            for k in 0..4 {
                lo[k] = _mm512_xor_si512(v[k], flip);
                hi[k] = _mm512_xor_si512(h[k], flip);
            }
        } else {
            for k in 0..4 {
                lo[k] = _mm512_and_si512(v[k], $dec.nib);
                hi[k] = _mm512_and_si512(_mm512_srli_epi16(v[k], 4), $dec.nib);
                if $k == IQ4NL {
                    lo[k] = _mm512_shuffle_epi8($dec.tbl, lo[k]);
                    hi[k] = _mm512_shuffle_epi8($dec.tbl, hi[k]);
                }
            }
            if $k == Q5_0 {
                // The fifth bits: bit i of a row's qh word belongs to value i. Four bits at a
                // time index a table of dwords whose bytes are 0x10 where the bit is set
                // (vpermd reads the low 4 bits of each lane).
                let qh = _mm512_i32gather_epi32::<1>($dec.rows, blk.add(2) as *const i32);
                for k in 0..4 {
                    let bl = _mm512_permutexvar_epi32(_mm512_srlv_epi32(qh, _mm512_set1_epi32(4 * k as i32)), $dec.bits);
                    let bh = _mm512_permutexvar_epi32(_mm512_srlv_epi32(qh, _mm512_set1_epi32(16 + 4 * k as i32)), $dec.bits);
                    lo[k] = _mm512_or_si512(lo[k], bl);
                    hi[k] = _mm512_or_si512(hi[k], bh);
                }
            }
        }
        Block16 { d, m, lo, hi }
    }};
}

/// `out[i * ldo + j] = w_i · a_j` for the 16 weight rows at `w` (stride `wrow`) and the `m`
/// activation rows of `a`, `nb` blocks each; `panel` is [`panel16`] of `a`. With two or more
/// groups of 8 activation rows, the 16 rows' blocks are decoded once into `scratch` and read
/// back by every group (the integer sums and float steps are the same either way).
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI available; 16 rows of `nb` blocks at `w` with stride `wrow` (`16 *
/// wrow` fits an i32), `a` holds `m` rows of `nb` activation blocks, `panel` their `m * nb`
/// entries; `out` has `15 * ldo + m` values.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn gemm16<const K: u8>(
    nb: usize,
    w: *const u8,
    wrow: usize,
    a: &[u8],
    panel: &[ActBlock],
    m: usize,
    out: &mut [f32],
    ldo: usize,
    scratch: &mut Vec<Block16>,
) {
    let ab = if q8_1(K) { 36 } else { 34 };
    assert!(
        a.len() >= m * nb * ab && panel.len() >= m * nb && out.len() >= 15 * ldo + m && m <= ldo,
        "gemm16 buffer sizes"
    );
    let predecode = m >= 16;
    if predecode {
        let dec = Decoder::new(wrow);
        scratch.clear();
        for b in 0..nb {
            // SAFETY: block b of each of the 16 rows is inside the rows (caller).
            scratch.push(unsafe { decode_block!(dec, K, w, wrow, b) });
        }
    }
    // SAFETY: as the caller guarantees; the scratch holds the nb blocks when `predecode`.
    unsafe { act_rows::<K>(nb, w, wrow, a, panel, m, out, ldo, scratch, predecode) };
}

/// The activation rows of [`gemm16`], 8 at a time while 8 are left, over the 16 weight rows at
/// `w` (stride `wrow`), or with `predecode` over their `nb` blocks decoded in `scratch` (then
/// `w` is not read).
///
/// # Safety
/// As [`gemm16`]; with `predecode`, `scratch` holds the `nb` decoded blocks.
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn act_rows<const K: u8>(
    nb: usize,
    w: *const u8,
    wrow: usize,
    a: &[u8],
    panel: &[ActBlock],
    m: usize,
    out: &mut [f32],
    ldo: usize,
    scratch: &[Block16],
    predecode: bool,
) {
    let ab = if q8_1(K) { 36 } else { 34 };
    let mut j = 0;
    while j < m {
        let c = if m - j >= 8 { 8 } else { 1 };
        let ap = &a[j * nb * ab..];
        let pp = &panel[j * nb..];
        let mut res = [[0f32; 16]; 8];
        // SAFETY: activation rows j..j+c exist; weight rows as the caller guarantees; the
        // scratch holds the nb decoded blocks when `predecode`.
        unsafe {
            match (c, predecode) {
                (8, true) => group_decoded::<K, 8>(nb, scratch, ap, pp, &mut res),
                (_, true) => group_decoded::<K, 1>(nb, scratch, ap, pp, &mut res),
                (8, false) => group::<K, 8>(nb, w, wrow, ap, pp, &mut res),
                _ => group::<K, 1>(nb, w, wrow, ap, pp, &mut res),
            }
        }
        for (ci, col) in res.iter().enumerate().take(c) {
            for (r, v) in col.iter().enumerate() {
                out[r * ldo + j + ci] = *v;
            }
        }
        j += c;
    }
}

/// [`gemm16`] for Q4_0 over one interleaved group of 16 rows at `x` (`crate::simd::interleave`:
/// block `b`'s quants at `256 b`, its 16 `d` at `256 nb + 32 b`): the blocks are decoded with
/// plain loads into `scratch`, then every activation row runs over them as in [`gemm16`]'s
/// decode-once path (the same integer sums and float steps, so the same results).
///
/// # Safety
/// As [`gemm16`], with one interleaved group of `nb` blocks at `x`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn gemm16_interleaved_q4_0(
    nb: usize,
    x: *const u8,
    a: &[u8],
    panel: &[ActBlock],
    m: usize,
    out: &mut [f32],
    ldo: usize,
    scratch: &mut Vec<Block16>,
) {
    assert!(a.len() >= m * nb * 34 && panel.len() >= m * nb && out.len() >= 15 * ldo + m && m <= ldo, "gemm16 buffer sizes");
    let nib = _mm512_set1_epi8(0x0f);
    scratch.clear();
    for b in 0..nb {
        // SAFETY: block b's quants and scales are inside the group (caller).
        unsafe {
            let q = x.add(256 * b);
            let d = _mm512_cvtph_ps(_mm256_loadu_si256(x.add(256 * nb + 32 * b) as *const __m256i));
            let v: [__m512i; 4] = core::array::from_fn(|k| _mm512_loadu_si512(q.add(64 * k) as *const __m512i));
            let lo = v.map(|vk| _mm512_and_si512(vk, nib));
            let hi = v.map(|vk| _mm512_and_si512(_mm512_srli_epi16(vk, 4), nib));
            scratch.push(Block16 { d, m: _mm512_setzero_ps(), lo, hi });
        }
    }
    // SAFETY: the scratch holds the nb blocks; activation rows and outputs as the caller
    // guarantees (`x` is not read again).
    unsafe { act_rows::<Q4_0>(nb, x, 0, a, panel, m, out, ldo, scratch, true) };
}

/// Add block `$b` (decoded: `$x`) times activation rows `0..C` to `$acc` (one integer sum per
/// row and activation, then one scaled float add). Safety: activation block `$b` of rows 0..C
/// is inside `$a` (stride `$nb` blocks of `$ab` bytes) and the panel.
macro_rules! block_step {
    ($k:expr, $x:expr, $a:expr, $panel:expr, $nb:expr, $b:expr, $ab:expr, $acc:expr) => {{
        let x = $x;
        for c in 0..$acc.len() {
            let y = $a.as_ptr().add((c * $nb + $b) * $ab + $ab - 32) as *const i32;
            let p = $panel.get_unchecked(c * $nb + $b);
            let mut s0 = _mm512_set1_epi32(p.base);
            let mut s1 = _mm512_setzero_si512();
            for k in 0..4 {
                s0 = _mm512_dpbusd_epi32(s0, x.lo[k], _mm512_set1_epi32(core::ptr::read_unaligned(y.add(k))));
                s1 = _mm512_dpbusd_epi32(s1, x.hi[k], _mm512_set1_epi32(core::ptr::read_unaligned(y.add(4 + k))));
            }
            let isum = _mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1));
            $acc[c] = _mm512_fmadd_ps(isum, _mm512_mul_ps(x.d, _mm512_set1_ps(p.d)), $acc[c]);
            if q8_1($k) {
                $acc[c] = _mm512_fmadd_ps(x.m, _mm512_set1_ps(p.s), $acc[c]);
            }
        }
    }};
}

/// 16 weight rows times `C` activation rows; `res[act][row]`.
///
/// # Safety
/// As [`gemm16`], with `C` rows at `a` (stride `nb` blocks) and `C * nb` panel entries.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn group<const K: u8, const C: usize>(
    nb: usize,
    w: *const u8,
    wrow: usize,
    a: &[u8],
    panel: &[ActBlock],
    res: &mut [[f32; 16]; 8],
) {
    let ab = if q8_1(K) { 36 } else { 34 };
    let dec = Decoder::new(wrow);
    let mut acc = [_mm512_setzero_ps(); C];
    for b in 0..nb {
        // SAFETY: block b of each of the 16 rows is inside the rows (caller); activation block
        // b of rows 0..C is inside `a` and the panel (caller).
        unsafe {
            let x = decode_block!(dec, K, w, wrow, b);
            block_step!(K, &x, a, panel, nb, b, ab, acc);
        }
    }
    for c in 0..C {
        // SAFETY: 16 floats into a [f32; 16].
        unsafe { _mm512_storeu_ps(res[c].as_mut_ptr(), acc[c]) };
    }
}

/// [`group`] over blocks decoded beforehand (`blocks[b]` is block `b` of the 16 rows): the
/// same integer sums and float steps in the same order, so the same results.
///
/// # Safety
/// As [`group`]; `blocks` holds `nb` blocks.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn group_decoded<const K: u8, const C: usize>(
    nb: usize,
    blocks: &[Block16],
    a: &[u8],
    panel: &[ActBlock],
    res: &mut [[f32; 16]; 8],
) {
    let ab = if q8_1(K) { 36 } else { 34 };
    let mut acc = [_mm512_setzero_ps(); C];
    for (b, x) in blocks[..nb].iter().enumerate() {
        // SAFETY: activation block b of rows 0..C is inside `a` and the panel (caller).
        unsafe { block_step!(K, x, a, panel, nb, b, ab, acc) };
    }
    for c in 0..C {
        // SAFETY: 16 floats into a [f32; 16].
        unsafe { _mm512_storeu_ps(res[c].as_mut_ptr(), acc[c]) };
    }
}

/// Q4_1 × Q8_1 for `nr` weight rows and `m` activation rows in ggml's order, bit for bit the
/// AVX2 row kernel ([`super::avx2::dot_q4_1`]) and ggml's AVX2 `vec_dot`: per output, eight
/// float lanes, lane `g` adding `fma(d_w·d_a, Σ_{4 values 4g..4g+4} u·a, lane)` block after block;
/// `Σ m_w·s_a` added on its own (multiply, then add); the lanes summed as
/// `((l0+l4)+(l2+l6))+((l1+l5)+(l3+l7))`, then the minimum term. Complete groups of 16 rows run
/// the interleaved decode with those eight lanes per (row, activation) pair; other rows call the
/// row kernel, which gives the same bits, so nothing depends on the batch or the row split.
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI and AVX2/FMA/F16C available; `w` holds `nr` rows and `a` holds `m` rows
/// of `k` values (a multiple of 32); `out` holds `nr * m` values.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn gemm_q4_1(k: usize, w: &[u8], nr: usize, a: &[u8], m: usize, out: &mut [f32]) {
    let nb = k / 32;
    let (wrow, arow) = (nb * 20, nb * 36);
    assert!(w.len() >= nr * wrow && a.len() >= m * arow && out.len() >= nr * m, "gemm_q4_1 buffer sizes");
    let mut panel = vec![ActBlock::default(); m * nb];
    for (p, blk) in panel.iter_mut().zip(a.chunks_exact(36)) {
        let h = |i: usize| half::f16::from_bits(u16::from_le_bytes([blk[i], blk[i + 1]])).to_f32();
        *p = ActBlock { d: h(0), base: 0, s: h(2) };
    }
    let mut i = 0;
    if wrow * 16 <= i32::MAX as usize && nb > 0 {
        while nr - i >= 16 {
            let wp = w[i * wrow..].as_ptr();
            let mut j = 0;
            while j < m {
                let c = if m - j >= 2 { 2 } else { 1 };
                let mut res = [[0f32; 16]; 2];
                // SAFETY: rows i..i+16 are inside `w` and activation rows j..j+c inside `a` and
                // the panel (lengths checked above); 16 * wrow fits an i32.
                unsafe {
                    if c == 2 {
                        group_q4_1::<2>(nb, wp, wrow, &a[j * arow..], &panel[j * nb..], &mut res);
                    } else {
                        group_q4_1::<1>(nb, wp, wrow, &a[j * arow..], &panel[j * nb..], &mut res);
                    }
                }
                for (ci, col) in res.iter().enumerate().take(c) {
                    for (r, v) in col.iter().enumerate() {
                        out[(i + r) * m + j + ci] = *v;
                    }
                }
                j += c;
            }
            i += 16;
        }
    }
    for r in i..nr {
        for j in 0..m {
            // SAFETY: row r of `w` and row j of `a` are whole rows of `k` values (checked above).
            out[r * m + j] = unsafe { super::avx2::dot_q4_1(k, &w[r * wrow..(r + 1) * wrow], &a[j * arow..(j + 1) * arow]) };
        }
    }
}

/// 16 Q4_1 rows times `C` activation rows in ggml's order (see [`gemm_q4_1`]); `res[act][row]`.
///
/// # Safety
/// As [`gemm16`], with `C` rows at `a` (stride `nb` blocks) and `C * nb` panel entries.
#[inline]
#[allow(clippy::needless_range_loop)] // lanes g and activations c index parallel arrays
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn group_q4_1<const C: usize>(
    nb: usize,
    w: *const u8,
    wrow: usize,
    a: &[u8],
    panel: &[ActBlock],
    res: &mut [[f32; 16]; 2],
) {
    let dec = Decoder::new(wrow);
    let mut acc = [[_mm512_setzero_ps(); 8]; C];
    let mut summs = [_mm512_setzero_ps(); C];
    for b in 0..nb {
        // SAFETY: block b of each of the 16 rows is inside the rows (caller); activation block
        // b of rows 0..C is inside `a` and the panel (caller).
        unsafe {
            let x = decode_block!(dec, Q4_1, w, wrow, b);
            for c in 0..C {
                let y = a.as_ptr().add((c * nb + b) * 36 + 4) as *const i32;
                let p = panel.get_unchecked(c * nb + b);
                let d = _mm512_mul_ps(x.d, _mm512_set1_ps(p.d));
                summs[c] = _mm512_add_ps(summs[c], _mm512_mul_ps(x.m, _mm512_set1_ps(p.s)));
                for g in 0..8 {
                    let u = if g < 4 { x.lo[g] } else { x.hi[g - 4] };
                    let i = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, _mm512_set1_epi32(core::ptr::read_unaligned(y.add(g))));
                    acc[c][g] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(i), acc[c][g]);
                }
            }
        }
    }
    for c in 0..C {
        let l = &acc[c];
        let s = _mm512_add_ps(
            _mm512_add_ps(_mm512_add_ps(l[0], l[4]), _mm512_add_ps(l[2], l[6])),
            _mm512_add_ps(_mm512_add_ps(l[1], l[5]), _mm512_add_ps(l[3], l[7])),
        );
        // SAFETY: 16 floats into a [f32; 16].
        unsafe { _mm512_storeu_ps(res[c].as_mut_ptr(), _mm512_add_ps(s, summs[c])) };
    }
}

/// Q4_0 × one Q8_0 activation row over `G` consecutive interleaved groups of 16 rows
/// (`crate::simd::interleave`: block `b`'s quants at `256 b`, its 16 `d` at `256 nb + 32 b`;
/// group stride `gstride`), their blocks taken in lock step (`G` memory streams). Each output is
/// computed as [`gemm16`] computes it: per block the exact `Σ (u − 8)·a` (here the high nibbles
/// are used in place, `byte & 0xf0` = 16·u, and the sum shifted back exactly), converted, then
/// `acc = fma(sum, d_w·d_a, acc)`; so the results are the same bit for bit. Writes `16 G`
/// outputs.
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI available; `G` interleaved groups of `nb` blocks at `w` with stride
/// `gstride`; `a` holds one row of `nb` Q8_0 blocks and `panel` its `nb` entries ([`panel16`]);
/// `out.len() >= 16 G`.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(crate) unsafe fn gemv_q4_0_interleaved<const G: usize>(
    nb: usize,
    w: *const u8,
    gstride: usize,
    a: &[u8],
    panel: &[ActBlock],
    out: &mut [f32],
) {
    assert!(a.len() >= nb * 34 && panel.len() >= nb && out.len() >= 16 * G, "gemv_q4_0 sizes");
    let nib = _mm512_set1_epi8(0x0f);
    let hnib = _mm512_set1_epi8(0xf0u8 as i8);
    let mut acc = [_mm512_setzero_ps(); G];
    for b in 0..nb {
        // SAFETY: block b of the activation row and of each group is inside the buffers
        // (caller); prefetches are hints (may pass the end).
        unsafe {
            let y = a.as_ptr().add(34 * b + 2) as *const i32;
            let ya: [__m512i; 8] = core::array::from_fn(|k| _mm512_set1_epi32(core::ptr::read_unaligned(y.add(k))));
            let p = panel.get_unchecked(b);
            let da = _mm512_set1_ps(p.d);
            for (g, accg) in acc.iter_mut().enumerate() {
                let x = w.add(g * gstride);
                let q = x.add(256 * b);
                // One block ahead: its 4 quant lines, and every other block the line of scales.
                for l in 0..4 {
                    crate::simd::prefetch(q.wrapping_add(256 + 64 * l), 1);
                }
                let dp = x.add(256 * nb + 32 * b);
                if b % 2 == 0 {
                    crate::simd::prefetch(dp.wrapping_add(64), 1);
                }
                let d = _mm512_cvtph_ps(_mm256_loadu_si256(dp as *const __m256i));
                let mut s0 = _mm512_set1_epi32(p.base);
                let mut s1 = _mm512_setzero_si512();
                for k in 0..4 {
                    let v = _mm512_loadu_si512(q.add(64 * k) as *const __m512i);
                    s0 = _mm512_dpbusd_epi32(s0, _mm512_and_si512(v, nib), ya[k]);
                    s1 = _mm512_dpbusd_epi32(s1, _mm512_and_si512(v, hnib), ya[4 + k]);
                }
                let isum = _mm512_cvtepi32_ps(_mm512_add_epi32(s0, _mm512_srai_epi32(s1, 4)));
                *accg = _mm512_fmadd_ps(isum, _mm512_mul_ps(d, da), *accg);
            }
        }
    }
    for (g, accg) in acc.iter().enumerate() {
        // SAFETY: 16 floats into `out` (length asserted).
        unsafe { _mm512_storeu_ps(out.as_mut_ptr().add(16 * g), *accg) };
    }
}
