//! Devices behind traits. Scans only talk to these traits (bluesky style: what a scan does is separate from
//! the hardware), so a real control system plugs in by implementing them; [`sim`] is the simulated beamline.

pub mod acq;
pub mod detector;
pub mod sim;

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;

/// A device refused or failed an operation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("device `{device}`: {message}")]
pub struct DeviceError {
    /// Name of the device, as in the beamline configuration.
    pub device: String,
    /// What went wrong and, where possible, what to do.
    pub message: String,
}

impl DeviceError {
    /// An error of device `device`.
    pub fn new(device: &str, message: impl Into<String>) -> DeviceError {
        DeviceError { device: device.to_string(), message: message.into() }
    }
}

/// Soft limits of a motor, in its units; moves outside are refused before anything moves.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct SoftLimits {
    /// Lowest allowed position.
    pub low: f64,
    /// Highest allowed position.
    pub high: f64,
}

impl SoftLimits {
    /// True when `x` lies within the limits.
    pub fn contains(&self, x: f64) -> bool {
        x >= self.low && x <= self.high
    }
}

/// Kinematics of a motor: a trapezoidal velocity profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Kinematics {
    /// Cruise velocity, units per second.
    pub velocity: f64,
    /// Acceleration and deceleration, units per second squared.
    pub acceleration: f64,
}

impl Kinematics {
    /// Time of a move of `distance` from rest to rest.
    pub fn move_time(&self, distance: f64) -> Duration {
        let d = distance.abs();
        if d == 0.0 || self.velocity <= 0.0 {
            return Duration::ZERO;
        }
        let a = if self.acceleration > 0.0 { self.acceleration } else { f64::INFINITY };
        let ramp = self.velocity * self.velocity / a;
        let secs = if d >= ramp { d / self.velocity + self.velocity / a } else { 2.0 * (d / a).sqrt() };
        Duration::from_secs_f64(secs)
    }

    /// Distance travelled from `t = 0` after `t` seconds of a move of total length `distance`.
    pub fn travelled(&self, distance: f64, t: f64) -> f64 {
        let d = distance.abs();
        let total = self.move_time(d).as_secs_f64();
        if t >= total {
            return d;
        }
        if t <= 0.0 {
            return 0.0;
        }
        let a = if self.acceleration > 0.0 { self.acceleration } else { f64::INFINITY };
        let vpeak = if d >= self.velocity * self.velocity / a { self.velocity } else { (d * a).sqrt() };
        let tr = vpeak / a;
        if t < tr {
            0.5 * a * t * t
        } else if t <= total - tr {
            0.5 * a * tr * tr + vpeak * (t - tr)
        } else {
            let u = total - t;
            d - 0.5 * a * u * u
        }
    }
}

/// A positioner: linear stage or rotation stage.
pub trait Motor: Send + Sync {
    /// Configured name (`samx`, `rot`).
    fn name(&self) -> &str;
    /// Units shown to operators (`mm`, `deg`).
    fn units(&self) -> &str;
    /// Soft limits.
    fn limits(&self) -> SoftLimits;
    /// Current velocity and acceleration.
    fn kinematics(&self) -> Kinematics;
    /// Changes the cruise velocity (fly scans); must be positive.
    fn set_velocity(&self, velocity: f64) -> Result<(), DeviceError>;
    /// Current (possibly moving) position.
    fn position(&self) -> Result<f64, DeviceError>;
    /// Starts a move and returns at once with the expected move time. Refuses targets outside the limits.
    fn start_move(&self, target: f64) -> Result<Duration, DeviceError>;
    /// True while a move is in progress.
    fn is_moving(&self) -> Result<bool, DeviceError>;
    /// Stops at once where the motor is.
    fn stop(&self) -> Result<(), DeviceError>;
}

/// The fast shutter in front of the sample.
pub trait Shutter: Send + Sync {
    /// Configured name.
    fn name(&self) -> &str;
    /// Opens the shutter; returns the time it takes.
    fn open(&self) -> Result<Duration, DeviceError>;
    /// Closes the shutter; returns the time it takes.
    fn close(&self) -> Result<Duration, DeviceError>;
    /// True while open.
    fn is_open(&self) -> Result<bool, DeviceError>;
}

