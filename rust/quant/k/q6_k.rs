//! Q6_K: 6.5625 bits per weight. Sixteen sub-blocks of 16 values, `x ≈ d·sc_j·(q - 32)` with
//! 6-bit `q` (low 4 bits in `ql`, high 2 in `qh`), signed 8-bit sub-block scales and f16 `d`.

use super::super::search::{make_qx_quants_lanes, nearest_int, to_lanes, GROUP_MAX_EPS};
use super::{block_weights, from_lanes, super_blocks, super_blocks_mut, BlockQ8K, QK_K};
use crate::quant::{f16_to_f32, f32_to_f16, Block, DotBlock};
use crate::types::QuantType;

/// ggml `block_q6_K`: 256 values in 210 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ6K {
    /// Low 4 bits: in each 128-value half `h`, byte `64 h + l` holds values `128 h + l` (low
    /// nibble) and `128 h + 64 + l` (high); byte `64 h + 32 + l` values `+32` and `+96`.
    pub ql: [u8; QK_K / 2],
    /// High 2 bits: byte `32 h + l` holds those of values `128 h + l + 32 k` in bits `2k..2k+2`.
    pub qh: [u8; QK_K / 4],
    /// Signed sub-block scales.
    pub scales: [i8; QK_K / 16],
    /// Super-block scale (f16, little-endian).
    pub d: [u8; 2],
}
const _: () =
    assert!(core::mem::size_of::<BlockQ6K>() == 210 && core::mem::align_of::<BlockQ6K>() == 1);

/// ggml `quantize_row_q6_K_ref` (`qw = None`) and `quantize_row_q6_K_impl` (`qw` the block's
/// importance weights, used directly as `make_qx_quants` weights) for one super-block.
fn quantize_block(x: &[f32; QK_K], qw: Option<&[f32; QK_K]>, y: &mut BlockQ6K) {
    // make_qx_quants(16, 32, x_j, .., rmse_type 1, qw_j) on the 16 sub-blocks at once; without
    // importance weights rmse_type 1 weighs by x².
    let xt = to_lanes::<16, 16>(x);
    let wt = match qw {
        Some(qw) => to_lanes::<16, 16>(qw),
        None => xt.map(|row| row.map(|v| v * v)),
    };
    let mut lt = [[0i8; 16]; 16];
    let scales = make_qx_quants_lanes::<16, 16>(32, &xt, &wt, &mut lt);
    let mut levels = [0i8; QK_K];
    from_lanes(&lt, &mut levels);
    let mut max_scale = 0.0f32;
    let mut max_abs_scale = 0.0f32;
    for &scale in &scales {
        let abs_scale = scale.abs();
        if abs_scale > max_abs_scale {
            max_abs_scale = abs_scale;
            max_scale = scale;
        }
    }
    if max_abs_scale < GROUP_MAX_EPS {
        *y = bytemuck::Zeroable::zeroed();
        return;
    }
    let iscale = -128.0f32 / max_scale;
    y.d = f32_to_f16(1.0 / iscale);
    for (sc, &s) in y.scales.iter_mut().zip(&scales) {
        *sc = nearest_int(iscale * s).min(127) as i8;
    }
    let dall = f16_to_f32(y.d);
    for j in 0..QK_K / 16 {
        let d = dall * y.scales[j] as f32;
        if d == 0.0 {
            continue;
        }
        for ii in 0..16 {
            let l = nearest_int(x[16 * j + ii] / d);
            levels[16 * j + ii] = (l.clamp(-32, 31) + 32) as i8;
        }
    }
    for h in 0..2 {
        let lv = &levels[128 * h..128 * h + 128];
        for l in 0..32 {
            let q = |k: usize| lv[l + 32 * k] as u8;
            y.ql[64 * h + l] = (q(0) & 0xF) | ((q(2) & 0xF) << 4);
            y.ql[64 * h + 32 + l] = (q(1) & 0xF) | ((q(3) & 0xF) << 4);
            y.qh[32 * h + l] =
                (q(0) >> 4) | ((q(1) >> 4) << 2) | ((q(2) >> 4) << 4) | ((q(3) >> 4) << 6);
        }
    }
}

/// The signed levels `q - 32` of a block in value order.
#[inline]
fn levels(x: &BlockQ6K) -> [i8; QK_K] {
    let mut a = [0i8; QK_K];
    for h in 0..2 {
        let (ql, qh) = (&x.ql[64 * h..64 * h + 64], &x.qh[32 * h..32 * h + 32]);
        let out = &mut a[128 * h..128 * h + 128];
        for l in 0..32 {
            out[l] = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
            out[l + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            out[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            out[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
        }
    }
    a
}

impl Block for BlockQ6K {
    const TYPE: QuantType = QuantType::Q6_K;

    #[inline(always)]
    fn quantize_row(src: &[f32], dst: &mut [Self], imatrix: Option<&[f32]>) {
        for (i, (x, y)) in super_blocks(src).zip(dst.iter_mut()).enumerate() {
            quantize_block(x, imatrix.map(|w| block_weights(w, i)), y);
        }
    }

    #[inline(always)]
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (b, y) in src.iter().zip(super_blocks_mut(dst)) {
            let d = f16_to_f32(b.d);
            let q = levels(b);
            for (j, (out, q)) in y.chunks_exact_mut(16).zip(q.chunks_exact(16)).enumerate() {
                let ds = d * b.scales[j] as f32;
                for (o, &v) in out.iter_mut().zip(q) {
                    *o = ds * v as f32;
                }
            }
        }
    }
}

impl DotBlock for BlockQ6K {
    type Dot = BlockQ8K;

    /// ggml `ggml_vec_dot_q6_K_q8_K_generic`.
    fn vec_dot_ref(lhs: &[Self], rhs: &[BlockQ8K]) -> f32 {
        let mut sums = [0f32; 8];
        for (x, y) in lhs.iter().zip(rhs) {
            let a = levels(x);
            let mut aux32 = [0i32; 8];
            for (g, (q8, a)) in y.qs.chunks_exact(8).zip(a.chunks_exact(8)).enumerate() {
                let scale = x.scales[g / 2] as i32;
                for l in 0..8 {
                    aux32[l] += scale * (q8[l] as i32 * a[l] as i32);
                }
            }
            let d = f16_to_f32(x.d) * y.d();
            for l in 0..8 {
                sums[l] += d * aux32[l] as f32;
            }
        }
        let mut sumf = 0.0f32;
        for s in sums {
            sumf += s;
        }
        sumf
    }
}
