//! AVX2 (+FMA, F16C) kernels for the grid types (IQ1/IQ2/IQ3), the ternary types (TQ1_0,
//! TQ2_0), the FP4 types (MXFP4, NVFP4), the 1/2-bit types (Q1_0, Q2_0) and the float types
//! (F16, BF16, F32 against themselves).
//!
//! Same contract as [`super::avx2`]: every kernel is an `unsafe fn` with `#[target_feature]`,
//! installed in the dispatch table only after run-time detection. The integer part of every
//! block is computed exactly (the byte products never saturate: grid magnitudes are at most 62
//! and activations at most 127, so a `maddubs` pair sum is at most 15748).
//!
//! The 256-value types reduce each block's integer lanes exactly and accumulate
//! `d * sum` in block order, the scalar reference's own float operations, so they return the
//! reference's value bit for bit (summing the eight lanes as floats instead would let lanes
//! of opposite sign cancel after rounding). The 32/64/128-value types keep float lanes, as
//! ggml does, and differ from the references only by summation order.

use core::arch::x86_64::*;

use super::avx2::{f16_at, f16_at_nodep, f32_at, hsum_ps, load128, load256};
use crate::quant::fp4::KVALUES_FP4;
use crate::quant::grids::{IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID};
use crate::simd::Overrides;
use crate::types::QuantType as T;

/// The AVX2 entries of the dispatch table for these types.
///
/// # Safety
/// Only call after checking that AVX2, FMA and F16C are available: the returned kernels use them.
pub(crate) unsafe fn overrides() -> Overrides {
    Overrides {
        dot: vec![
            (T::IQ2_XXS, dot_iq2_xxs as _),
            (T::IQ3_XXS, dot_iq3_xxs as _),
            (T::IQ2_XS, dot_iq2_xs as _),
            (T::IQ2_S, dot_iq2_s as _),
            (T::IQ3_S, dot_iq3_s as _),
            (T::TQ2_0, dot_tq2_0 as _),
            (T::TQ1_0, dot_tq1_0 as _),
            (T::IQ1_S, dot_iq1_s as _),
            (T::IQ1_M, if std::arch::is_x86_feature_detected!("bmi2") { dot_iq1_m_bmi2 as _ } else { dot_iq1_m as _ }),
            (T::MXFP4, dot_mxfp4 as _),
            (T::NVFP4, dot_nvfp4 as _),
            (T::Q1_0, dot_q1_0 as _),
            (T::Q2_0, dot_q2_0 as _),
            (T::F16, dot_f16 as _),
            (T::BF16, dot_bf16 as _),
            (T::F32, dot_f32 as _),
        ],
        act: vec![],
    }
}

/// Bytes of a Q8_K block (f32 d, 256 i8, 16 i16 sums) and of a Q8_0 block (f16 d, 32 i8).
const Q8K: usize = 292;
const Q80: usize = 34;

// ---------------------------------------------------------------------------------------------
// Tables and small helpers.

/// The 128 seven-bit sign fields of IQ2_XXS / IQ2_XS / IQ3_XXS expanded to eight `±1` bytes
/// (`-1` where the bit of `KSIGNS_IQ2XS[i]` is set; bit 7 restores even parity). ggml keeps the
/// same table as `keven_signs_q2xs`; here it is computed.
pub(crate) static KEVEN_SIGNS: [u64; 128] = keven_signs();

const fn keven_signs() -> [u64; 128] {
    let mut t = [0u64; 128];
    let mut i = 0;
    while i < 128 {
        let s = i as u32 | ((i as u32).count_ones() & 1) << 7;
        let mut v = 0u64;
        let mut j = 0;
        while j < 8 {
            let b: u64 = if (s >> j) & 1 == 1 { 0xff } else { 0x01 };
            v |= b << (8 * j);
            j += 1;
        }
        t[i] = v;
        i += 1;
    }
    t
}

/// UE4M3 byte to f32 (halved, as NVFP4 stores it): the table of `quant::fp4::ue4m3_to_f32`
/// (checked equal for all 256 bytes in the tests below).
pub(super) static UE4M3_HALF: [f32; 256] = ue4m3_table();

const fn ue4m3_table() -> [f32; 256] {
    let mut t = [0f32; 256];
    let mut x = 0;
    while x < 256 {
        let b = x as u8;
        t[x] = if b == 0 || b == 0x7f {
            0.0
        } else {
            let exp = ((b >> 3) & 0xf) as i32;
            let man = (b & 7) as f32;
            let raw = if exp == 0 {
                man * f32::from_bits(((127 - 9) as u32) << 23)
            } else {
                (1.0 + man / 8.0) * f32::from_bits(((exp - 7 + 127) as u32) << 23)
            };
            raw * 0.5
        };
        x += 1;
    }
    t
}

/// E8M0 byte to `2^(e - 128)` (the table of `quant::fp4::e8m0_to_f32_half`, checked equal below).
pub(super) static E8M0_HALF: [f32; 256] = e8m0_table();

const fn e8m0_table() -> [f32; 256] {
    let mut t = [0f32; 256];
    let mut x = 0;
    while x < 256 {
        let bits = if x < 2 { 0x0020_0000u32 << x } else { ((x - 1) as u32) << 23 };
        t[x] = f32::from_bits(bits);
        x += 1;
    }
    t
}

#[inline(always)]
unsafe fn rd16(p: *const u8) -> u32 {
    // SAFETY: the caller guarantees 2 readable bytes at `p`.
    u16::from_le(unsafe { core::ptr::read_unaligned(p as *const u16) }) as u32
}

#[inline(always)]
unsafe fn rd32(p: *const u8) -> u32 {
    // SAFETY: the caller guarantees 4 readable bytes at `p`.
    u32::from_le(unsafe { core::ptr::read_unaligned(p as *const u32) })
}

/// Horizontal sum of 8 i32 (exact; block sums here stay far below 2^31).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01));
    _mm_cvtsi128_si32(s)
}

/// Four 8-byte table entries, lowest first (IQ1_M and the IQ3_XXS signs measured no faster
/// with [`grid4`]).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn set4(a: u64, b: u64, c: u64, d: u64) -> __m256i {
    _mm256_set_epi64x(d as i64, c as i64, b as i64, a as i64)
}

