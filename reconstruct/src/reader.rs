//! Reads tomography scans — NXtomo and DXchange, detected from the file — selects projections, flats and
//! darks, and reads slabs of detector rows (sinograms) for all frames at once, so memory grows with the slab,
//! not with the file.
//!
//! **NXtomo** is opened through [`acquisition::nexus::NxTomoFile`]; layout looked up (first match wins), `N`
//! frames of `rows x cols`:
//! * data: `/entry/instrument/detector/data`, `/entry/data/data`, `/entry/imaging/data` — `[N][rows][cols]`,
//!   any integer or float type;
//! * image key: `/entry/instrument/detector/image_key`, `/entry/data/image_key` — `[N]`, 0 projection,
//!   1 flat, 2 dark, 3 invalid (skipped);
//! * angles: `/entry/sample/rotation_angle`, `/entry/data/rotation_angle`,
//!   `/entry/sample/transformations/rotation_angle` — `[N]`, degrees.
//!
//! **DXchange** (what tomocupy, dxchange and the APS beamlines write) is recognised by `/exchange/data`:
//! projections `/exchange/data` `[N][rows][cols]`, flats `/exchange/data_white`, darks `/exchange/data_dark`
//! (`[n][rows][cols]` each), angles `/exchange/theta` `[N]` in **degrees**, as tomocupy writes them
//! (`theta/np.pi*180`) and dxchange/tomocupy readers convert them (`* np.pi / 180`); a `units` attribute of
//! `rad`/`radian(s)` is honoured. All flats count as taken before the projections (no interpolation).
//!
//! A [`Selection`] narrows what is read: projections `--start-proj/--end-proj` (indices among the
//! projections, end exclusive), detector columns `--start-column/--end-column`, and `--binning 2|4`: the
//! **mean** of `b x b` detector pixels, applied to projections, flats and darks alike, so transmissions keep
//! their values and reconstructed values are per binned voxel (`b` times the per-pixel attenuation).
//!
//! Blosc or Bitshuffle-LZ4 chunks spanning the frame width are read raw and decoded in parallel
//! ([`crate::chunks`]); anything else goes through the HDF5 filter pipeline, and a filter this HDF5 cannot
//! apply is refused when the file is opened ([`ReadError::Filter`]). `BEAMLINE_RECON_HDF5_FILTER=1` forces
//! the HDF5 pipeline.

use std::ops::Range;
use std::path::{Path, PathBuf};

use ndarray::s;

use crate::backend::Slab;
use crate::chunks::{filter_name, unavailable_filter, RawChunks};
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

/// DXchange data sets.
pub mod dxchange {
    /// Projections `[N][rows][cols]`.
    pub const DATA: &str = "/exchange/data";
    /// Flat fields.
    pub const WHITE: &str = "/exchange/data_white";
    /// Dark fields.
    pub const DARK: &str = "/exchange/data_dark";
    /// Projection angles, degrees unless `@units` says radians.
    pub const THETA: &str = "/exchange/theta";
}

/// The file layout, detected from the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Layout {
    /// NeXus NXtomo: one frame stack with per-frame image keys and angles.
    NxTomo,
    /// Data Exchange: separate projection, flat and dark stacks and `theta`.
    DXchange,
}

impl Layout {
    /// `NXtomo` or `DXchange`.
    pub fn name(self) -> &'static str {
        match self {
            Layout::NxTomo => "NXtomo",
            Layout::DXchange => "DXchange",
        }
    }
}

/// Which part of a scan is read: projections, columns, binning (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Selection {
    /// Projections `A..B` (indices among the projections, B exclusive); `None`: all.
    pub projections: Option<Range<usize>>,
    /// Detector columns `A..B` (B exclusive); `None`: all.
    pub columns: Option<Range<usize>>,
    /// Pixels binned per side (mean): 1, 2 or 4.
    pub binning: usize,
}

