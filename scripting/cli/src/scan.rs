//! `beamline scan` (run a Rhai scan script on the simulated beamline) and `beamline bench scan` (engine
//! overhead per point).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use scripting::config::{BeamlineConfig, DEFAULT_BEAMLINE};
use scripting::control::Control;
use scripting::device::detector::RecordingDetector;
use scripting::run::{DetectorChoice, ScanOptions, ScanOutcome, ScanRun};
use scripting::RunStatus;

/// Subcommands of this area.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a Rhai scan script on the (simulated) beamline.
    ///
    /// The script first runs as a dry run; if it would violate a soft limit or fails, nothing moves. Then it
    /// runs live: frames go over ZeroMQ into a receiver writing one NXtomo file per scan. Ctrl-C aborts
    /// (motors stop, shutter closes, the file is closed marked aborted, motors return); a second Ctrl-C
    /// also interrupts the return moves. `kill -USR1 <pid>` pauses at the next point, `kill -USR2` resumes.
    ///
    /// Exit status: 0 success, 1 could not start, 3 syntax error, 4 script error, 5 device error,
    /// 6 engine limit exceeded, 7 soft-limit violation found before moving, 130 aborted.
    Scan(ScanArgs),
}

/// Arguments of `beamline scan`.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// The Rhai script (see scripting/API.md and scripting/examples/).
    #[arg(required_unless_present = "print_config")]
    pub script: Option<PathBuf>,
    /// Only simulate: print points per scan, motor ranges, soft-limit violations and the estimated duration.
    #[arg(long)]
    pub dry_run: bool,
    /// A parameter the script reads with `param("key", default)`; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Beamline configuration (TOML); default: the built-in simulated beamline.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Real seconds per beamline second (0 = as fast as possible); overrides the configuration.
    #[arg(long)]
    pub time_scale: Option<f64>,
    /// Folder for the NXtomo files; overrides the configuration.
    #[arg(long, short = 'o')]
    pub output_dir: Option<PathBuf>,
    /// Skip the preflight dry run (not recommended: soft-limit violations are then found only when reached).
    #[arg(long)]
    pub no_preflight: bool,
    /// Print one JSON object with the outcome on the last line of stdout.
    #[arg(long)]
    pub json: bool,
    /// Print the built-in beamline configuration and exit.
    #[arg(long)]
    pub print_config: bool,
    /// No live table (a row per step-scan point) on the terminal; the rows still go to the run log.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// Benchmarks of this area.
#[derive(Debug, Subcommand)]
pub enum Bench {
    /// Scan engine overhead per point: a step scan with zero-time simulated devices (goal <= 30 us/point).
    Scan(BenchArgs),
}

/// Arguments of `beamline bench scan`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Points of the step scan.
    #[arg(long, default_value_t = 10_000)]
    pub points: u64,
    /// Repetitions; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub repeat: usize,
    /// Print one JSON object on the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

impl Command {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Command::Scan(a) => scan(a),
        }
    }
}

impl Bench {
    /// Runs the benchmark.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Bench::Scan(a) => bench(a),
        }
    }
}

fn parse_sets(sets: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut params = BTreeMap::new();
    for s in sets {
        let (k, v) = s
            .split_once('=')
            .with_context(|| format!("--set {s:?}: expected KEY=VALUE, e.g. --set projections=900"))?;
        let k = k.trim();
        anyhow::ensure!(
            !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "--set {s:?}: the key must be a name made of letters, digits and _"
        );
        params.insert(k.to_string(), v.to_string());
    }
    Ok(params)
}

fn load_config(path: Option<&Path>) -> anyhow::Result<BeamlineConfig> {
    Ok(match path {
        Some(p) => BeamlineConfig::load(p)?,
        None => BeamlineConfig::default(),
    })
}

/// SIGUSR1 (pause) and SIGUSR2 (resume) set these; the progress loop forwards them to the run's control.
static PAUSE_SIGNAL: AtomicBool = AtomicBool::new(false);
static RESUME_SIGNAL: AtomicBool = AtomicBool::new(false);

extern "C" fn on_pause_signal(sig: libc::c_int) {
    if sig == libc::SIGUSR1 {
        PAUSE_SIGNAL.store(true, Ordering::SeqCst);
    } else {
        RESUME_SIGNAL.store(true, Ordering::SeqCst);
    }
}

fn install_signals(control: &Arc<Control>) {
    let c = control.clone();
    // SIGINT, SIGTERM and SIGHUP (ctrlc's `termination` feature) all abort through the safe-state sequence.
    if let Err(e) = ctrlc::set_handler(move || c.abort("Ctrl-C or termination signal (SIGINT/SIGTERM/SIGHUP)")) {
        eprintln!("warning: cannot install the Ctrl-C/SIGTERM handler ({e}); an abort by signal will not be clean");
    }
    let handler = on_pause_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to atomics, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGUSR1, handler);
        libc::signal(libc::SIGUSR2, handler);
    }
}

