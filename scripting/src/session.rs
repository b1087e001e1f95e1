//! The state of one script run shared by every primitive: devices, control flags, progress, the open
//! series, the motors to return, and the report. Motion, acquisition (with the beam suspender) and series
//! handling live here; the scan shapes built on them live in [`crate::plans`].

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::json;

use crate::config::{secs, SuspenderConfig};
use crate::control::Control;
use acquisition::scan_data::{ScanColumn, ScanData};

use crate::device::{Beamline, FrameCounts, FrameRequest, ImageKey, Motor, SeriesInfo, SeriesStatus, SeriesSummary};
use crate::error::ScanError;
use crate::provenance::{utc_now, Provenance};
use crate::report::{CallSite, PlanReport, ScanRecord, Violation};

/// Whether devices really move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Devices move and the detector takes frames.
    Live,
    /// Simulated devices in zero time; soft-limit violations are recorded, not raised.
    Dry,
}

/// Live counters the progress line reads from another thread.
#[derive(Debug, Default)]
pub struct Progress {
    /// Frames kept so far.
    pub points_done: AtomicU64,
    /// Frames the run plans (from the preflight dry run; 0 when unknown).
    pub points_total: AtomicU64,
    /// True while the beam suspender holds the scan.
    pub suspended: AtomicBool,
    /// True while paused at a checkpoint.
    pub paused: AtomicBool,
    /// Times the suspender held the scan.
    pub suspensions: AtomicU64,
    /// Frames discarded and re-taken after a beam loss.
    pub retakes: AtomicU64,
}

/// A motor and a target.
pub type MotorMove = (Arc<dyn Motor>, f64);

#[derive(Debug)]
struct OpenSeries {
    name: String,
    area: bool,
    next_frame: u64,
    started: String,
    scan: serde_json::Value,
}

/// One script run.
pub struct Session {
    /// The devices.
    pub beamline: Beamline,
    /// Abort and pause flags.
    pub control: Arc<Control>,
    /// Live or dry.
    pub mode: Mode,
    /// Beam suspender, if configured.
    pub suspender: Option<SuspenderConfig>,
    /// Live counters.
    pub progress: Arc<Progress>,
    /// Provenance stored with every series.
    pub provenance: Provenance,
    used_params: Mutex<BTreeSet<String>>,
    asked_params: Mutex<BTreeSet<String>>,
    report: Mutex<PlanReport>,
    returns: Mutex<Vec<Vec<MotorMove>>>,
    series: Mutex<Option<OpenSeries>>,
    summaries: Mutex<Vec<SeriesSummary>>,
    last_fault: Mutex<Option<ScanError>>,
    call_site: Mutex<Option<CallSite>>,
    output: Arc<dyn Fn(&str) + Send + Sync>,
    table: Mutex<Option<ScanTable>>,
    finished_table: Mutex<Option<ScanTable>>,
    last_point: Mutex<Option<PointCounts>>,
    files: Mutex<Option<FileSettings>>,
    live_table: AtomicBool,
}

/// Where tables of scans are written (live runs with an in-process or external receiver).
#[derive(Debug, Clone)]
struct FileSettings {
    dir: std::path::PathBuf,
}

/// What was counted at the last kept point.
#[derive(Debug, Clone)]
struct PointCounts {
    counters: Vec<f64>,
    detector: Option<FrameCounts>,
    exposure: f64,
    start: f64,
}

/// The per-point table of a step scan: one column per motor set point and readback, counter, count time and
/// timestamp, in the order the points were visited.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScanTable {
    /// Column names.
    pub names: Vec<String>,
    /// Units per column.
    pub units: Vec<String>,
    /// Values, column by column.
    pub columns: Vec<Vec<f64>>,
    /// The column plotted by default.
    pub signal: String,
    /// The abscissa columns (readbacks of the scanned motors, or `point`).
    pub axes: Vec<String>,
    /// `linear`, `list`, `raster` or `snake`.
    pub order: String,
    /// `[rows, columns]` of a grid.
    pub grid_shape: Option<[u64; 2]>,
    motors: Vec<Arc<dyn Motor>>,
    counters: usize,
    area: bool,
}

