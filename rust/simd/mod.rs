//! SIMD kernels chosen at run time: the one dispatch table.
//!
//! The instruction set is detected once (`OnceLock`) with `is_x86_feature_detected!` /
//! `is_aarch64_feature_detected!`, so a wheel built for baseline x86-64 still runs the AVX2 and
//! AVX-512 kernels. `KQUANTS_ISA=scalar|avx2|avx512|neon` forces a lower level (an unknown or
//! unavailable request falls back to the best available level not above it).
//!
//! Each level's table starts from the level below it and overrides the entries it has kernels
//! for, so a type without a kernel at some level uses the next lower one, down to the scalar
//! references of [`crate::quant`].
//!
//! Kernels work on raw ggml block bytes (layouts of `ggml-common.h`). Every entry point here
//! validates lengths; the raw kernels behind it are `unsafe` and never exposed.

use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::quant;
use crate::types::QuantType;

pub mod codec;
pub mod fgemm;
pub(crate) mod interleave;
pub mod stream;

#[cfg(target_arch = "x86_64")]
mod x86 {
    pub mod avx2;
    pub mod avx2_iq;
    pub mod avx512;
    pub mod avx512_iq;
    pub mod gemm16_avx512;
    pub mod gemm16k_avx512;
    pub mod gemm_avx512;
}
#[cfg(target_arch = "aarch64")]
mod aarch64 {
    pub mod neon;
}

/// An instruction-set level, ordered from lowest to highest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Portable Rust: the scalar references of [`crate::quant`].
    Scalar,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// x86-64 AVX-512 F/BW/VL/VNNI (plus AVX2 + FMA + F16C).
    Avx512,
    /// aarch64 Advanced SIMD.
    Neon,
}

impl Isa {
    /// Every level, lowest first.
    pub const ALL: [Isa; 4] = [Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon];

    /// Lower-case name as `KQUANTS_ISA` spells it.
    pub const fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
        }
    }

    /// Parse a `KQUANTS_ISA` value (case-insensitive).
    pub fn from_name(s: &str) -> Option<Isa> {
        Isa::ALL.into_iter().find(|i| i.name().eq_ignore_ascii_case(s.trim()))
    }

    /// Whether this machine can run kernels of this level.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                Isa::Avx2.is_available()
                    && std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Index into the table array.
    const fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Raw dot-product kernel: `w` holds exactly `t.row_bytes(n)` bytes of the weight type and `a`
/// exactly `t.dot_type().row_bytes(n)` bytes of its activation type.
///
/// # Safety
/// The caller guarantees those lengths, and that the kernel's ISA is available (both hold for
/// every entry of a table returned by [`kernels_for`]).
pub(crate) type VecDotFn = unsafe fn(n: usize, w: &[u8], a: &[u8]) -> f32;

/// Raw multi-row kernel: one weight row `w` (as for [`VecDotFn`]) against [`DOT_ROWS`]
/// consecutive activation rows in `a` (`a.len()` is `DOT_ROWS` times one row's bytes); writes the
/// [`DOT_ROWS`] dot products to `out`, **bit for bit** what the same table's [`VecDotFn`] returns
/// for each row (same float operations in the same order; the weight row is decoded once).
///
/// # Safety
/// As for [`VecDotFn`].
pub(crate) type VecDotRowsFn = unsafe fn(n: usize, w: &[u8], a: &[u8], out: &mut [f32; DOT_ROWS]);

/// Activation rows per multi-row kernel call ([`Kernels::vec_dot_rows`]).
pub const DOT_ROWS: usize = 4;

/// Raw activation quantizer: `x.len()` is a multiple of the activation block size and `dst`
/// holds exactly the quantized size.
///
/// # Safety
/// As for [`VecDotFn`]: lengths exact, ISA available.
pub(crate) type QuantizeFn = unsafe fn(x: &[f32], dst: &mut [u8]);

