//! Target-feature clones of the portable codecs ([`crate::quant::Block`] implementations).
//!
//! The codecs are written as plain Rust over fixed-size arrays so that LLVM vectorizes them; this
//! module compiles each codec's row functions once more per x86 level (`#[target_feature]`), so
//! the same source runs on 8 or 16 lanes when the CPU has AVX2 or AVX-512. The results are the
//! same bits at every level: Rust never contracts `a * b + c` into an FMA and every float
//! operation keeps IEEE semantics whatever the target features, so only the instructions change,
//! not the float32 operation order (tests: `tests/codec_isa.rs` compares every level with the
//! scalar build on edge values; the golden tests run under each `KQUANTS_ISA`).
//!
//! The codec table (`crate::quant::Codec`) stores a [`CodecClones`] per type; [`select`] picks
//! the row functions of an ISA level, checking that the machine runs it. This is the only place
//! codec functions are chosen by ISA.

use crate::error::{Error, Result};
use crate::quant::{Block, Path};
use crate::types::QuantType;

use super::Isa;

#[cfg(target_arch = "x86_64")]
mod float512;
#[cfg(target_arch = "x86_64")]
mod k512;
#[cfg(target_arch = "x86_64")]
mod legacy512;

type QuantizeRow = unsafe fn(&[f32], &mut [u8], Option<&[f32]>);
type QuantizeRowRef = unsafe fn(&[f32], &mut [u8]);
type DequantizeRow = unsafe fn(&[u8], &mut [f32]);
/// A plain quantizer fused with the non-finite scan: `Some(i)` for the first NaN or infinity
/// `src[i]` (the output bytes are then unspecified).
type QuantizeRowChecked = unsafe fn(&[f32], &mut [u8]) -> Option<usize>;
type FirstNonFinite = unsafe fn(&[f32]) -> Option<usize>;

/// One codec's row functions at one ISA level.
///
/// Safety contract of the pointers: the level's instructions are available, `dst`/`src` byte
/// slices hold whole blocks, and the float slices the matching number of values (the
/// [`Block`] contract; `bytemuck` casts panic on partial blocks, never read out of bounds).
#[derive(Clone, Copy)]
struct RowFns {
    quantize: QuantizeRow,
    quantize_ref: QuantizeRowRef,
    dequantize: DequantizeRow,
    /// A hand-written kernel that quantizes (the bytes of `quantize_ref`, which are also those
    /// of `quantize` without an importance matrix) and finds non-finite input in one pass.
    checked: Option<QuantizeRowChecked>,
}

/// The row functions of one codec at every ISA level this build has clones for.
#[derive(Clone, Copy)]
pub struct CodecClones {
    /// The codec's type (for the hand-written kernels that replace a clone).
    ty: QuantType,
    /// Indexed by [`Isa::index`]; `None` where there is no clone (the scalar build is used).
    by_isa: [Option<RowFns>; 4],
}

fn scalar_quantize<B: Block>(src: &[f32], dst: &mut [u8], imatrix: Option<&[f32]>) {
    B::quantize_row(src, bytemuck::cast_slice_mut(dst), imatrix)
}
fn scalar_quantize_ref<B: Block>(src: &[f32], dst: &mut [u8]) {
    B::quantize_row_ref(src, bytemuck::cast_slice_mut(dst))
}
fn scalar_dequantize<B: Block>(src: &[u8], dst: &mut [f32]) {
    B::dequantize_row(bytemuck::cast_slice(src), dst)
}

/// Generates one module of `#[target_feature]` clones of the generic row functions.
#[cfg(target_arch = "x86_64")]
macro_rules! clone_level {
    ($name:ident, $features:literal) => {
        mod $name {
            use crate::quant::Block;

            /// # Safety
            /// The CPU supports the level's features (see [`super::RowFns`]).
            #[target_feature(enable = $features)]
            pub(in crate::simd::codec) unsafe fn quantize<B: Block>(src: &[f32], dst: &mut [u8], imatrix: Option<&[f32]>) {
                B::quantize_row(src, bytemuck::cast_slice_mut(dst), imatrix)
            }

            /// # Safety
            /// As [`quantize`].
            #[target_feature(enable = $features)]
            pub(super) unsafe fn quantize_ref<B: Block>(src: &[f32], dst: &mut [u8]) {
                B::quantize_row_ref(src, bytemuck::cast_slice_mut(dst))
            }

            /// # Safety
            /// As [`quantize`].
            #[target_feature(enable = $features)]
            pub(super) unsafe fn first_non_finite(x: &[f32]) -> Option<usize> {
                super::first_non_finite_portable(x)
            }

            /// # Safety
            /// As [`quantize`].
            #[target_feature(enable = $features)]
            pub(super) unsafe fn dequantize<B: Block>(src: &[u8], dst: &mut [f32]) {
                B::dequantize_row(bytemuck::cast_slice(src), dst)
            }
        }
    };
}

