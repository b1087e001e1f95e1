//! Stitching the files of several writers into one master NXtomo file with an HDF5 virtual dataset.
//!
//! When one sender spreads a series over N receivers, every receiver writes its own file holding a share of
//! the frames. The master file made here presents them as one series: `/entry/instrument/detector/data` is
//! a virtual dataset whose frame `i` is read from whichever source holds frame `i`; the small per-frame
//! datasets (image key, rotation angle, timestamps) are copied in frame order.
//!
//! The master is only written after every source has been checked: the file exists and opens, the frame
//! dataset has the same frame shape and type everywhere, and every frame a source claims is really stored
//! there (its chunk is allocated). A missing source or a hole is an error naming the file and the frames —
//! never a master that silently reads fill values.
//!
//! Source files are referenced by their path relative to the master file's folder when they sit in it or
//! below it (so the folder can be moved as a whole), by absolute path otherwise.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hdf5::{Dataset, Extents, File, Hyperslab, Selection, SliceOrIndex};

use crate::nexus::{attr_str, class, nx_group, path as nx, string_dataset, varlen, FrameIndex, ImageKey};

/// Path of the frame dataset in an NXtomo file.
pub const DATA_PATH: &str = nx::DATA;

/// One source file and the frames it claims to hold.
#[derive(Debug, Clone)]
pub struct Source {
    /// The source file.
    pub path: PathBuf,
    /// Path of the frame dataset inside it (usually [`DATA_PATH`]).
    pub dataset: String,
    /// For each frame held: its index in the series and the row of the source dataset that stores it.
    pub frames: Vec<(FrameIndex, u64)>,
}

/// A regular run `start, start + stride, ..` of `count` indices (HDF5 hyperslab with block 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Strided {
    /// First index.
    pub start: u64,
    /// Distance between indices (1 for a contiguous run).
    pub stride: u64,
    /// How many indices.
    pub count: u64,
}

impl Strided {
    fn hyperslab(&self, frame_shape: [usize; 2]) -> Selection {
        let frames = SliceOrIndex::SliceCount {
            start: self.start as usize,
            step: self.stride.max(1) as usize,
            count: self.count as usize,
            block: 1,
        };
        let rows = SliceOrIndex::SliceCount { start: 0, step: 1, count: frame_shape[0], block: 1 };
        let cols = SliceOrIndex::SliceCount { start: 0, step: 1, count: frame_shape[1], block: 1 };
        Selection::from(Hyperslab::from(vec![frames, rows, cols]))
    }
}

/// One virtual-dataset mapping: the series frames `series` are the source rows `rows` of source `source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// Index into [`StitchPlan::sources`].
    pub source: usize,
    /// Frames of the series (rows of the virtual dataset).
    pub series: Strided,
    /// Rows of the source dataset, in the same order.
    pub rows: Strided,
}

/// Which source holds every frame of a series, as few regular mappings as the pattern allows (a strict
/// round robin over N writers gives one mapping per writer).
#[derive(Debug, Clone)]
pub struct StitchPlan {
    /// Frames in the series.
    pub n_frames: u64,
    /// The sources, as given.
    pub sources: Vec<Source>,
    /// Mappings covering every frame `0..n_frames` exactly once.
    pub mappings: Vec<Mapping>,
    /// For every series frame, `(source, row)`.
    pub owner: Vec<(usize, u64)>,
}