/// Raw multi-row kernel: `out[i * m + j] = dot(w row i, a row j)` for `nr` weight rows (`w`,
/// rows of `t.row_bytes(k)`) and `m` activation rows (`a`, rows of the activation type).
/// Each output is computed the same way whatever `nr` and `m` are.
///
/// # Safety
/// Lengths exact (`w` = `nr` rows, `a` = `m` rows, `out` = `nr * m`), ISA available.
pub(crate) type GemmFn = unsafe fn(k: usize, w: &[u8], nr: usize, a: &[u8], m: usize, out: &mut [f32]);

/// How one table entry computes.
#[derive(Clone, Copy)]
enum DotImpl {
    /// Not available.
    None,
    /// The scalar reference `crate::quant::vec_dot_ref`.
    Reference,
    /// A SIMD kernel.
    Kernel(VecDotFn),
}

#[derive(Clone, Copy)]
enum ActImpl {
    None,
    /// A kernel (or a scalar port of ggml's SIMD rounding).
    Kernel(QuantizeFn),
}

/// Number of table slots: one per ggml type id.
const SLOTS: usize = 64;

/// One ISA's kernels for every type.
pub struct Kernels {
    isa: Isa,
    dot: [DotImpl; SLOTS],
    dot_isa: [Isa; SLOTS],
    /// Multi-row kernels; an entry is dropped when a higher level replaces the type's
    /// single-row kernel, so it always matches `dot` bit for bit.
    dot_rows: [Option<VecDotRowsFn>; SLOTS],
    act: [ActImpl; SLOTS],
    act_isa: [Isa; SLOTS],
    gemm: [Option<GemmFn>; SLOTS],
    /// Multi-row kernels over the interleaved layout ([`interleave`]), bit-identical to `gemm`.
    interleaved: [Option<GemmFn>; SLOTS],
}

/// A level's overrides, filled by the per-ISA modules.
pub(crate) struct Overrides {
    pub(crate) dot: Vec<(QuantType, VecDotFn)>,
    pub(crate) act: Vec<(QuantType, QuantizeFn)>,
}

fn slot(t: QuantType) -> usize {
    t.id() as usize
}

impl Kernels {
    fn scalar() -> Kernels {
        let mut k = Kernels {
            isa: Isa::Scalar,
            dot: [DotImpl::None; SLOTS],
            dot_isa: [Isa::Scalar; SLOTS],
            dot_rows: [None; SLOTS],
            act: [ActImpl::None; SLOTS],
            act_isa: [Isa::Scalar; SLOTS],
            gemm: [None; SLOTS],
            interleaved: [None; SLOTS],
        };
        for &t in QuantType::ALL {
            if t.dot_type().is_some() && has_reference_dot(t) {
                k.dot[slot(t)] = DotImpl::Reference;
            }
        }
        for (t, f) in scalar_act_quantizers() {
            k.act[slot(t)] = ActImpl::Kernel(f);
        }
        k
    }

    fn with(mut self, isa: Isa, o: Overrides) -> Kernels {
        self.isa = isa;
        for (t, f) in o.dot {
            self.dot[slot(t)] = DotImpl::Kernel(f);
            self.dot_isa[slot(t)] = isa;
            self.dot_rows[slot(t)] = None;
        }
        for (t, f) in o.act {
            self.act[slot(t)] = ActImpl::Kernel(f);
            self.act_isa[slot(t)] = isa;
        }
        self
    }

    /// Add multi-row kernels (they must compute exactly what the table's dot kernel of the
    /// same type is replaced by in matmuls: see [`GemmFn`]).
    #[allow(dead_code)] // no multi-row kernels on some targets
    fn with_gemm(mut self, g: Vec<(QuantType, GemmFn)>) -> Kernels {
        for (t, f) in g {
            self.gemm[slot(t)] = Some(f);
        }
        self
    }

    /// Add multi-row kernels over interleaved weights (each computes exactly what the type's
    /// `gemm` entry computes from the plain rows).
    #[allow(dead_code)] // no interleaved kernels on some targets
    fn with_interleaved(mut self, g: Vec<(QuantType, GemmFn)>) -> Kernels {
        for (t, f) in g {
            debug_assert!(self.gemm[slot(t)].is_some(), "{t}: an interleaved kernel needs its plain twin");
            self.interleaved[slot(t)] = Some(f);
        }
        self
    }

