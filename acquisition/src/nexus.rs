//! The one NeXus (NXtomo) vocabulary of the workspace: where things live in an acquisition file, what a
//! frame is (`image_key`), the frame index and angle types, the attribute helpers, and a typed reader of
//! the acquisition groups.
//!
//! Everything that writes or reads an NXtomo file — the receiver's writer, the stitcher, replay, the
//! reconstruction reader, the live preview, the scan engine's detector — takes its paths and types from
//! here, so a renamed dataset is renamed once. The layout written by [`crate::writer`]:
//!
//! | path                                        | what                                                   |
//! |---------------------------------------------|--------------------------------------------------------|
//! | [`path::DATA`]                              | frames `[n, rows, cols]`, one frame per chunk          |
//! | [`path::IMAGE_KEY`]                         | per frame, [`ImageKey`] code                           |
//! | [`path::FRAME_TIMESTAMP`]                   | per frame, seconds since the Unix epoch (NaN: missing) |
//! | [`path::ROTATION_ANGLE`]                    | per frame, degrees                                     |
//! | [`path::NXDATA`]                            | NXdata: hard links to data, image key, rotation angle  |
//! | [`path::ACQUISITION`]                       | NXcollection: provenance, counts, status ([`acq`])     |

use std::fmt;
use std::path::{Path, PathBuf};

use hdf5::types::{FloatSize, IntSize, TypeDescriptor, VarLenUnicode};
use hdf5::{Dataset, Group, Location};
use serde::{Deserialize, Serialize};

use crate::protocol::Dtype;

/// Absolute paths of the NXtomo groups and datasets.
pub mod path {
    /// The NXentry group.
    pub const ENTRY: &str = "/entry";
    /// `definition` of the entry (`"NXtomo"`).
    pub const DEFINITION: &str = "/entry/definition";
    /// `title` of the entry (the series id).
    pub const TITLE: &str = "/entry/title";
    /// Start of the acquisition, RFC 3339.
    pub const START_TIME: &str = "/entry/start_time";
    /// End of the acquisition, RFC 3339.
    pub const END_TIME: &str = "/entry/end_time";
    /// Software that wrote the file.
    pub const PROGRAM_NAME: &str = "/entry/program_name";
    /// The NXinstrument group.
    pub const INSTRUMENT: &str = "/entry/instrument";
    /// The NXdetector group.
    pub const DETECTOR: &str = "/entry/instrument/detector";
    /// The frames, `[n, rows, cols]`.
    pub const DATA: &str = "/entry/instrument/detector/data";
    /// Per-frame [`super::ImageKey`] codes, `[n]`.
    pub const IMAGE_KEY: &str = "/entry/instrument/detector/image_key";
    /// Per-frame acquisition times, seconds since 1970-01-01T00:00:00Z, `[n]`.
    pub const FRAME_TIMESTAMP: &str = "/entry/instrument/detector/frame_timestamp";
    /// The NXsample group.
    pub const SAMPLE: &str = "/entry/sample";
    /// Name of the sample.
    pub const SAMPLE_NAME: &str = "/entry/sample/name";
    /// Per-frame rotation angles in degrees, `[n]`.
    pub const ROTATION_ANGLE: &str = "/entry/sample/rotation_angle";
    /// The NXdata group (links to the signal and its axes).
    pub const NXDATA: &str = "/entry/data";
    /// The NXdata link to the frames (also where a reconstructed volume is stored).
    pub const NXDATA_DATA: &str = "/entry/data/data";
    /// The NXdata link to the image keys.
    pub const NXDATA_IMAGE_KEY: &str = "/entry/data/image_key";
    /// The NXdata link to the rotation angles.
    pub const NXDATA_ROTATION_ANGLE: &str = "/entry/data/rotation_angle";
    /// The NXcollection of acquisition bookkeeping (names in [`super::acq`]).
    pub const ACQUISITION: &str = "/entry/acquisition";
    /// The NXcollection a stitched master file lists its sources in.
    pub const STITCH: &str = "/entry/stitch";
    /// Source file names of a stitched master, `[sources]`.
    pub const STITCH_SOURCES: &str = "/entry/stitch/sources";
    /// Per frame of a stitched master, the index of the source holding it.
    pub const STITCH_SOURCE_OF_FRAME: &str = "/entry/stitch/source_of_frame";
    /// Provenance group of a reconstructed volume.
    pub const PROVENANCE: &str = "/entry/provenance";

