//! The simulated detector: frames of a 3-D Shepp-Logan phantom under Beer-Lambert attenuation, with a
//! non-uniform beam, per-pixel gain, shot noise and read noise; flats and darks to match.
//!
//! [`FrameGenerator`] makes one frame on demand (a scan's detector device drives it point by point);
//! [`simulate_series`] sends a whole series (darks, flats, projections) through a [`SeriesSender`].

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal, StandardNormal};

use crate::phantom::{self, Detector, Ellipsoid};
use crate::protocol::{
    now_timestamp, Compression, Degrees, Dtype, FrameHeader, FrameIndex, ImageKey, SeriesStart, SeriesStatus, Shape,
};
use crate::sender::{SendError, SeriesSender};

/// Detector and sample settings of the simulation.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Detector rows (height).
    pub rows: usize,
    /// Detector columns (width).
    pub cols: usize,
    /// Pixel type of the frames.
    pub dtype: Dtype,
    /// Seed of the noise and of the fixed gain pattern.
    pub seed: u64,
    /// Attenuation, in 1/(phantom intensity x pixel) times the field of view's width (the detector width, or
    /// twice the axis's distance to the far edge with [`SimConfig::axis`]): `exp(-attenuation * L / width)`.
    /// The default 4 leaves about 40 % of the beam through the middle of the head.
    pub attenuation: f64,
    /// Column the rotation axis projects onto (`None`: the middle). An axis near one edge makes a
    /// half-acquisition (offset-axis) scan: the phantom fills the circle the far edge sweeps, so each
    /// projection sees a little more than half of it ([`Detector::offset_axis`]).
    pub axis: Option<f64>,
}

impl SimConfig {
    /// A `rows x cols` detector of `dtype` with the default seed and attenuation.
    pub fn new(rows: usize, cols: usize, dtype: Dtype) -> SimConfig {
        SimConfig { rows, cols, dtype, seed: 1, attenuation: 4.0, axis: None }
    }

    /// The detector geometry the frames are projected on: centred, or with the axis at [`SimConfig::axis`].
    pub fn detector(&self) -> Detector {
        let (rows, cols) = (self.rows.max(1), self.cols.max(1));
        match self.axis {
            Some(c) => Detector::offset_axis(rows, cols, c),
            None => Detector::centered(rows, cols),
        }
    }
}

/// Where the sample is and how bright the beam is for one frame of [`FrameGenerator::frame_into_scene`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scene {
    /// Displacement of the sample, `[columns, rows]` in pixels (positive rows: up, towards row 0).
    pub shift: [f64; 2],
    /// Beam counts relative to the reference (exposure / reference exposure x beam intensity); 1 by default.
    pub scale: f64,
}

impl Default for Scene {
    fn default() -> Self {
        Scene { shift: [0.0, 0.0], scale: 1.0 }
    }
}

/// Counts the detector would record for one pixel; scaled to the dtype's range.
#[derive(Debug, Clone, Copy)]
struct Levels {
    full_beam: f32,
    dark: f32,
    read_noise: f32,
    max: f32,
}

fn levels(dtype: Dtype) -> Levels {
    match dtype {
        Dtype::Uint8 => Levels { full_beam: 200.0, dark: 5.0, read_noise: 0.7, max: 255.0 },
        Dtype::Uint16 => Levels { full_beam: 40_000.0, dark: 100.0, read_noise: 3.0, max: 65_535.0 },
        Dtype::Uint32 => Levels { full_beam: 1.0e6, dark: 1000.0, read_noise: 10.0, max: 4.29e9 },
        Dtype::Float32 => Levels { full_beam: 40_000.0, dark: 100.0, read_noise: 3.0, max: f32::MAX },
    }
}

/// Makes detector frames one at a time. Reuses its buffers; not thread safe (one per thread).
pub struct FrameGenerator {
    cfg: SimConfig,
    det: Detector,
    phantom: Vec<Ellipsoid>,
    /// Mean counts of an open beam per pixel (beam profile x gain), without dark.
    beam: Vec<f32>,
    levels: Levels,
    rng: rand::rngs::StdRng,
    counts: Vec<f32>,
    /// Line integrals of the last projection angle (repeated exposures at one angle reuse them).
    cached: Option<((f64, f64, f64), Vec<f32>)>,
}

