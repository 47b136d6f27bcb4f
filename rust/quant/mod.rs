//! Codecs: one [`Block`] type per ggml quantization type, and row-parallel quantize / dequantize
//! over byte buffers selected at run time by [`QuantType`].
//!
//! Every codec is bit-exact with ggml (tests: `tests/golden_codecs.rs`). Quantizers keep ggml's
//! float32 operation order: ggml builds them without FMA contraction, and Rust never contracts.
//!
//! Module map: [`float`] (F32/F16/BF16); the block-quantized families live in one file each.

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{Error, Result};
use crate::simd::{self, codec::CodecClones, codec::RowCodec, Isa};
use crate::types::QuantType;

pub mod float;
pub mod grids;
pub mod iq1;
pub mod iq2;
pub mod iq3;
pub mod k;
pub mod legacy;
pub mod search;
pub mod binary;
pub mod fp4;
pub mod iq4;
pub mod ternary;

/// One ggml block: `TYPE.block_size()` values stored in `size_of::<Self>()` bytes.
///
/// Blocks are `#[repr(C)]` with alignment 1 (f16 fields are stored as `[u8; 2]`), so any byte
/// buffer — an mmapped tensor, a NumPy `uint8` array — can be viewed as blocks without copying.
pub trait Block: Pod + Zeroable + Send + Sync + 'static {
    /// The ggml type this block encodes.
    const TYPE: QuantType;

    /// Quantize one row (`src.len()` is a multiple of the block size and equals `dst.len() *
    /// block_size`), as ggml's `ggml_quantize_chunk` does. `imatrix`, when given, holds one
    /// importance weight per column of the row (`src.len()` values), already validated as
    /// finite and non-negative. Types that need an importance matrix
    /// ([`QuantType::requires_imatrix`]) are only called with `Some`.
    fn quantize_row(src: &[f32], dst: &mut [Self], imatrix: Option<&[f32]>);

    /// ggml's `quantize_row_<t>_ref`. Equal to `quantize_row(src, dst, None)` for every type but
    /// IQ4_NL (and the activation types Q8_1/Q8_K, whose only quantizer is this one).
    #[inline(always)]
    fn quantize_row_ref(src: &[f32], dst: &mut [Self]) {
        Self::quantize_row(src, dst, None)
    }

    /// ggml's `dequantize_row_<t>`, bit-exact.
    fn dequantize_row(src: &[Self], dst: &mut [f32]);
}

/// A block type ggml can dot with a quantized activation row.
pub trait DotBlock: Block {
    /// The activation block type (Q8_0, Q8_1 or Q8_K, or the float type itself).
    type Dot: Block;

    /// Scalar reference dot product of a row of `Self` with a row of `Self::Dot` holding the
    /// same number of values: the specification every SIMD kernel is tested against.
    fn vec_dot_ref(lhs: &[Self], rhs: &[Self::Dot]) -> f32;
}

/// Type-erased codec entry: what the run-time [`QuantType`] dispatch calls.
pub struct Codec {
    /// The type.
    pub ty: QuantType,
    /// The row functions, compiled once per ISA level (chosen in [`crate::simd::codec`]).
    clones: CodecClones,
    vec_dot_ref: Option<RefDot>,
}

/// A type-erased scalar reference dot product over two rows of blocks.
type RefDot = fn(&[u8], &[u8]) -> f32;

fn erased_vec_dot<B: DotBlock>(lhs: &[u8], rhs: &[u8]) -> f32 {
    B::vec_dot_ref(bytemuck::cast_slice(lhs), bytemuck::cast_slice(rhs))
}

impl Codec {
    /// The entry for a block type without a dot product (activation types).
    pub const fn of<B: Block>() -> Codec {
        Codec { ty: B::TYPE, clones: CodecClones::of::<B>(), vec_dot_ref: None }
    }

    /// The entry for a block type with a reference dot product.
    pub const fn of_dot<B: DotBlock>() -> Codec {
        Codec { vec_dot_ref: Some(erased_vec_dot::<B>), ..Codec::of::<B>() }
    }

    /// The row functions of this codec for `isa` (an error if the machine cannot run it).
    pub fn rows(&self, isa: Isa) -> Result<RowCodec> {
        simd::codec::select(&self.clones, isa)
    }
}

