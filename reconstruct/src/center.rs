//! Automatic centre of rotation by 0/180-degree consistency: a projection at `theta + 180` is the mirror
//! image, about the axis, of the projection at `theta`. For a candidate axis `C`, every projection that has
//! mirrored partners around it (exactly opposite in a 360-degree scan; at the ends of a 180-degree scan, the
//! mirrored last projection on one side and the next projection on the other, interpolated in angle) is
//! compared with its prediction from those partners; the `C` with the smallest mean squared difference wins.
//! A coarse search over half-pixel steps is refined with a fine search and a parabola, so the result is
//! sub-pixel. Several detector rows are averaged first for robustness against noise.

use std::f64::consts::PI;

/// What the centre finder concluded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CenterEstimate {
    /// Axis position in detector-column units (see [`crate::geometry`]).
    pub center: f64,
    /// Mean squared mismatch at that position.
    pub residual: f64,
    /// How many projections took part as references.
    pub references: usize,
}

/// Why no centre could be found.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CenterError {
    /// The angles do not give any pair of mirrored projections.
    #[error("no pair of projections 180 degrees apart (or bracketing that): angles cover too little to find the centre automatically; give --center")]
    NoPairs,
    /// The data do not determine the axis (flat sinogram).
    #[error("the sinogram has no structure to align on; give --center")]
    Featureless,
}

/// One way to predict projection `k` from others: `(weight, source projection, mirrored)` terms.
type Prediction = (usize, Vec<(f64, usize, bool)>);

fn predictions(angles_rad: &[f32], max_refs: usize) -> Vec<Prediction> {
    let n = angles_rad.len();
    let step = if n > 1 {
        let lo = angles_rad.iter().copied().fold(f32::INFINITY, f32::min) as f64;
        let hi = angles_rad.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        ((hi - lo) / (n as f64 - 1.0)).abs().max(1e-6)
    } else {
        return Vec::new();
    };
    let wrap = |a: f64| {
        let t = (a + PI).rem_euclid(2.0 * PI) - PI;
        if t <= -PI {
            t + 2.0 * PI
        } else {
            t
        }
    };
    let mut out = Vec::new();
    for k in 0..n {
        let tk = angles_rad[k] as f64;
        let mut lower: Option<(f64, usize, bool)> = None; // offset <= 0, largest
        let mut upper: Option<(f64, usize, bool)> = None; // offset >= 0, smallest
        for (j, &aj) in angles_rad.iter().enumerate() {
            for mirrored in [false, true] {
                if j == k && !mirrored {
                    continue;
                }
                let phi = aj as f64 + if mirrored { PI } else { 0.0 };
                let d = wrap(phi - tk);
                if d <= 0.0 && lower.is_none_or(|l| d > l.0) {
                    lower = Some((d, j, mirrored));
                }
                if d >= 0.0 && upper.is_none_or(|u| d < u.0) {
                    upper = Some((d, j, mirrored));
                }
            }
        }
        let (Some(l), Some(u)) = (lower, upper) else { continue };
        if !(l.2 || u.2) || -l.0 > 2.0 * step || u.0 > 2.0 * step {
            continue;
        }
        let terms = if u.0 - l.0 < 1e-9 {
            vec![(1.0, l.1, l.2)]
        } else {
            let wu = -l.0 / (u.0 - l.0);
            vec![(1.0 - wu, l.1, l.2), (wu, u.1, u.2)]
        };
        out.push((k, terms));
    }
    if out.len() > max_refs {
        let stride = out.len() as f64 / max_refs as f64;
        out = (0..max_refs).map(|i| out[(i as f64 * stride) as usize].clone()).collect();
    }
    out
}

fn sample(row: &[f32], pos: f64) -> Option<f64> {
    if pos < 0.0 || pos > (row.len() - 1) as f64 {
        return None;
    }
    let i = (pos.floor() as usize).min(row.len() - 2);
    let f = pos - i as f64;
    Some(row[i] as f64 * (1.0 - f) + row[i + 1] as f64 * f)
}

