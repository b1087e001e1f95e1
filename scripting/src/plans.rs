//! Scan shapes built on the session's motion and acquisition: step scans over any number of motors
//! (`scan`, `rel_scan`, `list_scan`, `grid_scan`, `count`) and tomography (`tomo_scan`, step or fly).

use std::sync::Arc;
use std::time::Duration;

/// Most points (or frames) one scan may have; larger requests are refused before anything is allocated.
pub const MAX_POINTS: usize = 1_000_000;

use serde_json::json;

use crate::device::{ImageKey, Motor, SeriesSummary};
use crate::error::ScanError;
use crate::session::{Mode, MotorMove, ScanTable, Session};

/// Options every step scan accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct StepOptions {
    /// Exposure per point.
    pub exposure: Duration,
    /// Return the motors to their start positions afterwards (default: only for relative scans).
    pub return_motors: Option<bool>,
    /// Series name (file name stem); default `<kind>_<n>`.
    pub name: Option<String>,
    /// Wait after each move before exposing.
    pub settle: Duration,
    /// Take area-detector frames (false: counters only, a small file with the table).
    pub detector: bool,
    /// Column plotted by default; see [`Session::begin_table`].
    pub signal: Option<String>,
}

impl Default for StepOptions {
    fn default() -> Self {
        StepOptions {
            exposure: Duration::from_millis(100),
            return_motors: None,
            name: None,
            settle: Duration::ZERO,
            detector: true,
            signal: None,
        }
    }
}

/// How the points of a step scan are laid out (recorded with the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Evenly spaced along a line (`scan`, `rel_scan`, `a2scan`).
    Linear,
    /// A list given by the script.
    List,
    /// Repeated counts where everything is.
    Count,
    /// A grid of `rows x cols`, row by row; `snake` reverses every other row.
    Grid {
        /// Outer axis points.
        rows: usize,
        /// Inner axis points.
        cols: usize,
        /// Every other row backwards.
        snake: bool,
    },
}

impl Layout {
    fn order(self) -> &'static str {
        match self {
            Layout::Linear => "linear",
            Layout::List => "list",
            Layout::Count => "count",
            Layout::Grid { snake: true, .. } => "snake",
            Layout::Grid { snake: false, .. } => "raster",
        }
    }

    /// `(row, col)` in the grid of point `i` in visiting order.
    fn grid_index(self, i: usize) -> Option<(usize, usize)> {
        match self {
            Layout::Grid { cols, snake, .. } if cols > 0 => {
                let (r, c) = (i / cols, i % cols);
                Some((r, if snake && r % 2 == 1 { cols - 1 - c } else { c }))
            }
            _ => None,
        }
    }
}

/// What a step scan returns: its series and the table it measured.
#[derive(Debug, Clone)]
pub struct StepResult {
    /// The series (file).
    pub summary: SeriesSummary,
    /// The per-point table.
    pub table: Option<ScanTable>,
}

/// Evenly spaced `num` points from `start` to `stop` inclusive.
pub fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    match num {
        0 => Vec::new(),
        1 => vec![start],
        _ => (0..num).map(|i| start + (stop - start) * i as f64 / (num - 1) as f64).collect(),
    }
}

/// Outer product of two axes, row by row; with `snake` every other row runs backwards.
pub fn grid(outer: &[f64], inner: &[f64], snake: bool) -> Vec<Vec<f64>> {
    let mut pts = Vec::with_capacity(outer.len() * inner.len());
    for (i, &o) in outer.iter().enumerate() {
        let row: Box<dyn Iterator<Item = &f64>> =
            if snake && i % 2 == 1 { Box::new(inner.iter().rev()) } else { Box::new(inner.iter()) };
        pts.extend(row.map(|&x| vec![o, x]));
    }
    pts
}

fn zip_moves(motors: &[Arc<dyn Motor>], point: &[f64]) -> Vec<MotorMove> {
    motors.iter().cloned().zip(point.iter().copied()).collect()
}

