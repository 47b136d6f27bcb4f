//! Quantized matrix multiplication: `out = x @ dequantize(w).T`, the linear-layer convention.
//!
//! `w` is `n` rows of `k` values of a block type, `x` is `m` rows of `k` float32 values, `out` is
//! `m` rows of `n`. As in ggml's matmul, activations are quantized once per call to the weight
//! type's activation type ([`QuantType::dot_type`]: Q8_0, Q8_1 or Q8_K, with ggml's SIMD
//! rounding), then every (weight row, activation row) pair is one kernel dot product from
//! [`crate::simd::kernels`]. Rows of `w` are split across rayon threads; for `m > 1` each task
//! takes a tile of weight rows and runs every activation row over it while the tile is in cache.
//!
//! **Accuracy.** The result equals `dequantize(w) @ dequantize(quantize_act(x)).T` up to float
//! summation order; against the float product `x @ dequantize(w).T` the error is that of the
//! activation quantization: each activation moves by at most half a quantization step,
//! `|x_i - x̂_i| <= d_b / 2` with `d_b = amax_b / 127` for its block `b`, so
//! `|out - exact| <= sum_b (d_b / 2) * sum_{i in b} |w_i|` (+ f16 rounding of `d`, 2^-11
//! relative, and for Q4_1/Q5_1 the f16-stored block sum `s`). [`error_bound`] computes it.
//!
//! One quantized activation can feed several weights ([`quantize_activations`] then
//! [`matmul_quantized`]), e.g. Q/K/V or gate/up projections sharing their input.

use std::ops::Range;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::parallel::{for_each_task, with_threads, SharedMut};
use crate::simd::{self, Kernels, RowDot, PREFETCH_AHEAD};
use crate::types::QuantType;

/// Activation rows quantized for one weight type's dot product.
#[derive(Clone, Debug)]
pub struct QuantizedActivations {
    ty: QuantType,
    k: usize,
    m: usize,
    data: Vec<u8>,
}

impl QuantizedActivations {
    /// The activation type (Q8_0, Q8_1 or Q8_K, or a float type).
    pub fn ty(&self) -> QuantType {
        self.ty
    }
    /// Values per row.
    pub fn k(&self) -> usize {
        self.k
    }
    /// Number of rows.
    pub fn m(&self) -> usize {
        self.m
    }
    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.data.len() / self.m.max(1)
    }
    /// The quantized bytes, `m` rows.
    pub fn data(&self) -> &[u8] {
        &self.data
    }
}

/// Quantize `m` rows of `k` activations for multiplication with weights of type `w_ty`
/// (to `w_ty.dot_type()`, ggml's SIMD rounding). Reuse the result for every weight of the
/// same type and width that reads this input.
pub fn quantize_activations(w_ty: QuantType, x: &[f32], k: usize, m: usize) -> Result<QuantizedActivations> {
    quantize_activations_with(simd::kernels(), w_ty, x, k, m)
}

/// [`quantize_activations`] with an explicit kernel table (tests, benchmarks).
pub fn quantize_activations_with(
    kern: &Kernels,
    w_ty: QuantType,
    x: &[f32],
    k: usize,
    m: usize,
) -> Result<QuantizedActivations> {
    let (_, arow) = simd::dot_row_bytes(w_ty, k)?;
    let at = w_ty.dot_type().ok_or(Error::Unsupported { ty: w_ty, op: "matmul" })?;
    if m.checked_mul(k) != Some(x.len()) {
        return Err(Error::value(format!("activations have {} values, expected {m} rows of {k}", x.len())));
    }
    let mut data = vec![0u8; m * arow];
    if matches!(at, QuantType::F32 | QuantType::F16 | QuantType::BF16) {
        return Err(Error::Unsupported { ty: w_ty, op: "quantized matmul (float weights)" });
    }
    let act = kern.act_fn(at)?;
    if m == 1 && k > 0 {
        act.call(at, x, &mut data);
    } else if m > 0 && k > 0 {
        data.par_chunks_mut(arow).zip(x.par_chunks(k)).for_each(|(d, s)| act.call(at, s, d));
    }
    Ok(QuantizedActivations { ty: at, k, m, data })
}

