//! NEON (Advanced SIMD) kernels on raw ggml block bytes, for aarch64.
//!
//! Byte products use `vmull_s8` + `vpaddlq_s16` (baseline NEON; no `dotprod` needed). The
//! activation quantizers reproduce ggml's **x86** rounding (`id = 127/amax`, round half to even
//! with `vcvtnq_s32_f32`), so activations, and hence matmul results, are the same on every
//! platform (ggml's own ARM build uses `1/(amax/127)`, which differs at near-ties).
//! Checked under qemu by `examples/neon_selfcheck.rs` (`scripts/aarch64_check.sh`).

use core::arch::aarch64::*;

use crate::simd::{k4_scales_mins, Overrides, KVALUES_IQ4NL};
use crate::types::QuantType as T;

/// The NEON entries of the dispatch table.
///
/// # Safety
/// Only call after checking that NEON is available.
pub(crate) unsafe fn overrides() -> Overrides {
    Overrides {
        dot: vec![
            (T::Q8_0, dot_q8_0 as _),
            (T::Q4_0, dot_q4_0 as _),
            (T::Q4_1, dot_q4_1 as _),
            (T::Q5_0, dot_q5_0 as _),
            (T::Q5_1, dot_q5_1 as _),
            (T::IQ4_NL, dot_iq4_nl as _),
            (T::Q4_K, dot_q4_k as _),
            (T::Q5_K, dot_q5_k as _),
            (T::Q6_K, dot_q6_k as _),
            (T::Q2_K, dot_q2_k as _),
            (T::Q3_K, dot_q3_k as _),
            (T::IQ4_XS, dot_iq4_xs as _),
        ],
        act: vec![(T::Q8_0, quantize_q8_0 as _), (T::Q8_1, quantize_q8_1 as _)],
    }
}

#[inline(always)]
unsafe fn f16_at(p: *const u8) -> f32 {
    // SAFETY: 2 readable bytes at `p` (caller).
    half::f16::from_bits(u16::from_le(unsafe { core::ptr::read_unaligned(p as *const u16) })).to_f32()
}

#[inline(always)]
unsafe fn f32_at(p: *const u8) -> f32 {
    // SAFETY: 4 readable bytes at `p` (caller).
    f32::from_bits(u32::from_le(unsafe { core::ptr::read_unaligned(p as *const u32) }))
}

/// Sum of 16 `i8 * i8` products, as 4 x i32 partial sums (exact).
#[inline]
#[target_feature(enable = "neon")]
fn dot16(a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    let hi = vmull_high_s8(a, b);
    vaddq_s32(vpaddlq_s16(lo), vpaddlq_s16(hi))
}

#[inline]
#[target_feature(enable = "neon")]
unsafe fn ld8(p: *const u8) -> int8x16_t {
    // SAFETY: 16 readable bytes at `p` (caller).
    unsafe { vld1q_s8(p as *const i8) }
}

#[inline]
#[target_feature(enable = "neon")]
unsafe fn ldu8(p: *const u8) -> uint8x16_t {
    // SAFETY: 16 readable bytes at `p` (caller).
    unsafe { vld1q_u8(p) }
}

/// Low and high nibbles of 16 bytes at `p` as two vectors of 0..15 (value order of a 32-block).
#[inline]
#[target_feature(enable = "neon")]
unsafe fn nibbles(p: *const u8) -> (int8x16_t, int8x16_t) {
    // SAFETY: 16 readable bytes (caller).
    let q = unsafe { ldu8(p) };
    (vreinterpretq_s8_u8(vandq_u8(q, vdupq_n_u8(0x0f))), vreinterpretq_s8_u8(vshrq_n_u8(q, 4)))
}

/// The fifth bits of a Q5 block (u32 at `p`) as 0x10 bytes for values 0..16 and 16..32.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn q5_high(p: *const u8) -> (int8x16_t, int8x16_t) {
    // SAFETY: 4 readable bytes (caller).
    let qh = u32::from_le(unsafe { core::ptr::read_unaligned(p as *const u32) });
    let bits: [u8; 8] = [1, 2, 4, 8, 16, 32, 64, 128];
    // SAFETY: 8-byte array.
    let mask = unsafe { vld1_u8(bits.as_ptr()) };
    let g = |k: u32| vand_u8(vtst_u8(vdup_n_u8((qh >> (8 * k)) as u8), mask), vdup_n_u8(0x10));
    (vreinterpretq_s8_u8(vcombine_u8(g(0), g(1))), vreinterpretq_s8_u8(vcombine_u8(g(2), g(3))))
}