    /// Where readers look for frames, first match wins (ours first, then other NXtomo writers').
    pub const DATA_CANDIDATES: &[&str] = &[DATA, NXDATA_DATA, "/entry/imaging/data"];
    /// Where readers look for image keys, first match wins.
    pub const IMAGE_KEY_CANDIDATES: &[&str] = &[IMAGE_KEY, NXDATA_IMAGE_KEY];
    /// Where readers look for rotation angles, first match wins.
    pub const ANGLE_CANDIDATES: &[&str] =
        &[ROTATION_ANGLE, NXDATA_ROTATION_ANGLE, "/entry/sample/transformations/rotation_angle"];

    /// The last component of `path` (`"image_key"` for [`IMAGE_KEY`]).
    pub fn leaf(path: &str) -> &str {
        path.rsplit_once('/').map_or(path, |(_, name)| name)
    }

    /// The group part of `path` (`"/entry/instrument/detector"` for [`IMAGE_KEY`]; `"/"` at the top).
    pub fn parent(path: &str) -> &str {
        match path.rsplit_once('/') {
            Some(("", _)) | None => "/",
            Some((group, _)) => group,
        }
    }
}

/// Names of the datasets in [`path::ACQUISITION`] (the receiver's bookkeeping and provenance).
pub mod acq {
    /// Wire protocol version the series arrived with.
    pub const PROTOCOL_VERSION: &str = "protocol_version";
    /// The series id.
    pub const SERIES_ID: &str = "series_id";
    /// The receiver's software version.
    pub const SOFTWARE: &str = "software";
    /// The receiver's command line.
    pub const COMMAND_LINE: &str = "command_line";
    /// The series start message, JSON.
    pub const SERIES_START: &str = "series_start";
    /// The metadata of the series start, JSON.
    pub const SERIES_METADATA: &str = "series_metadata";
    /// The metadata of the series end, JSON.
    pub const END_METADATA: &str = "end_metadata";
    /// Frames the series start declared.
    pub const FRAMES_EXPECTED: &str = "frames_expected";
    /// Frames written.
    pub const FRAMES_RECEIVED: &str = "frames_received";
    /// Frames the sender said it sent.
    pub const FRAMES_SENT: &str = "frames_sent";
    /// How many frames were lost.
    pub const FRAMES_MISSING: &str = "frames_missing";
    /// Indices of the lost frames.
    pub const MISSING_FRAMES: &str = "missing_frames";
    /// How many frames were never sent to this writer (a share of a fanned-out series).
    pub const FRAMES_NOT_SENT: &str = "frames_not_sent";
    /// Indices of the frames never sent to this writer.
    pub const NOT_SENT_FRAMES: &str = "not_sent_frames";
    /// Messages rejected while the series was open.
    pub const FRAMES_REJECTED: &str = "frames_rejected";
    /// Rejections by reason, JSON.
    pub const REJECTED_BY_REASON: &str = "rejected_by_reason";
    /// `receiving`, then the series end's status (or `incomplete ...`, `abandoned ...`).
    pub const STATUS: &str = "status";
    /// How many frames the receiver dropped because its queue was full (`--on-full drop`).
    pub const FRAMES_DROPPED: &str = "frames_dropped";
    /// Indices of the frames dropped because the queue was full (they are also in `missing_frames`).
    pub const DROPPED_FRAMES: &str = "dropped_frames";
    /// Seconds the receive thread waited for queue space (`--on-full block`), float64.
    pub const QUEUE_BLOCKED_SECONDS: &str = "queue_blocked_seconds";
}

