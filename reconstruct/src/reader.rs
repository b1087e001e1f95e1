//! Reads NXtomo files: selects projections, flats and darks by `image_key`, and reads slabs of detector
//! rows (sinograms) for all frames at once, so memory grows with the slab, not with the file.
//!
//! Layout looked up (first match wins), `N` frames of `rows x cols`:
//! * data: `/entry/instrument/detector/data`, `/entry/data/data`, `/entry/imaging/data` — `[N][rows][cols]`,
//!   any integer or float type;
//! * image key: `/entry/instrument/detector/image_key`, `/entry/data/image_key` — `[N]`, 0 projection,
//!   1 flat, 2 dark, 3 invalid (skipped);
//! * angles: `/entry/sample/rotation_angle`, `/entry/data/rotation_angle`,
//!   `/entry/sample/transformations/rotation_angle` — `[N]`, degrees.
//!
//! Blosc-compressed chunks spanning the frame width are read raw and decoded in parallel ([`crate::chunks`]);
//! anything else goes through the HDF5 filter pipeline. `BEAMLINE_RECON_HDF5_FILTER=1` forces the latter.

use std::ops::Range;
use std::path::{Path, PathBuf};

use ndarray::s;

use crate::backend::Slab;
use crate::chunks::BloscChunks;
use crate::geometry::Degrees;

/// Where the frames are looked for, in order.
pub const DATA_PATHS: &[&str] = &["/entry/instrument/detector/data", "/entry/data/data", "/entry/imaging/data"];
/// Where the image keys are looked for, in order.
pub const IMAGE_KEY_PATHS: &[&str] = &["/entry/instrument/detector/image_key", "/entry/data/image_key"];
/// Where the rotation angles are looked for, in order.
pub const ANGLE_PATHS: &[&str] =
    &["/entry/sample/rotation_angle", "/entry/data/rotation_angle", "/entry/sample/transformations/rotation_angle"];

/// NXtomo `image_key` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKey {
    /// 0: a projection.
    Projection,
    /// 1: a flat (open beam) field.
    Flat,
    /// 2: a dark field.
    Dark,
    /// 3 or anything else: not to be used.
    Invalid,
}

impl ImageKey {
    /// Decodes a stored key.
    pub fn from_code(code: i64) -> ImageKey {
        match code {
            0 => ImageKey::Projection,
            1 => ImageKey::Flat,
            2 => ImageKey::Dark,
            _ => ImageKey::Invalid,
        }
    }
}

/// Index of a frame in the file's data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FrameIndex(pub usize);

/// Why a file could not be read. Every variant names the file and, where there is one, the dataset.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened as HDF5.
    #[error("cannot open {path} as HDF5: {reason}")]
    Open {
        /// File.
        path: PathBuf,
        /// HDF5's message.
        reason: String,
    },
    /// None of the candidate paths exists.
    #[error("{path}: no {what} found (looked for {tried}); is this an NXtomo file?")]
    Missing {
        /// File.
        path: PathBuf,
        /// What was looked for.
        what: &'static str,
        /// The paths tried.
        tried: String,
    },
    /// A dataset has the wrong shape or type.
    #[error("{path}:{dataset}: {reason}")]
    Shape {
        /// File.
        path: PathBuf,
        /// Dataset.
        dataset: String,
        /// What is wrong.
        reason: String,
    },
    /// Required frames (flats, darks, projections) are absent.
    #[error("{path}:{dataset}: {reason}")]
    Frames {
        /// File.
        path: PathBuf,
        /// The image-key dataset.
        dataset: String,
        /// What is missing.
        reason: String,
    },
    /// The data contain values that cannot be reconstructed.
    #[error("{path}:{dataset}: {reason}")]
    Values {
        /// File.
        path: PathBuf,
        /// Dataset.
        dataset: String,
        /// What is wrong.
        reason: String,
    },
    /// HDF5 failed while reading.
    #[error("{path}:{dataset}: reading rows {rows:?} failed: {reason}")]
    Read {
        /// File.
        path: PathBuf,
        /// Dataset.
        dataset: String,
        /// Rows being read.
        rows: Range<usize>,
        /// HDF5's message.
        reason: String,
    },
}

/// An open NXtomo file with its frame bookkeeping.
#[derive(Debug)]
pub struct NxTomo {
    path: PathBuf,
    data: hdf5::Dataset,
    data_path: String,
    key_path: String,
    /// Frames, rows, columns.
    shape: [usize; 3],
    projections: Vec<FrameIndex>,
    flats_before: Vec<FrameIndex>,
    flats_after: Vec<FrameIndex>,
    darks: Vec<FrameIndex>,
    angles: Vec<Degrees>,
    /// Parallel blosc decoding plan, when the layout allows it.
    fast: Option<BloscChunks>,
}

fn find(file: &hdf5::File, paths: &[&str]) -> Option<(String, hdf5::Dataset)> {
    paths.iter().find_map(|p| file.dataset(p).ok().map(|d| (p.to_string(), d)))
}

