//! Live preview: an incremental filtered backprojection of a few chosen slices, updated as each frame of a
//! series arrives, so an operator sees the sample while the scan runs — the data is reduced to a few
//! slices in memory before (and whether or not) it reaches disk.
//!
//! Frames are taken in acquisition order: darks and flats are averaged as they come; each projection is
//! normalised with the darks and flats seen so far (those taken *before* it), `-log`'d, filtered and
//! backprojected at its own angle into one accumulator per chosen slice. The stages are the CPU backend's
//! own ([`crate::preprocess::normalize_minus_log`], [`crate::filter::RowFilter`],
//! [`crate::backproject::Prepared`]), and every accumulator sums its angles in acquisition order as the
//! full reconstruction does, so once every projection is in, the preview equals the full CPU
//! reconstruction of those rows up to rounding of the FFT (rows are filtered one at a time here, in pairs
//! there) and up to the flats taken after the projections, which a live preview cannot have seen.
//!
//! Cost per projection: one FFT pair and one `out_size^2` backprojection per chosen slice.

pub mod feed;

pub use feed::{FeedError, PreviewFeed, PreviewRows, WrittenPreview};

use crate::backproject::Prepared;
use crate::filter::{FilterKind, RowFilter};
use crate::geometry::Degrees;
use crate::preprocess::normalize_minus_log;

/// What a frame is, as in NXtomo's `image_key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A projection of the sample (`image_key` 0).
    Projection,
    /// A flat field, beam without sample (`image_key` 1).
    Flat,
    /// A dark field, no beam (`image_key` 2).
    Dark,
}

impl FrameKind {
    /// The kind of an NXtomo `image_key` value; `None` for values the preview ignores (3, invalid).
    pub fn from_image_key(key: i64) -> Option<FrameKind> {
        match key {
            0 => Some(FrameKind::Projection),
            1 => Some(FrameKind::Flat),
            2 => Some(FrameKind::Dark),
            _ => None,
        }
    }
}

/// The pixels of one whole frame (`rows x cols`, row-major), in the detector's element type.
#[derive(Debug, Clone, Copy)]
pub enum Pixels<'a> {
    /// 8-bit counts.
    U8(&'a [u8]),
    /// 16-bit counts.
    U16(&'a [u16]),
    /// 32-bit counts.
    U32(&'a [u32]),
    /// Floating-point values.
    F32(&'a [f32]),
}

impl Pixels<'_> {
    fn len(&self) -> usize {
        match self {
            Pixels::U8(p) => p.len(),
            Pixels::U16(p) => p.len(),
            Pixels::U32(p) => p.len(),
            Pixels::F32(p) => p.len(),
        }
    }

    /// Adds (or, with `add == false`, copies) elements `range` into `out` as f32.
    fn row_into(&self, range: std::ops::Range<usize>, out: &mut [f32], add: bool) {
        fn go<T: Copy>(src: &[T], out: &mut [f32], add: bool, f: impl Fn(T) -> f32) {
            for (o, &v) in out.iter_mut().zip(src) {
                *o = if add { *o + f(v) } else { f(v) };
            }
        }
        match self {
            Pixels::U8(p) => go(&p[range], out, add, f32::from),
            Pixels::U16(p) => go(&p[range], out, add, f32::from),
            Pixels::U32(p) => go(&p[range], out, add, |v| v as f32),
            Pixels::F32(p) => go(&p[range], out, add, |v| v),
        }
    }
}

/// The geometry of a preview: what a series start and the scan parameters tell about the data.
#[derive(Debug, Clone)]
pub struct PreviewGeometry {
    /// Detector rows per frame.
    pub rows: usize,
    /// Detector columns per frame.
    pub cols: usize,
    /// Rotation axis position in columns (see [`crate::geometry`]; the middle is `(cols - 1) / 2`).
    pub center: f64,
    /// Output slices are `out_size x out_size`.
    pub out_size: usize,
    /// Projections the series will hold (sets the backprojection weight `pi / n`; a preview shown before
    /// the end is rescaled by the share received).
    pub projections: usize,
    /// Filter applied to each row.
    pub filter: FilterKind,
}

impl PreviewGeometry {
    /// A preview of `projections` projections of `rows x cols` frames, axis in the middle, slices as wide as
    /// the detector, ramp filter.
    pub fn centered(rows: usize, cols: usize, projections: usize) -> PreviewGeometry {
        PreviewGeometry {
            rows,
            cols,
            center: (cols as f64 - 1.0) / 2.0,
            out_size: cols,
            projections,
            filter: FilterKind::Ramp,
        }
    }
}

/// Why a frame or a preview was refused. A refused frame changes nothing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PreviewError {
    /// A chosen slice is not a detector row.
    #[error("preview row {row} is outside the {rows}-row detector: choose rows 0..{rows}")]
    RowOutOfRange {
        /// The row asked for.
        row: usize,
        /// Rows of the detector.
        rows: usize,
    },
    /// The geometry cannot be reconstructed (no columns, no projections, no output pixels).
    #[error("preview geometry is empty: {0}")]
    EmptyGeometry(String),
    /// A frame has the wrong number of pixels.
    #[error("frame has {got} pixels, expected {rows}x{cols} = {}", rows * cols)]
    FrameSize {
        /// Pixels received.
        got: usize,
        /// Rows expected.
        rows: usize,
        /// Columns expected.
        cols: usize,
    },
    /// A projection angle is NaN or infinite.
    #[error("projection angle {0} is not finite")]
    BadAngle(f64),
}

/// How far a preview has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PreviewProgress {
    /// Projections backprojected so far.
    pub projections: usize,
    /// Projections the series will hold.
    pub expected: usize,
    /// Darks averaged.
    pub darks: usize,
    /// Flats averaged (before the first projection).
    pub flats: usize,
    /// Projections that arrived before any flat and were left out (nothing to normalise with).
    pub skipped: usize,
    /// Values clamped before `-log` (non-positive transmission).
    pub clamped: u64,
}