/// Why the sources cannot be stitched. Nothing is written when any of these happens.
#[derive(Debug, thiserror::Error)]
pub enum StitchError {
    /// No sources were given.
    #[error("no source files given: pass the files written by every receiver of the series")]
    NoSources,
    /// Two sources are files of series of different lengths.
    #[error(
        "{path} is a series of {frames} frames but {first} is one of {first_frames}: these files are not from \
         the same series"
    )]
    DifferentSeries {
        /// The source that disagrees.
        path: PathBuf,
        /// Its series length.
        frames: u64,
        /// The first source.
        first: PathBuf,
        /// The first source's series length.
        first_frames: u64,
    },
    /// A source file does not exist.
    #[error("source file {0} does not exist: every writer's file is needed; copy it next to the others or drop the frames it held knowingly")]
    MissingSource(PathBuf),
    /// A source file could not be opened or read.
    #[error("cannot read source file {path}: {reason}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// What HDF5 said.
        reason: String,
    },
    /// Sources disagree on the frame shape or type, or a source's dataset is not `[frames, y, x]`.
    #[error("source {path}: {reason}")]
    Inconsistent {
        /// The file.
        path: PathBuf,
        /// What does not match.
        reason: String,
    },
    /// A frame is claimed by two sources (or twice by one).
    #[error("frame {frame} is claimed by both {first} and {second}: the sources are from different runs or overlap")]
    Duplicate {
        /// The frame.
        frame: u64,
        /// First claimant.
        first: PathBuf,
        /// Second claimant.
        second: PathBuf,
    },
    /// A claimed frame lies outside the series.
    #[error("{path} claims frame {frame} but the series has only {n_frames} frames")]
    OutOfRange {
        /// The file.
        path: PathBuf,
        /// The frame.
        frame: u64,
        /// Frames in the series.
        n_frames: u64,
    },
    /// Some frames of the series are held by no source.
    #[error("{count} frame(s) of the series are in no source file (first: {first:?}); a writer's file is missing or that writer lost frames")]
    Uncovered {
        /// How many frames are missing.
        count: u64,
        /// The first few of them.
        first: Vec<u64>,
    },
    /// A source claims a frame whose data is not stored in it.
    #[error("{path} claims frame {frame} (row {row}) but that row holds no data: the file is truncated or its claims are wrong")]
    NotStored {
        /// The file.
        path: PathBuf,
        /// The series frame.
        frame: u64,
        /// The row in the source dataset.
        row: u64,
    },
    /// A source lacks a per-frame dataset the master needs ([`PER_FRAME`]), or has it with the wrong length.
    #[error("source {path} has no usable {dataset}: {reason}; every writer's file must hold it (was it written by `beamline receive`?)")]
    MissingDataset {
        /// The file.
        path: PathBuf,
        /// The dataset.
        dataset: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Writing the master file failed.
    #[error("writing master file {path}: {reason}")]
    Write {
        /// The master file.
        path: PathBuf,
        /// What HDF5 said.
        reason: String,
    },
}

impl StitchPlan {
    /// Checks that the claims of `sources` cover `0..n_frames` exactly once and plans the mappings. Does not
    /// open any file (see [`verify`]).
    pub fn new(n_frames: u64, sources: Vec<Source>) -> Result<StitchPlan, StitchError> {
        if sources.is_empty() {
            return Err(StitchError::NoSources);
        }
        let mut owner: Vec<Option<(usize, u64)>> = vec![None; n_frames as usize];
        for (s, src) in sources.iter().enumerate() {
            for &(FrameIndex(frame), row) in &src.frames {
                let slot = owner.get_mut(frame as usize).ok_or_else(|| StitchError::OutOfRange {
                    path: src.path.clone(),
                    frame,
                    n_frames,
                })?;
                if let Some((first, _)) = *slot {
                    return Err(StitchError::Duplicate {
                        frame,
                        first: sources[first].path.clone(),
                        second: src.path.clone(),
                    });
                }
                *slot = Some((s, row));
            }
        }
        let uncovered: Vec<u64> =
            owner.iter().enumerate().filter(|(_, o)| o.is_none()).map(|(i, _)| i as u64).collect();
        if !uncovered.is_empty() {
            return Err(StitchError::Uncovered {
                count: uncovered.len() as u64,
                first: uncovered.into_iter().take(8).collect(),
            });
        }
        let owner: Vec<(usize, u64)> = owner.into_iter().flatten().collect();
        let mappings = compact(&owner, sources.len());
        Ok(StitchPlan { n_frames, sources, mappings, owner })
    }
}

