//! CLI for profiling: `beamline timeline`, `beamline runs report`, `beamline bench trace`, and the run
//! log every command records (`--log FILE`, or a new file in the run directory).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};

use profiling::rundir::{self, Recording};
use profiling::{clock, tracebench, workload, Outcome};

/// Subcommands of this area.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Render run logs into one self-contained HTML timeline (or Chrome trace JSON for Perfetto).
    ///
    /// Every `beamline` command records a log of timed spans from all its threads: see `--log` and
    /// the run directory ($BEAMLINE_RUN_DIR, else $XDG_STATE_HOME/beamline/runs, else
    /// ~/.local/state/beamline/runs; it keeps the newest 1000 logs, $BEAMLINE_RUN_KEEP changes that, 0
    /// keeps all). Several logs (processes of one run) merge onto one time axis.
    Timeline(TimelineArgs),
    /// Reports across many runs.
    Runs {
        /// What to report.
        #[command(subcommand)]
        which: Runs,
    },
}

/// `beamline runs ...`
#[derive(Debug, Subcommand)]
pub enum Runs {
    /// Every run log under DIR: runs per command and per day, failures grouped by error kind,
    /// throughput and efficiency per run; written as HTML (with plots) and JSON.
    Report(ReportArgs),
}

/// Output format of `beamline timeline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One self-contained HTML page (no network access needed or made).
    Html,
    /// Chrome Trace Event JSON, opened by Perfetto (ui.perfetto.dev) and chrome://tracing.
    Chrome,
}

/// Arguments of `beamline timeline`.
#[derive(Debug, Args)]
pub struct TimelineArgs {
    /// Run logs (`.jsonl`) to render together.
    #[arg(required = true, value_name = "LOG")]
    logs: Vec<PathBuf>,
    /// Output file [default: timeline.html, or timeline.json with --format chrome].
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Html)]
    format: Format,
    /// Page title [default: the command lines of the runs].
    #[arg(long)]
    title: Option<String>,
    /// Print the diagnosis (which stage limits the run, and why) instead of writing a page.
    #[arg(long)]
    summary: bool,
    /// With --summary: print it as JSON.
    #[arg(long, requires = "summary")]
    json: bool,
}

/// Arguments of `beamline runs report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Folder searched recursively for `*.jsonl` run logs [default: the run directory].
    dir: Option<PathBuf>,
    /// HTML output.
    #[arg(short, long, value_name = "FILE", default_value = "runs-report.html")]
    output: PathBuf,
    /// JSON output [default: the HTML path with extension .json].
    #[arg(long, value_name = "FILE")]
    json_out: Option<PathBuf>,
}

/// Benchmarks of this area.
#[derive(Debug, Subcommand)]
pub enum Bench {
    /// Cost of tracing per span (layer on and off), memory for 1M spans, time to render a 1M-span page and
    /// for headless Chromium to load it.
    Trace(TraceArgs),
}

/// Arguments of `beamline bench trace`.
#[derive(Debug, Args)]
pub struct TraceArgs {
    /// Print one JSON object with every figure on the last line of stdout.
    #[arg(long)]
    json: bool,
    /// Spans recorded per measurement.
    #[arg(long, default_value_t = 1_000_000)]
    spans: u64,
    /// Skip loading the page in headless Chromium.
    #[arg(long)]
    no_browser: bool,
    /// Only run the synthetic camera → receiver → writer pipeline (recorded into this run's log), no
    /// measurements; used by the timeline tests.
    #[arg(long)]
    pipeline_only: bool,
    /// Frames through the synthetic pipeline.
    #[arg(long, default_value_t = 400)]
    frames: u64,
    /// Stall the pipeline's writer this many milliseconds (in a `wait.disk` span) at the middle frame.
    #[arg(long, default_value_t = 0)]
    inject_stall_ms: u64,
}

impl Command {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Command::Timeline(a) => timeline(a),
            Command::Runs { which: Runs::Report(a) } => report(a),
        }
    }
}

impl Bench {
    /// Runs the benchmark.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Bench::Trace(a) => bench_trace(a),
        }
    }
}