/// An incremental filtered backprojection of a few detector rows (see the module documentation).
#[derive(Debug, Clone)]
pub struct LivePreview {
    geometry: PreviewGeometry,
    rows: Vec<usize>,
    filter: RowFilter,
    /// Per chosen row: sum of darks, sum of flats (`cols` each).
    dark_sum: Vec<Vec<f32>>,
    flat_sum: Vec<Vec<f32>>,
    /// Averages, frozen at the first projection.
    dark: Vec<Vec<f32>>,
    flat: Vec<Vec<f32>>,
    /// Per chosen row, the `out_size^2` accumulator.
    acc: Vec<Vec<f32>>,
    progress: PreviewProgress,
}

impl LivePreview {
    /// A preview of detector `rows` (each becomes one slice) for a series of `geometry`.
    pub fn new(geometry: PreviewGeometry, rows: &[usize]) -> Result<LivePreview, PreviewError> {
        let g = &geometry;
        if g.cols < 2 || g.projections == 0 || g.out_size == 0 || !g.center.is_finite() {
            return Err(PreviewError::EmptyGeometry(format!(
                "{} columns, {} projections, {}-pixel slices, axis at {}",
                g.cols, g.projections, g.out_size, g.center
            )));
        }
        if let Some(&row) = rows.iter().find(|&&r| r >= g.rows) {
            return Err(PreviewError::RowOutOfRange { row, rows: g.rows });
        }
        let weight = std::f64::consts::PI / g.projections as f64;
        let zeros = |n: usize| vec![vec![0f32; n]; rows.len()];
        Ok(LivePreview {
            filter: RowFilter::new(g.filter, g.cols, weight),
            dark_sum: zeros(g.cols),
            flat_sum: zeros(g.cols),
            dark: Vec::new(),
            flat: Vec::new(),
            acc: zeros(g.out_size * g.out_size),
            rows: rows.to_vec(),
            progress: PreviewProgress { expected: g.projections, ..Default::default() },
            geometry,
        })
    }

    /// The detector rows previewed, in the order of [`LivePreview::slices`].
    pub fn rows(&self) -> &[usize] {
        &self.rows
    }

    /// The geometry given at creation.
    pub fn geometry(&self) -> &PreviewGeometry {
        &self.geometry
    }

    /// Takes the next frame of the series, in acquisition order.
    pub fn on_frame(&mut self, kind: FrameKind, angle: Degrees, pixels: Pixels<'_>) -> Result<(), PreviewError> {
        let (rows, cols) = (self.geometry.rows, self.geometry.cols);
        if pixels.len() != rows * cols {
            return Err(PreviewError::FrameSize { got: pixels.len(), rows, cols });
        }
        match kind {
            FrameKind::Dark | FrameKind::Flat if !self.dark.is_empty() => {
                // Taken after the projections started: the full reconstruction may use these (flats after),
                // a live preview has already normalised with what came before.
            }
            FrameKind::Dark => {
                self.add_rows(pixels, true);
                self.progress.darks += 1;
            }
            FrameKind::Flat => {
                self.add_rows(pixels, false);
                self.progress.flats += 1;
            }
            FrameKind::Projection => {
                if !angle.0.is_finite() {
                    return Err(PreviewError::BadAngle(angle.0));
                }
                if self.progress.flats == 0 {
                    self.progress.skipped += 1;
                    return Ok(());
                }
                if self.dark.is_empty() {
                    self.freeze_fields();
                }
                self.backproject(angle, pixels);
            }
        }
        Ok(())
    }