fn scan(a: ScanArgs) -> anyhow::Result<ExitCode> {
    if a.print_config {
        print!("{DEFAULT_BEAMLINE}");
        return Ok(ExitCode::SUCCESS);
    }
    let Some(script) = a.script.as_deref() else {
        anyhow::bail!("give a script: beamline scan FILE.rhai (see scripting/examples/)");
    };
    let config = load_config(a.config.as_deref())?;
    let bar = if a.dry_run || a.json { ProgressBar::hidden() } else { ProgressBar::new(0) };
    let printer = bar.clone();
    let options = ScanOptions {
        config,
        params: parse_sets(&a.set)?,
        dry_run: a.dry_run,
        preflight: !a.no_preflight,
        time_scale: a.time_scale,
        detector: DetectorChoice::Acquisition,
        output_dir: a.output_dir.clone(),
        output: Arc::new(move |line: &str| printer.suspend(|| eprintln!("{line}"))),
        on_live_start: None,
        live_table: !a.quiet && !a.json,
    };
    let text = std::fs::read_to_string(script).with_context(|| format!("cannot read script {}", script.display()))?;
    let control = Arc::new(Control::default());
    install_signals(&control);
    let run = ScanRun::start_with(&script.display().to_string(), text, options, control)?;
    show_progress(&run, &bar);
    let outcome = run.wait()?;
    bar.finish_and_clear();
    print_outcome(&outcome, a.json);
    Ok(outcome.status.exit())
}