/// Four little-endian u16 at `p` (8 readable bytes), read by scalar loads that LLVM cannot merge
/// with a vector load of the same bytes (it would extract them with `vpextrw`, two uops each, one
/// on the shuffle port that these kernels are bound by).
#[inline(always)]
unsafe fn idx4_u16(p: *const u8) -> [usize; 4] {
    let (a, b, c, d): (usize, usize, usize, usize);
    // SAFETY: the caller guarantees 8 readable bytes at `p`; the asm only reads them (x86 is
    // little-endian, as the format) and writes the four output registers.
    unsafe {
        core::arch::asm!(
            "movzx {a:e}, word ptr [{p}]",
            "movzx {b:e}, word ptr [{p} + 2]",
            "movzx {c:e}, word ptr [{p} + 4]",
            "movzx {d:e}, word ptr [{p} + 6]",
            p = in(reg) p, a = out(reg) a, b = out(reg) b, c = out(reg) c, d = out(reg) d,
            options(pure, readonly, nostack, preserves_flags),
        )
    };
    [a, b, c, d]
}

/// Four rows of an 8-byte grid table (length a power of two) as one vector, row `i[0]` lowest.
/// Indices are reduced modulo the length (callers' indices already are in range). Assembled by
/// one `vmovq` and three broadcast loads blended in: no shuffle-port uops, unlike the
/// unpack/insert sequence LLVM makes of `_mm256_set_epi64x` (and of a blend of broadcasts
/// written with intrinsics).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn grid4(t: &[u64], i: [usize; 4]) -> __m256i {
    debug_assert!(t.len().is_power_of_two());
    let m = t.len() - 1;
    let (a, b, c, d) = (i[0] & m, i[1] & m, i[2] & m, i[3] & m);
    let out: __m256i;
    // SAFETY: every index is below `t.len()` (masked just above), so the four 8-byte reads are
    // inside `t`; the asm reads nothing else and writes only its two vector registers.
    unsafe {
        core::arch::asm!(
            "vmovq {o:x}, qword ptr [{t} + {a}*8]",
            "vpbroadcastq {s}, qword ptr [{t} + {b}*8]",
            "vpblendd {o}, {o}, {s}, 0x0c",
            "vpbroadcastq {s}, qword ptr [{t} + {c}*8]",
            "vpblendd {o}, {o}, {s}, 0x30",
            "vpbroadcastq {s}, qword ptr [{t} + {d}*8]",
            "vpblendd {o}, {o}, {s}, 0xc0",
            t = in(reg) t.as_ptr(), a = in(reg) a, b = in(reg) b, c = in(reg) c, d = in(reg) d,
            o = out(ymm_reg) out, s = out(ymm_reg) _,
            options(pure, readonly, nostack, preserves_flags),
        )
    };
    out
}

/// `BCAST16[k]`: the byte shuffle broadcasting i16 element `k` of each 128-bit half (of 8) to
/// that whole half (a table, so that loops need not be unrolled for the masks to be constants).
static BCAST16: [[u8; 32]; 8] = bcast16_table();

const fn bcast16_table() -> [[u8; 32]; 8] {
    let mut t = [[0u8; 32]; 8];
    let mut k = 0;
    while k < 8 {
        let mut j = 0;
        while j < 32 {
            t[k][j] = (2 * k + j % 2) as u8;
            j += 1;
        }
        k += 1;
    }
    t
}

/// Signed x signed bytes summed in pairs to i16 (`x` in -127..=127 after `sign`; exact when
/// `|x| * |y|` pair sums stay below 2^15, which holds for every caller here).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn mul_add_i8(x: __m256i, y: __m256i) -> __m256i {
    _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x))
}

/// Negate the bytes of `y` where the bit of `bits` (32 bits, one per byte, bit `j` for byte
/// `j`) is set.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn apply_sign_bits(y: __m256i, bits: u32) -> __m256i {
    let spread = _mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3,
    );
    let sel = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let b = _mm256_and_si256(_mm256_shuffle_epi8(_mm256_set1_epi32(bits as i32), spread), sel);
    let neg = _mm256_cmpeq_epi8(b, sel);
    _mm256_sub_epi8(_mm256_xor_si256(y, neg), neg)
}

// ---------------------------------------------------------------------------------------------
// IQ2 / IQ3 grid types against Q8_K.

/// IQ2_XXS x Q8_K (66-byte blocks: f16 d, then per 32 values 4 grid bytes and a u32 holding
/// four 7-bit sign fields and a 4-bit scale). Value = `d * (2s + 1) / 8 * grid * sign`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_iq2_xxs(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 256;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let mut acc = 0f32;
    for i in 0..nb {
        // SAFETY: super-block i (66 bytes of IQ2_XXS, 292 of Q8_K) is inside both rows.
        unsafe {
            let (x, y) = (wp.add(66 * i), ap.add(Q8K * i));
            let d = f16_at(x) * f32_at(y);
            let mut s1 = _mm256_setzero_si256();
            let mut s2 = _mm256_setzero_si256();
            for ib in (0..8).step_by(2) {
                let q = x.add(2 + 8 * ib);
                let (g1, a1, g2, a2) = (rd32(q), rd32(q.add(4)), rd32(q.add(8)), rd32(q.add(12)));
                let grid = |g: u32| {
                    let g = g as usize;
                    grid4(&IQ2XXS_GRID, [g & 0xff, (g >> 8) & 0xff, (g >> 16) & 0xff, g >> 24])
                };
                let signs = |s: u32| {
                    let s = s as usize;
                    grid4(&KEVEN_SIGNS, [s & 127, (s >> 7) & 127, (s >> 14) & 127, (s >> 21) & 127])
                };
                let y1 = _mm256_sign_epi8(load256(y.add(4 + 32 * ib)), signs(a1));
                let y2 = _mm256_sign_epi8(load256(y.add(36 + 32 * ib)), signs(a2));
                let d1 = _mm256_maddubs_epi16(grid(g1), y1);
                let d2 = _mm256_maddubs_epi16(grid(g2), y2);
                s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(d1, _mm256_set1_epi16((2 * (a1 >> 28) + 1) as i16)));
                s2 = _mm256_add_epi32(s2, _mm256_madd_epi16(d2, _mm256_set1_epi16((2 * (a2 >> 28) + 1) as i16)));
            }
            acc += d * hsum_i32(_mm256_add_epi32(s1, s2)) as f32;
        }
    }
    0.125 * acc
}