// ---------------------------------------------------------------------------------------------
// Activation quantizers.

#[inline]
#[target_feature(enable = "neon")]
unsafe fn q8_block(x: *const f32, out: *mut u8) -> (f32, i32) {
    // SAFETY: 32 floats at `x`, 32 writable bytes at `out` (caller).
    unsafe {
        let v = [vld1q_f32(x), vld1q_f32(x.add(4)), vld1q_f32(x.add(8)), vld1q_f32(x.add(12)),
                 vld1q_f32(x.add(16)), vld1q_f32(x.add(20)), vld1q_f32(x.add(24)), vld1q_f32(x.add(28))];
        let mut m = vabsq_f32(v[0]);
        for vi in &v[1..] {
            m = vmaxq_f32(m, vabsq_f32(*vi));
        }
        let amax = vmaxvq_f32(m);
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let mut sum = vdupq_n_s32(0);
        let mut i32s = [vdupq_n_s32(0); 8];
        for (o, vi) in i32s.iter_mut().zip(v) {
            *o = vcvtnq_s32_f32(vmulq_n_f32(vi, id));
            sum = vaddq_s32(sum, *o);
        }
        for h in 0..2 {
            let a = vcombine_s16(vqmovn_s32(i32s[4 * h]), vqmovn_s32(i32s[4 * h + 1]));
            let b = vcombine_s16(vqmovn_s32(i32s[4 * h + 2]), vqmovn_s32(i32s[4 * h + 3]));
            vst1q_s8(out.add(16 * h) as *mut i8, vcombine_s8(vqmovn_s16(a), vqmovn_s16(b)));
        }
        (d, vaddvq_s32(sum))
    }
}

#[target_feature(enable = "neon")]
unsafe fn quantize_q8_0(x: &[f32], dst: &mut [u8]) {
    for (xb, yb) in x.chunks_exact(32).zip(dst.chunks_exact_mut(34)) {
        // SAFETY: 32 floats in `xb`, 32 bytes from offset 2 of the 34-byte `yb`.
        let (d, _) = unsafe { q8_block(xb.as_ptr(), yb.as_mut_ptr().add(2)) };
        yb[..2].copy_from_slice(&half::f16::from_f32(d).to_bits().to_le_bytes());
    }
}

#[target_feature(enable = "neon")]
unsafe fn quantize_q8_1(x: &[f32], dst: &mut [u8]) {
    for (xb, yb) in x.chunks_exact(32).zip(dst.chunks_exact_mut(36)) {
        // SAFETY: 32 floats in `xb`, 32 bytes from offset 4 of the 36-byte `yb`.
        let (d, s) = unsafe { q8_block(xb.as_ptr(), yb.as_mut_ptr().add(4)) };
        yb[..2].copy_from_slice(&half::f16::from_f32(d).to_bits().to_le_bytes());
        yb[2..4].copy_from_slice(&half::f16::from_f32(d * s as f32).to_bits().to_le_bytes());
    }
}

// ---------------------------------------------------------------------------------------------
// 32-value blocks.

/// Shared loop of the Q8_0-activation types: `dot(x block, y qs)` as 4 x i32.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn dot_blocks_q8_0(n: usize, w: &[u8], a: &[u8], bsize: usize, f: impl Fn(*const u8, *const u8) -> int32x4_t) -> f32 {
    let nb = n / 32;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let mut acc = vdupq_n_f32(0.0);
    for i in 0..nb {
        // SAFETY: block i is inside both rows (lengths guaranteed by the caller).
        unsafe {
            let (x, y) = (wp.add(bsize * i), ap.add(34 * i));
            let s = f(x, y.add(2));
            acc = vfmaq_n_f32(acc, vcvtq_f32_s32(s), f16_at(x) * f16_at(y));
        }
    }
    vaddvq_f32(acc)
}

