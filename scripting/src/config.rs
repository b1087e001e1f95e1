//! The beamline configuration file (TOML): devices, clock, engine limits, suspender. A built-in default
//! describes a simulated tomography beamline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, TimeScale};
use crate::device::sim::{BeamLoss, SimBeam, SimDiode, SimMonitor, SimMotor, SimShutter};
use crate::device::{Beamline, Counter, Detector, Kinematics, Motor, Scene, SoftLimits};

/// The built-in simulated beamline, as TOML.
pub const DEFAULT_BEAMLINE: &str = include_str!("default_beamline.toml");

/// A configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read beamline configuration {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown keys.
    #[error("beamline configuration {path}: {message}\n(`beamline scan --print-config` prints a valid example)")]
    Parse {
        /// The file.
        path: String,
        /// What the parser said, with line and column.
        message: String,
    },
    /// The values are inconsistent.
    #[error("beamline configuration: {0}")]
    Invalid(String),
}

/// `[clock]`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockConfig {
    /// Real seconds per beamline second.
    pub time_scale: f64,
}

/// `[engine]`: Rhai limits and the site library.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Maximum Rhai operations per script run.
    pub max_operations: u64,
    /// Maximum function call depth.
    pub max_call_depth: usize,
    /// Maximum string length, bytes.
    pub max_string_size: usize,
    /// Maximum array length.
    pub max_array_size: usize,
    /// Maximum object-map size.
    pub max_map_size: usize,
    /// Most memory the process may hold while a script runs, MiB (checked between operations when the
    /// program installs [`crate::memory::CountingAllocator`]); past it the script stops with exit 6.
    #[serde(default = "default_max_memory_mb")]
    pub max_memory_mb: u64,
    /// Folder `import` reads from; none disables `import`.
    #[serde(default)]
    pub site_library: Option<PathBuf>,
}

fn default_max_memory_mb() -> u64 {
    4096
}

/// `[[motor]]`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MotorConfig {
    /// Name used in scripts.
    pub name: String,
    /// Units shown to operators.
    #[serde(default)]
    pub units: String,
    /// Position at start-up.
    #[serde(default)]
    pub position: f64,
    /// Cruise velocity, units/s.
    pub velocity: f64,
    /// Acceleration, units/s².
    pub acceleration: f64,
    /// Low soft limit.
    pub low: f64,
    /// High soft limit.
    pub high: f64,
}

/// `[tomo]`: which motors tomography uses.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TomoConfig {
    /// The rotation stage.
    pub rotation: String,
    /// The motor that takes the sample out of the beam for flats.
    pub sample_out_motor: String,
}

/// `[shutter]`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutterConfig {
    /// Name used in messages.
    pub name: String,
    /// Seconds to open or close.
    pub move_time: f64,
}

/// `[detector]`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorConfig {
    /// Name used in messages.
    pub name: String,
    /// Frame rows.
    pub rows: u32,
    /// Frame columns.
    pub cols: u32,
    /// Read-out dead time per frame, seconds.
    pub readout: f64,
    /// Folder for the in-process receiver's files (relative to the working directory).
    #[serde(default)]
    pub output_dir: Option<PathBuf>,
    /// Push to an external receiver at this ZeroMQ endpoint instead of running one in-process.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// CURVE (with `endpoint`): this detector's secret key file (`beamline keys new`); needs `curve_server`.
    #[serde(default)]
    pub curve_secret: Option<PathBuf>,
    /// CURVE (with `endpoint`): the receiver's public key file (`receive --curve-secret` holds its secret).
    #[serde(default)]
    pub curve_server: Option<PathBuf>,
    /// Counters summed over detector regions, recorded at every point of a step scan.
    #[serde(default)]
    pub rois: Vec<RoiConfig>,
}

/// One `[[detector.rois]]` entry: a counter summing the pixels of a detector region.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoiConfig {
    /// Counter name (a column of the scan table).
    pub name: String,
    /// `[y0, y1, x0, x1]`: rows `y0..y1` and columns `x0..x1`, ends excluded.
    pub roi: [u32; 4],
}