    /// Whether this level multiplies `t` from the interleaved layout of [`interleave`] (see
    /// [`crate::matmul::PackedWeight`]).
    pub fn has_interleaved(&self, t: QuantType) -> bool {
        self.interleaved[slot(t)].is_some()
    }

    /// Install multi-row kernels that pair with this table's current single-row kernels.
    #[allow(dead_code)] // unused on targets without multi-row kernels
    fn with_rows(mut self, rows: Vec<(QuantType, VecDotRowsFn)>) -> Kernels {
        for (t, f) in rows {
            self.dot_rows[slot(t)] = Some(f);
        }
        self
    }

    /// Whether matmuls of `t` use a multi-row kernel at this level.
    pub fn has_gemm(&self, t: QuantType) -> bool {
        self.gemm[slot(t)].is_some()
    }

    /// The kernels a matmul of `t` with rows of `n` values uses.
    pub(crate) fn row_dot(&self, t: QuantType, n: usize) -> Result<RowDot> {
        let mut d = RowDot::new(self.dot_fn(t)?, t, n)?;
        d.gemm = self.gemm[slot(t)];
        d.rows = self.dot_rows[slot(t)];
        Ok(d)
    }

    /// [`Kernels::row_dot`] for weights in the interleaved layout, if this level has a kernel
    /// for it: its [`RowDot::gemm`] then reads interleaved groups of 16 rows.
    pub(crate) fn row_dot_interleaved(&self, t: QuantType, n: usize) -> Result<Option<RowDot>> {
        let Some(g) = self.interleaved[slot(t)] else { return Ok(None) };
        let mut d = self.row_dot(t, n)?;
        d.gemm = Some(g);
        d.interleaved = true;
        Ok(Some(d))
    }

    /// Whether `t` has a multi-row kernel at this level (otherwise [`Kernels::vec_dot_rows`]
    /// calls the single-row kernel per row).
    pub fn has_vec_dot_rows(&self, t: QuantType) -> bool {
        self.dot_rows[slot(t)].is_some()
    }

    /// Dot products of one weight row of `t` (`n` values) with [`DOT_ROWS`] consecutive rows of
    /// `t.dot_type()` in `a`, into `out`. Equal bit for bit to [`DOT_ROWS`] calls of
    /// [`Kernels::vec_dot`].
    pub fn vec_dot_rows(&self, t: QuantType, n: usize, w: &[u8], a: &[u8], out: &mut [f32; DOT_ROWS]) -> Result<()> {
        let (wb, ab) = dot_row_bytes(t, n)?;
        if w.len() != wb || Some(a.len()) != ab.checked_mul(DOT_ROWS) {
            return Err(Error::value(format!(
                "vec_dot_rows of {n} values needs {wb} weight bytes and {DOT_ROWS} x {ab} activation bytes, got {} and {}",
                w.len(),
                a.len()
            )));
        }
        self.dot_rows_fn(t)?.call(t, n, w, a, out);
        Ok(())
    }

    /// The multi-row kernel for `t` (or its per-row fallback), checked once.
    pub(crate) fn dot_rows_fn(&self, t: QuantType) -> Result<DotRowsCall> {
        Ok(DotRowsCall { rows: self.dot_rows[slot(t)], one: self.dot_fn(t)? })
    }

    /// The level of this table.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Whether `t` has a dot product at this level (own kernel or a lower level's).
    pub fn has_vec_dot(&self, t: QuantType) -> bool {
        !matches!(self.dot[slot(t)], DotImpl::None)
    }

    /// The level whose kernel computes `t`'s dot product (`None` when there is none).
    pub fn vec_dot_isa(&self, t: QuantType) -> Option<Isa> {
        self.has_vec_dot(t).then(|| self.dot_isa[slot(t)])
    }

    /// Whether activations of type `t` (Q8_0, Q8_1, Q8_K) can be quantized at this level.
    pub fn has_quantize_act(&self, t: QuantType) -> bool {
        !matches!(self.act[slot(t)], ActImpl::None)
    }

    /// The level of the activation quantizer for `t`.
    pub fn quantize_act_isa(&self, t: QuantType) -> Option<Isa> {
        self.has_quantize_act(t).then(|| self.act_isa[slot(t)])
    }