impl FrameGenerator {
    /// A generator for `cfg`; builds the beam profile and the fixed gain pattern.
    pub fn new(cfg: &SimConfig) -> FrameGenerator {
        let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
        let lv = levels(cfg.dtype);
        let (rows, cols) = (cfg.rows.max(1), cfg.cols.max(1));
        let mut beam = Vec::with_capacity(rows * cols);
        for r in 0..rows {
            let y = (r as f32 + 0.5) / rows as f32 * 2.0 - 1.0;
            for c in 0..cols {
                let x = (c as f32 + 0.5) / cols as f32 * 2.0 - 1.0;
                let profile = (-(0.35 * x * x + 0.8 * y * y)).exp();
                let gain: f32 = 1.0 + 0.02 * rng.sample::<f32, _>(StandardNormal);
                beam.push(lv.full_beam * profile * gain);
            }
        }
        FrameGenerator {
            cfg: cfg.clone(),
            det: cfg.detector(),
            phantom: phantom::shepp_logan_3d(),
            beam,
            levels: lv,
            rng,
            counts: Vec::new(),
            cached: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// Bytes of one frame.
    pub fn frame_bytes(&self) -> usize {
        self.beam.len() * self.cfg.dtype.size()
    }

    /// Exact line integrals of the phantom at `angle` (`[row][col]`, intensity x pixels).
    pub fn line_integrals(&self, angle: Degrees) -> Vec<f32> {
        phantom::project_3d(&self.phantom, &self.det, angle.to_radians())
    }

    /// Writes one frame's little-endian pixels into `out` (resized to [`frame_bytes`](Self::frame_bytes)):
    /// the sample on the axis, the reference exposure, full beam.
    pub fn frame_into(&mut self, key: ImageKey, angle: Degrees, out: &mut Vec<u8>) {
        self.frame_into_scene(key, angle, &Scene::default(), out);
    }

    /// Like [`frame_into`](Self::frame_into) for a sample displaced by `scene.shift` pixels and a beam scaled
    /// by `scene.scale` (exposure and beam intensity relative to the reference): a sample moved out of the
    /// field of view gives a flat, a beam dump or a zero exposure gives a dark. Shot noise follows the mean.
    pub fn frame_into_scene(&mut self, key: ImageKey, angle: Degrees, scene: &Scene, out: &mut Vec<u8>) {
        let n = self.beam.len();
        let scale = if scene.scale.is_finite() { scene.scale.max(0.0) as f32 } else { 0.0 };
        self.counts.clear();
        match key {
            ImageKey::Dark | ImageKey::Invalid => self.counts.resize(n, 0.0),
            ImageKey::Flat => {
                let fluct = scale * (1.0 + 0.005 * self.rng.sample::<f32, _>(StandardNormal));
                self.counts.extend(self.beam.iter().map(|b| b * fluct));
            }
            ImageKey::Projection => {
                // Per pixel of the field of view's width (2 x pixels per unit; the detector width when centred).
                let k = (self.cfg.attenuation / (2.0 * self.det.pixels_per_unit)) as f32;
                let key = (angle.0, scene.shift[0], scene.shift[1]);
                if self.cached.as_ref().is_none_or(|(a, _)| *a != key) {
                    let li = self.shifted_line_integrals(angle, scene.shift);
                    self.cached = Some((key, li));
                }
                let li = self.cached.as_ref().map(|(_, li)| li.as_slice()).unwrap_or_default();
                self.counts.extend(self.beam.iter().zip(li).map(|(b, l)| scale * b * (-k * l).exp()));
            }
        }
        let lv = self.levels;
        let read = Normal::new(0.0f32, lv.read_noise).unwrap_or_else(|_| Normal::new(0.0, 1.0).expect("unit normal"));
        out.clear();
        out.reserve(self.frame_bytes());
        for &mean in &self.counts {
            // Shot noise (Gaussian approximation of Poisson) plus read noise on top of the dark level.
            let z: f32 = self.rng.sample(StandardNormal);
            let v = (lv.dark + mean + z * mean.sqrt() + read.sample(&mut self.rng)).clamp(0.0, lv.max);
            match self.cfg.dtype {
                Dtype::Uint8 => out.push(v.round() as u8),
                Dtype::Uint16 => out.extend_from_slice(&(v.round() as u16).to_le_bytes()),
                Dtype::Uint32 => out.extend_from_slice(&(v.round() as u32).to_le_bytes()),
                Dtype::Float32 => out.extend_from_slice(&v.to_le_bytes()),
            }
        }
    }

    /// Line integrals of the phantom displaced by `shift = [columns, rows]` pixels (rows: towards row 0,
    /// i.e. up). Columns move exactly (the axis moves); rows are interpolated linearly between whole rows.
    fn shifted_line_integrals(&self, angle: Degrees, shift: [f64; 2]) -> Vec<f32> {
        let rows = self.det.rows;
        let cols = self.det.cols.max(1);
        let sx = if shift[0].is_finite() { shift[0] } else { 0.0 };
        let sy = if shift[1].is_finite() { shift[1] } else { 0.0 };
        // Far out of the field of view: nothing to project.
        if sx.abs() > 4.0 * cols as f64 || sy.abs() > 4.0 * rows.max(1) as f64 {
            return vec![0.0; rows * cols];
        }
        let det = Detector { center: self.det.center + sx, ..self.det };
        let li = phantom::project_3d(&self.phantom, &det, angle.to_radians());
        if sy == 0.0 {
            return li;
        }
        let mut out = vec![0f32; rows * cols];
        let row_at = |r: isize| -> Option<&[f32]> {
            (r >= 0 && (r as usize) < rows).then(|| &li[r as usize * cols..(r as usize + 1) * cols])
        };
        for (r, line) in out.chunks_mut(cols).enumerate() {
            // Moving the sample up by `sy` rows: output row r shows source row r + sy.
            let src = r as f64 + sy;
            let r0 = src.floor();
            let w = (src - r0) as f32;
            let a = row_at(r0 as isize);
            let b = row_at(r0 as isize + 1);
            for (c, v) in line.iter_mut().enumerate() {
                *v = a.map_or(0.0, |a| a[c]) * (1.0 - w) + b.map_or(0.0, |b| b[c]) * w;
            }
        }
        out
    }

    /// One frame's little-endian pixels.
    pub fn frame(&mut self, key: ImageKey, angle: Degrees) -> Vec<u8> {
        let mut v = Vec::new();
        self.frame_into(key, angle, &mut v);
        v
    }
}

/// The frames of a tomography series in acquisition order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Dark fields first.
    pub darks: u64,
    /// Then flat fields.
    pub flats: u64,
    /// Then projections at `i * range / angles` degrees.
    pub angles: u64,
    /// Angular range: 180 or 360 degrees.
    pub range: Degrees,
}

impl Schedule {
    /// Total number of frames.
    pub fn frames(&self) -> u64 {
        self.darks + self.flats + self.angles
    }

