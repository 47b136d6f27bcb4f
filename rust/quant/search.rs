//! ggml's shared scale searches: given a group of values `x` (and optional importance weights),
//! pick a scale (and for asymmetric types a min) plus the integer levels that go with it.
//!
//! Every function here reproduces ggml's float32 arithmetic in ggml's operation order (ggml builds
//! its quantizers without FMA contraction; Rust never contracts), so the chosen levels and scales
//! are bit-identical. Integer levels are converted to `f32` wherever ggml's C promotes them.
//!
//! Notation used in the docs: `w_i` is the weight of value `x_i`, `l_i` its integer level.
#![forbid(unsafe_code)]

/// Smallest group maximum ggml treats as non-zero (`GROUP_MAX_EPS`).
pub const GROUP_MAX_EPS: f32 = 1e-15;

/// Round to the nearest integer, ties to even, as ggml's `nearest_int` does it: add
/// `1.5 * 2^23`, so the float's mantissa holds the rounded value, then read the low 23 bits back.
///
/// Exact for `|x| <= 4194303`. Outside that range the result is the same meaningless integer ggml
/// produces (ggml only asserts the range in debug builds); it never panics.
#[inline(always)]
pub fn nearest_int(x: f32) -> i32 {
    let v = x + 12_582_912.0f32;
    ((v.to_bits() as i32) & 0x007f_ffff) - 0x0040_0000
}

/// The weight ggml's `make_qx_quants` gives value `x` when no importance weights are passed.
#[inline(always)]
fn qx_weight(rmse_type: i32, x: f32) -> f32 {
    match rmse_type {
        1 => x * x,
        2 => 1.0,
        3 => x.abs(),
        _ => x.abs().sqrt(),
    }
}

