//! Beamline time: a virtual clock that every simulated device reads, advanced by waits, and slept in real
//! time scaled by a factor (0 = zero-time for tests and benchmarks, 1 = real time for demos).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::control::{Control, Interrupted};

/// Longest real-time slice slept at once, so that an abort is seen within this delay.
const REAL_SLICE: Duration = Duration::from_millis(10);

/// How much real time one second of beamline time takes: `0.0` never sleeps, `1.0` is real time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeScale(pub f64);

impl TimeScale {
    /// Zero-time: waits only advance the virtual clock.
    pub const ZERO: TimeScale = TimeScale(0.0);
    /// Real time.
    pub const REAL: TimeScale = TimeScale(1.0);
}

/// The beamline clock. Virtual time only advances through [`Clock::sleep`] (waits for motion, exposure,
/// beam); simulated devices compute their state from it, so zero-time runs behave exactly like real-time ones.
#[derive(Debug)]
pub struct Clock {
    scale: f64,
    nanos: AtomicU64,
}

impl Clock {
    /// A clock starting at virtual time zero.
    pub fn new(scale: TimeScale) -> Clock {
        let scale = if scale.0.is_finite() && scale.0 > 0.0 { scale.0 } else { 0.0 };
        Clock { scale, nanos: AtomicU64::new(0) }
    }

    /// The time scale in use.
    pub fn scale(&self) -> TimeScale {
        TimeScale(self.scale)
    }

    /// Virtual time since the clock started.
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Acquire))
    }

    fn advance(&self, dt: Duration) {
        let n = u64::try_from(dt.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(n, Ordering::AcqRel);
    }

    /// Waits `dt` of beamline time, checking `control` between real-time slices. With `ignore_abort`
    /// (clean-up moves after an abort) only a second, hard abort interrupts.
    pub fn sleep(&self, dt: Duration, control: &Control, ignore_abort: bool) -> Result<(), Interrupted> {
        let check = || if ignore_abort { control.check_hard() } else { control.check() };
        check()?;
        if self.scale == 0.0 {
            self.advance(dt);
            return Ok(());
        }
        let _span = tracing::debug_span!("wait.device", seconds = dt.as_secs_f64()).entered();
        let virtual_slice = REAL_SLICE.div_f64(self.scale);
        let mut left = dt;
        while !left.is_zero() {
            let step = left.min(virtual_slice);
            std::thread::sleep(step.mul_f64(self.scale));
            self.advance(step);
            left -= step;
            check()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_time_advances_without_sleeping() {
        let c = Clock::new(TimeScale::ZERO);
        let ctl = Control::default();
        let t0 = std::time::Instant::now();
        c.sleep(Duration::from_secs(3600), &ctl, false).unwrap();
        assert_eq!(c.now(), Duration::from_secs(3600));
        assert!(t0.elapsed() < Duration::from_secs(60));
    }

    #[test]
    fn abort_interrupts_sleep() {
        let c = Clock::new(TimeScale::REAL);
        let ctl = Control::default();
        ctl.abort("test");
        assert!(c.sleep(Duration::from_secs(10), &ctl, false).is_err());
        assert!(c.sleep(Duration::from_millis(1), &ctl, true).is_ok());
    }
}