/// The storage-ring current monitor the beam suspender watches.
pub trait BeamMonitor: Send + Sync {
    /// Configured name.
    fn name(&self) -> &str;
    /// Current now, mA.
    fn current(&self) -> Result<f64, DeviceError>;
    /// Lowest current seen since beamline time `since` (so a short dip during an exposure is caught).
    fn minimum_since(&self, since: Duration) -> Result<f64, DeviceError>;
}

/// A point counter (beam monitor, diode): counts during one exposure.
pub trait Counter: Send + Sync {
    /// Configured name; a column of the scan table.
    fn name(&self) -> &str;
    /// Counts collected during the exposure that started at beamline time `start` and lasted `exposure`.
    fn count(&self, start: Duration, exposure: Duration) -> Result<f64, DeviceError>;
}

/// What the simulated detector sees: which motors move the sample image, and how counts scale.
#[derive(Clone, Default)]
pub struct Scene {
    /// Moves the sample image sideways.
    pub image_x: Option<Arc<dyn Motor>>,
    /// Moves the sample image up.
    pub image_y: Option<Arc<dyn Motor>>,
    /// Millimetres per pixel.
    pub pixel_size: f64,
    /// Exposure at which counts are nominal.
    pub reference_exposure: f64,
    /// Ring current at which counts are nominal.
    pub nominal_current: f64,
}

/// True for names usable as a scan-table column (letters, digits, `_`; not starting with a digit).
pub fn is_column_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub use detector::{Detector, FrameCounts, FrameRequest, ImageKey, SeriesInfo, SeriesStatus, SeriesSummary};

/// Every device of one beamline, as the scans see it.
#[derive(Clone)]
pub struct Beamline {
    /// Positioners by name, in configuration order (includes the rotation stage).
    pub motors: Vec<Arc<dyn Motor>>,
    /// Name of the rotation stage among `motors`.
    pub rotation: String,
    /// Name of the motor that moves the sample out of the beam for flats.
    pub sample_out_motor: String,
    /// The fast shutter.
    pub shutter: Arc<dyn Shutter>,
    /// The detector.
    pub detector: Arc<dyn Detector>,
    /// The beam-current monitor.
    pub beam: Arc<dyn BeamMonitor>,
    /// Point counters read at every point of a step scan.
    pub counters: Vec<Arc<dyn Counter>>,
    /// What the simulated detector sees.
    pub scene: Scene,
    /// The beamline clock the simulated devices read.
    pub clock: Arc<Clock>,
}

impl Beamline {
    /// The motor called `name`, or an error listing the names that exist.
    pub fn motor(&self, name: &str) -> Result<Arc<dyn Motor>, DeviceError> {
        self.motors.iter().find(|m| m.name() == name).cloned().ok_or_else(|| {
            let names: Vec<&str> = self.motors.iter().map(|m| m.name()).collect();
            DeviceError::new(name, format!("no such motor; this beamline has: {}", names.join(", ")))
        })
    }
}

impl Beamline {
    /// Every motor's position now (NaN for a motor that cannot be read).
    pub fn positions(&self) -> std::collections::BTreeMap<String, f64> {
        self.motors.iter().map(|m| (m.name().to_string(), m.position().unwrap_or(f64::NAN))).collect()
    }

    /// Motors moving now (a motor that cannot be read counts as moving).
    pub fn moving(&self) -> Vec<String> {
        self.motors.iter().filter(|m| m.is_moving().unwrap_or(true)).map(|m| m.name().to_string()).collect()
    }
}

impl std::fmt::Debug for Beamline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.motors.iter().map(|m| m.name()).collect();
        f.debug_struct("Beamline")
            .field("motors", &names)
            .field("shutter", &self.shutter.name())
            .field("detector", &self.detector.name())
            .field("beam", &self.beam.name())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trapezoid_and_triangle_profiles() {
        let k = Kinematics { velocity: 2.0, acceleration: 4.0 };
        // ramp distance v^2/a = 1: a 5-unit move cruises: 5/2 + 2/4 = 3 s
        assert!((k.move_time(5.0).as_secs_f64() - 3.0).abs() < 1e-9);
        // a 0.25-unit move never reaches cruise: 2 sqrt(0.25/4) = 0.5 s
        assert!((k.move_time(0.25).as_secs_f64() - 0.5).abs() < 1e-9);
        assert!((k.travelled(5.0, 1.5) - 2.5).abs() < 1e-9);
        assert_eq!(k.travelled(5.0, 10.0), 5.0);
    }
}