/// Groups each source's frames into maximal regular (strided) runs, in both the series and the source.
fn compact(owner: &[(usize, u64)], n_sources: usize) -> Vec<Mapping> {
    let mut per_source: Vec<Vec<(u64, u64)>> = vec![Vec::new(); n_sources];
    for (frame, &(s, row)) in owner.iter().enumerate() {
        per_source[s].push((frame as u64, row));
    }
    let mut out = Vec::new();
    for (source, pairs) in per_source.into_iter().enumerate() {
        let mut i = 0;
        while i < pairs.len() {
            let (f0, r0) = pairs[i];
            let mut count = 1u64;
            let mut strides = None;
            while let Some(&(f, r)) = pairs.get(i + count as usize) {
                let (pf, pr) = pairs[i + count as usize - 1];
                // Rows must increase too: a hyperslab selects in increasing order.
                if r <= pr {
                    break;
                }
                let step = (f - pf, r - pr);
                match strides {
                    None => strides = Some(step),
                    Some(s) if s == step => {}
                    Some(_) => break,
                }
                count += 1;
            }
            let (fs, rs) = strides.unwrap_or((1, 1));
            out.push(Mapping {
                source,
                series: Strided { start: f0, stride: fs, count },
                rows: Strided { start: r0, stride: rs, count },
            });
            i += count as usize;
        }
    }
    out.sort_by_key(|m| m.series.start);
    out
}

/// Path of the per-frame image keys in an NXtomo file.
pub const IMAGE_KEY_PATH: &str = nx::IMAGE_KEY;

/// What a receiver's file says it holds: the series length (rows of its frame dataset, one row per
/// series frame) and, as a [`Source`], the frames whose `image_key` is not
/// [`ImageKey::Invalid`] (the receiver's mark for frames that never reached it).
pub fn read_claims(path: &Path) -> Result<(u64, Source), StitchError> {
    if !path.exists() {
        return Err(StitchError::MissingSource(path.to_path_buf()));
    }
    let unreadable = |e: hdf5::Error| StitchError::Unreadable { path: path.to_path_buf(), reason: e.to_string() };
    let file = File::open(path).map_err(unreadable)?;
    let rows = file.dataset(DATA_PATH).map_err(unreadable)?.shape().first().copied().unwrap_or(0) as u64;
    let keys: Vec<i64> = file.dataset(IMAGE_KEY_PATH).map_err(unreadable)?.read_raw().map_err(unreadable)?;
    if keys.len() as u64 != rows {
        return Err(StitchError::Inconsistent {
            path: path.to_path_buf(),
            reason: format!("{IMAGE_KEY_PATH} has {} entries but {DATA_PATH} has {rows} frames", keys.len()),
        });
    }
    let frames = keys
        .iter()
        .enumerate()
        .filter(|(_, &k)| ImageKey::from_stored(k).is_valid())
        .map(|(i, _)| (FrameIndex(i as u64), i as u64))
        .collect();
    Ok((rows, Source { path: path.to_path_buf(), dataset: DATA_PATH.into(), frames }))
}

/// What the verified sources look like.
#[derive(Debug, Clone)]
pub struct SourceLayout {
    /// Frame shape `[y, x]`, the same in every source.
    pub frame_shape: [usize; 2],
    /// Rows of each source's frame dataset.
    pub rows: Vec<u64>,
    /// The element type, the same in every source.
    pub dtype: hdf5::Datatype,
}