fn mismatch(sino: &[f32], n_cols: usize, preds: &[Prediction], center: f64) -> Option<f64> {
    // Require a real overlap so that far-off candidates cannot win on a handful of columns.
    mismatch_over(sino, n_cols, preds, center, (preds.len() * n_cols).div_ceil(4))
}

/// Mean squared difference between every reference projection and its prediction at axis `center`, over
/// the columns where the prediction exists; `None` when fewer than `min_count` values were compared.
fn mismatch_over(sino: &[f32], n_cols: usize, preds: &[Prediction], center: f64, min_count: usize) -> Option<f64> {
    let (mut sum, mut count) = (0.0, 0usize);
    let row = |j: usize| &sino[j * n_cols..(j + 1) * n_cols];
    for (k, terms) in preds {
        let target = row(*k);
        'col: for (c, &t) in target.iter().enumerate() {
            let mut est = 0.0;
            for &(w, j, mirrored) in terms {
                let pos = if mirrored { 2.0 * center - c as f64 } else { c as f64 };
                match sample(row(j), pos) {
                    Some(v) => est += w * v,
                    None => continue 'col,
                }
            }
            let d = t as f64 - est;
            sum += d * d;
            count += 1;
        }
    }
    (count >= min_count.max(1)).then(|| sum / count as f64)
}

/// The rows of `sinos` (`[row][angle][col]`) averaged into one sinogram, and the reference projections to
/// compare; refused when there is no row, fewer than `min_cols` columns, no pair, or no feature.
fn averaged(
    sinos: &[f32],
    n_cols: usize,
    angles_rad: &[f32],
    min_cols: usize,
) -> Result<(Vec<f32>, Vec<Prediction>), CenterError> {
    let per = n_cols * angles_rad.len();
    let n_rows = sinos.len() / per.max(1);
    if n_rows == 0 || n_cols < min_cols {
        return Err(CenterError::Featureless);
    }
    let mut avg = vec![0f32; per];
    for r in 0..n_rows {
        for (a, v) in avg.iter_mut().zip(&sinos[r * per..(r + 1) * per]) {
            *a += *v / n_rows as f32;
        }
    }
    let preds = predictions(angles_rad, 64);
    if preds.is_empty() {
        return Err(CenterError::NoPairs);
    }
    let mean = avg.iter().map(|&v| v as f64).sum::<f64>() / per as f64;
    let var = avg.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / per as f64;
    if var <= 1e-12 {
        return Err(CenterError::Featureless);
    }
    Ok((avg, preds))
}

/// The axis minimising `eval` over `[lo, hi]`: half-pixel steps, then 0.05 px steps within one pixel of the
/// best, then a parabola through the best three.
fn search(
    eval: impl Fn(f64) -> f64,
    lo: f64,
    hi: f64,
    start: f64,
    references: usize,
) -> Result<CenterEstimate, CenterError> {
    let mut best = (f64::INFINITY, start);
    let mut c = lo;
    while c <= hi {
        let e = eval(c);
        if e < best.0 {
            best = (e, c);
        }
        c += 0.5;
    }
    if !best.0.is_finite() {
        return Err(CenterError::Featureless);
    }
    let mut fine = best;
    let mut c = best.1 - 1.0;
    while c <= best.1 + 1.0 + 1e-9 {
        let e = eval(c);
        if e < fine.0 {
            fine = (e, c);
        }
        c += 0.05;
    }
    let h = 0.05;
    let (em, e0, ep) = (eval(fine.1 - h), fine.0, eval(fine.1 + h));
    let denom = em - 2.0 * e0 + ep;
    let center =
        if denom > 0.0 && em.is_finite() && ep.is_finite() { fine.1 + 0.5 * h * (em - ep) / denom } else { fine.1 };
    Ok(CenterEstimate { center, residual: fine.0, references })
}

