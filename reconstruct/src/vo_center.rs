//! Centre of rotation by the sinogram Fourier metric of Vo, Drakopoulos, Atwood and Reinhard (Opt. Express
//! 22, 2014), which needs no pair of projections 180 degrees apart.
//!
//! For a candidate axis `C`, the sinogram `p(theta, C + u)` and its mirror `p(theta, C - u)` (which is what
//! the detector would have measured at `theta + 180`) are joined into one sinogram over a full turn, resampled
//! onto uniform angles. Only at the true axis is the joined sinogram a consistent sinogram: then, by the
//! Fourier slice theorem, its 2-D spectrum lies within the double wedge `|m| <= R |w|` (angular harmonic `m`,
//! detector frequency `w` in radians per pixel, object radius `R`), while a wrong axis leaves a jump at the
//! join that spreads energy over every `m`. The metric is the mean spectral magnitude outside the wedge; the
//! axis is where it is smallest. Every candidate samples both halves at the same fractional offset (`C + u`
//! and `C - u` with integer `u`), so interpolation blurs both alike and does not bias the result towards
//! whole pixels; a coarse search (on binned columns for wide detectors) is refined at quarter and
//! twentieth-pixel steps and a parabola, so the result is sub-pixel.
//!
//! Unlike [`crate::center::find_center`] this works on any angle set, including scans whose last angle is
//! not 180 degrees from any other (gaps of a few degrees are bridged by interpolation in angle).

use std::f64::consts::PI;
use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

use crate::center::{CenterError, CenterEstimate};

/// Most angular samples of the joined full-turn sinogram.
const MAX_ANGLES: usize = 512;
/// Most columns of the window searched at full resolution before coarse binning is used.
const COARSE_COLS: usize = 256;

/// One uniform angle of the joined sinogram: `(weight, source projection, mirrored)` terms.
type Blend = Vec<(f64, usize, bool)>;

/// For `m` uniform angles over a full turn, the measured projections (each also mirrored, at `+180`) that
/// bracket it, with linear weights.
fn blends(angles_rad: &[f32], m: usize) -> Vec<Blend> {
    let mut table: Vec<(f64, usize, bool)> = Vec::with_capacity(2 * angles_rad.len());
    for (j, &a) in angles_rad.iter().enumerate() {
        for mirrored in [false, true] {
            let t = (a as f64 + if mirrored { PI } else { 0.0 }).rem_euclid(2.0 * PI);
            table.push((t, j, mirrored));
        }
    }
    table.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = table.len();
    (0..m)
        .map(|i| {
            let phi = 2.0 * PI * i as f64 / m as f64;
            // First entry at or after phi (circularly), and the one before it.
            let hi = table.partition_point(|e| e.0 < phi);
            let (up, up_t) = if hi == n { (table[0], table[0].0 + 2.0 * PI) } else { (table[hi], table[hi].0) };
            let (lo, lo_t) =
                if hi == 0 { (table[n - 1], table[n - 1].0 - 2.0 * PI) } else { (table[hi - 1], table[hi - 1].0) };
            let span = up_t - lo_t;
            if span < 1e-12 {
                return vec![(1.0, up.1, up.2)];
            }
            let w = (phi - lo_t) / span;
            vec![(1.0 - w, lo.1, lo.2), (w, up.1, up.2)]
        })
        .collect()
}

fn sample(row: &[f32], pos: f64) -> f64 {
    let last = row.len() - 1;
    if pos <= 0.0 {
        return row[0] as f64;
    }
    if pos >= last as f64 {
        return row[last] as f64;
    }
    let i = pos.floor() as usize;
    let f = pos - i as f64;
    row[i] as f64 * (1.0 - f) + row[i + 1] as f64 * f
}

/// The metric evaluator for one sinogram (`[angle][col]`) and window half-width.
struct Metric<'a> {
    sino: &'a [f32],
    n_cols: usize,
    half: usize,
    blends: Vec<Blend>,
    taper: Vec<f64>,
    mask: Vec<bool>,
    fft_u: Arc<dyn Fft<f64>>,
    fft_m: Arc<dyn Fft<f64>>,
}