/// Symmetric scale search (ggml `make_qx_quants`): levels `L_i = l_i + nmax` in `[0, 2*nmax)`
/// with `x_i ≈ scale * l_i`, `l_i ∈ [-nmax, nmax-1]`. Returns the scale (0 for an all-zero group).
///
/// Let `m` be the value of largest magnitude (first one on ties). The starting inverse scale is
/// `iscale = -nmax / m`, so `m` maps to level `-nmax` (the side with one more level).
/// - `rmse_type == 0`: levels are `round(iscale * x_i)` clamped; the scale is `1 / iscale`.
/// - otherwise the weighted least-squares scale for those levels is
///   `scale = Σ w_i x_i l_i / Σ w_i l_i²`, with `w_i = qw[i]` if given, else by `|rmse_type|`:
///   1 → `x²`, 2 → 1, 3 → `|x|`, 4 → `sqrt|x|`.
///   - `rmse_type < 0` stops here and returns `(scale + 1/iscale) / 2` (or `1/iscale` when
///     `Σ w l² = 0`), keeping the levels.
///   - `rmse_type > 0` then tries `iscale = -(nmax + 0.1 * is) / m` for `is = -9..=9, is != 0`,
///     keeping the candidate that maximizes `(Σ w x l)² / Σ w l²` (equivalently minimizes the
///     weighted squared error at its optimal scale), strictly better than the current best.
///
/// `l` receives `x.len()` levels; `l.len()` must be at least `x.len()`, and `qw`, when given,
/// at least `x.len()` long.
pub fn make_qx_quants(nmax: i32, x: &[f32], l: &mut [i8], rmse_type: i32, qw: Option<&[f32]>) -> f32 {
    let n = x.len();
    let l = &mut l[..n];
    let mut max = 0.0f32;
    let mut amax = 0.0f32;
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let nmaxf = nmax as f32;
    let clamp = |v: i32| v.clamp(-nmax, nmax - 1);
    let mut iscale = -nmaxf / max;
    if rmse_type == 0 {
        for (li, &v) in l.iter_mut().zip(x) {
            *li = (nmax + clamp(nearest_int(iscale * v))) as i8;
        }
        return 1.0 / iscale;
    }
    let return_early = rmse_type < 0;
    let rmse_type = rmse_type.abs();
    let weight = |i: usize| match qw {
        Some(w) => w[i],
        None => qx_weight(rmse_type, x[i]),
    };
    let mut sumlx = 0.0f32;
    let mut suml2 = 0.0f32;
    for i in 0..n {
        let li = clamp(nearest_int(iscale * x[i]));
        l[i] = (li + nmax) as i8;
        let w = weight(i);
        let lf = li as f32;
        sumlx += w * x[i] * lf;
        suml2 += w * lf * lf;
    }
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    if return_early {
        return if suml2 > 0.0 { 0.5 * (scale + 1.0 / iscale) } else { 1.0 / iscale };
    }
    let mut best = scale * sumlx;
    for is in -9i32..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmaxf + 0.1f32 * is as f32) / max;
        sumlx = 0.0;
        suml2 = 0.0;
        for i in 0..n {
            let lf = clamp(nearest_int(iscale * x[i])) as f32;
            let w = weight(i);
            sumlx += w * x[i] * lf;
            suml2 += w * lf * lf;
        }
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (li, &v) in l.iter_mut().zip(x) {
                *li = (nmax + clamp(nearest_int(iscale * v))) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Asymmetric scale-and-min search (ggml `make_qkx3_quants`): levels `l_i ∈ [0, nmax]` with
/// `x_i ≈ scale * l_i - min`. Returns `(scale, min)` where `min >= 0` is the value ggml stores
/// through its `the_min` out-pointer (the negated offset).
///
/// Weights are `weights[i]` if given, else `x_i²`. The offset starts at `min(0, min_i x_i)` (it is
/// never positive) and the scale at `(max - offset) / nmax`; if all values are equal and
/// non-negative the levels are zero and the scale is 0. With `nstep >= 1` it then tries
/// `iscale = (rmin + rdelta * is + nmax) / (max - offset)` for `is = 0..=nstep`, fitting scale and
/// offset by weighted least squares on the resulting levels:
/// `D = Σw Σw l² - (Σw l)²`, `scale = (Σw Σw x l - Σw x Σw l) / D`,
/// `offset = (Σw l² Σw x - Σw l Σw x l) / D` (if the offset comes out positive it is set to 0 and
/// `scale = Σw x l / Σw l²`). A candidate replaces the current one when its weighted error
/// `Σ w_i e_i` is strictly smaller, `e_i = |scale l_i + offset - x_i|` if `use_mad` else its square.
///
/// `l` and `laux` (scratch) must be at least `x.len()` long, as must `weights` when given.
/// `x` must not be empty.
#[allow(clippy::too_many_arguments)]
pub fn make_qkx3_quants(
    nmax: i32,
    x: &[f32],
    weights: Option<&[f32]>,
    l: &mut [u8],
    laux: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    let n = x.len();
    let l = &mut l[..n];
    let laux = &mut laux[..n];
    let weight = |i: usize| match weights {
        Some(w) => w[i],
        None => x[i] * x[i],
    };
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weight(0);
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weight(i);
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max <= min {
        l.fill(0);
        return (0.0, -min);
    }
    let nmaxf = nmax as f32;
    let clamp = |v: i32| v.clamp(0, nmax);
    let mut iscale = nmaxf / (max - min);
    let mut scale = 1.0 / iscale;
    let err = |d: f32| if use_mad { d.abs() } else { d * d };
    let mut best_mad = 0.0f32;
    for i in 0..n {
        let li = clamp(nearest_int(iscale * (x[i] - min))) as u8;
        l[i] = li;
        let diff = scale * li as f32 + min - x[i];
        best_mad += weight(i) * err(diff);
    }
    if nstep < 1 {
        return (scale, -min);
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmaxf) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let li = clamp(nearest_int(iscale * (x[i] - min)));
            laux[i] = li as u8;
            let w = weight(i);
            let lf = li as f32;
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * x[i];
        }
        let d = sum_w * sum_l2 - sum_l * sum_l;
        if d > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / d;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut mad = 0.0f32;
            for i in 0..n {
                let diff = this_scale * laux[i] as f32 + this_min - x[i];
                mad += weight(i) * err(diff);
            }
            if mad < best_mad {
                l.copy_from_slice(laux);
                best_mad = mad;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_rounds_half_to_even() {
        let cases = [(0.5, 0), (1.5, 2), (2.5, 2), (-0.5, 0), (-1.5, -2), (-2.5, -2), (0.49999997, 0), (3.7, 4)];
        for (x, want) in cases {
            assert_eq!(nearest_int(x), want, "nearest_int({x})");
        }
        for i in -4_194_303..=4_194_303i32 {
            if i % 997 == 0 {
                assert_eq!(nearest_int(i as f32), i);
                assert_eq!(nearest_int(i as f32 + 0.25), i);
            }
        }
    }

    #[test]
    fn nearest_int_out_of_range_does_not_panic() {
        for x in [f32::MAX, f32::MIN, 1e30, -1e30, f32::NAN, f32::INFINITY, 65504.0 * 1e6] {
            let _ = nearest_int(x);
        }
    }

    #[test]
    fn qx_zero_group_gives_zero() {
        let x = [0.0f32; 16];
        let mut l = [7i8; 16];
        assert_eq!(make_qx_quants(8, &x, &mut l, 1, None), 0.0);
        assert!(l.iter().all(|&v| v == 0));
    }

    #[test]
    fn qx_levels_reconstruct_exact_grid() {
        // Values already on a symmetric grid come back exactly.
        let x: Vec<f32> = (0..16).map(|i| 0.25 * (i as f32 - 8.0)).collect();
        let mut l = [0i8; 16];
        let d = make_qx_quants(8, &x, &mut l, 1, None);
        for (i, &v) in x.iter().enumerate() {
            assert_eq!(d * (l[i] as i32 - 8) as f32, v);
        }
    }

    #[test]
    fn qkx3_constant_positive_group() {
        let x = [2.0f32; 32];
        let (mut l, mut aux) = ([9u8; 32], [0u8; 32]);
        let (d, m) = make_qkx3_quants(15, &x, None, &mut l, &mut aux, -0.9, 0.05, 36, false);
        // min is clamped to 0, so the range is [0, 2]: all values map to level 15.
        assert!(l.iter().all(|&v| v == 15));
        assert_eq!(m, 0.0);
        assert!((d * 15.0 - 2.0).abs() < 1e-6);
        let x = [-1.0f32; 32];
        let (d, m) = make_qkx3_quants(15, &x, None, &mut l, &mut aux, -0.9, 0.05, 36, false);
        assert_eq!((d, m), (0.0, 1.0));
        assert!(l.iter().all(|&v| v == 0));
    }
}
