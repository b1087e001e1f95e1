//! The demo driver: scan → receive (+ live preview) → reconstruct → accuracy → timeline → summary, all inside
//! one run folder. The scan, the reconstruction and the timeline are child processes of this binary (see
//! [`super::step`]); the receiver runs in this process on its own threads, with a [`PreviewFeed`] watching
//! its writer, so the receiver's and writer's lanes are in this process's log.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use acquisition::receiver::{Output, Receiver, ReceiverConfig, ReceiverThread};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use profiling::rundir::RunFolder as RunDir;
use reconstruct::accuracy::{self, Accuracy};
use reconstruct::preview::PreviewFeed;

use super::step::{arg, Finished, Step};
use super::DemoArgs;

/// The example tomography scan the demo runs (the scripting engineer's, from `scripting/examples/`).
const TOMO_SCRIPT: &str = include_str!("../../../examples/tomo.rhai");

/// Darks and flats (before and again after the projections) the demo asks the scan for.
const DARKS: u32 = 10;
const FLATS: u32 = 10;
/// Seconds of exposure per frame of the simulated detector.
const EXPOSURE: f64 = 0.01;

/// Longest a step may take before the demo gives up on it.
const STEP_LIMIT: Duration = Duration::from_secs(900);

/// Detector rows the live preview reconstructs (evenly spaced: a quarter, the middle, three quarters).
const PREVIEW_ROWS: usize = 3;

/// What the demo produced, for the summary.
#[derive(Debug, Default, serde::Serialize)]
struct Summary {
    run_dir: PathBuf,
    size: u32,
    angles: u32,
    scan_file: PathBuf,
    receiver: String,
    frames: usize,
    projections: usize,
    flats: usize,
    darks: usize,
    acquire_seconds: f64,
    frames_per_second: f64,
    recon_dir: PathBuf,
    tiffs: usize,
    recon_seconds: f64,
    slices_per_second: f64,
    accuracy: Option<Accuracy>,
    accuracy_error: Option<String>,
    preview_dir: Option<PathBuf>,
    preview_files: Vec<PathBuf>,
    preview_projections: usize,
    /// Frames the live preview skipped because it fell behind (the file has them all).
    preview_dropped: u64,
    preview_error: Option<String>,
    timeline: PathBuf,
    verdict: Option<String>,
    total_seconds: f64,
    steps: Vec<(String, f64)>,
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let t0 = Instant::now();
    let run = RunDir::create(args.out.as_deref())?;
    eprintln!(
        "beamline demo: {}x{} detector, {} projections; everything goes to {}",
        args.size,
        args.size,
        args.angles,
        run.show(run.root())
    );
    let ui = Ui::new();
    let mut summary =
        Summary { run_dir: run.root().to_path_buf(), size: args.size, angles: args.angles, ..Default::default() };
    // This process's own spans go to the run folder too, unless a recording is already installed (`--log`).
    let recording = (!tracing::dispatcher::has_been_set())
        .then(|| crate::profile::start_recording(Some(&run.logs().join(format!("demo-{}.jsonl", std::process::id())))));

    let feed = Arc::new(PreviewFeed::new(PREVIEW_ROWS, args.angles as usize));
    let acquired = acquire(&run, &args, &ui, &feed).context("acquisition (scan + receiver)")?;
    feed.finish();
    summary.preview_dropped = feed.dropped();
    let preview_dir = run.preview_dir();
    summary.preview_projections = feed.progress().map_or(0, |p| p.projections);
    summary.preview_error = feed.error().map(|e| e.to_string());
    match feed.write(&preview_dir) {
        Ok(files) => {
            summary.preview_dir = Some(preview_dir);
            summary.preview_files = files;
        }
        Err(e) => summary.preview_error = Some(format!("writing the preview: {e:#}")),
    }
    summary.scan_file = run.scan_file();
    summary.receiver = acquired.stdout.clone();
    let file = reconstruct::reader::NxTomo::open(&run.scan_file())
        .with_context(|| format!("reading back {}", run.scan_file().display()))?;
    let (flats_before, flats_after, darks) = file.reference_counts();
    summary.frames = file.frames();
    summary.projections = file.projections().len();
    summary.flats = flats_before + flats_after;
    summary.darks = darks;
    summary.acquire_seconds = acquired.elapsed.as_secs_f64();
    summary.frames_per_second = summary.frames as f64 / summary.acquire_seconds.max(1e-9);
    summary.steps.push((acquired.name.clone(), summary.acquire_seconds));