/// The codec table: one arm per implemented type.
fn lookup(t: QuantType) -> Option<&'static Codec> {
    use QuantType as T;
    static F32: Codec = Codec::of_dot::<float::F32Block>();
    static F16: Codec = Codec::of_dot::<float::F16Block>();
    static BF16: Codec = Codec::of_dot::<float::BF16Block>();
    static Q4_0: Codec = Codec::of_dot::<legacy::BlockQ4_0>();
    static Q4_1: Codec = Codec::of_dot::<legacy::BlockQ4_1>();
    static Q5_0: Codec = Codec::of_dot::<legacy::BlockQ5_0>();
    static Q5_1: Codec = Codec::of_dot::<legacy::BlockQ5_1>();
    static Q8_0: Codec = Codec::of_dot::<legacy::BlockQ8_0>();
    static Q8_1: Codec = Codec::of::<legacy::BlockQ8_1>();
    Some(match t {
        T::F32 => &F32,
        T::F16 => &F16,
        T::BF16 => &BF16,
        T::Q4_0 => &Q4_0,
        T::Q4_1 => &Q4_1,
        T::Q5_0 => &Q5_0,
        T::Q5_1 => &Q5_1,
        T::Q8_0 => &Q8_0,
        T::Q8_1 => &Q8_1,
        T::Q2_K => { static C: Codec = Codec::of_dot::<k::BlockQ2K>(); &C }
        T::Q3_K => { static C: Codec = Codec::of_dot::<k::BlockQ3K>(); &C }
        T::Q4_K => { static C: Codec = Codec::of_dot::<k::BlockQ4K>(); &C }
        T::Q5_K => { static C: Codec = Codec::of_dot::<k::BlockQ5K>(); &C }
        T::Q6_K => { static C: Codec = Codec::of_dot::<k::BlockQ6K>(); &C }
        T::Q8_K => { static C: Codec = Codec::of::<k::BlockQ8K>(); &C }
        T::IQ4_NL => { static C: Codec = Codec::of_dot::<iq4::BlockIQ4NL>(); &C }
        T::IQ4_XS => { static C: Codec = Codec::of_dot::<iq4::BlockIQ4XS>(); &C }
        T::TQ1_0 => { static C: Codec = Codec::of_dot::<ternary::BlockTQ1_0>(); &C }
        T::TQ2_0 => { static C: Codec = Codec::of_dot::<ternary::BlockTQ2_0>(); &C }
        T::MXFP4 => { static C: Codec = Codec::of_dot::<fp4::BlockMXFP4>(); &C }
        T::NVFP4 => { static C: Codec = Codec::of_dot::<fp4::BlockNVFP4>(); &C }
        T::Q1_0 => { static C: Codec = Codec::of_dot::<binary::BlockQ1_0>(); &C }
        T::Q2_0 => { static C: Codec = Codec::of_dot::<binary::BlockQ2_0>(); &C }
        T::IQ2_XXS => { static C: Codec = Codec::of_dot::<iq2::BlockIQ2XXS>(); &C }
        T::IQ2_XS => { static C: Codec = Codec::of_dot::<iq2::BlockIQ2XS>(); &C }
        T::IQ2_S => { static C: Codec = Codec::of_dot::<iq2::BlockIQ2S>(); &C }
        T::IQ3_XXS => { static C: Codec = Codec::of_dot::<iq3::BlockIQ3XXS>(); &C }
        T::IQ3_S => { static C: Codec = Codec::of_dot::<iq3::BlockIQ3S>(); &C }
        T::IQ1_S => { static C: Codec = Codec::of_dot::<iq1::BlockIQ1S>(); &C }
        T::IQ1_M => { static C: Codec = Codec::of_dot::<iq1::BlockIQ1M>(); &C }
        _ => return None,
    })
}

/// The codec for `t`, or [`Error::Unsupported`] if kquants has none (integer types).
pub fn codec(t: QuantType) -> Result<&'static Codec> {
    lookup(t).ok_or(Error::Unsupported { ty: t, op: "quantization" })
}

/// Whether kquants can quantize and dequantize `t`.
pub fn is_supported(t: QuantType) -> bool {
    lookup(t).is_some()
}

/// Check that `n_per_row` is a positive multiple of the block size and `len` a multiple of it.
fn rows_of(t: QuantType, len: usize, n_per_row: usize) -> Result<(usize, usize)> {
    if n_per_row == 0 {
        return Err(Error::value("row length must be positive"));
    }
    let row_bytes = t.row_bytes(n_per_row).ok_or_else(|| {
        Error::value(format!(
            "row length {n_per_row} is not a multiple of the {t} block size {}",
            t.block_size()
        ))
    })?;
    if !len.is_multiple_of(n_per_row) {
        return Err(Error::value(format!(
            "{len} values do not form whole rows of {n_per_row}"
        )));
    }
    Ok((len / n_per_row, row_bytes))
}