impl Default for Selection {
    fn default() -> Selection {
        Selection { projections: None, columns: None, binning: 1 }
    }
}

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
    /// The chunks are compressed with a filter that neither this reader nor the HDF5 library decodes.
    #[error(
        "{path}:{dataset}: compressed with HDF5 filter {id} ({detail}), which this reader does not decode and no \
         HDF5 plugin provides here; {fix}"
    )]
    Filter {
        /// File.
        path: PathBuf,
        /// Dataset.
        dataset: String,
        /// Filter id.
        id: i32,
        /// Registered name and `cd_values`.
        detail: String,
        /// What to do.
        fix: Box<str>,
    },
    /// A selection (`--start-proj`, `--start-column`, `--binning`) that does not fit the file.
    #[error("{path}: {reason}")]
    Selection {
        /// File.
        path: PathBuf,
        /// What does not fit, naming the option.
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

/// One frame stack read from the file: frames `frames` of `ds`, concatenated with the other stacks into
/// the reader's frame numbering.
#[derive(Debug)]
struct Stack {
    ds: hdf5::Dataset,
    path: String,
    frames: Range<usize>,
    fast: Option<RawChunks>,
}

fn plan_stack(pb: &Path, ds: hdf5::Dataset, path: &str, frames: Range<usize>) -> Result<Stack, ReadError> {
    let fast = if std::env::var_os("BEAMLINE_RECON_HDF5_FILTER").is_some() { None } else { RawChunks::plan(&ds) };
    if let Some((id, cd)) = unavailable_filter(&ds, fast.is_some()) {
        let fix = if id == crate::chunks::BITSHUFFLE_FILTER {
            format!(
                "Bitshuffle is decoded here only with LZ4 blocks (cd_values[4] = 2), little-endian samples and \
                 chunks spanning whole frame rows; this data set has cd_values {cd:?}. Rewrite it, e.g. \
                 `h5repack -f {path}:NONE` or with hdf5plugin.Bitshuffle(cname='lz4'), or set HDF5_PLUGIN_PATH to \
                 hdf5plugin's plugin directory"
            )
        } else {
            "set HDF5_PLUGIN_PATH to a directory holding the plugin for this filter (hdf5plugin's: \
             python -c 'import hdf5plugin; print(hdf5plugin.PLUGIN_PATH)'), or rewrite the data without it \
             (`h5repack -f NONE`) or with blosc or Bitshuffle-LZ4, which beamline decodes itself"
                .to_string()
        };
        return Err(ReadError::Filter {
            path: pb.to_path_buf(),
            dataset: path.to_string(),
            id,
            detail: if cd.is_empty() {
                filter_name(id).to_string()
            } else {
                format!("{}, cd_values {cd:?}", filter_name(id))
            },
            fix: fix.into(),
        });
    }
    Ok(Stack { ds, path: path.to_string(), frames, fast })
}

/// An open NXtomo or DXchange file with its frame bookkeeping and the [`Selection`] applied.
#[derive(Debug)]
pub struct NxTomo {
    path: PathBuf,
    layout: Layout,
    stacks: Vec<Stack>,
    data_path: String,
    key_path: String,
    /// Detector rows and columns of the file.
    detector: [usize; 2],
    /// Detector columns read (before binning).
    columns: Range<usize>,
    binning: usize,
    /// Frames in the reader's numbering (all stacks).
    n_frames: usize,
    projections: Vec<FrameIndex>,
    flats_before: Vec<FrameIndex>,
    flats_after: Vec<FrameIndex>,
    darks: Vec<FrameIndex>,
    angles: Vec<Degrees>,
    /// Completeness of the scan (coverage, gaps, missing frames and references).
    check: ScanCheck,
}

/// Whether `path` holds DXchange data (`/exchange/data`).
pub fn layout_of(path: &Path) -> Layout {
    let dx = hdf5::File::open(path).map(|f| f.link_exists(dxchange::DATA)).unwrap_or(false);
    if dx {
        Layout::DXchange
    } else {
        Layout::NxTomo
    }
}

fn select_projections(pb: &Path, n: usize, sel: &Option<Range<usize>>) -> Result<Range<usize>, ReadError> {
    // An end left open (`usize::MAX`) runs to the last projection.
    let sel = sel.clone().map(|r| r.start..if r.end == usize::MAX { n } else { r.end });
    match &sel {
        None => Ok(0..n),
        Some(r) if r.start < r.end && r.end <= n && r.len() >= 2 => Ok(r.clone()),
        Some(r) => Err(ReadError::Selection {
            path: pb.to_path_buf(),
            reason: format!(
                "--start-proj {} --end-proj {} selects no usable projections: the file has {n} (0 to {n} exclusive); \
                 give at least 2 within 0..{n}",
                r.start, r.end
            ),
        }),
    }
}

impl NxTomo {
    /// Opens `path` (NXtomo or DXchange) and reads the image keys and angles (not the frames).
    pub fn open(path: &Path) -> Result<NxTomo, ReadError> {
        NxTomo::open_selected(path, &Selection::default())
    }

    /// [`NxTomo::open`] with the projections, columns and binning of `sel`.
    pub fn open_selected(path: &Path, sel: &Selection) -> Result<NxTomo, ReadError> {
        if path.exists() && layout_of(path) == Layout::DXchange {
            NxTomo::open_dxchange(path, sel)
        } else {
            NxTomo::open_nxtomo(path, sel)
        }
    }

    fn open_nxtomo(path: &Path, sel: &Selection) -> Result<NxTomo, ReadError> {
        let file = NxTomoFile::open(path)?;
        let pb = path.to_path_buf();
        let (data_path, key_path, angle_path) =
            (file.data_path().to_string(), file.key_path().to_string(), file.angle_path().to_string());
        let shape = file.shape();
        let (keys, angles) = (file.image_keys(), file.angles());
        let n_proj = keys.iter().filter(|k| **k == ImageKey::Projection).count();
        let keep = select_projections(&pb, n_proj, &sel.projections)?;
        let mut projections = Vec::new();
        let mut flats = Vec::new();
        let mut darks = Vec::new();
        let (mut sel_keys, mut sel_angles) = (Vec::new(), Vec::new());
        let mut p = 0;
        for (i, &k) in keys.iter().enumerate() {
            match k {
                ImageKey::Projection => {
                    p += 1;
                    if !keep.contains(&(p - 1)) {
                        continue;
                    }
                    projections.push(FrameIndex::from(i))
                }
                ImageKey::Flat => flats.push(FrameIndex::from(i)),
                ImageKey::Dark => darks.push(FrameIndex::from(i)),
                ImageKey::Invalid => {}
            }
            sel_keys.push(k);
            sel_angles.push(angles[i]);
        }
        let check = if sel.projections.is_some() {
            ScanCheck::of_file_frames(&file, &sel_keys, &sel_angles)
        } else {
            ScanCheck::of_file(&file)
        };
        let stack = plan_stack(&pb, file.data().clone(), &data_path, 0..shape[0])?;
        // Flats before the middle projection are "before", the others "after".
        let mid = projections.get(projections.len() / 2).copied().unwrap_or(FrameIndex(0));
        let (flats_before, flats_after): (Vec<_>, Vec<_>) = flats.into_iter().partition(|f| *f < mid);
        let proj_angles = projections.iter().map(|f| angles[f.as_usize()]).collect();
        NxTomo {
            path: pb,
            layout: Layout::NxTomo,
            stacks: vec![stack],
            data_path,
            key_path,
            detector: [shape[1], shape[2]],
            columns: 0..shape[2],
            binning: 1,
            n_frames: shape[0],
            projections,
            flats_before,
            flats_after,
            darks,
            angles: proj_angles,
            check,
        }
        .finish(sel, &angle_path)
    }

    fn open_dxchange(path: &Path, sel: &Selection) -> Result<NxTomo, ReadError> {
        let pb = path.to_path_buf();
        let file = hdf5::File::open(path)
            .map_err(|e| ReadError::File(NexusError::Open { path: pb.clone(), reason: e.to_string() }))?;
        let shape_err = |dataset: &str, reason: String| {
            ReadError::File(NexusError::Shape { path: pb.clone(), dataset: dataset.to_string(), reason })
        };
        let data = file.dataset(dxchange::DATA).map_err(|e| shape_err(dxchange::DATA, e.to_string()))?;
        let dims = data.shape();
        let [n, rows, cols] = dims[..] else {
            return Err(shape_err(
                dxchange::DATA,
                format!("expected 3 dimensions [frames][rows][cols], found {dims:?}"),
            ));
        };
        let theta_ds = file.dataset(dxchange::THETA).map_err(|_| {
            ReadError::File(NexusError::Missing {
                path: pb.clone(),
                what: "projection angles",
                tried: dxchange::THETA.to_string(),
            })
        })?;
        let theta: Vec<f64> =
            theta_ds.read_raw().map_err(|e| shape_err(dxchange::THETA, format!("cannot read as numbers: {e}")))?;
        if theta.len() != n {
            return Err(shape_err(
                dxchange::THETA,
                format!("has {} entries but {} has {n} frames", theta.len(), dxchange::DATA),
            ));
        }
        let units = theta_ds
            .attr("units")
            .ok()
            .and_then(|a| a.read_scalar::<hdf5::types::VarLenUnicode>().ok())
            .map(|u| u.as_str().trim().to_ascii_lowercase());
        let radians = units.as_deref().is_some_and(|u| u.starts_with("rad"));
        let keep = select_projections(&pb, n, &sel.projections)?;
        let mut stacks = vec![plan_stack(&pb, data, dxchange::DATA, keep.clone())?];
        let mut keys = vec![ImageKey::Projection; keep.len()];
        let mut frame_angles: Vec<Degrees> =
            theta[keep.clone()].iter().map(|t| Degrees(if radians { t.to_degrees() } else { *t })).collect();
        let mut counts = [0usize; 2];
        for (k, (p, key)) in
            [(dxchange::WHITE, ImageKey::Flat), (dxchange::DARK, ImageKey::Dark)].into_iter().enumerate()
        {
            let Ok(ds) = file.dataset(p) else { continue };
            let d = ds.shape();
            if d.len() != 3 || d[1] != rows || d[2] != cols {
                return Err(shape_err(
                    p,
                    format!("has shape {d:?}; expected [n][{rows}][{cols}] like {}", dxchange::DATA),
                ));
            }
            counts[k] = d[0];
            keys.extend(std::iter::repeat_n(key, d[0]));
            frame_angles.extend(std::iter::repeat_n(Degrees(f64::NAN), d[0]));
            stacks.push(plan_stack(&pb, ds, p, 0..d[0])?);
        }
        let np = keep.len();
        let projections: Vec<FrameIndex> = (0..np).map(FrameIndex::from).collect();
        let flats_before = (np..np + counts[0]).map(FrameIndex::from).collect();
        let darks = (np + counts[0]..np + counts[0] + counts[1]).map(FrameIndex::from).collect();
        let mut check = ScanCheck::of_frames(&keys, &frame_angles, None, None, "/exchange/data_white, data_dark");
        if !radians && units.is_none() && n > 1 {
            let (lo, hi) = theta.iter().fold((f64::MAX, f64::MIN), |(a, b), t| (a.min(*t), b.max(*t)));
            if hi - lo <= 2.0 * std::f64::consts::PI + 1e-3 && hi - lo >= 3.0 {
                check.problems.push(format!(
                    "{} spans {:.3} (no units attribute), which looks like radians; DXchange stores degrees \
                     (tomocupy, dxchange): add the attribute units=\"rad\" to {} if they are radians",
                    dxchange::THETA,
                    hi - lo,
                    dxchange::THETA
                ));
            }
        }
        NxTomo {
            path: pb,
            layout: Layout::DXchange,
            stacks,
            data_path: dxchange::DATA.to_string(),
            key_path: "/exchange/data_white, /exchange/data_dark".to_string(),
            detector: [rows, cols],
            columns: 0..cols,
            binning: 1,
            n_frames: keys.len(),
            projections,
            flats_before,
            flats_after: Vec::new(),
            darks,
            angles: frame_angles[..np].to_vec(),
            check,
        }
        .finish(sel, dxchange::THETA)
    }

    /// Checks what both layouts share and applies the column and binning selection.
    fn finish(mut self, sel: &Selection, angle_path: &str) -> Result<NxTomo, ReadError> {
        let [rows, cols] = self.detector;
        let pb = self.path.clone();
        let sel_err = |reason: String| ReadError::Selection { path: pb.clone(), reason };
        if !matches!(sel.binning, 1 | 2 | 4) {
            return Err(sel_err(format!("--binning {}: use 1, 2 or 4", sel.binning)));
        }
        let columns =
            sel.columns.clone().map(|r| r.start..if r.end == usize::MAX { cols } else { r.end }).unwrap_or(0..cols);
        if columns.start >= columns.end || columns.end > cols {
            return Err(sel_err(format!(
                "--start-column {} --end-column {} is outside the detector's {cols} columns (0 to {cols} exclusive)",
                columns.start, columns.end
            )));
        }
        self.columns = columns;
        self.binning = sel.binning;
        if self.rows() == 0 || self.cols() < 2 {
            return Err(ReadError::File(NexusError::Shape {
                path: pb,
                dataset: self.data_path.clone(),
                reason: format!(
                    "frames of {rows} x {} pixels (after cropping and binning by {}: {} x {}) cannot be reconstructed",
                    cols,
                    self.binning,
                    self.rows(),
                    self.cols()
                ),
            }));
        }
        let frames_err =
            |reason: String| ReadError::Frames { path: self.path.clone(), dataset: self.key_path.clone(), reason };
        if self.projections.len() < 2 {
            return Err(frames_err(format!("{} projections; need at least 2", self.projections.len())));
        }
        if let Some(i) = self.angles.iter().position(|a| !a.0.is_finite()) {
            return Err(ReadError::Values {
                path: self.path.clone(),
                dataset: angle_path.to_string(),
                reason: format!("angle of projection {i} (frame {}) is not a number", self.projections[i].0),
            });
        }
        Ok(self)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// NXtomo or DXchange.
    pub fn layout(&self) -> Layout {
        self.layout
    }
    /// The projection data set path inside the file.
    pub fn data_path(&self) -> &str {
        &self.data_path
    }
    /// Rows of the volume: detector rows divided by the binning.
    pub fn rows(&self) -> usize {
        self.detector[0] / self.binning
    }
    /// Columns reconstructed: the selected detector columns divided by the binning.
    pub fn cols(&self) -> usize {
        self.columns.len() / self.binning
    }
    /// Detector `[rows, columns]` of the file, before cropping and binning.
    pub fn detector(&self) -> [usize; 2] {
        self.detector
    }
    /// Detector columns read (before binning).
    pub fn columns(&self) -> Range<usize> {
        self.columns.clone()
    }
    /// Pixels binned per side.
    pub fn binning(&self) -> usize {
        self.binning
    }
    /// Converts a position in detector columns to the columns reconstructed (cropped and binned): binned
    /// column `j` has its centre at detector column `start + j b + (b - 1) / 2`.
    pub fn to_read_column(&self, detector_column: f64) -> f64 {
        let b = self.binning as f64;
        (detector_column - self.columns.start as f64 - (b - 1.0) / 2.0) / b
    }
    /// The inverse of [`NxTomo::to_read_column`].
    pub fn to_detector_column(&self, read_column: f64) -> f64 {
        let b = self.binning as f64;
        read_column * b + self.columns.start as f64 + (b - 1.0) / 2.0
    }
    /// All frames read (projections, flats, darks, invalid).
    pub fn frames(&self) -> usize {
        self.n_frames
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

    /// Bytes one row of the volume occupies in a slab (all frames as f32, binned) plus the detector rows
    /// read for it before binning.
    pub fn slab_bytes_per_row(&self) -> usize {
        let binned = self.frames() * self.cols() * 4;
        if self.binning == 1 && self.columns.len() == self.detector[1] {
            binned
        } else {
            binned + self.frames() * self.detector[1] * self.binning * 4
        }
    }

    /// Reads rows `rows` of every frame (`b` detector rows each with binning `b`), unbinned and uncropped:
    /// `[frame][detector row][detector column]`.
    fn read_raw(&self, rows: Range<usize>) -> Result<Vec<f32>, ReadError> {
        let (nr, nc) = (rows.len(), self.detector[1]);
        let mut raw = Vec::with_capacity(self.n_frames * nr * nc);
        for st in &self.stacks {
            let read_err = |reason: String| ReadError::Read {
                path: self.path.clone(),
                dataset: st.path.clone(),
                rows: rows.clone(),
                reason,
            };
            let part: Vec<f32> = match &st.fast {
                Some(plan) => plan.read_rows(&st.ds, st.frames.clone(), rows.clone()).map_err(read_err)?,
                None => st
                    .ds
                    .read_slice::<f32, _, ndarray::Ix3>(s![st.frames.clone(), rows.clone(), ..])
                    .map_err(|e| read_err(e.to_string()))?
                    .into_iter()
                    .collect(),
            };
            if part.len() != st.frames.len() * nr * nc {
                return Err(read_err("HDF5 returned an unexpected number of values".into()));
            }
            raw.extend_from_slice(&part);
        }
        Ok(raw)
    }

    /// Crops `raw` (`[frame][b * nr][detector columns]`) to the selected columns and bins it by `b` (mean).
    fn crop_and_bin(&self, raw: Vec<f32>, nr: usize) -> Vec<f32> {
        let (b, dc, nc) = (self.binning, self.detector[1], self.cols());
        if b == 1 && self.columns.len() == dc {
            return raw;
        }
        let c0 = self.columns.start;
        let scale = 1.0 / (b * b) as f32;
        let mut out = vec![0f32; self.n_frames * nr * nc];
        for f in 0..self.n_frames {
            for r in 0..nr {
                let o = &mut out[(f * nr + r) * nc..(f * nr + r + 1) * nc];
                for dr in 0..b {
                    let src = &raw[(f * nr * b + r * b + dr) * dc..][..dc];
                    for (c, v) in o.iter_mut().enumerate() {
                        let x = &src[c0 + c * b..c0 + c * b + b];
                        *v += x.iter().sum::<f32>();
                    }
                }
                o.iter_mut().for_each(|v| *v *= scale);
            }
        }
        out
    }

    /// Reads rows `rows` of the volume for every frame (detector rows `b * rows` with binning `b`, cropped to
    /// the selected columns and binned) and builds the slab: projections transposed to sinogram order, darks
    /// and flats averaged, flat interpolation weights by frame position.
    pub fn read_slab(&self, rows: Range<usize>) -> Result<Slab, ReadError> {
        let (nf, nr, nc) = (self.n_frames, rows.len(), self.cols());
        if rows.end > self.rows() || rows.start >= rows.end {
            return Err(ReadError::Read {
                path: self.path.clone(),
                dataset: self.data_path.clone(),
                rows: rows.clone(),
                reason: format!("rows out of range 0..{}", self.rows()),
            });
        }
        let b = self.binning;
        let _span =
            tracing::info_span!("recon.read", rows = nr, bytes = nf * nr * b * self.detector[1] * b * 4).entered();
        let raw = self.read_raw(rows.start * b..rows.end * b)?;
        drop(_span);
        let raw = self.crop_and_bin(raw, nr);
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

    /// Whether the projections are read through the parallel raw-chunk path (blosc or Bitshuffle-LZ4).
    pub fn parallel_blosc(&self) -> bool {
        self.stacks.first().is_some_and(|s| s.fast.is_some())
    }

    /// The projection data set.
    pub fn data(&self) -> &hdf5::Dataset {
        &self.stacks[0].ds
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