/// Finds the rotation axis from `-log` sinograms of one or more rows (`[row][angle][col]`, averaged first).
pub fn find_center(sinos: &[f32], n_cols: usize, angles_rad: &[f32]) -> Result<CenterEstimate, CenterError> {
    let (avg, preds) = averaged(sinos, n_cols, angles_rad, 4)?;
    let n = n_cols as f64;
    let eval = |c: f64| mismatch(&avg, n_cols, &preds, c).unwrap_or(f64::INFINITY);
    // The axis within n/4 of the middle of the detector.
    let (lo, hi) = ((n - 1.0) / 2.0 - n / 4.0, (n - 1.0) / 2.0 + n / 4.0);
    search(eval, lo, hi, (n - 1.0) / 2.0, preds.len())
}

/// The rotation axis of a 360-degree half-acquisition (offset-axis) scan: as [`find_center`], every
/// projection is compared with the mirror image of the projection half a turn later, but over every candidate
/// column of the detector (half-pixel steps, then 0.05 px and a parabola) and needing only the narrow overlap
/// the two share near the axis: at least an eighth of the detector's columns (and 4), instead of a quarter. The
/// caller checks that the axis found lies near an edge ([`crate::offset_axis`]).
pub fn find_center_offset(sinos: &[f32], n_cols: usize, angles_rad: &[f32]) -> Result<CenterEstimate, CenterError> {
    let (avg, preds) = averaged(sinos, n_cols, angles_rad, 8)?;
    let min_count = preds.len() * (n_cols / 8).max(4);
    let eval = |c: f64| mismatch_over(&avg, n_cols, &preds, c, min_count).unwrap_or(f64::INFINITY);
    let last = (n_cols - 1) as f64;
    search(eval, 0.0, last, last / 2.0, preds.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use acquisition::phantom::{shepp_logan_2d, sinogram_2d};

    fn check(span_deg: f64, n_angles: usize, truth: f64) {
        let n = 256;
        let angles: Vec<f64> = (0..n_angles).map(|i| (i as f64 * span_deg / n_angles as f64).to_radians()).collect();
        let sino = sinogram_2d(&shepp_logan_2d(), &angles, n, truth, 100.0);
        let a32: Vec<f32> = angles.iter().map(|&a| a as f32).collect();
        let est = find_center(&sino, n, &a32).expect("centre found");
        assert!((est.center - truth).abs() < 0.1, "span {span_deg}: found {} want {truth}", est.center);
    }

    #[test]
    fn finds_offset_axis_in_half_and_full_turns() {
        check(180.0, 360, 131.3);
        check(180.0, 360, 121.75);
        check(360.0, 360, 133.6);
    }

    #[test]
    fn robust_to_noise_when_several_rows_are_averaged() {
        let n = 256;
        let truth = 126.4;
        let angles: Vec<f64> = (0..360).map(|i| (i as f64 * 0.5).to_radians()).collect();
        let clean = sinogram_2d(&shepp_logan_2d(), &angles, n, truth, 100.0);
        let peak = clean.iter().copied().fold(0f32, f32::max);
        // 8 rows, each with uniform noise of +-5 % of the peak (a fixed-seed LCG, so the test is repeatable).
        let mut state = 12345u64;
        let mut noisy = Vec::new();
        for _ in 0..8 {
            noisy.extend(clean.iter().map(|v| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let u = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                v + 0.1 * peak * u
            }));
        }
        let a32: Vec<f32> = angles.iter().map(|&a| a as f32).collect();
        let est = find_center(&noisy, n, &a32).expect("centre found");
        assert!((est.center - truth).abs() < 0.25, "found {} want {truth}", est.center);
    }

    #[test]
    fn flat_sinogram_is_an_error() {
        let angles: Vec<f32> = (0..90).map(|i| (i as f32 * 2.0).to_radians()).collect();
        assert!(find_center(&vec![1.0; 90 * 64], 64, &angles).is_err());
    }
}
