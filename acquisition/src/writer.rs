//! The NXtomo HDF5 writer: one file per series, frames written as they arrived (already compressed chunks go
//! straight to disk with `H5Dwrite_chunk`), periodic flushes so a killed receiver leaves a readable file.
//!
//! Layout (see `PROTOCOL.md` for the full list):
//! `/entry` NXentry (`definition` = "NXtomo", `title`, `start_time`, `end_time`, `program_name`),
//! `/entry/instrument/detector` NXdetector (`data` [n, rows, cols] one frame per chunk, `image_key`,
//! `frame_timestamp`), `/entry/sample` NXsample (`rotation_angle` in degrees), `/entry/data` NXdata (hard links to
//! data, rotation_angle, image_key), `/entry/acquisition` NXcollection (provenance, counts, missing frames).
//!
//! The paths are [`crate::nexus::path`]'s. All HDF5 calls of a writer happen on the thread that owns it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use hdf5::{Dataset, File, Group, H5Type};

use crate::direct::WriteIo;
use crate::nexus::{acq, attr_str, class, nx_group, path as nx, string_dataset as dataset_str, varlen, ImageKey};
use crate::protocol::{
    Compression, Compressor, Dtype, FrameHeader, FrameIndex, SeriesEnd, SeriesStart, SeriesStatus, Share, Shuffle,
    PROTOCOL_VERSION,
};
use crate::reject::Rejections;
use crate::timefmt::rfc3339;

/// Errors while writing a file.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// An HDF5 call failed.
    #[error("HDF5 {what} in {path}: {cause}. Check that the disk is not full and the folder is writable")]
    Hdf5 {
        /// What was being done.
        what: String,
        /// The file.
        path: PathBuf,
        /// The HDF5 error.
        cause: hdf5::Error,
    },
    /// The disk holding the file has no room for the next frame.
    #[error(
        "disk full: {path} is on a file system with {free} bytes free, frame {index} needs {needed} (with \
         {reserve} bytes kept for closing the file). The file was closed with status `failed: disk full`; \
         frames written before are intact. Free space or choose another --output / --output-dir"
    )]
    DiskFull {
        /// The file.
        path: PathBuf,
        /// Bytes free on its file system (for an unprivileged process).
        free: u64,
        /// The frame that did not fit.
        index: FrameIndex,
        /// Its payload size.
        needed: u64,
        /// Bytes kept free for the metadata written when the file is closed.
        reserve: u64,
    },
    /// The file cannot be reopened to resume its series.
    #[error("cannot resume {path}: {why}")]
    Resume {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// Writing a frame's chunk failed.
    #[error(
        "writing frame {index} ({bytes} bytes) to {path} failed (OS says: {os}). \
         Check that the disk is not full and the file is writable; frames flushed before are intact"
    )]
    Chunk {
        /// The frame.
        index: FrameIndex,
        /// Payload size.
        bytes: usize,
        /// The file.
        path: PathBuf,
        /// The last OS error seen.
        os: std::io::Error,
    },
}

/// Who wrote the file and how: stored as provenance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Provenance {
    /// The receiver's command line.
    pub command_line: String,
    /// `beamline x.y.z`.
    pub software: String,
}

/// What a finished (or interrupted) series file holds.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSummary {
    /// Series id.
    pub series: String,
    /// The file.
    pub path: PathBuf,
    /// Frames the series start declared.
    pub expected: u64,
    /// Frames written.
    pub received: u64,
    /// Messages rejected while this series was open.
    pub rejected: Rejections,
    /// Indices never received although the sender sent them (lost frames).
    pub missing: Vec<FrameIndex>,
    /// Indices not received because the sender never sent them to this writer: the series end declared
    /// fewer frames sent than the series holds, every one of them arrived, and the status is `complete`, so
    /// this file is a complete *share* of a fanned-out series (the other frames belong to other writers).
    pub not_sent: Vec<FrameIndex>,
    /// Frames the sender said it sent (`None` when no series end arrived).
    pub frames_sent: Option<u64>,
    /// Status from the series end (`None` when no series end arrived).
    pub status: Option<SeriesStatus>,
    /// Time from creating the file to closing it.
    pub duration: Duration,
    /// Payload bytes written (compressed size for blosc series).
    pub bytes_written: u64,
    /// Frames the receiver dropped because its queue was full (`--on-full drop`); also in `missing`.
    pub dropped: Vec<FrameIndex>,
    /// Time the receive thread waited for queue space while this series was open (`--on-full block`).
    pub blocked: Duration,
    /// Why the series was closed as abandoned (a new series started while this one had no frame for too
    /// long), `None` otherwise.
    pub abandoned: Option<String>,
}

/// What the receiver knows about a series beyond the sender's series end, written when the file is closed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Closing {
    /// Messages rejected while the series was open.
    pub rejected: Rejections,
    /// The series end's `metadata`, exactly as its bytes arrived (stored instead of a re-serialised copy).
    pub end_metadata_verbatim: Option<String>,
    /// Frames dropped because the queue was full.
    pub dropped: Vec<FrameIndex>,
    /// Time the receive thread waited for queue space.
    pub blocked: Duration,
    /// Set when the series is closed as abandoned: why (stored in `status` as `abandoned (...)`).
    pub abandoned: Option<String>,
}

/// One open NXtomo file.
pub struct NxtomoWriter {
    path: PathBuf,
    series: String,
    file: File,
    data: Dataset,
    image_key: Dataset,
    angle: Dataset,
    timestamp: Dataset,
    acquisition: Group,
    share: Option<Share>,
    keys: Vec<i32>,
    angles: Vec<f64>,
    times: Vec<f64>,
    /// Chunks of the per-frame vectors changed since the last flush.
    dirty_chunks: std::collections::BTreeSet<usize>,
    received: u64,
    dirty: bool,
    last_flush: Instant,
    created: Instant,
    bytes: u64,
    /// Payload bytes written at the last flush.
    bytes_at_flush: u64,
    /// Flush once this many payload bytes were written since the last flush (half the sender's replay
    /// buffer), whatever the interval.
    flush_bytes: Option<u64>,
    /// Bytes the file driver may hold that the kernel has not been given ([`crate::direct::window_bytes`]).
    window_bytes: u64,
}

/// Half the sender's replay buffer, when it declared one: written since the last flush, it makes a flush.
fn flush_bytes_for(start: &SeriesStart) -> Option<u64> {
    start.replay_buffer_bytes.map(|b| (b / 2).max(1))
}