/// Opens every source of `plan` and checks it really holds what it claims: the file exists, the frame
/// dataset is `[rows, y, x]` with the same `y, x` and type everywhere, every claimed row is in range and,
/// for chunked datasets, its chunk is allocated.
pub fn verify(plan: &StitchPlan) -> Result<SourceLayout, StitchError> {
    let mut shape: Option<([usize; 2], hdf5::Datatype, PathBuf)> = None;
    let mut rows = Vec::with_capacity(plan.sources.len());
    for src in &plan.sources {
        if !src.path.exists() {
            return Err(StitchError::MissingSource(src.path.clone()));
        }
        let unreadable = |e: hdf5::Error| StitchError::Unreadable { path: src.path.clone(), reason: e.to_string() };
        let file = File::open(&src.path).map_err(unreadable)?;
        let ds = file.dataset(&src.dataset).map_err(unreadable)?;
        let dims = ds.shape();
        let inconsistent = |reason: String| StitchError::Inconsistent { path: src.path.clone(), reason };
        if dims.len() != 3 {
            return Err(inconsistent(format!("{} has shape {dims:?}, expected [frames, y, x]", src.dataset)));
        }
        let dtype = ds.dtype().map_err(unreadable)?;
        let fs = [dims[1], dims[2]];
        match &shape {
            None => shape = Some((fs, dtype.clone(), src.path.clone())),
            Some((s, t, first)) => {
                if *s != fs {
                    return Err(inconsistent(format!(
                        "frames are {}x{} but {} has {}x{}",
                        fs[0],
                        fs[1],
                        first.display(),
                        s[0],
                        s[1]
                    )));
                }
                if *t != dtype {
                    return Err(inconsistent(format!(
                        "element type {:?} differs from {:?} in {}",
                        dtype.to_descriptor().ok(),
                        t.to_descriptor().ok(),
                        first.display()
                    )));
                }
            }
        }
        let n_rows = dims[0] as u64;
        for &dataset in PER_FRAME {
            let missing = |reason: String| StitchError::MissingDataset { path: src.path.clone(), dataset, reason };
            if !file.link_exists(dataset) {
                return Err(missing("not found".into()));
            }
            let len = file.dataset(dataset).map_err(|e| missing(e.to_string()))?.shape();
            if len != [dims[0]] {
                return Err(missing(format!("shape {len:?}, expected [{n_rows}] (one entry per frame)")));
            }
        }
        let chunked = ds.is_chunked();
        for &(FrameIndex(frame), row) in &src.frames {
            if row >= n_rows || (chunked && !chunk_allocated(&ds, row)) {
                return Err(StitchError::NotStored { path: src.path.clone(), frame, row });
            }
        }
        rows.push(n_rows);
    }
    let (frame_shape, dtype, _) = shape.ok_or(StitchError::NoSources)?;
    Ok(SourceLayout { frame_shape, rows, dtype })
}

/// Whether the chunk holding source row `row` (one frame per chunk along axis 0, or any chunking) has
/// storage in the file.
fn chunk_allocated(ds: &Dataset, row: u64) -> bool {
    let chunk = ds.chunk().unwrap_or_default();
    let along = chunk.first().copied().unwrap_or(1).max(1) as u64;
    let offset: [hdf5_sys::h5::hsize_t; 3] = [row / along * along, 0, 0];
    let mut mask = 0;
    let mut addr = 0;
    let mut size = 0;
    let status = hdf5::sync::sync(|| unsafe {
        hdf5_sys::h5d::H5Dget_chunk_info_by_coord(ds.id(), offset.as_ptr(), &mut mask, &mut addr, &mut size)
    });
    status >= 0 && size > 0 && addr != hdf5_sys::h5::HADDR_UNDEF
}

/// Per-frame 1-D datasets copied into the master in series order; every source must have them
/// ([`verify`] refuses a source without one).
pub const PER_FRAME: &[&str] = &[nx::IMAGE_KEY, nx::ROTATION_ANGLE, nx::FRAME_TIMESTAMP];

/// Writes the master NXtomo file `out`: `/entry` (NXentry, definition NXtomo) with the virtual frame
/// dataset, the per-frame datasets of [`PER_FRAME`] copied from the sources in series order, `/entry/data`
/// (NXdata) linking them, and the list of sources. Call [`verify`] first; `out` is replaced, and removed
/// again when writing fails.
pub fn write_master(out: &Path, plan: &StitchPlan, layout: &SourceLayout) -> Result<(), StitchError> {
    let r = write_master_file(out, plan, layout);
    if r.is_err() {
        let _ = std::fs::remove_file(out);
    }
    r
}