/// `out[m x n] = x[m x k] @ dequantize(w)[n x k].T`; see the module docs for the accuracy.
///
/// `w` holds `n` rows of `k` values of `w_ty`; `threads` of `None` uses rayon's global pool,
/// `Some(n)` a pool of `n` workers.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    w_ty: QuantType,
    w: &[u8],
    n: usize,
    k: usize,
    x: &[f32],
    m: usize,
    out: &mut [f32],
    threads: Option<usize>,
) -> Result<()> {
    let kern = simd::kernels();
    let acts = quantize_for_call(kern, w_ty, x, k, m, threads)?;
    matmul_quantized_with(kern, w_ty, w, n, &acts, out, threads)
}

/// The activations of one matmul call: one row on the calling thread (a pool round trip costs
/// more than the row), more rows on `threads`.
fn quantize_for_call(kern: &Kernels, w_ty: QuantType, x: &[f32], k: usize, m: usize, threads: Option<usize>) -> Result<QuantizedActivations> {
    if m <= 1 {
        quantize_activations_with(kern, w_ty, x, k, m)
    } else {
        with_threads(threads, || quantize_activations_with(kern, w_ty, x, k, m))?
    }
}

/// [`matmul`] with activations already quantized by [`quantize_activations`].
pub fn matmul_quantized(
    w_ty: QuantType,
    w: &[u8],
    n: usize,
    acts: &QuantizedActivations,
    out: &mut [f32],
    threads: Option<usize>,
) -> Result<()> {
    matmul_quantized_with(simd::kernels(), w_ty, w, n, acts, out, threads)
}

/// Weight rows per task: about 64 KiB of weights (L2-resident while activations stream by),
/// and at least 8 tasks per thread for balance when the matrix is small.
pub(crate) fn rows_per_task(n: usize, row_bytes: usize, threads: usize) -> usize {
    let by_size = (65536 / row_bytes.max(1)).max(1);
    let by_balance = (n / (8 * threads.max(1))).max(1);
    // A multiple of the row group (see `simd::ROW_GROUP`).
    by_size.min(by_balance).next_multiple_of(simd::ROW_GROUP)
}

/// Weight rows per task of a GEMV (one activation row). A task re-derives what its kernel needs
/// from the activation row (e.g. the Q8_0 block sums of the 16-row kernels), so tasks are made
/// long, up to [`GEMV_MAX_TASK_ROWS`] rows, while leaving each thread at least 8 of them.
pub(crate) fn gemv_rows_per_task(n: usize, threads: usize) -> usize {
    (n / (8 * threads.max(1))).clamp(1, GEMV_MAX_TASK_ROWS).next_multiple_of(simd::ROW_GROUP)
}

/// Upper bound of [`gemv_rows_per_task`].
const GEMV_MAX_TASK_ROWS: usize = 256;

/// The row ranges of a GEMV's tasks: [`gemv_rows_per_task`] rows each, except that the last
/// `threads` such tasks' worth of rows is cut 8 times finer, so that the threads run out of
/// work at nearly the same time. Every boundary is a multiple of [`simd::ROW_GROUP`].
struct GemvTasks {
    n: usize,
    big: usize,
    small: usize,
    head: usize,
}

impl GemvTasks {
    fn new(n: usize, threads: usize) -> GemvTasks {
        let big = gemv_rows_per_task(n, threads);
        let small = (big / 8).next_multiple_of(simd::ROW_GROUP);
        let tail = (threads.max(1) * big).min(n);
        GemvTasks { n, big, small, head: (n - tail) / big }
    }

    /// Number of tasks.
    fn count(&self) -> usize {
        self.head + (self.n - self.head * self.big).div_ceil(self.small)
    }

    /// Rows of task `c` (`c < count()`).
    fn rows(&self, c: usize) -> Range<usize> {
        let start = if c < self.head { c * self.big } else { self.head * self.big + (c - self.head) * self.small };
        let len = if c < self.head { self.big } else { self.small };
        start..(start + len).min(self.n)
    }
}

