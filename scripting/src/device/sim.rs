//! The simulated beamline: motors with a trapezoidal profile, a fast shutter and a beam-current monitor with
//! scheduled beam losses, all driven by the beamline [`Clock`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{BeamMonitor, DeviceError, Kinematics, Motor, Shutter, SoftLimits};
use crate::clock::Clock;

#[derive(Debug, Clone, Copy)]
struct Motion {
    from: f64,
    to: f64,
    start: Duration,
    kin: Kinematics,
}

#[derive(Debug)]
struct MotorState {
    position: f64,
    motion: Option<Motion>,
    kin: Kinematics,
}

/// A simulated motor. Its position follows the move profile in beamline time.
#[derive(Debug)]
pub struct SimMotor {
    name: String,
    units: String,
    limits: SoftLimits,
    enforce_limits: bool,
    clock: Arc<Clock>,
    state: Mutex<MotorState>,
}

impl SimMotor {
    /// A motor at `position` with the given kinematics and limits. With `enforce_limits` false (dry runs) it
    /// accepts any target so the dry run can report every violation and carry on.
    pub fn new(
        name: &str,
        units: &str,
        position: f64,
        kin: Kinematics,
        limits: SoftLimits,
        enforce_limits: bool,
        clock: Arc<Clock>,
    ) -> SimMotor {
        SimMotor {
            name: name.to_string(),
            units: units.to_string(),
            limits,
            enforce_limits,
            clock,
            state: Mutex::new(MotorState { position, motion: None, kin }),
        }
    }

    fn state(&self) -> Result<std::sync::MutexGuard<'_, MotorState>, DeviceError> {
        self.state.lock().map_err(|_| DeviceError::new(&self.name, "internal state poisoned"))
    }

    /// Settles a finished motion into the stored position; returns the position now.
    fn update(&self, s: &mut MotorState) -> f64 {
        if let Some(m) = s.motion {
            let t = self.clock.now().saturating_sub(m.start).as_secs_f64();
            let dist = m.to - m.from;
            let done = m.kin.travelled(dist, t);
            s.position = m.from + done.copysign(dist);
            if done >= dist.abs() {
                s.position = m.to;
                s.motion = None;
            }
        }
        s.position
    }
}

impl Motor for SimMotor {
    fn name(&self) -> &str {
        &self.name
    }
    fn units(&self) -> &str {
        &self.units
    }
    fn limits(&self) -> SoftLimits {
        self.limits
    }
    fn kinematics(&self) -> Kinematics {
        self.state.lock().map(|s| s.kin).unwrap_or(Kinematics { velocity: 0.0, acceleration: 0.0 })
    }
    fn set_velocity(&self, velocity: f64) -> Result<(), DeviceError> {
        if !(velocity.is_finite() && velocity > 0.0) {
            return Err(DeviceError::new(&self.name, format!("velocity {velocity} must be positive")));
        }
        self.state()?.kin.velocity = velocity;
        Ok(())
    }
    fn position(&self) -> Result<f64, DeviceError> {
        let mut s = self.state()?;
        Ok(self.update(&mut s))
    }
    fn start_move(&self, target: f64) -> Result<Duration, DeviceError> {
        if !target.is_finite() {
            return Err(DeviceError::new(&self.name, format!("target {target} is not a number")));
        }
        if self.enforce_limits && !self.limits.contains(target) {
            return Err(DeviceError::new(
                &self.name,
                format!(
                    "target {target} {} is outside the soft limits [{}, {}]",
                    self.units, self.limits.low, self.limits.high
                ),
            ));
        }
        let mut s = self.state()?;
        let from = self.update(&mut s);
        if s.motion.is_some() {
            return Err(DeviceError::new(&self.name, "already moving; wait for the move or stop it first"));
        }
        let kin = s.kin;
        s.motion = Some(Motion { from, to: target, start: self.clock.now(), kin });
        let t = kin.move_time(target - from);
        if t.is_zero() {
            s.position = target;
            s.motion = None;
        }
        Ok(t)
    }
    fn is_moving(&self) -> Result<bool, DeviceError> {
        let mut s = self.state()?;
        self.update(&mut s);
        Ok(s.motion.is_some())
    }
    fn stop(&self) -> Result<(), DeviceError> {
        let mut s = self.state()?;
        self.update(&mut s);
        s.motion = None;
        Ok(())
    }
}

/// A simulated fast shutter.
#[derive(Debug)]
pub struct SimShutter {
    name: String,
    move_time: Duration,
    open: Mutex<bool>,
}

impl SimShutter {
    /// A closed shutter taking `move_time` to open or close.
    pub fn new(name: &str, move_time: Duration) -> SimShutter {
        SimShutter { name: name.to_string(), move_time, open: Mutex::new(false) }
    }

    fn set(&self, open: bool) -> Result<Duration, DeviceError> {
        let mut s = self.open.lock().map_err(|_| DeviceError::new(&self.name, "internal state poisoned"))?;
        let t = if *s == open { Duration::ZERO } else { self.move_time };
        *s = open;
        Ok(t)
    }
}

impl Shutter for SimShutter {
    fn name(&self) -> &str {
        &self.name
    }
    fn open(&self) -> Result<Duration, DeviceError> {
        self.set(true)
    }
    fn close(&self) -> Result<Duration, DeviceError> {
        self.set(false)
    }
    fn is_open(&self) -> Result<bool, DeviceError> {
        self.open.lock().map(|s| *s).map_err(|_| DeviceError::new(&self.name, "internal state poisoned"))
    }
}

/// A beam loss scheduled in beamline time: the current is zero from `start` for `duration`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct BeamLoss {
    /// Beamline time (seconds since the clock started) at which the beam is lost.
    pub start: f64,
    /// How long the beam stays off, seconds.
    pub duration: f64,
}