    fn add_rows(&mut self, pixels: Pixels<'_>, dark: bool) {
        let cols = self.geometry.cols;
        let sums = if dark { &mut self.dark_sum } else { &mut self.flat_sum };
        for (sum, &row) in sums.iter_mut().zip(&self.rows) {
            pixels.row_into(row * cols..(row + 1) * cols, sum, true);
        }
    }

    /// Averages the darks and flats seen so far; they stay fixed from the first projection on.
    fn freeze_fields(&mut self) {
        let avg = |sums: &[Vec<f32>], n: usize| -> Vec<Vec<f32>> {
            let scale = if n == 0 { 0.0 } else { 1.0 / n as f32 };
            sums.iter().map(|s| s.iter().map(|v| v * scale).collect()).collect()
        };
        self.dark = avg(&self.dark_sum, self.progress.darks);
        self.flat = avg(&self.flat_sum, self.progress.flats);
    }

    fn backproject(&mut self, angle: Degrees, pixels: Pixels<'_>) {
        let g = &self.geometry;
        let theta = [angle.to_radians() as f32];
        let mut row = vec![0f32; g.cols];
        let mut tile = vec![0f32; g.out_size * g.out_size];
        for (i, &r) in self.rows.iter().enumerate() {
            pixels.row_into(r * g.cols..(r + 1) * g.cols, &mut row, false);
            self.progress.clamped += normalize_minus_log(&mut row, &self.dark[i], &self.flat[i], &self.flat[i], &[0.0]);
            self.filter.apply(&mut row, 1);
            let prep = Prepared::new(&row, g.cols, &theta, g.center, g.out_size);
            prep.backproject_tile(g.out_size, 0, &mut tile);
            for (a, t) in self.acc[i].iter_mut().zip(&tile) {
                *a += *t;
            }
        }
        self.progress.projections += 1;
    }

    /// The current slices, one `out_size x out_size` image (`[y-row][x-col]`) per chosen row. Before the
    /// last projection the sums are scaled up by `expected / received`, so intensities are comparable all
    /// along (a limited-angle image that sharpens as the scan goes on).
    pub fn slices(&self) -> Vec<Vec<f32>> {
        let p = self.progress;
        let scale = if p.projections == 0 || p.projections >= p.expected {
            1.0
        } else {
            p.expected as f32 / p.projections as f32
        };
        self.acc.iter().map(|a| a.iter().map(|v| v * scale).collect()).collect()
    }

