//! The receiver side of the live preview: a [`PreviewFeed`] is an [`acquisition::receiver::FrameObserver`]
//! that turns the frames a receiver accepts (header + payload exactly as received) into [`LivePreview`]
//! updates, and writes the preview slices as float32 TIFFs.
//!
//! A feed is shared (`Arc`) between the receiver's writer thread, which calls
//! [`PreviewFeed::series_start`] and [`PreviewFeed::frame`], and whoever shows progress. A frame the preview
//! cannot use (a corrupt payload, a wrong size) is skipped and remembered as [`PreviewFeed::error`]: the
//! file the receiver writes is never affected.
//!
//! Written by whoever holds the feed ([`PreviewFeed::write`], e.g. `beamline demo` at its end), or, with
//! [`PreviewFeed::writing_next_to`], by the feed itself at every series end into a folder next to the
//! series' file (`beamline receive --preview`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use acquisition::blosc::{decompress_validated, validate_chunk};
use acquisition::protocol::{Compression, Dtype, FrameHeader, ImageKey, SeriesEnd, SeriesStart};
use acquisition::receiver::Output;

use super::{FrameKind, LivePreview, Pixels, PreviewError, PreviewGeometry, PreviewProgress};
use crate::geometry::Degrees;
use crate::output::{tiff_name, write_tiff, TiffDepth, WriteError};

/// Which detector rows a feed previews.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreviewRows {
    /// This many evenly spaced rows (`3`: a quarter, the middle, three quarters of the detector).
    Evenly(usize),
    /// These rows.
    Rows(Vec<usize>),
}

impl PreviewRows {
    /// The rows of a `rows`-row detector.
    pub fn choose(&self, rows: usize) -> Vec<usize> {
        match self {
            PreviewRows::Evenly(n) => {
                let n = (*n).max(1);
                (1..=n).map(|k| k * rows / (n + 1)).collect()
            }
            PreviewRows::Rows(r) => r.clone(),
        }
    }
}

impl std::str::FromStr for PreviewRows {
    type Err = String;

    /// `N` (evenly spaced rows) or a comma-separated list of rows `R1,R2,...` (a single row is `R,`).
    fn from_str(s: &str) -> Result<PreviewRows, String> {
        let bad = |p: &str| format!("{p:?} is not a row number: give N (evenly spaced rows) or R1,R2,...");
        if !s.contains(',') {
            let n: usize = s.trim().parse().map_err(|_| bad(s))?;
            return if n == 0 { Err("at least one preview row".into()) } else { Ok(PreviewRows::Evenly(n)) };
        }
        let rows = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| p.parse().map_err(|_| bad(p)))
            .collect::<Result<Vec<usize>, String>>()?;
        if rows.is_empty() {
            return Err("at least one preview row".into());
        }
        Ok(PreviewRows::Rows(rows))
    }
}

/// What went wrong in a feed. A frame that fails is skipped; the file is unaffected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FeedError {
    /// The series' frames cannot be previewed (e.g. a chosen row outside the detector).
    #[error("series {series}: {reason}")]
    Layout {
        /// The series id.
        series: String,
        /// Why.
        reason: PreviewError,
    },
    /// A blosc payload did not decompress.
    #[error("frame {index}: {reason}")]
    Decode {
        /// The frame index.
        index: u64,
        /// The codec's words.
        reason: String,
    },
    /// The preview refused a frame.
    #[error("frame {index}: {reason}")]
    Frame {
        /// The frame index.
        index: u64,
        /// Why.
        reason: PreviewError,
    },
    /// Writing the slices is asked before any series reached the preview.
    #[error("no series reached the preview")]
    NoSeries,
    /// A slice file could not be written.
    #[error("writing the preview: {0}")]
    Write(String),
}

impl From<WriteError> for FeedError {
    fn from(e: WriteError) -> FeedError {
        FeedError::Write(e.to_string())
    }
}

/// Slices a feed wrote by itself at a series end.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenPreview {
    /// The series id.
    pub series: String,
    /// The folder.
    pub dir: PathBuf,
    /// The slice files, one per previewed row.
    pub files: Vec<PathBuf>,
    /// Projections the slices were made from.
    pub projections: usize,
}

