//! 360-degree offset-axis (half-acquisition) scans: the rotation axis projects near one detector edge, so each
//! projection sees a little more than half the object and the projection half a turn later sees the other half,
//! mirrored. [`stitch_360`] joins every projection at `theta` in the first half turn with the mirrored one at
//! `theta + 180` (interpolated between the two nearest measured angles) into one double-width projection, with
//! a linear blend across the columns both see, giving a 180-degree sinogram of the doubled field of view
//! whose axis is at the same column `center` (the original columns keep their indices when the axis is near
//! the right edge; near the left edge the result is built mirrored and flipped back, so the axis column moves
//! to the right half). Library part of issue 15 §5; the `--offset-axis` command-line option is still missing.

/// A stitched 180-degree sinogram.
#[derive(Debug, Clone)]
pub struct Stitched {
    /// `angles x n_cols` values.
    pub sinogram: Vec<f32>,
    /// Angles of the rows (radians): the measured angles of the first half turn.
    pub angles_rad: Vec<f32>,
    /// Columns of the stitched detector.
    pub n_cols: usize,
    /// Column of the rotation axis in the stitched detector ([`crate::geometry`] convention).
    pub center: f64,
    /// Columns seen by both the direct and the mirrored projection (the blended overlap).
    pub overlap: usize,
}

/// Why a scan cannot be stitched.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StitchError {
    /// The angles do not span a full turn.
    #[error("offset-axis stitching needs a 360-degree scan; the angles span {span_deg:.1} degrees")]
    NotFullTurn {
        /// Span of the angles.
        span_deg: f64,
    },
    /// The axis is not near an edge: a normal 180-degree reconstruction applies.
    #[error(
        "the axis at column {center:.2} of {n_cols} is not off-centre enough for offset-axis stitching (it must lie \
         in the outer quarter of the detector); reconstruct without --offset-axis"
    )]
    AxisCentred {
        /// The axis column.
        center: f64,
        /// Detector columns.
        n_cols: usize,
    },
    /// Sizes that do not fit.
    #[error("sinogram has {len} values, expected {angles} x {n_cols}")]
    Size {
        /// Values given.
        len: usize,
        /// Angles given.
        angles: usize,
        /// Columns given.
        n_cols: usize,
    },
}

/// Stitches a 360-degree `-log` sinogram (`angles x n_cols`, angles in radians, any order) with its axis at
/// `center` near one edge into a double-width 180-degree sinogram.
pub fn stitch_360(sino: &[f32], angles_rad: &[f32], n_cols: usize, center: f64) -> Result<Stitched, StitchError> {
    let na = angles_rad.len();
    if sino.len() != na * n_cols || n_cols < 2 {
        return Err(StitchError::Size { len: sino.len(), angles: na, n_cols });
    }
    let last = (n_cols - 1) as f64;
    if center < 0.75 * last && center > 0.25 * last {
        return Err(StitchError::AxisCentred { center, n_cols });
    }
    if center < 0.5 * last {
        // Axis near the left edge: mirror the detector, stitch, mirror back.
        let flipped: Vec<f32> = sino.chunks(n_cols).flat_map(|r| r.iter().rev().copied()).collect();
        let s = stitch_360(&flipped, angles_rad, n_cols, last - center)?;
        let w = s.n_cols;
        let sinogram = s.sinogram.chunks(w).flat_map(|r| r.iter().rev().copied()).collect();
        return Ok(Stitched { sinogram, center: (w - 1) as f64 - s.center, ..s });
    }
    let mut order: Vec<usize> = (0..na).collect();
    order.sort_by(|&a, &b| angles_rad[a].total_cmp(&angles_rad[b]));
    let (a0, a1) = (angles_rad[order[0]] as f64, angles_rad[order[na - 1]] as f64);
    let pi = std::f64::consts::PI;
    let step = if na > 1 { (a1 - a0) / (na - 1) as f64 } else { 0.0 };
    if a1 - a0 + step < 2.0 * pi - 1.5 * step.max(1e-6) {
        return Err(StitchError::NotFullTurn { span_deg: (a1 - a0 + step).to_degrees() });
    }
    // Columns: the direct projection covers j = 0..n_cols-1; the mirrored one covers j = 2c - col.
    let w = (2.0 * center).floor() as usize + 1;
    let overlap_lo = 2.0 * center - last; // first j the mirror reaches (col = n_cols - 1)
    let overlap = ((last - overlap_lo).max(0.0).floor() as usize) + 1;
    let row = |i: usize| &sino[i * n_cols..(i + 1) * n_cols];
    // The projection at angle t (radians), linearly interpolated between the nearest measured angles,
    // wrapping around the turn.
    let at = |t: f64, col: f64| -> f32 {
        let t = a0 + (t - a0).rem_euclid(2.0 * pi);
        let k = order.partition_point(|&i| (angles_rad[i] as f64) <= t);
        let (lo, hi) = if k == 0 { (order[na - 1], order[0]) } else { (order[k - 1], order[k % na]) };
        let (tl, mut th) = (angles_rad[lo] as f64, angles_rad[hi] as f64);
        if th < tl {
            th += 2.0 * pi;
        }
        let f = if th > tl { ((t - tl) / (th - tl)).clamp(0.0, 1.0) } else { 0.0 };
        let sample = |r: &[f32]| {
            let i = col.floor().clamp(0.0, last) as usize;
            let g = (col - i as f64) as f32;
            let j = (i + 1).min(n_cols - 1);
            r[i] + g * (r[j] - r[i])
        };
        (1.0 - f as f32) * sample(row(lo)) + f as f32 * sample(row(hi))
    };
    let first: Vec<usize> = order.iter().copied().filter(|&i| (angles_rad[i] as f64) < a0 + pi - 1e-9).collect();
    let mut out = vec![0f32; first.len() * w];
    for (o, &i) in out.chunks_mut(w).zip(&first) {
        let t = angles_rad[i] as f64;
        let direct = row(i);
        for (j, v) in o.iter_mut().enumerate() {
            let jf = j as f64;
            let mirror_col = 2.0 * center - jf;
            let has_direct = j < n_cols;
            let has_mirror = (0.0..=last).contains(&mirror_col);
            *v = match (has_direct, has_mirror) {
                (true, false) => direct[j],
                (false, true) => at(t + pi, mirror_col),
                (true, true) => {
                    // Linear blend: all direct at the overlap's left end, all mirrored at its right end.
                    let wd = ((last - jf) / (last - overlap_lo).max(1.0)).clamp(0.0, 1.0) as f32;
                    wd * direct[j] + (1.0 - wd) * at(t + pi, mirror_col)
                }
                (false, false) => 0.0,
            };
        }
    }
    Ok(Stitched {
        sinogram: out,
        angles_rad: first.iter().map(|&i| angles_rad[i]).collect(),
        n_cols: w,
        center,
        overlap,
    })
}