/// A step scan: visits `points` (one coordinate per motor) and takes one frame at each, as one series.
/// Every target is checked against the soft limits before anything moves.
pub fn step_scan(
    s: &Session,
    kind: &str,
    motors: Vec<Arc<dyn Motor>>,
    points: Vec<Vec<f64>>,
    opts: &StepOptions,
    return_by_default: bool,
    layout: Layout,
) -> Result<StepResult, ScanError> {
    if points.is_empty() {
        return Err(ScanError::Argument(format!("{kind}: no points to visit (num must be at least 1)")));
    }
    if s.mode == Mode::Live {
        for p in &points {
            s.check_limits(&zip_moves(&motors, p))?;
        }
    }
    let name = s.scan_name(kind, opts.name.as_deref())?;
    let names: Vec<&str> = motors.iter().map(|m| m.name()).collect();
    let meta = json!({
        "kind": kind, "motors": names, "points": points.len(),
        "exposure_s": opts.exposure.as_secs_f64(),
        "first": points.first(), "last": points.last(), "order": layout.order(), "detector": opts.detector,
    });
    let rot = s.beamline.motor(&s.beamline.rotation)?;
    let grid_shape = match layout {
        Layout::Grid { rows, cols, .. } => Some([rows as u64, cols as u64]),
        _ => None,
    };
    let summary = s.with_return(&motors, opts.return_motors.unwrap_or(return_by_default), || {
        s.begin_table(&motors, layout.order(), grid_shape, opts.detector, opts.signal.as_deref())?;
        s.run_series(kind, &name, points.len() as u64, meta, opts.detector, || {
            s.set_shutter(true)?;
            for (i, p) in points.iter().enumerate() {
                s.move_motors(&zip_moves(&motors, p))?;
                s.sleep(opts.settle)?;
                s.acquire(ImageKey::Projection, rot.position()?, opts.exposure)?;
                s.record_point(p, layout.grid_index(i))?;
            }
            Ok(())
        })
    })?;
    Ok(StepResult { summary, table: s.take_table() })
}

/// `count`: `n` frames where everything is, as one series.
pub fn count(s: &Session, n: usize, opts: &StepOptions) -> Result<StepResult, ScanError> {
    step_scan(s, "count", Vec::new(), vec![Vec::new(); n], opts, false, Layout::Count)
}

/// When tomography takes flat fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlatsAt {
    /// Before the projections.
    Start,
    /// After the projections.
    End,
    /// Both.
    Both,
}

/// How the rotation moves during projections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TomoMode {
    /// Move, stop, expose, for every projection.
    Step,
    /// Rotate at constant speed and expose on the fly.
    Fly,
}

/// Parameters of `tomo_scan`.
#[derive(Debug, Clone, PartialEq)]
pub struct TomoParams {
    /// First angle, degrees.
    pub start: f64,
    /// 180 or 360 degrees.
    pub range: f64,
    /// Number of projections over the range.
    pub projections: usize,
    /// True: the last projection is at `start + range` (`numpy.linspace`, as tomoscan/tomocupy and bluesky
    /// users expect; the default); false: the end angle is excluded (step `range / projections`).
    pub endpoint: bool,
    /// Exposure per frame.
    pub exposure: Duration,
    /// Dark fields (shutter closed).
    pub darks: usize,
    /// Flat fields per flat block (sample out).
    pub flats: usize,
    /// Where the flat blocks go.
    pub flats_at: FlatsAt,
    /// Position of the sample-out motor for flats.
    pub sample_out: Option<f64>,
    /// Step or fly.
    pub mode: TomoMode,
    /// Bring the rotation back to where it was afterwards.
    pub return_rotation: bool,
    /// Series name; default `tomo_scan_<n>`.
    pub name: Option<String>,
}

impl TomoParams {
    /// Frames the scan keeps.
    pub fn frames(&self) -> usize {
        let blocks = if self.flats_at == FlatsAt::Both { 2 } else { 1 };
        self.darks + blocks * self.flats + self.projections
    }

    /// Angle of projection `i`.
    pub fn angle(&self, i: usize) -> f64 {
        self.start + self.step() * i as f64
    }

    /// The dry-run line: "181 projections, 0 → 180° inclusive, step 1°".
    pub fn summary(&self) -> String {
        let last = if self.endpoint { self.start + self.range } else { self.angle(self.projections.saturating_sub(1)) };
        let rule = if self.endpoint { "inclusive" } else { "end excluded" };
        format!("{} projections, {} → {}° {rule}, step {}°", self.projections, self.start, last, self.step())
    }