impl NxTomo {
    /// Opens `path` and reads the image keys and angles (not the frames).
    pub fn open(path: &Path) -> Result<NxTomo, ReadError> {
        let pb = path.to_path_buf();
        if !path.exists() {
            return Err(ReadError::Open { path: pb, reason: "no such file".into() });
        }
        let file = hdf5::File::open(path).map_err(|e| ReadError::Open { path: pb.clone(), reason: e.to_string() })?;
        let missing = |what, paths: &[&str]| ReadError::Missing { path: pb.clone(), what, tried: paths.join(", ") };
        let (data_path, data) = find(&file, DATA_PATHS).ok_or_else(|| missing("frame data", DATA_PATHS))?;
        let (key_path, key_ds) = find(&file, IMAGE_KEY_PATHS).ok_or_else(|| missing("image_key", IMAGE_KEY_PATHS))?;
        let (angle_path, angle_ds) = find(&file, ANGLE_PATHS).ok_or_else(|| missing("rotation_angle", ANGLE_PATHS))?;
        let shape_err =
            |dataset: &str, reason: String| ReadError::Shape { path: pb.clone(), dataset: dataset.to_string(), reason };
        let dims = data.shape();
        if dims.len() != 3 {
            return Err(shape_err(&data_path, format!("expected 3 dimensions [frames][rows][cols], found {dims:?}")));
        }
        let shape = [dims[0], dims[1], dims[2]];
        if shape[1] == 0 || shape[2] < 2 {
            return Err(shape_err(
                &data_path,
                format!("frames of {} x {} pixels cannot be reconstructed", shape[1], shape[2]),
            ));
        }
        let keys: Vec<i64> =
            key_ds.read_raw().map_err(|e| shape_err(&key_path, format!("cannot read as integers: {e}")))?;
        let angles: Vec<f64> =
            angle_ds.read_raw().map_err(|e| shape_err(&angle_path, format!("cannot read as numbers: {e}")))?;
        if keys.len() != shape[0] {
            return Err(shape_err(
                &key_path,
                format!("has {} entries but {} has {} frames", keys.len(), data_path, shape[0]),
            ));
        }
        if angles.len() != shape[0] {
            return Err(shape_err(
                &angle_path,
                format!("has {} entries but {} has {} frames", angles.len(), data_path, shape[0]),
            ));
        }
        let mut projections = Vec::new();
        let mut flats = Vec::new();
        let mut darks = Vec::new();
        for (i, &k) in keys.iter().enumerate() {
            match ImageKey::from_code(k) {
                ImageKey::Projection => projections.push(FrameIndex(i)),
                ImageKey::Flat => flats.push(FrameIndex(i)),
                ImageKey::Dark => darks.push(FrameIndex(i)),
                ImageKey::Invalid => {}
            }
        }
        let frames_err = |reason: String| ReadError::Frames { path: pb.clone(), dataset: key_path.clone(), reason };
        if projections.len() < 2 {
            return Err(frames_err(format!("{} projections (image_key 0); need at least 2", projections.len())));
        }
        if flats.is_empty() {
            return Err(frames_err(
                "no flat fields (image_key 1): take flats with the scan, or the volume cannot be normalised".into(),
            ));
        }
        if darks.is_empty() {
            return Err(frames_err(
                "no dark fields (image_key 2): take darks with the scan, or the volume cannot be normalised".into(),
            ));
        }
        let proj_angles: Vec<Degrees> = projections.iter().map(|f| Degrees(angles[f.0])).collect();
        if let Some(i) = proj_angles.iter().position(|a| !a.0.is_finite()) {
            return Err(ReadError::Values {
                path: pb,
                dataset: angle_path,
                reason: format!("angle of projection {i} (frame {}) is not a number", projections[i].0),
            });
        }
        // Flats before the middle projection are "before", the others "after".
        let mid = projections[projections.len() / 2];
        let (flats_before, flats_after): (Vec<_>, Vec<_>) = flats.into_iter().partition(|f| *f < mid);
        Ok(NxTomo {
            path: pb,
            data_path,
            key_path,
            shape,
            projections,
            flats_before,
            flats_after,
            darks,
            angles: proj_angles,
            fast: if std::env::var_os("BEAMLINE_RECON_HDF5_FILTER").is_some() {
                None
            } else {
                BloscChunks::plan(&data)
            },
            data,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The data set path inside the file.
    pub fn data_path(&self) -> &str {
        &self.data_path
    }
    /// Detector rows.
    pub fn rows(&self) -> usize {
        self.shape[1]
    }
    /// Detector columns.
    pub fn cols(&self) -> usize {
        self.shape[2]
    }
    /// All frames (projections, flats, darks, invalid).
    pub fn frames(&self) -> usize {
        self.shape[0]
    }
    /// Projection angles, in acquisition order.
    pub fn angles(&self) -> &[Degrees] {
        &self.angles
    }
    /// Projection frames.
    pub fn projections(&self) -> &[FrameIndex] {
        &self.projections
    }
    /// `(flats before, flats after, darks)` counts.
    pub fn reference_counts(&self) -> (usize, usize, usize) {
        (self.flats_before.len(), self.flats_after.len(), self.darks.len())
    }

    /// Bytes one detector row occupies in a slab (all frames as f32).
    pub fn slab_bytes_per_row(&self) -> usize {
        self.frames() * self.cols() * 4
    }

    /// Reads detector `rows` of every frame and builds the slab: projections transposed to sinogram order,
    /// darks and flats averaged, flat interpolation weights by frame position.
    pub fn read_slab(&self, rows: Range<usize>) -> Result<Slab, ReadError> {
        let (nf, nr, nc) = (self.shape[0], rows.len(), self.shape[2]);
        if rows.end > self.shape[1] || rows.start >= rows.end {
            return Err(ReadError::Read {
                path: self.path.clone(),
                dataset: self.data_path.clone(),
                rows: rows.clone(),
                reason: format!("rows out of range 0..{}", self.shape[1]),
            });
        }
        let read_err = |reason: String| ReadError::Read {
            path: self.path.clone(),
            dataset: self.data_path.clone(),
            rows: rows.clone(),
            reason,
        };
        let _span = tracing::info_span!("recon.read", rows = nr, bytes = nf * nr * nc * 4).entered();
        let raw: Vec<f32> = match &self.fast {
            Some(plan) => plan.read_rows(&self.data, rows.clone()).map_err(read_err)?,
            None => self
                .data
                .read_slice::<f32, _, ndarray::Ix3>(s![.., rows.clone(), ..])
                .map_err(|e| read_err(e.to_string()))?
                .into_iter()
                .collect(),
        };
        drop(_span);
        if raw.len() != nf * nr * nc {
            return Err(ReadError::Read {
                path: self.path.clone(),
                dataset: self.data_path.clone(),
                rows,
                reason: "HDF5 returned an unexpected number of values".into(),
            });
        }
        let raw = &raw[..];
        let frame_row = |f: FrameIndex, r: usize| &raw[(f.0 * nr + r) * nc..(f.0 * nr + r + 1) * nc];
        let values_err =
            |reason: String| ReadError::Values { path: self.path.clone(), dataset: self.data_path.clone(), reason };
        // NaN or infinity anywhere we use is an error, not something to clamp silently.
        for group in [&self.projections, &self.flats_before, &self.flats_after, &self.darks] {
            for &f in group.iter() {
                for r in 0..nr {
                    if let Some(c) = frame_row(f, r).iter().position(|v| !v.is_finite()) {
                        return Err(values_err(format!(
                            "frame {} row {} column {c} is NaN or infinite; repair or exclude the frame (image_key 3)",
                            f.0,
                            rows.start + r
                        )));
                    }
                }
            }
        }
        let average = |frames: &[FrameIndex]| -> Vec<f32> {
            let mut acc = vec![0f64; nr * nc];
            for &f in frames {
                for r in 0..nr {
                    for (a, v) in acc[r * nc..(r + 1) * nc].iter_mut().zip(frame_row(f, r)) {
                        *a += *v as f64;
                    }
                }
            }
            let n = frames.len().max(1) as f64;
            acc.into_iter().map(|v| (v / n) as f32).collect()
        };
        let dark = average(&self.darks);
        let flat_before =
            if self.flats_before.is_empty() { average(&self.flats_after) } else { average(&self.flats_before) };
        let flat_after = if self.flats_after.is_empty() { flat_before.clone() } else { average(&self.flats_after) };
        for r in 0..nr {
            let row = r * nc..(r + 1) * nc;
            let above = flat_before[row.clone()]
                .iter()
                .zip(&flat_after[row.clone()])
                .zip(&dark[row])
                .any(|((b, a), d)| b > d || a > d);
            if !above {
                return Err(values_err(format!(
                    "flat field of detector row {} is nowhere above the dark field (zero or missing beam in the flats?); \
                     check the flats (image_key 1)",
                    rows.start + r
                )));
            }
        }
        let flat_weight = self.flat_weights();
        let na = self.projections.len();
        let mut projections = vec![0f32; nr * na * nc];
        for (a, &f) in self.projections.iter().enumerate() {
            for r in 0..nr {
                projections[(r * na + a) * nc..(r * na + a + 1) * nc].copy_from_slice(frame_row(f, r));
            }
        }
        Ok(Slab { rows, projections, dark, flat_before, flat_after, flat_weight })
    }

    /// Per projection, the weight of the flats taken after (0 when there are none): linear in frame index
    /// between the mean position of the flats before and that of the flats after.
    pub fn flat_weights(&self) -> Vec<f32> {
        let mean = |v: &[FrameIndex]| v.iter().map(|f| f.0 as f64).sum::<f64>() / v.len().max(1) as f64;
        if self.flats_before.is_empty() || self.flats_after.is_empty() {
            return vec![0.0; self.projections.len()];
        }
        let (b, a) = (mean(&self.flats_before), mean(&self.flats_after));
        self.projections.iter().map(|p| (((p.0 as f64 - b) / (a - b)).clamp(0.0, 1.0)) as f32).collect()
    }

    /// Whether slabs are read through the parallel blosc path.
    pub fn parallel_blosc(&self) -> bool {
        self.fast.is_some()
    }

    /// The image-key data set path.
    pub fn key_path(&self) -> &str {
        &self.key_path
    }
}