/// `[sim]`: how the simulated beamline responds (all optional; defaults as in the built-in file).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Seed of the detector noise and of the counters' Poisson noise.
    pub seed: u64,
    /// Millimetres per detector pixel at the sample.
    pub pixel_size: f64,
    /// Motor that moves the sample image sideways (columns); empty for none.
    pub image_x: String,
    /// Motor that moves the sample image up (rows); empty for none.
    pub image_y: String,
    /// Exposure (s) at which a flat field reaches the detector's nominal counts; counts scale with time.
    pub reference_exposure: f64,
    /// Beam monitor `i0` counts per second at the nominal ring current.
    pub monitor_rate: f64,
    /// Knife-edge motor in front of the `diode` counter; empty for none.
    pub knife: String,
    /// Knife position (its units) where it cuts the beam centre: the diode reads half the beam there.
    pub knife_edge: f64,
    /// Beam size at the knife (standard deviation, the knife's units).
    pub knife_width: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            pixel_size: 0.1,
            image_x: "samx".into(),
            image_y: "samy".into(),
            reference_exposure: 0.1,
            monitor_rate: 1.0e6,
            knife: String::new(),
            knife_edge: 0.0,
            knife_width: 0.05,
        }
    }
}

/// `[beam]`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BeamConfig {
    /// Name used in messages.
    pub name: String,
    /// Ring current when the beam is on, mA.
    pub nominal: f64,
    /// Scheduled losses.
    #[serde(default)]
    pub losses: Vec<BeamLoss>,
}

/// `[suspender]`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuspenderConfig {
    /// Suspend below this current, mA.
    pub min_current: f64,
    /// Wait this long after recovery before resuming, seconds.
    pub settle: f64,
}

/// A whole beamline configuration file.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BeamlineConfig {
    /// `[clock]`.
    pub clock: ClockConfig,
    /// `[engine]`.
    pub engine: EngineConfig,
    /// `[[motor]]`.
    #[serde(rename = "motor")]
    pub motors: Vec<MotorConfig>,
    /// `[tomo]`.
    pub tomo: TomoConfig,
    /// `[shutter]`.
    pub shutter: ShutterConfig,
    /// `[detector]`.
    pub detector: DetectorConfig,
    /// `[beam]`.
    pub beam: BeamConfig,
    /// `[suspender]`, absent for none.
    #[serde(default)]
    pub suspender: Option<SuspenderConfig>,
    /// `[sim]`: the simulated beamline's response.
    #[serde(default)]
    pub sim: SimConfig,
}

impl Default for BeamlineConfig {
    fn default() -> Self {
        // The built-in file is checked by a unit test, so this cannot fail in a released binary.
        BeamlineConfig::parse(DEFAULT_BEAMLINE, "<built-in>").expect("built-in beamline configuration is valid")
    }
}