#[target_feature(enable = "neon")]
unsafe fn dot_q8_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    // SAFETY: the closure reads 32 bytes at x+2 and y of blocks inside the rows.
    unsafe {
        dot_blocks_q8_0(n, w, a, 34, |x, y| {
            vaddq_s32(dot16(ld8(x.add(2)), ld8(y)), dot16(ld8(x.add(18)), ld8(y.add(16))))
        })
    }
}

#[target_feature(enable = "neon")]
unsafe fn dot_q4_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    // SAFETY: as `dot_q8_0` (16 bytes of nibbles at x+2).
    unsafe {
        dot_blocks_q8_0(n, w, a, 18, |x, y| {
            let (lo, hi) = nibbles(x.add(2));
            let e = vdupq_n_s8(8);
            vaddq_s32(dot16(vsubq_s8(lo, e), ld8(y)), dot16(vsubq_s8(hi, e), ld8(y.add(16))))
        })
    }
}

#[target_feature(enable = "neon")]
unsafe fn dot_q5_0(n: usize, w: &[u8], a: &[u8]) -> f32 {
    // SAFETY: as `dot_q8_0` (qh at x+2, nibbles at x+6).
    unsafe {
        dot_blocks_q8_0(n, w, a, 22, |x, y| {
            let (lo, hi) = nibbles(x.add(6));
            let (hl, hh) = q5_high(x.add(2));
            let e = vdupq_n_s8(16);
            let lo = vsubq_s8(vorrq_s8(lo, hl), e);
            let hi = vsubq_s8(vorrq_s8(hi, hh), e);
            vaddq_s32(dot16(lo, ld8(y)), dot16(hi, ld8(y.add(16))))
        })
    }
}

#[target_feature(enable = "neon")]
unsafe fn dot_iq4_nl(n: usize, w: &[u8], a: &[u8]) -> f32 {
    // SAFETY: the table has 16 bytes.
    let tbl = unsafe { vld1q_s8(KVALUES_IQ4NL.as_ptr()) };
    // SAFETY: as `dot_q8_0`.
    unsafe {
        dot_blocks_q8_0(n, w, a, 18, |x, y| {
            let (lo, hi) = nibbles(x.add(2));
            let lo = vqtbl1q_s8(tbl, vreinterpretq_u8_s8(lo));
            let hi = vqtbl1q_s8(tbl, vreinterpretq_u8_s8(hi));
            vaddq_s32(dot16(lo, ld8(y)), dot16(hi, ld8(y.add(16))))
        })
    }
}

/// Q4_1 / Q5_1 against Q8_1: `d_w d_a sum(q y) + m_w s_a`.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn dot_blocks_q8_1(n: usize, w: &[u8], a: &[u8], bsize: usize, f: impl Fn(*const u8, *const u8) -> int32x4_t) -> f32 {
    let nb = n / 32;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let mut acc = vdupq_n_f32(0.0);
    let mut summs = 0.0f32;
    for i in 0..nb {
        // SAFETY: block i is inside both rows.
        unsafe {
            let (x, y) = (wp.add(bsize * i), ap.add(36 * i));
            summs += f16_at(x.add(2)) * f16_at(y.add(2));
            acc = vfmaq_n_f32(acc, vcvtq_f32_s32(f(x, y.add(4))), f16_at(x) * f16_at(y));
        }
    }
    vaddvq_f32(acc) + summs
}

#[target_feature(enable = "neon")]
unsafe fn dot_q4_1(n: usize, w: &[u8], a: &[u8]) -> f32 {
    // SAFETY: nibbles at x+4, 32 activation bytes at y.
    unsafe {
        dot_blocks_q8_1(n, w, a, 20, |x, y| {
            let (lo, hi) = nibbles(x.add(4));
            vaddq_s32(dot16(lo, ld8(y)), dot16(hi, ld8(y.add(16))))
        })
    }
}

