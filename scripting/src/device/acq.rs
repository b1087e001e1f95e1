//! The detector that drives the real acquisition path: frames from the acquisition simulator, blosc
//! compressed, pushed over ZeroMQ ([`SeriesSender`]) to a receiver writing the NXtomo file. By default each
//! series gets its own in-process receiver on a thread, writing `<output_dir>/<series>.h5`; with
//! `[detector] endpoint` frames go to an external `beamline receive` instead.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use acquisition::curve::CurveClient;
use acquisition::protocol::{
    self, now_timestamp, BloscParams, Compression, Degrees, Dtype, FrameHeader, FrameIndex, SeriesStart, Shape,
};
use acquisition::receiver::{Output, Receiver, ReceiverConfig, ReceiverThread};
use acquisition::sender::SeriesSender;
use acquisition::sim::{FrameGenerator, Scene, SimConfig};

use super::detector::{Detector, FrameCounts, FrameRequest, SeriesInfo, SeriesStatus, SeriesSummary};
use super::DeviceError;
use crate::config::{secs, DetectorConfig, RoiConfig};

/// The open series: its sender, and the receiver writing its file when in-process.
struct Open {
    name: String,
    sender: SeriesSender,
    receiver: Option<(ReceiverThread, PathBuf)>,
    pending: Option<FrameHeader>,
    kept: u64,
    /// `detector.series`, open from stage to unstage: marks this thread as the producer of the `zmq`
    /// queue the receiver waits on (`feeds`), so the diagnosis finds the sender in the logs.
    _series: tracing::Span,
}

struct State {
    generator: FrameGenerator,
    pixels: Vec<u8>,
    open: Option<Open>,
    counts: Option<FrameCounts>,
}

/// The simulated detector on the real acquisition path.
pub struct AcquisitionDetector {
    name: String,
    readout: Duration,
    shape: Shape,
    output_dir: PathBuf,
    endpoint: Option<String>,
    curve: Option<CurveClient>,
    rois: Vec<RoiConfig>,
    state: Mutex<State>,
}

impl AcquisitionDetector {
    /// A detector for `cfg`; files go to `output_dir` (overriding the configuration's) when given. Checks
    /// that the folder can be created.
    /// `seed` seeds the simulated noise.
    pub fn start(
        cfg: &DetectorConfig,
        output_dir: Option<&Path>,
        seed: u64,
    ) -> Result<AcquisitionDetector, DeviceError> {
        let dir = output_dir.map(Path::to_path_buf).or_else(|| cfg.output_dir.clone()).unwrap_or_else(|| ".".into());
        if cfg.endpoint.is_none() {
            std::fs::create_dir_all(&dir).map_err(|e| {
                DeviceError::new(&cfg.name, format!("cannot create output folder {}: {e}", dir.display()))
            })?;
        }
        let curve = match (&cfg.curve_secret, &cfg.curve_server, &cfg.endpoint) {
            (None, None, _) => None,
            (Some(s), Some(p), Some(_)) => {
                Some(CurveClient::from_files(s, p).map_err(|e| DeviceError::new(&cfg.name, e.to_string()))?)
            }
            _ => {
                return Err(DeviceError::new(
                    &cfg.name,
                    "CURVE needs [detector] endpoint, curve_secret and curve_server together",
                ))
            }
        };
        let mut sim = SimConfig::new(cfg.rows as usize, cfg.cols as usize, Dtype::Uint16);
        sim.seed = seed;
        Ok(AcquisitionDetector {
            name: cfg.name.clone(),
            readout: secs(cfg.readout),
            shape: Shape([cfg.rows, cfg.cols]),
            output_dir: dir,
            endpoint: cfg.endpoint.clone(),
            curve,
            rois: cfg.rois.clone(),
            state: Mutex::new(State {
                generator: FrameGenerator::new(&sim),
                pixels: Vec::new(),
                open: None,
                counts: None,
            }),
        })
    }

