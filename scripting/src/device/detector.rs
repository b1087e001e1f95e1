//! The detector trait, the frame and series types scans hand to it, and a detector that only records what it
//! was asked to do (dry runs, tests, the engine benchmark).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use super::DeviceError;

/// NXtomo `image_key`: what a frame is (the workspace's one type, from [`acquisition::nexus`]).
pub use acquisition::nexus::ImageKey;

/// One frame a scan asks for.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FrameRequest {
    /// Index of the frame in its series, counting only kept frames (0, 1, 2, ... without gaps).
    pub index: u64,
    /// What the frame is.
    pub key: ImageKey,
    /// Rotation angle, degrees.
    pub angle: f64,
    /// Exposure time.
    pub exposure: Duration,
    /// Where the sample image is, `[columns, rows]` pixels from its home (simulated detectors).
    pub shift_px: [f64; 2],
    /// Counts relative to nominal: exposure and beam intensity (simulated detectors).
    pub scale: f64,
}

/// Sums over the last frame: the detector's counters.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FrameCounts {
    /// Sum of every pixel.
    pub total: f64,
    /// `(name, sum)` per configured region of interest.
    pub rois: Vec<(String, f64)>,
}

/// What a series (one scan, one file) is about, given when it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesInfo {
    /// Name of the scan; the file name is derived from it.
    pub name: String,
    /// Frames the scan plans to take.
    pub frames_expected: u64,
    /// Metadata known at the start (provenance, scan parameters), JSON.
    pub metadata: serde_json::Value,
}

/// How a series ended: the same status the wire protocol carries and the file records.
pub use acquisition::protocol::SeriesStatus;

/// What a finished series produced.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SeriesSummary {
    /// Name of the scan.
    pub name: String,
    /// The file written, when the detector writes one.
    pub file: Option<PathBuf>,
    /// Frames kept.
    pub frames: u64,
    /// How it ended.
    pub status: SeriesStatus,
}

/// A detector. A scan stages a series, then per frame triggers, waits the exposure and either commits the
/// frame or discards it (the beam was lost during it and the point is re-taken), then unstages with a status.
pub trait Detector: Send + Sync {
    /// Configured name.
    fn name(&self) -> &str;
    /// Dead time between frames (read-out).
    fn readout(&self) -> Duration;
    /// Starts a series.
    fn stage(&self, info: &SeriesInfo) -> Result<(), DeviceError>;
    /// Starts one exposure; the frame stays pending until [`Detector::commit`] or [`Detector::discard`].
    fn trigger(&self, frame: &FrameRequest) -> Result<(), DeviceError>;
    /// Keeps the pending frame.
    fn commit(&self) -> Result<(), DeviceError>;
    /// Drops the pending frame.
    fn discard(&self) -> Result<(), DeviceError>;
    /// Ends the series with `status` and final `metadata` (stored in the file); the file is complete after.
    fn unstage(&self, status: SeriesStatus, metadata: serde_json::Value) -> Result<SeriesSummary, DeviceError>;
    /// Names of the region-of-interest counters [`Detector::counts`] reports, in order.
    fn roi_names(&self) -> Vec<String> {
        Vec::new()
    }
    /// Sums over the last triggered frame; `None` for a detector that makes no pixels.
    fn counts(&self) -> Option<FrameCounts> {
        None
    }
}

/// A series as recorded by [`RecordingDetector`].
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedSeries {
    /// Start information.
    pub info: SeriesInfo,
    /// Kept frames in order.
    pub frames: Vec<FrameRequest>,
    /// Number of frames discarded (re-taken).
    pub discarded: u64,
    /// End status and metadata, once unstaged.
    pub end: Option<(SeriesStatus, serde_json::Value)>,
}

#[derive(Debug, Default)]
struct Recording {
    series: Vec<RecordedSeries>,
    pending: Option<FrameRequest>,
}

/// A detector that writes nothing and remembers every series and frame.
#[derive(Debug)]
pub struct RecordingDetector {
    name: String,
    readout: Duration,
    keep_frames: bool,
    rec: Mutex<Recording>,
}

impl RecordingDetector {
    /// A recording detector; with `keep_frames` false only counts are kept (long benchmarks).
    pub fn new(name: &str, readout: Duration, keep_frames: bool) -> RecordingDetector {
        RecordingDetector { name: name.to_string(), readout, keep_frames, rec: Mutex::new(Recording::default()) }
    }

    /// Every series so far.
    pub fn series(&self) -> Vec<RecordedSeries> {
        self.rec.lock().map(|r| r.series.clone()).unwrap_or_default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Recording>, DeviceError> {
        self.rec.lock().map_err(|_| DeviceError::new(&self.name, "internal state poisoned"))
    }

    fn current<'a>(&self, r: &'a mut Recording) -> Result<&'a mut RecordedSeries, DeviceError> {
        match r.series.last_mut() {
            Some(s) if s.end.is_none() => Ok(s),
            _ => Err(DeviceError::new(&self.name, "no series is staged")),
        }
    }
}

impl Detector for RecordingDetector {
    fn name(&self) -> &str {
        &self.name
    }
    fn readout(&self) -> Duration {
        self.readout
    }
    fn stage(&self, info: &SeriesInfo) -> Result<(), DeviceError> {
        let mut r = self.lock()?;
        if r.series.last().is_some_and(|s| s.end.is_none()) {
            return Err(DeviceError::new(&self.name, "a series is already staged"));
        }
        r.series.push(RecordedSeries { info: info.clone(), frames: Vec::new(), discarded: 0, end: None });
        Ok(())
    }
    fn trigger(&self, frame: &FrameRequest) -> Result<(), DeviceError> {
        let mut r = self.lock()?;
        self.current(&mut r)?;
        r.pending = Some(frame.clone());
        Ok(())
    }
    fn commit(&self) -> Result<(), DeviceError> {
        let mut r = self.lock()?;
        let f = r.pending.take().ok_or_else(|| DeviceError::new(&self.name, "no frame is pending"))?;
        let keep = self.keep_frames;
        let s = self.current(&mut r)?;
        if keep || s.frames.is_empty() {
            s.frames.push(f);
        } else if let Some(last) = s.frames.last_mut() {
            *last = f;
        }
        Ok(())
    }
    fn discard(&self) -> Result<(), DeviceError> {
        let mut r = self.lock()?;
        r.pending = None;
        self.current(&mut r)?.discarded += 1;
        Ok(())
    }
    fn unstage(&self, status: SeriesStatus, metadata: serde_json::Value) -> Result<SeriesSummary, DeviceError> {
        let mut r = self.lock()?;
        r.pending = None;
        let s = self.current(&mut r)?;
        s.end = Some((status, metadata));
        let frames = if self.keep_frames { s.frames.len() as u64 } else { s.frames.last().map_or(0, |f| f.index + 1) };
        Ok(SeriesSummary { name: s.info.name.clone(), file: None, frames, status })
    }
}
