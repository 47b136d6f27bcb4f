//! Q3_K: 3.4375 bits per weight. Sixteen sub-blocks of 16 values, `x ≈ d·(sc_j - 32)·(q - 4)`
//! with 3-bit `q` (low 2 bits in `qs`, high bit in `hmask`), 6-bit sub-block scales and f16 `d`.

use super::super::search::{
    make_q3_quants_lanes, make_qx_quants, make_qx_quants_lanes, nearest_int, to_lanes,
};
use super::{block_weights, from_lanes, pack_2bit, super_blocks, super_blocks_mut, BlockQ8K, QK_K};
use crate::quant::{f16_to_f32, f32_to_f16, Block, DotBlock};
use crate::types::QuantType;

/// ggml `block_q3_K`: 256 values in 110 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct BlockQ3K {
    /// High bit of each level: bit `b` of byte `m` belongs to value `32 b + m`.
    pub hmask: [u8; QK_K / 8],
    /// Low 2 bits of each level (layout of `pack_2bit`).
    pub qs: [u8; QK_K / 4],
    /// Sixteen 6-bit scales (offset by 32): low nibbles in bytes 0..8 (scale `j` in byte `j % 8`,
    /// low nibble for `j < 8`, high for `j >= 8`), top 2 bits in bytes 8..12 (scale `j` in byte
    /// `8 + j % 4`, bits `2 (j / 4)..`).
    pub scales: [u8; 12],
    /// Super-block scale (f16, little-endian).
    pub d: [u8; 2],
}
const _: () =
    assert!(core::mem::size_of::<BlockQ3K>() == 110 && core::mem::align_of::<BlockQ3K>() == 1);

/// Store 6-bit scale `l` (0..63) of sub-block `j` into the packed scale bytes (which start zeroed).
#[inline]
fn put_scale(scales: &mut [u8; 12], j: usize, l: i32) {
    if j < 8 {
        scales[j] = (l & 0xF) as u8;
    } else {
        scales[j - 8] |= ((l & 0xF) << 4) as u8;
    }
    scales[j % 4 + 8] |= ((l >> 4) << (2 * (j / 4))) as u8;
}

/// The sixteen signed scales `sc_j - 32` of a block.
#[inline]
fn unpack_scales(scales: &[u8; 12]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (j, o) in out.iter_mut().enumerate() {
        let low = if j < 8 {
            scales[j] & 0xF
        } else {
            scales[j - 8] >> 4
        };
        let high = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
        *o = (low | (high << 4)) as i8 - 32;
    }
    out
}

/// Requantize against the stored scales, split off the high bits and pack. Shared tail of both
/// quantizers; `levels` hold `q` in 0..8.
fn finish(x: &[f32; QK_K], y: &mut BlockQ3K, levels: &mut [i8; QK_K]) {
    let dall = f16_to_f32(y.d);
    let sc = unpack_scales(&y.scales);
    for j in 0..QK_K / 16 {
        let d = dall * sc[j] as f32;
        if d == 0.0 {
            continue;
        }
        for ii in 0..16 {
            let l = nearest_int(x[16 * j + ii] / d);
            levels[16 * j + ii] = (l.clamp(-4, 3) + 4) as i8;
        }
    }
    y.hmask = [0; QK_K / 8];
    let mut low = [0u8; QK_K];
    for (j, (&l, lo)) in levels.iter().zip(low.iter_mut()).enumerate() {
        let mut l = l as u8;
        if l > 3 {
            y.hmask[j % 32] |= 1 << (j / 32);
            l -= 4;
        }
        *lo = l;
    }
    pack_2bit(&low, &mut y.qs);
}

/// ggml `quantize_row_q3_K_ref` for one super-block.
#[inline(always)]
fn quantize_block_ref(x: &[f32; QK_K], y: &mut BlockQ3K) {
    let mut levels = [0i8; QK_K];
    // make_q3_quants(16, 4, x_j, .., do_rmse) on the 16 sub-blocks at once.
    let xt = to_lanes::<16, 16>(x);
    let mut lt = [[0i8; 16]; 16];
    let scales = make_q3_quants_lanes::<16, 16>(4, &xt, &mut lt);
    from_lanes(&lt, &mut levels);
    let mut max_scale = 0.0f32;
    let mut amax = 0.0f32;
    for &s in &scales {
        if s.abs() > amax {
            amax = s.abs();
            max_scale = s;
        }
    }
    y.scales = [0; 12];
    if max_scale != 0.0 {
        let iscale = -32.0f32 / max_scale;
        for (j, &s) in scales.iter().enumerate() {
            // ggml stores the rounded value in an int8 before clamping.
            let l = nearest_int(iscale * s) as i8 as i32;
            put_scale(&mut y.scales, j, l.clamp(-32, 31) + 32);
        }
        y.d = f32_to_f16(1.0 / iscale);
    } else {
        y.d = f32_to_f16(0.0);
    }
    finish(x, y, &mut levels);
}