    /// Dot product of one row of `t` (`n` values) with one row of `t.dot_type()`.
    pub fn vec_dot(&self, t: QuantType, n: usize, w: &[u8], a: &[u8]) -> Result<f32> {
        let fits = dot_row_bytes_fast(t, n).is_some_and(|(wb, ab)| w.len() == wb && a.len() == ab);
        if !fits {
            let (wb, ab) = dot_row_bytes(t, n)?;
            return Err(Error::value(format!(
                "vec_dot of {n} values needs {wb} bytes of {t} and {ab} bytes of {}, got {} and {}",
                t.dot_type().map_or("?", |d| d.name()),
                w.len(),
                a.len()
            )));
        }
        Ok(match self.dot_fn(t)? {
            DotCall(None) => quant::vec_dot_ref(t, w, a, n)?,
            // SAFETY: lengths checked above; the table holds only kernels of an available ISA.
            DotCall(Some(f)) => unsafe { f(n, w, a) },
        })
    }

    /// Quantize activations `x` (rows of `n` values; `x.len()` a multiple of `n`) to `t`
    /// (Q8_0, Q8_1 or Q8_K) the way ggml's matmul does (SIMD rounding), into `dst`.
    pub fn quantize_act(&self, t: QuantType, x: &[f32], dst: &mut [u8]) -> Result<()> {
        let bs = t.block_size();
        if !x.len().is_multiple_of(bs) {
            return Err(Error::value(format!("{} values are not whole {t} blocks of {bs}", x.len())));
        }
        let need = x.len() / bs * t.type_size();
        if dst.len() != need {
            return Err(Error::value(format!("{t} output needs {need} bytes, got {}", dst.len())));
        }
        let f = self.act_fn(t)?;
        f.call(t, x, dst);
        Ok(())
    }

    /// The dot kernel for `t`, checked once; calls on it only need lengths checked by the caller.
    pub(crate) fn dot_fn(&self, t: QuantType) -> Result<DotCall> {
        match self.dot[slot(t)] {
            DotImpl::None => Err(Error::Unsupported { ty: t, op: "vec_dot" }),
            DotImpl::Reference => Ok(DotCall(None)),
            DotImpl::Kernel(f) => Ok(DotCall(Some(f))),
        }
    }

    pub(crate) fn act_fn(&self, t: QuantType) -> Result<ActCall> {
        match self.act[slot(t)] {
            ActImpl::None => Err(Error::Unsupported { ty: t, op: "activation quantization" }),
            ActImpl::Kernel(f) => Ok(ActCall(f)),
        }
    }
}

/// A resolved dot kernel (from a table of an available ISA).
#[derive(Clone, Copy)]
pub(crate) struct DotCall(Option<VecDotFn>);

impl DotCall {
    /// Run the kernel. Lengths must be exact (`dot_row_bytes`); a mismatch panics in the
    /// reference path and is checked by a debug assertion here.
    #[inline]
    pub(crate) fn call(self, t: QuantType, n: usize, w: &[u8], a: &[u8]) -> f32 {
        match self.0 {
            None => quant::vec_dot_ref(t, w, a, n).unwrap_or(f32::NAN),
            Some(f) => {
                let ok = dot_row_bytes_fast(t, n).is_some_and(|(wb, ab)| w.len() == wb && a.len() == ab);
                assert!(ok, "kernel called with wrong row lengths");
                // SAFETY: lengths checked just above; `f` comes from a table built only for an
                // ISA that `Isa::is_available` confirmed (see `kernels_for`).
                unsafe { f(n, w, a) }
            }
        }
    }
}

/// A dot kernel bound to one row length `n`, its byte sizes computed once: the form hot loops
/// use (a call checks two lengths instead of recomputing them).
#[derive(Clone, Copy)]
pub(crate) struct RowDot {
    call: DotCall,
    t: QuantType,
    n: usize,
    wb: usize,
    ab: usize,
    gemm: Option<GemmFn>,
    rows: Option<VecDotRowsFn>,
    /// `gemm` reads interleaved weights (whole groups of [`ROW_GROUP`] rows).
    interleaved: bool,
}