    /// Projections received so far, and the rest of the counts.
    pub fn progress(&self) -> PreviewProgress {
        self.progress
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ReconSetup;
    use crate::cpu::SinogramPipeline;
    use acquisition::phantom::{project_3d, rasterize_3d_slice, shepp_logan_3d, Detector};

    const FLAT: f32 = 20000.0;
    const DARK: f32 = 100.0;

    /// Raw u16 counts of a projection: Beer-Lambert on the exact line integrals (scaled to keep the
    /// transmission well above zero), with a column-dependent flat.
    fn raw_frame(lines: &[f32], cols: usize, scale: f32) -> Vec<u16> {
        lines
            .iter()
            .enumerate()
            .map(|(i, &p)| {
                let flat = FLAT * (1.0 + 0.1 * ((i % cols) as f32 / cols as f32));
                (DARK + (flat - DARK) * (-p * scale).exp()).round() as u16
            })
            .collect()
    }

    fn flat_frame(rows: usize, cols: usize) -> Vec<u16> {
        raw_frame(&vec![0.0; rows * cols], cols, 1.0)
    }

    #[test]
    fn after_every_projection_the_preview_matches_the_full_reconstruction() {
        let (rows, cols, n) = (24usize, 64usize, 90usize);
        let det = Detector::centered(rows, cols);
        let phantom = shepp_logan_3d();
        // Attenuation scaled so the densest line keeps ~10% transmission.
        let scale = 0.05f32;
        let chosen = [6usize, 12, 17];
        let mut preview = LivePreview::new(PreviewGeometry::centered(rows, cols, n), &chosen).unwrap();
        let dark = vec![DARK as u16; rows * cols];
        preview.on_frame(FrameKind::Dark, Degrees(0.0), Pixels::U16(&dark)).unwrap();
        preview.on_frame(FrameKind::Dark, Degrees(0.0), Pixels::U16(&dark)).unwrap();
        preview.on_frame(FrameKind::Flat, Degrees(0.0), Pixels::U16(&flat_frame(rows, cols))).unwrap();

        let angles: Vec<f64> = (0..n).map(|k| 180.0 * k as f64 / n as f64).collect();
        let mut sinos = vec![vec![0f32; n * cols]; chosen.len()];
        for (k, &deg) in angles.iter().enumerate() {
            let frame = raw_frame(&project_3d(&phantom, &det, deg.to_radians()), cols, scale);
            preview.on_frame(FrameKind::Projection, Degrees(deg), Pixels::U16(&frame)).unwrap();
            for (s, &r) in chosen.iter().enumerate() {
                for c in 0..cols {
                    let flat = FLAT * (1.0 + 0.1 * (c as f32 / cols as f32));
                    let t = (frame[r * cols + c] as f32 - DARK) / (flat.round() - DARK);
                    sinos[s][k * cols + c] = -t.ln();
                }
            }
        }
        let p = preview.progress();
        assert_eq!((p.projections, p.expected, p.darks, p.flats, p.skipped), (n, n, 2, 1, 0));

        let setup = ReconSetup::new(angles.iter().map(|d| d.to_radians() as f32).collect(), cols, 31.5, cols);
        let full = SinogramPipeline::new(&setup).unwrap();
        let slices = preview.slices();
        for (s, &r) in chosen.iter().enumerate() {
            let reference = full.reconstruct_minus_log(&sinos[s]);
            let max_diff = reference.iter().zip(&slices[s]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            let peak = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert!(max_diff <= 1e-4 * peak.max(1e-3), "row {r}: max |preview - full| = {max_diff}, peak {peak}");
            // And both are the phantom (scaled by the attenuation factor), roughly.
            let truth = rasterize_3d_slice(&phantom, &det, r, cols);
            let rmse = (truth.iter().zip(&slices[s]).map(|(t, v)| (t * scale - v).powi(2)).sum::<f32>()
                / truth.len() as f32)
                .sqrt();
            assert!(rmse < 0.25 * scale, "row {r}: rmse against the phantom {rmse}");
        }
    }

    #[test]
    fn partial_preview_is_rescaled_and_bad_frames_change_nothing() {
        let (rows, cols) = (4usize, 16usize);
        let mut p = LivePreview::new(PreviewGeometry::centered(rows, cols, 4), &[1]).unwrap();
        let flat = flat_frame(rows, cols);
        // A projection before any flat is skipped, not normalised with nothing.
        p.on_frame(FrameKind::Projection, Degrees(0.0), Pixels::U16(&flat)).unwrap();
        assert_eq!(p.progress().skipped, 1);
        p.on_frame(FrameKind::Flat, Degrees(0.0), Pixels::U16(&flat)).unwrap();
        let short = vec![0u16; 3];
        let e = p.on_frame(FrameKind::Projection, Degrees(0.0), Pixels::U16(&short)).unwrap_err();
        assert_eq!(e, PreviewError::FrameSize { got: 3, rows, cols });
        let e = p.on_frame(FrameKind::Projection, Degrees(f64::NAN), Pixels::U16(&flat));
        assert!(matches!(e, Err(PreviewError::BadAngle(_))));
        assert_eq!(p.progress().projections, 0);

        let mut bump = flat.clone();
        bump[cols + 8] /= 2;
        p.on_frame(FrameKind::Projection, Degrees(0.0), Pixels::U16(&bump)).unwrap();
        let one = p.slices();
        p.on_frame(FrameKind::Projection, Degrees(0.0), Pixels::U16(&bump)).unwrap();
        let two = p.slices();
        // Two identical projections out of four, rescaled by 4/2, equal one rescaled by 4/1.
        for (a, b) in one[0].iter().zip(&two[0]) {
            assert!((a - b).abs() <= 1e-5 * a.abs().max(1e-3), "{a} vs {b}");
        }
        assert!(LivePreview::new(PreviewGeometry::centered(rows, cols, 4), &[4]).is_err());
    }
}