/// IQ3_XXS x Q8_K (98-byte blocks: f16 d, 64 grid bytes of 4 values each, then per 32 values
/// a u32 of four 7-bit sign fields and a 4-bit scale). Value = `d * (2s + 1) / 4 * grid * sign`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_iq3_xxs(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 256;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let mut acc = 0f32;
    for i in 0..nb {
        // SAFETY: super-block i (98 bytes of IQ3_XXS, 292 of Q8_K) is inside both rows.
        unsafe {
            let (x, y) = (wp.add(98 * i), ap.add(Q8K * i));
            let d = f16_at(x) * f32_at(y);
            let mut s1 = _mm256_setzero_si256();
            let mut s2 = _mm256_setzero_si256();
            for ib in (0..8).step_by(2) {
                let q = x.add(2 + 8 * ib);
                let grid = |p: *const u8| {
                    // (In the enclosing unsafe block) 8 readable bytes at `p`: inside the block's 64 grid bytes.
                    let b = core::ptr::read_unaligned(p as *const [u8; 8]);
                    let g = |k: usize| IQ3XXS_GRID[b[k] as usize] as i32;
                    _mm256_setr_epi32(g(0), g(1), g(2), g(3), g(4), g(5), g(6), g(7))
                };
                let (a1, a2) = (rd32(x.add(66 + 4 * ib)), rd32(x.add(70 + 4 * ib)));
                // (`grid4` measured slower here than the plain set.)
                let signs = |s: u32| {
                    set4(
                        KEVEN_SIGNS[(s & 127) as usize],
                        KEVEN_SIGNS[((s >> 7) & 127) as usize],
                        KEVEN_SIGNS[((s >> 14) & 127) as usize],
                        KEVEN_SIGNS[((s >> 21) & 127) as usize],
                    )
                };
                let y1 = _mm256_sign_epi8(load256(y.add(4 + 32 * ib)), signs(a1));
                let y2 = _mm256_sign_epi8(load256(y.add(36 + 32 * ib)), signs(a2));
                let d1 = _mm256_maddubs_epi16(grid(q), y1);
                let d2 = _mm256_maddubs_epi16(grid(q.add(8)), y2);
                s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(d1, _mm256_set1_epi16((2 * (a1 >> 28) + 1) as i16)));
                s2 = _mm256_add_epi32(s2, _mm256_madd_epi16(d2, _mm256_set1_epi16((2 * (a2 >> 28) + 1) as i16)));
            }
            acc += d * hsum_i32(_mm256_add_epi32(s1, s2)) as f32;
        }
    }
    0.25 * acc
}

/// IQ2_XS x Q8_K (74-byte blocks: f16 d, 32 u16 of 9-bit grid index + 7-bit sign field, 8
/// bytes of two 4-bit scales). The eighth sign bit (parity) is computed in SIMD: the 7 stored
/// bits folded to 4 by xor, then a 16-entry parity lookup.
///
/// Port 5 (the only shuffle port) is the bottleneck of this kernel, so the grid indices are read
/// by scalar loads ([`idx4_u16`]), grid rows are assembled by broadcast loads and blends
/// ([`grid4`]), and the 16 scales are
/// widened once per block (even ones in the low 128-bit half, odd ones in the high) so that each
/// 32 values' scale pair is one in-lane shuffle.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_iq2_xs(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 256;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let one = _mm256_set1_epi8(1);
    // Group g of 4 (sign byte at 2g of a 128-bit lane) spread over 8 bytes.
    let spread1 = _mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 4, 4, 4, 4, 4, 4, 4, 4, 6, 6, 6, 6, 6, 6, 6, 6,
    );
    let spread2 = _mm256_add_epi8(spread1, _mm256_set1_epi8(8));
    let bitsel = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    // 0x80 where the 4-bit index has odd parity.
    let parity = _mm256_setr_epi8(
        0, -128, -128, 0, -128, 0, 0, -128, -128, 0, 0, -128, 0, -128, -128, 0, 0, -128, -128, 0, -128, 0, 0, -128,
        -128, 0, 0, -128, 0, -128, -128, 0,
    );
    let m4 = _mm_set1_epi8(0x0f);
    let mut acc = 0f32;
    for i in 0..nb {
        // SAFETY: super-block i (74 bytes of IQ2_XS, 292 of Q8_K) is inside both rows.
        unsafe {
            let (x, y) = (wp.add(74 * i), ap.add(Q8K * i));
            let d = f16_at(x) * f32_at(y);
            // Scales 2s + 1: even-numbered (low nibbles) in bytes 0..8, odd ones in 8..16,
            // widened to i16 so that the low 128-bit half holds the even ones.
            let sc8 = _mm_loadl_epi64(x.add(66) as *const __m128i);
            let sc = _mm_unpacklo_epi64(_mm_and_si128(sc8, m4), _mm_and_si128(_mm_srli_epi16(sc8, 4), m4));
            let sc = _mm256_cvtepu8_epi16(_mm_add_epi8(_mm_slli_epi16(sc, 1), _mm_set1_epi8(1)));
            let mut s1 = _mm256_setzero_si256();
            let mut s2 = _mm256_setzero_si256();
            for half in 0..2 {
                let q = x.add(2 + 32 * half);
                let qv = load256(q);
                let part = _mm256_srli_epi16(qv, 9);
                let fold = _mm256_xor_si256(part, _mm256_srli_epi16(qv, 13));
                let full = _mm256_or_si256(part, _mm256_shuffle_epi8(parity, fold));
                let lo = _mm256_permute2x128_si256(full, full, 0x00);
                let hi = _mm256_permute2x128_si256(full, full, 0x11);
                let sign_of = |v: __m256i, sp: __m256i| {
                    let b = _mm256_and_si256(_mm256_shuffle_epi8(v, sp), bitsel);
                    _mm256_or_si256(_mm256_cmpeq_epi8(b, bitsel), one)
                };
                for (j, (v, sp)) in [(lo, spread1), (lo, spread2), (hi, spread1), (hi, spread2)].into_iter().enumerate() {
                    // 9-bit grid indices (masked by `grid4`), 8 bytes inside the block.
                    let grid = grid4(&IQ2XS_GRID, idx4_u16(q.add(8 * j)));
                    let ib = 4 * half + j;
                    let yv = _mm256_sign_epi8(load256(y.add(4 + 32 * ib)), sign_of(v, sp));
                    let dot = _mm256_maddubs_epi16(grid, yv);
                    // Scales 2ib (first 16 values) and 2ib + 1 (last 16) as i16 lanes.
                    let scl = _mm256_shuffle_epi8(sc, load256(BCAST16[ib].as_ptr()));
                    if j % 2 == 0 {
                        s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(dot, scl));
                    } else {
                        s2 = _mm256_add_epi32(s2, _mm256_madd_epi16(dot, scl));
                    }
                }
            }
            acc += d * hsum_i32(_mm256_add_epi32(s1, s2)) as f32;
        }
    }
    0.125 * acc
}