    /// Image key and angle of frame `i` (`i < frames()`).
    pub fn frame(&self, i: u64) -> (ImageKey, Degrees) {
        if i < self.darks {
            (ImageKey::Dark, Degrees(0.0))
        } else if i < self.darks + self.flats {
            (ImageKey::Flat, Degrees(0.0))
        } else {
            let p = i - self.darks - self.flats;
            (ImageKey::Projection, Degrees(p as f64 * self.range.0 / self.angles.max(1) as f64))
        }
    }
}

/// Keeps a frame rate: frame `i` goes out no earlier than `i / fps` seconds after the pacer was made.
#[derive(Debug, Clone, Copy)]
pub struct Pacer {
    t0: Instant,
    fps: Option<f64>,
}

impl Pacer {
    /// A pacer for `fps` frames per second (`None` or <= 0: as fast as possible).
    pub fn new(fps: Option<f64>) -> Pacer {
        Pacer { t0: Instant::now(), fps: fps.filter(|f| *f > 0.0 && f.is_finite()) }
    }

    /// Sleeps until frame `i` is due.
    pub fn wait(&self, i: u64) {
        if let Some(fps) = self.fps {
            let due = self.t0 + Duration::from_secs_f64(i as f64 / fps);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                let _w = tracing::debug_span!("wait.frame_rate", frame = i).entered();
                std::thread::sleep(wait);
            }
        }
    }
}

/// Options of one simulated series.
#[derive(Debug, Clone)]
pub struct SeriesOptions {
    /// Series id.
    pub series: String,
    /// Payload encoding.
    pub compression: Compression,
    /// Frames per second, `None` for as fast as possible.
    pub fps: Option<f64>,
    /// Energy, distance and pixel size carried in the series start (issue 15 §2), each when set.
    pub physics: crate::nexus::Physics,
}