#[target_feature(enable = "neon")]
unsafe fn dot_q5_1(n: usize, w: &[u8], a: &[u8]) -> f32 {
    // SAFETY: qh at x+4, nibbles at x+8, 32 activation bytes at y.
    unsafe {
        dot_blocks_q8_1(n, w, a, 24, |x, y| {
            let (lo, hi) = nibbles(x.add(8));
            let (hl, hh) = q5_high(x.add(4));
            vaddq_s32(dot16(vorrq_s8(lo, hl), ld8(y)), dot16(vorrq_s8(hi, hh), ld8(y.add(16))))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// K-quants and IQ4_XS against Q8_K.

/// `sum_j mins[j] * (bsums[2j] + bsums[2j+1])` (exact).
#[inline(always)]
unsafe fn mins_dot(y: *const u8, sm: &[u8; 16]) -> i32 {
    let mut s = 0i32;
    for j in 0..8 {
        // SAFETY: the per-16 sums sit at 260..292 of a Q8_K block (caller).
        let (a, b) = unsafe {
            (core::ptr::read_unaligned(y.add(260 + 4 * j) as *const i16), core::ptr::read_unaligned(y.add(262 + 4 * j) as *const i16))
        };
        s += sm[8 + j] as i32 * (i16::from_le(a) as i32 + i16::from_le(b) as i32);
    }
    s
}

/// Q4_K / Q5_K: `qfn(x, j)` gives the 64 unsigned quants of sub-blocks 2j, 2j+1 as 4 vectors.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn dot_k4(n: usize, w: &[u8], a: &[u8], bsize: usize, qfn: impl Fn(*const u8, usize) -> [int8x16_t; 4]) -> f32 {
    let nb = n / 256;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let mut acc = 0.0f32;
    for i in 0..nb {
        // SAFETY: super-block i is inside both rows.
        unsafe {
            let (x, y) = (wp.add(bsize * i), ap.add(292 * i));
            let yd = f32_at(y);
            let sm = k4_scales_mins(&core::ptr::read_unaligned(x.add(4) as *const [u8; 12]));
            let mut sumi = 0i32;
            for j in 0..4 {
                let q = qfn(x, j);
                let yq = y.add(4 + 64 * j);
                let s0 = vaddvq_s32(vaddq_s32(dot16(q[0], ld8(yq)), dot16(q[1], ld8(yq.add(16)))));
                let s1 = vaddvq_s32(vaddq_s32(dot16(q[2], ld8(yq.add(32))), dot16(q[3], ld8(yq.add(48)))));
                sumi += s0 * sm[2 * j] as i32 + s1 * sm[2 * j + 1] as i32;
            }
            acc += yd * f16_at(x) * sumi as f32 - yd * f16_at(x.add(2)) * mins_dot(y, &sm) as f32;
        }
    }
    acc
}

#[target_feature(enable = "neon")]
unsafe fn dot_q4_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    // SAFETY: 32 quant bytes at 16 + 32j of a 144-byte block.
    unsafe {
        dot_k4(n, w, a, 144, |x, j| {
            let (l0, h0) = nibbles(x.add(16 + 32 * j));
            let (l1, h1) = nibbles(x.add(32 + 32 * j));
            [l0, l1, h0, h1]
        })
    }
}

#[target_feature(enable = "neon")]
unsafe fn dot_q5_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    // SAFETY: qh at 16..48, quants at 48 + 32j of a 176-byte block.
    unsafe {
        dot_k4(n, w, a, 176, |x, j| {
            let (l0, h0) = nibbles(x.add(48 + 32 * j));
            let (l1, h1) = nibbles(x.add(64 + 32 * j));
            let (qh0, qh1) = (ldu8(x.add(16)), ldu8(x.add(32)));
            let bit = |v: uint8x16_t, b: usize| {
                vreinterpretq_s8_u8(vandq_u8(vtstq_u8(v, vdupq_n_u8(1 << b)), vdupq_n_u8(0x10)))
            };
            [
                vorrq_s8(l0, bit(qh0, 2 * j)),
                vorrq_s8(l1, bit(qh1, 2 * j)),
                vorrq_s8(h0, bit(qh0, 2 * j + 1)),
                vorrq_s8(h1, bit(qh1, 2 * j + 1)),
            ]
        })
    }
}

#[target_feature(enable = "neon")]
unsafe fn dot_q6_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 256;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let m4 = vdupq_n_u8(0x0f);
    let m3 = vdupq_n_u8(0x03);
    let c32 = vdupq_n_s8(32);
    let mut acc = 0.0f32;
    for i in 0..nb {
        // SAFETY: super-block i (210 bytes, 292 of Q8_K) is inside both rows.
        unsafe {
            let (x, y) = (wp.add(210 * i), ap.add(292 * i));
            let d = f32_at(y) * f16_at(x.add(208));
            let sc = core::ptr::read_unaligned(x.add(192) as *const [i8; 16]);
            let mut sumi = 0i32;
            for half in 0..2 {
                for l in 0..2 {
                    let ql0 = ldu8(x.add(64 * half + 16 * l));
                    let ql1 = ldu8(x.add(64 * half + 32 + 16 * l));
                    let qh = ldu8(x.add(128 + 32 * half + 16 * l));
                    let q = [
                        vorrq_u8(vandq_u8(ql0, m4), vshlq_n_u8(vandq_u8(qh, m3), 4)),
                        vorrq_u8(vandq_u8(ql1, m4), vshlq_n_u8(vandq_u8(vshrq_n_u8(qh, 2), m3), 4)),
                        vorrq_u8(vshrq_n_u8(ql0, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(qh, 4), m3), 4)),
                        vorrq_u8(vshrq_n_u8(ql1, 4), vshlq_n_u8(vshrq_n_u8(qh, 6), 4)),
                    ];
                    for (k, qk) in q.iter().enumerate() {
                        let v = vsubq_s8(vreinterpretq_s8_u8(*qk), c32);
                        let s = vaddvq_s32(dot16(v, ld8(y.add(4 + 128 * half + 32 * k + 16 * l))));
                        sumi += s * sc[8 * half + 2 * k + l] as i32;
                    }
                }
            }
            acc += d * sumi as f32;
        }
    }
    acc
}