impl std::fmt::Debug for dyn Motor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Motor({})", self.name())
    }
}

impl PartialEq for dyn Motor {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl ScanTable {
    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<&[f64]> {
        self.names.iter().position(|n| n == name).map(|i| self.columns[i].as_slice())
    }

    /// Points recorded.
    pub fn len(&self) -> usize {
        self.columns.first().map_or(0, Vec::len)
    }

    /// True before the first point.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push_column(&mut self, name: &str, units: &str) {
        self.names.push(name.to_string());
        self.units.push(units.to_string());
        self.columns.push(Vec::new());
    }

    /// The table in the form the NeXus writer takes.
    pub fn to_nexus(&self, title: &str, parameters: &serde_json::Value) -> ScanData {
        ScanData {
            title: title.to_string(),
            columns: self
                .names
                .iter()
                .zip(&self.units)
                .zip(&self.columns)
                .map(|((n, u), v)| ScanColumn {
                    name: n.clone(),
                    units: u.clone(),
                    long_name: long_name(n),
                    values: v.clone(),
                })
                .collect(),
            signal: self.signal.clone(),
            axes: self.axes.clone(),
            order: self.order.clone(),
            grid_shape: self.grid_shape,
            parameters: parameters.to_string(),
        }
    }

    /// The header of the live table.
    fn header(&self) -> String {
        let mut line = format!("{:>6}", "point");
        for i in self.shown() {
            line.push_str(&format!(" {:>12}", self.names[i]));
        }
        line
    }

    /// Columns the live table shows: readbacks and counters.
    fn shown(&self) -> impl Iterator<Item = usize> + '_ {
        self.names.iter().enumerate().filter(|(_, n)| is_shown(n)).map(|(i, _)| i)
    }

    /// The last row of the live table.
    fn last_row(&self) -> String {
        let n = self.len();
        let mut line = format!("{:>6}", n.saturating_sub(1));
        for i in self.shown() {
            let v = self.columns[i].last().copied().unwrap_or(f64::NAN);
            line.push_str(&format!(" {:>12}", format_value(v)));
        }
        line
    }
}

fn is_shown(name: &str) -> bool {
    !matches!(name, "point" | "timestamp" | "beamline_time" | "count_time" | "grid_row" | "grid_col")
        && !name.ends_with("_set")
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else if v == v.round() && v.abs() < 1e12 {
        format!("{v:.0}")
    } else {
        format!("{v:.5}")
    }
}