/// Sends a whole simulated series; `progress(frames_sent)` is called after each frame. Returns frames sent.
pub fn simulate_series(
    sender: &mut SeriesSender,
    cfg: &SimConfig,
    schedule: &Schedule,
    opts: &SeriesOptions,
    mut progress: impl FnMut(u64),
) -> Result<u64, SendError> {
    let mut start = SeriesStart::new(
        opts.series.clone(),
        Shape([cfg.rows as u32, cfg.cols as u32]),
        cfg.dtype,
        opts.compression,
        schedule.frames(),
    );
    start.metadata = serde_json::json!({
        "source": "beamline simulate",
        "phantom": "3-D modified Shepp-Logan, exact parallel-beam projections, Beer-Lambert attenuation",
        "darks": schedule.darks, "flats": schedule.flats, "angles": schedule.angles,
        "range_deg": schedule.range.0, "seed": cfg.seed, "attenuation": cfg.attenuation,
    });
    if let Some(c) = cfg.axis {
        start.metadata["axis_column"] = serde_json::json!(c);
    }
    opts.physics.add_to_metadata(&mut start.metadata);
    sender.start_series(&start)?;
    send_frames(sender, cfg, schedule, opts.fps, &mut progress)?;
    sender.end_series(SeriesStatus::Complete, None)
}

/// Where simulated frames go: one [`SeriesSender`], or several receivers at once (`beamline spread`).
pub trait FrameSink {
    /// Sends one frame's little-endian pixels.
    fn send_frame(&mut self, header: &FrameHeader, pixels_le: &[u8]) -> Result<(), SendError>;
}

impl FrameSink for SeriesSender {
    fn send_frame(&mut self, header: &FrameHeader, pixels_le: &[u8]) -> Result<(), SendError> {
        SeriesSender::send_frame(self, header, pixels_le)
    }
}

/// Generates every frame of `schedule` in order and sends it to `sink`, no faster than `fps` frames per
/// second (`None`: as fast as possible), calling `progress` with the number of frames sent after each one.
/// The series start and end are the caller's.
pub fn send_frames(
    sink: &mut impl FrameSink,
    cfg: &SimConfig,
    schedule: &Schedule,
    fps: Option<f64>,
    mut progress: impl FnMut(u64),
) -> Result<(), SendError> {
    let mut gen = FrameGenerator::new(cfg);
    let mut buf = Vec::new();
    let pacer = Pacer::new(fps);
    // One stage span for the whole series (on by default); `sim.send` per frame only with frame tracing.
    let _series = tracing::debug_span!("sim.series", feeds = "zmq", frames = schedule.frames()).entered();
    for i in 0..schedule.frames() {
        let (key, angle) = schedule.frame(i);
        gen.frame_into(key, angle, &mut buf);
        pacer.wait(i);
        let header = FrameHeader { index: FrameIndex(i), image_key: key, angle, timestamp: now_timestamp() };
        {
            let _s = tracing::trace_span!("sim.send", feeds = "zmq", frame = i, bytes = buf.len()).entered();
            sink.send_frame(&header, &buf)?;
        }
        progress(i + 1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_physics_ordering() {
        let cfg = SimConfig::new(16, 24, Dtype::Uint16);
        let mut g = FrameGenerator::new(&cfg);
        let mean =
            |v: &[u8]| v.chunks(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as f64).sum::<f64>() / (v.len() / 2) as f64;
        let dark = mean(&g.frame(ImageKey::Dark, Degrees(0.0)));
        let flat = mean(&g.frame(ImageKey::Flat, Degrees(0.0)));
        let proj = mean(&g.frame(ImageKey::Projection, Degrees(30.0)));
        assert!(dark < proj && proj < flat, "dark {dark} proj {proj} flat {flat}");
        assert_eq!(g.frame(ImageKey::Flat, Degrees(0.0)).len(), g.frame_bytes());
    }

    #[test]
    fn schedule_orders_darks_flats_projections() {
        let s = Schedule { darks: 2, flats: 3, angles: 4, range: Degrees(180.0) };
        assert_eq!(s.frames(), 9);
        assert_eq!(s.frame(0).0, ImageKey::Dark);
        assert_eq!(s.frame(2).0, ImageKey::Flat);
        assert_eq!(s.frame(5), (ImageKey::Projection, Degrees(0.0)));
        assert_eq!(s.frame(8), (ImageKey::Projection, Degrees(135.0)));
    }
}
