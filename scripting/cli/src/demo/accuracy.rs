//! How close the reconstructed volume is to the phantom the simulated detector imaged.
//!
//! The simulator attenuates by `exp(-k L)` with `k = attenuation / cols` per phantom intensity and pixel
//! (`acquisition::sim`), so a correct reconstruction holds `k x` the phantom; dividing by `k` gives values
//! in phantom units (skull 1.0, brain 0.2), compared with `acquisition::phantom::rasterize_3d_slice` over
//! the disc the detector sees at every angle.
//!
//! The slices are read back from the float32 TIFF files `beamline recon` wrote, with
//! [`reconstruct::output::read_f32_tiff`].

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use acquisition::phantom::{rasterize_3d_slice, shepp_logan_3d, Detector};
use reconstruct::output::read_f32_tiff;

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

/// Compares every `slice_NNNNN.tif` in `dir` (slice index = detector row) of a `rows x cols` detector with
/// the phantom, for attenuation coefficient `attenuation` (see the module documentation).
pub fn measure(dir: &Path, rows: usize, cols: usize, attenuation: f64) -> anyhow::Result<Accuracy> {
    let det = Detector::centered(rows, cols);
    let phantom = shepp_logan_3d();
    let k = attenuation / cols as f64;
    let mut slices = slice_files(dir)?;
    slices.sort();
    if slices.is_empty() {
        bail!("no slice_*.tif files in {}", dir.display());
    }
    let middle = rows / 2;
    let (mut sum, mut n, mut mid) = (0f64, 0usize, None);
    for (row, path) in &slices {
        let (w, h, data) = read_f32_tiff(path)?;
        if w != h || *row >= rows {
            bail!("{}: {w}x{h} slice of row {row} does not fit a {rows}x{cols} detector", path.display());
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

/// `(row, path)` of every `slice_NNNNN.tif` in `dir`.
fn slice_files(dir: &Path) -> anyhow::Result<Vec<(usize, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = e?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if let Some(row) = name.strip_prefix("slice_").and_then(|r| r.strip_suffix(".tif")) {
            if let Ok(row) = row.parse() {
                out.push((row, path));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reconstruct::output::{tiff_name, write_tiff, TiffDepth};

    #[test]
    fn the_phantom_itself_scores_zero() {
        let dir = tempfile::tempdir().unwrap();
        let (rows, cols, att) = (8, 24, 4.0);
        let det = Detector::centered(rows, cols);
        for row in [2, 4] {
            let t = rasterize_3d_slice(&shepp_logan_3d(), &det, row, cols);
            let scaled: Vec<f32> = t.iter().map(|v| v * (att / cols as f64) as f32).collect();
            write_tiff(&dir.path().join(tiff_name(row)), cols, &scaled, TiffDepth::F32, "").unwrap();
        }
        let a = measure(dir.path(), rows, cols, att).unwrap();
        assert_eq!(a.slices, 2);
        assert!(a.rmse < 1e-6 && a.rmse_middle < 1e-6, "{a:?}");
    }
}