/// IQ2_S x Q8_K (82-byte blocks: f16 d, 32 low index bytes, 32 sign bytes, 8 bytes of 2-bit
/// index tops, 8 bytes of two 4-bit scales).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_iq2_s(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 256;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let half_pick = _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    let m4 = _mm_set1_epi8(0x0f);
    let mut acc = 0f32;
    for i in 0..nb {
        // SAFETY: super-block i (82 bytes of IQ2_S, 292 of Q8_K) is inside both rows.
        unsafe {
            let (x, y) = (wp.add(82 * i), ap.add(Q8K * i));
            let d = f16_at(x) * f32_at(y);
            let (qs, signs, qh) = (x.add(2), x.add(34), x.add(66));
            // Scales 2s + 1 per 16 values, in value order (low nibble first).
            let sc8 = _mm_loadl_epi64(x.add(74) as *const __m128i);
            let sc = _mm_unpacklo_epi8(_mm_and_si128(sc8, m4), _mm_and_si128(_mm_srli_epi16(sc8, 4), m4));
            let sc = _mm_add_epi8(_mm_slli_epi16(sc, 1), _mm_set1_epi8(1));
            let mut s1 = _mm256_setzero_si256();
            let mut s2 = _mm256_setzero_si256();
            for ib in (0..8).step_by(2) {
                let sub = |ib: usize| {
                    // (In the enclosing unsafe block) sub-block ib < 8 reads bytes inside the block.
                    let (q, h) = (qs.add(4 * ib), *qh.add(ib) as usize);
                    let g = |l: usize| *q.add(l) as usize | ((h << (8 - 2 * l)) & 0x300);
                    grid4(&IQ2S_GRID, [g(0), g(1), g(2), g(3)])
                };
                let y1 = apply_sign_bits(load256(y.add(4 + 32 * ib)), rd32(signs.add(4 * ib)));
                let y2 = apply_sign_bits(load256(y.add(36 + 32 * ib)), rd32(signs.add(4 * ib + 4)));
                let d1 = _mm256_maddubs_epi16(sub(ib), y1);
                let d2 = _mm256_maddubs_epi16(sub(ib + 1), y2);
                let scl = |ib: usize| _mm256_cvtepu8_epi16(_mm_shuffle_epi8(sc, _mm_add_epi8(half_pick, _mm_set1_epi8(2 * ib as i8))));
                s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(d1, scl(ib)));
                s2 = _mm256_add_epi32(s2, _mm256_madd_epi16(d2, scl(ib + 1)));
            }
            acc += d * hsum_i32(_mm256_add_epi32(s1, s2)) as f32;
        }
    }
    0.125 * acc
}

/// IQ3_S x Q8_K (110-byte blocks: f16 d, 64 low index bytes, 8 bytes of ninth index bits, 32
/// sign bytes, 4 bytes of two 4-bit scales per 64 values).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_iq3_s(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 256;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let mut acc = 0f32;
    for i in 0..nb {
        // SAFETY: super-block i (110 bytes of IQ3_S, 292 of Q8_K) is inside both rows.
        unsafe {
            let (x, y) = (wp.add(110 * i), ap.add(Q8K * i));
            let d = f16_at(x) * f32_at(y);
            let (qs, qh, signs, scales) = (x.add(2), x.add(66), x.add(74), x.add(106));
            let mut s1 = _mm256_setzero_si256();
            let mut s2 = _mm256_setzero_si256();
            for ib in (0..8).step_by(2) {
                let sub = |ib: usize| {
                    // (In the enclosing unsafe block) sub-block ib < 8 reads bytes inside the block.
                    let (q, h) = (core::ptr::read_unaligned(qs.add(8 * ib) as *const [u8; 8]), *qh.add(ib) as usize);
                    let g = |k: usize| IQ3S_GRID[q[k] as usize | ((h << (8 - k)) & 0x100)] as i32;
                    _mm256_setr_epi32(g(0), g(1), g(2), g(3), g(4), g(5), g(6), g(7))
                };
                let y1 = apply_sign_bits(load256(y.add(4 + 32 * ib)), rd32(signs.add(4 * ib)));
                let y2 = apply_sign_bits(load256(y.add(36 + 32 * ib)), rd32(signs.add(4 * ib + 4)));
                let d1 = _mm256_maddubs_epi16(sub(ib), y1);
                let d2 = _mm256_maddubs_epi16(sub(ib + 1), y2);
                let s = *scales.add(ib / 2) as i16;
                s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(d1, _mm256_set1_epi16(2 * (s & 0xf) + 1)));
                s2 = _mm256_add_epi32(s2, _mm256_madd_epi16(d2, _mm256_set1_epi16(2 * (s >> 4) + 1)));
            }
            acc += d * hsum_i32(_mm256_add_epi32(s1, s2)) as f32;
        }
    }
    acc
}

// ---------------------------------------------------------------------------------------------
// IQ1 types against Q8_K.

/// IQ1_S x Q8_K (50-byte blocks: f16 d, 32 low index bytes, 8 u16 holding 4 x 3 index bits, a
/// 3-bit scale and the shift sign). Value = `d * (2s + 1) * (grid ± 1/8)`; the shift part is
/// computed from the Q8_K per-16 sums.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_iq1_s(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 256;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let mut acc = 0f32;

    for i in 0..nb {
        // SAFETY: super-block i (50 bytes of IQ1_S, 292 of Q8_K) is inside both rows.
        unsafe {
            let (x, y) = (wp.add(50 * i), ap.add(Q8K * i));
            let (qs, qhp) = (x.add(2), x.add(34));
            let mut sumi = _mm256_setzero_si256();
            // Shift part: sum over sub-blocks of (2s + 1) * sign * (bsums[2ib] + bsums[2ib + 1]).
            let hv = load128(qhp);
            let ls = _mm_add_epi16(_mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(hv, 12), _mm_set1_epi16(7)), 1), _mm_set1_epi16(1));
            let neg = _mm_srai_epi16(hv, 15);
            let lsg = _mm_sub_epi16(_mm_xor_si128(ls, neg), neg);
            let lsg2 = _mm256_set_m128i(_mm_unpackhi_epi16(lsg, lsg), _mm_unpacklo_epi16(lsg, lsg));
            let sumi1 = hsum_i32(_mm256_madd_epi16(lsg2, load256(y.add(260))));
            for ib in (0..8).step_by(2) {
                let grid = |ib: usize| {
                    // (In the enclosing unsafe block) ib < 8: 4 index bytes and one u16 inside the block.
                    let (q, h) = (rd32(qs.add(4 * ib)), rd16(qhp.add(2 * ib)) as usize);
                    let g = |l: usize| ((q >> (8 * l)) & 0xff) as usize | (((h >> (3 * l)) & 7) << 8);
                    grid4(&IQ1S_GRID, [g(0), g(1), g(2), g(3)])
                };
                let (h1, h2) = (rd16(qhp.add(2 * ib)) as i32, rd16(qhp.add(2 * ib + 2)) as i32);
                let (ls1, ls2) = (2 * ((h1 >> 12) & 7) + 1, 2 * ((h2 >> 12) & 7) + 1);
                let d1 = mul_add_i8(grid(ib), load256(y.add(4 + 32 * ib)));
                let d2 = mul_add_i8(grid(ib + 1), load256(y.add(36 + 32 * ib)));
                let p1 = _mm256_madd_epi16(d1, _mm256_set1_epi16(ls1 as i16));
                let p2 = _mm256_madd_epi16(d2, _mm256_set1_epi16(ls2 as i16));
                sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p1, p2));
            }
            let d = f32_at(y) * f16_at(x);
            acc += d * (hsum_i32(sumi) as f32 + 0.125 * sumi1 as f32);
        }
    }
    acc
}