// The feature lists are those `Isa::is_available` checks for each level.
#[cfg(target_arch = "x86_64")]
clone_level!(avx2, "avx2,fma,f16c");
#[cfg(target_arch = "x86_64")]
clone_level!(avx512, "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c");

impl CodecClones {
    /// The clones of block type `B`'s row functions.
    pub const fn of<B: Block>() -> CodecClones {
        let scalar = RowFns {
            quantize: scalar_quantize::<B>,
            quantize_ref: scalar_quantize_ref::<B>,
            dequantize: scalar_dequantize::<B>,
            checked: None,
        };
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = RowFns {
                quantize: avx2::quantize::<B>,
                quantize_ref: avx2::quantize_ref::<B>,
                dequantize: avx2::dequantize::<B>,
                checked: None,
            };
            let avx512 = RowFns {
                quantize: avx512::quantize::<B>,
                quantize_ref: avx512::quantize_ref::<B>,
                dequantize: avx512::dequantize::<B>,
                checked: None,
            };
            CodecClones { ty: B::TYPE, by_isa: [Some(scalar), Some(avx2), Some(avx512), None] }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            CodecClones { ty: B::TYPE, by_isa: [Some(scalar), None, None, None] }
        }
    }
}

/// A codec's row functions resolved for an ISA level the machine runs.
#[derive(Clone, Copy)]
pub struct RowCodec {
    f: RowFns,
    isa: Isa,
    /// The non-finite scan of the same level.
    finite: FirstNonFinite,
}

impl RowCodec {
    /// The level whose clone runs (lower than requested when the codec has none at that level).
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Quantize one row into whole blocks (`Block::quantize_row`).
    #[inline]
    pub fn quantize(&self, src: &[f32], dst: &mut [u8], imatrix: Option<&[f32]>) {
        // SAFETY: `select` built this only for an available level; slices are checked by the
        // bytemuck cast inside (a partial block panics, nothing reads out of bounds).
        unsafe { (self.f.quantize)(src, dst, imatrix) }
    }

    /// `Block::quantize_row_ref` on one row.
    #[inline]
    pub fn quantize_ref(&self, src: &[f32], dst: &mut [u8]) {
        // SAFETY: as in `quantize`.
        unsafe { (self.f.quantize_ref)(src, dst) }
    }

    /// Quantize one row (`quantize` on [`crate::quant::Path::Chunk`], `quantize_ref` on
    /// [`crate::quant::Path::Ref`]) unless it holds a NaN or infinity: `Some(i)` for the first
    /// one, `src[i]` (the bytes of `dst` are then unspecified). Where the codec has a fused
    /// kernel (the plain legacy quantizers, F16 and BF16 at AVX-512), the values are checked
    /// while they are quantized; otherwise the scan runs first, while the row comes into cache.
    #[inline]
    pub fn quantize_checked(&self, src: &[f32], dst: &mut [u8], imatrix: Option<&[f32]>, path: Path) -> Option<usize> {
        if let (Some(f), None) = (self.f.checked, imatrix) {
            // SAFETY: as in `quantize`; without an importance matrix both paths are this kernel.
            return unsafe { f(src, dst) };
        }
        // SAFETY: `select` built this only for an available level; the scan only reads `src`.
        if let Some(i) = unsafe { (self.finite)(src) } {
            return Some(i);
        }
        match path {
            Path::Chunk => self.quantize(src, dst, imatrix),
            Path::Ref => self.quantize_ref(src, dst),
        }
        None
    }

    /// `Block::dequantize_row` on whole blocks.
    #[inline]
    pub fn dequantize(&self, src: &[u8], dst: &mut [f32]) {
        // SAFETY: as in `quantize`.
        unsafe { (self.f.dequantize)(src, dst) }
    }
}

/// The row functions of `clones` for `isa`: the best clone at or below it. Errors if the machine
/// cannot run `isa`.
pub fn select(clones: &CodecClones, isa: Isa) -> Result<RowCodec> {
    if !isa.is_available() {
        return Err(Error::value(format!("this machine cannot run {isa} code")));
    }
    let mut level = isa.index();
    loop {
        if let Some(f) = clones.by_isa[level] {
            let isa = Isa::ALL[level];
            return Ok(RowCodec { f: with_kernels(clones, isa, f), isa, finite: finite_scan(isa) });
        }
        if level == 0 {
            // Unreachable: `of` always fills the scalar slot.
            return Err(Error::value("codec has no scalar build"));
        }
        level -= 1;
    }
}

