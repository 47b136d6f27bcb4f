//! The ternary types TQ1_0 and TQ2_0 (BitNet b1.58 / TriLM weights): 256 values per block,
//! each `t · d` with `t ∈ {-1, 0, 1}` and `d = max |x|` stored as f16.
//!
//! * TQ1_0 packs 5 trits per byte in base 3, stored as the fixed-point fraction
//!   `ceil(n · 256 / 243)` so that trit `k` is recovered as `((byte · 3^k) mod 256) · 3 >> 8`.
//!   Bytes 0..32 hold values 0..160 (byte `m`, trit `n` → value `32n + m`), bytes 32..48 values
//!   160..240 (byte `32 + m` → value `160 + 16n + m`), and `qh` the last 16 with 4 trits a byte.
//! * TQ2_0 stores `t + 1` in 2 bits: byte `32j + m`, bits `2l` → value `128j + 32l + m`.
//!
//! Both ignore importance weights, as ggml does.
#![forbid(unsafe_code)]

use super::k::BlockQ8K as Q8K;
use super::{f16_to_f32, f32_to_f16, Block, DotBlock};
use crate::types::QuantType;

const QK_K: usize = 256;

/// TQ1_0 block (ggml `block_tq1_0`), 1.6875 bits per weight.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockTQ1_0 {
    /// 240 values, 5 trits per byte.
    pub qs: [u8; 48],
    /// 16 values, 4 trits per byte (shifted into the top four trit places).
    pub qh: [u8; 4],
    /// f16 scale, little-endian.
    pub d: [u8; 2],
}

/// TQ2_0 block (ggml `block_tq2_0`), 2.0625 bits per weight.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockTQ2_0 {
    /// 256 values, 2 bits each (`t + 1`).
    pub qs: [u8; 64],
    /// f16 scale, little-endian.
    pub d: [u8; 2],
}

const _: () = assert!(core::mem::size_of::<BlockTQ1_0>() == 54 && core::mem::align_of::<BlockTQ1_0>() == 1);
const _: () = assert!(core::mem::size_of::<BlockTQ2_0>() == 66 && core::mem::align_of::<BlockTQ2_0>() == 1);
const _: () = assert!(QuantType::TQ1_0.type_size() == 54 && QuantType::TQ1_0.block_size() == QK_K);
const _: () = assert!(QuantType::TQ2_0.type_size() == 66 && QuantType::TQ2_0.block_size() == QK_K);

const POW3: [u8; 6] = [1, 3, 9, 27, 81, 243];

/// `lroundf(v) + 1` truncated to int the way ggml's x86 build computes it: half away from zero;
/// NaN and out-of-range values become `LONG_MIN`, whose low 32 bits are 0, so they give 1.
#[inline(always)]
fn trit_code(v: f32) -> i32 {
    let r = v.round();
    let l = if r > -9.223372e18 && r < 9.223372e18 { r as i64 } else { i64::MIN };
    (l as i32).wrapping_add(1)
}

/// `lroundf(x[i] * id) + 1` for a block (as bytes; ggml adds them into uint8 with wraparound).
#[inline(always)]
fn trit_codes(x: &[f32], id: f32) -> [u8; QK_K] {
    let mut c = [0u8; QK_K];
    if id.is_finite() {
        // id is 0 or 1/max|x|, so every x·id lies in [-1-2⁻²², 1+2⁻²²] and rounding half away
        // from zero only needs the two comparisons.
        for (c, v) in c.iter_mut().zip(x) {
            let v = v * id;
            *c = 1 + (v >= 0.5) as u8 - (v <= -0.5) as u8;
        }
    } else {
        // max|x| < 2^-128: 1/max overflowed and x·id is ±inf or NaN.
        for (c, v) in c.iter_mut().zip(x) {
            *c = trit_code(v * id) as u8;
        }
    }
    c
}

/// `(amax, 1/amax or 0)` of a block, as ggml computes them.
#[inline(always)]
fn scale_of(x: &[f32]) -> (f32, f32) {
    // ggml: amax = MAX(amax, fabsf(v)) — inputs are finite.
    let amax = super::abs_max(x);
    (amax, if amax != 0.0 { 1.0 / amax } else { 0.0 })
}

/// Pack trits (most significant first) into the fixed-point byte TQ1_0 stores.
#[inline(always)]
fn pack_trits(codes: impl Iterator<Item = u8>) -> u8 {
    let q = codes.fold(0u8, |q, c| q.wrapping_mul(3).wrapping_add(c));
    (q as u16 * 256).div_ceil(243) as u8
}

/// Trit `k` (0 = most significant) of a TQ1_0 byte, as -1, 0 or 1.
#[inline(always)]
fn trit(q: u8, k: usize) -> i32 {
    let q = q.wrapping_mul(POW3[k]);
    ((q as u16 * 3) >> 8) as i32 - 1
}

impl Block for BlockTQ1_0 {
    const TYPE: QuantType = QuantType::TQ1_0;