/// The four grid entries of IQ1_M sub-block `ib`: index `l` is `qs[4ib + l]` with 3 bits of
/// `qh[2ib + l/2]` (low nibble for even `l`, high for odd) on top. With BMI2 the four 11-bit
/// indices are assembled in one u64 by two `pdep`s.
macro_rules! iq1m_grid {
    (plain, $qs:ident, $qh:ident, $ib:expr) => {{
        let (q, h0, h1) = (rd32($qs.add(4 * $ib)), *$qh.add(2 * $ib) as usize, *$qh.add(2 * $ib + 1) as usize);
        let g = |l: usize, h: usize| IQ1S_GRID[((q >> (8 * l)) & 0xff) as usize | ((h << (8 - 4 * (l % 2))) & 0x700)];
        set4(g(0, h0), g(1, h0), g(2, h1), g(3, h1))
    }};
    (bmi2, $qs:ident, $qh:ident, $ib:expr) => {{
        let q = rd32($qs.add(4 * $ib)) as u64;
        let h = rd16($qh.add(2 * $ib)) as u64 & 0x7777;
        let packed = _pdep_u64(q, 0x00ff_00ff_00ff_00ff) | _pdep_u64(h, 0x0f00_0f00_0f00_0f00);
        let g = |k: u32| IQ1S_GRID[((packed >> (16 * k)) & 0x7ff) as usize];
        set4(g(0), g(1), g(2), g(3))
    }};
}

macro_rules! iq1m_kernel {
    ($(#[$m:meta])* $name:ident, $feat:literal, $v:ident) => {
$(#[$m])*
#[target_feature(enable = $feat)]
unsafe fn $name(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 256;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let m7 = _mm256_set1_epi16(7);
    let one16 = _mm256_set1_epi16(1);
    let one8 = _mm256_set1_epi8(1);
    let two8 = _mm256_set1_epi8(2);
    // 64-bit lanes: scales of even sub-blocks' first half (shift 0), odd sub-blocks' first
    // half (6), even sub-blocks' second half (3), odd sub-blocks' second half (9).
    let shifts = _mm256_set_epi64x(9, 3, 6, 0);
    // Group l of sub-block ib reads qh byte 2ib + l/2, bit 3 (l even) or 7 (l odd).
    let spread_a = _mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    );
    let spread_b = _mm256_add_epi8(spread_a, two8);
    let dmask = _mm256_setr_epi64x(0x0808_0808_0808_0808, 0x8080_8080_8080_8080u64 as i64, 0x0808_0808_0808_0808, 0x8080_8080_8080_8080u64 as i64);
    let mut acc = 0f32;

    for i in 0..nb {
        // SAFETY: super-block i (56 bytes of IQ1_M, 292 of Q8_K) is inside both rows.
        unsafe {
            let (x, y) = (wp.add(56 * i), ap.add(Q8K * i));
            let (qs, qh, scp) = (x, x.add(32), x.add(48));
            let sc = [rd16(scp), rd16(scp.add(2)), rd16(scp.add(4)), rd16(scp.add(6))];
            let dbits = (sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000);
            let dx = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(dbits as i32)));
            let s64 = core::ptr::read_unaligned(scp as *const u64);
            let scales = _mm256_srlv_epi64(_mm256_set1_epi64x(s64 as i64), shifts);
            let scales = _mm256_add_epi16(_mm256_slli_epi16(_mm256_and_si256(scales, m7), 1), one16);
            let mut idx1 = _mm256_set1_epi16(0x0100);
            let mut idx2 = _mm256_add_epi8(idx1, _mm256_set1_epi8(8));
            let mut sumi1 = _mm256_setzero_si256();
            let mut sumi2 = _mm256_setzero_si256();
            for ib in (0..8).step_by(2) {
                // (In the enclosing unsafe block) ib < 8: 4 index bytes and 2 qh bytes inside the block.
                let grid = |ib: usize| iq1m_grid!($v, qs, qh, ib);
                // Shift signs of the 8 groups: bit 3 / bit 7 of qh bytes 2ib..2ib+4, as 0xff bytes.
                let hv = _mm256_set1_epi32(rd32(qh.add(2 * ib)) as i32);
                let neg1 = _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(hv, spread_a), dmask), dmask);
                let neg2 = _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(hv, spread_b), dmask), dmask);
                let y1 = load256(y.add(4 + 32 * ib));
                let y2 = load256(y.add(36 + 32 * ib));
                let d1 = mul_add_i8(grid(ib), y1);
                let d2 = mul_add_i8(grid(ib + 1), y2);
                let d3 = _mm256_maddubs_epi16(one8, _mm256_sub_epi8(_mm256_xor_si256(y1, neg1), neg1));
                let d4 = _mm256_maddubs_epi16(one8, _mm256_sub_epi8(_mm256_xor_si256(y2, neg2), neg2));
                let sc1 = _mm256_shuffle_epi8(scales, idx1);
                let sc2 = _mm256_shuffle_epi8(scales, idx2);
                idx1 = _mm256_add_epi8(idx1, two8);
                idx2 = _mm256_add_epi8(idx2, two8);
                sumi1 = _mm256_add_epi32(sumi1, _mm256_add_epi32(_mm256_madd_epi16(d1, sc1), _mm256_madd_epi16(d2, sc2)));
                sumi2 = _mm256_add_epi32(sumi2, _mm256_add_epi32(_mm256_madd_epi16(d3, sc1), _mm256_madd_epi16(d4, sc2)));
            }
            let d = dx * f32_at(y);
            acc += d * (hsum_i32(sumi1) as f32 + 0.125 * hsum_i32(sumi2) as f32);
        }
    }
    acc
}
    };
}

iq1m_kernel!(
    /// IQ1_M x Q8_K (56-byte blocks: 32 low index bytes, 16 bytes of 2 x (3 index bits + shift
    /// sign), 8 bytes of 3-bit scales with the f16 super-block scale in the top nibbles).
    dot_iq1_m, "avx2,fma,f16c", plain
);
iq1m_kernel!(
    /// [`dot_iq1_m`] with BMI2 index assembly (installed when the CPU has BMI2).
    dot_iq1_m_bmi2, "avx2,fma,f16c,bmi2", bmi2
);

// ---------------------------------------------------------------------------------------------
// Ternary types against Q8_K.

