//! Running a scan script: a preflight dry run (nothing moves if it finds a soft-limit violation or an
//! error), then the live run, each on the script's own thread; the outcome says what happened.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::clock::TimeScale;
use crate::config::{secs, BeamlineConfig};
use crate::control::Control;
use crate::device::detector::RecordingDetector;
use crate::device::{Beamline, Detector, SeriesStatus, SeriesSummary};
use crate::diagnostics::{self, ScriptError, Sources};
use crate::error::RunStatus;
use crate::provenance::Provenance;
use crate::report::PlanReport;
use crate::session::{Mode, Progress, Session};

/// Called with the live beamline before the live run starts.
pub type LiveStartHook = Arc<dyn Fn(&Beamline) + Send + Sync>;

/// Which detector a live run drives.
#[derive(Clone, Default)]
pub enum DetectorChoice {
    /// Frames over ZeroMQ into the acquisition receiver writing NXtomo files (in-process unless the
    /// configuration names an external endpoint).
    #[default]
    Acquisition,
    /// Remember frames only; writes no file (benchmarks, tests of scan logic).
    Recording,
    /// A detector supplied by the caller (tests, another control system).
    Custom(Arc<dyn Detector>),
}

/// How to run a script.
#[derive(Clone)]
pub struct ScanOptions {
    /// The beamline.
    pub config: BeamlineConfig,
    /// `--set key=value` parameters.
    pub params: BTreeMap<String, String>,
    /// Only simulate and report (`--dry-run`).
    pub dry_run: bool,
    /// Dry-run first and refuse to move on violations or errors (default true).
    pub preflight: bool,
    /// Overrides `[clock] time_scale`.
    pub time_scale: Option<f64>,
    /// The detector of the live run.
    pub detector: DetectorChoice,
    /// Overrides `[detector] output_dir`.
    pub output_dir: Option<PathBuf>,
    /// Where `print` output and suspender messages go (default: stderr).
    pub output: Arc<dyn Fn(&str) + Send + Sync>,
    /// Called with the live beamline just before the live run starts (monitoring, tests, demos).
    pub on_live_start: Option<LiveStartHook>,
    /// Print the live table (a row per step-scan point) through `output` (default true; `--quiet` turns
    /// it off). The rows always go to the run log.
    pub live_table: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            config: BeamlineConfig::default(),
            params: BTreeMap::new(),
            dry_run: false,
            preflight: true,
            time_scale: None,
            detector: DetectorChoice::default(),
            output_dir: None,
            output: Arc::new(|line: &str| eprintln!("{line}")),
            on_live_start: None,
            live_table: true,
        }
    }
}

/// A run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The script file could not be read.
    #[error("cannot read script {path}: {source}")]
    Read {
        /// The script.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The detector (receiver, sender) could not start.
    #[error("detector: {0}")]
    Detector(String),
    /// The script thread could not be started or died.
    #[error("script thread: {0}")]
    Thread(String),
}

/// What a run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScanOutcome {
    /// How it ended (and the exit status).
    pub status: RunStatus,
    /// The error, when it did not succeed.
    pub error: Option<ScriptError>,
    /// True for `--dry-run`.
    pub dry_run: bool,
    /// What the run did (live) or would do (dry run).
    pub report: PlanReport,
    /// The preflight dry run's report, when one ran before a live run.
    pub preflight: Option<PlanReport>,
    /// Every series (file) written.
    pub series: Vec<SeriesSummary>,
    /// Frames kept.
    pub points: u64,
    /// Times the beam suspender held the scan.
    pub suspensions: u64,
    /// Frames discarded and re-taken after a beam loss.
    pub retakes: u64,
    /// Motor positions at the end.
    pub positions: BTreeMap<String, f64>,
    /// Motors still moving at the end (always empty unless a device misbehaves).
    pub moving: Vec<String>,
    /// Whether the shutter was open at the end.
    pub shutter_open: bool,
    /// Wall-clock duration.
    pub elapsed: Duration,
    /// Beamline time the run took.
    pub beamline_time: Duration,
    /// `--set` parameters the script never read.
    pub unused_params: Vec<String>,
    /// Parameter names the script asked for with `param(...)`.
    pub params_read: Vec<String>,
}

impl ScanOutcome {
    /// Files written, in order.
    pub fn files(&self) -> Vec<PathBuf> {
        self.series.iter().filter_map(|s| s.file.clone()).collect()
    }
}