/// NeXus class names (`NX_class` attribute values).
pub mod class {
    /// `NXentry`.
    pub const ENTRY: &str = "NXentry";
    /// `NXinstrument`.
    pub const INSTRUMENT: &str = "NXinstrument";
    /// `NXdetector`.
    pub const DETECTOR: &str = "NXdetector";
    /// `NXsample`.
    pub const SAMPLE: &str = "NXsample";
    /// `NXdata`.
    pub const DATA: &str = "NXdata";
    /// `NXcollection`.
    pub const COLLECTION: &str = "NXcollection";
    /// `NXtomo`, the application definition.
    pub const TOMO: &str = "NXtomo";
}

// --- issue 15 §2: energy, distance, pixel size ---
/// The beam and detector geometry phase retrieval needs, as series-start metadata carries it (keys
/// [`Physics::ENERGY_KEV`], [`Physics::DISTANCE_M`], [`Physics::PIXEL_SIZE_UM`]) and as the writer stores it in the
/// NXtomo places ESRF tomoscan/nabu read: `/entry/instrument/source/energy` (keV), `detector/distance` (m),
/// `detector/x_pixel_size` and `y_pixel_size` (m), each with a `units` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Physics {
    /// Photon energy, keV.
    pub energy_kev: Option<f64>,
    /// Sample-detector distance, m.
    pub distance_m: Option<f64>,
    /// Pixel size (square pixels), um.
    pub pixel_size_um: Option<f64>,
}

impl Physics {
    /// Metadata key of the energy, keV.
    pub const ENERGY_KEV: &'static str = "energy_kev";
    /// Metadata key of the sample-detector distance, m.
    pub const DISTANCE_M: &'static str = "distance_m";
    /// Metadata key of the pixel size, um.
    pub const PIXEL_SIZE_UM: &'static str = "pixel_size_um";

    /// What series-start metadata carries (positive finite numbers only).
    pub fn from_metadata(m: &serde_json::Value) -> Physics {
        let get = |k: &str| m.get(k).and_then(serde_json::Value::as_f64).filter(|v| v.is_finite() && *v > 0.0);
        Physics {
            energy_kev: get(Self::ENERGY_KEV),
            distance_m: get(Self::DISTANCE_M),
            pixel_size_um: get(Self::PIXEL_SIZE_UM),
        }
    }

    /// Adds the values present to a metadata object.
    pub fn add_to_metadata(&self, m: &mut serde_json::Value) {
        for (k, v) in [
            (Self::ENERGY_KEV, self.energy_kev),
            (Self::DISTANCE_M, self.distance_m),
            (Self::PIXEL_SIZE_UM, self.pixel_size_um),
        ] {
            if let (Some(v), Some(obj)) = (v, m.as_object_mut()) {
                obj.insert(k.into(), serde_json::json!(v));
            }
        }
    }

    /// Writes the values present into the NXtomo tree of `file` (the instrument and detector groups exist).
    pub fn write(&self, file: &hdf5::File) -> hdf5::Result<()> {
        let scalar = |g: &Group, name: &str, v: f64, units: &str| -> hdf5::Result<()> {
            let ds = g.new_dataset::<f64>().create(name)?;
            ds.write_scalar(&v)?;
            attr_str(&ds, "units", units)
        };
        if let Some(e) = self.energy_kev {
            let src = nx_group(file, "/entry/instrument/source", "NXsource")?;
            scalar(&src, "energy", e, "keV")?;
        }
        let det = file.group(path::DETECTOR)?;
        if let Some(d) = self.distance_m {
            scalar(&det, "distance", d, "m")?;
        }
        if let Some(p) = self.pixel_size_um {
            scalar(&det, "x_pixel_size", p * 1e-6, "m")?;
            scalar(&det, "y_pixel_size", p * 1e-6, "m")?;
        }
        Ok(())
    }
}
// --- end issue 15 §2 ---

/// Index of a frame within its series, `0..frames`; also its position along the first axis of the frame
/// dataset. `u64` as on the wire; [`FrameIndex::as_usize`] for indexing memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FrameIndex(pub u64);

