//! Writing reconstructed slices: a float32 TIFF stack (one file per slice, which tifffile and ImageJ open),
//! or one multi-page TIFF ([`TiffPages`]), optionally 16- or 8-bit with a range, or one HDF5 volume laid out
//! as NeXus ([`H5Volume`]); provenance stored with each. And reading a float32 slice back
//! ([`read_f32_tiff`]), for whoever checks what was written.
//!
//! # Integer TIFFs keep their scaling
//!
//! A 16- or 8-bit slice stores `q = round((v - lo) * max / (hi - lo))` clipped to `0..=max` (`max` = 65535
//! or 255), where `v` is the reconstructed value: the attenuation per voxel (linear attenuation coefficient
//! times the voxel size, as `-log` transmissions backprojected). Every such file records `lo`, `hi` and
//! `max` twice: in the `scaling` object of its `ImageDescription` JSON (with the formula as text) and as
//! `SMinSampleValue = lo`, `SMaxSampleValue = hi` (TIFF DOUBLE; the values that stored 0 and stored `max`
//! stand for). Back to attenuation: **`v = lo + q * (hi - lo) / max`**, exact to half a quantum
//! `(hi - lo) / max / 2` for values inside `[lo, hi]`; values outside were clipped to `lo` or `hi`.
//!
//! # The HDF5 volume
//!
//! `/entry` (`NXentry`, `@default = "data"`) holds `/entry/data` (`NXdata`, `@signal = "data"`,
//! `@axes = ["z", "y", "x"]`) with `data` `[slice][y][x]` float32 (`@first_slice`, `@long_name`), the
//! voxel size in `x_pixel_size`, `y_pixel_size`, `z_pixel_size` (with `@units`: the input's pixel size
//! times the binning, or `pixel` when the input records none), the axis positions `x`, `y`, `z` in those
//! units, and `/entry/provenance` (the provenance JSON).

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use ndarray::{s, ArrayView2};
use serde::{Deserialize, Serialize};
use tiff::encoder::{colortype, TiffEncoder};
use tiff::tags::Tag;

/// Where the slice index goes in TIFF file names: `slice_00042.tif` is slice (detector row) 42.
pub fn tiff_name(index: usize) -> String {
    format!("slice_{index:05}.tif")
}

/// Bits per TIFF sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
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

/// How the stored samples of an integer TIFF map back to reconstructed values (see the module
/// documentation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaling {
    /// Bits per sample: 16 or 8.
    pub bits: u32,
    /// The value stored 0 stands for.
    pub lo: f32,
    /// The value stored `max` stands for.
    pub hi: f32,
    /// 65535 or 255.
    pub max: u32,
    /// The formula back, as text.
    pub formula: String,
    /// What the values are.
    pub quantity: String,
}

impl Scaling {
    /// The scaling of `depth`, `None` for float32.
    pub fn of(depth: TiffDepth) -> Option<Scaling> {
        let (bits, lo, hi, max) = match depth {
            TiffDepth::F32 => return None,
            TiffDepth::U16 { lo, hi } => (16, lo, hi, 65535),
            TiffDepth::U8 { lo, hi } => (8, lo, hi, 255),
        };
        Some(Scaling {
            bits,
            lo,
            hi,
            max,
            formula: format!("value = lo + stored * (hi - lo) / {max}; stored = round((value - lo) * {max} / (hi - lo)) clipped to 0..={max}"),
            quantity: QUANTITY.into(),
        })
    }
}

/// What reconstructed values are.
pub const QUANTITY: &str = "attenuation per voxel (linear attenuation coefficient x voxel size)";

/// What is recorded with every output: where the data came from and how it was made, and (once the run is
/// done) what it wrote and the hashes that `beamline rerun` compares.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    // --- issue 14: reruns that prove themselves ---
    /// SHA-256 of the input file, hex (computed while reconstructing; `None` until the run is done).
    #[serde(default)]
    pub input_sha256: Option<String>,
    /// The options of the run, as `ReconOptions` (what `beamline rerun` re-executes).
    #[serde(default)]
    pub options: serde_json::Value,
    /// Files the run writes, relative to the output folder (or the output file's folder): what
    /// `--overwrite` removes.
    #[serde(default)]
    pub outputs: Vec<String>,
    /// Detector row (volume row) of the first slice.
    #[serde(default)]
    pub first_slice: usize,
    /// SHA-256 of each slice's float32 values (little-endian, row-major) as reconstructed, in slice order.
    #[serde(default)]
    pub slice_sha256: Vec<String>,
    /// SHA-256 of the concatenated slice hashes (hex text): one hash for the whole volume.
    #[serde(default)]
    pub output_sha256: Option<String>,
    /// Scaling of 16/8-bit TIFF samples.
    #[serde(default)]
    pub scaling: Option<Scaling>,
    /// Whether the run finished (false while it runs, or if it was interrupted).
    #[serde(default)]
    pub complete: bool,
}