/// TQ2_0 x Q8_K (66-byte blocks: 64 bytes of 2-bit codes `t + 1`, f16 d): `sum(c y) - sum(y)`
/// in 16-bit lanes (at most 8 x 2 x 3 x 127 + 16 x 127, no overflow), the second sum from the
/// Q8_K per-16 sums.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_tq2_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 256;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let m3 = _mm256_set1_epi8(3);
    let mut acc = 0f32;
    for i in 0..nb {
        // SAFETY: super-block i (66 bytes of TQ2_0, 292 of Q8_K) is inside both rows.
        unsafe {
            let (x, y) = (wp.add(66 * i), ap.add(Q8K * i));
            let mut s0 = _mm256_setzero_si256();
            let mut s1 = _mm256_setzero_si256();
            for j in 0..2 {
                let q = load256(x.add(32 * j));
                let yq = y.add(4 + 128 * j);
                let c0 = _mm256_and_si256(q, m3);
                let c1 = _mm256_and_si256(_mm256_srli_epi16(q, 2), m3);
                let c2 = _mm256_and_si256(_mm256_srli_epi16(q, 4), m3);
                let c3 = _mm256_and_si256(_mm256_srli_epi16(q, 6), m3);
                s0 = _mm256_add_epi16(
                    s0,
                    _mm256_add_epi16(_mm256_maddubs_epi16(c0, load256(yq)), _mm256_maddubs_epi16(c1, load256(yq.add(32)))),
                );
                s1 = _mm256_add_epi16(
                    s1,
                    _mm256_add_epi16(
                        _mm256_maddubs_epi16(c2, load256(yq.add(64))),
                        _mm256_maddubs_epi16(c3, load256(yq.add(96))),
                    ),
                );
            }
            let s = _mm256_sub_epi16(_mm256_add_epi16(s0, s1), load256(y.add(260)));
            let s = _mm256_madd_epi16(s, _mm256_set1_epi16(1));
            let d = f32_at(y) * f16_at_nodep(x.add(64));
            acc += d * hsum_i32(s) as f32;
        }
    }
    acc
}

/// Base-3 digit extraction for TQ1_0 bytes already multiplied by a power of 3 (mod 256): the
/// trit code `(q * 3) >> 8` (0, 1 or 2), computed as a halving add chain without 16-bit
/// multiplies (exact for every byte; the tests compare with the scalar digit on all 256):
/// `t = q -sat 1; t = avg(t, avg(t, 0)); (t >> 6) & 3`.
///
/// Written in asm because LLVM, seeing the zero, rewrites `avg(t, 0)` as
/// `(max(q, 1) >> 1) & 0x7f` (three uops instead of one), and with the zero hidden it widens the
/// averages to 16 bits instead; TQ1_0 measured 20 % and 2x slower for it.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn top_trit(q: __m256i) -> __m256i {
    let (one, three, zero) = (_mm256_set1_epi8(1), _mm256_set1_epi8(3), _mm256_setzero_si256());
    let t: __m256i;
    // SAFETY: register-only AVX2 arithmetic (the caller's target features include AVX2); no
    // memory or flags are touched.
    unsafe {
        core::arch::asm!(
            "vpsubusb {t}, {q}, {one}",
            "vpavgb {u}, {t}, {zero}",
            "vpavgb {t}, {t}, {u}",
            "vpsrlw {t}, {t}, 6",
            "vpand {t}, {t}, {three}",
            q = in(ymm_reg) q, one = in(ymm_reg) one, zero = in(ymm_reg) zero, three = in(ymm_reg) three,
            t = out(ymm_reg) t, u = out(ymm_reg) _,
            options(pure, nomem, nostack, preserves_flags),
        )
    };
    t
}

/// `q * 3`, `q * 9` ... per byte (mod 256) with shifts and adds.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn times3(q: __m256i) -> __m256i {
    _mm256_add_epi8(q, _mm256_add_epi8(q, q))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn times9(q: __m256i) -> __m256i {
    _mm256_add_epi8(_mm256_and_si256(_mm256_slli_epi16(q, 3), _mm256_set1_epi8(-8)), q)
}

/// TQ1_0 x Q8_K (54-byte blocks: 48 bytes of 5 trits, 4 bytes of 4 trits, f16 d).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_tq1_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 256;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let mut acc = 0f32;
    for i in 0..nb {
        // SAFETY: super-block i (54 bytes of TQ1_0, 292 of Q8_K) is inside both rows.
        unsafe {
            let (x, y) = (wp.add(54 * i), ap.add(Q8K * i));
            let yq = y.add(4);
            // Bytes 0..32: trits k = 0..5 pair with y[32k..32k+32].
            let q0 = load256(x);
            let q1 = times3(q0);
            let q2 = times9(q0);
            let q3 = times9(q1);
            let q4 = times9(q2);
            let mut s0 = _mm256_add_epi16(
                _mm256_maddubs_epi16(top_trit(q0), load256(yq)),
                _mm256_maddubs_epi16(top_trit(q1), load256(yq.add(32))),
            );
            let mut s1 = _mm256_add_epi16(
                _mm256_maddubs_epi16(top_trit(q2), load256(yq.add(64))),
                _mm256_maddubs_epi16(top_trit(q3), load256(yq.add(96))),
            );
            let mut s2 = _mm256_maddubs_epi16(top_trit(q4), load256(yq.add(128)));
            // Bytes 32..48 (trits pair with y[160 + 16k..]) and the 4 qh bytes (y[240 + 4k..]).
            let r0 = load128(x.add(32));
            let r0 = _mm256_set_m128i(r0, r0);
            let r1 = times3(r0);
            let r01 = _mm256_blend_epi32(r0, r1, 0xf0);
            let r0x9 = times9(r0);
            let r23 = _mm256_blend_epi32(r0x9, times9(r1), 0xf0);
            let r4 = _mm256_castsi256_si128(times9(r0x9));
            let h = _mm256_cvtepu8_epi16(_mm_set1_epi32(rd32(x.add(48)) as i32));
            let h = _mm256_mullo_epi16(h, _mm256_setr_epi16(1, 1, 1, 1, 3, 3, 3, 3, 9, 9, 9, 9, 27, 27, 27, 27));
            let h = _mm256_and_si256(h, _mm256_set1_epi16(0xff));
            let h = _mm_packus_epi16(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
            let r45 = _mm256_set_m128i(h, r4);
            s0 = _mm256_add_epi16(s0, _mm256_maddubs_epi16(top_trit(r01), load256(yq.add(160))));
            s1 = _mm256_add_epi16(s1, _mm256_maddubs_epi16(top_trit(r23), load256(yq.add(192))));
            s2 = _mm256_add_epi16(s2, _mm256_maddubs_epi16(top_trit(r45), load256(yq.add(224))));
            let s = _mm256_sub_epi16(_mm256_add_epi16(s0, _mm256_add_epi16(s1, s2)), load256(y.add(260)));
            let s = _mm256_madd_epi16(s, _mm256_set1_epi16(1));
            let d = f32_at(y) * f16_at_nodep(x.add(52));
            acc += d * hsum_i32(s) as f32;
        }
    }
    acc
}

