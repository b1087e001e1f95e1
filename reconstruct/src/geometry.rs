//! The parallel-beam geometry and the rotation-axis convention, written down once.
//!
//! # Convention
//!
//! * **Detector columns.** Column `c` (0-based) has its *centre* at position `c`. A 512-column detector spans
//!   `[-0.5, 511.5]` and its middle is `255.5`.
//! * **`--center X`.** `X` is the position, in those column units, onto which the rotation axis projects.
//!   `X = (n_cols - 1) / 2` (255.5 for 512 columns) means the axis is exactly in the middle of the detector.
//!   (Tools that put pixel centres at `c + 0.5` would call the same axis 256.0.)
//! * **Projection.** At angle `theta` (radians, as stored in the file's `rotation_angle` in degrees) column `c`
//!   holds the line integral along `x cos(theta) + y sin(theta) = c - center`, where `(x, y)` are object
//!   coordinates in pixels with the origin on the axis, `x` right and `y` up. This is also the convention of
//!   `acquisition::phantom`.
//! * **Output slice.** An `n x n` slice, `[row][col]`, has pixel centres at `x = col - (n - 1) / 2`,
//!   `y = (n - 1) / 2 - row`: the axis is at the centre of the slice, row 0 is at the top (largest `y`).
//! * **Slices and detector rows.** Output slice `i` is reconstructed from detector row `i` (row 0 at the top).
//!
//! Consequently, a point object at `(x, y)` appears in the sinogram at column `center + x cos + y sin`, and
//! the test `axis_convention` in `tests/recon_axis.rs` pins this with an off-centre point and a shifted axis.

/// Position of the rotation axis in detector-column units (column `c` has its centre at `c`).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Column(pub f64);

impl Column {
    /// The middle of a detector with `n_cols` columns: `(n_cols - 1) / 2`.
    pub fn middle(n_cols: usize) -> Column {
        Column((n_cols as f64 - 1.0) / 2.0)
    }
}

/// Angle in degrees, as stored in NXtomo `rotation_angle` (the workspace's one type, from
/// [`acquisition::nexus`]).
pub use acquisition::nexus::Degrees;

/// Object coordinates `(x, y)` in pixels of the centre of output pixel `[row][col]` of an `n x n` slice.
pub fn pixel_centre(n: usize, row: usize, col: usize) -> (f64, f64) {
    let h = (n as f64 - 1.0) / 2.0;
    (col as f64 - h, h - row as f64)
}

/// Detector position (column units) onto which the object point `(x, y)` projects at angle `theta`.
pub fn detector_position(x: f64, y: f64, theta: f64, center: f64) -> f64 {
    x * theta.cos() + y * theta.sin() + center
}

/// Which kind of scan a set of angles is, for weighting: a half turn (180 degrees) or a full turn (360).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanRange {
    /// Angles cover `[a, a + 180)` degrees.
    Half,
    /// Angles cover `[a, a + 360)` degrees.
    Full,
}

impl ScanRange {
    /// Classifies uniformly spaced angles (radians): spans under 270 degrees count as half turns.
    pub fn of(angles_rad: &[f32]) -> ScanRange {
        let n = angles_rad.len();
        if n < 2 {
            return ScanRange::Half;
        }
        let lo = angles_rad.iter().copied().fold(f32::INFINITY, f32::min) as f64;
        let hi = angles_rad.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        // The covered span is the extent plus one step.
        let span = (hi - lo) * n as f64 / (n as f64 - 1.0);
        if span.to_degrees() < 270.0 {
            ScanRange::Half
        } else {
            ScanRange::Full
        }
    }

    /// The backprojection weight per angle, `pi / n` for a half turn and also `pi / n` for a full turn
    /// (where every line is measured twice over `2 pi`), so one formula serves both.
    pub fn weight(self, n_angles: usize) -> f64 {
        std::f64::consts::PI / n_angles.max(1) as f64
    }
}