/// A script running on its own thread.
pub struct ScanRun {
    control: Arc<Control>,
    progress: Arc<Progress>,
    thread: JoinHandle<ScanOutcome>,
}

impl ScanRun {
    /// Reads `path` and starts it.
    pub fn start_file(path: &Path, options: ScanOptions) -> Result<ScanRun, RunError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| RunError::Read { path: path.to_path_buf(), source })?;
        ScanRun::start(&path.display().to_string(), text, options)
    }

    /// Starts script `text` (named `name` in errors and provenance).
    pub fn start(name: &str, text: String, options: ScanOptions) -> Result<ScanRun, RunError> {
        ScanRun::start_with(name, text, options, Arc::new(Control::default()))
    }

    /// Starts with a caller-owned control (to abort or pause from elsewhere, e.g. a Ctrl-C handler).
    pub fn start_with(
        name: &str,
        text: String,
        options: ScanOptions,
        control: Arc<Control>,
    ) -> Result<ScanRun, RunError> {
        let progress = Arc::new(Progress::default());
        let live_detector = if options.dry_run { None } else { Some(make_detector(&options)?) };
        let job = Job { name: name.to_string(), text, options, control: control.clone(), progress: progress.clone() };
        let thread = std::thread::Builder::new()
            .name("scan-script".into())
            .stack_size(32 << 20)
            .spawn(move || job.run(live_detector))
            .map_err(|e| RunError::Thread(e.to_string()))?;
        Ok(ScanRun { control, progress, thread })
    }

    /// Abort and pause flags of this run.
    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }

    /// Live counters.
    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }

    /// True once the script thread has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for the end.
    pub fn wait(self) -> Result<ScanOutcome, RunError> {
        self.thread.join().map_err(|_| RunError::Thread("the script thread panicked; please report this".into()))
    }
}

/// Runs a script file to the end on its own thread: the entry point for other tools (`beamline demo`).
pub fn run_scan_file(path: &Path, options: ScanOptions) -> Result<ScanOutcome, RunError> {
    ScanRun::start_file(path, options)?.wait()
}

fn make_detector(o: &ScanOptions) -> Result<Arc<dyn Detector>, RunError> {
    let d = &o.config.detector;
    match &o.detector {
        DetectorChoice::Custom(det) => Ok(det.clone()),
        DetectorChoice::Recording => Ok(Arc::new(RecordingDetector::new(&d.name, secs(d.readout), true))),
        DetectorChoice::Acquisition => {
            crate::device::acq::AcquisitionDetector::start(d, o.output_dir.as_deref(), o.config.sim.seed)
                .map(|a| Arc::new(a) as Arc<dyn Detector>)
                .map_err(|e| RunError::Detector(e.to_string()))
        }
    }
}

struct Job {
    name: String,
    text: String,
    options: ScanOptions,
    control: Arc<Control>,
    progress: Arc<Progress>,
}

impl Job {
    fn sources(&self) -> Sources {
        Sources {
            main: self.name.clone(),
            text: self.text.clone(),
            library: self.options.config.engine.site_library.clone(),
        }
    }