impl FrameIndex {
    /// The index as a `usize` (frame counts are bounded by [`crate::protocol::MAX_FRAMES`] and by the
    /// dataset length, so this is lossless on every supported target; saturates otherwise).
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl From<usize> for FrameIndex {
    fn from(i: usize) -> FrameIndex {
        FrameIndex(i as u64)
    }
}

impl From<u64> for FrameIndex {
    fn from(i: u64) -> FrameIndex {
        FrameIndex(i)
    }
}

impl fmt::Display for FrameIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A rotation angle in degrees, as stored in NXtomo `rotation_angle`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Degrees(pub f64);

impl Degrees {
    /// The angle in radians.
    pub fn to_radians(self) -> f64 {
        self.0.to_radians()
    }
}

impl From<f64> for Degrees {
    fn from(d: f64) -> Degrees {
        Degrees(d)
    }
}

/// What a frame shows: the NXtomo `image_key` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum ImageKey {
    /// A projection of the sample (0).
    Projection = 0,
    /// A flat field: beam, no sample (1).
    Flat = 1,
    /// A dark field: no beam (2).
    Dark = 2,
    /// Not to be used (3): the writer's mark for frames that never arrived. Never valid on the wire.
    Invalid = 3,
}

impl ImageKey {
    /// The NXtomo code stored in `image_key`.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The key for an NXtomo code, `None` for anything but 0, 1, 2, 3.
    pub fn from_code(code: i64) -> Option<ImageKey> {
        match code {
            0 => Some(ImageKey::Projection),
            1 => Some(ImageKey::Flat),
            2 => Some(ImageKey::Dark),
            3 => Some(ImageKey::Invalid),
            _ => None,
        }
    }

    /// The key of a stored code as a reader uses it: any unknown code is [`ImageKey::Invalid`].
    pub fn from_stored(code: i64) -> ImageKey {
        ImageKey::from_code(code).unwrap_or(ImageKey::Invalid)
    }

    /// Whether the frame holds data to use (projection, flat or dark).
    pub fn is_valid(self) -> bool {
        self != ImageKey::Invalid
    }
}

/// A string value for HDF5: interior NUL characters (which HDF5 strings cannot hold) are dropped.
pub fn varlen(s: &str) -> VarLenUnicode {
    let clean: String = s.chars().filter(|c| *c != '\0').collect();
    clean.parse().unwrap_or_default()
}

/// Writes the string attribute `name` = `value` on `loc`.
pub fn attr_str(loc: &Location, name: &str, value: &str) -> hdf5::Result<()> {
    loc.new_attr::<VarLenUnicode>().create(name)?.write_scalar(&varlen(value))
}

/// Creates group `name` (a name or a path whose parents exist) in `parent` with `NX_class` = `class`.
pub fn nx_group(parent: &Group, name: &str, class: &str) -> hdf5::Result<Group> {
    let g = parent.create_group(name)?;
    attr_str(&g, "NX_class", class)?;
    Ok(g)
}

/// Creates the scalar string dataset `name` = `value` in `parent`.
pub fn string_dataset(parent: &Group, name: &str, value: &str) -> hdf5::Result<Dataset> {
    let ds = parent.new_dataset::<VarLenUnicode>().create(name)?;
    ds.write_scalar(&varlen(value))?;
    Ok(ds)
}

/// Why an acquisition file could not be read. Every variant names the file and, where there is one, the
/// dataset.
#[derive(Debug, thiserror::Error)]
pub enum NexusError {
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
    /// A dataset has the wrong shape or type, or cannot be read.
    #[error("{path}:{dataset}: {reason}")]
    Shape {
        /// File.
        path: PathBuf,
        /// Dataset.
        dataset: String,
        /// What is wrong.
        reason: String,
    },
}