impl<'a> Metric<'a> {
    fn new(sino: &'a [f32], n_cols: usize, angles_rad: &[f32], half: usize) -> Metric<'a> {
        let w = 2 * half + 1;
        let m = (2 * angles_rad.len()).next_power_of_two().clamp(64, MAX_ANGLES);
        // A cosine taper over the outer eighth of the window on each side, so truncation at the window's edges
        // does not look like structure.
        let edge = (w / 8).max(1);
        let taper = (0..w)
            .map(|j| {
                let d = j.min(w - 1 - j);
                if d >= edge {
                    1.0
                } else {
                    0.5 - 0.5 * (PI * (d as f64 + 0.5) / edge as f64).cos()
                }
            })
            .collect();
        // Outside the double wedge |m| <= R |w| with R = half, w = 2 pi k / W, plus a margin of two harmonics.
        let mut mask = vec![false; m * w];
        for mi in 0..m {
            let mm = if mi <= m / 2 { mi as f64 } else { mi as f64 - m as f64 };
            for ki in 0..w {
                let kk = if ki <= w / 2 { ki as f64 } else { ki as f64 - w as f64 };
                let limit = half as f64 * 2.0 * PI * kk.abs() / w as f64;
                mask[mi * w + ki] = mm.abs() > limit + 2.0;
            }
        }
        let mut planner = FftPlanner::new();
        Metric {
            sino,
            n_cols,
            half,
            blends: blends(angles_rad, m),
            taper,
            mask,
            fft_u: planner.plan_fft_forward(w),
            fft_m: planner.plan_fft_forward(m),
        }
    }

    fn eval(&self, center: f64, buf: &mut Vec<Complex<f64>>, col: &mut Vec<Complex<f64>>) -> f64 {
        let w = 2 * self.half + 1;
        let m = self.blends.len();
        let nc = self.n_cols;
        buf.clear();
        buf.resize(m * w, Complex::new(0.0, 0.0));
        for (i, terms) in self.blends.iter().enumerate() {
            let out = &mut buf[i * w..(i + 1) * w];
            for &(wt, j, mirrored) in terms {
                let row = &self.sino[j * nc..(j + 1) * nc];
                for (jj, o) in out.iter_mut().enumerate() {
                    let u = jj as f64 - self.half as f64;
                    let pos = if mirrored { center - u } else { center + u };
                    o.re += wt * sample(row, pos);
                }
            }
            for (o, t) in out.iter_mut().zip(&self.taper) {
                o.re *= t;
            }
        }
        for r in buf.chunks_exact_mut(w) {
            self.fft_u.process(r);
        }
        let mut total = 0.0;
        let mut count = 0usize;
        col.resize(m, Complex::new(0.0, 0.0));
        for k in 0..w {
            for i in 0..m {
                col[i] = buf[i * w + k];
            }
            self.fft_m.process(col);
            for (i, v) in col.iter().enumerate() {
                if self.mask[i * w + k] {
                    total += v.norm();
                    count += 1;
                }
            }
        }
        total / count.max(1) as f64
    }
}

/// Finds the rotation axis by Vo's Fourier metric from `-log` sinograms of one or more rows
/// (`[row][angle][col]`, averaged first). The axis is searched within a quarter of the detector width of its
/// middle, like [`crate::center::find_center`].
pub fn find_center_vo(sinos: &[f32], n_cols: usize, angles_rad: &[f32]) -> Result<CenterEstimate, CenterError> {
    let n_angles = angles_rad.len();
    let per = n_cols * n_angles;
    let n_rows = sinos.len() / per.max(1);
    if n_rows == 0 || n_cols < 16 || n_angles < 2 {
        return Err(CenterError::Featureless);
    }
    let mut avg = vec![0f32; per];
    for r in 0..n_rows {
        for (a, v) in avg.iter_mut().zip(&sinos[r * per..(r + 1) * per]) {
            *a += *v / n_rows as f32;
        }
    }
    let mean = avg.iter().map(|&v| v as f64).sum::<f64>() / per as f64;
    let var = avg.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / per as f64;
    if var <= 1e-12 {
        return Err(CenterError::Featureless);
    }
    let n = n_cols as f64;
    let (lo, hi) = ((n - 1.0) / 2.0 - n / 4.0, (n - 1.0) / 2.0 + n / 4.0);
    // The window must stay on the detector for every candidate.
    let half = lo.min(n - 1.0 - hi).floor().max(4.0) as usize;
    let (mut buf, mut col) = (Vec::new(), Vec::new());

    // Coarse: whole binned pixels over the search range.
    let bin = (2 * half + 1).div_ceil(COARSE_COLS).max(1);
    let coarse_best = if bin > 1 {
        let bc = n_cols / bin;
        let mut binned = vec![0f32; n_angles * bc];
        for a in 0..n_angles {
            for c in 0..bc {
                let s: f32 = avg[a * n_cols + c * bin..a * n_cols + (c + 1) * bin].iter().sum();
                binned[a * bc + c] = s / bin as f32;
            }
        }
        // Binned column c' has its centre at original position bin * c' + (bin - 1) / 2.
        let to_binned = |x: f64| (x - (bin as f64 - 1.0) / 2.0) / bin as f64;
        let metric = Metric::new(&binned, bc, angles_rad, half / bin);
        let mut best = (f64::INFINITY, (n - 1.0) / 2.0);
        let mut c = lo;
        while c <= hi {
            let e = metric.eval(to_binned(c), &mut buf, &mut col);
            if e < best.0 {
                best = (e, c);
            }
            c += bin as f64;
        }
        best.1
    } else {
        (n - 1.0) / 2.0
    };
    let metric = Metric::new(&avg, n_cols, angles_rad, half);
    let eval = |c: f64, buf: &mut Vec<Complex<f64>>, col: &mut Vec<Complex<f64>>| metric.eval(c, buf, col);
    let search = |from: f64, to: f64, step: f64, buf: &mut Vec<_>, col: &mut Vec<_>| {
        let mut best = (f64::INFINITY, from);
        let mut c = from.max(lo);
        while c <= to.min(hi) + 1e-9 {
            let e = eval(c, buf, col);
            if e < best.0 {
                best = (e, c);
            }
            c += step;
        }
        best
    };
    let wide = if bin > 1 {
        search(coarse_best - bin as f64, coarse_best + bin as f64, 0.5, &mut buf, &mut col)
    } else {
        search(lo, hi, 1.0, &mut buf, &mut col)
    };
    if !wide.0.is_finite() {
        return Err(CenterError::Featureless);
    }
    let quarter = search(wide.1 - 1.0, wide.1 + 1.0, 0.25, &mut buf, &mut col);
    let h = 0.05;
    let fine = search(quarter.1 - 0.25, quarter.1 + 0.25, h, &mut buf, &mut col);
    let (em, e0, ep) = (eval(fine.1 - h, &mut buf, &mut col), fine.0, eval(fine.1 + h, &mut buf, &mut col));
    let denom = em - 2.0 * e0 + ep;
    let center = if denom > 0.0 { fine.1 + 0.5 * h * (em - ep) / denom } else { fine.1 };
    tracing::debug!(center, metric = fine.0, "Vo centre");
    Ok(CenterEstimate { center, residual: fine.0, references: n_angles })
}

#[cfg(test)]
mod tests {
    use super::*;
    use acquisition::phantom::{shepp_logan_2d, sinogram_2d};