    /// Angular step between projections.
    pub fn step(&self) -> f64 {
        let intervals = if self.endpoint && self.projections > 1 { self.projections - 1 } else { self.projections };
        self.range / intervals.max(1) as f64
    }
}

/// `tomo_scan`: darks (shutter closed), flats (sample out), projections over the range (step or fly),
/// flats again if asked, as one series. The sample motor always returns to the sample-in position; the
/// rotation returns when `return_rotation`.
pub fn tomo_scan(s: &Session, p: &TomoParams) -> Result<SeriesSummary, ScanError> {
    if p.range != 180.0 && p.range != 360.0 {
        return Err(ScanError::Argument(format!("tomo_scan: range must be 180 or 360 degrees, got {}", p.range)));
    }
    if p.projections == 0 {
        return Err(ScanError::Argument("tomo_scan: projections must be at least 1".into()));
    }
    if p.exposure.is_zero() && p.mode == TomoMode::Fly {
        return Err(ScanError::Argument("tomo_scan: a fly scan needs a positive exposure".into()));
    }
    let rot = s.beamline.motor(&s.beamline.rotation)?;
    let sample = s.beamline.motor(&s.beamline.sample_out_motor)?;
    let sample_in = sample.position()?;
    let sample_out = match (p.sample_out, p.flats) {
        (_, 0) => None,
        (Some(x), _) => Some(x),
        (None, _) => {
            return Err(ScanError::Argument(format!(
                "tomo_scan: flats need `sample_out`, the position of `{}` with the sample out of the beam \
                 (or set flats: 0)",
                sample.name()
            )))
        }
    };
    let fly = match p.mode {
        TomoMode::Fly => Some(FlyPlan::new(s, &rot, p)?),
        TomoMode::Step => None,
    };
    if s.mode == Mode::Live {
        let (lo, hi) = match &fly {
            Some(f) => (p.start - f.runup, p.start + p.range + f.runup),
            None => (p.start, p.angle(p.projections - 1)),
        };
        s.check_limits(&[(rot.clone(), lo), (rot.clone(), hi)])?;
        if let Some(x) = sample_out {
            s.check_limits(&[(sample.clone(), x)])?;
        }
    }
    let name = s.scan_name("tomo_scan", p.name.as_deref())?;
    let meta = json!({
        "kind": "tomo_scan", "start_deg": p.start, "range_deg": p.range, "projections": p.projections,
        "exposure_s": p.exposure.as_secs_f64(), "darks": p.darks, "flats": p.flats,
        "flats_at": format!("{:?}", p.flats_at).to_lowercase(), "sample_out": sample_out,
        "sample_in": sample_in, "sample_motor": sample.name(), "rotation_motor": rot.name(),
        "mode": format!("{:?}", p.mode).to_lowercase(), "return_rotation": p.return_rotation,
        "endpoint": p.endpoint, "step_deg": p.step(), "summary": p.summary(),
    });
    s.clear_table();
    let flat_block = || -> Result<(), ScanError> {
        let Some(out) = sample_out else { return Ok(()) };
        s.move_motors(&[(sample.clone(), out)])?;
        s.set_shutter(true)?;
        let angle = rot.position()?;
        for _ in 0..p.flats {
            s.acquire(ImageKey::Flat, angle, p.exposure)?;
        }
        s.move_motors(&[(sample.clone(), sample_in)])
    };
    s.with_return(std::slice::from_ref(&sample), true, || {
        s.with_return(std::slice::from_ref(&rot), p.return_rotation, || {
            s.run_series("tomo_scan", &name, p.frames() as u64, meta, true, || {
                s.set_shutter(false)?;
                let angle = rot.position()?;
                for _ in 0..p.darks {
                    s.acquire(ImageKey::Dark, angle, p.exposure)?;
                }
                if p.flats_at != FlatsAt::End {
                    flat_block()?;
                }
                s.set_shutter(true)?;
                match &fly {
                    Some(f) => f.run(s, &rot, p)?,
                    None => {
                        for i in 0..p.projections {
                            let a = p.angle(i);
                            s.move_motors(&[(rot.clone(), a)])?;
                            s.acquire(ImageKey::Projection, a, p.exposure)?;
                        }
                    }
                }
                if p.flats_at != FlatsAt::Start {
                    flat_block()?;
                }
                Ok(())
            })
        })
    })
}