/// [`matmul_quantized`] with an explicit kernel table (tests, benchmarks).
pub fn matmul_quantized_with(
    kern: &Kernels,
    w_ty: QuantType,
    w: &[u8],
    n: usize,
    acts: &QuantizedActivations,
    out: &mut [f32],
    threads: Option<usize>,
) -> Result<()> {
    let (wrow, _) = check_shapes(w_ty, n, acts, out)?;
    check_weight_bytes(w_ty, w.len(), n, acts.k, wrow)?;
    let dot = kern.row_dot(w_ty, acts.k)?;
    run(dot, w, n, acts, out, threads)
}

/// `n` rows of `k` values of `ty` (`wrow` bytes each) must be `len` bytes.
fn check_weight_bytes(ty: QuantType, len: usize, n: usize, k: usize, wrow: usize) -> Result<()> {
    if n.checked_mul(wrow) != Some(len) {
        return Err(Error::value(format!("weight has {len} bytes, {n} rows of {k} {ty} need {}", n.saturating_mul(wrow))));
    }
    Ok(())
}

/// The weight row bytes and checks shared by the matmul entry points.
fn check_shapes(w_ty: QuantType, n: usize, acts: &QuantizedActivations, out: &[f32]) -> Result<(usize, usize)> {
    let (wrow, arow) = simd::dot_row_bytes(w_ty, acts.k)?;
    if w_ty.dot_type() != Some(acts.ty) {
        return Err(Error::value(format!("{w_ty} weights need {:?} activations, got {}", w_ty.dot_type(), acts.ty)));
    }
    if acts.m.checked_mul(n) != Some(out.len()) {
        return Err(Error::value(format!("output has {} values, expected {} x {n}", out.len(), acts.m)));
    }
    Ok((wrow, arow))
}

/// The matmul proper over checked shapes: `w` holds `n` rows as `dot` reads them (plain rows,
/// or interleaved groups when [`RowDot::is_interleaved`]).
fn run(dot: RowDot, w: &[u8], n: usize, acts: &QuantizedActivations, out: &mut [f32], threads: Option<usize>) -> Result<()> {
    let (k, m) = (acts.k, acts.m);
    let (wrow, _) = dot.row_bytes();
    if n == 0 || m == 0 {
        return Ok(());
    }
    if k == 0 {
        out.fill(0.0);
        return Ok(());
    }
    let a = &acts.data;
    let nthreads = threads.unwrap_or_else(rayon::current_num_threads);
    if m == 1 {
        // GEMV: the calling thread works too, from the first task on (see `parallel::for_each_task`).
        let tasks = GemvTasks::new(n, nthreads);
        let shared = SharedMut::new(out);
        return for_each_task(threads, tasks.count(), |c| {
            let rows = tasks.rows(c);
            // SAFETY: task `c` alone writes outputs `rows` (tasks are disjoint ranges).
            let o = unsafe { shared.part(rows.clone()) };
            gemm_tile(dot, w, rows, a, 1, o);
        });
    }
    let rpt = rows_per_task(n, wrow, nthreads);
    with_threads(threads, || {
        // Transposed result (n x m), contiguous per task, then transposed into `out`.
        let mut t = vec![0f32; n * m];
        t.par_chunks_mut(rpt * m).enumerate().for_each(|(c, o)| {
            let r0 = c * rpt;
            gemm_tile(dot, w, r0..r0 + o.len() / m, a, m, o);
        });
        out.par_chunks_mut(n).enumerate().for_each(|(j, orow)| {
            for (r, v) in orow.iter_mut().enumerate() {
                *v = t[r * m + j];
            }
        });
    })
}

/// A weight matrix prepared once for many multiplications: `n` rows of `k` values of a block
/// type, stored in the layout this machine's kernels read fastest. On AVX-512 that is the
/// interleaved layout of `simd::interleave` for Q4_0, IQ4_XS, Q4_K and Q5_K (groups of 16 rows
/// stored dword by dword, as ggml's CPU backend repacks weights at load time); for every other
/// type and level it is a plain copy of the rows. Results are bit-identical to [`matmul`] on
/// the original bytes.
///
/// ```
/// use kquants::{matmul, quant, QuantType};
/// let (n, k) = (32, 256);
/// let w: Vec<f32> = (0..n * k).map(|i| ((i * 7919) % 200) as f32 / 100.0 - 1.0).collect();
/// let q = quant::quantize(QuantType::Q4_K, &w, k, None, None).unwrap();
/// let p = matmul::PackedWeight::new(QuantType::Q4_K, &q, n, k).unwrap();
/// let x = vec![0.5f32; k];
/// let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
/// matmul::matmul(QuantType::Q4_K, &q, n, k, &x, 1, &mut a, None).unwrap();
/// matmul::matmul_packed(&p, &x, 1, &mut b, None).unwrap();
/// assert_eq!(a, b);
/// ```
pub struct PackedWeight {
    ty: QuantType,
    n: usize,
    k: usize,
    interleaved: bool,
    data: AlignedBytes,
}