fn show_progress(run: &ScanRun, bar: &ProgressBar) {
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} points, {eta} left {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let p = run.progress().clone();
    while !run.is_finished() {
        if PAUSE_SIGNAL.swap(false, Ordering::SeqCst) {
            run.control().pause();
            bar.println("pause requested: the scan stops at the next point (kill -USR2 to resume)");
        }
        if RESUME_SIGNAL.swap(false, Ordering::SeqCst) {
            run.control().resume();
        }
        let total = p.points_total.load(Ordering::Acquire);
        if total == 0 {
            bar.set_message("checking the script (dry run)");
        } else {
            bar.set_length(total);
            bar.set_position(p.points_done.load(Ordering::Acquire));
            let msg = if run.control().is_aborted() {
                "aborting: stopping motors, closing shutter and file"
            } else if p.suspended.load(Ordering::Acquire) {
                "SUSPENDED: waiting for beam"
            } else if p.paused.load(Ordering::Acquire) {
                "PAUSED (kill -USR2 to resume)"
            } else {
                ""
            };
            bar.set_message(msg);
        }
        bar.tick();
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn print_outcome(o: &ScanOutcome, json: bool) {
    if o.dry_run {
        println!("dry run (nothing moved):");
        print!("{}", o.report);
    } else if let Some(pre) = o.preflight.as_ref().filter(|_| o.status == RunStatus::LimitViolation) {
        eprintln!("refused: the preflight dry run found soft-limit violations; nothing was moved");
        eprint!("{pre}");
    }
    if let Some(e) = &o.error {
        eprint!("error: {e}");
    }
    for s in o.series.iter().filter(|_| !o.dry_run) {
        let file = s.file.as_ref().map_or("(sent to the external receiver)".to_string(), |f| f.display().to_string());
        println!("{}: {} points, {} -> {file}", s.name, s.frames, s.status.as_str());
    }
    if !o.dry_run && o.status != RunStatus::LimitViolation {
        println!(
            "{}: {} points in {:.1} s (beamline time {:.1} s), {} suspensions, {} frames re-taken",
            match o.status {
                RunStatus::Success => "done",
                RunStatus::Aborted => "aborted",
                _ => "failed",
            },
            o.points,
            o.elapsed.as_secs_f64(),
            o.beamline_time.as_secs_f64(),
            o.suspensions,
            o.retakes
        );
    }
    // Refused by the dry run when it ran (the error says so); a warning only after a live run without one.
    for k in o.unused_params.iter().filter(|_| o.error.is_none()) {
        eprintln!("warning: --set {k}=... was never read by the script (misspelt?)");
    }
    if json {
        match serde_json::to_string(o) {
            Ok(j) => println!("{j}"),
            Err(e) => eprintln!("error: cannot serialise the outcome: {e}"),
        }
    }
}

/// Runs `script` live with zero-time devices and a recording detector, the per-point table recorded and
/// written (a counters-only NeXus file in a scratch folder, removed afterwards); returns wall seconds and
/// points kept.
fn timed_run(script: &str) -> anyhow::Result<(f64, u64)> {
    let dir = std::env::temp_dir().join(format!("beamline-bench-scan-{}", std::process::id()));
    let r = timed_run_in(script, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    r
}

fn timed_run_in(script: &str, dir: &std::path::Path) -> anyhow::Result<(f64, u64)> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut config = BeamlineConfig::default();
    config.clock.time_scale = 0.0;
    config.engine.max_operations = u64::MAX;
    let det = Arc::new(RecordingDetector::new("det", Duration::ZERO, false));
    let options = ScanOptions {
        config,
        preflight: false,
        detector: DetectorChoice::Custom(det),
        output: Arc::new(|_: &str| {}),
        output_dir: Some(dir.to_path_buf()),
        ..ScanOptions::default()
    };
    let t0 = Instant::now();
    let o = ScanRun::start("bench.rhai", script.to_string(), options)?.wait()?;
    let secs = t0.elapsed().as_secs_f64();
    anyhow::ensure!(o.status == RunStatus::Success, "benchmark script failed: {:?}", o.error);
    let is_h5 = |e: &std::fs::DirEntry| e.path().extension().is_some_and(|x| x == "h5");
    let tables = std::fs::read_dir(dir).map(|d| d.flatten().filter(is_h5).count()).unwrap_or(0);
    anyhow::ensure!(o.points == 0 || tables > 0, "the benchmark scan wrote no table into {}", dir.display());
    Ok((secs, o.points))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Microseconds per iteration beyond a one-iteration run (so engine start-up is not counted), median of
/// `repeat`. `frames_per_iteration` is checked against the frames the runs kept.
fn per_point_us(repeat: usize, n: u64, frames_per_iteration: u64, make: impl Fn(u64) -> String) -> anyhow::Result<f64> {
    let mut v = Vec::new();
    for _ in 0..repeat.max(1) {
        let (t1, p1) = timed_run(&make(1))?;
        let (tn, pn) = timed_run(&make(n))?;
        anyhow::ensure!(
            (p1, pn) == (frames_per_iteration, n * frames_per_iteration),
            "the benchmark kept {p1} and {pn} frames, expected {frames_per_iteration} and {}",
            n * frames_per_iteration
        );
        v.push((tn - t1) / (n - 1) as f64 * 1e6);
    }
    Ok(median(v))
}

/// The bluesky peer script (run by the Python in `BEAMLINE_BLUESKY_PYTHON`).
const BLUESKY_PEER: &str = include_str!("../../bench/bluesky_peer.py");

/// Runs bluesky's RunEngine with ophyd.sim on this machine, when a Python with both is given.
fn bluesky_peer() -> anyhow::Result<serde_json::Value> {
    let python = std::env::var_os("BEAMLINE_BLUESKY_PYTHON").context(
        "set BEAMLINE_BLUESKY_PYTHON to a Python with bluesky and ophyd (python -m venv v && v/bin/pip install \
         bluesky ophyd) to measure bluesky's RunEngine here",
    )?;
    let out = std::process::Command::new(&python)
        .args(["-c", BLUESKY_PEER, "2000"])
        .output()
        .with_context(|| format!("cannot run {}", PathBuf::from(&python).display()))?;
    anyhow::ensure!(out.status.success(), "bluesky peer failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or("")).context("bluesky peer printed no JSON")
}

fn bench(a: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(a.points >= 2, "--points must be at least 2");
    let n = a.points;
    println!("scan engine overhead, {n}-point step scans, zero-time simulated devices, median of {}", a.repeat);
    let step = per_point_us(a.repeat, n, 1, |k| format!("scan(samx, -10.0, 10.0, {k}, #{{exposure: 0.0}});"))?;
    println!("  scan(samx, ...)            {step:8.2} us/point  (move + trigger + suspender check + commit)");
    let count = per_point_us(a.repeat, n, 1, |k| format!("count({k}, #{{exposure: 0.0}});"))?;
    println!("  count(n)                   {count:8.2} us/point");
    let loop_us = per_point_us(a.repeat, n, 0, |k| {
        format!("let n = {k}; let c = 0; for i in 0..n {{ move(samx, -10.0 + 20.0 * i / n); c += position(samx); }}")
    })?;
    println!("  Rhai loop: move + position {loop_us:8.2} us/iteration (script-level loop)");
    let goal = 30.0;
    println!("goal <= {goal} us/point: {}", if step <= goal { "met" } else { "NOT met" });
    let peer = bluesky_peer();
    match &peer {
        Ok(p) => println!(
            "peer, same machine now: bluesky {} RunEngine + ophyd {} sim: scan {:.0} us/point, count {:.0} us/point \
             ({} points)",
            p["bluesky"].as_str().unwrap_or("?"),
            p["ophyd"].as_str().unwrap_or("?"),
            p["scan_us_per_point"].as_f64().unwrap_or(f64::NAN),
            p["count_us_per_point"].as_f64().unwrap_or(f64::NAN),
            p["points"]
        ),
        Err(e) => println!("peer not run: {e}"),
    }
    if a.json {
        let j = serde_json::json!({
            "bench": "scan", "points": n, "repeat": a.repeat,
            "scan_us_per_point": step, "count_us_per_point": count, "rhai_loop_us_per_iteration": loop_us,
            "goal_us_per_point": goal, "goal_met": step <= goal,
            "peer": peer.as_ref().ok(),
        });
        println!("{j}");
    }
    Ok(ExitCode::SUCCESS)
}