fn write_master_file(out: &Path, plan: &StitchPlan, layout: &SourceLayout) -> Result<(), StitchError> {
    let write_err = |e: hdf5::Error| StitchError::Write { path: out.to_path_buf(), reason: e.to_string() };
    let base = out.parent().map(Path::to_path_buf).unwrap_or_default();
    let file = File::create(out).map_err(write_err)?;
    crate::writer::close_on_exec(&file).map_err(write_err)?;
    let entry = nx_group(&file, nx::ENTRY, class::ENTRY).map_err(write_err)?;
    string_dataset(&entry, nx::leaf(nx::DEFINITION), class::TOMO).map_err(write_err)?;
    nx_group(&file, nx::INSTRUMENT, class::INSTRUMENT).map_err(write_err)?;
    let detector = nx_group(&file, nx::DETECTOR, class::DETECTOR).map_err(write_err)?;
    nx_group(&file, nx::SAMPLE, class::SAMPLE).map_err(write_err)?;

    let [y, x] = layout.frame_shape;
    let vds_extents = Extents::from((plan.n_frames as usize, y, x));
    let mut builder = detector.new_dataset_builder().empty_as(&layout.dtype).shape(vds_extents.clone());
    for m in &plan.mappings {
        let src = &plan.sources[m.source];
        let name = source_name(&base, &src.path);
        let src_extents = Extents::from((layout.rows[m.source] as usize, y, x));
        builder = builder.virtual_map(
            name,
            &src.dataset,
            src_extents,
            m.rows.hyperslab(layout.frame_shape),
            vds_extents.clone(),
            m.series.hyperslab(layout.frame_shape),
        );
    }
    let data = builder.create(nx::leaf(nx::DATA)).map_err(write_err)?;
    data.new_attr::<hdf5::types::VarLenUnicode>()
        .create("interpretation")
        .and_then(|a| a.write_scalar(&varlen("image")))
        .map_err(write_err)?;

    for &path in PER_FRAME {
        copy_per_frame(&file, plan, path).map_err(|e| match e {
            CopyError::Source(path, dataset, reason) => StitchError::MissingDataset { path, dataset, reason },
            CopyError::Master(e) => write_err(e),
        })?;
    }
    let nxdata = nx_group(&file, nx::NXDATA, class::DATA).map_err(write_err)?;
    nxdata
        .link_soft(nx::DATA, nx::leaf(nx::NXDATA_DATA))
        .and_then(|_| attr_str(&nxdata, "signal", nx::leaf(nx::NXDATA_DATA)))
        .map_err(write_err)?;
    nxdata.link_soft(nx::IMAGE_KEY, nx::leaf(nx::NXDATA_IMAGE_KEY)).map_err(write_err)?;
    nxdata.link_soft(nx::ROTATION_ANGLE, nx::leaf(nx::NXDATA_ROTATION_ANGLE)).map_err(write_err)?;

    let names: Vec<hdf5::types::VarLenUnicode> =
        plan.sources.iter().map(|s| varlen(&source_name(&base, &s.path))).collect();
    let stitch = nx_group(&file, nx::STITCH, class::COLLECTION).map_err(write_err)?;
    stitch.new_dataset_builder().with_data(&names).create(nx::leaf(nx::STITCH_SOURCES)).map_err(write_err)?;
    let owners: Vec<u32> = plan.owner.iter().map(|&(s, _)| s as u32).collect();
    stitch.new_dataset_builder().with_data(&owners).create(nx::leaf(nx::STITCH_SOURCE_OF_FRAME)).map_err(write_err)?;
    file.flush().map_err(write_err)?;
    Ok(())
}