/// Error naming the first non-finite value as (row, col).
pub fn check_finite(src: &[f32], n_per_row: usize) -> Result<()> {
    match src.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(non_finite_error(src, n_per_row, i)),
    }
}

/// The error for non-finite `src[i]`, as (row, col) of rows of `n_per_row`.
fn non_finite_error(src: &[f32], n_per_row: usize, i: usize) -> Error {
    Error::value(format!(
        "input is not finite at (row {}, col {}): {} (ggml has no defined result for NaN/Inf)",
        i / n_per_row.max(1),
        i % n_per_row.max(1),
        src.get(i).copied().unwrap_or(f32::NAN)
    ))
}

/// Check an importance matrix: one finite, non-negative weight per column.
pub fn check_imatrix(imatrix: &[f32], n_per_row: usize) -> Result<()> {
    if imatrix.len() != n_per_row {
        return Err(Error::value(format!(
            "imatrix has {} values but rows have {n_per_row} columns",
            imatrix.len()
        )));
    }
    if let Some(i) = imatrix.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
        return Err(Error::value(format!(
            "imatrix[{i}] = {} is not a finite non-negative number",
            imatrix[i]
        )));
    }
    Ok(())
}

/// Run `f` on a rayon pool with `threads` workers (`None`: the global pool; pools are cached,
/// see [`crate::parallel::pool`]).
pub fn with_threads<R: Send>(threads: Option<usize>, f: impl FnOnce() -> R + Send) -> Result<R> {
    crate::parallel::with_threads(threads, f)
}

/// Whether a job of `tasks` tasks runs on the calling thread: one task, or one thread asked for.
/// Handing work to a pool and waiting for it costs a few microseconds (a thread wake-up), as
/// much as quantizing a 16k-value task.
fn sequential(tasks: usize, threads: Option<usize>) -> bool {
    tasks <= 1 || threads == Some(1)
}

/// Below this many values, a job that costs well under a nanosecond per value runs on the
/// calling thread unless a thread count is given. Waking the pool's sleeping workers and waiting
/// for them took 10–40 µs here; measured with the default pool against one thread (idle
/// machine, arrays of 4096-value rows), two threads lost for F16 and Q4_0 at 1 MiB of f32 in
/// both directions and won at 4 MiB (Q4_0 dequantize 180 -> 95 µs, quantize 283 -> 207 µs).
const CHEAP_PARALLEL_MIN_VALUES: usize = 1 << 20;

/// Whether quantizing to `t` is a per-block formula (well under a nanosecond per value) rather
/// than a search: float types and the legacy/activation types without an importance matrix
/// (Q8_0 ignores one).
fn cheap_quantize(t: QuantType, imatrix: Option<&[f32]>) -> bool {
    use QuantType as T;
    match t {
        T::F32 | T::F16 | T::BF16 | T::Q8_0 | T::Q8_1 | T::Q8_K => true,
        T::Q4_0 | T::Q4_1 | T::Q5_0 | T::Q5_1 => imatrix.is_none(),
        _ => false,
    }
}

/// Threads for a cheap job of `values` values: the caller's choice when given, otherwise one
/// thread for small jobs (see [`CHEAP_PARALLEL_MIN_VALUES`]).
fn cheap_threads(values: usize, threads: Option<usize>) -> Option<usize> {
    match threads {
        None if values < CHEAP_PARALLEL_MIN_VALUES => Some(1),
        t => t,
    }
}

/// Rows per rayon task: enough work per task to amortize scheduling, small enough to balance.
fn rows_per_task(n_per_row: usize) -> usize {
    (16384 / n_per_row.max(1)).max(1)
}

/// Which quantizer to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// `ggml_quantize_chunk`: what llama-quantize runs (with or without an importance matrix).
    Chunk,
    /// `quantize_row_<t>_ref` (no importance matrix).
    Ref,
}

/// Quantize `src` (rows of `n_per_row` values) into `dst`, which must hold exactly the quantized
/// size. Output does not depend on the thread count. Runs the codec build of
/// [`simd::selected_isa`]; see [`quantize_into_isa`].
pub fn quantize_into(
    t: QuantType,
    src: &[f32],
    n_per_row: usize,
    imatrix: Option<&[f32]>,
    path: Path,
    dst: &mut [u8],
    threads: Option<usize>,
) -> Result<()> {
    quantize_into_isa(simd::selected_isa(), t, src, n_per_row, imatrix, path, dst, threads)
}