/// A simulated ring-current monitor: nominal current, zero during scheduled losses.
#[derive(Debug)]
pub struct SimBeam {
    name: String,
    nominal: f64,
    losses: Mutex<Vec<BeamLoss>>,
    clock: Arc<Clock>,
}

impl SimBeam {
    /// A monitor reading `nominal` mA except during `losses`.
    pub fn new(name: &str, nominal: f64, losses: Vec<BeamLoss>, clock: Arc<Clock>) -> SimBeam {
        SimBeam { name: name.to_string(), nominal, losses: Mutex::new(losses), clock }
    }

    /// Schedules a beam loss `after` seconds from now (tests and demos).
    pub fn schedule_loss(&self, after: f64, duration: f64) {
        let start = self.clock.now().as_secs_f64() + after;
        if let Ok(mut l) = self.losses.lock() {
            l.push(BeamLoss { start, duration });
        }
    }

    fn min_over(&self, t0: f64, t1: f64) -> Result<f64, DeviceError> {
        let l = self.losses.lock().map_err(|_| DeviceError::new(&self.name, "internal state poisoned"))?;
        let lost = l.iter().any(|b| b.start <= t1 && b.start + b.duration > t0);
        Ok(if lost { 0.0 } else { self.nominal })
    }
}

impl BeamMonitor for SimBeam {
    fn name(&self) -> &str {
        &self.name
    }
    fn current(&self) -> Result<f64, DeviceError> {
        let t = self.clock.now().as_secs_f64();
        self.min_over(t, t)
    }
    fn minimum_since(&self, since: Duration) -> Result<f64, DeviceError> {
        self.min_over(since.as_secs_f64(), self.clock.now().as_secs_f64())
    }
}

/// Draws Poisson counts of mean `mean` (deterministic for the generator's seed).
fn poisson(rng: &Mutex<rand::rngs::StdRng>, mean: f64) -> f64 {
    use rand_distr::Distribution;
    if !(mean.is_finite() && mean > 0.0) {
        return 0.0;
    }
    let Ok(mut r) = rng.lock() else { return mean.round() };
    match rand_distr::Poisson::new(mean) {
        Ok(p) => p.sample(&mut *r),
        Err(_) => mean.round(),
    }
}

fn seeded(seed: u64) -> Mutex<rand::rngs::StdRng> {
    use rand::SeedableRng;
    Mutex::new(rand::rngs::StdRng::seed_from_u64(seed))
}

/// Beam flux during an exposure relative to nominal: the lowest current over the exposure (a beam dump
/// during it drops the counts) over the nominal current.
fn beam_fraction(beam: &SimBeam, nominal: f64, start: Duration) -> Result<f64, DeviceError> {
    if nominal <= 0.0 {
        return Ok(0.0);
    }
    Ok(beam.minimum_since(start)? / nominal)
}

/// The simulated beam monitor (`i0`): `rate x exposure x current / nominal` counts, Poisson noise.
pub struct SimMonitor {
    name: String,
    beam: Arc<SimBeam>,
    nominal: f64,
    rate: f64,
    rng: Mutex<rand::rngs::StdRng>,
}

impl SimMonitor {
    /// A monitor counting `rate` per second at `nominal` mA.
    pub fn new(name: &str, beam: Arc<SimBeam>, nominal: f64, rate: f64, seed: u64) -> SimMonitor {
        SimMonitor { name: name.to_string(), beam, nominal, rate, rng: seeded(seed) }
    }
}

impl super::Counter for SimMonitor {
    fn name(&self) -> &str {
        &self.name
    }
    fn count(&self, start: Duration, exposure: Duration) -> Result<f64, DeviceError> {
        let mean = self.rate * exposure.as_secs_f64() * beam_fraction(&self.beam, self.nominal, start)?;
        Ok(poisson(&self.rng, mean))
    }
}

/// A diode behind a knife edge: the beam (Gaussian, width `sigma`) is cut where the knife is; the diode
/// reads `rate x exposure x beam x T` with `T = erfc((knife - edge) / (sigma sqrt 2)) / 2` (half at the edge).
pub struct SimDiode {
    name: String,
    beam: Arc<SimBeam>,
    nominal: f64,
    rate: f64,
    knife: Arc<dyn Motor>,
    edge: f64,
    sigma: f64,
    rng: Mutex<rand::rngs::StdRng>,
}

impl SimDiode {
    /// A diode behind `knife`, which cuts the beam centre at `edge`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        beam: Arc<SimBeam>,
        nominal: f64,
        rate: f64,
        knife: Arc<dyn Motor>,
        edge: f64,
        sigma: f64,
        seed: u64,
    ) -> SimDiode {
        SimDiode { name: name.to_string(), beam, nominal, rate, knife, edge, sigma, rng: seeded(seed) }
    }

    /// Fraction of the beam that passes the knife at `position` (no noise).
    pub fn transmission(&self, position: f64) -> f64 {
        0.5 * erfc((position - self.edge) / (self.sigma * std::f64::consts::SQRT_2))
    }
}

impl super::Counter for SimDiode {
    fn name(&self) -> &str {
        &self.name
    }
    fn count(&self, start: Duration, exposure: Duration) -> Result<f64, DeviceError> {
        let t = self.transmission(self.knife.position()?);
        let mean = self.rate * exposure.as_secs_f64() * beam_fraction(&self.beam, self.nominal, start)? * t;
        Ok(poisson(&self.rng, mean))
    }
}

/// Complementary error function (Numerical Recipes' Chebyshev fit, relative error below 1.2e-7).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}
