//! Writing reconstructed slices: a float32 TIFF stack (one file per slice, which tifffile and ImageJ open),
//! optionally 16- or 8-bit with a range, or one HDF5 volume; provenance stored with either. And reading a
//! float32 slice back ([`read_f32_tiff`]), for whoever checks what was written.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use ndarray::{s, ArrayView2};
use serde::Serialize;
use tiff::encoder::{colortype, TiffEncoder};
use tiff::tags::Tag;

/// Where the slice index goes in TIFF file names: `slice_00042.tif` is slice (detector row) 42.
pub fn tiff_name(index: usize) -> String {
    format!("slice_{index:05}.tif")
}

/// Bits per TIFF sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum TiffDepth {
    /// 32-bit float, the values as reconstructed.
    F32,
    /// 16-bit unsigned: `[lo, hi]` maps to `[0, 65535]`, clipped.
    U16 {
        /// Value written as 0.
        lo: f32,
        /// Value written as 65535.
        hi: f32,
    },
    /// 8-bit unsigned: `[lo, hi]` maps to `[0, 255]`, clipped.
    U8 {
        /// Value written as 0.
        lo: f32,
        /// Value written as 255.
        hi: f32,
    },
}

/// What is recorded with every output: where the data came from and how it was made.
#[derive(Debug, Clone, Serialize)]
pub struct Provenance {
    /// `beamline` and its version.
    pub software: String,
    /// Input file (as given) and data set.
    pub input: String,
    /// Data set inside the input.
    pub dataset: String,
    /// Seconds since the Unix epoch when the reconstruction started.
    pub created_unix: u64,
    /// All reconstruction parameters (centre, filter, slices, options).
    pub parameters: serde_json::Value,
}

impl Provenance {
    /// Compact JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

/// Why output could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// File-system failure.
    #[error("{path}: {reason}")]
    Io {
        /// File or folder.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> WriteError {
    WriteError::Io { path: path.to_path_buf(), reason: e.to_string() }
}

/// Writes one `size x size` slice as a TIFF file with the provenance in `ImageDescription`.
pub fn write_tiff(
    path: &Path,
    size: usize,
    data: &[f32],
    depth: TiffDepth,
    provenance: &str,
) -> Result<(), WriteError> {
    let file = File::create(path).map_err(|e| io_err(path, e))?;
    let mut enc = TiffEncoder::new(BufWriter::new(file)).map_err(|e| io_err(path, e))?;
    let (w, h) = (size as u32, size as u32);
    let scale = |lo: f32, hi: f32, max: f32| {
        let k = if hi > lo { max / (hi - lo) } else { 0.0 };
        move |v: f32| ((v - lo) * k).round().clamp(0.0, max)
    };
    macro_rules! put {
        ($ct:ty, $buf:expr) => {{
            let mut img = enc.new_image::<$ct>(w, h).map_err(|e| io_err(path, e))?;
            img.encoder().write_tag(Tag::ImageDescription, provenance).map_err(|e| io_err(path, e))?;
            img.encoder().write_tag(Tag::Software, "beamline").map_err(|e| io_err(path, e))?;
            img.write_data($buf).map_err(|e| io_err(path, e))?;
        }};
    }
    match depth {
        TiffDepth::F32 => put!(colortype::Gray32Float, data),
        TiffDepth::U16 { lo, hi } => {
            let f = scale(lo, hi, 65535.0);
            let buf: Vec<u16> = data.iter().map(|&v| f(v) as u16).collect();
            put!(colortype::Gray16, &buf)
        }
        TiffDepth::U8 { lo, hi } => {
            let f = scale(lo, hi, 255.0);
            let buf: Vec<u8> = data.iter().map(|&v| f(v) as u8).collect();
            put!(colortype::Gray8, &buf)
        }
    }
    Ok(())
}

/// Why a slice could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file cannot be opened.
    #[error("reading {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a TIFF image the decoder can read.
    #[error("{path}: not a readable TIFF image: {reason}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// What the decoder said.
        reason: String,
    },
    /// The image is not one 32-bit float grey plane.
    #[error("{path}: only uncompressed 32-bit float TIFFs are read here (reconstruct with the default --bits)")]
    NotF32 {
        /// The file.
        path: PathBuf,
    },
}

