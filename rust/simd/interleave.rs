//! The interleaved weight layout of the 16-row kernels.
//!
//! The AVX-512 16-row kernels (`x86::gemm16k_avx512`, `x86::gemm16_avx512`) compute 16 weight rows at once with
//! one row per 32-bit lane, so before multiplying they transpose the rows' bytes 4 at a time.
//! Stored interleaved, a weight needs no transpose at all: rows are taken in groups of
//! [`ROW_GROUP`] (the last group padded with copies of the matrix's last row), and in a group
//! dword `t` of every row is stored as 64 consecutive bytes, row `r` at byte `64 t + 4 r`.
//! Each super-block of a group is then one contiguous run of `16 * block_bytes` bytes, read
//! front to back.
//!
//! Q4_0 blocks (18 bytes: f16 `d`, 16 quant bytes) are not whole dwords, so a Q4_0 group keeps
//! its quants and its scales apart: block `b`'s quant dword `k` of row `r` at byte
//! `256 b + 64 k + 4 r`, then after all `nb` blocks' quants, block `b`'s `d` of row `r` at
//! `256 nb + 32 b + 2 r`.
//!
//! This is a load-time repacking in the spirit of ggml's CPU "repack" buffers: files stay
//! standard GGUF, and [`crate::matmul::PackedWeight`] holds the interleaved copy.

use rayon::prelude::*;

use super::ROW_GROUP;
use crate::types::QuantType;

/// Whether rows of `wrow` bytes of `ty` have an interleaved layout (groups up to 2 GiB: the
/// plain 16-row kernels, whose results the interleaved ones repeat, address a group with i32
/// offsets).
pub(crate) fn supports(ty: QuantType, wrow: usize) -> bool {
    if ROW_GROUP * wrow > i32::MAX as usize {
        return false;
    }
    match ty {
        QuantType::Q4_0 => wrow.is_multiple_of(18),
        _ => wrow.is_multiple_of(4),
    }
}

/// Bytes of `n` rows of `wrow` bytes interleaved (whole groups of [`ROW_GROUP`] rows).
pub(crate) fn interleaved_len(n: usize, wrow: usize) -> usize {
    n.div_ceil(ROW_GROUP) * ROW_GROUP * wrow
}

/// The layout itself: `f(row_at, group_at, len)` for each run of bytes of row `r` of a group
/// (rows of `wrow` bytes of `ty`): `len` bytes at `row_at` in the row sit at `group_at` in the
/// group (see the module docs).
#[inline]
fn spans(ty: QuantType, wrow: usize, r: usize, mut f: impl FnMut(usize, usize, usize)) {
    if ty == QuantType::Q4_0 {
        let nb = wrow / 18;
        for b in 0..nb {
            f(18 * b, 256 * nb + 32 * b + 2 * r, 2);
            for k in 0..4 {
                f(18 * b + 2 + 4 * k, 256 * b + 64 * k + 4 * r, 4);
            }
        }
    } else {
        for t in 0..wrow / 4 {
            f(4 * t, 64 * t + 4 * r, 4);
        }
    }
}

/// Interleave `n` rows of `wrow` bytes of `ty` from `w` into `out` ([`interleaved_len`] bytes).
/// Panics on other lengths or an unsupported row size (callers check shapes and [`supports`]).
pub(crate) fn interleave(ty: QuantType, w: &[u8], n: usize, wrow: usize, out: &mut [u8]) {
    assert!(supports(ty, wrow) && w.len() == n * wrow && out.len() == interleaved_len(n, wrow), "interleave lengths");
    if n == 0 || wrow == 0 {
        return;
    }
    out.par_chunks_mut(ROW_GROUP * wrow).enumerate().for_each(|(g, grp)| {
        for r in 0..ROW_GROUP {
            let src = (g * ROW_GROUP + r).min(n - 1);
            let row = &w[src * wrow..(src + 1) * wrow];
            spans(ty, wrow, r, |at, to, len| grp[to..to + len].copy_from_slice(&row[at..at + len]));
        }
    });
}