impl RowDot {
    /// Bind `call` (the kernel of `t`) to rows of `n` values.
    pub(crate) fn new(call: DotCall, t: QuantType, n: usize) -> Result<RowDot> {
        let (wb, ab) = dot_row_bytes(t, n)?;
        Ok(RowDot { call, t, n, wb, ab, gemm: None, rows: None, interleaved: false })
    }

    /// Whether a multi-row kernel computes these products (then [`RowDot::gemm`] is used for
    /// every output, single rows included, so that batch size never changes a result).
    pub(crate) fn has_gemm(&self) -> bool {
        self.gemm.is_some()
    }

    /// `out[i * m + j] = w_i · a_j` for the `w.len() / wb` weight rows and `m` activation rows,
    /// with the multi-row kernel when there is one, else one dot product per pair.
    ///
    /// Interleaved ([`RowDot::is_interleaved`]): `w` holds `out.len() / m` rows as whole
    /// interleaved groups.
    pub(crate) fn gemm(&self, w: &[u8], a: &[u8], m: usize, out: &mut [f32]) {
        if self.interleaved {
            let nr = out.len() / m.max(1);
            assert!(m > 0 && out.len() == nr * m && a.len() == m * self.ab, "gemm lengths");
            assert!(w.len() == interleave::interleaved_len(nr, self.wb), "gemm lengths");
            let g = self.gemm.expect("interleaved RowDot has a kernel");
            // SAFETY: lengths asserted above; `g` comes from the table of an available ISA.
            unsafe { g(self.n, w, nr, a, m, out) };
            return;
        }
        let nr = w.len() / self.wb.max(1);
        assert!(w.len() == nr * self.wb && a.len() == m * self.ab && out.len() == nr * m, "gemm lengths");
        match self.gemm {
            // SAFETY: lengths asserted above; `g` comes from the table of an available ISA.
            Some(g) => unsafe { g(self.n, w, nr, a, m, out) },
            None => {
                for (i, wr) in w.chunks_exact(self.wb).enumerate() {
                    for (j, ar) in a.chunks_exact(self.ab).enumerate() {
                        out[i * m + j] = self.dot(wr, ar);
                    }
                }
            }
        }
    }

    /// Whether [`RowDot::gemm`] reads interleaved weights.
    pub(crate) fn is_interleaved(&self) -> bool {
        self.interleaved
    }

    /// Bytes of one weight row and one activation row.
    pub(crate) fn row_bytes(&self) -> (usize, usize) {
        (self.wb, self.ab)
    }

    /// One weight row against [`DOT_ROWS`] consecutive activation rows `a`, bit for bit what
    /// [`RowDot::dot`] gives for each (the multi-row kernel when the level has one).
    #[inline]
    pub(crate) fn dot_rows(&self, w: &[u8], a: &[u8], out: &mut [f32; DOT_ROWS]) {
        assert!(w.len() == self.wb && a.len() == DOT_ROWS * self.ab, "kernel called with wrong row lengths");
        match self.rows {
            // SAFETY: lengths checked just above; `f` comes from the table of an available ISA
            // and pairs with this table's single-row kernel.
            Some(f) => unsafe { f(self.n, w, a, out) },
            None => {
                for (o, ar) in out.iter_mut().zip(a.chunks_exact(self.ab)) {
                    *o = self.dot(w, ar);
                }
            }
        }
    }

    /// The dot product of one weight row with one activation row; panics on a wrong length.
    #[inline(always)]
    pub(crate) fn dot(&self, w: &[u8], a: &[u8]) -> f32 {
        assert!(w.len() == self.wb && a.len() == self.ab, "kernel called with wrong row lengths");
        match self.call.0 {
            None => quant::vec_dot_ref(self.t, w, a, self.n).unwrap_or(f32::NAN),
            // SAFETY: lengths checked just above against `dot_row_bytes(t, n)`; `f` comes from a
            // table built only for an available ISA (see `kernels_for`).
            Some(f) => unsafe { f(self.n, w, a) },
        }
    }
}

/// A resolved multi-row dot kernel: the multi-row kernel when the level has one, else the
/// single-row kernel per row.
#[derive(Clone, Copy)]
pub(crate) struct DotRowsCall {
    rows: Option<VecDotRowsFn>,
    one: DotCall,
}

