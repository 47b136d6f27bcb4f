//! Float-weight matrix products (F32, F16, BF16 weights times f32 activations) for the model's
//! linear layers, without packing: `out[t * ldo + i] = Σ_k w[i, k] · x[t, k]`.
//!
//! Every output is one chain of fused multiply-adds over `k` in vector-width steps (one lane per
//! residue of `k` modulo the width, a masked load for the tail), then a horizontal sum: the same
//! operations in the same order whatever tile computes it. So a batch gives the same bits as one
//! token at a time and the thread split never matters, as for the quantized kernels. Tiles of 4
//! weight rows × 4 tokens keep 16 chains in flight for prompts; generation (one token) streams 4
//! rows at a time, bound by memory bandwidth rather than by a packing copy of the weights.
//!
//! The order differs between instruction-set levels (16 lanes with AVX-512, 8 with AVX2, one
//! sequential sum for the portable version), which only one of runs in a process.

use crate::error::{Error, Result};
use crate::types::QuantType;

use super::Isa;

/// The weight element types this module multiplies.
pub fn supports(t: QuantType) -> bool {
    matches!(t, QuantType::F32 | QuantType::F16 | QuantType::BF16)
}

/// `out[t * ldo + i] = Σ_k w_i[k] · x[t * k + k']` for the `nr` rows of `w` (type `ty`, `k`
/// values each) and the `m` rows of `x`, using the selected instruction set.
#[allow(clippy::too_many_arguments)]
pub fn float_gemm(ty: QuantType, k: usize, w: &[u8], nr: usize, x: &[f32], m: usize, out: &mut [f32], ldo: usize) -> Result<()> {
    float_gemm_at(super::selected_isa(), ty, k, w, nr, x, m, out, ldo)
}

/// [`float_gemm`] at level `isa` (the portable version for levels without a kernel here).
#[allow(clippy::too_many_arguments)]
pub fn float_gemm_at(isa: Isa, ty: QuantType, k: usize, w: &[u8], nr: usize, x: &[f32], m: usize, out: &mut [f32], ldo: usize) -> Result<()> {
    if !isa.is_available() {
        return Err(Error::value(format!("instruction set {isa:?} is not available on this machine")));
    }
    let es = match ty {
        QuantType::F32 => 4,
        QuantType::F16 | QuantType::BF16 => 2,
        _ => return Err(Error::Unsupported { ty, op: "float matmul" }),
    };
    if w.len() != nr * k * es || x.len() != m * k || (m > 0 && nr > 0 && (ldo < nr || out.len() < (m - 1) * ldo + nr)) {
        return Err(Error::value("float_gemm: buffer sizes do not match the shapes"));
    }
    if m == 0 || nr == 0 {
        return Ok(());
    }
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the selected level is available on this machine; lengths checked above.
        Isa::Avx512 => unsafe { x86::gemm512(ty, k, w, nr, x, m, out, ldo) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { x86::gemm256(ty, k, w, nr, x, m, out, ldo) },
        _ => portable(ty, k, w, nr, x, m, out, ldo),
    }
    Ok(())
}

/// Weight value `j` of a row of `ty`.
#[inline]
fn weight(ty: QuantType, row: &[u8], j: usize) -> f32 {
    match ty {
        QuantType::F32 => f32::from_le_bytes([row[4 * j], row[4 * j + 1], row[4 * j + 2], row[4 * j + 3]]),
        QuantType::F16 => half::f16::from_bits(u16::from_le_bytes([row[2 * j], row[2 * j + 1]])).to_f32(),
        _ => f32::from_bits((u16::from_le_bytes([row[2 * j], row[2 * j + 1]]) as u32) << 16),
    }
}