/// The four 2-bit fields of 16 bytes (`(q >> 2j) & 3` for j = 0..4).
#[inline]
#[target_feature(enable = "neon")]
fn crumbs(q: uint8x16_t) -> [uint8x16_t; 4] {
    let m3 = vdupq_n_u8(3);
    [vandq_u8(q, m3), vandq_u8(vshrq_n_u8::<2>(q), m3), vandq_u8(vshrq_n_u8::<4>(q), m3), vshrq_n_u8::<6>(q)]
}

/// Q2_K x Q8_K: `d * sum(sc * q * y) - dmin * sum(m * bsum)` with 4-bit scales and mins.
#[target_feature(enable = "neon")]
unsafe fn dot_q2_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 256;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let mut acc = 0.0f32;
    for i in 0..nb {
        // SAFETY: super-block i (84 bytes of Q2_K, 292 of Q8_K) is inside both rows.
        unsafe {
            let (x, y) = (wp.add(84 * i), ap.add(292 * i));
            let yd = f32_at(y);
            let sb = ldu8(x);
            // Mins (high nibbles) times the 16 per-16 sums.
            let mins = vshrq_n_u8::<4>(sb);
            let m_lo = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(mins)));
            let m_hi = vreinterpretq_s16_u16(vmovl_high_u8(mins));
            let b_lo = vld1q_s16(y.add(260) as *const i16);
            let b_hi = vld1q_s16(y.add(276) as *const i16);
            let pm = vmlal_high_s16(vmlal_s16(vmull_s16(vget_low_s16(m_lo), vget_low_s16(b_lo)), vget_high_s16(m_lo), vget_high_s16(b_lo)), m_hi, b_hi);
            let summ = vaddvq_s32(vmlal_s16(pm, vget_low_s16(m_hi), vget_low_s16(b_hi)));
            let mut sc = [0u8; 16];
            vst1q_u8(sc.as_mut_ptr(), vandq_u8(sb, vdupq_n_u8(0x0f)));
            let mut sumi = 0i32;
            for half in 0..2 {
                for l in 0..2 {
                    let q = crumbs(ldu8(x.add(16 + 32 * half + 16 * l)));
                    for (j, qj) in q.iter().enumerate() {
                        let s = vaddvq_s32(dot16(vreinterpretq_s8_u8(*qj), ld8(y.add(4 + 128 * half + 32 * j + 16 * l))));
                        sumi += s * sc[8 * half + 2 * j + l] as i32;
                    }
                }
            }
            acc += yd * f16_at(x.add(80)) * sumi as f32 - yd * f16_at(x.add(82)) * summ as f32;
        }
    }
    acc
}

