//! 360-degree offset-axis (half-acquisition) scans: the rotation axis projects near one detector edge, so each
//! projection sees a little more than half the object and the projection half a turn later sees the other half,
//! mirrored. [`stitch_360`] joins every projection at `theta` in the first half turn with the mirrored one at
//! `theta + 180` (interpolated between the two nearest measured angles) into one double-width projection, with
//! a linear blend across the columns both see, giving a 180-degree sinogram of the doubled field of view
//! whose axis is at the same column `center` (the original columns keep their indices when the axis is near
//! the right edge; near the left edge the result is built mirrored and flipped back, so the axis column moves
//! to the right half).
//!
//! `beamline recon --offset-axis [auto|left|right]` ([`OffsetAxis`]) runs it per slab: the reader's rows are
//! flat-fielded (and phase-retrieved), `-log`ged, stitched and handed to the backends as transmissions of the
//! doubled detector ([`StitchPlan`] gives its geometry before any row is read); `--center auto` finds the axis
//! by comparing each projection with the mirror of the one half a turn later over their narrow overlap
//! ([`crate::center::find_center_offset`]). Same idea as tomocupy's `--file-type double_fov` and nabu's
//! `enable_halftomo`.

/// Which edge of the detector the rotation axis is near, as `--offset-axis` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OffsetAxis {
    /// Either: the side of the axis given or found.
    Auto,
    /// The axis is near column 0.
    Left,
    /// The axis is near the last column.
    Right,
}

impl OffsetAxis {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            OffsetAxis::Auto => "auto",
            OffsetAxis::Left => "left",
            OffsetAxis::Right => "right",
        }
    }

    /// Checks an axis at `center` of `n_cols` columns against the side asked for: near an edge, and that edge.
    pub fn check(self, center: f64, n_cols: usize) -> Result<(), StitchError> {
        let last = n_cols.saturating_sub(1) as f64;
        if center < 0.75 * last && center > 0.25 * last {
            return Err(StitchError::AxisCentred { center, n_cols });
        }
        let found = if center < 0.5 * last { OffsetAxis::Left } else { OffsetAxis::Right };
        if self != OffsetAxis::Auto && self != found {
            return Err(StitchError::WrongSide { center, n_cols, asked: self.name(), found: found.name() });
        }
        Ok(())
    }
}

/// The geometry [`stitch_360`] gives, known before any data is read.
#[derive(Debug, Clone, PartialEq)]
pub struct StitchPlan {
    /// Angles of the stitched rows (radians), in the order [`stitch_360`] writes them.
    pub angles_rad: Vec<f32>,
    /// Columns of the stitched detector.
    pub n_cols: usize,
    /// Column of the rotation axis in the stitched detector.
    pub center: f64,
    /// Columns both halves see.
    pub overlap: usize,
}

/// Checks that `angles_rad` span a full turn; a half turn gets its own message (no `--offset-axis` then).
pub fn check_full_turn(angles_rad: &[f32]) -> Result<(), StitchError> {
    let na = angles_rad.len();
    let lo = angles_rad.iter().copied().fold(f32::INFINITY, f32::min) as f64;
    let hi = angles_rad.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let step = if na > 1 { (hi - lo) / (na - 1) as f64 } else { 0.0 };
    let span = if na > 0 { hi - lo + step } else { 0.0 };
    let pi = std::f64::consts::PI;
    if span >= 2.0 * pi - 1.5 * step.max(1e-6) {
        return Ok(());
    }
    let span_deg = span.to_degrees();
    if (span_deg - 180.0).abs() < 10.0 {
        return Err(StitchError::HalfTurn { span_deg });
    }
    Err(StitchError::NotFullTurn { span_deg })
}

/// The stitched geometry for a 360-degree scan of `n_cols` columns with its axis at `center`.
pub fn plan(angles_rad: &[f32], n_cols: usize, center: f64) -> Result<StitchPlan, StitchError> {
    check_full_turn(angles_rad)?;
    OffsetAxis::Auto.check(center, n_cols)?;
    let last = n_cols.saturating_sub(1) as f64;
    let pi = std::f64::consts::PI;
    let mut order: Vec<usize> = (0..angles_rad.len()).collect();
    order.sort_by(|&a, &b| angles_rad[a].total_cmp(&angles_rad[b]));
    let a0 = order.first().map_or(0.0, |&i| angles_rad[i] as f64);
    let first = order.iter().map(|&i| angles_rad[i]).filter(|&a| (a as f64) < a0 + pi - 1e-9).collect();
    let right = if center < 0.5 * last { last - center } else { center };
    let w = (2.0 * right).floor() as usize + 1;
    let overlap = ((2.0 * last - 2.0 * right).max(0.0).floor() as usize) + 1;
    let center = if center < 0.5 * last { (w - 1) as f64 - right } else { center };
    Ok(StitchPlan { angles_rad: first, n_cols: w, center, overlap })
}

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
    #[error(
        "--offset-axis needs a full turn of projections (a 360-degree half-acquisition scan); the angles span \
         {span_deg:.1} degrees: check --start-proj/--end-proj and the scan's rotation_angle"
    )]
    NotFullTurn {
        /// Span of the angles.
        span_deg: f64,
    },
    /// A 180-degree scan.
    #[error(
        "--offset-axis needs a 360-degree half-acquisition scan, but this is a 180-degree scan (the angles span \
         {span_deg:.1} degrees), which holds each view once: reconstruct it without --offset-axis"
    )]
    HalfTurn {
        /// Span of the angles.
        span_deg: f64,
    },
    /// `--offset-axis left` with the axis near the right edge, or the reverse.
    #[error(
        "--offset-axis {asked}: the axis at column {center:.2} of {n_cols} is near the {found} edge; give \
         --offset-axis {found} or auto, or the right --center"
    )]
    WrongSide {
        /// The axis column.
        center: f64,
        /// Detector columns.
        n_cols: usize,
        /// The side asked for.
        asked: &'static str,
        /// The side of the axis.
        found: &'static str,
    },
    /// The axis is not near an edge: a normal 180-degree reconstruction applies.
    #[error(
        "the axis at column {center:.2} of {n_cols} is not near an edge, as offset-axis stitching needs (it must lie \
         in the outer quarter of the detector, columns 0 to {lo:.1} or {hi:.1} to {last}); reconstruct without \
         --offset-axis, or give the right --center",
        lo = 0.25 * (*.n_cols as f64 - 1.0), hi = 0.75 * (*.n_cols as f64 - 1.0), last = *.n_cols as f64 - 1.0
    )]
    AxisCentred {
        /// The axis column.
        center: f64,
        /// Detector columns.
        n_cols: usize,
    },
    /// `--center vo` asked of an offset-axis scan.
    #[error(
        "--center vo with --offset-axis: Vo's metric scores a 180-degree sinogram, and the stitched one depends on \
         the centre; use --center auto (each projection against the mirror of the one half a turn later, over \
         their overlap) or give the column"
    )]
    VoCentre,
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
    let a0 = angles_rad[order[0]] as f64;
    let pi = std::f64::consts::PI;
    check_full_turn(angles_rad)?;
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