// ---------------------------------------------------------------------------------------------
// FP4 and 1/2-bit types against Q8_0.

/// 16 packed E2M1 nibbles to 32 signed values in value order (low nibbles first).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn fp4_values(p: *const u8, tbl: __m256i) -> __m256i {
    // SAFETY: 16 readable bytes at `p` (caller).
    let b = unsafe { load128(p) };
    let both = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(b, 4), b), _mm256_set1_epi8(0x0f));
    _mm256_shuffle_epi8(tbl, both)
}

/// MXFP4 x Q8_0 (17-byte blocks: E8M0 exponent, 16 bytes of E2M1 codes).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_mxfp4(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 32;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    // SAFETY: the table has 16 bytes.
    let tbl = unsafe { _mm256_broadcastsi128_si256(load128(KVALUES_FP4.as_ptr() as *const u8)) };
    let ones = _mm256_set1_epi16(1);
    // Block i goes to accumulator i % 2. Written as two named accumulators and a loop over
    // pairs: indexed by `i & 1`, they were kept in memory (a store-to-load chain per block).
    let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let block = |i: usize, acc: __m256| {
        // SAFETY: block i (17 bytes of MXFP4, 34 of Q8_0) is inside both rows (i < nb).
        unsafe {
            let (x, y) = (wp.add(17 * i), ap.add(Q80 * i));
            let p = _mm256_madd_epi16(mul_add_i8(fp4_values(x.add(1), tbl), load256(y.add(2))), ones);
            let d = f16_at_nodep(y) * E8M0_HALF[*x as usize];
            _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(p), acc)
        }
    };
    let mut i = 0;
    while i + 2 <= nb {
        acc0 = block(i, acc0);
        acc1 = block(i + 1, acc1);
        i += 2;
    }
    if i < nb {
        acc0 = block(i, acc0);
    }
    hsum_ps(_mm256_add_ps(acc0, acc1))
}

/// NVFP4 x Q8_0 (36-byte blocks of 64 values: 4 UE4M3 scales, 32 bytes of E2M1 codes; sub-block
/// `s` of 16 values uses bytes `8s..8s+8`, low nibbles first). Two Q8_0 blocks per block.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_nvfp4(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 64;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    // SAFETY: the table has 16 bytes.
    let tbl = unsafe { _mm_loadu_si128(KVALUES_FP4.as_ptr() as *const __m128i) };
    let m4 = _mm_set1_epi8(0x0f);
    let ones = _mm256_set1_epi16(1);
    let mut acc = _mm256_setzero_ps();
    for i in 0..nb {
        // SAFETY: block i (36 bytes of NVFP4, 2 x 34 of Q8_0) is inside both rows.
        unsafe {
            let (x, y) = (wp.add(36 * i), ap.add(2 * Q80 * i));
            for h in 0..2 {
                let b = load128(x.add(4 + 16 * h));
                let lo = _mm_shuffle_epi8(tbl, _mm_and_si128(b, m4));
                let hi = _mm_shuffle_epi8(tbl, _mm_and_si128(_mm_srli_epi16(b, 4), m4));
                // Sub-blocks 2h and 2h+1 in value order, one per 128-bit lane.
                let q = _mm256_set_m128i(_mm_unpackhi_epi64(lo, hi), _mm_unpacklo_epi64(lo, hi));
                let yb = y.add(Q80 * h);
                let p = _mm256_madd_epi16(mul_add_i8(q, load256(yb.add(2))), ones);
                let dy = f16_at(yb);
                let s0 = UE4M3_HALF[*x.add(2 * h) as usize] * dy;
                let s1 = UE4M3_HALF[*x.add(2 * h + 1) as usize] * dy;
                acc = _mm256_fmadd_ps(_mm256_set_m128(_mm_set1_ps(s1), _mm_set1_ps(s0)), _mm256_cvtepi32_ps(p), acc);
            }
        }
    }
    hsum_ps(acc)
}

/// Q1_0 x Q8_0 (18-byte blocks of 128 values: f16 d, 16 bytes of sign bits, set = +1). Four
/// Q8_0 blocks per block.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q1_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 128;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let ones8 = _mm256_set1_epi8(1);
    let ones16 = _mm256_set1_epi16(1);
    let mut acc = _mm256_setzero_ps();
    for i in 0..nb {
        // SAFETY: block i (18 bytes of Q1_0, 4 x 34 of Q8_0) is inside both rows.
        unsafe {
            let (x, y) = (wp.add(18 * i), ap.add(4 * Q80 * i));
            let mut blk = _mm256_setzero_ps();
            for k in 0..4 {
                let yb = y.add(Q80 * k);
                // Clear bits are -1: negate where the bit is clear.
                let sy = apply_sign_bits(load256(yb.add(2)), !rd32(x.add(2 + 4 * k)));
                let s = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, sy), ones16);
                blk = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(yb)), _mm256_cvtepi32_ps(s), blk);
            }
            acc = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(x)), blk, acc);
        }
    }
    hsum_ps(acc)
}

/// Q2_0 x Q8_0 (18-byte blocks of 64 values: f16 d, 16 bytes of 2-bit codes `c`, value
/// `c - 1`, value `j` in bits `2(j % 4)` of byte `j / 4`). Two Q8_0 blocks per block. The
/// codes are unpacked in shift-major order per 128-bit lane, and the activations permuted to
/// match (a dot product does not depend on the order of its terms).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_q2_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 64;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let ones8 = _mm256_set1_epi8(1);
    let ones16 = _mm256_set1_epi16(1);
    let m3 = _mm256_set1_epi8(3);
    let shifts = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
    let dup = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    // In each lane: bytes 4i + s of the activation for i in 0..4, s-major.
    let perm = _mm256_setr_epi8(
        0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15, 0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,
    );
    let mut acc = _mm256_setzero_ps();
    for i in 0..nb {
        // SAFETY: block i (18 bytes of Q2_0, 2 x 34 of Q8_0) is inside both rows.
        unsafe {
            let (x, y) = (wp.add(18 * i), ap.add(2 * Q80 * i));
            let mut blk = _mm256_setzero_ps();
            for k in 0..2 {
                let yb = y.add(Q80 * k);
                let b = _mm_loadl_epi64(x.add(2 + 8 * k) as *const __m128i);
                let c = _mm256_and_si256(_mm256_srlv_epi32(_mm256_permutevar8x32_epi32(_mm256_castsi128_si256(b), dup), shifts), m3);
                let yv = _mm256_shuffle_epi8(load256(yb.add(2)), perm);
                let s16 = _mm256_sub_epi16(_mm256_maddubs_epi16(c, yv), _mm256_maddubs_epi16(ones8, yv));
                let s = _mm256_madd_epi16(s16, ones16);
                blk = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(yb)), _mm256_cvtepi32_ps(s), blk);
            }
            acc = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(x)), blk, acc);
        }
    }
    hsum_ps(acc)
}