impl std::fmt::Debug for PackedWeight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedWeight")
            .field("ty", &self.ty)
            .field("n", &self.n)
            .field("k", &self.k)
            .field("interleaved", &self.interleaved)
            .field("bytes", &self.data.len)
            .finish()
    }
}

impl PackedWeight {
    /// Prepare `w` (`n` rows of `k` values of `ty`, ggml block bytes) for [`matmul_packed`].
    pub fn new(ty: QuantType, w: &[u8], n: usize, k: usize) -> Result<PackedWeight> {
        Self::new_with(simd::kernels(), ty, w, n, k)
    }

    /// [`PackedWeight::new`] for an explicit kernel table (tests, benchmarks).
    pub fn new_with(kern: &Kernels, ty: QuantType, w: &[u8], n: usize, k: usize) -> Result<PackedWeight> {
        if ty.dot_type().is_none() || matches!(ty, QuantType::F32 | QuantType::F16 | QuantType::BF16) {
            return Err(Error::value(format!("{ty} weights have no quantized matmul kernel")));
        }
        let (wrow, _) = simd::dot_row_bytes(ty, k)?;
        check_weight_bytes(ty, w.len(), n, k, wrow)?;
        let interleaved = kern.has_interleaved(ty) && simd::interleave::supports(ty, wrow);
        let data = if interleaved {
            let mut d = AlignedBytes::zeroed(simd::interleave::interleaved_len(n, wrow));
            simd::interleave::interleave(ty, w, n, wrow, d.as_mut_slice());
            d
        } else {
            let mut d = AlignedBytes::zeroed(w.len());
            d.as_mut_slice().copy_from_slice(w);
            d
        };
        Ok(PackedWeight { ty, n, k, interleaved, data })
    }

    /// The block type.
    pub fn ty(&self) -> QuantType {
        self.ty
    }
    /// Number of rows.
    pub fn n(&self) -> usize {
        self.n
    }
    /// Values per row.
    pub fn k(&self) -> usize {
        self.k
    }
    /// Whether the rows are stored interleaved (otherwise as plain ggml rows).
    pub fn is_interleaved(&self) -> bool {
        self.interleaved
    }
    /// Bytes held (interleaved: whole groups of 16 rows, the last padded).
    pub fn nbytes(&self) -> usize {
        self.data.len
    }
    /// The bytes as stored (interleaved groups, or plain rows).
    pub(crate) fn interleaved_bytes(&self) -> &[u8] {
        self.data.as_slice()
    }

    /// The original ggml row bytes.
    pub fn to_rows(&self) -> Vec<u8> {
        let (wrow, _) = simd::dot_row_bytes(self.ty, self.k).expect("checked at construction");
        if !self.interleaved {
            return self.data.as_slice().to_vec();
        }
        let mut out = vec![0u8; self.n * wrow];
        simd::interleave::deinterleave(self.ty, self.data.as_slice(), self.n, wrow, &mut out);
        out
    }
}

/// A zeroed byte buffer aligned to 64 (a cache line and a zmm load). From 2 MiB up it is an
/// anonymous mapping advised to use transparent huge pages (where the kernel offers them on
/// request, as NumPy asks for its large arrays): a GEMV streams the weight once per call, and
/// with 4 KiB pages every 4 KiB of each stream needs a page walk and stops the hardware
/// prefetchers. Measured on a 2-thread GEMV over 131072 x 8192 Q4_K: see `PackedWeight`.
struct AlignedBytes {
    buf: Buf,
    len: usize,
}

enum Buf {
    Lines(Vec<Line>),
    Map(memmap2::MmapMut),
}

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// Size from which [`AlignedBytes`] maps its memory.
const MAP_FROM: usize = 2 << 20;