/// The code the writer stores for frames not (yet) received.
const INVALID: i32 = ImageKey::Invalid.code() as i32;

fn set_str(g: &Group, name: &str, value: &str) -> hdf5::Result<()> {
    match g.dataset(name) {
        Ok(ds) => ds.write_scalar(&varlen(value)),
        Err(_) => dataset_str(g, name, value).map(|_| ()),
    }
}

fn set_u64(g: &Group, name: &str, value: u64) -> hdf5::Result<()> {
    let ds = match g.dataset(name) {
        Ok(ds) => ds,
        Err(_) => g.new_dataset::<u64>().create(name)?,
    };
    ds.write_scalar(&value)
}

// --- stream v2 seam: a chunk filter chosen by the caller (begin) ---
/// An HDF5 filter the frame chunks are already encoded with (for example Bitshuffle/LZ4, id 32008, from a
/// DECTRIS stream v2 detector). The writer declares it on the dataset and writes the chunks as they are; it
/// never runs the filter itself. Used instead of the series start's compression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkFilter {
    /// HDF5 filter id (32008 Bitshuffle, 32004 LZ4).
    pub id: i32,
    /// The filter's `cd_values`.
    pub cd_values: Vec<u32>,
}

/// A dataset creation property list declaring `f` as an optional filter, set with `H5Pset_filter` directly:
/// hdf5-metno's builder refuses filters this process has not registered, but the chunks arrive encoded and
/// are written with `H5Dwrite_chunk`, so the filter is only needed by readers (h5py + hdf5plugin).
fn filter_plist(f: &ChunkFilter) -> hdf5::Result<hdf5::plist::DatasetCreate> {
    let dcpl = hdf5::plist::DatasetCreate::try_new()?;
    let id = dcpl.id();
    // SAFETY: `id` is a live dataset creation property list; `cd_values` is valid for its length.
    let rc = hdf5::sync::sync(|| unsafe {
        hdf5_sys::h5p::H5Pset_filter(
            id,
            f.id,
            hdf5_sys::h5z::H5Z_FLAG_OPTIONAL,
            f.cd_values.len(),
            f.cd_values.as_ptr(),
        )
    });
    if rc < 0 {
        return Err(hdf5::Error::from(format!("H5Pset_filter({}) failed", f.id)));
    }
    Ok(dcpl)
}
// --- stream v2 seam (end) ---

fn create_data<T: H5Type>(det: &Group, start: &SeriesStart, filter: Option<&ChunkFilter>) -> hdf5::Result<Dataset> {
    use hdf5::filters::{Blosc, BloscShuffle};
    let shape = [start.frames as usize, start.shape.rows(), start.shape.cols()];
    let b = det.new_dataset::<T>().shape(shape).chunk([1, shape[1], shape[2]]);
    let b = match (filter, start.compression) {
        (Some(f), _) => b.set_dcpl(&filter_plist(f)?),
        (None, Compression::None) => b,
        (None, Compression::Blosc1(p)) => {
            let lib = match p.compressor {
                Compressor::Blosclz => Blosc::BloscLZ,
                Compressor::Lz4 => Blosc::LZ4,
                Compressor::Lz4hc => Blosc::LZ4HC,
            };
            let shuffle = match p.shuffle {
                Shuffle::None => BloscShuffle::None,
                Shuffle::Byte => BloscShuffle::Byte,
                Shuffle::Bit => BloscShuffle::Bit,
            };
            b.blosc(lib, p.clevel, shuffle)
        }
    };
    b.create(nx::leaf(nx::DATA))
}

/// Elements per chunk of the per-frame vectors.
const VECTOR_CHUNK: usize = 4096;

/// A per-frame vector of `n` elements, chunked, reading as `fill` where nothing was written: only the chunks
/// holding a received frame take disk space, so a series start declaring many frames costs nothing until
/// its frames arrive.
fn vector<T: H5Type + Copy>(g: &Group, name: &str, n: usize, fill: T) -> hdf5::Result<Dataset> {
    g.new_dataset::<T>().shape([n]).chunk([VECTOR_CHUNK.min(n).max(1)]).fill_value(fill).create(name)
}

/// Test-only hook: `BEAMLINE_TEST_ABORT_AFTER_KEYS=N` aborts the process in its Nth [`NxtomoWriter::flush`],
/// right after the image keys reached the file and before the rest of that flush (a receiver killed inside a
/// flush, for the resume test). Read once.
fn abort_if_asked_after_keys() {
    static AT: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    static FLUSHES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let Some(at) = *AT.get_or_init(|| std::env::var("BEAMLINE_TEST_ABORT_AFTER_KEYS").ok()?.parse().ok()) else {
        return;
    };
    if FLUSHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1 == at {
        std::process::abort();
    }
}

/// Writes the chunks of `data` named in `chunks` to `ds` (a vector made by [`vector`]).
fn write_chunks<T: H5Type + Copy>(
    ds: &Dataset,
    data: &[T],
    chunks: &std::collections::BTreeSet<usize>,
) -> hdf5::Result<()> {
    for &c in chunks {
        let a = c * VECTOR_CHUNK;
        let b = (a + VECTOR_CHUNK).min(data.len());
        if a < b {
            ds.write_slice(&data[a..b], a..b)?;
        }
    }
    Ok(())
}

/// Writes `indices` as a 1-D u64 dataset `name` in `g` (empty when there are none).
/// Long lists are chunked and compressed (shuffle + deflate, HDF5 built-in filters) when the library has
/// deflate: a series start declaring a million frames that never come must not cost 8 MB of indices.
fn index_list(g: &Group, name: &str, indices: &[FrameIndex]) -> hdf5::Result<()> {
    let raw: Vec<u64> = indices.iter().map(|m| m.0).collect();
    let b = g.new_dataset::<u64>().shape([raw.len()]);
    let ds = if raw.len() > VECTOR_CHUNK && hdf5::filters::deflate_available() {
        b.chunk([VECTOR_CHUNK * 16]).shuffle().deflate(4).create(name)?
    } else {
        b.create(name)?
    };
    if !raw.is_empty() {
        ds.write(&raw)?;
    }
    Ok(())
}

