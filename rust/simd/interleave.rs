//! The interleaved weight layout of the 16-row kernels.
//!
//! The AVX-512 super-block kernels (`x86::gemm16k_avx512`) compute 16 weight rows at once with
//! one row per 32-bit lane, so before multiplying they transpose the rows' bytes 4 at a time.
//! Stored interleaved, a weight needs no transpose at all: rows are taken in groups of
//! [`ROW_GROUP`] (the last group padded with copies of the matrix's last row), and in a group
//! dword `t` of every row is stored as 64 consecutive bytes, row `r` at byte `64 t + 4 r`.
//! Each super-block of a group is then one contiguous run of `16 * block_bytes` bytes, read
//! front to back.
//!
//! This is a load-time repacking in the spirit of ggml's CPU "repack" buffers: files stay
//! standard GGUF, and [`crate::matmul::PackedWeight`] holds the interleaved copy.

use rayon::prelude::*;

use super::ROW_GROUP;

/// Bytes of `n` rows of `wrow` bytes interleaved (whole groups of [`ROW_GROUP`] rows).
pub(crate) fn interleaved_len(n: usize, wrow: usize) -> usize {
    n.div_ceil(ROW_GROUP) * ROW_GROUP * wrow
}

/// Interleave `n` rows of `wrow` bytes (`wrow` a multiple of 4) from `w` into `out`
/// ([`interleaved_len`] bytes). Panics on other lengths (callers check shapes).
pub(crate) fn interleave(w: &[u8], n: usize, wrow: usize, out: &mut [u8]) {
    assert!(wrow.is_multiple_of(4) && w.len() == n * wrow && out.len() == interleaved_len(n, wrow), "interleave lengths");
    if n == 0 || wrow == 0 {
        return;
    }
    out.par_chunks_mut(ROW_GROUP * wrow).enumerate().for_each(|(g, grp)| {
        for r in 0..ROW_GROUP {
            let src = (g * ROW_GROUP + r).min(n - 1);
            let row = &w[src * wrow..(src + 1) * wrow];
            for (t, d) in row.chunks_exact(4).enumerate() {
                grp[64 * t + 4 * r..64 * t + 4 * r + 4].copy_from_slice(d);
            }
        }
    });
}

/// The `n` rows of `wrow` bytes back from their interleaved form `p` (the inverse of
/// [`interleave`]; padding rows are dropped).
pub(crate) fn deinterleave(p: &[u8], n: usize, wrow: usize, out: &mut [u8]) {
    assert!(wrow.is_multiple_of(4) && p.len() == interleaved_len(n, wrow) && out.len() == n * wrow, "interleave lengths");
    if n == 0 || wrow == 0 {
        return;
    }
    out.par_chunks_mut(wrow).enumerate().for_each(|(i, row)| {
        let (g, r) = (i / ROW_GROUP, i % ROW_GROUP);
        let grp = &p[g * ROW_GROUP * wrow..(g + 1) * ROW_GROUP * wrow];
        for (t, d) in row.chunks_exact_mut(4).enumerate() {
            d.copy_from_slice(&grp[64 * t + 4 * r..64 * t + 4 * r + 4]);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleave_places_dword_t_of_row_r_at_64t_plus_4r_and_inverts() {
        for (n, wrow) in [(1, 8), (15, 12), (16, 144), (17, 136), (40, 176)] {
            let w: Vec<u8> = (0..n * wrow).map(|i| (i * 7 + i / 251) as u8).collect();
            let mut p = vec![0u8; interleaved_len(n, wrow)];
            interleave(&w, n, wrow, &mut p);
            for i in 0..n.next_multiple_of(ROW_GROUP) {
                let (g, r) = (i / ROW_GROUP, i % ROW_GROUP);
                let src = i.min(n - 1);
                for t in 0..wrow / 4 {
                    let at = g * ROW_GROUP * wrow + 64 * t + 4 * r;
                    assert_eq!(p[at..at + 4], w[src * wrow + 4 * t..src * wrow + 4 * t + 4], "n {n} row {i} dword {t}");
                }
            }
            let mut back = vec![0u8; n * wrow];
            deinterleave(&p, n, wrow, &mut back);
            assert_eq!(back, w, "n {n} wrow {wrow}");
        }
    }
}