impl AlignedBytes {
    fn zeroed(len: usize) -> AlignedBytes {
        if len >= MAP_FROM {
            if let Ok(m) = memmap2::MmapMut::map_anon(len) {
                #[cfg(target_os = "linux")]
                let _ = m.advise(memmap2::Advice::HugePage); // a hint: without it, 4 KiB pages
                return AlignedBytes { buf: Buf::Map(m), len };
            }
        }
        AlignedBytes { buf: Buf::Lines(vec![Line([0; 64]); len.div_ceil(64)]), len }
    }
    fn as_slice(&self) -> &[u8] {
        match &self.buf {
            // SAFETY: the lines hold at least `len` initialized bytes (64 per line, no padding).
            Buf::Lines(l) => unsafe { std::slice::from_raw_parts(l.as_ptr() as *const u8, self.len) },
            Buf::Map(m) => &m[..self.len],
        }
    }
    fn as_mut_slice(&mut self) -> &mut [u8] {
        match &mut self.buf {
            // SAFETY: as `as_slice`, borrowed mutably through `self`.
            Buf::Lines(l) => unsafe { std::slice::from_raw_parts_mut(l.as_mut_ptr() as *mut u8, self.len) },
            Buf::Map(m) => &mut m[..self.len],
        }
    }
}

/// [`matmul`] with a [`PackedWeight`]: `out[m x n] = x[m x k] @ w.T`, bit for bit the same.
pub fn matmul_packed(w: &PackedWeight, x: &[f32], m: usize, out: &mut [f32], threads: Option<usize>) -> Result<()> {
    let kern = simd::kernels();
    let acts = quantize_for_call(kern, w.ty, x, w.k, m, threads)?;
    matmul_packed_quantized_with(kern, w, &acts, out, threads)
}

/// [`matmul_quantized`] with a [`PackedWeight`].
pub fn matmul_packed_quantized(w: &PackedWeight, acts: &QuantizedActivations, out: &mut [f32], threads: Option<usize>) -> Result<()> {
    matmul_packed_quantized_with(simd::kernels(), w, acts, out, threads)
}

/// [`matmul_packed_quantized`] with an explicit kernel table; a table without the interleaved
/// kernel multiplies the rows recovered from the interleaved copy.
pub fn matmul_packed_quantized_with(
    kern: &Kernels,
    w: &PackedWeight,
    acts: &QuantizedActivations,
    out: &mut [f32],
    threads: Option<usize>,
) -> Result<()> {
    if acts.k != w.k {
        return Err(Error::value(format!("activations have rows of {} values, the weight rows of {}", acts.k, w.k)));
    }
    check_shapes(w.ty, w.n, acts, out)?;
    if !w.interleaved {
        return run(kern.row_dot(w.ty, w.k)?, w.data.as_slice(), w.n, acts, out, threads);
    }
    match kern.row_dot_interleaved(w.ty, w.k)? {
        Some(dot) => run(dot, w.data.as_slice(), w.n, acts, out, threads),
        None => run(kern.row_dot(w.ty, w.k)?, &w.to_rows(), w.n, acts, out, threads),
    }
}

/// Activation rows run together over one weight tile.
const ACT_TILE: usize = simd::DOT_ROWS;