impl BeamlineConfig {
    /// Parses and checks TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<BeamlineConfig, ConfigError> {
        let c: BeamlineConfig = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: origin.to_string(), message: e.to_string() })?;
        c.validate()?;
        Ok(c)
    }

    /// Reads a file; a relative `site_library` is resolved against the file's folder.
    pub fn load(path: &Path) -> Result<BeamlineConfig, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        let mut c = BeamlineConfig::parse(&text, &path.display().to_string())?;
        if let Some(lib) = &c.engine.site_library {
            if lib.is_relative() {
                let base = path.parent().unwrap_or(Path::new("."));
                c.engine.site_library = Some(base.join(lib));
            }
        }
        Ok(c)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        for (i, m) in self.motors.iter().enumerate() {
            if self.motors[..i].iter().any(|o| o.name == m.name) {
                return bad(format!("motor `{}` is defined twice", m.name));
            }
            if !(m.velocity > 0.0 && m.acceleration > 0.0) {
                return bad(format!("motor `{}`: velocity and acceleration must be positive", m.name));
            }
            if !(m.low..=m.high).contains(&m.position) {
                return bad(format!(
                    "motor `{}`: need low <= position <= high, got {} <= {} <= {}",
                    m.name, m.low, m.position, m.high
                ));
            }
        }
        for name in [&self.tomo.rotation, &self.tomo.sample_out_motor] {
            if !self.motors.iter().any(|m| &m.name == name) {
                return bad(format!("[tomo] names motor `{name}`, which no [[motor]] defines"));
            }
        }
        if self.detector.rows == 0 || self.detector.cols == 0 {
            return bad("detector rows and cols must be positive".into());
        }
        for (i, r) in self.detector.rois.iter().enumerate() {
            let [y0, y1, x0, x1] = r.roi;
            if !(y0 < y1 && y1 <= self.detector.rows && x0 < x1 && x1 <= self.detector.cols) {
                return bad(format!(
                    "detector roi `{}` = [{y0}, {y1}, {x0}, {x1}] must satisfy y0 < y1 <= rows ({}) and x0 < x1 <= \
                     cols ({})",
                    r.name, self.detector.rows, self.detector.cols
                ));
            }
            if !crate::device::is_column_name(&r.name) || self.detector.rois[..i].iter().any(|o| o.name == r.name) {
                return bad(format!("detector roi name `{}` must be a unique name of letters, digits and _", r.name));
            }
        }
        let sim = &self.sim;
        for name in [&sim.image_x, &sim.image_y, &sim.knife] {
            if !name.is_empty() && !self.motors.iter().any(|m| &m.name == name) {
                return bad(format!("[sim] names motor `{name}`, which no [[motor]] defines"));
            }
        }
        if !(sim.pixel_size > 0.0 && sim.reference_exposure > 0.0 && sim.knife_width > 0.0 && sim.monitor_rate >= 0.0) {
            return bad("[sim] pixel_size, reference_exposure and knife_width must be positive".into());
        }
        if !(self.clock.time_scale.is_finite() && self.clock.time_scale >= 0.0) {
            return bad("clock.time_scale must be >= 0".into());
        }
        Ok(())
    }

    /// Builds the simulated devices on a new clock, with the given detector. With `dry_run` motors accept
    /// targets outside their limits (the dry run reports them instead). Motors start at `positions` where
    /// given (a dry run replicating a live beamline), else at their configured positions.
    pub fn build(
        &self,
        scale: TimeScale,
        detector: Arc<dyn Detector>,
        dry_run: bool,
        positions: Option<&BTreeMap<String, f64>>,
    ) -> Beamline {
        let clock = Arc::new(Clock::new(scale));
        let sim = &self.sim;
        let motors = self
            .motors
            .iter()
            .map(|m| {
                Arc::new(SimMotor::new(
                    &m.name,
                    &m.units,
                    positions.and_then(|p| p.get(&m.name).copied()).unwrap_or(m.position),
                    Kinematics { velocity: m.velocity, acceleration: m.acceleration },
                    SoftLimits { low: m.low, high: m.high },
                    !dry_run,
                    clock.clone(),
                )) as Arc<dyn Motor>
            })
            .collect();
        let motors: Vec<Arc<dyn Motor>> = motors;
        let find = |name: &str| motors.iter().find(|m| m.name() == name).cloned();
        let beam = Arc::new(SimBeam::new(&self.beam.name, self.beam.nominal, self.beam.losses.clone(), clock.clone()));
        let mut counters: Vec<Arc<dyn Counter>> =
            vec![Arc::new(SimMonitor::new("i0", beam.clone(), self.beam.nominal, sim.monitor_rate, sim.seed))];
        if let Some(knife) = find(&sim.knife) {
            counters.push(Arc::new(SimDiode::new(
                "diode",
                beam.clone(),
                self.beam.nominal,
                sim.monitor_rate,
                knife,
                sim.knife_edge,
                sim.knife_width,
                sim.seed.wrapping_add(1),
            )));
        }
        let scene = Scene {
            image_x: find(&sim.image_x),
            image_y: find(&sim.image_y),
            pixel_size: sim.pixel_size,
            reference_exposure: sim.reference_exposure,
            nominal_current: self.beam.nominal,
        };
        Beamline {
            rotation: self.tomo.rotation.clone(),
            sample_out_motor: self.tomo.sample_out_motor.clone(),
            shutter: Arc::new(SimShutter::new(&self.shutter.name, secs(self.shutter.move_time))),
            detector,
            beam,
            counters,
            scene,
            motors,
            clock,
        }
    }
}

/// Seconds from a config or script number; negative and non-finite become zero.
pub fn secs(x: f64) -> Duration {
    if x.is_finite() && x > 0.0 {
        Duration::from_secs_f64(x)
    } else {
        Duration::ZERO
    }
}