/// The `n` rows of `wrow` bytes back from their interleaved form `p` (the inverse of
/// [`interleave`]; padding rows are dropped).
pub(crate) fn deinterleave(ty: QuantType, p: &[u8], n: usize, wrow: usize, out: &mut [u8]) {
    assert!(supports(ty, wrow) && p.len() == interleaved_len(n, wrow) && out.len() == n * wrow, "interleave lengths");
    if n == 0 || wrow == 0 {
        return;
    }
    out.par_chunks_mut(ROW_GROUP * wrow).zip(p.par_chunks(ROW_GROUP * wrow)).for_each(|(o, grp)| {
        group_rows(ty, grp, wrow, o.len() / wrow, o);
    });
}

/// The first `rows` rows of one interleaved group `grp` (`16 * wrow` bytes) into `out`
/// (`rows * wrow` bytes), on the calling thread.
pub(crate) fn group_rows(ty: QuantType, grp: &[u8], wrow: usize, rows: usize, out: &mut [u8]) {
    assert!(supports(ty, wrow) && grp.len() == ROW_GROUP * wrow && rows <= ROW_GROUP && out.len() == rows * wrow, "group lengths");
    for (r, row) in out.chunks_exact_mut(wrow).enumerate() {
        spans(ty, wrow, r, |at, from, len| row[at..at + len].copy_from_slice(&grp[from..from + len]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleave_places_dword_t_of_row_r_at_64t_plus_4r_and_inverts() {
        for (n, wrow) in [(1, 8), (15, 12), (16, 144), (17, 136), (40, 176)] {
            let w: Vec<u8> = (0..n * wrow).map(|i| (i * 7 + i / 251) as u8).collect();
            let mut p = vec![0u8; interleaved_len(n, wrow)];
            interleave(QuantType::Q4_K, &w, n, wrow, &mut p);
            for i in 0..n.next_multiple_of(ROW_GROUP) {
                let (g, r) = (i / ROW_GROUP, i % ROW_GROUP);
                let src = i.min(n - 1);
                for t in 0..wrow / 4 {
                    let at = g * ROW_GROUP * wrow + 64 * t + 4 * r;
                    assert_eq!(p[at..at + 4], w[src * wrow + 4 * t..src * wrow + 4 * t + 4], "n {n} row {i} dword {t}");
                }
            }
            let mut back = vec![0u8; n * wrow];
            deinterleave(QuantType::Q4_K, &p, n, wrow, &mut back);
            assert_eq!(back, w, "n {n} wrow {wrow}");
        }
    }

    #[test]
    fn q4_0_groups_keep_quants_then_scales_and_invert() {
        for (n, nb) in [(1usize, 1usize), (16, 3), (33, 8)] {
            let wrow = 18 * nb;
            let w: Vec<u8> = (0..n * wrow).map(|i| (i * 13 + i / 253) as u8).collect();
            let mut p = vec![0u8; interleaved_len(n, wrow)];
            interleave(QuantType::Q4_0, &w, n, wrow, &mut p);
            for i in 0..n.next_multiple_of(ROW_GROUP) {
                let (g, r) = (i / ROW_GROUP, i % ROW_GROUP);
                let (grp, row) = (&p[g * ROW_GROUP * wrow..], &w[i.min(n - 1) * wrow..]);
                for b in 0..nb {
                    assert_eq!(grp[256 * nb + 32 * b + 2 * r..][..2], row[18 * b..18 * b + 2], "d of row {i} block {b}");
                    for k in 0..4 {
                        assert_eq!(grp[256 * b + 64 * k + 4 * r..][..4], row[18 * b + 2 + 4 * k..][..4], "row {i} block {b} dword {k}");
                    }
                }
            }
            let mut back = vec![0u8; n * wrow];
            deinterleave(QuantType::Q4_0, &p, n, wrow, &mut back);
            assert_eq!(back, w, "n {n} nb {nb}");
        }
    }
}