/// Whether a series of `expected` frames, of which `received` were written, is a complete share of a
/// fanned-out series: its start declared a share, its end says `complete` (or no status), fewer frames were
/// sent than the series holds, every frame sent arrived and nothing was rejected (a rejected message may
/// have been one of the share's frames). Frames the sender never sent are then not lost. A sender that
/// declared no share and skipped indices is not a share: the frames it skipped are missing.
fn is_complete_share(
    share: Option<Share>,
    end: Option<&SeriesEnd>,
    expected: u64,
    received: u64,
    rejected: &Rejections,
) -> bool {
    share.is_some()
        && end.is_some_and(|e| {
            matches!(e.status.unwrap_or(SeriesStatus::Complete), SeriesStatus::Complete)
                && e.frames_sent < expected
                && received == e.frames_sent
                && rejected.total() == 0
        })
}

/// Marks the file descriptor HDF5 holds for `file` close-on-exec.
///
/// HDF5's sec2 driver opens files without `O_CLOEXEC`, and it holds an exclusive `flock` on a file open for
/// writing. A child process started while the file is open (a test's h5py, any program the embedding process
/// runs) would inherit the descriptor, and with it the lock, after this process has closed the file: the next
/// open of the file (appending the scan table, h5py reading it) then fails with "unable to lock file". Called
/// right after each create or read-write open, so only a fork in the instant between the two can inherit it.
pub(crate) fn close_on_exec(file: &File) -> hdf5::Result<()> {
    let mut handle: *mut std::ffi::c_void = std::ptr::null_mut();
    // SAFETY: `file` is a valid open file id; HDF5 writes a pointer to its handle into `handle`.
    let rc = hdf5::sync::sync(|| unsafe {
        hdf5_sys::h5f::H5Fget_vfd_handle(file.id(), hdf5_sys::h5p::H5P_DEFAULT, &mut handle)
    });
    if rc < 0 || handle.is_null() {
        return Err(hdf5::Error::from("cannot get the file's descriptor (H5Fget_vfd_handle)"));
    }
    // SAFETY: with sec2 and with `beamline_direct` (both POSIX-compatible handles) the handle points to the
    // `int` file descriptor, valid while the file is open; fcntl on it only changes its descriptor flags.
    let fd = unsafe { *(handle as *const libc::c_int) };
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(hdf5::Error::from(format!("fcntl(FD_CLOEXEC): {}", std::io::Error::last_os_error()).as_str()));
    }
    Ok(())
}

impl NxtomoWriter {
    /// Creates (or truncates) `path` and lays out the NXtomo tree for `start`; frame chunks are written past
    /// the page cache where the file system allows it ([`WriteIo::Direct`]).
    pub fn create(path: &Path, start: &SeriesStart, prov: &Provenance) -> Result<NxtomoWriter, WriteError> {
        NxtomoWriter::create_with(path, start, prov, None, WriteIo::Direct)
    }

