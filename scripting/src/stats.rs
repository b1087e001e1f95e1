//! Peak statistics of one scan column against its abscissa, as SPEC's `pl_CEN`/`pl_FWHM` and bluesky's
//! `PeakStats` give them: `peak` (abscissa of the maximum), `cen` (middle of the half-maximum crossings),
//! `fwhm`, and `com` (centre of mass above the minimum). An edge is found on the derivative.

/// The statistics of `y(x)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeakStats {
    /// Abscissa of the largest value.
    pub peak: f64,
    /// The largest value.
    pub max: f64,
    /// The smallest value.
    pub min: f64,
    /// Centre of mass of `y - min`.
    pub com: f64,
    /// Middle of the two crossings of half maximum around the peak (linear interpolation; a side without
    /// a crossing uses the end of the scan).
    pub cen: f64,
    /// Distance between the two half-maximum crossings.
    pub fwhm: f64,
}

/// `|dy/dx|` at the midpoints of consecutive points: where an edge becomes a peak.
pub fn derivative(x: &[f64], y: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mut xs = Vec::with_capacity(x.len().saturating_sub(1));
    let mut ys = Vec::with_capacity(x.len().saturating_sub(1));
    for i in 1..x.len().min(y.len()) {
        let dx = x[i] - x[i - 1];
        if dx != 0.0 {
            xs.push(0.5 * (x[i] + x[i - 1]));
            ys.push(((y[i] - y[i - 1]) / dx).abs());
        }
    }
    (xs, ys)
}

/// Statistics of `y(x)`; `None` when there is no finite point.
pub fn peak_stats(x: &[f64], y: &[f64]) -> Option<PeakStats> {
    let pts: Vec<(f64, f64)> =
        x.iter().zip(y).map(|(&a, &b)| (a, b)).filter(|(a, b)| a.is_finite() && b.is_finite()).collect();
    let first = *pts.first()?;
    let (mut imax, mut max, mut min) = (0, first.1, first.1);
    for (i, &(_, v)) in pts.iter().enumerate() {
        if v > max {
            imax = i;
            max = v;
        }
        min = min.min(v);
    }
    let weight: f64 = pts.iter().map(|p| p.1 - min).sum();
    let com = if weight > 0.0 { pts.iter().map(|p| p.0 * (p.1 - min)).sum::<f64>() / weight } else { pts[imax].0 };
    let half = min + 0.5 * (max - min);
    let cross = |a: (f64, f64), b: (f64, f64)| {
        if b.1 == a.1 {
            a.0
        } else {
            a.0 + (half - a.1) * (b.0 - a.0) / (b.1 - a.1)
        }
    };
    let mut left = pts[0].0;
    for i in (1..=imax).rev() {
        if pts[i - 1].1 <= half {
            left = cross(pts[i - 1], pts[i]);
            break;
        }
    }
    let mut right = pts[pts.len() - 1].0;
    for i in imax..pts.len() - 1 {
        if pts[i + 1].1 <= half {
            right = cross(pts[i], pts[i + 1]);
            break;
        }
    }
    Some(PeakStats { peak: pts[imax].0, max, min, com, cen: 0.5 * (left + right), fwhm: (right - left).abs() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaussian_peak_statistics() {
        let x: Vec<f64> = (0..41).map(|i| -2.0 + 0.1 * i as f64).collect();
        let y: Vec<f64> = x.iter().map(|&v| (-(v - 0.33f64).powi(2) / (2.0 * 0.2f64 * 0.2)).exp()).collect();
        let s = peak_stats(&x, &y).unwrap();
        assert!((s.cen - 0.33).abs() < 0.01, "{s:?}");
        assert!((s.com - 0.33).abs() < 0.01, "{s:?}");
        assert!((s.fwhm - 2.3548 * 0.2).abs() < 0.02, "{s:?}");
        assert!((s.peak - 0.3).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn edge_is_the_peak_of_the_derivative() {
        let x: Vec<f64> = (0..21).map(|i| i as f64 * 0.1).collect();
        let y: Vec<f64> = x.iter().map(|&v| if v < 1.05 { 10.0 } else { 0.0 }).collect();
        let (dx, dy) = derivative(&x, &y);
        let s = peak_stats(&dx, &dy).unwrap();
        assert!((s.cen - 1.05).abs() < 1e-9, "{s:?}");
        assert!(peak_stats(&[], &[]).is_none());
    }
}