impl Provenance {
    /// Compact JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// What goes into each slice's `ImageDescription` and the volume's `/entry/provenance`: the provenance
    /// without the per-slice hashes.
    pub fn description(&self) -> String {
        let mut p = self.clone();
        p.slice_sha256.clear();
        p.outputs.clear();
        p.to_json()
    }
}

/// Hex text of a SHA-256 digest.
pub fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 (hex) of a slice's float32 values, little-endian.
pub fn slice_sha256(data: &[f32]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for v in data {
        h.update(v.to_le_bytes());
    }
    hex(&h.finalize())
}

/// SHA-256 (hex) of the concatenated slice hashes.
pub fn volume_sha256(slices: &[String]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for s in slices {
        h.update(s.as_bytes());
    }
    hex(&h.finalize())
}

/// SHA-256 (hex) of a whole file.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut f = File::open(path)?;
    let mut h = sha2::Sha256::new();
    // A small buffer: the hash runs beside the reconstruction, within its --memory budget.
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
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

/// Writes one `size x size` slice as a TIFF file with `description` (the provenance JSON) in
/// `ImageDescription` and, for 16/8-bit depths, the scaling in `SMinSampleValue`/`SMaxSampleValue`.
pub fn write_tiff(
    path: &Path,
    size: usize,
    data: &[f32],
    depth: TiffDepth,
    description: &str,
) -> Result<(), WriteError> {
    let file = File::create(path).map_err(|e| io_err(path, e))?;
    let mut enc = TiffEncoder::new(BufWriter::new(file)).map_err(|e| io_err(path, e))?;
    put_page(&mut enc, path, size, data, depth, description)
}

fn put_page<W: std::io::Write + std::io::Seek>(
    enc: &mut TiffEncoder<W>,
    path: &Path,
    size: usize,
    data: &[f32],
    depth: TiffDepth,
    description: &str,
) -> Result<(), WriteError> {
    let (w, h) = (size as u32, size as u32);
    // In f64, so that the stored value is the nearest quantum to the f32 value (f32 arithmetic would add
    // a few thousandths of a quantum at 16 bits).
    let scale = |lo: f32, hi: f32, max: f64| {
        let (lo, hi) = (lo as f64, hi as f64);
        let k = if hi > lo { max / (hi - lo) } else { 0.0 };
        move |v: f32| ((v as f64 - lo) * k).round().clamp(0.0, max)
    };
    macro_rules! put {
        ($ct:ty, $buf:expr, $range:expr) => {{
            let mut img = enc.new_image::<$ct>(w, h).map_err(|e| io_err(path, e))?;
            img.encoder().write_tag(Tag::ImageDescription, description).map_err(|e| io_err(path, e))?;
            img.encoder().write_tag(Tag::Software, "beamline").map_err(|e| io_err(path, e))?;
            if let Some((lo, hi)) = $range {
                img.encoder().write_tag(Tag::SMinSampleValue, lo as f64).map_err(|e| io_err(path, e))?;
                img.encoder().write_tag(Tag::SMaxSampleValue, hi as f64).map_err(|e| io_err(path, e))?;
            }
            img.write_data($buf).map_err(|e| io_err(path, e))?;
        }};
    }
    match depth {
        TiffDepth::F32 => put!(colortype::Gray32Float, data, None::<(f32, f32)>),
        TiffDepth::U16 { lo, hi } => {
            let f = scale(lo, hi, 65535.0);
            let buf: Vec<u16> = data.iter().map(|&v| f(v) as u16).collect();
            put!(colortype::Gray16, &buf, Some((lo, hi)))
        }
        TiffDepth::U8 { lo, hi } => {
            let f = scale(lo, hi, 255.0);
            let buf: Vec<u8> = data.iter().map(|&v| f(v) as u8).collect();
            put!(colortype::Gray8, &buf, Some((lo, hi)))
        }
    }
    Ok(())
}

/// One multi-page TIFF written page by page, in slice order (slices that arrive early wait in memory).
pub struct TiffPages {
    path: PathBuf,
    enc: TiffEncoder<BufWriter<File>>,
    size: usize,
    depth: TiffDepth,
    description: String,
    next: usize,
    waiting: std::collections::BTreeMap<usize, Vec<f32>>,
}

impl std::fmt::Debug for TiffPages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TiffPages").field("path", &self.path).field("next", &self.next).finish()
    }
}

impl TiffPages {
    /// Creates `path` for slices `first ..` of `size x size`.
    pub fn create(
        path: &Path,
        first: usize,
        size: usize,
        depth: TiffDepth,
        description: &str,
    ) -> Result<TiffPages, WriteError> {
        let file = File::create(path).map_err(|e| io_err(path, e))?;
        let enc = TiffEncoder::new(BufWriter::new(file)).map_err(|e| io_err(path, e))?;
        Ok(TiffPages {
            path: path.to_path_buf(),
            enc,
            size,
            depth,
            description: description.to_string(),
            next: first,
            waiting: Default::default(),
        })
    }

