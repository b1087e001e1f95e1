//! The receiver side of the live preview: turns the frames a receiver accepts (header + payload exactly as
//! received) into [`LivePreview`] updates, and writes the preview slices at the end.
//!
//! A [`PreviewFeed`] is shared (`Arc`) between the receiver's writer thread, which calls
//! [`PreviewFeed::series_start`] and [`PreviewFeed::frame`], and whoever shows progress.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use acquisition::blosc::{decompress_validated, validate_chunk};
use acquisition::protocol::{Compression, Dtype, FrameHeader, SeriesStart};
use reconstruct::output::{tiff_name, write_tiff, TiffDepth};
use reconstruct::preview::{LivePreview, Pixels, PreviewGeometry, PreviewProgress};

/// A live preview of a few rows of whatever series the receiver writes next.
#[derive(Debug)]
pub struct PreviewFeed {
    rows: usize,
    projections: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    preview: Option<LivePreview>,
    dtype: Option<Dtype>,
    compressed: bool,
    raw: Vec<u8>,
    error: Option<String>,
}

impl PreviewFeed {
    /// A feed previewing `rows` evenly spaced detector rows of a series of `projections` projections.
    pub fn new(rows: usize, projections: usize) -> PreviewFeed {
        PreviewFeed { rows: rows.max(1), projections, state: Mutex::new(State::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A series starts: lays out the preview for its frame shape.
    pub fn series_start(&self, start: &SeriesStart) {
        let (rows, cols) = (start.shape.rows(), start.shape.cols());
        let chosen: Vec<usize> = (1..=self.rows).map(|k| k * rows / (self.rows + 1)).collect();
        let mut st = self.lock();
        *st = State::default();
        match LivePreview::new(PreviewGeometry::centered(rows, cols, self.projections), &chosen) {
            Ok(p) => {
                st.preview = Some(p);
                st.dtype = Some(start.dtype);
                st.compressed = matches!(start.compression, Compression::Blosc1(_));
            }
            Err(e) => st.error = Some(e.to_string()),
        }
    }

    /// One accepted frame, its payload as received (a blosc1 chunk or raw little-endian pixels).
    pub fn frame(&self, header: &FrameHeader, payload: &[u8]) {
        let mut guard = self.lock();
        let st = &mut *guard;
        let (Some(preview), Some(dtype)) = (st.preview.as_mut(), st.dtype) else { return };
        let g = preview.geometry();
        let bytes = g.rows * g.cols * dtype.size();
        let pixels: &[u8] = if st.compressed {
            st.raw.resize(bytes, 0);
            let decoded = validate_chunk(payload, dtype.size(), bytes)
                .and_then(|_| decompress_validated(payload, &mut st.raw, 1));
            if let Err(e) = decoded {
                st.error = Some(format!("frame {}: {e}", header.index));
                return;
            }
            &st.raw
        } else {
            payload
        };
        let typed = decode_le(dtype, pixels);
        let result = preview.on_frame(header.image_key, header.angle, typed.as_pixels());
        if let Err(e) = result {
            st.error = Some(format!("frame {}: {e}", header.index));
        }
    }

    /// How far the preview has come (`None` before a series started).
    pub fn progress(&self) -> Option<PreviewProgress> {
        self.lock().preview.as_ref().map(LivePreview::progress)
    }

    /// The last error a frame caused, if any (the preview skips such frames; the file is unaffected).
    pub fn error(&self) -> Option<String> {
        self.lock().error.clone()
    }

    /// Writes the current preview slices as float32 TIFFs `dir/slice_<row>.tif`; returns the files.
    pub fn write(&self, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
        let st = self.lock();
        let preview = st.preview.as_ref().ok_or_else(|| anyhow::anyhow!("no series reached the preview"))?;
        std::fs::create_dir_all(dir)?;
        let size = preview.geometry().out_size;
        let provenance = serde_json::json!({
            "what": "live preview (incremental filtered backprojection while frames arrived)",
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
}

/// The receiver's writer thread drives the feed: series start lays out the preview, each written frame
/// updates it.
impl acquisition::receiver::FrameObserver for PreviewFeed {
    fn series_start(&self, start: &SeriesStart) {
        PreviewFeed::series_start(self, start);
    }

    fn frame(&self, header: &FrameHeader, payload: &[u8]) {
        PreviewFeed::frame(self, header, payload);
    }

    /// Nothing to do: the preview stays as it is until [`PreviewFeed::write`] (or the next series start).
    fn series_end(&self, _end: Option<&acquisition::protocol::SeriesEnd>) {}
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
    use acquisition::protocol::{BloscParams, Degrees as WireDegrees, FrameIndex, ImageKey, Shape};
    use acquisition::sim::{FrameGenerator, Schedule, SimConfig};

    /// The simulator's frames, blosc-compressed as on the wire, through the feed: the preview of the
    /// middle row looks like the phantom slice, and its TIFF is written.
    #[test]
    fn simulated_blosc_series_previews_the_phantom() {
        let (size, angles) = (48usize, 90u64);
        let cfg = SimConfig::new(size, size, Dtype::Uint16);
        let schedule = Schedule { darks: 4, flats: 4, angles, range: WireDegrees(180.0) };
        let start = SeriesStart::new(
            "t",
            Shape([size as u32, size as u32]),
            Dtype::Uint16,
            Compression::Blosc1(BloscParams::default()),
            schedule.frames(),
        );
        let feed = PreviewFeed::new(1, angles as usize);
        feed.series_start(&start);
        let mut gen = FrameGenerator::new(&cfg);
        let mut codec = Codec::new(BloscParams::default(), 2);
        for i in 0..schedule.frames() {
            let (key, angle) = schedule.frame(i);
            let px = gen.frame(key, angle);
            let header = FrameHeader { index: FrameIndex(i), image_key: key, angle, timestamp: 0.0 };
            feed.frame(&header, codec.compress(&px).unwrap());
        }
        assert_eq!(feed.error(), None);
        let p = feed.progress().unwrap();
        assert_eq!((p.projections, p.darks, p.flats, p.expected), (angles as usize, 4, 4, angles as usize));

        let row = size / 2;
        let truth = rasterize_3d_slice(&shepp_logan_3d(), &Detector::centered(size, size), row, size);
        let k = (cfg.attenuation / size as f64) as f32;
        let slice = &feed.lock().preview.as_ref().unwrap().slices()[0];
        let (mut num, mut den) = (0f32, 0f32);
        for (t, v) in truth.iter().zip(slice) {
            num += (t * k - v).powi(2);
            den += (t * k).powi(2);
        }
        let rel = (num / den).sqrt();
        assert!(rel < 0.5, "preview differs from the phantom by {rel} (relative L2)");

        let dir = tempfile::tempdir().unwrap();
        let files = feed.write(dir.path()).unwrap();
        assert_eq!(files, vec![dir.path().join(tiff_name(row))]);
        assert!(files[0].metadata().unwrap().len() as usize > size * size * 4);
    }

    #[test]
    fn a_corrupt_payload_is_reported_not_fatal() {
        let start = SeriesStart::new("t", Shape([8, 8]), Dtype::Uint16, Compression::Blosc1(BloscParams::default()), 3);
        let feed = PreviewFeed::new(2, 1);
        feed.series_start(&start);
        let header = FrameHeader {
            index: FrameIndex(0),
            image_key: ImageKey::Dark,
            angle: acquisition::protocol::Degrees(0.0),
            timestamp: 0.0,
        };
        feed.frame(&header, &[1, 2, 3]);
        assert!(feed.error().is_some());
        assert_eq!(feed.progress().unwrap().darks, 0);
    }
}