impl DotRowsCall {
    /// Run on one weight row and [`DOT_ROWS`] activation rows (`a.len()` = `DOT_ROWS` rows).
    #[inline]
    pub(crate) fn call(self, t: QuantType, n: usize, w: &[u8], a: &[u8], out: &mut [f32; DOT_ROWS]) {
        let sizes = dot_row_bytes_fast(t, n);
        match (self.rows, sizes) {
            (Some(f), Some((wb, ab))) => {
                assert!(w.len() == wb && Some(a.len()) == ab.checked_mul(DOT_ROWS), "kernel called with wrong row lengths");
                // SAFETY: lengths checked just above; `f` comes from a table built only for an
                // available ISA (see `kernels_for`).
                unsafe { f(n, w, a, out) }
            }
            _ => {
                let ab = a.len() / DOT_ROWS;
                for (j, o) in out.iter_mut().enumerate() {
                    *o = self.one.call(t, n, w, &a[j * ab..(j + 1) * ab]);
                }
            }
        }
    }
}

/// A resolved activation quantizer.
#[derive(Clone, Copy)]
pub(crate) struct ActCall(QuantizeFn);

impl ActCall {
    pub(crate) fn call(self, t: QuantType, x: &[f32], dst: &mut [u8]) {
        let bs = t.block_size();
        assert!(x.len().is_multiple_of(bs) && dst.len() == x.len() / bs * t.type_size(), "activation lengths");
        // SAFETY: lengths asserted above; ISA availability as in `DotCall::call`.
        unsafe { (self.0)(x, dst) }
    }
}

/// Bytes of one weight row and one activation row of `n` values for `t`.
pub fn dot_row_bytes(t: QuantType, n: usize) -> Result<(usize, usize)> {
    let dt = t.dot_type().ok_or(Error::Unsupported { ty: t, op: "vec_dot" })?;
    let wb = t
        .row_bytes(n)
        .ok_or_else(|| Error::value(format!("{n} is not a multiple of the {t} block size {}", t.block_size())))?;
    let ab = dt
        .row_bytes(n)
        .ok_or_else(|| Error::value(format!("{n} is not a multiple of the {dt} block size {}", dt.block_size())))?;
    Ok((wb, ab))
}

/// [`dot_row_bytes`] without error messages and with shifts for the (power-of-two) block sizes:
/// the per-call length check of [`DotCall::call`], which runs once per weight row in matmul.
#[inline]
fn dot_row_bytes_fast(t: QuantType, n: usize) -> Option<(usize, usize)> {
    #[inline(always)]
    fn row(t: QuantType, n: usize) -> Option<usize> {
        let bs = t.block_size();
        if !bs.is_power_of_two() {
            return t.row_bytes(n);
        }
        if n & (bs - 1) != 0 {
            return None;
        }
        (n >> bs.trailing_zeros()).checked_mul(t.type_size())
    }
    Some((row(t, n)?, row(t.dot_type()?, n)?))
}

/// Whether `crate::quant` has a scalar reference dot product for `t`: asked with an empty row,
/// which `quant::vec_dot_ref` answers with `Unsupported` exactly when there is none.
fn has_reference_dot(t: QuantType) -> bool {
    quant::is_supported(t) && quant::vec_dot_ref(t, &[], &[], 0).is_ok()
}

/// Scalar ports of ggml's SIMD activation rounding from the codec modules
/// (`quant::legacy::quantize_row_q8_{0,1}_act`), and Q8_K's reference quantizer (equal to
/// ggml's SIMD one) called per row without the rayon/validation layer of `quant::quantize_into`.
fn scalar_act_quantizers() -> Vec<(QuantType, QuantizeFn)> {
    vec![(QuantType::Q8_0, scalar_q8_0_act), (QuantType::Q8_1, scalar_q8_1_act), (QuantType::Q8_K, scalar_q8_k_act)]
}

/// # Safety
/// None beyond [`QuantizeFn`]'s length contract (safe code; `unsafe` only for the table type).
unsafe fn scalar_q8_0_act(x: &[f32], dst: &mut [u8]) {
    quant::legacy::quantize_row_q8_0_act(x, bytemuck::cast_slice_mut(dst))
}