/// The motion of a fly scan: constant velocity through the range, with a run-up to reach it.
#[derive(Debug, Clone, Copy)]
struct FlyPlan {
    velocity: f64,
    runup: f64,
    period: Duration,
}

impl FlyPlan {
    fn new(s: &Session, rot: &Arc<dyn Motor>, p: &TomoParams) -> Result<FlyPlan, ScanError> {
        let period = p.exposure + s.beamline.detector.readout();
        let step = p.step();
        let velocity = step / period.as_secs_f64();
        let k = rot.kinematics();
        if velocity > k.velocity {
            return Err(ScanError::Argument(format!(
                "tomo_scan: fly mode needs `{}` at {velocity:.3} deg/s but its velocity is {} deg/s; use a \
                 longer exposure or fewer projections",
                rot.name(),
                k.velocity
            )));
        }
        // Distance to accelerate to `velocity`, plus one step of margin.
        let runup = velocity * velocity / (2.0 * k.acceleration) + step;
        Ok(FlyPlan { velocity, runup, period })
    }

    /// Runs the projections; a beam loss stops the rotation and restarts it from the lost projection.
    fn run(&self, s: &Session, rot: &Arc<dyn Motor>, p: &TomoParams) -> Result<(), ScanError> {
        let normal = rot.kinematics().velocity;
        let mut next = 0;
        while next < p.projections {
            s.hold_for_beam()?;
            s.move_motors(&[(rot.clone(), p.angle(next) - self.runup)])?;
            rot.set_velocity(self.velocity)?;
            let segment = self.segment(s, rot, p, next);
            let restored = rot.set_velocity(normal);
            match segment? {
                None => next = p.projections,
                Some(lost) => {
                    s.say(&format!("beam lost at projection {lost}: restarting the rotation from there"));
                    next = lost;
                }
            }
            restored?;
        }
        Ok(())
    }

    /// One constant-velocity pass from projection `first`; returns the projection lost to a beam drop.
    fn segment(
        &self,
        s: &Session,
        rot: &Arc<dyn Motor>,
        p: &TomoParams,
        first: usize,
    ) -> Result<Option<usize>, ScanError> {
        let end = p.start + p.range + self.runup;
        s.plan_moves(&[(rot.clone(), end)])?;
        rot.start_move(end)?;
        let frames = || -> Result<Option<usize>, ScanError> {
            for j in first..p.projections {
                let a = p.angle(j);
                self.wait_until(s, rot, a)?;
                if !s.acquire_flying(ImageKey::Projection, a, self.period)? {
                    return Ok(Some(j));
                }
            }
            Ok(None)
        };
        let lost = match frames() {
            Ok(l) => l,
            Err(e) => {
                let _ = rot.stop();
                return Err(e);
            }
        };
        if lost.is_some() {
            rot.stop()?;
            return Ok(lost);
        }
        s.wait_motion(&[rot], Duration::ZERO, false)?;
        Ok(None)
    }

    /// Waits until the rotation reaches `angle`.
    fn wait_until(&self, s: &Session, rot: &Arc<dyn Motor>, angle: f64) -> Result<(), ScanError> {
        for _ in 0..10_000 {
            let left = angle - rot.position()?;
            if left <= 1e-9 * self.runup.max(1.0) {
                return Ok(());
            }
            if !rot.is_moving()? {
                return Err(ScanError::Device(crate::device::DeviceError::new(
                    rot.name(),
                    format!("stopped at {} before reaching {angle} during a fly scan", rot.position()?),
                )));
            }
            s.sleep(Duration::from_secs_f64(left / self.velocity).max(Duration::from_micros(1)))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_includes_both_ends() {
        assert_eq!(linspace(0.0, 1.0, 3), vec![0.0, 0.5, 1.0]);
        assert_eq!(linspace(2.0, 5.0, 1), vec![2.0]);
    }

    #[test]
    fn snake_grid_reverses_odd_rows() {
        let g = grid(&[0.0, 1.0], &[10.0, 20.0], true);
        assert_eq!(g, vec![vec![0.0, 10.0], vec![0.0, 20.0], vec![1.0, 20.0], vec![1.0, 10.0]]);
    }
}