/// Why a per-frame dataset could not be copied.
enum CopyError {
    /// A source lacks the dataset or cannot give it: (file, dataset, what went wrong).
    Source(PathBuf, &'static str, String),
    /// Writing into the master failed.
    Master(hdf5::Error),
}

/// Copies a per-frame 1-D dataset from the sources into the master in series order. A source without it
/// (or with too few entries) is an error: a master without, say, timestamps would be silently incomplete.
fn copy_per_frame(file: &File, plan: &StitchPlan, path: &'static str) -> Result<(), CopyError> {
    let mut values: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    let mut dtype = None;
    for (s, src) in plan.sources.iter().enumerate() {
        let bad = |reason: String| CopyError::Source(src.path.clone(), path, reason);
        let f = File::open(&src.path).map_err(|e| bad(e.to_string()))?;
        if !f.link_exists(path) {
            return Err(bad("not found".into()));
        }
        let ds = f.dataset(path).map_err(|e| bad(e.to_string()))?;
        dtype.get_or_insert(ds.dtype().map_err(|e| bad(e.to_string()))?);
        values.insert(s, ds.read_raw::<f64>().map_err(|e| bad(e.to_string()))?);
    }
    let mut out = Vec::with_capacity(plan.owner.len());
    for &(s, row) in &plan.owner {
        match values.get(&s).and_then(|v| v.get(row as usize)) {
            Some(v) => out.push(*v),
            None => {
                let reason = format!("shorter than row {row}");
                return Err(CopyError::Source(plan.sources[s].path.clone(), path, reason));
            }
        }
    }
    let group = file.group(nx::parent(path)).map_err(CopyError::Master)?;
    let dtype = dtype.ok_or_else(|| CopyError::Master(hdf5::Error::from("no sources")))?;
    let ds = group
        .new_dataset_builder()
        .empty_as(&dtype)
        .shape(out.len())
        .create(nx::leaf(path))
        .map_err(CopyError::Master)?;
    ds.write_raw(&out).map_err(CopyError::Master)?;
    Ok(())
}

/// How the master refers to a source: relative to the master's folder when inside it, absolute otherwise.
fn source_name(base: &Path, src: &Path) -> String {
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (b, s) = (abs(if base.as_os_str().is_empty() { Path::new(".") } else { base }), abs(src));
    match s.strip_prefix(&b) {
        Ok(rel) => format!("./{}", rel.display()),
        Err(_) => s.display().to_string(),
    }
}

/// What [`stitch`] wrote.
#[derive(Debug, Clone)]
pub struct Stitched {
    /// Frames of the series.
    pub n_frames: u64,
    /// Frame shape `[y, x]`.
    pub frame_shape: [usize; 2],
    /// Virtual-dataset mappings in the master (one per regular run of frames of a source).
    pub mappings: usize,
    /// Each source and the number of frames it holds, in the order given.
    pub held: Vec<(PathBuf, usize)>,
}

/// The whole of `beamline stitch`: reads what every source claims ([`read_claims`]), checks that they are
/// of one series, plans ([`StitchPlan::new`]), checks the claims against the files ([`verify`]) and writes
/// the master file `out` ([`write_master`]). Nothing is written when any check fails.
pub fn stitch(sources: &[PathBuf], out: &Path) -> Result<Stitched, StitchError> {
    let mut claims = Vec::with_capacity(sources.len());
    let mut first: Option<(u64, &PathBuf)> = None;
    for path in sources {
        let (frames, source) = read_claims(path)?;
        match first {
            None => first = Some((frames, path)),
            Some((first_frames, first)) if first_frames != frames => {
                return Err(StitchError::DifferentSeries {
                    path: path.clone(),
                    frames,
                    first: first.clone(),
                    first_frames,
                })
            }
            Some(_) => {}
        }
        claims.push(source);
    }
    let (n_frames, _) = first.ok_or(StitchError::NoSources)?;
    let held: Vec<(PathBuf, usize)> = claims.iter().map(|s| (s.path.clone(), s.frames.len())).collect();
    let plan = StitchPlan::new(n_frames, claims)?;
    let layout = verify(&plan)?;
    write_master(out, &plan, &layout)?;
    Ok(Stitched { n_frames, frame_shape: layout.frame_shape, mappings: plan.mappings.len(), held })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(path: &str, frames: &[(u64, u64)]) -> Source {
        Source {
            path: PathBuf::from(path),
            dataset: DATA_PATH.into(),
            frames: frames.iter().map(|&(f, r)| (FrameIndex(f), r)).collect(),
        }
    }

    #[test]
    fn round_robin_compacts_to_one_mapping_per_source() {
        let n = 30u64;
        let sources: Vec<Source> = (0..3)
            .map(|s| {
                let frames: Vec<(u64, u64)> = (0..n).filter(|f| f % 3 == s).map(|f| (f, f / 3)).collect();
                claim(&format!("w{s}.h5"), &frames)
            })
            .collect();
        let plan = StitchPlan::new(n, sources).unwrap();
        assert_eq!(plan.mappings.len(), 3);
        assert_eq!(plan.mappings[1].series, Strided { start: 1, stride: 3, count: 10 });
        assert_eq!(plan.mappings[1].rows, Strided { start: 0, stride: 1, count: 10 });
    }

    #[test]
    fn irregular_spread_still_covers_every_frame_once() {
        // frames 0..3 -> a, 3 -> b, 4..6 -> a, 6..9 -> b (rows at the series index, full-size files)
        let a = claim("a.h5", &[(0, 0), (1, 1), (2, 2), (4, 4), (5, 5)]);
        let b = claim("b.h5", &[(3, 3), (6, 6), (7, 7), (8, 8)]);
        let plan = StitchPlan::new(9, vec![a, b]).unwrap();
        let mut covered = vec![0; 9];
        for m in &plan.mappings {
            for k in 0..m.series.count {
                let f = m.series.start + k * m.series.stride;
                let r = m.rows.start + k * m.rows.stride;
                assert_eq!(plan.owner[f as usize], (m.source, r));
                covered[f as usize] += 1;
            }
        }
        assert!(covered.iter().all(|&c| c == 1), "{covered:?}");
    }

    #[test]
    fn holes_duplicates_and_out_of_range_are_errors() {
        let e = StitchPlan::new(4, vec![claim("a", &[(0, 0), (1, 1)]), claim("b", &[(3, 0)])]).unwrap_err();
        assert!(matches!(e, StitchError::Uncovered { count: 1, ref first } if first == &[2]), "{e}");
        let e = StitchPlan::new(2, vec![claim("a", &[(0, 0), (1, 1)]), claim("b", &[(1, 0)])]).unwrap_err();
        assert!(matches!(e, StitchError::Duplicate { frame: 1, .. }), "{e}");
        let e = StitchPlan::new(2, vec![claim("a", &[(0, 0), (2, 1)])]).unwrap_err();
        assert!(matches!(e, StitchError::OutOfRange { frame: 2, .. }), "{e}");
        assert!(matches!(StitchPlan::new(2, vec![]), Err(StitchError::NoSources)));
    }

    /// A receiver-like file: frames, image keys, angles and (with `times`) timestamps, per row.
    fn write_source(path: &Path, rows: usize, frames: &[(u64, u64)], shape: [usize; 2], times: bool) {
        let f = File::create(path).unwrap();
        // Other tests of this process start children; one started while this file is open must not inherit
        // its descriptor and with it HDF5's lock (seen once in CI: "unable to lock file" on reading it back).
        crate::writer::close_on_exec(&f).unwrap();
        let det = f.create_group("entry").unwrap().create_group("instrument").unwrap();
        let det = det.create_group("detector").unwrap();
        let ds = det
            .new_dataset::<u16>()
            .chunk((1, shape[0], shape[1]))
            .shape((rows, shape[0], shape[1]))
            .create("data")
            .unwrap();
        let mut keys = vec![0i32; rows];
        let mut angles = vec![f64::NAN; rows];
        let mut stamps = vec![f64::NAN; rows];
        for &(frame, row) in frames {
            angles[row as usize] = frame as f64 * 0.5;
            stamps[row as usize] = 1.0e9 + frame as f64;
            let px: Vec<u16> = (0..shape[0] * shape[1]).map(|i| (frame * 1000 + i as u64) as u16).collect();
            let arr = ndarray::Array3::from_shape_vec((1, shape[0], shape[1]), px).unwrap();
            ds.write_slice(&arr, ndarray::s![row as usize..row as usize + 1, .., ..]).unwrap();
            keys[row as usize] = if frame < 2 { 2 } else { 0 };
        }
        det.new_dataset_builder().with_data(&keys).create(nx::leaf(nx::IMAGE_KEY)).unwrap();
        if times {
            det.new_dataset_builder().with_data(&stamps).create(nx::leaf(nx::FRAME_TIMESTAMP)).unwrap();
        }
        let sample = f.group(nx::ENTRY).unwrap().create_group(nx::leaf(nx::SAMPLE)).unwrap();
        sample.new_dataset_builder().with_data(&angles).create(nx::leaf(nx::ROTATION_ANGLE)).unwrap();
    }

    #[test]
    fn master_reads_every_frame_from_its_source_and_refuses_missing_or_unwritten_ones() {
        let dir = tempfile::tempdir().unwrap();
        let shape = [3, 4];
        let n = 10u64;
        let mut sources = Vec::new();
        for s in 0..3u64 {
            let frames: Vec<(u64, u64)> = (0..n).filter(|f| f % 3 == s).map(|f| (f, f / 3)).collect();
            let path = dir.path().join(format!("w{s}.h5"));
            write_source(&path, frames.len(), &frames, shape, true);
            let frames = frames.iter().map(|&(f, r)| (FrameIndex(f), r)).collect();
            sources.push(Source { path, dataset: DATA_PATH.into(), frames });
        }
        let plan = StitchPlan::new(n, sources.clone()).unwrap();
        let layout = verify(&plan).unwrap();
        let master = dir.path().join("master.h5");
        write_master(&master, &plan, &layout).unwrap();
        let f = File::open(&master).unwrap();
        let data: Vec<u16> = f.dataset(DATA_PATH).unwrap().read_raw().unwrap();
        for frame in 0..n as usize {
            for i in 0..12 {
                assert_eq!(data[frame * 12 + i], (frame as u64 * 1000 + i as u64) as u16);
            }
        }
        let keys: Vec<i32> = f.dataset(nx::IMAGE_KEY).unwrap().read_raw().unwrap();
        assert_eq!(keys, vec![2, 2, 0, 0, 0, 0, 0, 0, 0, 0]);
        // The per-frame vectors come from the source that holds each frame, under the writer's names.
        let angles: Vec<f64> = f.dataset(nx::ROTATION_ANGLE).unwrap().read_raw().unwrap();
        assert_eq!(angles, (0..n).map(|i| i as f64 * 0.5).collect::<Vec<_>>());
        let stamps: Vec<f64> = f.dataset(nx::FRAME_TIMESTAMP).unwrap().read_raw().unwrap();
        assert_eq!(stamps, (0..n).map(|i| 1.0e9 + i as f64).collect::<Vec<_>>());
        drop(f);

        // A source without timestamps is refused, naming the file and the dataset; no master is written.
        let untimed = dir.path().join("untimed.h5");
        let frames: Vec<(u64, u64)> = (0..n).filter(|f| f % 3 == 1).map(|f| (f, f / 3)).collect();
        write_source(&untimed, frames.len(), &frames, shape, false);
        let mut bad = sources.clone();
        bad[1].path = untimed.clone();
        let e = verify(&StitchPlan::new(n, bad.clone()).unwrap()).unwrap_err();
        assert!(
            matches!(&e, StitchError::MissingDataset { path, dataset, .. } if *path == untimed && *dataset == nx::FRAME_TIMESTAMP),
            "{e}"
        );
        assert!(e.to_string().contains("untimed.h5") && e.to_string().contains("frame_timestamp"), "{e}");
        // Even without `verify`, writing the master refuses rather than skipping the dataset.
        let plan = StitchPlan::new(n, bad).unwrap();
        let m2 = dir.path().join("m2.h5");
        let e = write_master(&m2, &plan, &layout).unwrap_err();
        assert!(matches!(e, StitchError::MissingDataset { .. }) && !m2.exists(), "{e}");

        // A source that lost a frame it claims (row never written) is refused.
        let holey = dir.path().join("holey.h5");
        write_source(&holey, 4, &[(1, 0), (4, 1), (7, 2)], shape, true);
        let mut bad = sources.clone();
        bad[1] = Source {
            path: holey,
            dataset: DATA_PATH.into(),
            frames: vec![(FrameIndex(1), 0), (FrameIndex(4), 1), (FrameIndex(7), 3)],
        };
        let e = verify(&StitchPlan::new(n, bad).unwrap()).unwrap_err();
        assert!(matches!(e, StitchError::NotStored { frame: 7, row: 3, .. }), "{e}");

        // A missing file is refused before anything is written.
        std::fs::remove_file(dir.path().join("w2.h5")).unwrap();
        let e = verify(&StitchPlan::new(n, sources).unwrap()).unwrap_err();
        assert!(matches!(e, StitchError::MissingSource(_)), "{e}");
    }
}