    fn err(&self, e: impl std::fmt::Display) -> DeviceError {
        DeviceError::new(&self.name, e.to_string())
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, DeviceError> {
        self.state.lock().map_err(|_| self.err("internal state poisoned"))
    }

    /// A file name in the output folder that does not exist yet.
    fn free_path(&self, series: &str) -> PathBuf {
        let mut p = self.output_dir.join(format!("{series}.h5"));
        let mut k = 1;
        while p.exists() {
            p = self.output_dir.join(format!("{series}-{k}.h5"));
            k += 1;
        }
        p
    }

    fn connect(&self, series: &str) -> Result<(SeriesSender, Option<(ReceiverThread, PathBuf)>), DeviceError> {
        if let Some(ep) = &self.endpoint {
            let s = SeriesSender::open_secure(ep, false, self.curve.as_ref()).map_err(|e| self.err(e))?;
            return Ok((s, None));
        }
        let path = self.free_path(series);
        let mut rc = ReceiverConfig::new(Output::File(path.clone()));
        rc.endpoint = "tcp://127.0.0.1:*".into();
        let receiver = Receiver::bind(rc).map_err(|e| self.err(e))?;
        let endpoint = receiver.endpoint();
        let thread = receiver.spawn().map_err(|e| self.err(e))?;
        let sender = SeriesSender::connect(&endpoint).map_err(|e| self.err(e))?;
        Ok((sender, Some((thread, path))))
    }
}

/// Checks a series name against the wire protocol's rules (it names the file).
pub fn check_series_name(name: &str) -> Result<(), String> {
    protocol::check_series_id(name).map_err(|e| e.to_string())
}

impl AcquisitionDetector {
    /// Total and region sums of a frame of little-endian u16 pixels.
    fn sums(&self, pixels: &[u8]) -> FrameCounts {
        let cols = self.shape.cols();
        let value = |i: usize| pixels.get(2 * i..2 * i + 2).map_or(0.0, |b| u16::from_le_bytes([b[0], b[1]]) as f64);
        let total = (0..pixels.len() / 2).map(value).sum();
        let rois = self
            .rois
            .iter()
            .map(|r| {
                let [y0, y1, x0, x1] = r.roi.map(|v| v as usize);
                let sum = (y0..y1).flat_map(|y| (x0..x1).map(move |x| y * cols + x)).map(value).sum();
                (r.name.clone(), sum)
            })
            .collect();
        FrameCounts { total, rois }
    }
}

impl Detector for AcquisitionDetector {
    fn roi_names(&self) -> Vec<String> {
        self.rois.iter().map(|r| r.name.clone()).collect()
    }

    fn counts(&self) -> Option<FrameCounts> {
        self.state.lock().ok().and_then(|s| s.counts.clone())
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn readout(&self) -> Duration {
        self.readout
    }

    fn stage(&self, info: &SeriesInfo) -> Result<(), DeviceError> {
        let mut st = self.lock()?;
        if st.open.is_some() {
            return Err(self.err("a series is already staged"));
        }
        let mut start = SeriesStart::new(
            info.name.clone(),
            self.shape,
            Dtype::Uint16,
            Compression::Blosc1(BloscParams::default()),
            info.frames_expected,
        );
        start.metadata = info.metadata.clone();
        let series = tracing::debug_span!("detector.series", feeds = "zmq", detector = %self.name, series = %info.name);
        let (mut sender, receiver) = self.connect(&info.name)?;
        if let Err(e) = sender.start_series(&start) {
            if let Some((r, _)) = receiver {
                let _ = r.stop_and_join();
            }
            return Err(self.err(e));
        }
        st.open = Some(Open { name: info.name.clone(), sender, receiver, pending: None, kept: 0, _series: series });
        Ok(())
    }

    fn trigger(&self, frame: &FrameRequest) -> Result<(), DeviceError> {
        let mut st = self.lock()?;
        let State { generator, pixels, open, counts } = &mut *st;
        let open = open.as_mut().ok_or_else(|| self.err("trigger with no series staged"))?;
        let _span = tracing::trace_span!("detector.frame", frame = frame.index).entered();
        let scene = Scene { shift: frame.shift_px, scale: frame.scale };
        generator.frame_into_scene(frame.key, Degrees(frame.angle), &scene, pixels);
        *counts = Some(self.sums(pixels));
        open.pending = Some(FrameHeader {
            index: FrameIndex(open.kept),
            image_key: frame.key,
            angle: Degrees(frame.angle),
            timestamp: now_timestamp(),
        });
        Ok(())
    }

    fn commit(&self) -> Result<(), DeviceError> {
        let mut st = self.lock()?;
        let State { pixels, open, .. } = &mut *st;
        let open = open.as_mut().ok_or_else(|| self.err("commit with no series staged"))?;
        let header = open.pending.take().ok_or_else(|| self.err("commit with no frame pending"))?;
        let _span = tracing::trace_span!("detector.send", frame = header.index.0, bytes = pixels.len()).entered();
        open.sender.send_frame(&header, pixels).map_err(|e| self.err(e))?;
        open.kept += 1;
        Ok(())
    }

    fn discard(&self) -> Result<(), DeviceError> {
        let mut st = self.lock()?;
        if let Some(o) = st.open.as_mut() {
            o.pending = None;
        }
        Ok(())
    }

    fn unstage(&self, status: SeriesStatus, metadata: serde_json::Value) -> Result<SeriesSummary, DeviceError> {
        let mut st = self.lock()?;
        let mut open = st.open.take().ok_or_else(|| self.err("unstage with no series staged"))?;
        let sent = open.sender.end_series(status, Some(metadata));
        let file = match open.receiver.take() {
            None => None,
            Some((thread, path)) => {
                // The receiver returns by itself once the series end is written (Output::File mode).
                let _w = tracing::info_span!("wait.receiver", series = %open.name).entered();
                let summary = if sent.is_ok() { thread.join() } else { thread.stop_and_join() };
                let summary = summary.map_err(|e| self.err(format!("receiver writing {}: {e}", path.display())))?;
                if let Some(s) = summary.series.first() {
                    if s.received != open.kept {
                        return Err(self.err(format!(
                            "{} holds {} frames but {} were sent",
                            s.path.display(),
                            s.received,
                            open.kept
                        )));
                    }
                }
                Some(path)
            }
        };
        sent.map_err(|e| self.err(e))?;
        Ok(SeriesSummary { name: open.name, file, frames: open.kept, status })
    }
}