    /// Adds slices starting at `row` (`data` holds whole slices).
    pub fn write(&mut self, row: usize, data: &[f32]) -> Result<(), WriteError> {
        let per = self.size * self.size;
        for (k, slice) in data.chunks(per).enumerate() {
            self.waiting.insert(row + k, slice.to_vec());
        }
        while let Some(slice) = self.waiting.remove(&self.next) {
            put_page(&mut self.enc, &self.path, self.size, &slice, self.depth, &self.description)?;
            self.next += 1;
        }
        Ok(())
    }
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
pub const VOLUME_PATH: &str = acquisition::nexus::path::NXDATA_DATA;
/// Attribute of [`VOLUME_PATH`]: detector row of the first slice.
pub const FIRST_SLICE_ATTR: &str = "first_slice";
/// Scalar string data set with the provenance JSON.
pub const PROVENANCE_PATH: &str = acquisition::nexus::path::PROVENANCE;

/// Voxel size of a volume and its unit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Voxel {
    /// Edge length.
    pub size: f64,
    /// Its unit (`m`, `um`, ... as the input recorded it, or `pixel`).
    pub units: String,
}

/// An HDF5 volume being written slice by slice.
#[derive(Debug)]
pub struct H5Volume {
    path: PathBuf,
    ds: hdf5::Dataset,
    provenance: hdf5::Dataset,
    first: usize,
    size: usize,
}

impl H5Volume {
    /// Creates `path` (truncating) for slices `first .. first + n` of `size x size`, laid out as NeXus
    /// (module documentation) with `voxel` as the voxel size.
    pub fn create(
        path: &Path,
        first: usize,
        n: usize,
        size: usize,
        provenance: &str,
        voxel: &Voxel,
    ) -> Result<H5Volume, WriteError> {
        use acquisition::nexus::{attr_str, class, nx_group};
        let e = |x: hdf5::Error| io_err(path, x);
        let file = hdf5::File::create(path).map_err(e)?;
        let entry = nx_group(&file, "entry", class::ENTRY).map_err(e)?;
        attr_str(&entry, "default", "data").map_err(e)?;
        let data = nx_group(&entry, "data", class::DATA).map_err(e)?;
        attr_str(&data, "signal", "data").map_err(e)?;
        let axes: Vec<hdf5::types::VarLenUnicode> =
            ["z", "y", "x"].iter().map(|a| acquisition::nexus::varlen(a)).collect();
        data.new_attr::<hdf5::types::VarLenUnicode>()
            .shape(3)
            .create("axes")
            .and_then(|a| a.write_raw(&axes))
            .map_err(e)?;
        let ds = data.new_dataset::<f32>().chunk((1, size, size)).shape((n, size, size)).create("data").map_err(e)?;
        ds.new_attr::<u64>().create(FIRST_SLICE_ATTR).and_then(|a| a.write_scalar(&(first as u64))).map_err(e)?;
        attr_str(&ds, "long_name", QUANTITY).map_err(e)?;
        attr_str(&ds, "interpretation", "image").map_err(e)?;
        for (name, len, offset) in [("x", size, 0usize), ("y", size, 0), ("z", n, first)] {
            let h = (len as f64 - 1.0) / 2.0;
            let pos: Vec<f64> = (0..len)
                .map(|i| match name {
                    "x" => (i as f64 - h) * voxel.size,
                    "y" => (h - i as f64) * voxel.size,
                    _ => (offset + i) as f64 * voxel.size,
                })
                .collect();
            let d = data.new_dataset_builder().with_data(&pos[..]).create(name).map_err(e)?;
            attr_str(&d, "units", &voxel.units).map_err(e)?;
            let p = data.new_dataset::<f64>().create(format!("{name}_pixel_size").as_str()).map_err(e)?;
            p.write_scalar(&voxel.size).map_err(e)?;
            attr_str(&p, "units", &voxel.units).map_err(e)?;
        }
        let text: hdf5::types::VarLenUnicode =
            provenance.parse().map_err(|x| io_err(path, format!("provenance text: {x}")))?;
        let provenance = entry.new_dataset::<hdf5::types::VarLenUnicode>().create("provenance").map_err(e)?;
        provenance.write_scalar(&text).map_err(e)?;
        Ok(H5Volume { path: path.to_path_buf(), ds, provenance, first, size })
    }

    /// Replaces `/entry/provenance` (at the end of a run, with the hashes).
    pub fn set_provenance(&self, provenance: &str) -> Result<(), WriteError> {
        let text: hdf5::types::VarLenUnicode =
            provenance.parse().map_err(|x| io_err(&self.path, format!("provenance text: {x}")))?;
        self.provenance.write_scalar(&text).map_err(|x| io_err(&self.path, x))
    }

    /// Writes `data` (whole slices) for volume rows starting at `row`.
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
    write_provenance_at(&dir.join("provenance.json"), provenance)
}

/// Writes the provenance as pretty JSON at `path`.
pub fn write_provenance_at(path: &Path, provenance: &Provenance) -> Result<(), WriteError> {
    let path = path.to_path_buf();
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