/// The products of weight rows `rows` (rows of `wrow` bytes inside `w`) with all `m` activation
/// rows of `a` (rows of `arow` bytes), written to `out` transposed: `out[r * m + j]` for the
/// `r`-th row of the range and activation `j`. For `m = 1` that is simply the output slice.
/// Activation rows are taken [`ACT_TILE`] at a time over every weight row, so each weight row is
/// read while it is in L1; the weight bytes are prefetched [`PREFETCH_AHEAD`] bytes ahead.
///
/// Panics if a range is outside its buffer (callers pass checked shapes).
pub(crate) fn gemm_tile(dot: RowDot, w: &[u8], rows: Range<usize>, a: &[u8], m: usize, out: &mut [f32]) {
    let (wrow, arow) = dot.row_bytes();
    assert_eq!(out.len(), rows.len() * m, "tile output size");
    if dot.is_interleaved() {
        // Whole interleaved groups (`rows.start` is a multiple of 16; the matrix's last group
        // is padded).
        let end = simd::interleave::interleaved_len(rows.end, wrow);
        dot.gemm(&w[rows.start * wrow..end], &a[..m * arow], m, out);
        return;
    }
    let wt = &w[rows.start * wrow..rows.end * wrow];
    let end = w.as_ptr().wrapping_add(w.len());
    let ahead = |p: *const u8, len: usize| {
        let p = p.wrapping_add(PREFETCH_AHEAD);
        if p < end {
            simd::prefetch(p, len.min(end as usize - p as usize));
        }
    };
    if dot.has_gemm() {
        // Multi-row kernel over the whole tile (it prefetches ahead itself).
        dot.gemm(wt, &a[..m * arow], m, out);
        return;
    }
    for a0 in (0..m).step_by(ACT_TILE) {
        let a1 = (a0 + ACT_TILE).min(m);
        for (r, wr) in wt.chunks_exact(wrow).enumerate() {
            if a0 == 0 {
                ahead(wr.as_ptr(), wrow);
            }
            let o = &mut out[r * m + a0..r * m + a1];
            if let Ok(o4) = <&mut [f32; simd::DOT_ROWS]>::try_from(&mut *o) {
                // A full tile through the multi-row kernel (bit-identical to single rows).
                dot.dot_rows(wr, &a[a0 * arow..a1 * arow], o4);
            } else {
                for (j, v) in (a0..a1).zip(o.iter_mut()) {
                    *v = dot.dot(wr, &a[j * arow..(j + 1) * arow]);
                }
            }
        }
    }
}

/// The accuracy bound of [`matmul`] against `x @ w_deq.T` computed in float64, for one output.
///
/// Per activation block `b` (the activation type's block size) with `d_b = amax_b / 127`:
/// rounding moves each value by at most `d_b / 2`, and for Q8_0/Q8_1 the stored scale is
/// `f16(d_b)` (relative error `2^-11`) applied to quants up to 127, so
/// `|x_i - x̂_i| <= d_b * (1/2 + 127 * 2^-11)` (Q8_K stores `d` as f32: `d_b / 2`). For Q4_1/Q5_1
/// the kernel uses the f16-stored `s = d * sum(q)` times the block minimum: at most
/// `2^-11 * 32 * amax_b * max|w_b|` more. The float accumulation adds a few ulps of
/// `sum |x w|`, covered by `1e-5 * sum |x w|`.
pub fn error_bound(w_ty: QuantType, x_row: &[f32], w_row_deq: &[f32]) -> f64 {
    let at = w_ty.dot_type().unwrap_or(QuantType::Q8_0);
    let bs = at.block_size();
    let step = match at {
        QuantType::Q8_K => 0.5,
        _ => 0.5 + 127.0 / 2048.0,
    };
    let mut bound = 0.0f64;
    let mut mag = 0.0f64;
    for (xb, wb) in x_row.chunks(bs).zip(w_row_deq.chunks(bs)) {
        let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs())) as f64;
        let wsum: f64 = wb.iter().map(|v| v.abs() as f64).sum();
        bound += amax / 127.0 * step * wsum;
        if at == QuantType::Q8_1 {
            let wmax = wb.iter().fold(0f32, |a, v| a.max(v.abs())) as f64;
            bound += 32.0 * amax * wmax / 2048.0;
        }
        mag += xb.iter().zip(wb).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum::<f64>();
    }
    bound + 1e-5 * mag
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemv_tasks_cover_the_rows_in_order_at_row_group_boundaries() {
        for threads in [1, 2, 3, 8] {
            for n in [1, 15, 16, 17, 100, 576, 1536, 4096, 16384, 49152, 100_003] {
                let t = GemvTasks::new(n, threads);
                let mut next = 0;
                for c in 0..t.count() {
                    let r = t.rows(c);
                    assert_eq!(r.start, next, "n {n} threads {threads} task {c}");
                    assert!(r.end > r.start && r.start.is_multiple_of(simd::ROW_GROUP), "n {n} threads {threads} task {c}: {r:?}");
                    next = r.end;
                }
                assert_eq!(next, n, "n {n} threads {threads}");
            }
        }
    }
}