fn long_name(column: &str) -> String {
    match column {
        "point" => "point number, in the order visited".into(),
        "grid_row" | "grid_col" => format!("{column}: index of the point in the grid"),
        "i0" => "beam monitor counts".into(),
        "diode" => "diode counts behind the knife edge".into(),
        "det_total" => "detector: sum of all pixels".into(),
        "count_time" => "exposure (count time)".into(),
        "timestamp" => "seconds since 1970-01-01T00:00:00Z at the end of the exposure".into(),
        "beamline_time" => "beamline clock at the end of the exposure".into(),
        c if c.ends_with("_set") => format!("{}: set point", &c[..c.len() - 4]),
        c => c.to_string(),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave its data half-updated in a way that matters
    // more than stopping the beamline safely, so recover the guard.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Session {
    /// A session over `beamline`.
    pub fn new(
        beamline: Beamline,
        control: Arc<Control>,
        mode: Mode,
        suspender: Option<SuspenderConfig>,
        provenance: Provenance,
        progress: Arc<Progress>,
        output: Arc<dyn Fn(&str) + Send + Sync>,
    ) -> Session {
        Session {
            beamline,
            control,
            mode,
            suspender,
            progress,
            provenance,
            used_params: Mutex::default(),
            asked_params: Mutex::default(),
            report: Mutex::default(),
            returns: Mutex::default(),
            series: Mutex::default(),
            summaries: Mutex::default(),
            last_fault: Mutex::default(),
            call_site: Mutex::default(),
            output,
            table: Mutex::default(),
            finished_table: Mutex::default(),
            last_point: Mutex::default(),
            files: Mutex::default(),
            live_table: AtomicBool::new(false),
        }
    }

    /// Names of the devices a script can use: motors, then point counters.
    pub fn device_names(&self) -> Vec<String> {
        let motors = self.beamline.motors.iter().map(|m| m.name().to_string());
        motors.chain(self.beamline.counters.iter().map(|c| c.name().to_string())).collect()
    }

    /// Writes scan tables into the scans' files, or as small files in `dir` for scans without one.
    pub fn set_output_dir(&self, dir: std::path::PathBuf) {
        *lock(&self.files) = Some(FileSettings { dir });
    }

    /// Prints the live table (header at the start of a step scan, a row per point) through the output.
    pub fn set_live_table(&self, on: bool) {
        self.live_table.store(on, Ordering::Release);
    }

    /// Starts the table of a step scan over `motors`. `area` includes the detector's counters; `signal`
    /// names the default plot column (default: `det_total`, else `diode`, else `i0`).
    pub fn begin_table(
        &self,
        motors: &[Arc<dyn Motor>],
        order: &str,
        grid_shape: Option<[u64; 2]>,
        area: bool,
        signal: Option<&str>,
    ) -> Result<(), ScanError> {
        let mut t = ScanTable { order: order.to_string(), grid_shape, area, ..ScanTable::default() };
        t.push_column("point", "");
        if grid_shape.is_some() {
            t.push_column("grid_row", "");
            t.push_column("grid_col", "");
        }
        for m in motors {
            t.push_column(&format!("{}_set", m.name()), m.units());
            t.push_column(m.name(), m.units());
        }
        for c in &self.beamline.counters {
            t.push_column(c.name(), "counts");
        }
        t.counters = self.beamline.counters.len();
        if area {
            t.push_column("det_total", "counts");
            for r in self.beamline.detector.roi_names() {
                t.push_column(&r, "counts");
            }
        }
        t.push_column("count_time", "s");
        t.push_column("beamline_time", "s");
        t.push_column("timestamp", "s");
        t.signal = match signal {
            Some(sig) => {
                if !t.names.iter().any(|n| n == sig) || sig == "point" {
                    return Err(ScanError::Argument(format!(
                        "option `signal`: no counter `{sig}`; this scan records: {}",
                        t.names.iter().filter(|n| is_shown(n)).cloned().collect::<Vec<_>>().join(", ")
                    )));
                }
                sig.to_string()
            }
            None if area => "det_total".into(),
            None if t.names.iter().any(|n| n == "diode") => "diode".into(),
            None => "i0".into(),
        };
        t.axes = match motors.first() {
            Some(m) => vec![m.name().to_string()],
            None => vec!["point".into()],
        };
        t.motors = motors.to_vec();
        if self.mode == Mode::Live && self.live_table.load(Ordering::Acquire) {
            self.say(&t.header());
        }
        *lock(&self.table) = Some(t);
        Ok(())
    }

    /// Appends a row for the point just kept: set points `set`, readbacks, counters, time.
    pub fn record_point(&self, set: &[f64], grid_index: Option<(usize, usize)>) -> Result<(), ScanError> {
        let point = lock(&self.last_point).take();
        let mut guard = lock(&self.table);
        let Some(t) = guard.as_mut() else { return Ok(()) };
        let mut row = Vec::with_capacity(t.names.len());
        row.push(t.len() as f64);
        if t.grid_shape.is_some() {
            let (r, c) = grid_index.unwrap_or((0, 0));
            row.push(r as f64);
            row.push(c as f64);
        }
        for (i, m) in t.motors.iter().enumerate() {
            row.push(set.get(i).copied().unwrap_or(f64::NAN));
            row.push(m.position()?);
        }
        let (counters, detector, exposure, start) = match point {
            Some(p) => (p.counters, p.detector, p.exposure, p.start),
            None => (Vec::new(), None, f64::NAN, f64::NAN),
        };
        row.extend((0..t.counters).map(|i| counters.get(i).copied().unwrap_or(f64::NAN)));
        if t.area {
            let n = self.beamline.detector.roi_names().len();
            match detector {
                Some(d) => {
                    row.push(d.total);
                    row.extend((0..n).map(|i| d.rois.get(i).map_or(f64::NAN, |r| r.1)));
                }
                None => row.extend(std::iter::repeat_n(f64::NAN, n + 1)),
            }
        }
        let now = self.beamline.clock.now().as_secs_f64();
        row.push(exposure);
        row.push(now);
        let epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        row.push(epoch);
        let _ = start;
        for (c, v) in t.columns.iter_mut().zip(row) {
            c.push(v);
        }
        if self.mode == Mode::Live {
            let line = t.last_row();
            // Every column of the point, by name (NaN as null), so that the run log carries the whole table.
            let values: serde_json::Map<String, serde_json::Value> =
                t.names.iter().zip(&t.columns).map(|(n, c)| (n.clone(), serde_json::json!(c.last()))).collect();
            let values = serde_json::Value::Object(values);
            tracing::info!(target: "scan.row", point = t.len() - 1, signal = t.signal.as_str(), values = %values, row = %line, "scan.row");
            if self.live_table.load(Ordering::Acquire) {
                self.say(&line);
            }
        }
        Ok(())
    }

    /// The table of the last step scan, once it ended.
    pub fn take_table(&self) -> Option<ScanTable> {
        lock(&self.finished_table).take()
    }

    /// Drops a table left by a step scan that never started its series (a scan without a table follows).
    pub fn clear_table(&self) {
        lock(&self.table).take();
    }

    /// Prints a line for the operator (script `print`, suspender messages).
    pub fn say(&self, line: &str) {
        (self.output)(line);
    }

    /// Remembers where the script is (for reports and errors).
    pub fn set_call_site(&self, at: Option<CallSite>) {
        *lock(&self.call_site) = at;
    }

    fn call_site(&self) -> Option<CallSite> {
        lock(&self.call_site).clone()
    }

    /// Remembers the last primitive error, to classify the script's failure.
    pub fn set_fault(&self, e: &ScanError) {
        *lock(&self.last_fault) = Some(e.clone());
    }

    /// The last primitive error.
    pub fn last_fault(&self) -> Option<ScanError> {
        lock(&self.last_fault).clone()
    }

    /// A `--set` parameter, marking it as read.
    pub fn param(&self, name: &str) -> Option<String> {
        lock(&self.asked_params).insert(name.to_string());
        let v = self.provenance.parameters.get(name).cloned();
        if v.is_some() {
            lock(&self.used_params).insert(name.to_string());
        }
        v
    }

    /// `--set` parameters the script never read.
    pub fn unused_params(&self) -> Vec<String> {
        let used = lock(&self.used_params);
        self.provenance.parameters.keys().filter(|k| !used.contains(*k)).cloned().collect()
    }

    /// Every parameter name the script asked for with `param(...)`, given or not.
    pub fn asked_params(&self) -> Vec<String> {
        lock(&self.asked_params).iter().cloned().collect()
    }

    /// The report so far (duration filled in from the clock).
    pub fn report(&self) -> PlanReport {
        let mut r = lock(&self.report).clone();
        r.duration_s = self.beamline.clock.now().as_secs_f64();
        r
    }

    /// Every series ended so far.
    pub fn summaries(&self) -> Vec<SeriesSummary> {
        lock(&self.summaries).clone()
    }

    /// Waits while paused; fails once aborted. Called between points.
    pub fn checkpoint(&self) -> Result<(), ScanError> {
        self.control.check()?;
        // The preflight dry run never pauses: a pause is about the real beamline.
        if self.mode == Mode::Live && self.control.is_paused() {
            self.progress.paused.store(true, Ordering::Release);
            let _w = tracing::info_span!("wait.pause").entered();
            while self.control.is_paused() && !self.control.is_aborted() {
                std::thread::sleep(Duration::from_millis(20));
            }
            self.progress.paused.store(false, Ordering::Release);
            self.control.check()?;
        }
        Ok(())
    }

    /// Beamline time wait that an abort interrupts.
    pub fn sleep(&self, dt: Duration) -> Result<(), ScanError> {
        Ok(self.beamline.clock.sleep(dt, &self.control, false)?)
    }

    /// Checks targets against soft limits before anything moves. Live: the first violation is an error.
    /// Dry: every violation is recorded and the move goes ahead on the simulated motor.
    pub fn check_limits(&self, moves: &[MotorMove]) -> Result<(), ScanError> {
        for (m, target) in moves {
            let lim = m.limits();
            if lim.contains(*target) {
                continue;
            }
            if self.mode == Mode::Dry {
                lock(&self.report).violations.push(Violation {
                    motor: m.name().to_string(),
                    target: *target,
                    units: m.units().to_string(),
                    limits: lim,
                    at: self.call_site(),
                });
            } else {
                return Err(ScanError::SoftLimit {
                    motor: m.name().to_string(),
                    target: *target,
                    units: m.units().to_string(),
                    low: lim.low,
                    high: lim.high,
                });
            }
        }
        Ok(())
    }

    /// Moves motors together to their targets and waits; an abort stops them where they are.
    pub fn move_motors(&self, moves: &[MotorMove]) -> Result<(), ScanError> {
        self.checkpoint()?;
        self.plan_moves(moves)?;
        self.drive(moves, false)
    }

    /// Checks targets against the soft limits and records them in the report, without moving.
    pub fn plan_moves(&self, moves: &[MotorMove]) -> Result<(), ScanError> {
        self.check_limits(moves)?;
        let mut r = lock(&self.report);
        for (m, t) in moves {
            r.record_move(m.name(), m.units(), m.limits(), *t);
        }
        Ok(())
    }

    /// Starts every move, waits for all, stops all on abort. `cleanup` moves only stop on a hard abort.
    fn drive(&self, moves: &[MotorMove], cleanup: bool) -> Result<(), ScanError> {
        let names: Vec<&str> = moves.iter().map(|(m, _)| m.name()).collect();
        let _span = tracing::debug_span!("device.move", motors = moves.len(), motor = %names.join(",")).entered();
        let mut longest = Duration::ZERO;
        for (i, (m, t)) in moves.iter().enumerate() {
            match m.start_move(*t) {
                Ok(d) => longest = longest.max(d),
                Err(e) => {
                    for (started, _) in &moves[..i] {
                        let _ = started.stop();
                    }
                    return Err(e.into());
                }
            }
        }
        let motors: Vec<&Arc<dyn Motor>> = moves.iter().map(|(m, _)| m).collect();
        self.wait_motion(&motors, longest, cleanup)
    }

    /// Waits until no motor in `motors` moves.
    pub fn wait_motion(&self, motors: &[&Arc<dyn Motor>], expected: Duration, cleanup: bool) -> Result<(), ScanError> {
        let clock = &self.beamline.clock;
        let names: Vec<&str> = motors.iter().map(|m| m.name()).collect();
        let _w = tracing::debug_span!("wait.device", motor = %names.join(",")).entered();
        let mut waited = clock.sleep(expected, &self.control, cleanup);
        while waited.is_ok() {
            let mut moving = false;
            for m in motors {
                moving |= m.is_moving()?;
            }
            if !moving {
                return Ok(());
            }
            waited = clock.sleep(Duration::from_millis(1), &self.control, cleanup);
        }
        for m in motors {
            let _ = m.stop();
        }
        Err(waited.err().map(ScanError::from).unwrap_or_else(|| ScanError::Argument("unreachable".into())))
    }

    /// Opens or closes the fast shutter and waits for it.
    pub fn set_shutter(&self, open: bool) -> Result<(), ScanError> {
        let s = &self.beamline.shutter;
        let t = if open { s.open()? } else { s.close()? };
        self.sleep(t)
    }

    /// Holds while the beam is below the suspender threshold; then waits the settle time.
    fn wait_for_beam(&self) -> Result<(), ScanError> {
        let Some(sus) = self.suspender else { return Ok(()) };
        let beam = &self.beamline.beam;
        let current = beam.current()?;
        if current >= sus.min_current {
            return Ok(());
        }
        self.progress.suspended.store(true, Ordering::Release);
        self.progress.suspensions.fetch_add(1, Ordering::AcqRel);
        self.say(&format!(
            "suspended: {} at {current:.1} mA is below {:.1} mA; waiting for the beam",
            beam.name(),
            sus.min_current
        ));
        let _w = tracing::info_span!("wait.beam", min_current = sus.min_current).entered();
        let r = (|| {
            while beam.current()? < sus.min_current {
                self.sleep(Duration::from_millis(500))?;
            }
            self.sleep(secs(sus.settle))
        })();
        self.progress.suspended.store(false, Ordering::Release);
        if r.is_ok() {
            self.say(&format!("resumed: {} back at {:.1} mA", beam.name(), beam.current()?));
        }
        r
    }

    fn frame_request(&self, key: ImageKey, angle: f64, exposure: Duration) -> Result<FrameRequest, ScanError> {
        if !key.is_valid() {
            return Err(ScanError::Argument("a frame cannot be taken as image_key 3 (invalid)".into()));
        }
        let s = lock(&self.series);
        let index = s
            .as_ref()
            .map(|s| s.next_frame)
            .ok_or_else(|| ScanError::Argument("internal: frame outside a series".into()))?;
        let sc = &self.beamline.scene;
        let px = |m: &Option<Arc<dyn Motor>>| -> Result<f64, ScanError> {
            match m {
                Some(m) if sc.pixel_size > 0.0 => Ok(m.position()? / sc.pixel_size),
                _ => Ok(0.0),
            }
        };
        let beam = if sc.nominal_current > 0.0 { self.beamline.beam.current()? / sc.nominal_current } else { 1.0 };
        let time = if sc.reference_exposure > 0.0 { exposure.as_secs_f64() / sc.reference_exposure } else { 1.0 };
        let shift_px = [px(&sc.image_x)?, px(&sc.image_y)?];
        Ok(FrameRequest { index, key, angle, exposure, shift_px, scale: beam * time })
    }

    fn kept_frame(&self) {
        if let Some(s) = lock(&self.series).as_mut() {
            s.next_frame += 1;
        }
        lock(&self.report).points += 1;
        if let Some(r) = lock(&self.report).scans.last_mut() {
            r.points += 1;
        }
        self.progress.points_done.fetch_add(1, Ordering::AcqRel);
    }

    /// Takes one frame at the current positions. With a suspender, waits for beam first and re-takes the
    /// frame when the beam dropped during the exposure: the series never loses or doubles a point.
    pub fn acquire(&self, key: ImageKey, angle: f64, exposure: Duration) -> Result<(), ScanError> {
        let dead = exposure + self.beamline.detector.readout();
        loop {
            self.checkpoint()?;
            self.wait_for_beam()?;
            let frame = self.frame_request(key, angle, exposure)?;
            if self.expose(&frame, dead)? {
                return Ok(());
            }
            self.say(&format!("beam lost during frame {}: discarded, re-taking it", frame.index));
        }
    }

    /// Takes a frame during a fly scan; returns false (frame discarded) when the beam dropped during it,
    /// so the caller restarts the motion from this frame.
    pub fn acquire_flying(&self, key: ImageKey, angle: f64, exposure: Duration) -> Result<bool, ScanError> {
        self.control.check()?;
        let frame = self.frame_request(key, angle, exposure)?;
        self.expose(&frame, exposure)
    }

    /// Triggers `frame`, waits `dt`, then keeps the frame, or discards it (returning false) when the beam
    /// dropped meanwhile. An abort during the wait discards it too.
    fn expose(&self, frame: &FrameRequest, dt: Duration) -> Result<bool, ScanError> {
        let det = &self.beamline.detector;
        // The preflight dry run records no per-point spans (its trace stays small whatever the point count).
        let _span = (self.mode == Mode::Live)
            .then(|| tracing::trace_span!("scan.point", frame = frame.index, key = frame.key.code()).entered());
        let t0 = self.beamline.clock.now();
        let area = lock(&self.series).as_ref().is_some_and(|s| s.area);
        if area {
            det.trigger(frame)?;
        }
        let waited = tracing::debug_span!("wait.exposure", detector = det.name()).in_scope(|| self.sleep(dt));
        if let Err(e) = waited {
            if area {
                let _ = det.discard();
            }
            return Err(e);
        }
        if self.beam_dropped_since(t0)? {
            if area {
                det.discard()?;
            }
            self.progress.retakes.fetch_add(1, Ordering::AcqRel);
            return Ok(false);
        }
        if lock(&self.table).is_some() {
            let mut counters = Vec::with_capacity(self.beamline.counters.len());
            for c in &self.beamline.counters {
                counters.push(c.count(t0, frame.exposure)?);
            }
            let detector = if area { det.counts() } else { None };
            *lock(&self.last_point) = Some(PointCounts {
                counters,
                detector,
                exposure: frame.exposure.as_secs_f64(),
                start: t0.as_secs_f64(),
            });
        }
        if area {
            det.commit()?;
        }
        self.kept_frame();
        Ok(true)
    }

    /// True when a suspender is configured and the beam was below its threshold since `t0`.
    pub fn beam_dropped_since(&self, t0: Duration) -> Result<bool, ScanError> {
        match self.suspender {
            Some(s) => Ok(self.beamline.beam.minimum_since(t0)? < s.min_current),
            None => Ok(false),
        }
    }

    /// Waits for beam (suspender), then the checkpoint; used before restarting a fly segment.
    pub fn hold_for_beam(&self) -> Result<(), ScanError> {
        self.checkpoint()?;
        self.wait_for_beam()
    }

    /// Runs `body` as one series (one file): stages the detector, and whatever happens ends the series with
    /// the right status after putting the beamline in a safe state (motors stopped, shutter closed).
    pub fn run_series(
        &self,
        kind: &str,
        name: &str,
        planned: u64,
        scan: serde_json::Value,
        area: bool,
        body: impl FnOnce() -> Result<(), ScanError>,
    ) -> Result<SeriesSummary, ScanError> {
        self.checkpoint()?;
        let started = utc_now();
        let info = SeriesInfo {
            name: name.to_string(),
            frames_expected: planned,
            metadata: json!({ "provenance": self.provenance, "scan": scan, "started": started }),
        };
        lock(&self.report).scans.push(ScanRecord {
            kind: kind.to_string(),
            name: name.to_string(),
            planned,
            points: 0,
            at: self.call_site(),
            summary: scan.get("summary").and_then(|v| v.as_str()).map(str::to_string),
        });
        if area {
            self.beamline.detector.stage(&info)?;
        }
        *lock(&self.series) = Some(OpenSeries { name: name.to_string(), area, next_frame: 0, started, scan });
        let result = body();
        let status = match &result {
            Ok(()) => SeriesStatus::Complete,
            Err(ScanError::Aborted(_)) => SeriesStatus::Aborted,
            Err(_) => SeriesStatus::Failed,
        };
        match &result {
            Ok(()) => self.set_shutter(false).or_else(|_| self.safe_state())?,
            Err(_) => {
                let _ = self.safe_state();
            }
        }
        let summary = self.end_series(status)?;
        result.map(|()| summary)
    }

    fn end_series(&self, status: SeriesStatus) -> Result<SeriesSummary, ScanError> {
        let Some(open) = lock(&self.series).take() else {
            return Err(ScanError::Argument("internal: no series to end".into()));
        };
        let p = &self.progress;
        let meta = json!({
            "provenance": self.provenance,
            "scan": open.scan,
            "started": open.started,
            "stopped": utc_now(),
            "status": status.as_str(),
            "exit_status": match status {
                SeriesStatus::Complete => "success",
                SeriesStatus::Aborted => "aborted",
                SeriesStatus::Failed => "failed",
            },
            "abort_reason": if status == SeriesStatus::Aborted { Some(self.control.reason()) } else { None },
            "frames": open.next_frame,
            "suspensions": p.suspensions.load(Ordering::Acquire),
            "retakes": p.retakes.load(Ordering::Acquire),
        });
        let mut summary = if open.area {
            self.beamline.detector.unstage(status, meta.clone())?
        } else {
            SeriesSummary { name: open.name.clone(), file: None, frames: open.next_frame, status }
        };
        if let Some(file) = self.write_table(&summary, &meta)? {
            summary.file = Some(file);
        }
        lock(&self.summaries).push(summary.clone());
        Ok(summary)
    }

    /// Writes the open table (if any) into the scan's file, or into a new small file when the scan has none
    /// (no area detector, or frames sent to an external receiver). Only in live runs with an output folder.
    fn write_table(&self, summary: &SeriesSummary, meta: &serde_json::Value) -> Result<Option<PathBuf>, ScanError> {
        let table = lock(&self.table).take();
        *lock(&self.finished_table) = table.clone();
        let Some(files) = lock(&self.files).clone() else { return Ok(None) };
        let Some(t) = table.as_ref() else { return Ok(None) };
        let data = t.to_nexus(&summary.name, meta);
        let fail = |e: acquisition::writer::WriteError| {
            ScanError::Device(crate::device::DeviceError::new("scan table", e.to_string()))
        };
        match &summary.file {
            Some(f) => {
                acquisition::scan_data::append(f, &data).map_err(fail)?;
                Ok(None)
            }
            None => {
                let mut p = files.dir.join(format!("{}.h5", summary.name));
                let mut k = 1;
                while p.exists() {
                    p = files.dir.join(format!("{}-{k}.h5", summary.name));
                    k += 1;
                }
                acquisition::scan_data::write_new(&p, &data, &self.provenance.software).map_err(fail)?;
                Ok(Some(p))
            }
        }
    }

    /// Stops every motor and closes the shutter, ignoring a soft abort. Returns the first error.
    pub fn safe_state(&self) -> Result<(), ScanError> {
        let mut first: Option<ScanError> = None;
        for m in &self.beamline.motors {
            if let Err(e) = m.stop() {
                first.get_or_insert(e.into());
            }
        }
        match self.beamline.shutter.close() {
            Ok(t) => {
                let _ = self.beamline.clock.sleep(t, &self.control, true);
            }
            Err(e) => {
                first.get_or_insert(e.into());
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Runs `body`; when `enabled`, motors in `motors` go back to where they were afterwards, also after an
    /// abort or an error (then after the beamline is made safe).
    pub fn with_return<T>(
        &self,
        motors: &[Arc<dyn Motor>],
        enabled: bool,
        body: impl FnOnce() -> Result<T, ScanError>,
    ) -> Result<T, ScanError> {
        if !enabled {
            return body();
        }
        let mut back = Vec::with_capacity(motors.len());
        for m in motors {
            back.push((m.clone(), m.position()?));
        }
        lock(&self.returns).push(back);
        let result = body();
        let back = lock(&self.returns).pop().unwrap_or_default();
        match result {
            Ok(v) => {
                self.move_motors(&back)?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.safe_state();
                if let Err(r) = self.drive(&back, true) {
                    self.say(&format!("could not return motors after the scan stopped: {r}"));
                }
                Err(e)
            }
        }
    }

    /// Called once when the script ends: after a failure or abort the beamline is made safe, any series
    /// still open ends with `status`, and motors on the return stack go back.
    pub fn finish(&self, status: SeriesStatus) {
        if status == SeriesStatus::Complete {
            return;
        }
        let _ = self.safe_state();
        if lock(&self.series).is_some() {
            let _ = self.end_series(status);
        }
        while let Some(back) = lock(&self.returns).pop() {
            let _ = self.drive(&back, true);
        }
    }
}

impl Session {
    /// The series name for a scan: the given one, or, in a live run that writes files, `<kind>_<YYYYMMDD>_<n>`
    /// with `n` the scan number of the day persisted in the output folder (see [`crate::numbering`]), so that
    /// names never repeat across runs; in a dry run (or with no output folder) `<kind>_<n>` counting scans in
    /// this run.
    pub fn scan_name(&self, kind: &str, given: Option<&str>) -> Result<String, ScanError> {
        if let Some(n) = given {
            return Ok(n.to_string());
        }
        let dir = lock(&self.files).as_ref().map(|f| f.dir.clone());
        match dir {
            Some(dir) if self.mode == Mode::Live => {
                let date = crate::numbering::today();
                let n = crate::numbering::next_number(&dir, &date).map_err(|e| ScanError::Argument(e.to_string()))?;
                Ok(crate::numbering::scan_name(kind, &date, n))
            }
            _ => Ok(format!("{kind}_{:03}", lock(&self.report).scans.len() + 1)),
        }
    }
}