/// A live preview of a few rows of whatever series the receiver writes next.
#[derive(Debug)]
pub struct PreviewFeed {
    rows: PreviewRows,
    projections: Option<usize>,
    next_to: Option<Output>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    series: String,
    preview: Option<LivePreview>,
    dtype: Option<Dtype>,
    compressed: bool,
    raw: Vec<u8>,
    error: Option<FeedError>,
    written: Vec<Result<WrittenPreview, FeedError>>,
}

impl PreviewFeed {
    /// A feed previewing `rows` evenly spaced detector rows of a series of `projections` projections.
    pub fn new(rows: usize, projections: usize) -> PreviewFeed {
        PreviewFeed::with_rows(PreviewRows::Evenly(rows), Some(projections))
    }

    /// A feed previewing `rows`. `projections` is how many projections each series holds; `None` takes
    /// it from the series start (the `angles` of its metadata, as `beamline simulate` and `beamline
    /// spread` send, else all its frames: the slices are rescaled by the share of projections received,
    /// so an over-estimate only shows as progress that never reaches its end).
    pub fn with_rows(rows: PreviewRows, projections: Option<usize>) -> PreviewFeed {
        PreviewFeed { rows, projections, next_to: None, state: Mutex::new(State::default()) }
    }

    /// Makes the feed write each series' slices itself when the series ends, into a folder next to the
    /// file the receiver writes to `output`: `F.preview/` for [`Output::File`] `F.h5`, and
    /// `DIR/<series>.preview/` (`-1`, `-2`, ... appended rather than overwriting) for [`Output::Dir`].
    /// What was written is in [`PreviewFeed::written`].
    pub fn writing_next_to(mut self, output: &Output) -> PreviewFeed {
        self.next_to = Some(output.clone());
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A series starts: lays out the preview for its frame shape.
    pub fn series_start(&self, start: &SeriesStart) {
        let (rows, cols) = (start.shape.rows(), start.shape.cols());
        let chosen = self.rows.choose(rows);
        let projections = self.projections.unwrap_or_else(|| projections_of(start));
        let mut st = self.lock();
        let written = std::mem::take(&mut st.written);
        *st = State { series: start.series.clone(), written, ..State::default() };
        match LivePreview::new(PreviewGeometry::centered(rows, cols, projections), &chosen) {
            Ok(p) => {
                st.preview = Some(p);
                st.dtype = Some(start.dtype);
                st.compressed = matches!(start.compression, Compression::Blosc1(_));
            }
            Err(reason) => st.error = Some(FeedError::Layout { series: start.series.clone(), reason }),
        }
    }

    /// One accepted frame, its payload as received (a blosc1 chunk or raw little-endian pixels).
    pub fn frame(&self, header: &FrameHeader, payload: &[u8]) {
        let mut guard = self.lock();
        let st = &mut *guard;
        let (Some(preview), Some(dtype)) = (st.preview.as_mut(), st.dtype) else { return };
        let kind = match header.image_key {
            ImageKey::Projection => FrameKind::Projection,
            ImageKey::Flat => FrameKind::Flat,
            ImageKey::Dark => FrameKind::Dark,
        };
        let g = preview.geometry();
        let bytes = g.rows * g.cols * dtype.size();
        let pixels: &[u8] = if st.compressed {
            st.raw.resize(bytes, 0);
            let decoded = validate_chunk(payload, dtype.size(), bytes)
                .and_then(|_| decompress_validated(payload, &mut st.raw, 1));
            if let Err(e) = decoded {
                st.error = Some(FeedError::Decode { index: header.index.0, reason: e.to_string() });
                return;
            }
            &st.raw
        } else {
            payload
        };
        let typed = decode_le(dtype, pixels);
        if let Err(reason) = preview.on_frame(kind, Degrees(header.angle.0), typed.as_pixels()) {
            st.error = Some(FeedError::Frame { index: header.index.0, reason });
        }
    }

    /// The open series has been closed: with [`PreviewFeed::writing_next_to`], writes its slices.
    pub fn series_end(&self, _end: Option<&SeriesEnd>) {
        let Some(output) = &self.next_to else { return };
        let mut st = self.lock();
        if st.preview.is_none() {
            return;
        }
        let dir = match output {
            Output::File(f) => f.with_extension("preview"),
            Output::Dir(d) => {
                let mut p = d.join(format!("{}.preview", st.series));
                let mut k = 1;
                while p.exists() {
                    p = d.join(format!("{}-{k}.preview", st.series));
                    k += 1;
                }
                p
            }
        };
        let result = write_state(&st, &dir).map(|files| WrittenPreview {
            series: st.series.clone(),
            dir,
            files,
            projections: st.preview.as_ref().map_or(0, |p| p.progress().projections),
        });
        st.written.push(result);
    }

    /// How far the preview has come (`None` before a series started).
    pub fn progress(&self) -> Option<PreviewProgress> {
        self.lock().preview.as_ref().map(LivePreview::progress)
    }

    /// The last error a frame of the current series caused, if any.
    pub fn error(&self) -> Option<FeedError> {
        self.lock().error.clone()
    }

    /// The current preview slices (one `out_size^2` image per previewed row), `None` before a series.
    pub fn slices(&self) -> Option<Vec<Vec<f32>>> {
        self.lock().preview.as_ref().map(LivePreview::slices)
    }

    /// What the feed wrote by itself at series ends (see [`PreviewFeed::writing_next_to`]), oldest first.
    pub fn written(&self) -> Vec<Result<WrittenPreview, FeedError>> {
        self.lock().written.clone()
    }

    /// Writes the current preview slices as float32 TIFFs `dir/slice_<row>.tif`; returns the files.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, FeedError> {
        write_state(&self.lock(), dir)
    }
}