    /// As [`NxtomoWriter::create`], but the frame chunks arrive already encoded with `filter` (when given),
    /// which the data set declares instead of the series start's compression, and reach the disk as `io` says.
    pub fn create_with(
        path: &Path,
        start: &SeriesStart,
        prov: &Provenance,
        filter: Option<&ChunkFilter>,
        io: WriteIo,
    ) -> Result<NxtomoWriter, WriteError> {
        let err = |what: &str| {
            let what = what.to_string();
            move |source| WriteError::Hdf5 { what, path: path.to_path_buf(), cause: source }
        };
        let _s = tracing::debug_span!("hdf5.create", path = %path.display()).entered();
        let file = crate::direct::open_for_writing(path, true, io).map_err(err("create file"))?;
        close_on_exec(&file).map_err(err("create file"))?;
        let n = start.frames as usize;
        let build = || -> hdf5::Result<NxtomoWriter> {
            let leaf = nx::leaf;
            let entry = nx_group(&file, nx::ENTRY, class::ENTRY)?;
            dataset_str(&entry, leaf(nx::DEFINITION), class::TOMO)?;
            dataset_str(&entry, leaf(nx::TITLE), &start.series)?;
            dataset_str(&entry, leaf(nx::START_TIME), &rfc3339(SystemTime::now()))?;
            let prog = dataset_str(&entry, leaf(nx::PROGRAM_NAME), &prov.software)?;
            attr_str(&prog, "version", env!("CARGO_PKG_VERSION"))?;
            attr_str(&prog, "configuration", &prov.command_line)?;
            nx_group(&file, nx::INSTRUMENT, class::INSTRUMENT)?;
            let det = nx_group(&file, nx::DETECTOR, class::DETECTOR)?;
            let data = match start.dtype {
                Dtype::Uint8 => create_data::<u8>(&det, start, filter)?,
                Dtype::Uint16 => create_data::<u16>(&det, start, filter)?,
                Dtype::Uint32 => create_data::<u32>(&det, start, filter)?,
                Dtype::Float32 => create_data::<f32>(&det, start, filter)?,
            };
            attr_str(&data, "units", "counts")?;
            attr_str(&data, "interpretation", "image")?;
            let keys = vec![INVALID; n];
            let image_key = vector(&det, leaf(nx::IMAGE_KEY), n, INVALID)?;
            attr_str(&image_key, "description", "0 projection, 1 flat, 2 dark, 3 invalid (frame not received)")?;
            let times = vec![f64::NAN; n];
            let timestamp = vector(&det, leaf(nx::FRAME_TIMESTAMP), n, f64::NAN)?;
            attr_str(&timestamp, "units", "s")?;
            attr_str(&timestamp, "description", "frame acquisition time, seconds since 1970-01-01T00:00:00Z")?;
            // Issue 15 §2: energy, distance and pixel size from the series start, in the NXtomo places.
            crate::nexus::Physics::from_metadata(&start.metadata).write(&file)?;
            let sample = nx_group(&file, nx::SAMPLE, class::SAMPLE)?;
            dataset_str(&sample, leaf(nx::SAMPLE_NAME), &start.series)?;
            let angle = vector(&sample, leaf(nx::ROTATION_ANGLE), n, f64::NAN)?;
            attr_str(&angle, "units", "degree")?;
            let nxdata = nx_group(&file, nx::NXDATA, class::DATA)?;
            attr_str(&nxdata, "signal", leaf(nx::NXDATA_DATA))?;
            nxdata.link_hard(nx::DATA, leaf(nx::NXDATA_DATA))?;
            nxdata.link_hard(nx::IMAGE_KEY, leaf(nx::NXDATA_IMAGE_KEY))?;
            nxdata.link_hard(nx::ROTATION_ANGLE, leaf(nx::NXDATA_ROTATION_ANGLE))?;
            let acq = nx_group(&file, nx::ACQUISITION, class::COLLECTION)?;
            set_u64(&acq, acq::PROTOCOL_VERSION, PROTOCOL_VERSION as u64)?;
            dataset_str(&acq, acq::SERIES_ID, &start.series)?;
            dataset_str(&acq, acq::SOFTWARE, &prov.software)?;
            dataset_str(&acq, acq::COMMAND_LINE, &prov.command_line)?;
            dataset_str(&acq, acq::SERIES_START, &serde_json::to_string(start).unwrap_or_default())?;
            dataset_str(&acq, acq::SERIES_METADATA, &start.metadata.to_string())?;
            set_u64(&acq, acq::FRAMES_EXPECTED, start.frames)?;
            set_u64(&acq, acq::FRAMES_RECEIVED, 0)?;
            dataset_str(&acq, acq::STATUS, "receiving")?;
            file.flush()?;
            Ok(NxtomoWriter {
                path: path.to_path_buf(),
                series: start.series.clone(),
                file: file.clone(),
                data,
                image_key,
                angle,
                timestamp,
                acquisition: acq,
                share: start.share,
                angles: times.clone(),
                times,
                keys,
                dirty_chunks: Default::default(),
                received: 0,
                dirty: false,
                last_flush: Instant::now(),
                created: Instant::now(),
                bytes: 0,
                bytes_at_flush: 0,
                flush_bytes: flush_bytes_for(start),
                window_bytes: crate::direct::window_bytes(&file),
            })
        };
        build().map_err(err("lay out the NXtomo tree"))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open HDF5 file, for callers that add metadata of their own (stream v2 detector fields).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Writes one frame's payload (a blosc1 chunk, or raw pixels for an uncompressed series) as the chunk of
    /// its index. The payload must already have been validated against the series.
    pub fn write_frame(&mut self, h: &FrameHeader, payload: &[u8]) -> Result<(), WriteError> {
        let i = h.index.0 as usize;
        let _s = tracing::trace_span!("hdf5.write_chunk", frame = h.index.0, bytes = payload.len()).entered();
        if let Some(d) = injected_write_delay() {
            std::thread::sleep(d);
        }
        let offset: [u64; 3] = [h.index.0, 0, 0];
        let id = self.data.id();
        // SAFETY: `offset` has the dataset's rank, `payload` is valid for its length; HDF5 copies the bytes.
        let rc = hdf5::sync::sync(|| unsafe {
            hdf5_sys::h5d::H5Dwrite_chunk(
                id,
                hdf5_sys::h5p::H5P_DEFAULT,
                0,
                offset.as_ptr(),
                payload.len(),
                payload.as_ptr().cast(),
            )
        });
        if rc < 0 {
            let os = std::io::Error::last_os_error();
            if os.raw_os_error() == Some(libc::ENOSPC) {
                return Err(WriteError::DiskFull {
                    path: self.path.clone(),
                    free: free_bytes(&self.path).unwrap_or(0),
                    index: h.index,
                    needed: payload.len() as u64,
                    reserve: 0,
                });
            }
            return Err(WriteError::Chunk { index: h.index, bytes: payload.len(), path: self.path.clone(), os });
        }
        if let (Some(k), Some(a), Some(t)) = (self.keys.get_mut(i), self.angles.get_mut(i), self.times.get_mut(i)) {
            *k = h.image_key.code() as i32;
            *a = h.angle.0;
            *t = h.timestamp;
            self.dirty_chunks.insert(i / VECTOR_CHUNK);
        }
        self.received += 1;
        self.bytes += payload.len() as u64;
        self.dirty = true;
        Ok(())
    }

    /// Whether `path` holds a series a receiver never closed, one [`NxtomoWriter::reopen`] can resume: its
    /// `status` is `receiving` (the receiver was killed) or `incomplete ...` (it was stopped). Returns the
    /// status when it does, `None` for a closed series; an error when the file is not one of ours.
    pub fn unclosed_status(path: &Path) -> Result<Option<String>, WriteError> {
        let err = |what: &str| {
            let what = what.to_string();
            move |source| WriteError::Hdf5 { what, path: path.to_path_buf(), cause: source }
        };
        let file = File::open(path).map_err(err("open file"))?;
        let status = file
            .dataset(&format!("{}/{}", nx::ACQUISITION, acq::STATUS))
            .and_then(|d| d.read_scalar::<hdf5::types::VarLenUnicode>())
            .map_err(err("read /entry/acquisition/status"))?;
        let status = status.as_str();
        Ok((status == "receiving" || status.starts_with("incomplete")).then(|| status.to_string()))
    }

    /// Reopens `path`, a file this writer created for a series that was never closed (its status is still
    /// `receiving`: the receiver was killed), to go on writing it. Returns the writer and the series start
    /// stored in the file; every frame whose `image_key` in the file is not 3 counts as held. Its chunks from
    /// now on reach the disk as `io` says.
    pub fn reopen(path: &Path, io: WriteIo) -> Result<(NxtomoWriter, SeriesStart), WriteError> {
        let err = |what: &str| {
            let what = what.to_string();
            move |source| WriteError::Hdf5 { what, path: path.to_path_buf(), cause: source }
        };
        let resume = |why: String| WriteError::Resume { path: path.to_path_buf(), why };
        let _s = tracing::debug_span!("hdf5.reopen", path = %path.display()).entered();
        let file = crate::direct::open_for_writing(path, false, io).map_err(err("reopen file"))?;
        close_on_exec(&file).map_err(err("reopen file"))?;
        let acq = file.group(nx::ACQUISITION).map_err(err("open /entry/acquisition"))?;
        let read_str = |name: &str| -> Result<String, WriteError> {
            let ds = acq.dataset(name).map_err(err(name))?;
            let v = ds.read_scalar::<hdf5::types::VarLenUnicode>().map_err(err(name))?;
            Ok(v.as_str().to_string())
        };
        let status = read_str(acq::STATUS)?;
        // `receiving`: the receiver was killed; `incomplete ...`: it was stopped before the series end.
        if status != "receiving" && !status.starts_with("incomplete") {
            return Err(resume(format!(
                "its series is already closed (status `{status}`): nothing to resume. Choose another --output"
            )));
        }
        let start: SeriesStart = serde_json::from_str(&read_str(acq::SERIES_START)?)
            .map_err(|e| resume(format!("its stored series start does not decode ({e})")))?;
        start.validate().map_err(|e| resume(format!("its stored series start is invalid ({e})")))?;
        let build = || -> hdf5::Result<NxtomoWriter> {
            let data = file.dataset(nx::DATA)?;
            let image_key = file.dataset(nx::IMAGE_KEY)?;
            let angle = file.dataset(nx::ROTATION_ANGLE)?;
            let timestamp = file.dataset(nx::FRAME_TIMESTAMP)?;
            let keys: Vec<i32> = image_key.read_raw()?;
            let angles: Vec<f64> = angle.read_raw()?;
            let times: Vec<f64> = timestamp.read_raw()?;
            let n = start.frames as usize;
            if keys.len() != n || angles.len() != n || times.len() != n {
                return Err(hdf5::Error::from("per-frame vectors do not have the series' length"));
            }
            let received = keys.iter().filter(|k| **k != INVALID).count() as u64;
            Ok(NxtomoWriter {
                path: path.to_path_buf(),
                series: start.series.clone(),
                file: file.clone(),
                data,
                image_key,
                angle,
                timestamp,
                acquisition: acq.clone(),
                keys,
                angles,
                times,
                dirty_chunks: Default::default(),
                received,
                dirty: false,
                last_flush: Instant::now(),
                created: Instant::now(),
                bytes: 0,
                bytes_at_flush: 0,
                flush_bytes: flush_bytes_for(&start),
                window_bytes: crate::direct::window_bytes(&file),
                share: start.share,
            })
        };
        let w = build().map_err(err("read the NXtomo tree to resume"))?;
        // Back to receiving: what closing the file wrote (lists of missing frames) is written again at the end.
        let reset = || -> hdf5::Result<()> {
            for name in [acq::MISSING_FRAMES, acq::NOT_SENT_FRAMES] {
                if acq.link_exists(name) {
                    acq.unlink(name)?;
                }
            }
            set_str(&acq, acq::STATUS, "receiving")?;
            file.flush()
        };
        reset().map_err(err("mark the file as receiving again"))?;
        tracing::info!(path = %path.display(), held = w.received, frames = start.frames, "reopened to resume");
        Ok((w, start))
    }

    /// Indices of the frames held (written, with an `image_key` other than 3 in memory).
    pub fn held(&self) -> impl Iterator<Item = u64> + '_ {
        self.keys.iter().enumerate().filter(|(_, k)| **k != INVALID).map(|(i, _)| i as u64)
    }