/// # Safety
/// As [`scalar_q8_0_act`].
unsafe fn scalar_q8_1_act(x: &[f32], dst: &mut [u8]) {
    quant::legacy::quantize_row_q8_1_act(x, bytemuck::cast_slice_mut(dst))
}

/// # Safety
/// As [`scalar_q8_0_act`].
unsafe fn scalar_q8_k_act(x: &[f32], dst: &mut [u8]) {
    <quant::k::BlockQ8K as quant::Block>::quantize_row_ref(x, bytemuck::cast_slice_mut(dst))
}

fn build(isa: Isa) -> Option<Kernels> {
    if !isa.is_available() {
        return None;
    }
    let k = Kernels::scalar();
    Some(match isa {
        Isa::Scalar => k,
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX2/FMA/F16C availability checked by `is_available` above.
        Isa::Avx2 => k
            .with(Isa::Avx2, unsafe { x86::avx2::overrides() })
            .with(Isa::Avx2, unsafe { x86::avx2_iq::overrides() })
            .with_rows(unsafe { x86::avx2::rows_overrides() }),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: AVX-512 F/BW/VL/VNNI and AVX2/FMA/F16C checked by `is_available` above.
        Isa::Avx512 => k
            .with(Isa::Avx2, unsafe { x86::avx2::overrides() })
            .with(Isa::Avx2, unsafe { x86::avx2_iq::overrides() })
            .with_rows(unsafe { x86::avx2::rows_overrides() })
            .with(Isa::Avx512, unsafe { x86::avx512::overrides() })
            .with_rows(unsafe { x86::avx512::rows_overrides() })
            .with(Isa::Avx512, unsafe { x86::avx512_iq::overrides() })
            .with_rows(unsafe { x86::avx512_iq::rows_overrides() })
            .with_gemm(unsafe { x86::gemm_avx512::gemm_overrides() })
            .with_gemm(unsafe { x86::gemm16k_avx512::gemm_overrides() })
            .with_interleaved(unsafe { x86::gemm_avx512::interleaved_overrides() })
            .with_interleaved(unsafe { x86::gemm16k_avx512::interleaved_overrides() }),
        #[cfg(target_arch = "aarch64")]
        // SAFETY: NEON availability checked by `is_available` above.
        Isa::Neon => k.with(Isa::Neon, unsafe { aarch64::neon::overrides() }),
        #[allow(unreachable_patterns)]
        _ => return None,
    })
}

static TABLES: [OnceLock<Option<Kernels>>; 4] = [OnceLock::new(), OnceLock::new(), OnceLock::new(), OnceLock::new()];

/// The table of `isa`, or `None` if this machine cannot run it.
pub fn kernels_for(isa: Isa) -> Option<&'static Kernels> {
    TABLES[isa.index()].get_or_init(|| build(isa)).as_ref()
}

/// Every level this machine can run, lowest first (always starts with `Scalar`).
pub fn available_isas() -> Vec<Isa> {
    Isa::ALL.into_iter().filter(|i| i.is_available()).collect()
}

/// The best level this machine runs.
pub fn detected_isa() -> Isa {
    static DETECTED: OnceLock<Isa> = OnceLock::new();
    *DETECTED.get_or_init(|| available_isas().into_iter().max().unwrap_or(Isa::Scalar))
}

/// The level requested through `KQUANTS_ISA`, if set and recognized.
pub fn requested_isa() -> Option<Isa> {
    std::env::var("KQUANTS_ISA").ok().and_then(|s| Isa::from_name(&s))
}

/// The level in use: the detected one, lowered to `KQUANTS_ISA` when that is set (to the best
/// available level not above the request). Read once per process.
pub fn selected_isa() -> Isa {
    static SELECTED: OnceLock<Isa> = OnceLock::new();
    *SELECTED.get_or_init(|| match requested_isa() {
        None => detected_isa(),
        Some(req) => available_isas().into_iter().filter(|&i| i <= req).max().unwrap_or(Isa::Scalar),
    })
}