/// The built-in beamline ([`DEFAULT_BEAMLINE`]) as TOML text, with a `size x size` detector that pushes its
/// frames to an external receiver at `endpoint` instead of writing files itself (what `beamline demo` runs
/// its scan against); its counter regions are scaled to the new size and `exposure` (seconds) is the
/// simulation's reference exposure.
pub fn default_with_external_detector(size: u32, endpoint: &str, exposure: f64) -> Result<String, ConfigError> {
    let mut cfg: toml::Table = DEFAULT_BEAMLINE
        .parse()
        .map_err(|e| ConfigError::Invalid(format!("the built-in beamline configuration is not valid TOML: {e}")))?;
    let det = cfg
        .get_mut("detector")
        .and_then(toml::Value::as_table_mut)
        .ok_or_else(|| ConfigError::Invalid("the built-in beamline has no [detector] table".into()))?;
    // The counter regions are given for the built-in detector size: scale them to the new one.
    let dim = |k: &str| det.get(k).and_then(toml::Value::as_integer).filter(|v| *v > 0).unwrap_or(1);
    let (rows, cols) = (dim("rows"), dim("cols"));
    if let Some(rois) = det.get_mut("rois").and_then(toml::Value::as_array_mut) {
        for r in rois.iter_mut().filter_map(|r| r.get_mut("roi")).filter_map(toml::Value::as_array_mut) {
            let old: Vec<i64> = r.iter().filter_map(toml::Value::as_integer).collect();
            if let [y0, y1, x0, x1] = old[..] {
                let scale = |v: i64, full: i64| v * i64::from(size) / full;
                let (y0, x0) = (scale(y0, rows), scale(x0, cols));
                let (y1, x1) = (scale(y1, rows).max(y0 + 1), scale(x1, cols).max(x0 + 1));
                *r = [y0, y1, x0, x1].into_iter().map(toml::Value::Integer).collect();
            }
        }
    }
    det.insert("rows".into(), toml::Value::Integer(i64::from(size)));
    det.insert("cols".into(), toml::Value::Integer(i64::from(size)));
    det.insert("endpoint".into(), toml::Value::String(endpoint.into()));
    det.remove("output_dir");
    // Counts scale with exposure / reference exposure: `exposure` is made the reference, so frames carry the
    // full simulated counts (and their noise level) at that exposure.
    if let Some(sim) = cfg.get_mut("sim").and_then(toml::Value::as_table_mut) {
        sim.insert("reference_exposure".into(), toml::Value::Float(exposure));
    }
    toml::to_string(&cfg).map_err(|e| ConfigError::Invalid(format!("encoding the beamline configuration: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_configuration_is_valid() {
        let c = BeamlineConfig::parse(DEFAULT_BEAMLINE, "<built-in>").unwrap();
        assert_eq!(c.motors.len(), 5);
        assert_eq!(c.detector.rois.len(), 2);
        assert!(c.suspender.is_some());
    }

    #[test]
    fn unknown_key_is_reported_with_its_location() {
        let text = DEFAULT_BEAMLINE.replace("velocity = 5.0", "velocty = 5.0");
        let e = BeamlineConfig::parse(&text, "x.toml").unwrap_err().to_string();
        assert!(e.contains("velocty") && e.contains("x.toml"), "{e}");
    }

    #[test]
    fn the_external_detector_variant_parses_and_pushes_to_the_endpoint() {
        let text = default_with_external_detector(96, "tcp://127.0.0.1:5555", 0.01).unwrap();
        let c = BeamlineConfig::parse(&text, "demo.toml").unwrap();
        assert_eq!((c.detector.rows, c.detector.cols), (96, 96));
        for roi in &c.detector.rois {
            let [y0, y1, x0, x1] = roi.roi;
            assert!(y0 < y1 && y1 <= 96 && x0 < x1 && x1 <= 96, "{} fits the 96x96 detector: {:?}", roi.name, roi.roi);
        }
        assert_eq!(c.detector.endpoint.as_deref(), Some("tcp://127.0.0.1:5555"));
        assert!(c.detector.output_dir.is_none());
    }
}