// ---------------------------------------------------------------------------------------------
// Float types against themselves: 32 values per step in four f32 accumulators (ggml's
// `GGML_F16_STEP` layout), the scalar tail in f32.

/// Shared loop: `load(p, k)` gives 8 floats of row `p` starting at value `k`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_float(
    n: usize,
    w: *const u8,
    a: *const u8,
    load: impl Fn(*const u8, usize) -> __m256,
    scalar: impl Fn(*const u8, usize) -> f32,
) -> f32 {
    let mut acc = [_mm256_setzero_ps(); 4];
    let n32 = n / 32 * 32;
    let mut k = 0;
    while k < n32 {
        for (j, accj) in acc.iter_mut().enumerate() {
            *accj = _mm256_fmadd_ps(load(w, k + 8 * j), load(a, k + 8 * j), *accj);
        }
        k += 32;
    }
    let mut tail = 0f32;
    for k in n32..n {
        tail += scalar(w, k) * scalar(a, k);
    }
    hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]))) + tail
}

/// F16 x F16.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f16(n: usize, w: &[u8], a: &[u8]) -> f32 {
    // SAFETY: both rows hold 2n bytes; `dot_float` reads values 0..n only.
    unsafe {
        dot_float(
            n,
            w.as_ptr(),
            a.as_ptr(),
            |p, k| _mm256_cvtph_ps(load128(p.add(2 * k))),
            |p, k| f16_at(p.add(2 * k)),
        )
    }
}

/// BF16 x BF16 (a bf16 is the top half of an f32): 16 values per load, widened by
/// interleaving with zeros. The interleave permutes the values within each 128-bit lane the same
/// way for both rows, so only the summation order changes. (Masking and shifting instead, as
/// the AVX-512 kernel does, measured no faster here: shifts compete with the FMAs for ports 0/1.)
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_bf16(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let zero = _mm256_setzero_si256();
    let mut acc = [_mm256_setzero_ps(); 4];
    let n32 = n / 32 * 32;
    let mut k = 0;
    while k < n32 {
        for h in 0..2 {
            // SAFETY: values k + 16h .. k + 16h + 16 < n of both rows (2 bytes each).
            let (x, y) = unsafe { (load256(wp.add(2 * (k + 16 * h))), load256(ap.add(2 * (k + 16 * h)))) };
            let f = |v: __m256i, hi: bool| {
                _mm256_castsi256_ps(if hi { _mm256_unpackhi_epi16(zero, v) } else { _mm256_unpacklo_epi16(zero, v) })
            };
            acc[2 * h] = _mm256_fmadd_ps(f(x, false), f(y, false), acc[2 * h]);
            acc[2 * h + 1] = _mm256_fmadd_ps(f(x, true), f(y, true), acc[2 * h + 1]);
        }
        k += 32;
    }
    let mut tail = 0f32;
    for k in n32..n {
        // SAFETY: value k < n of both rows.
        let (x, y) = unsafe { (rd16(wp.add(2 * k)), rd16(ap.add(2 * k))) };
        tail += f32::from_bits(x << 16) * f32::from_bits(y << 16);
    }
    hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]))) + tail
}

/// F32 x F32.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f32(n: usize, w: &[u8], a: &[u8]) -> f32 {
    // SAFETY: both rows hold 4n bytes; `dot_float` reads values 0..n only.
    unsafe {
        dot_float(n, w.as_ptr(), a.as_ptr(), |p, k| _mm256_loadu_ps(p.add(4 * k) as *const f32), |p, k| f32_at(p.add(4 * k)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::grids::KSIGNS_IQ2XS;

    #[test]
    fn keven_signs_match_ksigns() {
        for (i, &v) in KEVEN_SIGNS.iter().enumerate() {
            for (j, b) in v.to_le_bytes().into_iter().enumerate() {
                let neg = KSIGNS_IQ2XS[i] & (1 << j) != 0;
                assert_eq!(b as i8, if neg { -1 } else { 1 }, "entry {i} byte {j}");
            }
        }
    }

    #[test]
    fn e8m0_table_matches_codec() {
        for x in 0..=255u8 {
            assert_eq!(E8M0_HALF[x as usize].to_bits(), crate::quant::fp4::e8m0_to_f32_half(x).to_bits(), "{x:#x}");
        }
    }

    #[test]
    fn ue4m3_table_matches_codec() {
        for x in 0..=255u8 {
            assert_eq!(UE4M3_HALF[x as usize].to_bits(), crate::quant::fp4::ue4m3_to_f32(x).to_bits(), "{x:#x}");
        }
    }

    #[test]
    fn iq1_m_plain_and_bmi2_variants_equal_reference() {
        if !crate::simd::Isa::Avx2.is_available() {
            return;
        }
        let n = 2048;
        let x: Vec<f32> = (0..2 * n).map(|i| ((i * 7919 % 1013) as f32 / 1013.0 - 0.5) * (1.0 + (i % 37) as f32)).collect();
        let w = crate::quant::quantize(T::IQ1_M, &x[..n], n, None, None).unwrap();
        let a = crate::quant::quantize(T::Q8_K, &x[n..], n, None, None).unwrap();
        let want = crate::quant::vec_dot_ref(T::IQ1_M, &w, &a, n).unwrap();
        // SAFETY: AVX2/FMA/F16C checked above; row lengths are exact.
        assert_eq!(unsafe { dot_iq1_m(n, &w, &a) }.to_bits(), want.to_bits());
        if std::arch::is_x86_feature_detected!("bmi2") {
            // SAFETY: as above, plus BMI2 checked.
            assert_eq!(unsafe { dot_iq1_m_bmi2(n, &w, &a) }.to_bits(), want.to_bits());
        }
    }

    #[test]
    fn top_trit_matches_scalar_digit_for_every_byte() {
        if !crate::simd::Isa::Avx2.is_available() {
            return;
        }
        let bytes: [u8; 256] = core::array::from_fn(|i| i as u8);
        for chunk in bytes.chunks_exact(32) {
            let mut out = [0u8; 32];
            // SAFETY: AVX2 checked above; 32 bytes read and written.
            unsafe {
                let v = top_trit(_mm256_loadu_si256(chunk.as_ptr() as *const __m256i));
                _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, v);
            }
            for (q, t) in chunk.iter().zip(out) {
                assert_eq!(t as u16, (*q as u16 * 3) >> 8, "byte {q}");
            }
        }
    }
}