/// [`quantize_into`] with the codec compiled for `isa` (the same bytes at every level; an error
/// if this machine cannot run `isa`). Non-finite input is an error naming the first bad value;
/// each row is checked while it is quantized (by the fused kernels) or just before, while it is
/// in cache.
#[allow(clippy::too_many_arguments)]
pub fn quantize_into_isa(
    isa: Isa,
    t: QuantType,
    src: &[f32],
    n_per_row: usize,
    imatrix: Option<&[f32]>,
    path: Path,
    dst: &mut [u8],
    threads: Option<usize>,
) -> Result<()> {
    let c = codec(t)?;
    let (rows, row_bytes) = rows_of(t, src.len(), n_per_row)?;
    if dst.len() != rows * row_bytes {
        return Err(Error::value(format!(
            "output buffer has {} bytes, {rows} rows of {t} need {}",
            dst.len(),
            rows * row_bytes
        )));
    }
    if let Some(w) = imatrix {
        check_imatrix(w, n_per_row)?;
        if path == Path::Ref {
            return Err(Error::value("the reference quantizer takes no importance matrix"));
        }
    }
    if t.is_activation_only() && path == Path::Chunk && imatrix.is_some() {
        return Err(Error::Unsupported { ty: t, op: "importance-weighted quantization (activation type)" });
    }
    if imatrix.is_none() && t.requires_imatrix() {
        return Err(Error::value(format!(
            "{t} requires an importance matrix (imatrix=...); ggml refuses to quantize it without one"
        )));
    }
    if threads == Some(0) {
        return Err(Error::value("threads must be at least 1"));
    }
    let rc = c.rows(isa)?;
    // Smallest flat index of a non-finite value seen (usize::MAX: none). Each task stops at its
    // first bad row; the minimum over tasks is the first bad value of the whole input.
    let bad = AtomicUsize::new(usize::MAX);
    let rpt = rows_per_task(n_per_row);
    let threads = if cheap_quantize(t, imatrix) { cheap_threads(src.len(), threads) } else { threads };
    let task = |ti: usize, d: &mut [u8], s: &[f32]| {
        for (ri, (drow, srow)) in d.chunks_exact_mut(row_bytes).zip(s.chunks_exact(n_per_row)).enumerate() {
            if let Some(j) = rc.quantize_checked(srow, drow, imatrix, path) {
                bad.fetch_min((ti * rpt + ri) * n_per_row + j, Ordering::Relaxed);
                return;
            }
        }
    };
    if sequential(rows.div_ceil(rpt), threads) {
        for (ti, (d, s)) in dst.chunks_mut(row_bytes * rpt).zip(src.chunks(n_per_row * rpt)).enumerate() {
            task(ti, d, s);
            if bad.load(Ordering::Relaxed) != usize::MAX {
                break;
            }
        }
    } else {
        with_threads(threads, || {
            dst.par_chunks_mut(row_bytes * rpt)
                .zip(src.par_chunks(n_per_row * rpt))
                .enumerate()
                .for_each(|(ti, (d, s))| task(ti, d, s))
        })?;
    }
    match bad.into_inner() {
        usize::MAX => Ok(()),
        i => Err(non_finite_error(src, n_per_row, i)),
    }
}

/// Quantize `src` (rows of `n_per_row` values) to a new buffer; see [`quantize_into`].
pub fn quantize(
    t: QuantType,
    src: &[f32],
    n_per_row: usize,
    imatrix: Option<&[f32]>,
    threads: Option<usize>,
) -> Result<Vec<u8>> {
    let (rows, row_bytes) = rows_of(t, src.len(), n_per_row)?;
    let mut dst = vec![0u8; rows * row_bytes];
    quantize_into(t, src, n_per_row, imatrix, Path::Chunk, &mut dst, threads)?;
    Ok(dst)
}

/// Dequantize `src` (whole blocks of `t`) into `dst` (`block_size` values per block), with the
/// codec build of [`simd::selected_isa`].
pub fn dequantize_into(t: QuantType, src: &[u8], dst: &mut [f32], threads: Option<usize>) -> Result<()> {
    dequantize_into_isa(simd::selected_isa(), t, src, dst, threads)
}