/// ggml `quantize_row_q3_K_impl` for one super-block with importance weights `qw`.
fn quantize_block_imatrix(x: &[f32; QK_K], qw: &[f32; QK_K], y: &mut BlockQ3K) {
    let mut sumx2 = 0.0f32;
    for v in x {
        sumx2 += v * v;
    }
    let sigma2 = 2.0 * sumx2 / QK_K as f32;
    // Per sub-block weights qw·sqrt(σ² + x²), their sums, and make_qx_quants(16, 4, x_j, ..,
    // rmse_type 1, weights) on the 16 sub-blocks at once.
    let xt = to_lanes::<16, 16>(x);
    let qwt = to_lanes::<16, 16>(qw);
    let mut wt = [[0f32; 16]; 16];
    let mut sw = [0f32; QK_K / 16];
    for i in 0..16 {
        for g in 0..16 {
            wt[i][g] = qwt[i][g] * (sigma2 + xt[i][g] * xt[i][g]).sqrt();
            sw[g] += wt[i][g];
        }
    }
    let mut lt = [[0i8; 16]; 16];
    let scales = make_qx_quants_lanes::<16, 16>(4, &xt, &wt, &mut lt);
    let mut levels = [0i8; QK_K];
    from_lanes(&lt, &mut levels);
    y.scales = [0; 12];
    let mut ls = [0i8; QK_K / 16];
    let d_block = make_qx_quants(32, &scales, &mut ls, 1, Some(&sw));
    for (j, &l) in ls.iter().enumerate() {
        put_scale(&mut y.scales, j, l as i32);
    }
    y.d = f32_to_f16(d_block);
    finish(x, y, &mut levels);
}

impl Block for BlockQ3K {
    const TYPE: QuantType = QuantType::Q3_K;

    #[inline(always)]
    fn quantize_row(src: &[f32], dst: &mut [Self], imatrix: Option<&[f32]>) {
        for (i, (x, y)) in super_blocks(src).zip(dst.iter_mut()).enumerate() {
            match imatrix {
                None => quantize_block_ref(x, y),
                Some(w) => quantize_block_imatrix(x, block_weights(w, i), y),
            }
        }
    }

    #[inline(always)]
    fn dequantize_row(src: &[Self], dst: &mut [f32]) {
        for (b, y) in src.iter().zip(super_blocks_mut(dst)) {
            let dall = f16_to_f32(b.d);
            let sc = unpack_scales(&b.scales);
            // Output position 128 h + 32 s + 16 k + l: low bits 2s.. of qs[32 h + 16 k + l],
            // high bit 4 h + s of hmask[16 k + l], sub-block 8 h + 2 s + k.
            for h in 0..2 {
                for s in 0..4 {
                    let m = 1u8 << (4 * h + s);
                    for k in 0..2 {
                        let dl = dall * sc[8 * h + 2 * s + k] as f32;
                        let q = &b.qs[32 * h + 16 * k..][..16];
                        let hm = &b.hmask[16 * k..][..16];
                        let out = &mut y[128 * h + 32 * s + 16 * k..][..16];
                        for l in 0..16 {
                            let v =
                                ((q[l] >> (2 * s)) & 3) as i32 - if hm[l] & m != 0 { 0 } else { 4 };
                            out[l] = dl * v as f32;
                        }
                    }
                }
            }
        }
    }
}

/// The signed 3-bit levels `q - 4` of a block in value order.
#[inline]
fn levels(x: &BlockQ3K) -> [i8; QK_K] {
    let mut a = [0i8; QK_K];
    for (j, v) in a.iter_mut().enumerate() {
        let (h, s, l) = (j / 128, (j / 32) % 4, j % 32);
        let low = (x.qs[32 * h + l] >> (2 * s)) & 3;
        let high = x.hmask[l] & (1 << (4 * h + s)) != 0;
        *v = low as i8 - if high { 0 } else { 4 };
    }
    a
}

impl DotBlock for BlockQ3K {
    type Dot = BlockQ8K;

    /// ggml `ggml_vec_dot_q3_K_q8_K_generic`: integer sums in 8 lanes per block, scaled and
    /// accumulated per lane in f32, lanes added at the end.
    fn vec_dot_ref(lhs: &[Self], rhs: &[BlockQ8K]) -> f32 {
        let mut sums = [0f32; 8];
        for (x, y) in lhs.iter().zip(rhs) {
            let a = levels(x);
            let sc = unpack_scales(&x.scales);
            let mut aux32 = [0i32; 8];
            for (g, (q8, a)) in y.qs.chunks_exact(8).zip(a.chunks_exact(8)).enumerate() {
                let scale = sc[g / 2] as i32;
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