    /// True when frames were written since the last flush.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Fails with [`WriteError::DiskFull`] when the file system holding the file has less than `bytes`
    /// plus a reserve for closing the file free (checked before each frame: a frame that does not fit is not
    /// started, so the file stays consistent and can still be closed). The reserve includes the bytes the
    /// file driver may hold in memory ([`crate::direct::window_bytes`]).
    pub fn check_space(&self, index: FrameIndex, bytes: u64) -> Result<(), WriteError> {
        let Some(free) = free_bytes(&self.path) else { return Ok(()) };
        let reserve = CLOSE_RESERVE + (self.keys.len() as u64) * 8 + self.window_bytes;
        if free < bytes.saturating_add(reserve) {
            return Err(WriteError::DiskFull { path: self.path.clone(), free, index, needed: bytes, reserve });
        }
        Ok(())
    }

    /// Flushes when `interval` has passed since the last flush and something was written, or when half the
    /// sender's replay buffer (`replay_buffer_bytes` of the series start) was written since the last flush.
    pub fn maybe_flush(&mut self, interval: Duration) -> Result<(), WriteError> {
        let by_bytes = self.flush_bytes.is_some_and(|b| self.bytes - self.bytes_at_flush >= b);
        if self.dirty && (by_bytes || self.last_flush.elapsed() >= interval) {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the per-frame vectors and flushes the file: every frame whose `image_key` is not 3 in the file
    /// is then on disk, even if the process is killed afterwards.
    ///
    /// In two steps, because the image keys are what a resumed receiver trusts ([`NxtomoWriter::reopen`]):
    /// first the angles, the timestamps and the whole file (the frame chunks were written as they came; this
    /// puts the data set's chunk index, which HDF5 keeps in memory until a flush, in the file), then the keys.
    /// A process killed anywhere in between leaves the keys of the previous flush, so a frame is never marked
    /// held while the file cannot read it back.
    pub fn flush(&mut self) -> Result<(), WriteError> {
        let _s = tracing::debug_span!("hdf5.flush", frames = self.received).entered();
        let r = (|| -> hdf5::Result<()> {
            write_chunks(&self.angle, &self.angles, &self.dirty_chunks)?;
            write_chunks(&self.timestamp, &self.times, &self.dirty_chunks)?;
            self.file.flush()?;
            write_chunks(&self.image_key, &self.keys, &self.dirty_chunks)?;
            self.image_key.flush()?;
            abort_if_asked_after_keys();
            set_u64(&self.acquisition, acq::FRAMES_RECEIVED, self.received)?;
            self.file.flush()
        })();
        r.map_err(|source| WriteError::Hdf5 { what: "flush".into(), path: self.path.clone(), cause: source })?;
        self.dirty = false;
        self.dirty_chunks.clear();
        self.last_flush = Instant::now();
        self.bytes_at_flush = self.bytes;
        Ok(())
    }

    /// Replaces the stored series start message and its metadata by the bytes exactly as they arrived
    /// (`series_start` and `series_metadata`; [`NxtomoWriter::create`] stores a serialisation of the parsed
    /// start). `metadata` is the start's `metadata` member as sent, `None` when it had none.
    pub fn store_start_verbatim(&mut self, start_json: &str, metadata: Option<&str>) -> Result<(), WriteError> {
        let r = (|| -> hdf5::Result<()> {
            set_str(&self.acquisition, acq::SERIES_START, start_json)?;
            set_str(&self.acquisition, acq::SERIES_METADATA, metadata.unwrap_or("{}"))?;
            self.file.flush()
        })();
        r.map_err(|source| WriteError::Hdf5 {
            what: "store series start".into(),
            path: self.path.clone(),
            cause: source,
        })
    }

    /// Writes the end of the series (status, end time, counts, missing frames, final metadata) and closes
    /// the file. `end` is `None` when the receiver stopped before the series end arrived.
    pub fn finish(self, end: Option<&SeriesEnd>, rejected: Rejections) -> Result<SeriesSummary, WriteError> {
        self.finish_with(end, Closing { rejected, ..Closing::default() })
    }

    /// Closes the file after a failure that ends the series (disk full): status `status` (e.g.
    /// `failed: disk full`), every frame not written listed as missing, frames written before intact.
    pub fn finish_failed(self, status: &str, rejected: Rejections) -> Result<SeriesSummary, WriteError> {
        self.finish_inner(None, Closing { rejected, ..Closing::default() }, Some(status))
    }

    /// As [`NxtomoWriter::finish`], with what the receiver knows besides the series end: rejections, the
    /// end metadata as sent, frames dropped on a full queue, time blocked, abandonment.
    pub fn finish_with(self, end: Option<&SeriesEnd>, closing: Closing) -> Result<SeriesSummary, WriteError> {
        self.finish_inner(end, closing, None)
    }

    fn finish_inner(
        mut self,
        end: Option<&SeriesEnd>,
        closing: Closing,
        failed: Option<&str>,
    ) -> Result<SeriesSummary, WriteError> {
        self.flush()?;
        let Closing { rejected, end_metadata_verbatim, dropped, blocked, abandoned } = closing;
        let absent: Vec<FrameIndex> =
            self.keys.iter().enumerate().filter(|(_, k)| **k == INVALID).map(|(i, _)| FrameIndex(i as u64)).collect();
        let status = end.map(|e| e.status.unwrap_or(SeriesStatus::Complete));
        let share = is_complete_share(self.share, end, self.keys.len() as u64, self.received, &rejected);
        let (missing, not_sent) = if share { (Vec::new(), absent) } else { (absent, Vec::new()) };
        let group = self.acquisition.clone();
        let r = (|| -> hdf5::Result<()> {
            let acq = &group;
            index_list(acq, acq::MISSING_FRAMES, &missing)?;
            set_u64(acq, acq::FRAMES_MISSING, missing.len() as u64)?;
            index_list(acq, acq::NOT_SENT_FRAMES, &not_sent)?;
            set_u64(acq, acq::FRAMES_NOT_SENT, not_sent.len() as u64)?;
            set_u64(acq, acq::FRAMES_REJECTED, rejected.total())?;
            set_str(acq, acq::REJECTED_BY_REASON, &rejected.to_json().to_string())?;
            index_list(acq, acq::DROPPED_FRAMES, &dropped)?;
            set_u64(acq, acq::FRAMES_DROPPED, dropped.len() as u64)?;
            acq.new_dataset::<f64>().create(acq::QUEUE_BLOCKED_SECONDS)?.write_scalar(&blocked.as_secs_f64())?;
            let status = match (failed, status, &abandoned) {
                (Some(f), _, _) => f.to_string(),
                (None, Some(s), _) => s.as_str().to_string(),
                (None, None, Some(why)) => format!("abandoned ({why})"),
                (None, None, None) => "incomplete (receiver stopped before series end)".to_string(),
            };
            set_str(acq, acq::STATUS, &status)?;
            if let Some(e) = end {
                set_u64(acq, acq::FRAMES_SENT, e.frames_sent)?;
                match (&end_metadata_verbatim, &e.metadata) {
                    (Some(raw), _) => set_str(acq, acq::END_METADATA, raw)?,
                    (None, Some(m)) => set_str(acq, acq::END_METADATA, &m.to_string())?,
                    (None, None) => {}
                }
            }
            let entry = self.file.group(nx::ENTRY)?;
            set_str(&entry, nx::leaf(nx::END_TIME), &rfc3339(SystemTime::now()))?;
            self.file.flush()
        })();
        r.map_err(|source| WriteError::Hdf5 { what: "finish".into(), path: self.path.clone(), cause: source })?;
        Ok(SeriesSummary {
            series: self.series.clone(),
            path: self.path.clone(),
            expected: self.keys.len() as u64,
            received: self.received,
            rejected,
            missing,
            not_sent,
            frames_sent: end.map(|e| e.frames_sent),
            status,
            duration: self.created.elapsed(),
            bytes_written: self.bytes,
            dropped,
            blocked,
            abandoned,
        })
    }
}

/// Bytes kept free when deciding whether a frame fits: room for the metadata written when the file is
/// closed (status, counts, missing list, end time), plus 8 bytes per declared frame for the missing list.
pub const CLOSE_RESERVE: u64 = 256 << 10;

/// Bytes free for an unprivileged process on the file system holding `path` (`None` when unknown).
pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path, `st` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Test-only hook: `BEAMLINE_TEST_WRITE_DELAY_MS=N` makes every chunk write sleep N ms inside its
/// `hdf5.write_chunk` span (a slow disk, for the timeline's bottleneck tests). Read once per process.
fn injected_write_delay() -> Option<std::time::Duration> {
    static DELAY: std::sync::OnceLock<Option<std::time::Duration>> = std::sync::OnceLock::new();
    *DELAY.get_or_init(|| {
        let ms: u64 = std::env::var("BEAMLINE_TEST_WRITE_DELAY_MS").ok()?.parse().ok()?;
        (ms > 0).then(|| std::time::Duration::from_millis(ms))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Degrees, ImageKey, Shape};
    use crate::reject::Reason;

    /// Writes frames `written` of a 4-frame series declared as share 0 of 2 and ends it with `frames_sent`
    /// and `status`.
    fn series(
        dir: &Path,
        written: &[u64],
        frames_sent: u64,
        status: SeriesStatus,
        rejected: Rejections,
    ) -> SeriesSummary {
        series_as(dir, Some(Share { index: 0, of: 2 }), written, frames_sent, status, rejected)
    }

    fn series_as(
        dir: &Path,
        share: Option<Share>,
        written: &[u64],
        frames_sent: u64,
        status: SeriesStatus,
        rejected: Rejections,
    ) -> SeriesSummary {
        let mut start = SeriesStart::new("s", Shape([2, 3]), Dtype::Uint8, Compression::None, 4);
        start.share = share;
        let mut w = NxtomoWriter::create(&dir.join("s.h5"), &start, &Provenance::default()).unwrap();
        for &i in written {
            let h = FrameHeader {
                index: FrameIndex(i),
                image_key: ImageKey::Projection,
                angle: Degrees(0.0),
                timestamp: 1.0,
            };
            w.write_frame(&h, &[i as u8; 6]).unwrap();
        }
        let end = SeriesEnd {
            protocol: PROTOCOL_VERSION,
            series: "s".into(),
            frames_sent,
            status: Some(status),
            metadata: None,
        };
        w.finish(Some(&end), rejected).unwrap()
    }

    fn read_u64s(path: &Path, name: &str) -> Vec<u64> {
        let f = File::open(path).unwrap();
        f.dataset(&format!("{}/{name}", nx::ACQUISITION)).unwrap().read_raw().unwrap()
    }

    #[test]
    fn a_complete_share_lists_the_other_writers_frames_as_not_sent_not_missing() {
        let dir = tempfile::tempdir().unwrap();
        let s = series(dir.path(), &[0, 2], 2, SeriesStatus::Complete, Rejections::default());
        assert_eq!(s.missing, vec![]);
        assert_eq!(s.not_sent, vec![FrameIndex(1), FrameIndex(3)]);
        assert_eq!(read_u64s(&s.path, "missing_frames"), Vec::<u64>::new());
        assert_eq!(read_u64s(&s.path, "not_sent_frames"), vec![1, 3]);
        assert_eq!(read_u64s(&s.path, "frames_not_sent"), vec![2]);
        let keys: Vec<i32> = File::open(&s.path).unwrap().dataset(nx::NXDATA_IMAGE_KEY).unwrap().read_raw().unwrap();
        assert_eq!(keys, vec![0, INVALID, 0, INVALID]);
    }

    #[test]
    fn a_sender_that_skipped_indices_without_declaring_a_share_is_incomplete() {
        let dir = tempfile::tempdir().unwrap();
        let s = series_as(dir.path(), None, &[0, 2], 2, SeriesStatus::Complete, Rejections::default());
        assert_eq!((s.missing.clone(), s.not_sent.clone()), (vec![FrameIndex(1), FrameIndex(3)], vec![]));
        assert_eq!(read_u64s(&s.path, "missing_frames"), vec![1, 3]);
        assert_eq!(read_u64s(&s.path, "frames_not_sent"), vec![0]);
    }

    #[test]
    fn the_blosc_filter_cd_values_carry_the_documented_codes() {
        use crate::protocol::BloscParams;
        let dir = tempfile::tempdir().unwrap();
        // PROTOCOL.md: cd_values [2, 2, typesize, frame bytes, clevel, shuffle, compressor] with shuffle
        // 0 none, 1 byte, 2 bit and compressor 0 blosclz, 1 lz4, 2 lz4hc.
        let cases = [
            (Shuffle::None, Compressor::Blosclz, 0, 0),
            (Shuffle::Byte, Compressor::Lz4, 1, 1),
            (Shuffle::Bit, Compressor::Lz4hc, 2, 2),
        ];
        for (k, (shuffle, compressor, s_code, c_code)) in cases.into_iter().enumerate() {
            let p = BloscParams { compressor, clevel: 7, shuffle };
            let start = SeriesStart::new("b", Shape([3, 5]), Dtype::Uint16, Compression::Blosc1(p), 2);
            let path = dir.path().join(format!("b{k}.h5"));
            NxtomoWriter::create(&path, &start, &Provenance::default())
                .unwrap()
                .finish(None, Rejections::default())
                .unwrap();
            let ds = File::open(&path).unwrap().dataset(nx::DATA).unwrap();
            let dcpl = ds.dcpl().unwrap();
            let mut flags = 0u32;
            let mut n = 8usize;
            let mut cd = [0u32; 8];
            // SAFETY: a live dcpl id; `cd` holds `n` values; no name buffer is asked for.
            let rc = hdf5::sync::sync(|| unsafe {
                hdf5_sys::h5p::H5Pget_filter_by_id2(
                    dcpl.id(),
                    32001,
                    &mut flags,
                    &mut n,
                    cd.as_mut_ptr(),
                    0,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            });
            assert!(rc >= 0, "no blosc filter declared");
            assert_eq!(&cd[..7], &[2, 2, 2, 30, 7, s_code, c_code], "{shuffle:?} {compressor:?}");
        }
    }

    #[test]
    fn a_series_declaring_a_million_frames_that_never_come_makes_a_small_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.h5");
        let start = SeriesStart::new("big", Shape([4, 4]), Dtype::Uint16, Compression::None, 1_000_000);
        let mut w = NxtomoWriter::create(&path, &start, &Provenance::default()).unwrap();
        let h =
            FrameHeader { index: FrameIndex(500_000), image_key: ImageKey::Flat, angle: Degrees(2.5), timestamp: 7.0 };
        w.write_frame(&h, &[1u8; 32]).unwrap();
        let end = SeriesEnd {
            protocol: PROTOCOL_VERSION,
            series: "big".into(),
            frames_sent: 1,
            status: Some(SeriesStatus::Aborted),
            metadata: None,
        };
        let s = w.finish(Some(&end), Rejections::default()).unwrap();
        assert_eq!(s.missing.len(), 999_999);
        let bytes = std::fs::metadata(&path).unwrap().len();
        assert!(bytes < 1_000_000, "file of {bytes} bytes for one received frame");
        let f = File::open(&path).unwrap();
        let keys: Vec<i32> = f.dataset(nx::NXDATA_IMAGE_KEY).unwrap().read_raw().unwrap();
        assert_eq!(keys.len(), 1_000_000);
        assert_eq!((keys[0], keys[500_000], keys[999_999]), (INVALID, 1, INVALID));
        let angles: Vec<f64> = f.dataset(nx::NXDATA_ROTATION_ANGLE).unwrap().read_raw().unwrap();
        assert!(angles[0].is_nan() && angles[500_000] == 2.5);
        let missing = read_u64s(&path, "missing_frames");
        assert_eq!((missing.len(), missing[0], missing[499_999], missing[500_000]), (999_999, 0, 499_999, 500_001));
    }

    #[test]
    fn frames_sent_but_not_received_stay_missing() {
        let dir = tempfile::tempdir().unwrap();
        // Everything was sent, one frame lost.
        let s = series(dir.path(), &[0, 1, 3], 4, SeriesStatus::Complete, Rejections::default());
        assert_eq!((s.missing.clone(), s.not_sent.clone()), (vec![FrameIndex(2)], vec![]));
        assert_eq!(read_u64s(&s.path, "missing_frames"), vec![2]);
        // A share that lost one of its frames.
        let s = series(dir.path(), &[0], 2, SeriesStatus::Complete, Rejections::default());
        assert_eq!(s.missing, vec![FrameIndex(1), FrameIndex(2), FrameIndex(3)]);
        // A share whose frames all arrived, but a message was rejected: it may have been one of them.
        let mut rejected = Rejections::default();
        rejected.add(Reason::PayloadSize);
        let s = series(dir.path(), &[0, 2], 2, SeriesStatus::Complete, rejected);
        assert_eq!(s.missing, vec![FrameIndex(1), FrameIndex(3)]);
        // An aborted series is not a share.
        let s = series(dir.path(), &[0, 2], 2, SeriesStatus::Aborted, Rejections::default());
        assert_eq!((s.missing.len(), s.not_sent.len()), (2, 0));
    }

    #[test]
    fn half_the_senders_replay_buffer_written_makes_a_flush_before_the_interval() {
        let dir = tempfile::tempdir().unwrap();
        let h = |i: u64| FrameHeader {
            index: FrameIndex(i),
            image_key: ImageKey::Projection,
            angle: Degrees(0.0),
            timestamp: 1.0,
        };
        let hour = Duration::from_secs(3600);
        let mut start = SeriesStart::new("b", Shape([2, 3]), Dtype::Uint8, Compression::None, 8);
        // A 24-byte replay buffer: a flush after every 12 bytes (two 6-byte frames).
        start.replay_buffer_bytes = Some(24);
        let mut w = NxtomoWriter::create(&dir.path().join("b.h5"), &start, &Provenance::default()).unwrap();
        w.write_frame(&h(0), &[0; 6]).unwrap();
        w.maybe_flush(hour).unwrap();
        assert!(w.is_dirty(), "6 of 12 bytes: no flush yet");
        w.write_frame(&h(1), &[1; 6]).unwrap();
        w.maybe_flush(hour).unwrap();
        assert!(!w.is_dirty(), "12 bytes written since the last flush: flushed");
        w.write_frame(&h(2), &[2; 6]).unwrap();
        w.maybe_flush(hour).unwrap();
        assert!(w.is_dirty(), "counted from the last flush");
        // Without the field, only the interval flushes.
        let start = SeriesStart::new("c", Shape([2, 3]), Dtype::Uint8, Compression::None, 8);
        let mut w = NxtomoWriter::create(&dir.path().join("c.h5"), &start, &Provenance::default()).unwrap();
        for i in 0..8 {
            w.write_frame(&h(i), &[0; 6]).unwrap();
            w.maybe_flush(hour).unwrap();
        }
        assert!(w.is_dirty());
    }

    #[test]
    fn a_file_never_closed_is_reopened_with_its_frames_held_and_a_closed_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.h5");
        let start = SeriesStart::new("r", Shape([2, 3]), Dtype::Uint8, Compression::None, 4);
        let h = |i: u64| FrameHeader {
            index: FrameIndex(i),
            image_key: ImageKey::Projection,
            angle: Degrees(i as f64),
            timestamp: 1.0,
        };
        let mut w = NxtomoWriter::create(&path, &start, &Provenance::default()).unwrap();
        for i in [0, 2] {
            w.write_frame(&h(i), &[i as u8; 6]).unwrap();
        }
        w.flush().unwrap();
        drop(w); // as a killed receiver leaves it: status `receiving`
        let (mut w, stored) = NxtomoWriter::reopen(&path, WriteIo::Direct).unwrap();
        assert_eq!(stored.series, "r");
        assert_eq!(stored.frames, 4);
        assert_eq!(w.held().collect::<Vec<_>>(), vec![0, 2]);
        for i in [1, 3] {
            w.write_frame(&h(i), &[i as u8; 6]).unwrap();
        }
        let end =
            SeriesEnd { protocol: PROTOCOL_VERSION, series: "r".into(), frames_sent: 4, status: None, metadata: None };
        let s = w.finish(Some(&end), Rejections::default()).unwrap();
        assert_eq!((s.received, s.missing.len()), (4, 0));
        let data: Vec<u8> = File::open(&path).unwrap().dataset(nx::DATA).unwrap().read_raw().unwrap();
        assert_eq!(data, [[0u8; 6], [1; 6], [2; 6], [3; 6]].concat());
        let again = NxtomoWriter::reopen(&path, WriteIo::Direct).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(again.contains("already closed (status `complete`)"), "{again}");
    }

    /// Each writer's `io` picks its file's driver (one receiver's `--write-io` is not another's): `Buffered`
    /// opens it with HDF5's default driver, which holds nothing past the kernel; `Direct` through
    /// `beamline_direct`, whose window the disk-full check keeps free, where the file system takes O_DIRECT;
    /// a reopened file likewise.
    #[test]
    fn write_io_picks_each_files_driver_on_create_and_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let direct_holds =
            if crate::direct::bypasses_page_cache(dir.path()) { crate::direct::HELD_BYTES as u64 } else { 0 };
        let start = SeriesStart::new("w", Shape([2, 3]), Dtype::Uint8, Compression::None, 2);
        let prov = Provenance::default();
        let (bp, dp) = (dir.path().join("b.h5"), dir.path().join("d.h5"));
        let b = NxtomoWriter::create_with(&bp, &start, &prov, None, WriteIo::Buffered).unwrap();
        let d = NxtomoWriter::create_with(&dp, &start, &prov, None, WriteIo::Direct).unwrap();
        assert_eq!((b.window_bytes, d.window_bytes), (0, direct_holds));
        drop((b, d)); // status `receiving`: both can be reopened
        let (b, _) = NxtomoWriter::reopen(&bp, WriteIo::Direct).unwrap();
        let (d, _) = NxtomoWriter::reopen(&dp, WriteIo::Buffered).unwrap();
        assert_eq!((b.window_bytes, d.window_bytes), (direct_holds, 0));
    }

    #[test]
    fn a_child_started_while_the_file_is_open_does_not_keep_it_locked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.h5");
        let start = SeriesStart::new("c", Shape([2, 3]), Dtype::Uint8, Compression::None, 1);
        let w = NxtomoWriter::create(&path, &start, &Provenance::default()).unwrap();
        // A child process started while the writer holds the file (and its lock).
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        w.finish(None, Rejections::default()).unwrap();
        // Closed here: opening it for writing again (as the scan table append does) takes the lock.
        let reopened = File::open_rw(&path).map(|f| f.group("entry").is_ok());
        let _ = child.kill();
        let _ = child.wait();
        assert!(matches!(reopened, Ok(true)), "{reopened:?}");
    }
}
