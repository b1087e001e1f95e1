//! Replaying an existing NXtomo file: its frames (decompressed by HDF5, whatever filter wrote them) sent
//! again as a new series, in index order, skipping frames marked invalid (`image_key` 3).

use std::path::{Path, PathBuf};

use hdf5::{Dataset, H5Type};

use crate::nexus::{NexusError, NxTomoFile};
use crate::protocol::{
    now_timestamp, BloscParams, Compression, Compressor, Degrees, Dtype, FrameHeader, FrameIndex, ImageKey,
    SeriesStart, SeriesStatus, Shape, Shuffle,
};
use crate::sender::{SendError, SeriesSender};
use crate::sim::Pacer;

/// Errors reading the file to replay.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The file cannot be read as NXtomo.
    #[error("{path}: {what}: {detail}. Give an NXtomo file (as written by `beamline receive`)")]
    File {
        /// The file.
        path: PathBuf,
        /// What was read.
        what: &'static str,
        /// The underlying error.
        detail: String,
    },
    /// The file is not a readable NXtomo file.
    #[error("{0}. Give an NXtomo file (as written by `beamline receive`)")]
    Nexus(#[from] NexusError),
    /// Sending failed.
    #[error(transparent)]
    Send(#[from] SendError),
}

/// An NXtomo file opened for replay.
pub struct NxtomoSource {
    path: PathBuf,
    data: Dataset,
    dtype: Dtype,
    shape: Shape,
    keys: Vec<ImageKey>,
    angles: Vec<Degrees>,
    compression: Option<BloscParams>,
}

impl NxtomoSource {
    /// Opens `path` and reads its image keys and angles.
    pub fn open(path: &Path) -> Result<NxtomoSource, ReplayError> {
        let file = NxTomoFile::open(path)?;
        let dtype = file.dtype()?;
        let shape = file.shape();
        if shape[1] == 0 || shape[2] == 0 || shape[1] > u32::MAX as usize || shape[2] > u32::MAX as usize {
            let detail = format!("{shape:?} is not [frames, rows, cols]");
            return Err(ReplayError::File { path: path.to_path_buf(), what: "data shape", detail });
        }
        let data = file.data().clone();
        let compression = data.filters().into_iter().find_map(|f| match f {
            hdf5::filters::Filter::Blosc(lib, clevel, shuffle) => {
                let compressor = match lib {
                    hdf5::filters::Blosc::LZ4HC => Compressor::Lz4hc,
                    hdf5::filters::Blosc::BloscLZ => Compressor::Blosclz,
                    _ => Compressor::Lz4,
                };
                let shuffle = match shuffle {
                    hdf5::filters::BloscShuffle::None => Shuffle::None,
                    hdf5::filters::BloscShuffle::Bit => Shuffle::Bit,
                    hdf5::filters::BloscShuffle::Byte => Shuffle::Byte,
                };
                Some(BloscParams { compressor, clevel: clevel.min(9), shuffle })
            }
            _ => None,
        });
        Ok(NxtomoSource {
            path: path.to_path_buf(),
            data,
            dtype,
            shape: Shape([shape[1] as u32, shape[2] as u32]),
            keys: file.image_keys().to_vec(),
            angles: file.angles().to_vec(),
            compression,
        })
    }

    /// Pixel type.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// Frame shape.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// The blosc parameters the file was written with, if blosc.
    pub fn compression(&self) -> Option<BloscParams> {
        self.compression
    }

    /// Frames to replay, in index order: `(index in the file, key, angle)`; frames with invalid keys skipped.
    pub fn frames(&self) -> Vec<(u64, ImageKey, Degrees)> {
        self.keys
            .iter()
            .zip(&self.angles)
            .enumerate()
            .filter(|(_, (k, _))| k.is_valid())
            .map(|(i, (&k, a))| (i as u64, k, Degrees(if a.0.is_finite() { a.0 } else { 0.0 })))
            .collect()
    }

    /// Reads frame `i` as little-endian bytes into `out`.
    pub fn read_frame(&self, i: u64, out: &mut Vec<u8>) -> Result<(), ReplayError> {
        out.clear();
        match self.dtype {
            Dtype::Uint8 => self.read_as::<u8, 1>(i, out, u8::to_le_bytes),
            Dtype::Uint16 => self.read_as::<u16, 2>(i, out, u16::to_le_bytes),
            Dtype::Uint32 => self.read_as::<u32, 4>(i, out, u32::to_le_bytes),
            Dtype::Float32 => self.read_as::<f32, 4>(i, out, f32::to_le_bytes),
        }
    }

    fn read_as<T: H5Type + Copy, const N: usize>(
        &self,
        i: u64,
        out: &mut Vec<u8>,
        le: fn(T) -> [u8; N],
    ) -> Result<(), ReplayError> {
        let a = self.data.read_slice_2d::<T, _>(ndarray::s![i as usize, .., ..]).map_err(|e| ReplayError::File {
            path: self.path.clone(),
            what: "read frame",
            detail: format!("frame {i}: {e}"),
        })?;
        out.reserve(a.len() * N);
        for v in a.iter() {
            out.extend_from_slice(&le(*v));
        }
        Ok(())
    }
}

/// Sends the frames of `src` as series `series` with `compression` (`None` keeps the file's blosc
/// parameters, or sends raw pixels for an unfiltered file). Returns frames sent.
pub fn replay_series(
    sender: &mut SeriesSender,
    src: &NxtomoSource,
    series: &str,
    compression: Option<Compression>,
    fps: Option<f64>,
    mut progress: impl FnMut(u64, u64),
) -> Result<u64, ReplayError> {
    let frames = src.frames();
    let compression = compression.unwrap_or(match src.compression {
        Some(p) => Compression::Blosc1(p),
        None => Compression::None,
    });
    let mut start = SeriesStart::new(series, src.shape, src.dtype, compression, frames.len().max(1) as u64);
    start.metadata =
        serde_json::json!({ "source": "beamline simulate --replay", "replayed_file": src.path.display().to_string() });
    sender.start_series(&start)?;
    let mut buf = Vec::new();
    let pacer = Pacer::new(fps);
    let total = frames.len() as u64;
    for (n, (i, key, angle)) in frames.into_iter().enumerate() {
        src.read_frame(i, &mut buf)?;
        pacer.wait(n as u64);
        let h = FrameHeader { index: FrameIndex(n as u64), image_key: key, angle, timestamp: now_timestamp() };
        sender.send_frame(&h, &buf)?;
        progress(n as u64 + 1, total);
    }
    Ok(sender.end_series(SeriesStatus::Complete, None)?)
}