/// The portable version: one sequential sum per output.
#[allow(clippy::too_many_arguments)]
fn portable(ty: QuantType, k: usize, w: &[u8], nr: usize, x: &[f32], m: usize, out: &mut [f32], ldo: usize) {
    let rb = w.len() / nr;
    for i in 0..nr {
        let row = &w[i * rb..(i + 1) * rb];
        for t in 0..m {
            let xr = &x[t * k..(t + 1) * k];
            let mut s = 0f32;
            for (j, xv) in xr.iter().enumerate() {
                s += weight(ty, row, j) * xv;
            }
            out[t * ldo + i] = s;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::*;

    use crate::types::QuantType;

    /// Generates one instruction-set level: `$gemm` over tiles of `$tile` (R rows × C tokens),
    /// with `$load` turning `$w` weight elements at a pointer (with a tail mask) into a vector.
    macro_rules! level {
        ($gemm:ident, $tile:ident, $feat:literal, $v:ty, $lanes:expr, $zero:expr, $fma:ident, $reduce:expr,
         $loadx:expr, $load32:expr, $load16h:expr, $load16b:expr) => {
            /// # Safety
            /// The instruction set of this level is available; lengths as checked by
            /// [`super::float_gemm`].
            #[allow(clippy::too_many_arguments)]
            #[target_feature(enable = $feat)]
            pub(super) unsafe fn $gemm(ty: QuantType, k: usize, w: &[u8], nr: usize, x: &[f32], m: usize, out: &mut [f32], ldo: usize) {
                // SAFETY (whole body): tiles only address rows < nr of `w`, rows < m of `x`, and
                // outputs (t, i) with t < m, i < nr inside `out` (lengths checked by the caller).
                unsafe {
                    match ty {
                        QuantType::F32 => run::<0>(k, w, nr, x, m, out, ldo),
                        QuantType::F16 => run::<1>(k, w, nr, x, m, out, ldo),
                        _ => run::<2>(k, w, nr, x, m, out, ldo),
                    }
                }

                #[allow(clippy::too_many_arguments)]
                #[target_feature(enable = $feat)]
                unsafe fn run<const E: u8>(k: usize, w: &[u8], nr: usize, x: &[f32], m: usize, out: &mut [f32], ldo: usize) {
                    let rb = w.len() / nr;
                    let mut i = 0;
                    while i < nr {
                        let r = if nr - i >= 4 { 4 } else { 1 };
                        let mut t = 0;
                        while t < m {
                            let c = if m - t >= 4 { 4 } else { 1 };
                            // SAFETY: rows i..i+r and tokens t..t+c exist (see above).
                            unsafe {
                                match (r, c) {
                                    (4, 4) => $tile::<E, 4, 4>(k, w.as_ptr().add(i * rb), rb, x.as_ptr().add(t * k), out.as_mut_ptr().add(t * ldo + i), ldo),
                                    (4, _) => $tile::<E, 4, 1>(k, w.as_ptr().add(i * rb), rb, x.as_ptr().add(t * k), out.as_mut_ptr().add(t * ldo + i), ldo),
                                    (_, 4) => $tile::<E, 1, 4>(k, w.as_ptr().add(i * rb), rb, x.as_ptr().add(t * k), out.as_mut_ptr().add(t * ldo + i), ldo),
                                    _ => $tile::<E, 1, 1>(k, w.as_ptr().add(i * rb), rb, x.as_ptr().add(t * k), out.as_mut_ptr().add(t * ldo + i), ldo),
                                }
                            }
                            t += c;
                        }
                        i += r;
                    }
                }
            }

            /// `R` weight rows (stride `rb` bytes) × `C` tokens (stride `k` floats).
            ///
            /// # Safety
            /// `R` rows of `k` elements at `w`, `C` rows of `k` floats at `x`, outputs `(c, r)`
            /// at `out + c * ldo + r` writable.
            #[inline]
            #[target_feature(enable = $feat)]
            unsafe fn $tile<const E: u8, const R: usize, const C: usize>(k: usize, w: *const u8, rb: usize, x: *const f32, out: *mut f32, ldo: usize) {
                let es = if E == 0 { 4 } else { 2 };
                let mut acc: [[$v; C]; R] = [[$zero; C]; R];
                let mut j = 0;
                // SAFETY: every load reads lanes j..j+len of a row (masked past k); see the caller.
                unsafe {
                    while j < k {
                        let len = ($lanes).min(k - j);
                        let mut wv: [$v; R] = [$zero; R];
                        for r in 0..R {
                            let p = w.add(r * rb + j * es);
                            wv[r] = match E {
                                0 => $load32(p as *const f32, len),
                                1 => $load16h(p, len),
                                _ => $load16b(p, len),
                            };
                        }
                        for c in 0..C {
                            let xv = $loadx(x.add(c * k + j), len);
                            for r in 0..R {
                                acc[r][c] = $fma(wv[r], xv, acc[r][c]);
                            }
                        }
                        j += $lanes;
                    }
                    for r in 0..R {
                        for c in 0..C {
                            *out.add(c * ldo + r) = $reduce(acc[r][c]);
                        }
                    }
                }
            }
        };
    }

    // AVX-512: 16 lanes, masked loads for the tail.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    unsafe fn mask16(len: usize) -> __mmask16 {
        if len >= 16 {
            0xffff
        } else {
            ((1u32 << len) - 1) as __mmask16
        }
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    unsafe fn l512_f32(p: *const f32, len: usize) -> __m512 {
        // SAFETY: lanes below `len` are readable (caller); masked lanes are not accessed.
        unsafe { _mm512_maskz_loadu_ps(mask16(len), p) }
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    unsafe fn l512_f16(p: *const u8, len: usize) -> __m512 {
        // SAFETY: as `l512_f32`.
        unsafe { _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask16(len), p as *const i16)) }
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    unsafe fn l512_bf16(p: *const u8, len: usize) -> __m512 {
        // SAFETY: as `l512_f32`.
        unsafe { _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask16(len), p as *const i16)), 16)) }
    }

    level!(
        gemm512, tile512, "avx512f,avx512bw,avx512vl,avx2,fma,f16c", __m512, 16, _mm512_setzero_ps(), _mm512_fmadd_ps,
        _mm512_reduce_add_ps, l512_f32, l512_f32, l512_f16, l512_bf16
    );

    // AVX2: 8 lanes; the tail goes through a zero-padded copy.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn l256_f32(p: *const f32, len: usize) -> __m256 {
        // SAFETY: `len` floats readable at `p` (caller).
        unsafe {
            if len >= 8 {
                _mm256_loadu_ps(p)
            } else {
                let mut b = [0f32; 8];
                core::ptr::copy_nonoverlapping(p, b.as_mut_ptr(), len);
                _mm256_loadu_ps(b.as_ptr())
            }
        }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn l256_16(p: *const u8, len: usize) -> __m128i {
        // SAFETY: `2 * len` bytes readable at `p` (caller).
        unsafe {
            if len >= 8 {
                _mm_loadu_si128(p as *const __m128i)
            } else {
                let mut b = [0u8; 16];
                core::ptr::copy_nonoverlapping(p, b.as_mut_ptr(), 2 * len);
                _mm_loadu_si128(b.as_ptr() as *const __m128i)
            }
        }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn l256_f16(p: *const u8, len: usize) -> __m256 {
        // SAFETY: as `l256_16`.
        unsafe { _mm256_cvtph_ps(l256_16(p, len)) }
    }
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn l256_bf16(p: *const u8, len: usize) -> __m256 {
        // SAFETY: as `l256_16`.
        unsafe { _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(l256_16(p, len)), 16)) }
    }

    level!(
        gemm256, tile256, "avx2,fma,f16c", __m256, 8, _mm256_setzero_ps(), _mm256_fmadd_ps, super::super::x86::avx2::hsum_ps,
        l256_f32, l256_f32, l256_f16, l256_bf16
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every level this machine runs against an f64 product, and batch == one token at a time.
    #[test]
    fn tiles_agree_with_single_rows_and_f64() {
        let (k, nr, m) = (37usize, 9usize, 6usize);
        let wf: Vec<f32> = (0..nr * k).map(|i| ((i * 7919 % 211) as f32 - 105.0) / 64.0).collect();
        let x: Vec<f32> = (0..m * k).map(|i| ((i * 104729 % 199) as f32 - 99.0) / 32.0).collect();
        for (isa, ty) in super::super::available_isas().into_iter().flat_map(|i| [QuantType::F32, QuantType::F16, QuantType::BF16].map(|t| (i, t))) {
            let float_gemm = |ty, k, w: &[u8], nr, x: &[f32], m, out: &mut [f32], ldo| float_gemm_at(isa, ty, k, w, nr, x, m, out, ldo);
            let w: Vec<u8> = match ty {
                QuantType::F32 => wf.iter().flat_map(|v| v.to_le_bytes()).collect(),
                QuantType::F16 => wf.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect(),
                _ => wf.iter().flat_map(|v| half::bf16::from_f32(*v).to_le_bytes()).collect(),
            };
            let mut all = vec![0f32; m * nr];
            float_gemm(ty, k, &w, nr, &x, m, &mut all, nr).unwrap();
            let rb = w.len() / nr;
            for t in 0..m {
                let mut one = vec![0f32; nr];
                float_gemm(ty, k, &w, nr, &x[t * k..(t + 1) * k], 1, &mut one, nr).unwrap();
                for i in 0..nr {
                    let mut single = [0f32];
                    float_gemm(ty, k, &w[i * rb..(i + 1) * rb], 1, &x[t * k..(t + 1) * k], 1, &mut single, 1).unwrap();
                    let v = all[t * nr + i];
                    assert_eq!(v.to_bits(), one[i].to_bits(), "{isa:?} {ty} ({t},{i}) batch vs token");
                    assert_eq!(v.to_bits(), single[0].to_bits(), "{isa:?} {ty} ({t},{i}) tile vs single row");
                    let row = &w[i * rb..(i + 1) * rb];
                    let exact: f64 = (0..k).map(|j| weight(ty, row, j) as f64 * x[t * k + j] as f64).sum();
                    let mag: f64 = (0..k).map(|j| (weight(ty, row, j) as f64 * x[t * k + j] as f64).abs()).sum();
                    // f32 accumulation of k products: |error| <= k·eps·Σ|w·x| (eps = 2^-24).
                    assert!((v as f64 - exact).abs() <= k as f64 * 6e-8 * mag, "{isa:?} {ty} ({t},{i}): {v} vs {exact}");
                }
            }
        }
        assert!(float_gemm(QuantType::F32, k, &[0u8; 4], 1, &x, m, &mut [0f32; 1], 1).is_err());
        assert!(float_gemm(QuantType::Q4_0, 32, &[0u8; 18], 1, &x[..32], 1, &mut [0f32; 1], 1).is_err());
    }
}