/// The 16 six-bit scales of a Q3_K block (12 bytes) minus 32.
#[inline(always)]
fn q3k_scales(s: &[u8; 12]) -> [i8; 16] {
    let w = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    let (a0, a1, a2) = (w(0), w(1), w(2));
    let (m2, m4) = (0x0303_0303u32, 0x0f0f_0f0fu32);
    let u = [
        (a0 & m4) | (a2 & m2) << 4,
        (a1 & m4) | ((a2 >> 2) & m2) << 4,
        ((a0 >> 4) & m4) | ((a2 >> 4) & m2) << 4,
        ((a1 >> 4) & m4) | ((a2 >> 6) & m2) << 4,
    ];
    let mut out = [0i8; 16];
    for (k, uk) in u.iter().enumerate() {
        for (b, o) in uk.to_le_bytes().iter().zip(&mut out[4 * k..4 * k + 4]) {
            *o = (*b as i8).wrapping_sub(32);
        }
    }
    out
}

/// Q3_K x Q8_K: `q = (2 low bits | hmask bit << 2) - 4`, six-bit scales minus 32.
#[target_feature(enable = "neon")]
unsafe fn dot_q3_k(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 256;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let four = vdupq_n_u8(4);
    let mut acc = 0.0f32;
    for i in 0..nb {
        // SAFETY: super-block i (110 bytes of Q3_K, 292 of Q8_K) is inside both rows.
        unsafe {
            let (x, y) = (wp.add(110 * i), ap.add(292 * i));
            let d = f32_at(y) * f16_at(x.add(108));
            let sc = q3k_scales(&core::ptr::read_unaligned(x.add(96) as *const [u8; 12]));
            let mut sumi = 0i32;
            for l in 0..2 {
                let hm = ldu8(x.add(16 * l));
                for half in 0..2 {
                    let q = crumbs(ldu8(x.add(32 + 32 * half + 16 * l)));
                    for (j, qj) in q.iter().enumerate() {
                        let h = vandq_u8(vtstq_u8(hm, vdupq_n_u8(1 << (4 * half + j))), four);
                        let v = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(*qj, h)), vreinterpretq_s8_u8(four));
                        let s = vaddvq_s32(dot16(v, ld8(y.add(4 + 128 * half + 32 * j + 16 * l))));
                        sumi += s * sc[8 * half + 2 * j + l] as i32;
                    }
                }
            }
            acc += d * sumi as f32;
        }
    }
    acc
}

#[target_feature(enable = "neon")]
unsafe fn dot_iq4_xs(n: usize, w: &[u8], a: &[u8]) -> f32 {
    let nb = n / 256;
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    // SAFETY: the table has 16 bytes.
    let tbl = unsafe { vld1q_s8(KVALUES_IQ4NL.as_ptr()) };
    let mut acc = 0.0f32;
    for i in 0..nb {
        // SAFETY: super-block i (136 bytes, 292 of Q8_K) is inside both rows.
        unsafe {
            let (x, y) = (wp.add(136 * i), ap.add(292 * i));
            let d = f32_at(y) * f16_at(x);
            let sh = u16::from_le(core::ptr::read_unaligned(x.add(2) as *const u16));
            let sl = core::ptr::read_unaligned(x.add(4) as *const [u8; 4]);
            let mut sumi = 0i32;
            for j in 0..8 {
                let ls = ((sl[j / 2] >> (4 * (j % 2))) & 0x0f) as i32 | (((sh >> (2 * j)) & 3) as i32) << 4;
                let (lo, hi) = nibbles(x.add(8 + 16 * j));
                let lo = vqtbl1q_s8(tbl, vreinterpretq_u8_s8(lo));
                let hi = vqtbl1q_s8(tbl, vreinterpretq_u8_s8(hi));
                let yq = y.add(4 + 32 * j);
                let s = vaddvq_s32(vaddq_s32(dot16(lo, ld8(yq)), dot16(hi, ld8(yq.add(16)))));
                sumi += s * (ls - 32);
            }
            acc += d * sumi as f32;
        }
    }
    acc
}