fn spinner(msg: &str) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_message(msg.to_owned());
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

fn timeline(a: TimelineArgs) -> anyhow::Result<ExitCode> {
    let pb = spinner("reading logs");
    let tl = {
        let _s = tracing::info_span!("timeline.read", logs = a.logs.len() as u64).entered();
        profiling::timeline::Timeline::from_paths(&a.logs)?
    };
    pb.finish_and_clear();
    if let Some((path, why)) = tl.skipped.first() {
        let more = if tl.skipped.len() > 1 { format!(" and {} more", tl.skipped.len() - 1) } else { String::new() };
        eprintln!("{}", profiling::sanitize::terminal(&format!("warning: skipped {}{more}: {why}", path.display())));
    }
    for p in tl.processes.iter().filter(|p| p.skipped_lines > 0) {
        let note = format!(
            "note: {}: ignored a truncated last line (the process was killed while writing it)",
            p.path.display()
        );
        eprintln!("{}", profiling::sanitize::terminal(&note));
    }
    if a.summary {
        let d = profiling::diagnose::diagnose(&tl);
        if a.json {
            println!("{}", serde_json::to_string_pretty(&d)?);
        } else {
            print!("{}", profiling::sanitize::terminal(&profiling::diagnose::render_text(&d)));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let pb = spinner("rendering");
    let out = a
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(if a.format == Format::Chrome { "timeline.json" } else { "timeline.html" }));
    pb.set_message("rendering");
    let text = {
        let _s = tracing::info_span!("timeline.render", spans = tl.span_count() as u64).entered();
        match a.format {
            Format::Html => {
                let title = a.title.clone().unwrap_or_else(|| {
                    let cmds: Vec<String> = tl.processes.iter().map(|p| p.header.argv.join(" ")).collect();
                    format!("timeline: {}", cmds.join(" + "))
                });
                profiling::html::render(&tl, &title)
            }
            Format::Chrome => profiling::chrome::render(&tl),
        }
    };
    std::fs::write(&out, &text).with_context(|| format!("cannot write {}", out.display()))?;
    pb.finish_and_clear();
    let wrote = format!(
        "wrote {} ({} spans, {:.1} MB){}",
        out.display(),
        tl.span_count(),
        text.len() as f64 / 1e6,
        if a.format == Format::Html {
            "; open it in any browser, it needs no network"
        } else {
            "; open it at ui.perfetto.dev"
        }
    );
    println!("{}", profiling::sanitize::terminal(&wrote));
    println!("{}", profiling::sanitize::terminal(&format!("verdict: {}", profiling::diagnose::diagnose(&tl).verdict)));
    Ok(ExitCode::SUCCESS)
}

fn report(a: ReportArgs) -> anyhow::Result<ExitCode> {
    let dir = match a.dir {
        Some(d) => d,
        None => rundir::default_dir().context("no run directory: pass DIR, or set BEAMLINE_RUN_DIR or HOME")?,
    };
    let r = profiling::report::build_with(&dir, &clap_params)
        .with_context(|| format!("cannot read the run logs in {}", dir.display()))?;
    let json_out = a.json_out.unwrap_or_else(|| a.output.with_extension("json"));
    std::fs::write(&a.output, profiling::report::render_html(&r))
        .with_context(|| format!("cannot write {}", a.output.display()))?;
    std::fs::write(&json_out, serde_json::to_string_pretty(&r)?)
        .with_context(|| format!("cannot write {}", json_out.display()))?;
    let failed = r.runs.iter().filter(|x| x.status != "ok").count();
    println!(
        "{} runs ({} failed, {} failure kinds, {} unreadable logs) in {}: wrote {} and {}",
        r.runs.len(),
        failed,
        r.failures.len(),
        r.unreadable.len(),
        dir.display(),
        a.output.display(),
        json_out.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The parameters of a recorded command line, parsed by this program's own option definitions: a flag
/// without value never takes the positional argument after it. `None` when the command line does not
/// parse (another version's options): the report then guesses.
fn clap_params(argv: &[String]) -> Option<Vec<String>> {
    let cmd = crate::cli_command();
    let m = cmd.clone().try_get_matches_from(argv).ok()?;
    let mut out = Vec::new();
    collect_params(&cmd, &m, &mut out);
    Some(out)
}

fn collect_params(cmd: &clap::Command, m: &clap::ArgMatches, out: &mut Vec<String>) {
    for arg in cmd.get_arguments() {
        // Positional arguments (inputs) and options without a long name are no parameters.
        let Some(long) = arg.get_long() else { continue };
        let id = arg.get_id().as_str();
        if profiling::report::NOT_PARAMETERS.contains(&long)
            || m.value_source(id) != Some(clap::parser::ValueSource::CommandLine)
        {
            continue;
        }
        if arg.get_action().takes_values() {
            for v in m.get_raw(id).into_iter().flatten() {
                let v = v.to_string_lossy();
                if !profiling::report::names_a_place(&v) {
                    out.push(format!("--{long} {v}"));
                }
            }
        } else {
            out.push(format!("--{long}"));
        }
    }
    if let Some((name, sub)) = m.subcommand() {
        if let Some(sc) = cmd.find_subcommand(name) {
            collect_params(sc, sub, out);
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// bench trace

fn bench_trace(a: TraceArgs) -> anyhow::Result<ExitCode> {
    let pipe = workload::Pipeline {
        frames: a.frames,
        stall: Duration::from_millis(a.inject_stall_ms),
        ..workload::Pipeline::default()
    };
    if a.pipeline_only {
        let t = Instant::now();
        workload::pipeline(&pipe)?;
        println!(
            "pipeline: {} frames through camera → receiver → writer in {:.3} s",
            a.frames,
            t.elapsed().as_secs_f64()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let f = tracebench::measure(a.spans, !a.no_browser)?;
    let n = f.spans;
    let (off, reg, dis, on, proc_cpu) = (f.off, f.registry, f.disabled, f.on, f.process_cpu);
    let mut j = serde_json::Map::new();
    j.insert("bench".into(), "trace".into());
    j.insert("spans".into(), n.into());
    println!("per-span cost, {n} spans (one u64 field each, nested in batches of 1000), one thread, best of 3:");
    println!("                                        wall ns/span   thread-CPU ns/span");
    println!("  tracing off (no subscriber)          {:10.1}     {:10.1}", off.wall, off.cpu);
    println!("  registry only (no recording layer)   {:10.1}     {:10.1}", reg.wall, reg.cpu);
    println!(
        "  recording, per-frame spans off       {:10.1}     {:10.1}   (the default; goal <= 10)",
        dis.wall, dis.cpu
    );
    println!(
        "  recording, per-frame spans on        {:10.1}     {:10.1}   (--trace frames; goal <= 300)",
        on.wall, on.cpu
    );
    println!(
        "  process CPU incl. the writer thread: {proc_cpu:.1} ns/span; machine load average now {}",
        clock::load_average().unwrap_or(-1.0)
    );
    println!(
        "  recorded {} records, dropped {}, writer drained the rest in {:.3} s after the loop",
        f.written, f.dropped, f.writer_drain_s
    );
    let per_record = f.log_bytes as f64 / f.written.max(1) as f64;
    println!("  log: {:.1} bytes/record (JSON lines), {:.1} MB", per_record, f.log_bytes as f64 / 1e6);
    println!(
        "memory while recording {n} spans: peak RSS +{:.1} MB (design bound of buffers ~{:.1} MB + fields)",
        f.rss_growth as f64 / 1e6,
        f.buffer_bound as f64 / 1e6
    );
    for (k, v) in [
        ("ns_per_span_off", off.wall),
        ("ns_per_span_registry", reg.wall),
        ("ns_per_span_disabled", dis.wall),
        ("ns_per_span_on", on.wall),
        ("ns_per_span_layer", on.wall - reg.wall),
        ("cpu_ns_per_span_off", off.cpu),
        ("cpu_ns_per_span_registry", reg.cpu),
        ("cpu_ns_per_span_disabled", dis.cpu),
        ("cpu_ns_per_span_on", on.cpu),
        ("process_cpu_ns_per_span_on", proc_cpu),
    ] {
        j.insert(k.into(), round(v).into());
    }
    j.insert("written".into(), f.written.into());
    j.insert("dropped".into(), f.dropped.into());
    j.insert("writer_drain_s".into(), round(f.writer_drain_s).into());
    j.insert("log_bytes_per_record".into(), round(per_record).into());
    j.insert("rss_growth_mb".into(), round(f.rss_growth as f64 / 1e6).into());
    j.insert("buffer_bound_mb".into(), round(f.buffer_bound as f64 / 1e6).into());
    j.insert("load_average".into(), clock::load_average().unwrap_or(-1.0).into());
    println!(
        "page for {} spans: read+model {:.2} s, render {:.2} s, {:.1} MB ({:.1} bytes/span)",
        f.page_spans,
        f.page_read_s,
        f.page_render_s,
        f.page_bytes as f64 / 1e6,
        f.page_bytes as f64 / f.page_spans.max(1) as f64
    );
    j.insert("page_spans".into(), f.page_spans.into());
    j.insert("page_read_s".into(), round(f.page_read_s).into());
    j.insert("page_render_s".into(), round(f.page_render_s).into());
    j.insert("page_mb".into(), round(f.page_bytes as f64 / 1e6).into());
    match f.browser {
        Some(Ok(load)) => {
            println!("headless Chromium: page loaded, parsed and drawn {:.0} ms after navigation (goal < 3 s; whole browser process incl. start and DOM dump {:.2} s)", load.ready_ms, load.wall_s);
            j.insert("chromium_ready_ms".into(), round(load.ready_ms).into());
            j.insert("chromium_wall_s".into(), round(load.wall_s).into());
        }
        Some(Err(e)) => println!("headless Chromium: not measured ({:#})", anyhow::Error::from(e)),
        None => {}
    }

    // The pipeline, recorded into this run's own log (see `beamline timeline`).
    let t = Instant::now();
    workload::pipeline(&pipe)?;
    println!(
        "synthetic pipeline ({} frames) recorded into this run's log in {:.2} s",
        a.frames,
        t.elapsed().as_secs_f64()
    );
    if a.json {
        println!("{}", serde_json::Value::Object(j));
    }
    Ok(ExitCode::SUCCESS)
}

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

// ---------------------------------------------------------------------------------------------------
// the run log of every command (policy and recording: `profiling::rundir`)

/// Starts recording this process's run log into `log`, or a new file in the run directory; says on
/// stderr when no log can be written (the command runs without).
pub fn start_recording(log: Option<&Path>) -> Recording {
    let recording = Recording::start(log, std::env::args().collect(), env!("CARGO_PKG_VERSION"));
    if let Some(e) = recording.not_recording() {
        eprintln!("warning: not recording a run log: {e}");
    }
    recording
}

/// Closes the run log with the command's outcome; names the log on stderr when the command ran long (2 s
/// or more) or failed, so it can be rendered with `beamline timeline`.
pub fn finish_recording(recording: Recording, result: &anyhow::Result<ExitCode>) {
    let outcome = match result {
        Ok(code) if *code == ExitCode::SUCCESS => Outcome::Success,
        // The command printed its own verdict (an incomplete file, a failed check) and raised no error.
        Ok(_) => Outcome::Failure {
            exit_code: 1,
            error: "reported a failure without an error (see the command's output)".into(),
            chain: vec![],
        },
        Err(e) => Outcome::Failure {
            exit_code: 1,
            error: format!("{e:#}"),
            chain: e.chain().map(|c| c.to_string()).collect(),
        },
    };
    let end = recording.finish(&outcome);
    match &end.totals {
        Some(Ok(t)) if t.dropped > 0 => {
            eprintln!("warning: the run log lost {} records (the disk was too slow)", t.dropped)
        }
        Some(Err(e)) => eprintln!("warning: the run log is incomplete: {e}"),
        _ => {}
    }
    if let Some(p) = end.path.as_ref().filter(|_| end.worth_showing()) {
        eprintln!("log: {}", p.display());
    }
}
