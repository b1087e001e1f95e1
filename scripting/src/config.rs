//! The beamline configuration file (TOML): devices, clock, engine limits, suspender. A built-in default
//! describes a simulated tomography beamline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, TimeScale};
use crate::device::sim::{BeamLoss, SimBeam, SimMotor, SimShutter};
use crate::device::{Beamline, Detector, Kinematics, Motor, SoftLimits};

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
    /// Folder `import` reads from; none disables `import`.
    #[serde(default)]
    pub site_library: Option<PathBuf>,
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
        Beamline {
            motors,
            rotation: self.tomo.rotation.clone(),
            sample_out_motor: self.tomo.sample_out_motor.clone(),
            shutter: Arc::new(SimShutter::new(&self.shutter.name, secs(self.shutter.move_time))),
            detector,
            beam: Arc::new(SimBeam::new(&self.beam.name, self.beam.nominal, self.beam.losses.clone(), clock.clone())),
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
/// its scan against).
pub fn default_with_external_detector(size: u32, endpoint: &str) -> Result<String, ConfigError> {
    let mut cfg: toml::Table = DEFAULT_BEAMLINE
        .parse()
        .map_err(|e| ConfigError::Invalid(format!("the built-in beamline configuration is not valid TOML: {e}")))?;
    let det = cfg
        .get_mut("detector")
        .and_then(toml::Value::as_table_mut)
        .ok_or_else(|| ConfigError::Invalid("the built-in beamline has no [detector] table".into()))?;
    det.insert("rows".into(), toml::Value::Integer(i64::from(size)));
    det.insert("cols".into(), toml::Value::Integer(i64::from(size)));
    det.insert("endpoint".into(), toml::Value::String(endpoint.into()));
    det.remove("output_dir");
    toml::to_string(&cfg).map_err(|e| ConfigError::Invalid(format!("encoding the beamline configuration: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_configuration_is_valid() {
        let c = BeamlineConfig::parse(DEFAULT_BEAMLINE, "<built-in>").unwrap();
        assert_eq!(c.motors.len(), 4);
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
        let text = default_with_external_detector(96, "tcp://127.0.0.1:5555").unwrap();
        let c = BeamlineConfig::parse(&text, "demo.toml").unwrap();
        assert_eq!((c.detector.rows, c.detector.cols), (96, 96));
        assert_eq!(c.detector.endpoint.as_deref(), Some("tcp://127.0.0.1:5555"));
        assert!(c.detector.output_dir.is_none());
    }
}
