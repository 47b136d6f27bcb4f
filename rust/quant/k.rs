//! The K-quants Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and their activation type Q8_K: super-blocks of
//! [`QK_K`] = 256 values split into sub-blocks of 16 or 32 that each carry a small integer scale
//! (and for Q2_K/Q4_K/Q5_K a min), themselves scaled by one or two f16 super-block factors.
//!
//! Each type has two quantizers, as in ggml: the reference one (`quantize_row_<t>_ref`, what
//! `ggml_quantize_chunk` runs without an importance matrix) and the importance-weighted one
//! (`quantize_<t>_impl`). The scale searches they share live in [`super::search`]. The dot
//! products against Q8_K follow ggml's generic C kernels (`ggml-cpu/quants.c`), integer sums
//! included, and are the specification the SIMD kernels are tested against.
#![forbid(unsafe_code)]

mod q2_k;
mod q3_k;
mod q4_k;
mod q5_k;
mod q6_k;
mod q8_k;

pub use q2_k::BlockQ2K;
pub use q3_k::BlockQ3K;
pub use q4_k::BlockQ4K;
pub use q5_k::BlockQ5K;
pub use q6_k::BlockQ6K;
pub use q8_k::BlockQ8K;

/// Values per K-quant super-block (ggml `QK_K`).
pub const QK_K: usize = 256;

/// The super-blocks of a row (`src.len()` is a multiple of [`QK_K`]).
#[inline]
fn super_blocks(src: &[f32]) -> impl Iterator<Item = &[f32; QK_K]> {
    // chunks_exact yields slices of exactly QK_K values, so the conversion cannot fail.
    src.chunks_exact(QK_K).map(|c| <&[f32; QK_K]>::try_from(c).expect("chunk of QK_K"))
}

/// The output super-blocks of a row (`dst.len()` is a multiple of [`QK_K`]).
#[inline]
fn super_blocks_mut(dst: &mut [f32]) -> impl Iterator<Item = &mut [f32; QK_K]> {
    // chunks_exact_mut yields slices of exactly QK_K values, so the conversion cannot fail.
    dst.chunks_exact_mut(QK_K).map(|c| <&mut [f32; QK_K]>::try_from(c).expect("chunk of QK_K"))
}

/// The importance weights of super-block `i` of a row: `imatrix` holds one weight per column.
#[inline]
fn block_weights(imatrix: &[f32], i: usize) -> &[f32; QK_K] {
    // The caller validated `imatrix.len() == n_per_row`, a multiple of QK_K covering block i.
    <&[f32; QK_K]>::try_from(&imatrix[QK_K * i..QK_K * (i + 1)]).expect("QK_K weights")
}

/// Pack 2-bit levels (Q2_K, and the low bits of Q3_K): byte `32 h + l` of each 128-value half
/// `h` holds levels `l`, `l+32`, `l+64`, `l+96` of that half in bits 0-1, 2-3, 4-5, 6-7.
#[inline]
fn pack_2bit(levels: &[u8; QK_K], qs: &mut [u8; QK_K / 4]) {
    for h in 0..2 {
        let lv = &levels[128 * h..128 * h + 128];
        for l in 0..32 {
            qs[32 * h + l] = lv[l] | (lv[l + 32] << 2) | (lv[l + 64] << 4) | (lv[l + 96] << 6);
        }
    }
}

/// Inverse of `search::to_lanes`: `out[N g + i] = lanes[i][g]`.
#[inline(always)]
fn from_lanes<T: Copy, const N: usize, const K: usize>(lanes: &[[T; K]; N], out: &mut [T]) {
    for g in 0..K {
        for i in 0..N {
            out[N * g + i] = lanes[i][g];
        }
    }
}

#[cfg(test)]
mod tests;