/// Projections a series start announces: `metadata.angles` when present, else every frame.
fn projections_of(start: &SeriesStart) -> usize {
    start
        .metadata
        .get("angles")
        .and_then(serde_json::Value::as_u64)
        .filter(|&n| n > 0)
        .unwrap_or(start.frames)
        .try_into()
        .unwrap_or(usize::MAX)
}

fn write_state(st: &State, dir: &Path) -> Result<Vec<PathBuf>, FeedError> {
    let preview = st.preview.as_ref().ok_or(FeedError::NoSeries)?;
    std::fs::create_dir_all(dir).map_err(|e| FeedError::Write(format!("creating {}: {e}", dir.display())))?;
    let size = preview.geometry().out_size;
    let provenance = serde_json::json!({
        "what": "live preview (incremental filtered backprojection while frames arrived)",
        "series": st.series,
        "progress": format!("{:?}", preview.progress()),
    })
    .to_string();
    let mut files = Vec::new();
    for (row, slice) in preview.rows().iter().zip(preview.slices()) {
        let path = dir.join(tiff_name(*row));
        write_tiff(&path, size, &slice, TiffDepth::F32, &provenance)?;
        files.push(path);
    }
    Ok(files)
}

/// The receiver's writer thread drives the feed: series start lays out the preview, each written frame
/// updates it, series end writes it when the feed writes by itself.
impl acquisition::receiver::FrameObserver for PreviewFeed {
    fn series_start(&self, start: &SeriesStart) {
        PreviewFeed::series_start(self, start);
    }

    fn frame(&self, header: &FrameHeader, payload: &[u8]) {
        PreviewFeed::frame(self, header, payload);
    }

    fn series_end(&self, end: Option<&SeriesEnd>) {
        PreviewFeed::series_end(self, end);
    }
}

/// Little-endian pixels in their element type.
enum Typed {
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    F32(Vec<f32>),
}

impl Typed {
    fn as_pixels(&self) -> Pixels<'_> {
        match self {
            Typed::U8(v) => Pixels::U8(v),
            Typed::U16(v) => Pixels::U16(v),
            Typed::U32(v) => Pixels::U32(v),
            Typed::F32(v) => Pixels::F32(v),
        }
    }
}

