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
    let iscale = -nmaxf / max;
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
    // The 18 candidate scales are independent: accumulate all of them in one pass over the
    // values (each candidate's sums keep ggml's order over i, so they are bit-identical), then
    // pick in ggml's order.
    const NC: usize = 18;
    let mut isc = [0.0f32; NC];
    for (c, s) in isc.iter_mut().enumerate() {
        let is = if c < 9 { c as i32 - 9 } else { c as i32 - 8 };
        *s = -(nmaxf + 0.1f32 * is as f32) / max;
    }
    let (mut slx, mut sl2) = ([0.0f32; NC], [0.0f32; NC]);
    for (i, &xi) in x.iter().enumerate() {
        let w = weight(i);
        let wx = w * xi;
        for c in 0..NC {
            let lf = clamp(nearest_int(isc[c] * xi)) as f32;
            slx[c] += wx * lf;
            sl2[c] += w * lf * lf;
        }
    }
    let mut chosen = None;
    for c in 0..NC {
        if sl2[c] > 0.0 && slx[c] * slx[c] > best * sl2[c] {
            chosen = Some(c);
            scale = slx[c] / sl2[c];
            best = scale * slx[c];
        }
    }
    if let Some(c) = chosen {
        for (li, &v) in l.iter_mut().zip(x) {
            *li = (nmax + clamp(nearest_int(isc[c] * v))) as i8;
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
    for (i, &xi) in x.iter().enumerate().skip(1) {
        if xi < min {
            min = xi;
        }
        if xi > max {
            max = xi;
        }
        let w = weight(i);
        sum_w += w;
        sum_x += w * xi;
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

/// Longest group [`make_qkx3_quants_lanes`] handles side by side (longer ones run one by one).
pub const MAX_LANE_GROUP: usize = 32;

/// [`make_qkx3_quants`] on `LANES` groups at once, bit-identical to calling it on each group.
///
/// Group `g` is `x[g*n..(g+1)*n]` with `n = x.len() / LANES` (weights likewise); its levels go to
/// `l[g*n..(g+1)*n]`, and entry `g` of the result is its `(scale, min)`. The groups' searches are
/// independent, so each step of ggml's sequential search runs for all lanes side by side (every
/// lane does exactly the scalar operations, including the data-dependent choice of candidate,
/// which also moves the offset the next candidates use). That turns a latency-bound loop into
/// one the compiler vectorizes.
///
/// `x.len()` must be a non-zero multiple of `LANES`; `l` and `weights` (when given) at least as long.
#[allow(clippy::too_many_arguments)]
pub fn make_qkx3_quants_lanes<const LANES: usize>(
    nmax: i32,
    x: &[f32],
    weights: Option<&[f32]>,
    l: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> [(f32, f32); LANES] {
    let n = x.len() / LANES;
    let l = &mut l[..n * LANES];
    if n > MAX_LANE_GROUP {
        // Groups longer than the transposed scratch: one at a time.
        let mut out = [(0.0f32, 0.0f32); LANES];
        let mut laux = vec![0u8; n];
        for (g, o) in out.iter_mut().enumerate() {
            let r = g * n..(g + 1) * n;
            let w = weights.map(|w| &w[r.clone()]);
            *o = make_qkx3_quants(nmax, &x[r.clone()], w, &mut l[r], &mut laux, rmin, rdelta, nstep, use_mad);
        }
        return out;
    }
    // Transposed copies: row i holds value i of every group, so the lane loops read contiguously.
    let mut xt = [[0.0f32; LANES]; MAX_LANE_GROUP];
    let mut wt = [[0.0f32; LANES]; MAX_LANE_GROUP];
    for g in 0..LANES {
        for i in 0..n {
            let v = x[g * n + i];
            xt[i][g] = v;
            wt[i][g] = match weights {
                Some(w) => w[g * n + i],
                None => v * v,
            };
        }
    }
    let (xt, wt) = (&xt[..n], &wt[..n]);
    let at = |i: usize, g: usize| xt[i][g];
    let weight = |i: usize, g: usize| wt[i][g];
    let err = |d: f32| if use_mad { d.abs() } else { d * d };
    let nmaxf = nmax as f32;
    let level = |isc: f32, v: f32, m: f32| nearest_int(isc * (v - m)).clamp(0, nmax);

    let mut min = [0.0f32; LANES];
    let mut max = [0.0f32; LANES];
    let mut sum_w = [0.0f32; LANES];
    let mut sum_x = [0.0f32; LANES];
    for g in 0..LANES {
        min[g] = at(0, g);
        max[g] = at(0, g);
        sum_w[g] = weight(0, g);
        sum_x[g] = sum_w[g] * at(0, g);
    }
    for (xr, wr) in xt.iter().zip(wt).skip(1) {
        for g in 0..LANES {
            let v = xr[g];
            if v < min[g] {
                min[g] = v;
            }
            if v > max[g] {
                max[g] = v;
            }
            let w = wr[g];
            sum_w[g] += w;
            sum_x[g] += w * v;
        }
    }
    let mut done = [false; LANES];
    let mut scale = [0.0f32; LANES];
    // The (inverse scale, offset) that produced each lane's current levels.
    let mut lv_isc = [0.0f32; LANES];
    let mut lv_min = [0.0f32; LANES];
    for g in 0..LANES {
        if min[g] > 0.0 {
            min[g] = 0.0;
        }
        done[g] = max[g] <= min[g];
        let iscale = nmaxf / (max[g] - min[g]);
        scale[g] = 1.0 / iscale;
        lv_isc[g] = iscale;
        lv_min[g] = min[g];
    }
    let mut best_mad = [0.0f32; LANES];
    for (xr, wr) in xt.iter().zip(wt) {
        for g in 0..LANES {
            let v = xr[g];
            let li = level(lv_isc[g], v, lv_min[g]) as f32;
            let diff = scale[g] * li + min[g] - v;
            best_mad[g] += wr[g] * err(diff);
        }
    }
    // ggml stops after the first fit when nstep < 1.
    let last = if nstep < 1 { -1 } else { nstep };
    for is in 0..=last {
        let mut isc = [0.0f32; LANES];
        for g in 0..LANES {
            isc[g] = (rmin + rdelta * is as f32 + nmaxf) / (max[g] - min[g]);
        }
        let (mut s_l, mut s_l2, mut s_xl) = ([0.0f32; LANES], [0.0f32; LANES], [0.0f32; LANES]);
        for (xr, wr) in xt.iter().zip(wt) {
            for g in 0..LANES {
                let (v, w) = (xr[g], wr[g]);
                let lf = level(isc[g], v, min[g]) as f32;
                s_l[g] += w * lf;
                s_l2[g] += w * lf * lf;
                s_xl[g] += w * lf * v;
            }
        }
        let (mut t_scale, mut t_min, mut ok) = ([0.0f32; LANES], [0.0f32; LANES], [false; LANES]);
        for g in 0..LANES {
            let d = sum_w[g] * s_l2[g] - s_l[g] * s_l[g];
            ok[g] = d > 0.0;
            let mut this_scale = (sum_w[g] * s_xl[g] - sum_x[g] * s_l[g]) / d;
            let mut this_min = (s_l2[g] * sum_x[g] - s_l[g] * s_xl[g]) / d;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = s_xl[g] / s_l2[g];
            }
            t_scale[g] = this_scale;
            t_min[g] = this_min;
        }
        let mut mad = [0.0f32; LANES];
        for (xr, wr) in xt.iter().zip(wt) {
            for g in 0..LANES {
                let v = xr[g];
                let lf = level(isc[g], v, min[g]) as f32;
                let diff = t_scale[g] * lf + t_min[g] - v;
                mad[g] += wr[g] * err(diff);
            }
        }
        for g in 0..LANES {
            if ok[g] && mad[g] < best_mad[g] {
                best_mad[g] = mad[g];
                scale[g] = t_scale[g];
                lv_isc[g] = isc[g];
                lv_min[g] = min[g];
                min[g] = t_min[g];
            }
        }
    }
    let mut out = [(0.0f32, 0.0f32); LANES];
    for g in 0..LANES {
        let lg = &mut l[g * n..(g + 1) * n];
        if done[g] {
            lg.fill(0);
            out[g] = (0.0, -min[g]);
        } else {
            for (i, li) in lg.iter_mut().enumerate() {
                *li = level(lv_isc[g], at(i, g), lv_min[g]) as u8;
            }
            out[g] = (scale[g], -min[g]);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// K-quant searches and scale packing (used by `quant::k`).
// ---------------------------------------------------------------------------------------------

/// Asymmetric scale-and-min search with explicit weights (ggml `make_qkx2_quants`), used by the
/// reference (no-imatrix) quantizers of Q2_K, Q4_K and Q5_K. Levels `l_i ∈ [0, nmax]` with
/// `x_i ≈ scale * l_i - min`; returns `(scale, min)`, `min >= 0` being ggml's `the_min`.
///
/// The same least-squares fit as [`make_qkx3_quants`], with three differences: the weights are
/// always given; a group whose maximum equals its (non-positive) clamped minimum gets scale 0;
/// and the initial candidate `iscale = nmax / (max - offset)` is scored before the sweep over
/// `iscale = (rmin + rdelta * is + nmax) / (max - offset)`, `is = 0..=nstep`. A sweep candidate
/// with `D = Σw Σw l² - (Σw l)² > 0` gets `scale = (Σw Σw x l - Σw x Σw l) / D` and
/// `offset = (Σw l² Σw x - Σw l Σw x l) / D` (offset clamped to 0 with `scale = Σw x l / Σw l²`
/// when positive), and replaces the incumbent when its error `Σ w_i e_i` is strictly smaller,
/// `e_i = |scale l_i + offset - x_i|` if `use_mad`, else its square.
///
/// `x` must not be empty; `weights`, `l` and `laux` (scratch) must be at least `x.len()` long.
#[allow(clippy::too_many_arguments)]
pub fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    l: &mut [u8],
    laux: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    let n = x.len();
    let (l, laux, weights) = (&mut l[..n], &mut laux[..n], &weights[..n]);
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l.fill(0);
        return (0.0, -min);
    }
    let nmaxf = nmax as f32;
    let err = |d: f32| if use_mad { d.abs() } else { d * d };
    let mut iscale = nmaxf / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..n {
        let li = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l[i] = li as u8;
        let diff = scale * li as f32 + min - x[i];
        best_error += weights[i] * err(diff);
    }
    if nstep < 1 {
        return (scale, -min);
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmaxf) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..n {
            let li = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = li as u8;
            let w = weights[i];
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
            let mut cur_error = 0.0f32;
            for i in 0..n {
                let diff = this_scale * laux[i] as f32 + this_min - x[i];
                cur_error += weights[i] * err(diff);
            }
            if cur_error < best_error {
                l.copy_from_slice(laux);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Scale search for non-negative values such as sub-block scales (ggml `make_qp_quants`), used
/// by the importance-weighted Q2_K, Q4_K and Q5_K quantizers to quantize their sub-block scales
/// and mins: levels `l_i ∈ [0, nmax]`, `x_i ≈ scale * l_i`, weights `qw` (`Σ w` of each sub-block).
///
/// Let `M = max(0, max_i x_i)`; if `M < GROUP_MAX_EPS` the levels and the scale are 0. Otherwise:
/// 1. pick the inverse scale among `(nmax + 0.1 is) / M`, `is = -4..=4` that minimizes the
///    weighted error `Σ w_i (x_i - l_i / iscale)²` with `l_i = min(nmax, round(iscale x_i))`
///    (`is = 0` first, which does not clamp its levels; later ones replace it only if strictly better);
/// 2. refine the levels one at a time, up to 5 sweeps: for each `i`, with the sums
///    `S_xl = Σ w x l`, `S_ll = Σ w l²` taken without `i`, try `l_i' = min(nmax, round(x_i S_ll / S_xl))`
///    and keep it if it raises `S_xl² / S_ll` (the fit quality at the optimal scale);
/// 3. return `S_xl / S_ll` (0 if `S_ll <= 0`).
///
/// As in ggml, levels are stored as bytes (a negative level, possible only for negative inputs,
/// wraps), and the stored byte is what later arithmetic reads. `l` and `qw` must be at least
/// `x.len()` long.
pub fn make_qp_quants(nmax: i32, x: &[f32], l: &mut [u8], qw: &[f32]) -> f32 {
    let n = x.len();
    let (l, qw) = (&mut l[..n], &qw[..n]);
    let mut max = 0.0f32;
    for &v in x {
        max = if max > v { max } else { v };
    }
    if max < GROUP_MAX_EPS {
        l.fill(0);
        return 0.0;
    }
    let nmaxf = nmax as f32;
    let mut iscale = nmaxf / max;
    for (li, &v) in l.iter_mut().zip(x) {
        *li = nearest_int(iscale * v) as u8;
    }
    let scale = 1.0 / iscale;
    let mut best_mse = 0.0f32;
    for i in 0..n {
        let diff = x[i] - scale * l[i] as f32;
        best_mse += qw[i] * diff * diff;
    }
    for is in -4i32..=4 {
        if is == 0 {
            continue;
        }
        let iscale_is = (0.1f32 * is as f32 + nmaxf) / max;
        let scale_is = 1.0 / iscale_is;
        let mut mse = 0.0f32;
        for i in 0..n {
            let li = nearest_int(iscale_is * x[i]).min(nmax);
            let diff = x[i] - scale_is * li as f32;
            mse += qw[i] * diff * diff;
        }
        if mse < best_mse {
            best_mse = mse;
            iscale = iscale_is;
        }
    }
    let mut sumlx = 0.0f32;
    let mut suml2 = 0.0f32;
    for i in 0..n {
        let li = nearest_int(iscale * x[i]).min(nmax);
        l[i] = li as u8;
        let w = qw[i];
        let lf = li as f32;
        sumlx += w * x[i] * lf;
        suml2 += w * lf * lf;
    }
    for _ in 0..5 {
        let mut n_changed = 0;
        for i in 0..n {
            let w = qw[i];
            let li = l[i] as f32;
            let mut slx = sumlx - w * x[i] * li;
            let mut sl2 = suml2 - w * li * li;
            if slx > 0.0 && sl2 > 0.0 {
                let new_l = nearest_int(x[i] * sl2 / slx).min(nmax);
                if new_l != l[i] as i32 {
                    let nf = new_l as f32;
                    slx += w * x[i] * nf;
                    sl2 += w * nf * nf;
                    if slx * slx * suml2 > sumlx * sumlx * sl2 {
                        l[i] = new_l as u8;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed += 1;
                    }
                }
            }
        }
        if n_changed == 0 {
            break;
        }
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// Symmetric search with `x²` weights and coordinate refinement (ggml `make_q3_quants`), used by
/// the reference Q3_K quantizer: levels `L_i = l_i + nmax`, `l_i ∈ [-nmax, nmax-1]`,
/// `x_i ≈ scale * l_i`. Returns the scale (0 for a group whose largest magnitude is below
/// `GROUP_MAX_EPS`, levels 0).
///
/// With `m` the value of largest magnitude, start from `l_i = round(-nmax x_i / m)` (clamped).
/// With `do_rmse`, refine one level at a time for up to 5 sweeps: with `S_xl = Σ w x l`,
/// `S_ll = Σ w l²` (`w = x²`) taken without `i`, if `S_xl > 0` try
/// `l_i' = round(x_i S_ll / S_xl)` (clamped) and keep it if `S_ll' > 0` and it raises
/// `S_xl² / S_ll`; return `S_xl / S_ll` (0 if `S_ll <= 0`). Without `do_rmse` return `-m / nmax`.
/// `l` must be at least `x.len()` long.
pub fn make_q3_quants(nmax: i32, x: &[f32], l: &mut [i8], do_rmse: bool) -> f32 {
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
    let iscale = -(nmax as f32) / max;
    let clamp = |v: i32| v.clamp(-nmax, nmax - 1);
    if do_rmse {
        let mut sumlx = 0.0f32;
        let mut suml2 = 0.0f32;
        for i in 0..n {
            let li = clamp(nearest_int(iscale * x[i]));
            l[i] = li as i8;
            let w = x[i] * x[i];
            let lf = li as f32;
            sumlx += w * x[i] * lf;
            suml2 += w * lf * lf;
        }
        for _ in 0..5 {
            let mut n_changed = 0;
            for i in 0..n {
                let w = x[i] * x[i];
                let li = l[i] as f32;
                let mut slx = sumlx - w * x[i] * li;
                if slx > 0.0 {
                    let mut sl2 = suml2 - w * li * li;
                    let new_l = clamp(nearest_int(x[i] * sl2 / slx));
                    if new_l != l[i] as i32 {
                        let nf = new_l as f32;
                        slx += w * x[i] * nf;
                        sl2 += w * nf * nf;
                        if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                            l[i] = new_l as i8;
                            sumlx = slx;
                            suml2 = sl2;
                            n_changed += 1;
                        }
                    }
                }
            }
            if n_changed == 0 {
                break;
            }
        }
        for li in l.iter_mut() {
            *li = li.wrapping_add(nmax as i8);
        }
        return if suml2 > 0.0 { sumlx / suml2 } else { 0.0 };
    }
    for (li, &v) in l.iter_mut().zip(x) {
        *li = (clamp(nearest_int(iscale * v)) + nmax) as i8;
    }
    1.0 / iscale
}

/// The 6-bit scale and min of sub-block `j` (0..8) from the 12 packed bytes of a Q4_K/Q5_K
/// block (ggml `get_scale_min_k4`). Bytes 0..4 hold scales 0..3 and bytes 4..8 mins 0..3 in
/// their low 6 bits; bytes 8..12 hold the low nibbles of scale (low) and min (high) 4..7, whose
/// top 2 bits sit in the top bits of bytes 0..4 (scales) and 4..8 (mins).
#[inline(always)]
pub fn get_scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// Pack eight 6-bit scales and mins into the 12-byte layout [`get_scale_min_k4`] reads, with
/// ggml's exact bit operations (a value above 63 spills into neighbouring fields as it does in
/// ggml; the quantizers only produce such values from non-finite intermediate results).
#[inline]
pub fn pack_scale_min_k4(ls: &[u8; 8], lm: &[u8; 8]) -> [u8; 12] {
    let mut q = [0u8; 12];
    for j in 0..8 {
        if j < 4 {
            q[j] = ls[j];
            q[j + 4] = lm[j];
        } else {
            q[j + 4] = (ls[j] & 0xF) | ((lm[j] & 0xF) << 4);
            q[j - 4] |= (ls[j] >> 4) << 6;
            q[j] |= (lm[j] >> 4) << 6;
        }
    }
    q
}

/// [`make_qkx2_quants`] on `K` independent groups of `N` values at once ("lanes"), for speed:
/// group `g` is column `g` of the transposed arrays (`xt[i][g]` is value `i` of group `g`).
///
/// With weights given, `make_qkx2_quants` and [`make_qkx3_quants`] are the same computation (their
/// degenerate-group tests `max == min` and `max <= min` agree because `max >= min` always holds
/// for finite values), so this serves both. Each lane performs exactly the scalar function's
/// float operations in the same order — only the interleaving across groups differs, which lets
/// the compiler vectorize across lanes while keeping every result bit-identical. Candidates are
/// evaluated for every lane and applied where the scalar code would have applied them.
///
/// Writes the levels to `lt` (same transposed layout) and returns per-group `(scale, min)`.
#[allow(clippy::too_many_arguments)]
pub fn make_qkx_quants_lanes<const N: usize, const K: usize, const MAD: bool>(
    nmax: i32,
    xt: &[[f32; K]; N],
    wt: &[[f32; K]; N],
    lt: &mut [[u8; K]; N],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
) -> ([f32; K], [f32; K]) {
    let err = |d: f32| if MAD { d.abs() } else { d * d };
    let level = |iscale: f32, x: f32, min: f32| nearest_int(iscale * (x - min)).max(0).min(nmax);
    let nmaxf = nmax as f32;
    let mut min = xt[0];
    let mut max = xt[0];
    let mut sum_w = wt[0];
    let mut sum_x = [0f32; K];
    for g in 0..K {
        sum_x[g] = sum_w[g] * xt[0][g];
    }
    for i in 1..N {
        for g in 0..K {
            let v = xt[i][g];
            if v < min[g] {
                min[g] = v;
            }
            if v > max[g] {
                max[g] = v;
            }
            sum_w[g] += wt[i][g];
            sum_x[g] += wt[i][g] * v;
        }
    }
    let mut iscale = [0f32; K];
    let mut scale = [0f32; K];
    for g in 0..K {
        if min[g] > 0.0 {
            min[g] = 0.0;
        }
        iscale[g] = nmaxf / (max[g] - min[g]);
        scale[g] = 1.0 / iscale[g];
    }
    // Groups whose (clamped) min equals their max: levels 0, scale 0, offset kept.
    let degenerate: [bool; K] = core::array::from_fn(|g| max[g] == min[g]);
    let min0 = min;
    let mut best = [0f32; K];
    for i in 0..N {
        for g in 0..K {
            let l = level(iscale[g], xt[i][g], min[g]);
            lt[i][g] = l as u8;
            let diff = scale[g] * l as f32 + min[g] - xt[i][g];
            best[g] += wt[i][g] * err(diff);
        }
    }
    if nstep >= 1 {
        let mut laux = [[0u8; K]; N];
        for is in 0..=nstep {
            let num = rmin + rdelta * is as f32 + nmaxf;
            // `min` is the current best offset: ggml's loop reads it after updates too.
            for g in 0..K {
                iscale[g] = num / (max[g] - min[g]);
            }
            let (mut sum_l, mut sum_l2, mut sum_xl) = ([0f32; K], [0f32; K], [0f32; K]);
            for i in 0..N {
                for g in 0..K {
                    let l = level(iscale[g], xt[i][g], min[g]);
                    laux[i][g] = l as u8;
                    let w = wt[i][g];
                    let lf = l as f32;
                    sum_l[g] += w * lf;
                    sum_l2[g] += w * lf * lf;
                    sum_xl[g] += w * lf * xt[i][g];
                }
            }
            let mut this_scale = [0f32; K];
            let mut this_min = [0f32; K];
            let mut valid = [false; K];
            for g in 0..K {
                let d = sum_w[g] * sum_l2[g] - sum_l[g] * sum_l[g];
                valid[g] = d > 0.0;
                this_scale[g] = (sum_w[g] * sum_xl[g] - sum_x[g] * sum_l[g]) / d;
                this_min[g] = (sum_l2[g] * sum_x[g] - sum_l[g] * sum_xl[g]) / d;
                if this_min[g] > 0.0 {
                    this_min[g] = 0.0;
                    this_scale[g] = sum_xl[g] / sum_l2[g];
                }
            }
            let mut cur = [0f32; K];
            for i in 0..N {
                for g in 0..K {
                    let diff = this_scale[g] * laux[i][g] as f32 + this_min[g] - xt[i][g];
                    cur[g] += wt[i][g] * err(diff);
                }
            }
            let take: [bool; K] = core::array::from_fn(|g| valid[g] && cur[g] < best[g]);
            if take.iter().any(|&t| t) {
                for g in 0..K {
                    if take[g] {
                        best[g] = cur[g];
                        scale[g] = this_scale[g];
                        min[g] = this_min[g];
                    }
                }
                for i in 0..N {
                    for g in 0..K {
                        if take[g] {
                            lt[i][g] = laux[i][g];
                        }
                    }
                }
            }
        }
    }
    let mut the_min = [0f32; K];
    for g in 0..K {
        if degenerate[g] {
            scale[g] = 0.0;
            min[g] = min0[g];
            for row in lt.iter_mut() {
                row[g] = 0;
            }
        }
        the_min[g] = -min[g];
    }
    (scale, the_min)
}

/// Per group (lane) of `xt`: the value of largest magnitude (the first one on a tie, as ggml's
/// scan keeps it) and that magnitude; the start of the symmetric searches.
#[inline(always)]
fn max_abs_lanes<const N: usize, const K: usize>(xt: &[[f32; K]; N]) -> ([f32; K], [f32; K]) {
    let mut max = [0f32; K];
    let mut amax = [0f32; K];
    for row in xt {
        for g in 0..K {
            let ax = row[g].abs();
            if ax > amax[g] {
                amax[g] = ax;
                max[g] = row[g];
            }
        }
    }
    (max, amax)
}

/// [`make_qx_quants`] with `rmse_type == 1` on `K` independent groups of `N` values at once,
/// bit-identical per group (see [`make_qkx_quants_lanes`] for the layout and why). `wt` holds the
/// weights: the importance weights, or `x²` for the unweighted search (what `make_qx_quants`
/// uses for `rmse_type == 1` without `qw`). Writes the levels `l + nmax` to `lt` and returns the
/// per-group scales.
pub fn make_qx_quants_lanes<const N: usize, const K: usize>(
    nmax: i32,
    xt: &[[f32; K]; N],
    wt: &[[f32; K]; N],
    lt: &mut [[i8; K]; N],
) -> [f32; K] {
    let nmaxf = nmax as f32;
    let level = |iscale: f32, x: f32| nearest_int(iscale * x).max(-nmax).min(nmax - 1);
    let (max, amax) = max_abs_lanes(xt);
    let mut iscale = [0f32; K];
    for g in 0..K {
        iscale[g] = -nmaxf / max[g];
    }
    let (mut sumlx, mut suml2) = ([0f32; K], [0f32; K]);
    for i in 0..N {
        for g in 0..K {
            let l = level(iscale[g], xt[i][g]);
            lt[i][g] = (l + nmax) as i8;
            let w = wt[i][g];
            let lf = l as f32;
            sumlx[g] += w * xt[i][g] * lf;
            suml2[g] += w * lf * lf;
        }
    }
    let mut scale = [0f32; K];
    let mut best = [0f32; K];
    for g in 0..K {
        scale[g] = if suml2[g] != 0.0 { sumlx[g] / suml2[g] } else { 0.0 };
        best[g] = scale[g] * sumlx[g];
    }
    let mut laux = [[0i8; K]; N];
    for is in -9i32..=9 {
        if is == 0 {
            continue;
        }
        let num = -(nmaxf + 0.1f32 * is as f32);
        for g in 0..K {
            iscale[g] = num / max[g];
        }
        let (mut sumlx, mut suml2) = ([0f32; K], [0f32; K]);
        for i in 0..N {
            for g in 0..K {
                let l = level(iscale[g], xt[i][g]);
                laux[i][g] = (l + nmax) as i8;
                let w = wt[i][g];
                let lf = l as f32;
                sumlx[g] += w * xt[i][g] * lf;
                suml2[g] += w * lf * lf;
            }
        }
        let take: [bool; K] = core::array::from_fn(|g| suml2[g] > 0.0 && sumlx[g] * sumlx[g] > best[g] * suml2[g]);
        if take.iter().any(|&t| t) {
            for g in 0..K {
                if take[g] {
                    scale[g] = sumlx[g] / suml2[g];
                    best[g] = scale[g] * sumlx[g];
                }
            }
            for i in 0..N {
                for g in 0..K {
                    if take[g] {
                        lt[i][g] = laux[i][g];
                    }
                }
            }
        }
    }
    for g in 0..K {
        if amax[g] < GROUP_MAX_EPS {
            scale[g] = 0.0;
            for row in lt.iter_mut() {
                row[g] = 0;
            }
        }
    }
    scale
}

/// [`make_q3_quants`] with `do_rmse` on `K` independent groups of `N` values at once,
/// bit-identical per group (layout as in [`make_qkx_quants_lanes`]). The scalar search stops
/// after a sweep that changes nothing; a sweep that changes nothing leaves the state as it
/// found it, so the next one changes nothing either and every lane can run all 5 sweeps.
/// Each lane computes the scalar's candidate unconditionally and keeps it under the scalar's
/// conditions, so the kept values come from the same float operations. Writes the levels
/// `l + nmax` to `lt` (0 for a group below `GROUP_MAX_EPS`) and returns the per-group scales.
/// Inlined so that the codec's AVX2/AVX-512 clones (`crate::simd::codec`) vectorize it.
#[inline(always)]
pub fn make_q3_quants_lanes<const N: usize, const K: usize>(
    nmax: i32,
    xt: &[[f32; K]; N],
    lt: &mut [[i8; K]; N],
) -> [f32; K] {
    let clamp = |v: i32| v.max(-nmax).min(nmax - 1);
    let (max, amax) = max_abs_lanes(xt);
    let mut iscale = [0f32; K];
    for g in 0..K {
        iscale[g] = -(nmax as f32) / max[g];
    }
    // Signed levels while searching.
    let mut ls = [[0i32; K]; N];
    let (mut sumlx, mut suml2) = ([0f32; K], [0f32; K]);
    for i in 0..N {
        for g in 0..K {
            let x = xt[i][g];
            let l = clamp(nearest_int(iscale[g] * x));
            ls[i][g] = l;
            let w = x * x;
            let lf = l as f32;
            sumlx[g] += w * x * lf;
            suml2[g] += w * lf * lf;
        }
    }
    for _ in 0..5 {
        let mut changed = [false; K];
        for i in 0..N {
            for g in 0..K {
                let x = xt[i][g];
                let w = x * x;
                let l = ls[i][g];
                let li = l as f32;
                let slx0 = sumlx[g] - w * x * li;
                let sl20 = suml2[g] - w * li * li;
                let new_l = clamp(nearest_int(x * sl20 / slx0));
                let nf = new_l as f32;
                let slx = slx0 + w * x * nf;
                let sl2 = sl20 + w * nf * nf;
                // Non-short-circuit `&` and selects: one straight-line body for every lane.
                let keep = (slx0 > 0.0)
                    & (new_l != l)
                    & (sl2 > 0.0)
                    & (slx * slx * suml2[g] > sumlx[g] * sumlx[g] * sl2);
                ls[i][g] = if keep { new_l } else { l };
                sumlx[g] = if keep { slx } else { sumlx[g] };
                suml2[g] = if keep { sl2 } else { suml2[g] };
                changed[g] |= keep;
            }
        }
        // Every lane unchanged by this sweep stays unchanged by the next ones.
        if !changed.iter().any(|&c| c) {
            break;
        }
    }
    let mut scale = [0f32; K];
    for g in 0..K {
        let degenerate = amax[g] < GROUP_MAX_EPS;
        scale[g] = if degenerate || suml2[g] <= 0.0 { 0.0 } else { sumlx[g] / suml2[g] };
        for i in 0..N {
            lt[i][g] = if degenerate { 0 } else { (ls[i][g] + nmax) as i8 };
        }
    }
    scale
}

/// Transpose `K` groups of `N` consecutive values into lanes: `out[i][g] = x[N g + i]`.
#[inline(always)]
pub fn to_lanes<const N: usize, const K: usize>(x: &[f32]) -> [[f32; K]; N] {
    let mut out = [[0f32; K]; N];
    for g in 0..K {
        for i in 0..N {
            out[i][g] = x[N * g + i];
        }
    }
    out
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
    #[test]
    fn qkx3_lanes_match_scalar_bitwise() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            ((seed >> 40) as f32 / 16_777_216.0) - 0.5
        };
        for case in 0..400 {
            let n = if case % 2 == 0 { 32 } else { 16 };
            let mut x: Vec<f32> = (0..8 * n).map(|_| rnd() * 0.1).collect();
            // Degenerate groups: constant, all zero, all positive, single outlier.
            match case % 5 {
                0 => x[..n].fill(0.25),
                1 => x[n..2 * n].fill(0.0),
                2 => x[2 * n..3 * n].iter_mut().for_each(|v| *v = v.abs() + 0.01),
                3 => x[3 * n] = 5.0,
                _ => {}
            }
            let w: Vec<f32> = (0..8 * n).map(|i| if i % 7 == 0 { 0.0 } else { rnd() + 0.5 }).collect();
            for weights in [None, Some(w.as_slice())] {
                for (use_mad, nstep) in [(false, 36), (true, 20), (false, 0)] {
                    let mut l = vec![0u8; 8 * n];
                    let got = make_qkx3_quants_lanes::<8>(15, &x, weights, &mut l, -0.9, 0.05, nstep, use_mad);
                    for g in 0..8 {
                        let (mut lg, mut aux) = (vec![0u8; n], vec![0u8; n]);
                        let xg = &x[g * n..(g + 1) * n];
                        let wg = weights.map(|w| &w[g * n..(g + 1) * n]);
                        let want = make_qkx3_quants(15, xg, wg, &mut lg, &mut aux, -0.9, 0.05, nstep, use_mad);
                        assert_eq!((got[g].0.to_bits(), got[g].1.to_bits()), (want.0.to_bits(), want.1.to_bits()), "case {case} group {g}");
                        assert_eq!(&l[g * n..(g + 1) * n], &lg[..], "case {case} group {g}");
                    }
                }
            }
        }
    }
}