/// Reads a 32-bit float grey TIFF (what [`write_tiff`] writes with [`TiffDepth::F32`], the default of
/// `beamline recon` and of the live preview): `(width, height, pixels)`, row-major.
pub fn read_f32_tiff(path: &Path) -> Result<(usize, usize, Vec<f32>), ReadError> {
    use tiff::decoder::{Decoder, DecodingResult};
    let file = File::open(path).map_err(|source| ReadError::Open { path: path.to_path_buf(), source })?;
    let decode = |e: tiff::TiffError| ReadError::Decode { path: path.to_path_buf(), reason: e.to_string() };
    let mut decoder = Decoder::new(std::io::BufReader::new(file)).map_err(decode)?;
    let (w, h) = decoder.dimensions().map_err(decode)?;
    match decoder.read_image().map_err(decode)? {
        DecodingResult::F32(data) if data.len() == w as usize * h as usize => Ok((w as usize, h as usize, data)),
        _ => Err(ReadError::NotF32 { path: path.to_path_buf() }),
    }
}

/// Data set holding the volume in HDF5 output, `[slice][y][x]` float32.
pub const VOLUME_PATH: &str = "/entry/data/data";
/// Attribute of [`VOLUME_PATH`]: detector row of the first slice.
pub const FIRST_SLICE_ATTR: &str = "first_slice";
/// Scalar string data set with the provenance JSON.
pub const PROVENANCE_PATH: &str = "/entry/provenance";

/// An HDF5 volume being written slice by slice.
#[derive(Debug)]
pub struct H5Volume {
    path: PathBuf,
    ds: hdf5::Dataset,
    first: usize,
    size: usize,
}

impl H5Volume {
    /// Creates `path` (truncating) for slices `first .. first + n` of `size x size`.
    pub fn create(path: &Path, first: usize, n: usize, size: usize, provenance: &str) -> Result<H5Volume, WriteError> {
        let e = |x: hdf5::Error| io_err(path, x);
        let file = hdf5::File::create(path).map_err(e)?;
        let entry = file.create_group("entry").map_err(e)?;
        let data = entry.create_group("data").map_err(e)?;
        let ds = data.new_dataset::<f32>().chunk((1, size, size)).shape((n, size, size)).create("data").map_err(e)?;
        ds.new_attr::<u64>().create(FIRST_SLICE_ATTR).and_then(|a| a.write_scalar(&(first as u64))).map_err(e)?;
        let text: hdf5::types::VarLenUnicode =
            provenance.parse().map_err(|x| io_err(path, format!("provenance text: {x}")))?;
        entry
            .new_dataset::<hdf5::types::VarLenUnicode>()
            .create("provenance")
            .and_then(|d| d.write_scalar(&text))
            .map_err(e)?;
        Ok(H5Volume { path: path.to_path_buf(), ds, first, size })
    }

    /// Writes `data` (`rows.len()` slices) for detector rows starting at `row`.
    pub fn write(&self, row: usize, data: &[f32]) -> Result<(), WriteError> {
        let per = self.size * self.size;
        for (k, slice) in data.chunks(per).enumerate() {
            let view = ArrayView2::from_shape((self.size, self.size), slice).map_err(|x| io_err(&self.path, x))?;
            let i = row + k - self.first;
            self.ds.write_slice(&view, s![i, .., ..]).map_err(|x| io_err(&self.path, x))?;
        }
        Ok(())
    }
}

/// Writes the provenance next to a TIFF stack as `provenance.json`.
pub fn write_provenance_file(dir: &Path, provenance: &Provenance) -> Result<(), WriteError> {
    let path = dir.join("provenance.json");
    let text = serde_json::to_string_pretty(provenance).map_err(|e| io_err(&path, e))?;
    std::fs::write(&path, text).map_err(|e| io_err(&path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_what_write_tiff_writes() {
        let dir = tempfile::tempdir().unwrap();
        let size = 37;
        let data: Vec<f32> = (0..size * size).map(|i| i as f32 * 0.5 - 3.25).collect();
        let path = dir.path().join(tiff_name(4));
        write_tiff(&path, size, &data, TiffDepth::F32, "{\"x\":1}").unwrap();
        let (w, h, back) = read_f32_tiff(&path).unwrap();
        assert_eq!((w, h), (size, size));
        assert_eq!(back, data);
        write_tiff(&path, size, &data, TiffDepth::U16 { lo: 0.0, hi: 1.0 }, "").unwrap();
        assert!(matches!(read_f32_tiff(&path), Err(ReadError::NotF32 { .. })));
        std::fs::write(&path, b"not a tiff").unwrap();
        assert!(matches!(read_f32_tiff(&path), Err(ReadError::Decode { .. })));
        assert!(matches!(read_f32_tiff(&dir.path().join("none.tif")), Err(ReadError::Open { .. })));
    }
}