fn decode_le(dtype: Dtype, b: &[u8]) -> Typed {
    match dtype {
        Dtype::Uint8 => Typed::U8(b.to_vec()),
        Dtype::Uint16 => Typed::U16(b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect()),
        Dtype::Uint32 => Typed::U32(b.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
        Dtype::Float32 => Typed::F32(b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use acquisition::blosc::Codec;
    use acquisition::phantom::{rasterize_3d_slice, shepp_logan_3d, Detector};
    use acquisition::protocol::{BloscParams, Degrees as WireDegrees, FrameIndex, Shape};
    use acquisition::sim::{FrameGenerator, Schedule, SimConfig};

    fn simulated(feed: &PreviewFeed, size: usize, angles: u64, metadata: serde_json::Value) -> SimConfig {
        let cfg = SimConfig::new(size, size, Dtype::Uint16);
        let schedule = Schedule { darks: 4, flats: 4, angles, range: WireDegrees(180.0) };
        let mut start = SeriesStart::new(
            "t",
            Shape([size as u32, size as u32]),
            Dtype::Uint16,
            Compression::Blosc1(BloscParams::default()),
            schedule.frames(),
        );
        start.metadata = metadata;
        feed.series_start(&start);
        let mut gen = FrameGenerator::new(&cfg);
        let mut codec = Codec::new(BloscParams::default(), 2);
        for i in 0..schedule.frames() {
            let (key, angle) = schedule.frame(i);
            let px = gen.frame(key, angle);
            let header = FrameHeader { index: FrameIndex(i), image_key: key, angle, timestamp: 0.0 };
            feed.frame(&header, codec.compress(&px).unwrap());
        }
        cfg
    }

    /// Relative L2 distance of a preview slice of `row` from the phantom slice.
    fn distance(slice: &[f32], size: usize, row: usize, attenuation: f64) -> f32 {
        let truth = rasterize_3d_slice(&shepp_logan_3d(), &Detector::centered(size, size), row, size);
        let k = (attenuation / size as f64) as f32;
        let (mut num, mut den) = (0f32, 0f32);
        for (t, v) in truth.iter().zip(slice) {
            num += (t * k - v).powi(2);
            den += (t * k).powi(2);
        }
        (num / den).sqrt()
    }

    /// The simulator's frames, blosc-compressed as on the wire, through the feed: the preview of the
    /// middle row looks like the phantom slice, and its TIFF is written.
    #[test]
    fn simulated_blosc_series_previews_the_phantom() {
        let (size, angles) = (48usize, 90u64);
        let feed = PreviewFeed::new(1, angles as usize);
        let cfg = simulated(&feed, size, angles, serde_json::json!({}));
        assert_eq!(feed.error(), None);
        let p = feed.progress().unwrap();
        assert_eq!((p.projections, p.darks, p.flats, p.expected), (angles as usize, 4, 4, angles as usize));

        let row = size / 2;
        let rel = distance(&feed.slices().unwrap()[0], size, row, cfg.attenuation);
        assert!(rel < 0.5, "preview differs from the phantom by {rel} (relative L2)");

        let dir = tempfile::tempdir().unwrap();
        let files = feed.write(dir.path()).unwrap();
        assert_eq!(files, vec![dir.path().join(tiff_name(row))]);
        assert!(files[0].metadata().unwrap().len() as usize > size * size * 4);
        let (w, h, back) = crate::output::read_f32_tiff(&files[0]).unwrap();
        assert_eq!((w, h), (size, size));
        assert_eq!(back, feed.slices().unwrap()[0]);
    }

    /// Without a projection count the feed takes `angles` from the series metadata, or falls back to all
    /// frames; either way the finished slices are the same (the rescaling covers the over-estimate).
    #[test]
    fn projections_come_from_the_series_start_when_not_given() {
        let (size, angles) = (32usize, 60u64);
        let known = PreviewFeed::new(2, angles as usize);
        simulated(&known, size, angles, serde_json::json!({}));
        let from_meta = PreviewFeed::with_rows(PreviewRows::Evenly(2), None);
        simulated(&from_meta, size, angles, serde_json::json!({ "angles": angles }));
        let from_frames = PreviewFeed::with_rows(PreviewRows::Evenly(2), None);
        simulated(&from_frames, size, angles, serde_json::json!({}));
        assert_eq!(from_meta.progress().unwrap().expected, angles as usize);
        assert_eq!(from_frames.progress().unwrap().expected, angles as usize + 8);
        let k = known.slices().unwrap();
        assert_eq!(from_meta.slices().unwrap(), k);
        for (a, b) in from_frames.slices().unwrap().iter().zip(&k) {
            let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
            let peak = b.iter().map(|y| y.abs()).fold(0f32, f32::max);
            assert!(worst <= 1e-5 * peak.max(1e-12), "rescaled slice differs by {worst} (peak {peak})");
        }
    }

    /// Writing by itself: at the series end the slices land next to the receiver's file.
    #[test]
    fn writes_next_to_the_output_at_the_series_end() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("scan.h5");
        let feed =
            PreviewFeed::with_rows(PreviewRows::Rows(vec![5, 20]), None).writing_next_to(&Output::File(file.clone()));
        simulated(&feed, 32, 30, serde_json::json!({ "angles": 30 }));
        assert!(feed.written().is_empty());
        feed.series_end(None);
        let written = feed.written();
        let w = written[0].as_ref().unwrap();
        assert_eq!(w.dir, dir.path().join("scan.preview"));
        assert_eq!(w.files, vec![w.dir.join(tiff_name(5)), w.dir.join(tiff_name(20))]);
        assert_eq!(w.projections, 30);
        assert!(w.files.iter().all(|f| f.is_file()));

        let feed =
            PreviewFeed::with_rows(PreviewRows::Evenly(1), None).writing_next_to(&Output::Dir(dir.path().into()));
        for _ in 0..2 {
            simulated(&feed, 16, 10, serde_json::json!({}));
            feed.series_end(None);
        }
        let dirs: Vec<PathBuf> = feed.written().into_iter().map(|w| w.unwrap().dir).collect();
        assert_eq!(dirs, vec![dir.path().join("t.preview"), dir.path().join("t-1.preview")]);
    }

    #[test]
    fn a_row_outside_the_detector_is_a_layout_error() {
        let feed = PreviewFeed::with_rows(PreviewRows::Rows(vec![40]), Some(10));
        simulated(&feed, 16, 10, serde_json::json!({}));
        assert!(matches!(feed.error(), Some(FeedError::Layout { .. })), "{:?}", feed.error());
        assert_eq!(feed.write(Path::new("/nonexistent")), Err(FeedError::NoSeries));
    }

    #[test]
    fn rows_parse_as_a_count_or_a_list() {
        assert_eq!("3".parse::<PreviewRows>(), Ok(PreviewRows::Evenly(3)));
        assert_eq!("10, 64,100".parse::<PreviewRows>(), Ok(PreviewRows::Rows(vec![10, 64, 100])));
        assert_eq!("7,".parse::<PreviewRows>(), Ok(PreviewRows::Rows(vec![7])));
        assert!("0".parse::<PreviewRows>().is_err());
        assert!("a,b".parse::<PreviewRows>().is_err());
        assert_eq!(PreviewRows::Evenly(3).choose(64), vec![16, 32, 48]);
    }

    #[test]
    fn a_corrupt_payload_is_reported_not_fatal() {
        let start = SeriesStart::new("t", Shape([8, 8]), Dtype::Uint16, Compression::Blosc1(BloscParams::default()), 3);
        let feed = PreviewFeed::new(2, 1);
        feed.series_start(&start);
        let header =
            FrameHeader { index: FrameIndex(0), image_key: ImageKey::Dark, angle: WireDegrees(0.0), timestamp: 0.0 };
        feed.frame(&header, &[1, 2, 3]);
        assert!(matches!(feed.error(), Some(FeedError::Decode { index: 0, .. })), "{:?}", feed.error());
        assert_eq!(feed.progress().unwrap().darks, 0);
    }
}