    fn noisy(clean: &[f32], rows: usize, amplitude: f32, seed: u64) -> Vec<f32> {
        let peak = clean.iter().copied().fold(0f32, f32::max);
        let mut state = seed;
        let mut out = Vec::with_capacity(clean.len() * rows);
        for _ in 0..rows {
            out.extend(clean.iter().map(|v| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let u = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                v + 2.0 * amplitude * peak * u
            }));
        }
        out
    }

    fn find(n: usize, angles_deg: &[f64], truth: f64, noise: f32) -> f64 {
        let angles: Vec<f64> = angles_deg.iter().map(|a| a.to_radians()).collect();
        let clean = sinogram_2d(&shepp_logan_2d(), &angles, n, truth, n as f64 * 0.39);
        let sino = if noise > 0.0 { noisy(&clean, 4, noise, 99) } else { clean };
        let a32: Vec<f32> = angles.iter().map(|&a| a as f32).collect();
        find_center_vo(&sino, n, &a32).expect("centre found").center
    }

    #[test]
    fn shifted_axis_with_noise_on_a_half_turn() {
        let angles: Vec<f64> = (0..360).map(|i| i as f64 * 0.5).collect();
        for truth in [131.3, 121.75, 127.5] {
            let c = find(256, &angles, truth, 0.05);
            assert!((c - truth).abs() < 0.25, "found {c}, want {truth}");
        }
    }

    #[test]
    fn scan_whose_last_angle_has_no_partner() {
        // 0 .. 164 degrees: no projection is within 16 degrees of 180 from another, so the pair finder
        // has nothing to compare; Vo's metric still finds the axis.
        let angles: Vec<f64> = (0..165).map(|i| i as f64).collect();
        let a32: Vec<f32> = angles.iter().map(|a| a.to_radians() as f32).collect();
        let truth = 70.4;
        let sino = sinogram_2d(
            &shepp_logan_2d(),
            &angles.iter().map(|a| a.to_radians()).collect::<Vec<_>>(),
            128,
            truth,
            50.0,
        );
        assert!(matches!(crate::center::find_center(&sino, 128, &a32), Err(CenterError::NoPairs)));
        let c = find(128, &angles, truth, 0.02);
        assert!((c - truth).abs() < 0.3, "found {c}, want {truth}");
    }

    #[test]
    fn wide_detector_uses_the_binned_coarse_search() {
        let angles: Vec<f64> = (0..400).map(|i| i as f64 * 180.0 / 400.0).collect();
        let truth = 560.6;
        let c = find(1024, &angles, truth, 0.02);
        assert!((c - truth).abs() < 0.3, "found {c}, want {truth}");
    }

    #[test]
    fn flat_sinogram_is_an_error() {
        let angles: Vec<f32> = (0..90).map(|i| (i as f32 * 2.0).to_radians()).collect();
        assert!(find_center_vo(&vec![1.0; 90 * 64], 64, &angles).is_err());
    }
}