    #[inline(always)]
    fn quantize_row(src: &[f32], dst: &mut [Self], _imatrix: Option<&[f32]>) {
        for (x, y) in src.chunks_exact(QK_K).zip(dst.iter_mut()) {
            let (d, id) = scale_of(x);
            y.d = f32_to_f16(d);
            let c = trit_codes(x, id);
            for m in 0..32 {
                y.qs[m] = pack_trits((0..5).map(|n| c[m + 32 * n]));
            }
            for m in 0..16 {
                y.qs[32 + m] = pack_trits((0..5).map(|n| c[160 + m + 16 * n]));
            }
            for j in 0..4 {
                // Four trits plus a zero trit in the least significant place.
                y.qh[j] = pack_trits((0..4).map(|m| c[240 + j + 4 * m]).chain([0]));
            }
        }
    }

    #[inline(always)]
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
            let d = f16_to_f32(b.d);
            for n in 0..5 {
                for m in 0..32 {
                    y[32 * n + m] = trit(b.qs[m], n) as f32 * d;
                }
                for m in 0..16 {
                    y[160 + 16 * n + m] = trit(b.qs[32 + m], n) as f32 * d;
                }
            }
            for n in 0..4 {
                for j in 0..4 {
                    y[240 + 4 * n + j] = trit(b.qh[j], n) as f32 * d;
                }
            }
        }
    }
}

impl Block for BlockTQ2_0 {
    const TYPE: QuantType = QuantType::TQ2_0;

    #[inline(always)]
    fn quantize_row(src: &[f32], dst: &mut [Self], _imatrix: Option<&[f32]>) {
        for (x, y) in src.chunks_exact(QK_K).zip(dst.iter_mut()) {
            let (d, id) = scale_of(x);
            y.d = f32_to_f16(d);
            let c = trit_codes(x, id);
            for j in 0..2 {
                for m in 0..32 {
                    let mut q = 0u8;
                    for n in 0..4 {
                        q = q.wrapping_add((c[128 * j + m + 32 * n] & 3) << (2 * n));
                    }
                    y.qs[32 * j + m] = q;
                }
            }
        }
    }

    #[inline(always)]
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
            let d = f16_to_f32(b.d);
            for (j, ys) in y.chunks_exact_mut(128).enumerate() {
                for (l, yl) in ys.chunks_exact_mut(32).enumerate() {
                    for (m, o) in yl.iter_mut().enumerate() {
                        *o = (((b.qs[32 * j + m] >> (2 * l)) & 3) as i32 - 1) as f32 * d;
                    }
                }
            }
        }
    }
}

/// Scalar TQ1_0 · Q8_K (ggml `ggml_vec_dot_tq1_0_q8_K_generic`).
pub fn vec_dot_tq1_0_q8_k(x: &[BlockTQ1_0], y: &[Q8K]) -> f32 {
    let mut sumf = 0.0f32;
    for (b, a) in x.iter().zip(y) {
        let q8 = &a.qs;
        let mut sum = 0i32;
        for n in 0..5 {
            for m in 0..32 {
                sum += trit(b.qs[m], n) * q8[32 * n + m] as i32;
            }
            for m in 0..16 {
                sum += trit(b.qs[32 + m], n) * q8[160 + 16 * n + m] as i32;
            }
        }
        for n in 0..4 {
            for j in 0..4 {
                sum += trit(b.qh[j], n) * q8[240 + 4 * n + j] as i32;
            }
        }
        sumf += sum as f32 * (f16_to_f32(b.d) * a.d());
    }
    sumf
}

/// Scalar TQ2_0 · Q8_K (ggml `ggml_vec_dot_tq2_0_q8_K_generic`).
pub fn vec_dot_tq2_0_q8_k(x: &[BlockTQ2_0], y: &[Q8K]) -> f32 {
    let mut sumf = 0.0f32;
    for (b, a) in x.iter().zip(y) {
        let q8 = &a.qs;
        let mut sumi = 0i32;
        for j in 0..2 {
            for l in 0..4 {
                for k in 0..32 {
                    let t = ((b.qs[32 * j + k] >> (2 * l)) & 3) as i32 - 1;
                    sumi += q8[128 * j + 32 * l + k] as i32 * t;
                }
            }
        }
        let d = a.d() * f16_to_f32(b.d);
        sumf += sumi as f32 * d;
    }
    sumf
}

impl DotBlock for BlockTQ1_0 {
    type Dot = Q8K;
    fn vec_dot_ref(lhs: &[Self], rhs: &[Self::Dot]) -> f32 {
        vec_dot_tq1_0_q8_k(lhs, rhs)
    }
}

impl DotBlock for BlockTQ2_0 {
    type Dot = Q8K;
    fn vec_dot_ref(lhs: &[Self], rhs: &[Self::Dot]) -> f32 {
        vec_dot_tq2_0_q8_k(lhs, rhs)
    }
}