/// The table in use (see [`selected_isa`]).
pub fn kernels() -> &'static Kernels {
    // The selected level is available by construction, and Scalar always is.
    kernels_for(selected_isa()).or_else(|| kernels_for(Isa::Scalar)).expect("scalar table always builds")
}

/// Dot product of one row of `t` with one row of its activation type, using [`kernels`].
pub fn vec_dot(t: QuantType, n: usize, w: &[u8], a: &[u8]) -> Result<f32> {
    kernels().vec_dot(t, n, w, a)
}

/// Quantize activations to `t` (Q8_0/Q8_1/Q8_K) as ggml's matmul does, using [`kernels`].
pub fn quantize_act(t: QuantType, x: &[f32], dst: &mut [u8]) -> Result<()> {
    kernels().quantize_act(t, x, dst)
}

/// Weight rows are split between threads and tiles only at multiples of this many rows of a
/// matrix: multi-row kernels that work on groups of 16 rows then see the same groups whatever
/// the split, so the thread count never changes a result.
pub(crate) const ROW_GROUP: usize = 16;

/// How far ahead of the weight row being multiplied its bytes are prefetched. Measured on a
/// one-thread GEMV over 115 MB of Q4_1 (200000 x 576): 43 ns/256 values without a software
/// prefetch, 33 / 28 / 25 / 25 ns with 1, 2, 4 and 8 KiB (18 ns when the weight sits in L2).
pub(crate) const PREFETCH_AHEAD: usize = 4096;

/// Ask the cache hierarchy to start loading the bytes `[p, p + len)` (one hint per 64-byte
/// line). A hint only: it never faults, so the range may extend past the end of a buffer, and it
/// does nothing on targets without a prefetch instruction.
///
/// The quantized GEMV streams weights from DRAM; on the machines measured the hardware
/// prefetchers alone kept a one-thread Q4_1 GEMV at 3–4 GB/s, and a software prefetch 4 KiB
/// ahead brought it near the kernel's L2-resident speed (see `matmul`).
#[inline(always)]
pub(crate) fn prefetch(p: *const u8, len: usize) {
    let mut a = (p as usize) & !63;
    let end = (p as usize).wrapping_add(len);
    while a < end {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: PREFETCHT0 is part of SSE (baseline on x86-64); it is a hint that never
        // faults or reads architecturally, whatever the address.
        unsafe {
            core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(a as *const i8)
        };
        #[cfg(target_arch = "aarch64")]
        // SAFETY: PRFM is a hint that never faults, whatever the address; no memory is written.
        unsafe {
            core::arch::asm!("prfm pldl1keep, [{0}]", in(reg) a, options(nostack, preserves_flags, readonly))
        };
        a += 64;
    }
}

/// The IQ4_NL / IQ4_XS codebook (ggml `kvalues_iq4nl`, format data).
pub(crate) const KVALUES_IQ4NL: [i8; 16] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/// The 8 six-bit scales and 8 mins of a Q4_K/Q5_K block's 12 scale bytes as four
/// little-endian words of bytes: `[scales 0..4, scales 4..8, mins 0..4, mins 4..8]`.
#[inline(always)]
#[allow(dead_code)] // unused on targets without kernels
pub(crate) fn k4_scale_words(s: &[u8; 12]) -> [u32; 4] {
    let w = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    let (a, b, c) = (w(0), w(1), w(2));
    let sc_lo = a & 0x3f3f_3f3f;
    let mn_lo = b & 0x3f3f_3f3f;
    let sc_hi = (c & 0x0f0f_0f0f) | ((a >> 6) & 0x0303_0303) << 4;
    let mn_hi = ((c >> 4) & 0x0f0f_0f0f) | ((b >> 6) & 0x0303_0303) << 4;
    [sc_lo, sc_hi, mn_lo, mn_hi]
}

/// [`k4_scale_words`] as bytes: `(scales[0..8], mins[0..8])`.
#[inline(always)]
#[allow(dead_code)] // unused on targets without kernels
pub(crate) fn k4_scales_mins(s: &[u8; 12]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, w) in out.chunks_exact_mut(4).zip(k4_scale_words(s)) {
        o.copy_from_slice(&w.to_le_bytes());
    }
    out
}
