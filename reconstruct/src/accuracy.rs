//! How close a reconstructed volume is to the phantom the simulated detector imaged.
//!
//! The simulator attenuates by `exp(-k L)` with `k = attenuation / cols` per phantom intensity and pixel
//! (`acquisition::sim`), so a correct reconstruction holds `k x` the phantom; dividing by `k` gives values
//! in phantom units (skull 1.0, brain 0.2), compared with [`acquisition::phantom::rasterize_3d_slice`] over
//! the disc the detector sees at every angle.
//!
//! The slices are read back from the float32 TIFF files a reconstruction wrote (`slice_NNNNN.tif`, the
//! slice index being the detector row), with [`crate::output::read_f32_tiff`].

use std::path::{Path, PathBuf};

use acquisition::phantom::{rasterize_3d_slice, shepp_logan_3d, Detector};

use crate::output::{read_f32_tiff, ReadError};

/// Accuracy of a reconstructed volume against the phantom.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Accuracy {
    /// Root-mean-square error over every slice, inside the disc of radius 0.95 x half the width, in phantom
    /// units.
    pub rmse: f64,
    /// The same for the middle slice only.
    pub rmse_middle: f64,
    /// Slices compared.
    pub slices: usize,
}

/// Why the accuracy could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum AccuracyError {
    /// The folder could not be listed.
    #[error("reading {}", path.display())]
    List {
        /// The folder.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// No slice files at all.
    #[error("no slice_*.tif files in {}", .0.display())]
    NoSlices(PathBuf),
    /// A slice could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A slice that is not square or whose row is off the detector.
    #[error("{}: {width}x{height} slice of row {row} does not fit a {rows}x{cols} detector", path.display())]
    Misfit {
        /// The slice file.
        path: PathBuf,
        /// Its width.
        width: usize,
        /// Its height.
        height: usize,
        /// Its detector row.
        row: usize,
        /// Detector rows.
        rows: usize,
        /// Detector columns.
        cols: usize,
    },
}

/// Compares every `slice_NNNNN.tif` in `dir` (slice index = detector row) of a `rows x cols` detector with
/// the Shepp-Logan phantom, for attenuation coefficient `attenuation` (see the module documentation).
pub fn measure(dir: &Path, rows: usize, cols: usize, attenuation: f64) -> Result<Accuracy, AccuracyError> {
    let det = Detector::centered(rows, cols);
    let phantom = shepp_logan_3d();
    let k = attenuation / cols as f64;
    let mut slices = slice_files(dir)?;
    slices.sort();
    if slices.is_empty() {
        return Err(AccuracyError::NoSlices(dir.to_path_buf()));
    }
    let middle = rows / 2;
    let (mut sum, mut n, mut mid) = (0f64, 0usize, None);
    for (row, path) in &slices {
        let (w, h, data) = read_f32_tiff(path)?;
        if w != h || *row >= rows {
            return Err(AccuracyError::Misfit { path: path.clone(), width: w, height: h, row: *row, rows, cols });
        }
        let truth = rasterize_3d_slice(&phantom, &det, *row, w);
        let half = (w as f64 - 1.0) / 2.0;
        let radius2 = (0.95 * w as f64 / 2.0).powi(2);
        let (mut s, mut m) = (0f64, 0usize);
        for (i, (t, v)) in truth.iter().zip(&data).enumerate() {
            let (y, x) = ((i / w) as f64 - half, (i % w) as f64 - half);
            if x * x + y * y <= radius2 {
                s += (f64::from(*v) / k - f64::from(*t)).powi(2);
                m += 1;
            }
        }
        if *row == middle {
            mid = Some((s / m.max(1) as f64).sqrt());
        }
        sum += s;
        n += m;
    }
    let rmse = (sum / n.max(1) as f64).sqrt();
    Ok(Accuracy { rmse, rmse_middle: mid.unwrap_or(rmse), slices: slices.len() })
}

/// `(row, path)` of every `slice_NNNNN.tif` in `dir`, in no particular order.
pub fn slice_files(dir: &Path) -> Result<Vec<(usize, PathBuf)>, AccuracyError> {
    let list = |source| AccuracyError::List { path: dir.to_path_buf(), source };
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(list)? {
        let path = e.map_err(list)?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if let Some(row) = name.strip_prefix("slice_").and_then(|r| r.strip_suffix(".tif")) {
            if let Ok(row) = row.parse() {
                out.push((row, path));
            }
        }
    }
    Ok(out)
}

/// Root-mean-square difference of two `n x n` slices (`[row][col]`) over the disc of radius `radius`
/// pixels around the slice centre (column and row `(n - 1) / 2`); 0 for an empty disc.
pub fn rmse_disc(a: &[f32], b: &[f32], n: usize, radius: f64) -> f64 {
    let h = (n as f64 - 1.0) / 2.0;
    let (mut sum, mut count) = (0.0, 0usize);
    for r in 0..n {
        for c in 0..n {
            let (x, y) = (c as f64 - h, h - r as f64);
            if x * x + y * y <= radius * radius {
                let d = a[r * n + c] as f64 - b[r * n + c] as f64;
                sum += d * d;
                count += 1;
            }
        }
    }
    (sum / count.max(1) as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{tiff_name, write_tiff, TiffDepth};

    fn write_phantom(dir: &Path, rows: usize, cols: usize, att: f64, at: &[usize], offset: f32) {
        let det = Detector::centered(rows, cols);
        for &row in at {
            let t = rasterize_3d_slice(&shepp_logan_3d(), &det, row, cols);
            let scaled: Vec<f32> = t.iter().map(|v| (v + offset) * (att / cols as f64) as f32).collect();
            write_tiff(&dir.join(tiff_name(row)), cols, &scaled, TiffDepth::F32, "").unwrap();
        }
    }

    #[test]
    fn the_phantom_itself_scores_zero() {
        let dir = tempfile::tempdir().unwrap();
        let (rows, cols, att) = (8, 24, 4.0);
        write_phantom(dir.path(), rows, cols, att, &[2, 4], 0.0);
        let a = measure(dir.path(), rows, cols, att).unwrap();
        assert_eq!(a.slices, 2);
        assert!(a.rmse < 1e-6 && a.rmse_middle < 1e-6, "{a:?}");
    }

    #[test]
    fn an_offset_scores_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let (rows, cols, att) = (8, 24, 4.0);
        write_phantom(dir.path(), rows, cols, att, &[4], 0.25);
        let a = measure(dir.path(), rows, cols, att).unwrap();
        assert!((a.rmse - 0.25).abs() < 1e-5 && (a.rmse_middle - 0.25).abs() < 1e-5, "{a:?}");
    }

    #[test]
    fn slices_that_do_not_fit_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(measure(dir.path(), 8, 24, 4.0).unwrap_err(), AccuracyError::NoSlices(_)));
        write_phantom(dir.path(), 8, 24, 4.0, &[9], 0.0);
        assert!(matches!(measure(dir.path(), 8, 24, 4.0).unwrap_err(), AccuracyError::Misfit { row: 9, .. }));
        std::fs::write(dir.path().join("slice_x.tif"), b"").unwrap();
        assert_eq!(slice_files(dir.path()).unwrap().len(), 1);
    }
}