/// [`dequantize_into`] with the codec compiled for `isa` (the same values at every level; an
/// error if this machine cannot run `isa`).
pub fn dequantize_into_isa(isa: Isa, t: QuantType, src: &[u8], dst: &mut [f32], threads: Option<usize>) -> Result<()> {
    let c = codec(t)?;
    let (bs, ts) = (t.block_size(), t.type_size());
    if !src.len().is_multiple_of(ts) {
        return Err(Error::value(format!("{} bytes are not whole {t} blocks of {ts} bytes", src.len())));
    }
    if dst.len() != src.len() / ts * bs {
        return Err(Error::value(format!(
            "output has {} values, {} blocks of {t} hold {}",
            dst.len(),
            src.len() / ts,
            src.len() / ts * bs
        )));
    }
    if threads == Some(0) {
        return Err(Error::value("threads must be at least 1"));
    }
    let rc = c.rows(isa)?;
    // Tasks of whole blocks, about 16k values each.
    let blocks_per_task = (16384 / bs).max(1);
    let threads = cheap_threads(dst.len(), threads);
    if sequential(dst.len().div_ceil(bs * blocks_per_task), threads) {
        rc.dequantize(src, dst);
        return Ok(());
    }
    with_threads(threads, || {
        dst.par_chunks_mut(bs * blocks_per_task)
            .zip(src.par_chunks(ts * blocks_per_task))
            .for_each(|(d, s)| rc.dequantize(s, d))
    })
}

/// Dequantize whole blocks of `t` to a new `Vec<f32>`.
pub fn dequantize(t: QuantType, src: &[u8], threads: Option<usize>) -> Result<Vec<f32>> {
    let ts = t.type_size();
    let mut dst = vec![0f32; src.len() / ts * t.block_size()];
    dequantize_into(t, src, &mut dst, threads)?;
    Ok(dst)
}

/// Scalar reference dot product of one row of `t` with one row of its activation type
/// (`t.dot_type()`), both holding `n` values.
pub fn vec_dot_ref(t: QuantType, lhs: &[u8], rhs: &[u8], n: usize) -> Result<f32> {
    let c = codec(t)?;
    let f = c.vec_dot_ref.ok_or(Error::Unsupported { ty: t, op: "vec_dot" })?;
    let dt = t.dot_type().ok_or(Error::Unsupported { ty: t, op: "vec_dot" })?;
    let lb = t.row_bytes(n).ok_or_else(|| Error::value(format!("{n} is not a multiple of the {t} block size")))?;
    let rb = dt.row_bytes(n).ok_or_else(|| Error::value(format!("{n} is not a multiple of the {dt} block size")))?;
    if lhs.len() != lb || rhs.len() != rb {
        return Err(Error::value(format!(
            "vec_dot of {n} values needs {lb} bytes of {t} and {rb} bytes of {dt}, got {} and {}",
            lhs.len(),
            rhs.len()
        )));
    }
    Ok(f(lhs, rhs))
}

/// Largest |x| of finite values, or +0 when all are zero: ggml's `amax = MAX(amax, fabsf(v))`
/// from 0 in any order. The bits of a non-negative finite float order like its value, so the
/// maximum is taken on integers, which vectorizes where a float compare-and-select chain does
/// not (its sequential dependency cost ~1 ns per value). Callers pass validated finite input.
#[inline(always)]
pub(crate) fn abs_max(x: &[f32]) -> f32 {
    f32::from_bits(x.iter().fold(0u32, |m, v| m.max(v.to_bits() & 0x7fff_ffff)))
}

/// Little-endian f16 bytes to f32 (ggml `GGML_FP16_TO_FP32`).
#[inline(always)]
pub fn f16_to_f32(b: [u8; 2]) -> f32 {
    half::f16::from_bits(u16::from_le_bytes(b)).to_f32()
}

/// f32 to little-endian f16 bytes, round to nearest even (ggml `GGML_FP32_TO_FP16`).
#[inline(always)]
pub fn f32_to_f16(x: f32) -> [u8; 2] {
    float::f32_to_f16_bits(x).to_le_bytes()
}

/// f32 rounded through f16 and back (ggml `GGML_FP32_TO_FP16` then `GGML_FP16_TO_FP32`).
#[inline(always)]
pub fn round_f16(x: f32) -> f32 {
    half::f16::from_bits(float::f32_to_f16_bits(x)).to_f32()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cheap_jobs_stay_on_the_calling_thread_unless_asked() {
        let small = CHEAP_PARALLEL_MIN_VALUES - 1;
        assert_eq!(cheap_threads(small, None), Some(1));
        assert_eq!(cheap_threads(small, Some(2)), Some(2));
        assert_eq!(cheap_threads(CHEAP_PARALLEL_MIN_VALUES, None), None);
        assert!(cheap_quantize(QuantType::Q4_0, None));
        assert!(!cheap_quantize(QuantType::Q4_0, Some(&[1.0; 32])));
        assert!(cheap_quantize(QuantType::Q8_0, Some(&[1.0; 32])));
        assert!(!cheap_quantize(QuantType::Q4_K, None));
    }
}