/// An NXtomo acquisition file opened for reading: the frame dataset (not its frames), the per-frame image
/// keys and angles, and access to the timestamps and the acquisition bookkeeping.
#[derive(Debug)]
pub struct NxTomoFile {
    path: PathBuf,
    file: hdf5::File,
    data: Dataset,
    data_path: &'static str,
    key_path: &'static str,
    angle_path: &'static str,
    shape: [usize; 3],
    keys: Vec<ImageKey>,
    angles: Vec<Degrees>,
}

fn find(file: &hdf5::File, paths: &[&'static str]) -> Option<(&'static str, Dataset)> {
    paths.iter().find_map(|p| file.dataset(p).ok().map(|d| (*p, d)))
}

impl NxTomoFile {
    /// Opens `path` and reads its image keys and angles (looked up at [`path::DATA_CANDIDATES`],
    /// [`path::IMAGE_KEY_CANDIDATES`], [`path::ANGLE_CANDIDATES`]). The frame dataset must be 3-D and the
    /// per-frame vectors as long as it has frames; unknown key codes read as [`ImageKey::Invalid`].
    pub fn open(path: &Path) -> Result<NxTomoFile, NexusError> {
        let pb = path.to_path_buf();
        if !path.exists() {
            return Err(NexusError::Open { path: pb, reason: "no such file".into() });
        }
        let file = hdf5::File::open(path).map_err(|e| NexusError::Open { path: pb.clone(), reason: e.to_string() })?;
        let missing = |what, paths: &[&str]| NexusError::Missing { path: pb.clone(), what, tried: paths.join(", ") };
        let (data_path, data) =
            find(&file, path::DATA_CANDIDATES).ok_or_else(|| missing("frame data", path::DATA_CANDIDATES))?;
        let (key_path, key_ds) =
            find(&file, path::IMAGE_KEY_CANDIDATES).ok_or_else(|| missing("image_key", path::IMAGE_KEY_CANDIDATES))?;
        let (angle_path, angle_ds) =
            find(&file, path::ANGLE_CANDIDATES).ok_or_else(|| missing("rotation_angle", path::ANGLE_CANDIDATES))?;
        let shape_err = |dataset: &str, reason: String| NexusError::Shape {
            path: pb.clone(),
            dataset: dataset.to_string(),
            reason,
        };
        let dims = data.shape();
        if dims.len() != 3 {
            return Err(shape_err(data_path, format!("expected 3 dimensions [frames][rows][cols], found {dims:?}")));
        }
        let shape = [dims[0], dims[1], dims[2]];
        let keys: Vec<i64> =
            key_ds.read_raw().map_err(|e| shape_err(key_path, format!("cannot read as integers: {e}")))?;
        let angles: Vec<f64> =
            angle_ds.read_raw().map_err(|e| shape_err(angle_path, format!("cannot read as numbers: {e}")))?;
        for (p, len) in [(key_path, keys.len()), (angle_path, angles.len())] {
            if len != shape[0] {
                return Err(shape_err(p, format!("has {len} entries but {data_path} has {} frames", shape[0])));
            }
        }
        Ok(NxTomoFile {
            path: pb,
            file,
            data,
            data_path,
            key_path,
            angle_path,
            shape,
            keys: keys.into_iter().map(ImageKey::from_stored).collect(),
            angles: angles.into_iter().map(Degrees).collect(),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The open HDF5 file.
    pub fn file(&self) -> &hdf5::File {
        &self.file
    }
    /// The frame dataset.
    pub fn data(&self) -> &Dataset {
        &self.data
    }
    /// Where the frames were found.
    pub fn data_path(&self) -> &'static str {
        self.data_path
    }
    /// Where the image keys were found.
    pub fn key_path(&self) -> &'static str {
        self.key_path
    }
    /// Where the rotation angles were found.
    pub fn angle_path(&self) -> &'static str {
        self.angle_path
    }
    /// `[frames, rows, cols]` of the frame dataset.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }
    /// Frames in the file (of every kind, invalid ones included).
    pub fn frames(&self) -> usize {
        self.shape[0]
    }
    /// The image key of every frame.
    pub fn image_keys(&self) -> &[ImageKey] {
        &self.keys
    }
    /// The rotation angle of every frame (NaN where the writer never got the frame).
    pub fn angles(&self) -> &[Degrees] {
        &self.angles
    }

    /// The pixel type of the frames, if it is one the wire protocol carries.
    pub fn dtype(&self) -> Result<Dtype, NexusError> {
        let bad =
            |reason: String| NexusError::Shape { path: self.path.clone(), dataset: self.data_path.into(), reason };
        let td = self.data.dtype().and_then(|t| t.to_descriptor()).map_err(|e| bad(format!("data type: {e}")))?;
        match td {
            TypeDescriptor::Unsigned(IntSize::U1) => Ok(Dtype::Uint8),
            TypeDescriptor::Unsigned(IntSize::U2) => Ok(Dtype::Uint16),
            TypeDescriptor::Unsigned(IntSize::U4) => Ok(Dtype::Uint32),
            TypeDescriptor::Float(FloatSize::U4) => Ok(Dtype::Float32),
            other => Err(bad(format!("data type {other:?} is not uint8/16/32 or float32"))),
        }
    }

    /// The per-frame acquisition times ([`path::FRAME_TIMESTAMP`]), `None` when the file has none (files
    /// from other writers); NaN where the writer never got the frame.
    pub fn timestamps(&self) -> Result<Option<Vec<f64>>, NexusError> {
        if !self.file.link_exists(path::FRAME_TIMESTAMP) {
            return Ok(None);
        }
        let bad = |reason: String| NexusError::Shape {
            path: self.path.clone(),
            dataset: path::FRAME_TIMESTAMP.into(),
            reason,
        };
        let t: Vec<f64> = self
            .file
            .dataset(path::FRAME_TIMESTAMP)
            .and_then(|d| d.read_raw())
            .map_err(|e| bad(format!("cannot read as numbers: {e}")))?;
        if t.len() != self.shape[0] {
            return Err(bad(format!("has {} entries but {} has {} frames", t.len(), self.data_path, self.shape[0])));
        }
        Ok(Some(t))
    }

    /// A string dataset of the acquisition bookkeeping (`name` from [`acq`], e.g. [`acq::STATUS`]),
    /// `None` when absent (files from other writers).
    pub fn acquisition_str(&self, name: &str) -> Option<String> {
        let ds = self.file.dataset(&format!("{}/{name}", path::ACQUISITION)).ok()?;
        ds.read_scalar::<VarLenUnicode>().ok().map(|s| s.as_str().to_string())
    }

    /// An integer dataset of the acquisition bookkeeping (e.g. [`acq::FRAMES_RECEIVED`]), `None` when absent.
    pub fn acquisition_u64(&self, name: &str) -> Option<u64> {
        let ds = self.file.dataset(&format!("{}/{name}", path::ACQUISITION)).ok()?;
        ds.read_scalar::<u64>().ok()
    }

    /// The status the receiver recorded ([`acq::STATUS`]).
    pub fn status(&self) -> Option<String> {
        self.acquisition_str(acq::STATUS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_key_codes_are_nxtomos() {
        for k in [ImageKey::Projection, ImageKey::Flat, ImageKey::Dark, ImageKey::Invalid] {
            assert_eq!(ImageKey::from_code(i64::from(k.code())), Some(k));
        }
        assert_eq!(ImageKey::Invalid.code(), 3);
        assert_eq!(ImageKey::from_code(4), None);
        assert_eq!(ImageKey::from_stored(-1), ImageKey::Invalid);
        assert!(!ImageKey::Invalid.is_valid() && ImageKey::Dark.is_valid());
    }

    #[test]
    fn path_parts() {
        assert_eq!(path::leaf(path::FRAME_TIMESTAMP), "frame_timestamp");
        assert_eq!(path::parent(path::FRAME_TIMESTAMP), path::DETECTOR);
        assert_eq!(path::parent(path::ENTRY), "/");
        assert_eq!(FrameIndex::from(7usize).as_usize(), 7);
    }
}
