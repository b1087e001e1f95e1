//! Reads NXtomo files: selects projections, flats and darks by `image_key`, and reads slabs of detector
//! rows (sinograms) for all frames at once, so memory grows with the slab, not with the file.
//!
//! The file is opened through [`acquisition::nexus::NxTomoFile`]; layout looked up (first match wins), `N`
//! frames of `rows x cols`:
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
use crate::completeness::ScanCheck;
use crate::geometry::Degrees;
use acquisition::nexus::{self, NexusError, NxTomoFile};

pub use acquisition::nexus::{FrameIndex, ImageKey};

/// Where the frames are looked for, in order.
pub const DATA_PATHS: &[&str] = nexus::path::DATA_CANDIDATES;
/// Where the image keys are looked for, in order.
pub const IMAGE_KEY_PATHS: &[&str] = nexus::path::IMAGE_KEY_CANDIDATES;
/// Where the rotation angles are looked for, in order.
pub const ANGLE_PATHS: &[&str] = nexus::path::ANGLE_CANDIDATES;

/// Why a file could not be read. Every variant names the file and, where there is one, the dataset.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened, lacks a dataset, or has one of the wrong shape or type (the NeXus
    /// reader's error, which names the file and the dataset).
    #[error(transparent)]
    File(#[from] NexusError),
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
    /// Completeness of the scan (coverage, gaps, missing frames and references).
    check: ScanCheck,
}

impl NxTomo {
    /// Opens `path` and reads the image keys and angles (not the frames).
    pub fn open(path: &Path) -> Result<NxTomo, ReadError> {
        let file = NxTomoFile::open(path)?;
        let pb = path.to_path_buf();
        let (data_path, key_path, angle_path) =
            (file.data_path().to_string(), file.key_path().to_string(), file.angle_path().to_string());
        let shape = file.shape();
        if shape[1] == 0 || shape[2] < 2 {
            return Err(ReadError::File(NexusError::Shape {
                path: pb,
                dataset: data_path,
                reason: format!("frames of {} x {} pixels cannot be reconstructed", shape[1], shape[2]),
            }));
        }
        let (keys, angles) = (file.image_keys(), file.angles());
        let mut projections = Vec::new();
        let mut flats = Vec::new();
        let mut darks = Vec::new();
        for (i, &k) in keys.iter().enumerate() {
            match k {
                ImageKey::Projection => projections.push(FrameIndex::from(i)),
                ImageKey::Flat => flats.push(FrameIndex::from(i)),
                ImageKey::Dark => darks.push(FrameIndex::from(i)),
                ImageKey::Invalid => {}
            }
        }
        let frames_err = |reason: String| ReadError::Frames { path: pb.clone(), dataset: key_path.clone(), reason };
        if projections.len() < 2 {
            return Err(frames_err(format!("{} projections (image_key 0); need at least 2", projections.len())));
        }
        let proj_angles: Vec<Degrees> = projections.iter().map(|f| angles[f.as_usize()]).collect();
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
                BloscChunks::plan(file.data())
            },
            data: file.data().clone(),
            check: ScanCheck::of_file(&file),
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
        let frame_row = |f: FrameIndex, r: usize| &raw[(f.as_usize() * nr + r) * nc..(f.as_usize() * nr + r + 1) * nc];
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
        // No flats at all (accepted with --allow-incomplete): per pixel, the brightest projection stands in.
        let brightest = || -> Vec<f32> {
            let mut m = vec![f32::MIN; nr * nc];
            for &f in &self.projections {
                for r in 0..nr {
                    for (a, v) in m[r * nc..(r + 1) * nc].iter_mut().zip(frame_row(f, r)) {
                        *a = a.max(*v);
                    }
                }
            }
            m
        };
        let flat_before = if !self.flats_before.is_empty() {
            average(&self.flats_before)
        } else if !self.flats_after.is_empty() {
            average(&self.flats_after)
        } else {
            brightest()
        };
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

    /// What is missing from the scan, if anything ([`ScanCheck::problems`]). Missing flats or darks do not
    /// stop [`NxTomo::open`]; with none, slabs use zero darks and, per pixel, the brightest projection as flat.
    pub fn check(&self) -> &ScanCheck {
        &self.check
    }

    /// The image-key data set path.
    pub fn key_path(&self) -> &str {
        &self.key_path
    }
}