    let recon = reconstruct(&run, &args, &ui).context("reconstruction")?;
    summary.recon_dir = run.recon_dir();
    summary.recon_seconds = recon.elapsed.as_secs_f64();
    summary.tiffs = count_tiffs(&run.recon_dir());
    summary.slices_per_second = summary.tiffs as f64 / summary.recon_seconds.max(1e-9);
    summary.steps.push((recon.name.clone(), summary.recon_seconds));
    ui.step("accuracy: comparing the volume with the phantom");
    let attenuation =
        acquisition::sim::SimConfig::new(file.rows(), file.cols(), acquisition::protocol::Dtype::Uint16).attenuation;
    match accuracy::measure(&run.recon_dir(), file.rows(), file.cols(), attenuation) {
        Ok(a) => summary.accuracy = Some(a),
        Err(e) => summary.accuracy_error = Some(format!("{e:#}")),
    }

    // The receiver's spans are in this process's log: close it (the header and every record reach the disk
    // only then) so the timeline can read it.
    if let Some(r) = recording {
        crate::profile::finish_recording(r, &Ok(ExitCode::SUCCESS));
    }
    let timeline = render_timeline(&run, &ui).context("timeline")?;
    summary.timeline = run.timeline();
    summary.steps.push((timeline.name.clone(), timeline.elapsed.as_secs_f64()));
    summary.verdict = profiling::verdict(&run.trace_logs()).ok();

    ui.done();
    summary.total_seconds = t0.elapsed().as_secs_f64();
    let json = serde_json::to_string_pretty(&summary).context("encoding the summary")?;
    std::fs::write(run.summary(), json).with_context(|| format!("writing {}", run.summary().display()))?;
    print_summary(&run, &summary);
    Ok(ExitCode::SUCCESS)
}

/// The progress line.
struct Ui {
    bar: ProgressBar,
}

impl Ui {
    fn new() -> Ui {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Ui { bar }
    }

    fn step(&self, msg: impl Into<String>) {
        self.bar.set_message(msg.into());
    }

    fn done(&self) {
        self.bar.finish_and_clear();
    }
}

/// The beamline configuration of the demo: the built-in simulated beamline with the detector resized and
/// pushing to `endpoint` (an external receiver) instead of its in-process one.
fn write_beamline_config(run: &RunDir, size: u32, endpoint: &str) -> anyhow::Result<()> {
    let text = scripting::config::default_with_external_detector(size, endpoint, EXPOSURE)?;
    std::fs::write(run.beamline_config(), text).with_context(|| format!("writing {}", run.beamline_config().display()))
}

/// Runs the receiver (in this process, `feed` watching its writer) and the example tomography scan (a child
/// process); returns when the receiver has closed the file.
fn acquire(run: &RunDir, args: &DemoArgs, ui: &Ui, feed: &Arc<PreviewFeed>) -> anyhow::Result<Finished> {
    ui.step("acquire: starting the receiver");
    let mut cfg = ReceiverConfig::new(Output::File(run.scan_file()));
    cfg.endpoint = "tcp://127.0.0.1:*".into();
    cfg.observer = Some(feed.clone());
    let receiver = Receiver::bind(cfg).context("starting the receiver")?;
    let endpoint = receiver.endpoint();
    let receiver = receiver.spawn().context("starting the receiver thread")?;
    // From here on, every early return stops the receiver (it would otherwise wait for a series forever).
    let stop = receiver.stop_handle();
    let scanned = scan(run, args, ui, feed, &receiver, &endpoint);
    if scanned.is_err() {
        stop.stop();
    }
    let scanned = scanned?;
    ui.step("acquire: waiting for the receiver to close the file");
    let t = Instant::now();
    while !receiver.is_finished() && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let received = receiver.stop_and_join().context("the receiver failed")?;
    let s = received.series.first().context("the receiver got no series from the scan")?;
    let stdout = format!(
        "{}: {} of {} frames, {} missing, {} rejected",
        run.show(&s.path),
        s.received,
        s.expected,
        s.missing.len(),
        received.rejected_total().total()
    );
    Ok(Finished { name: "acquire".into(), stdout, elapsed: scanned.elapsed })
}

/// Runs the example tomography scan against the receiver at `endpoint`, showing the receiver's and the
/// preview's progress.
fn scan(
    run: &RunDir,
    args: &DemoArgs,
    ui: &Ui,
    feed: &PreviewFeed,
    receiver: &ReceiverThread,
    endpoint: &str,
) -> anyhow::Result<Finished> {
    write_beamline_config(run, args.size, endpoint)?;
    let script = run.root().join("tomo.rhai");
    std::fs::write(&script, TOMO_SCRIPT).with_context(|| format!("writing {}", script.display()))?;
    let set = |k: &str, v: u32| ["--set".to_string(), format!("{k}={v}")];
    let mut scan_args = vec!["scan".to_string(), "--config".into(), arg(&run.beamline_config())];
    scan_args.extend(set("projections", args.angles));
    scan_args.extend(set("darks", DARKS));
    scan_args.extend(set("flats", FLATS));
    scan_args.extend(["--set".into(), format!("exposure={EXPOSURE}"), "--set".into(), "mode=fly".into()]);
    scan_args.push(arg(&script));
    let mut scan = Step::new(run, "scan", &scan_args)?.spawn()?;
    let live = receiver.live();
    while !scan.has_exited() {
        let (got, of) = (live.received.load(Ordering::Relaxed), live.expected.load(Ordering::Relaxed));
        let preview = feed.progress().map_or(0, |p| p.projections);
        ui.step(format!(
            "acquire: scanning {} projections of {}x{}: {got}/{of} frames received, preview {preview}/{} \
             projections",
            args.angles, args.size, args.size, args.angles
        ));
        std::thread::sleep(Duration::from_millis(100));
        if scan.elapsed() > STEP_LIMIT {
            break;
        }
    }
    scan.wait_timeout(STEP_LIMIT)
}