/// `f` with the hand-written kernels of `isa` for the codec's type put in place of the clones
/// (at AVX-512: the plain quantizers of the legacy types, `legacy512`, F16/BF16 both ways,
/// `float512`, and the Q2_K/Q3_K dequantizers, `k512`), and the AVX2 clone kept where LLVM's
/// AVX-512 build of a dequantizer measured slower (`examples/isa_timing.rs`, repeated runs): the
/// 16-entry codebook types (IQ4_NL, IQ4_XS, MXFP4, NVFP4), whose table lookups become gathers
/// (1.5-4x slower), and the plain scale-times-integer loops of Q4_0, Q8_0, Q8_1, Q4_K, Q8_K
/// and TQ2_0 (15-50% slower in zmm registers).
fn with_kernels(clones: &CodecClones, isa: Isa, f: RowFns) -> RowFns {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        use QuantType as T;
        let avx2_dequantize = clones.by_isa[Isa::Avx2.index()].map_or(f.dequantize, |a| a.dequantize);
        let kernels = |quantize: QuantizeRow,
                       quantize_ref: QuantizeRowRef,
                       dequantize: DequantizeRow,
                       checked: Option<QuantizeRowChecked>| RowFns { quantize, quantize_ref, dequantize, checked };
        use legacy512 as l;
        match clones.ty {
            T::Q4_0 => return kernels(l::quantize_q4_0, l::quantize_q4_0_ref, l::dequantize_q4_0, Some(l::quantize_q4_0_checked)),
            T::Q4_1 => return kernels(l::quantize_q4_1, l::quantize_q4_1_ref, f.dequantize, Some(l::quantize_q4_1_checked)),
            T::Q5_0 => return kernels(l::quantize_q5_0, l::quantize_q5_0_ref, f.dequantize, Some(l::quantize_q5_0_checked)),
            T::Q5_1 => return kernels(l::quantize_q5_1, l::quantize_q5_1_ref, f.dequantize, Some(l::quantize_q5_1_checked)),
            T::Q8_0 => return kernels(l::quantize_q8_0, l::quantize_q8_0_ref, avx2_dequantize, Some(l::quantize_q8_0_checked)),
            T::Q8_1 => return kernels(l::quantize_q8_1, l::quantize_q8_1_ref, avx2_dequantize, Some(l::quantize_q8_1_checked)),
            T::F16 => {
                let checked = Some(float512::quantize_f16_checked as QuantizeRowChecked);
                return kernels(float512::quantize_f16, float512::quantize_f16_ref, float512::dequantize_f16, checked);
            }
            T::BF16 => {
                let checked = Some(float512::quantize_bf16_checked as QuantizeRowChecked);
                return kernels(float512::quantize_bf16, float512::quantize_bf16_ref, avx2_dequantize, checked);
            }
            T::Q2_K => return kernels(f.quantize, f.quantize_ref, k512::dequantize_q2_k, None),
            T::Q3_K => return kernels(f.quantize, f.quantize_ref, k512::dequantize_q3_k, None),
            _ => {}
        }
        match clones.ty {
            T::IQ4_NL | T::IQ4_XS | T::MXFP4 | T::NVFP4 | T::Q4_K | T::Q8_K | T::TQ2_0 => {
                if let Some(avx2) = clones.by_isa[Isa::Avx2.index()] {
                    return RowFns { dequantize: avx2.dequantize, ..f };
                }
            }
            _ => {}
        }
    }
    let _ = (clones, isa);
    f
}

/// Index of the first NaN or infinity in `x`: a branch-free scan of 64-value chunks (which
/// vectorizes), then the exact position inside the chunk that has one.
#[inline(always)]
fn first_non_finite_portable(x: &[f32]) -> Option<usize> {
    const C: usize = 64;
    let mut chunks = x.chunks_exact(C);
    let mut base = 0;
    for c in &mut chunks {
        let mut acc = 0u32;
        for &v in c {
            // Exponent all ones: infinity or NaN.
            acc |= ((v.to_bits() & 0x7f80_0000) == 0x7f80_0000) as u32;
        }
        if acc != 0 {
            return c.iter().position(|v| !v.is_finite()).map(|j| base + j);
        }
        base += C;
    }
    chunks.remainder().iter().position(|v| !v.is_finite()).map(|j| base + j)
}

/// # Safety
/// None (safe code; `unsafe` only for the pointer type).
unsafe fn scalar_first_non_finite(x: &[f32]) -> Option<usize> {
    first_non_finite_portable(x)
}

/// The non-finite scan compiled for `isa` (which the caller has checked the machine runs).
fn finite_scan(isa: Isa) -> FirstNonFinite {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => avx2::first_non_finite,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => avx512::first_non_finite,
        _ => scalar_first_non_finite,
    }
}