    fn run(self, live_detector: Option<Arc<dyn Detector>>) -> ScanOutcome {
        let o = &self.options;
        let cfg = &o.config;
        let Some(detector) = live_detector else {
            let dry = cfg.build(TimeScale::ZERO, self.dry_detector(), true, None);
            let mut out = self.pass(Mode::Dry, dry, self.progress.clone(), o.output.clone());
            if out.status == RunStatus::Success && !out.unused_params.is_empty() {
                out.status = RunStatus::Failed;
                out.error = Some(diagnostics::unused_params_error(&out.unused_params, &out.params_read));
            }
            return out;
        };
        let scale = TimeScale(o.time_scale.unwrap_or(cfg.clock.time_scale));
        let live = cfg.build(scale, detector, false, None);
        if o.preflight {
            // A replica of the live beamline, from where its motors are now.
            let replica = cfg.build(TimeScale::ZERO, self.dry_detector(), true, Some(&live.positions()));
            let quiet: Arc<dyn Fn(&str) + Send + Sync> = Arc::new(|_: &str| {});
            let dry = self.pass(Mode::Dry, replica, Arc::new(Progress::default()), quiet);
            let refuse = |status: RunStatus, error: Option<ScriptError>| ScanOutcome {
                status,
                error,
                dry_run: false,
                preflight: Some(dry.report.clone()),
                report: PlanReport::default(),
                series: Vec::new(),
                points: 0,
                suspensions: 0,
                retakes: 0,
                positions: live.positions(),
                moving: live.moving(),
                shutter_open: live.shutter.is_open().unwrap_or(true),
                elapsed: dry.elapsed,
                beamline_time: Duration::ZERO,
                unused_params: dry.unused_params.clone(),
                params_read: dry.params_read.clone(),
            };
            if dry.status != RunStatus::Success {
                let mut err = dry.error.clone();
                if let Some(e) = err.as_mut() {
                    e.message = format!("{} (found by the preflight dry run; nothing was moved)", e.message);
                }
                return refuse(dry.status, err);
            }
            if !dry.unused_params.is_empty() {
                return refuse(
                    RunStatus::Failed,
                    Some(diagnostics::unused_params_error(&dry.unused_params, &dry.params_read)),
                );
            }
            if !dry.report.violations.is_empty() {
                return refuse(RunStatus::LimitViolation, None);
            }
            self.progress.points_total.store(dry.report.points, Ordering::Release);
            if let Some(hook) = &o.on_live_start {
                hook(&live);
            }
            let mut outcome = self.pass(Mode::Live, live, self.progress.clone(), o.output.clone());
            outcome.preflight = Some(dry.report);
            return outcome;
        }
        if let Some(hook) = &o.on_live_start {
            hook(&live);
        }
        self.pass(Mode::Live, live, self.progress.clone(), o.output.clone())
    }

    fn dry_detector(&self) -> Arc<dyn Detector> {
        let d = &self.options.config.detector;
        Arc::new(RecordingDetector::new(&d.name, secs(d.readout), false))
    }

    fn pass(
        &self,
        mode: Mode,
        beamline: Beamline,
        progress: Arc<Progress>,
        output: Arc<dyn Fn(&str) + Send + Sync>,
    ) -> ScanOutcome {
        let t0 = Instant::now();
        let o = &self.options;
        let cfg = &o.config;
        let provenance = Provenance::new(&self.name, &self.text, o.params.clone());
        let session =
            Arc::new(Session::new(beamline, self.control.clone(), mode, cfg.suspender, provenance, progress, output));
        if mode == Mode::Live {
            session.set_live_table(o.live_table);
            // Tables go with the acquisition detector's files; with another detector only to a folder the
            // caller names.
            if matches!(o.detector, DetectorChoice::Acquisition) {
                let dir =
                    o.output_dir.clone().or_else(|| cfg.detector.output_dir.clone()).unwrap_or_else(|| ".".into());
                session.set_output_dir(dir);
            } else if let Some(dir) = &o.output_dir {
                session.set_output_dir(dir.clone());
            }
        }
        let (engine, mut scope) = crate::engine::build(&session, &cfg.engine);
        let sources = self.sources();
        let error = match engine.compile_with_scope(&scope, &self.text) {
            Err(e) => Some(diagnostics::parse_error(&e, &sources)),
            Ok(mut ast) => {
                ast.set_source(self.name.as_str());
                let _span = tracing::info_span!("scan.script", mode = ?mode).entered();
                engine.run_ast_with_scope(&mut scope, &ast).err().map(|e| {
                    let fault = session.last_fault();
                    diagnostics::runtime_error(
                        &e,
                        &sources,
                        fault.as_ref(),
                        &cfg.engine,
                        &session.device_names(),
                        self.control.is_aborted(),
                    )
                })
            }
        };
        let status = error.as_ref().map_or(RunStatus::Success, |e| e.status);
        session.finish(match status {
            RunStatus::Success => SeriesStatus::Complete,
            RunStatus::Aborted => SeriesStatus::Aborted,
            _ => SeriesStatus::Failed,
        });
        drop(engine);
        let bl = &session.beamline;
        let p = &session.progress;
        ScanOutcome {
            status,
            error,
            dry_run: mode == Mode::Dry,
            report: session.report(),
            preflight: None,
            series: session.summaries(),
            points: p.points_done.load(Ordering::Acquire),
            suspensions: p.suspensions.load(Ordering::Acquire),
            retakes: p.retakes.load(Ordering::Acquire),
            positions: bl.positions(),
            moving: bl.moving(),
            shutter_open: bl.shutter.is_open().unwrap_or(true),
            elapsed: t0.elapsed(),
            beamline_time: bl.clock.now(),
            unused_params: session.unused_params(),
            params_read: session.asked_params(),
        }
    }
}