/// Reconstructs the scan into a TIFF stack.
fn reconstruct(run: &RunDir, args: &DemoArgs, ui: &Ui) -> anyhow::Result<Finished> {
    ui.step(format!("reconstruct: {} slices on backend {}", args.size, args.backend));
    Step::new(
        run,
        "recon",
        &[
            "recon".into(),
            arg(&run.scan_file()),
            "-o".into(),
            arg(&run.recon_dir()),
            "--backend".into(),
            args.backend.clone(),
        ],
    )?
    .spawn()?
    .wait_timeout(STEP_LIMIT)
}

/// Renders the timeline of every step.
fn render_timeline(run: &RunDir, ui: &Ui) -> anyhow::Result<Finished> {
    ui.step("timeline: rendering the whole run");
    let logs = run.trace_logs();
    if logs.is_empty() {
        anyhow::bail!("no trace logs in {}: the steps did not record their spans", run.logs().display());
    }
    let mut a = vec!["timeline".to_string()];
    a.extend(logs.iter().map(|p| arg(p)));
    a.extend(["-o".into(), arg(&run.timeline()), "--title".into(), format!("beamline demo {}", run.show(run.root()))]);
    Step::new(run, "timeline", &a)?.run()
}

/// The rows of preview slice files, as `12, 24, 36`.
fn preview_rows(files: &[PathBuf]) -> String {
    let rows: Vec<String> = files
        .iter()
        .filter_map(|f| f.file_stem()?.to_str()?.strip_prefix("slice_")?.parse::<usize>().ok())
        .map(|r| r.to_string())
        .collect();
    rows.join(", ")
}

fn count_tiffs(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| matches!(e.path().extension().and_then(|x| x.to_str()), Some("tif" | "tiff")))
                .count()
        })
        .unwrap_or(0)
}

fn print_summary(run: &RunDir, s: &Summary) {
    let show = |p: &Path| run.show(p);
    println!("beamline demo finished in {:.1} s — {}", s.total_seconds, show(&s.run_dir));
    println!(
        "  scan       {}  {} frames of {}x{} ({} projections, {} flats, {} darks) in {:.1} s ({:.0} frames/s)",
        show(&s.scan_file),
        s.frames,
        s.size,
        s.size,
        s.projections,
        s.flats,
        s.darks,
        s.acquire_seconds,
        s.frames_per_second
    );
    println!("  receiver   {}", s.receiver);
    println!(
        "  volume     {}/  {} TIFF slices in {:.1} s ({:.1} slices/s)",
        show(&s.recon_dir),
        s.tiffs,
        s.recon_seconds,
        s.slices_per_second
    );
    match (&s.accuracy, &s.accuracy_error) {
        (Some(a), _) => println!(
            "  accuracy   RMSE {:.3} against the phantom over {} slices ({:.3} on the middle one), in phantom units \
             (skull 1.0, brain 0.2)",
            a.rmse, a.slices, a.rmse_middle
        ),
        (None, Some(e)) => println!("  accuracy   not measured: {e}"),
        (None, None) => println!("  accuracy   not measured"),
    }
    match &s.preview_dir {
        Some(p) => println!(
            "  preview    {}/  {} live slices (rows {}) from {} of {} projections, {} frames dropped{}",
            show(p),
            s.preview_files.len(),
            preview_rows(&s.preview_files),
            s.preview_projections,
            s.angles,
            s.preview_dropped,
            s.preview_error.as_deref().map(|e| format!("; last error: {e}")).unwrap_or_default()
        ),
        None => println!("  preview    not written: {}", s.preview_error.as_deref().unwrap_or("no series reached it")),
    }
    println!("  timeline   {}", show(&s.timeline));
    if let Some(v) = &s.verdict {
        println!("  verdict    {v}");
    }
    println!("  summary    {}", show(&run.summary()));
    println!("next: open {} in a browser; `beamline demo --size 384 --angles 600` for a bigger run", show(&s.timeline));
}
