//! Reports across many runs: every log under a folder, grouped by command and day, failures grouped by
//! error kind, throughput and efficiency per run; as JSON and as an HTML page with inline SVG plots.
//!
//! How the figures are derived from a log:
//! - **frames**: the last sample of counter `frames` (see the crate docs); without it, the number of
//!   `hdf5.write_chunk` spans (one per frame written), else of `receive.validate` spans (one per frame
//!   received). **slices**: the last sample of counter `slices`; without it, the sum of the `rows` field of
//!   the outermost `recon.write` spans (each reconstructed row is one slice of the volume; a write nested
//!   in another is the same rows).
//! - **frames/s, slices/s**: count over the run's wall time (header to footer).
//! - **CPU time per frame / slice**: user + system CPU time of the whole process (`getrusage`, in the
//!   footer) over the count; it includes every thread, so it is what a frame really costs the machine.
//! - **busy share**: time in spans that are not `wait.*`, outermost per lane, over wall time × lanes.
//! - **error kind** (the error's class): its root cause, the last of the causes the footer's
//!   `error_chain` lists (for older logs: the error text after its last `: `), normalised: numbers
//!   replaced by `N`, quoted text by `…`, paths and file names by `<path>`; what the run was doing when it
//!   failed (the outermost context, normalised the same way) is kept per kind as its **contexts**. `panic`,
//!   `no footer` (the process was killed), `unknown` (closed without an outcome) and a command that
//!   reported a failure without an error are kinds of their own.
//! - **parameters**: every `--flag value` of the command lines (output paths and endpoints left out),
//!   with how many runs used it, how many failed, and the median rate (frames/s or slices/s) of those
//!   runs against the median of all runs of that command: which settings go with slow or failing runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::clock::Civil;
use crate::html::escape_html;
use crate::log::RunLog;
use crate::stalls::fmt_ns;
use crate::Error;

/// One run.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// Log file.
    pub path: String,
    /// Subcommand.
    pub command: String,
    /// Full command line.
    pub argv: String,
    /// Its parameters: `--flag value` and `--flag` (see the module docs).
    pub params: Vec<String>,
    /// Process id.
    pub pid: u32,
    /// UTC day it started, `YYYY-MM-DD`.
    pub day: String,
    /// Start, ns since the Unix epoch.
    pub start_unix_ns: u64,
    /// Wall time, ns.
    pub wall_ns: u64,
    /// `ok`, `error`, `panic`, `unknown` or `no footer`.
    pub status: String,
    /// Error text.
    pub error: Option<String>,
    /// Normalised error kind for grouping (see the module docs); `None` for successful runs.
    pub error_kind: Option<String>,
    /// What the run was doing when it failed: its outermost error context, normalised.
    pub error_context: Option<String>,
    /// Records dropped while recording.
    pub dropped: u64,
    /// Spans in the log.
    pub spans: u64,
    /// Frames (see the module docs).
    pub frames: Option<f64>,
    /// Slices (see the module docs).
    pub slices: Option<f64>,
    /// Frames per second of wall time.
    pub frames_per_s: Option<f64>,
    /// Slices per second of wall time.
    pub slices_per_s: Option<f64>,
    /// Process CPU time (user + system), ns; absent without a footer.
    pub cpu_ns: Option<u64>,
    /// CPU ns per frame.
    pub cpu_ns_per_frame: Option<f64>,
    /// CPU ns per slice.
    pub cpu_ns_per_slice: Option<f64>,
    /// Busy share of the thread lanes (non-wait outermost span time / (wall × lanes with spans)).
    pub busy_share: Option<f64>,
}

/// Runs and failures of one group (a command or a day).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Count {
    /// Runs.
    pub runs: u64,
    /// Runs that did not end `ok`.
    pub failed: u64,
}

/// Failures sharing an error kind.
#[derive(Debug, Clone, Serialize)]
pub struct FailureGroup {
    /// The normalised kind.
    pub kind: String,
    /// How many runs.
    pub count: u64,
    /// Commands that failed this way.
    pub commands: Vec<String>,
    /// What these runs were doing when they failed (normalised outermost contexts), first seen first.
    pub contexts: Vec<String>,
    /// One full error text.
    pub example: String,
    /// Logs of these runs.
    pub logs: Vec<String>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The folder read.
    pub dir: String,
    /// Runs, oldest first.
    pub runs: Vec<RunSummary>,
    /// Per command.
    pub per_command: BTreeMap<String, Count>,
    /// Per UTC day.
    pub per_day: BTreeMap<String, Count>,
    /// Failures grouped by kind, most frequent first.
    pub failures: Vec<FailureGroup>,
    /// Command-line parameters and how the runs using them fared, failing and slow first.
    pub parameters: Vec<ParamStat>,
    /// Files that looked like logs but could not be read, with the reason.
    pub unreadable: Vec<(String, String)>,
}

/// How the runs of one command with one parameter value fared.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ParamStat {
    /// The command.
    pub command: String,
    /// `--threads 1`.
    pub param: String,
    /// Runs of the command with it.
    pub runs: u64,
    /// Of them, failed.
    pub failed: u64,
    /// `frames/s` or `slices/s`: the rate compared.
    pub unit: String,
    /// Median rate of the successful runs with it.
    pub median_rate: Option<f64>,
    /// That median over the median of all successful runs of the command (below 1: slower).
    pub vs_command: Option<f64>,
    /// Median CPU time per frame or slice, ns.
    pub median_cpu_ns_per_unit: Option<f64>,
}

/// Every `*.jsonl` file under `dir`, recursively (symbolic links to folders are not followed), sorted.
pub fn find_logs(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| Error::Read(d.clone(), e))?;
        for e in entries.flatten() {
            let p = e.path();
            // The entry's own type: a symbolic link to a folder is not followed (`self -> .` would count
            // every log again, two such links would walk for ever).
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "jsonl") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Parses a command line (argv with the program) into its parameters (`--flag value`, `--flag`) the way
/// the program that wrote the log does; `None` when it cannot (another version's options).
pub type ParamParser<'a> = &'a dyn Fn(&[String]) -> Option<Vec<String>>;

/// Builds the report over every log under `dir`, the parameters of each command line found by
/// [`params`] (which has to guess which flags take a value).
pub fn build(dir: &Path) -> Result<Report, Error> {
    build_with(dir, &|_| None)
}

/// Builds the report over every log under `dir`, the parameters of each command line found by `parse`
/// (the program's own option definitions: a positional argument after a flag without value is no value
/// of it), falling back to [`params`] where it returns `None`.
pub fn build_with(dir: &Path, parse: ParamParser<'_>) -> Result<Report, Error> {
    let mut runs = Vec::new();
    let mut unreadable = Vec::new();
    for path in find_logs(dir)? {
        match RunLog::read(&path) {
            Ok(log) => {
                let mut r = summarize_run(&log);
                if let Some(p) = parse(&log.header.argv) {
                    r.params = p;
                }
                runs.push(r);
            }
            Err(e) => unreadable.push((path.display().to_string(), e.to_string())),
        }
    }
    runs.sort_by_key(|r| r.start_unix_ns);
    let mut per_command: BTreeMap<String, Count> = BTreeMap::new();
    let mut per_day: BTreeMap<String, Count> = BTreeMap::new();
    let mut groups: BTreeMap<String, FailureGroup> = BTreeMap::new();
    for r in &runs {
        let failed = u64::from(r.status != "ok");
        for c in [per_command.entry(r.command.clone()).or_default(), per_day.entry(r.day.clone()).or_default()] {
            c.runs += 1;
            c.failed += failed;
        }
        if let Some(kind) = &r.error_kind {
            let g = groups.entry(kind.clone()).or_insert_with(|| FailureGroup {
                kind: kind.clone(),
                count: 0,
                commands: Vec::new(),
                contexts: Vec::new(),
                example: r.error.clone().unwrap_or_else(|| r.status.clone()),
                logs: Vec::new(),
            });
            g.count += 1;
            if !g.commands.contains(&r.command) {
                g.commands.push(r.command.clone());
            }
            if let Some(c) = &r.error_context {
                if !g.contexts.contains(c) {
                    g.contexts.push(c.clone());
                }
            }
            g.logs.push(r.path.clone());
        }
    }
    let mut failures: Vec<FailureGroup> = groups.into_values().collect();
    failures.sort_by(|a, b| b.count.cmp(&a.count).then(a.kind.cmp(&b.kind)));
    let parameters = parameters(&runs);
    Ok(Report { dir: dir.display().to_string(), runs, per_command, per_day, failures, parameters, unreadable })
}

/// `--flag value` and `--flag=value` pairs of a command line (argv without the program), leaving out
/// values that name files, folders or endpoints (different for every run) and the global options.
pub fn params(argv: &[String]) -> Vec<String> {
    let skip_value = names_a_place;
    let mut out = Vec::new();
    let mut i = 0;
    while i < argv.len() {
        let a = &argv[i];
        i += 1;
        let Some(flag) = a.strip_prefix("--") else { continue };
        if flag.is_empty() || NOT_PARAMETERS.contains(&flag) {
            i += 1;
            continue;
        }
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => match argv.get(i).filter(|v| !v.starts_with('-') || v.parse::<f64>().is_ok()) {
                Some(v) => {
                    i += 1;
                    (flag.to_owned(), Some(v.clone()))
                }
                None => (flag.to_owned(), None),
            },
        };
        match value {
            Some(v) if skip_value(&v) => {}
            Some(v) => out.push(format!("--{name} {v}")),
            None => out.push(format!("--{name}")),
        }
    }
    out
}

/// Whether an option's value names a file, folder or endpoint (different for every run, so no parameter).
pub fn names_a_place(v: &str) -> bool {
    v.contains('/') || v.contains("://") || v.ends_with(".h5") || v.ends_with(".jsonl")
}

/// Global options that are no parameters of a run (where its log and output go, what it records).
pub const NOT_PARAMETERS: [&str; 3] = ["log", "output", "trace"];

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

/// Which parameters go with slow or failing runs (see the module docs).
fn parameters(runs: &[RunSummary]) -> Vec<ParamStat> {
    let mut by_cmd: BTreeMap<&str, Vec<&RunSummary>> = BTreeMap::new();
    for r in runs {
        by_cmd.entry(&r.command).or_default().push(r);
    }
    let mut out = Vec::new();
    for (cmd, rs) in by_cmd {
        // Compare slices/s where the command reconstructs, else frames/s.
        let slices = rs.iter().any(|r| r.slices_per_s.is_some());
        let rate = |r: &RunSummary| if slices { r.slices_per_s } else { r.frames_per_s };
        let cpu = |r: &RunSummary| if slices { r.cpu_ns_per_slice } else { r.cpu_ns_per_frame };
        let ok_rates = |with: &[&RunSummary], f: &dyn Fn(&RunSummary) -> Option<f64>| -> Vec<f64> {
            with.iter().filter(|r| r.status == "ok").filter_map(|r| f(r)).collect()
        };
        let all = median(ok_rates(&rs, &rate));
        let mut by_param: BTreeMap<String, Vec<&RunSummary>> = BTreeMap::new();
        for r in &rs {
            for p in &r.params {
                by_param.entry(p.clone()).or_default().push(r);
            }
        }
        for (param, with) in by_param {
            let failed = with.iter().filter(|r| r.status != "ok").count() as u64;
            let m = median(ok_rates(&with, &rate));
            out.push(ParamStat {
                command: cmd.to_owned(),
                param,
                runs: with.len() as u64,
                failed,
                unit: if slices { "slices/s" } else { "frames/s" }.into(),
                median_rate: m,
                vs_command: m.zip(all).filter(|(_, a)| *a > 0.0).map(|(m, a)| m / a),
                median_cpu_ns_per_unit: median(ok_rates(&with, &cpu)),
            });
        }
    }
    let fail_share = |p: &ParamStat| p.failed as f64 / p.runs.max(1) as f64;
    out.sort_by(|a, b| {
        fail_share(b)
            .total_cmp(&fail_share(a))
            .then(a.vs_command.unwrap_or(1.0).total_cmp(&b.vs_command.unwrap_or(1.0)))
            .then(a.command.cmp(&b.command))
            .then(a.param.cmp(&b.param))
    });
    out
}

/// Summarises one run (see the module docs for the definitions).
pub fn summarize_run(log: &RunLog) -> RunSummary {
    let wall_ns = log.end_mono().saturating_sub(log.start_mono()).max(1);
    let last_counter =
        |name: &str| log.counters.iter().filter(|c| &*c.name == name).max_by_key(|c| c.ts).map(|c| c.value);
    let count = |name: &str| log.spans.iter().filter(|s| &*s.name == name).count();
    let frames = last_counter("frames").or_else(|| {
        [count("hdf5.write_chunk"), count("receive.validate")].into_iter().find(|&n| n > 0).map(|n| n as f64)
    });
    let slices = last_counter("slices").or_else(|| {
        // Outermost `recon.write` spans only: a write of rows may be nested in another that says the same.
        let writes: std::collections::HashSet<u64> =
            log.spans.iter().filter(|s| &*s.name == "recon.write").map(|s| s.id).collect();
        let rows: f64 = log
            .spans
            .iter()
            .filter(|s| &*s.name == "recon.write" && !writes.contains(&s.parent))
            .filter_map(|s| s.fields.iter().find(|(k, _)| &**k == "rows").and_then(|(_, v)| v.as_f64()))
            .sum();
        (rows > 0.0).then_some(rows)
    });
    let footer = log.footer.as_ref();
    let cpu_ns = footer.map(|f| f.cpu_user_ns + f.cpu_sys_ns);
    let per = |n: Option<f64>| n.filter(|n| *n > 0.0);
    let (status, error) = match footer {
        Some(f) => (f.status.clone(), f.error.clone()),
        None => ("no footer".to_owned(), None),
    };
    let chain = footer.map(|f| f.error_chain.as_slice()).unwrap_or(&[]);
    let error_kind = (status != "ok").then(|| error_kind_of(&status, error.as_deref(), chain));
    let error_context = (status == "error").then(|| error_context(error.as_deref(), chain)).flatten();
    RunSummary {
        path: log.path.display().to_string(),
        command: if log.header.command.is_empty() { "?".into() } else { log.header.command.clone() },
        argv: log.header.argv.join(" "),
        params: params(log.header.argv.get(1..).unwrap_or(&[])),
        pid: log.header.pid,
        day: Civil::from_unix_ns(log.header.start_unix_ns).date(),
        start_unix_ns: log.header.start_unix_ns,
        wall_ns,
        status,
        error,
        error_kind,
        error_context,
        dropped: footer.map(|f| f.dropped).unwrap_or(0),
        spans: log.spans.len() as u64,
        frames,
        slices,
        frames_per_s: per(frames).map(|f| f / (wall_ns as f64 / 1e9)),
        slices_per_s: per(slices).map(|s| s / (wall_ns as f64 / 1e9)),
        cpu_ns,
        cpu_ns_per_frame: per(frames).zip(cpu_ns).map(|(f, c)| c as f64 / f),
        cpu_ns_per_slice: per(slices).zip(cpu_ns).map(|(s, c)| c as f64 / s),
        busy_share: busy_share(log, wall_ns),
    }
}

fn busy_share(log: &RunLog, wall_ns: u64) -> Option<f64> {
    let mut by_tid: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
    for s in log.spans.iter().filter(|s| !s.name.starts_with(crate::WAIT_PREFIX)) {
        by_tid.entry(s.tid).or_default().push((s.start, s.end));
    }
    if by_tid.is_empty() {
        return None;
    }
    let mut busy = 0u64;
    for v in by_tid.values_mut() {
        v.sort_unstable();
        let mut end = 0;
        for &(s, e) in v.iter() {
            let s = s.max(end);
            if e > s {
                busy += e - s;
                end = e;
            }
        }
    }
    Some(busy as f64 / (wall_ns as f64 * by_tid.len() as f64))
}

/// The normalised kind of an error from its text alone (see the module docs): its root cause.
pub fn error_kind(status: &str, error: Option<&str>) -> String {
    error_kind_of(status, error, &[])
}

/// The normalised kind of an error with its chain of causes (outermost first; empty: unknown).
pub fn error_kind_of(status: &str, error: Option<&str>, chain: &[String]) -> String {
    match status {
        "no footer" => return "no footer (killed or crashed)".into(),
        "unknown" => return "unknown (closed without an outcome)".into(),
        _ => {}
    }
    let text = error.unwrap_or("").lines().next().unwrap_or("");
    if let Some(panic) = text.strip_prefix("panic: ") {
        return format!("panic: {}", normalise(panic));
    }
    // The root cause: the chain's last element; older logs only have the `{:#}` text, causes joined by `: `.
    let root = match chain.last() {
        Some(r) => r.lines().next().unwrap_or(""),
        None => text.rsplit(": ").next().unwrap_or(text),
    };
    let out = normalise(root);
    if out.trim().is_empty() {
        format!("{status} (no error text)")
    } else {
        out
    }
}

/// What a failed run was doing: the outermost context of its error, when it has causes below it.
fn error_context(error: Option<&str>, chain: &[String]) -> Option<String> {
    let outer = match chain {
        [] => {
            let text = error?.lines().next()?;
            let (outer, rest) = text.split_once(": ")?;
            if rest.is_empty() {
                return None;
            }
            outer
        }
        [_] => return None,
        [outer, ..] => outer.lines().next()?,
    };
    Some(normalise(outer))
}

/// A word that names a file: a `.` inside it followed by a letter (`scan.h5`, `a.rs:3`), not a number.
fn names_a_file(word: &str) -> bool {
    let w = word.trim_matches(|c: char| !c.is_alphanumeric());
    let Some((stem, ext)) = w.rsplit_once('.') else { return false };
    !stem.is_empty() && ext.chars().next().is_some_and(|c| c.is_ascii_alphabetic()) && w.parse::<f64>().is_err()
}

/// Error text with what differs from run to run taken out: numbers → `N`, quoted text → `…`, paths and
/// file names → `<path>`.
fn normalise(text: &str) -> String {
    let mut out = String::new();
    let mut quote: Option<char> = None;
    for word in text.split(' ') {
        if !out.is_empty() && !out.ends_with(' ') {
            out.push(' ');
        }
        if quote.is_none() && (word.contains('/') || names_a_file(word)) {
            out.push_str("<path>");
            // Keep what ends the word (`file.h5:` → `<path>:`).
            if let Some(c) = word.chars().last().filter(|c| matches!(c, ':' | ',' | ';' | ')')) {
                out.push(c);
            }
            continue;
        }
        // Digits right after a letter are part of a name (`H5Fopen`, `x86`), not a number.
        let (mut last_digit, mut after_letter) = (false, false);
        for c in word.chars() {
            if let Some(q) = quote {
                if c == q {
                    quote = None;
                    out.push('…');
                    out.push(c);
                }
                continue;
            }
            if matches!(c, '"' | '\'' | '`') {
                quote = Some(c);
                out.push(c);
            } else if c.is_ascii_digit() && !after_letter {
                if !last_digit {
                    out.push('N');
                }
                last_digit = true;
                continue;
            } else {
                out.push(c);
                after_letter = c.is_ascii_alphabetic() || (after_letter && c.is_ascii_digit());
            }
            last_digit = false;
        }
    }
    out
}

/// The report as an HTML page: tables and inline SVG plots, no script, no network.
pub fn render_html(r: &Report) -> String {
    let mut h = String::new();
    h.push_str("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
    );
    h.push_str(&format!("<title>beamline runs: {}</title><style>{CSS}</style></head><body>", escape_html(&r.dir)));
    let failed: u64 = r.per_command.values().map(|c| c.failed).sum();
    h.push_str(&format!(
        "<h1>beamline runs in {}</h1><p>{} runs, {} failed, {} unreadable logs.</p>",
        escape_html(&r.dir),
        r.runs.len(),
        failed,
        r.unreadable.len()
    ));
    h.push_str("<div class=\"plots\">");
    h.push_str(&bars("Runs per day", &r.per_day));
    h.push_str(&bars("Runs per command", &r.per_command));
    let fps: Vec<(u64, f64)> = r.runs.iter().filter_map(|x| x.frames_per_s.map(|v| (x.start_unix_ns, v))).collect();
    let sps: Vec<(u64, f64)> = r.runs.iter().filter_map(|x| x.slices_per_s.map(|v| (x.start_unix_ns, v))).collect();
    h.push_str(&scatter("Frames/s per run", &fps));
    h.push_str(&scatter("Slices/s per run", &sps));
    h.push_str("</div><h2>Failures by kind</h2>");
    if r.failures.is_empty() {
        h.push_str("<p>No failed runs.</p>");
    } else {
        h.push_str("<table id=\"failures\"><tr><th>error class (root cause)</th><th>runs</th><th>commands</th><th>while</th><th>example</th></tr>");
        for f in &r.failures {
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"wrap\">{}</td><td class=\"wrap\">{}</td></tr>",
                escape_html(&f.kind),
                f.count,
                escape_html(&f.commands.join(", ")),
                escape_html(&f.contexts.join("; ")),
                escape_html(&f.example)
            ));
        }
        h.push_str("</table>");
    }
    h.push_str("<h2>Parameters of slow or failing runs</h2>");
    let notable: Vec<&ParamStat> = r
        .parameters
        .iter()
        .filter(|p| p.failed > 0 || p.vs_command.is_some_and(|v| !(0.8..=1.25).contains(&v)))
        .take(40)
        .collect();
    if notable.is_empty() {
        h.push_str("<p>No parameter goes with failing runs or with rates 20% off its command's median.</p>");
    } else {
        h.push_str("<table id=\"parameters\"><tr><th>command</th><th>parameter</th><th>runs</th><th>failed</th><th>median rate</th><th>vs command median</th><th>CPU per unit</th></tr>");
        for p in notable {
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape_html(&p.command),
                escape_html(&p.param),
                p.runs,
                p.failed,
                p.median_rate.map(|v| format!("{v:.1} {}", p.unit)).unwrap_or_else(|| "–".into()),
                p.vs_command.map(|v| format!("{:.0}%", v * 100.0)).unwrap_or_else(|| "–".into()),
                p.median_cpu_ns_per_unit.map(|v| fmt_ns(v as u64)).unwrap_or_else(|| "–".into()),
            ));
        }
        h.push_str("</table>");
    }
    h.push_str("<h2>Runs</h2><table id=\"runs\"><tr><th>started (UTC)</th><th>command</th><th>wall</th><th>status</th><th>frames/s</th><th>slices/s</th><th>CPU/frame</th><th>CPU/slice</th><th>busy</th><th>dropped</th><th>log</th></tr>");
    let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map(f).unwrap_or_else(|| "–".into());
    for x in r.runs.iter().rev() {
        h.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"wrap\">{}</td></tr>",
            escape_html(&Civil::from_unix_ns(x.start_unix_ns).human()),
            escape_html(&x.command),
            fmt_ns(x.wall_ns),
            escape_html(&match &x.error_kind { Some(k) => format!("{}: {k}", x.status), None => x.status.clone() }),
            opt(x.frames_per_s, &|v| format!("{v:.1}")),
            opt(x.slices_per_s, &|v| format!("{v:.1}")),
            opt(x.cpu_ns_per_frame, &|v| fmt_ns(v as u64)),
            opt(x.cpu_ns_per_slice, &|v| fmt_ns(v as u64)),
            opt(x.busy_share, &|v| format!("{:.0}%", v * 100.0)),
            x.dropped,
            escape_html(&x.path)
        ));
    }
    h.push_str("</table>");
    if !r.unreadable.is_empty() {
        h.push_str("<h2>Unreadable logs</h2><ul>");
        for (p, e) in &r.unreadable {
            h.push_str(&format!("<li>{}: {}</li>", escape_html(p), escape_html(e)));
        }
        h.push_str("</ul>");
    }
    h.push_str("</body></html>\n");
    h
}

const CSS: &str = "body{font:13px/1.4 system-ui,sans-serif;margin:16px;color:#1d2330}table{border-collapse:collapse}\
td,th{border-bottom:1px solid #dde1e8;padding:2px 10px 2px 4px;text-align:left}.wrap{word-break:break-all;max-width:520px}\
.plots{display:flex;flex-wrap:wrap;gap:16px}svg{background:#fff;border:1px solid #dde1e8}text{font:11px system-ui,sans-serif}";

/// Horizontal bar chart of counts (ok in blue, failed in red).
fn bars(title: &str, data: &BTreeMap<String, Count>) -> String {
    let rows: Vec<(&String, &Count)> = data.iter().rev().take(30).collect();
    let max = rows.iter().map(|(_, c)| c.runs).max().unwrap_or(1).max(1) as f64;
    let h = 30 + rows.len() * 18;
    let mut s = format!(
        "<svg width=\"420\" height=\"{h}\" role=\"img\"><text x=\"8\" y=\"16\" font-weight=\"600\">{}</text>",
        escape_html(title)
    );
    for (i, (k, c)) in rows.iter().enumerate() {
        let y = 26 + i * 18;
        let ok = (c.runs - c.failed) as f64 / max * 180.0;
        let bad = c.failed as f64 / max * 180.0;
        s.push_str(&format!(
            "<text x=\"8\" y=\"{}\">{}</text><rect x=\"130\" y=\"{y}\" width=\"{ok:.1}\" height=\"13\" fill=\"#3c6ec8\"/><rect x=\"{:.1}\" y=\"{y}\" width=\"{bad:.1}\" height=\"13\" fill=\"#d9363e\"/><text x=\"{:.1}\" y=\"{}\">{} ({} failed)</text>",
            y + 11,
            escape_html(&truncate(k, 20)),
            130.0 + ok,
            136.0 + ok + bad,
            y + 11,
            c.runs,
            c.failed
        ));
    }
    s.push_str("</svg>");
    s
}

/// Scatter plot of a value per run over time.
fn scatter(title: &str, pts: &[(u64, f64)]) -> String {
    let (w, h) = (420.0, 200.0);
    let mut s = format!(
        "<svg width=\"{w}\" height=\"{h}\" role=\"img\"><text x=\"8\" y=\"16\" font-weight=\"600\">{}</text>",
        escape_html(title)
    );
    if pts.is_empty() {
        s.push_str("<text x=\"8\" y=\"40\">no run reported this figure</text></svg>");
        return s;
    }
    let t0 = pts.iter().map(|p| p.0).min().unwrap_or(0);
    let t1 = pts.iter().map(|p| p.0).max().unwrap_or(t0).max(t0 + 1);
    let vmax = pts.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-9);
    s.push_str(&format!(
        "<line x1=\"50\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#999\"/><line x1=\"50\" y1=\"28\" x2=\"50\" y2=\"{0}\" stroke=\"#999\"/><text x=\"4\" y=\"34\">{2:.1}</text><text x=\"30\" y=\"{0}\">0</text>",
        h - 24.0,
        w - 10.0,
        vmax
    ));
    for (t, v) in pts {
        let x = 50.0 + (t - t0) as f64 / (t1 - t0) as f64 * (w - 70.0);
        let y = h - 24.0 - v / vmax * (h - 56.0);
        s.push_str(&format!("<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"#3c6ec8\"/>"));
    }
    s.push_str(&format!(
        "<text x=\"50\" y=\"{0}\">{1}</text><text x=\"{2}\" y=\"{0}\" text-anchor=\"end\">{3}</text></svg>",
        h - 8.0,
        Civil::from_unix_ns(t0).human(),
        w - 10.0,
        Civil::from_unix_ns(t1).human()
    ));
    s
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        s.chars().take(n - 1).chain(std::iter::once('…')).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_group_similar_errors() {
        let k = |e: &str| error_kind("error", Some(e));
        // The class is the root cause; what the run was doing is its context.
        assert_eq!(k("cannot open /data/scan_0042.h5: No such file"), k("reading /tmp/x.h5: No such file"));
        assert_eq!(k("cannot open /data/scan_0042.h5: No such file"), "No such file");
        assert_eq!(k("reconstructing scan.h5: frame 17 arrived twice"), "frame N arrived twice");
        assert_eq!(
            error_context(Some("reconstructing scan.h5: frame 17 arrived twice"), &[]).as_deref(),
            Some("reconstructing <path>")
        );
        assert_eq!(k("unknown device \"motx\""), "unknown device \"…\"");
        assert_eq!(
            error_kind_of("error", None, &["H5Fopen(): error 12 in scan_0042".into()]),
            "H5Fopen(): error N in scan_N"
        );
        let chain: Vec<String> =
            ["reconstructing scan.h5", "reading /d/scan.h5: bad: worse", "No such file or directory (os error 2)"]
                .map(String::from)
                .to_vec();
        assert_eq!(error_kind_of("error", Some("x"), &chain), "No such file or directory (os error N)");
        assert_eq!(error_context(None, &chain).as_deref(), Some("reconstructing <path>"));
        assert_eq!(
            error_kind("panic", Some("panic: index 5 out of range at a.rs:3")),
            "panic: index N out of range at <path>"
        );
        assert_eq!(error_kind("no footer", None), "no footer (killed or crashed)");
    }

    #[test]
    fn parameters_of_a_command_line() {
        let argv: Vec<String> = [
            "--threads",
            "1",
            "--backend=cpu",
            "-o",
            "x",
            "--log",
            "a.jsonl",
            "--quiet",
            "--center",
            "-3.5",
            "--connect",
            "tcp://h:1",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(params(&argv), ["--threads 1", "--backend cpu", "--quiet", "--center -3.5"]);
    }

    #[test]
    fn report_over_a_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, cmd: &str, footer: Option<&str>, extra: &str| {
            let mut t = format!(
                "{{\"t\":\"header\",\"command\":\"{cmd}\",\"pid\":1,\"start_unix_ns\":1795318856000000000,\"start_mono_ns\":1000000000}}\n{extra}"
            );
            if let Some(f) = footer {
                t.push_str(f);
                t.push('\n');
            }
            std::fs::create_dir_all(dir.path().join("sub")).expect("mkdir");
            std::fs::write(dir.path().join(name), t).expect("write");
        };
        let ok = r#"{"t":"footer","status":"ok","exit_code":0,"end_mono_ns":3000000000,"cpu_user_ns":1000000000,"cpu_sys_ns":0}"#;
        let frames = "{\"t\":\"counter\",\"n\":\"frames\",\"tid\":1,\"ts\":2000000000,\"v\":50}\n{\"t\":\"counter\",\"n\":\"frames\",\"tid\":1,\"ts\":2500000000,\"v\":100}\n";
        write("a.jsonl", "acquire", Some(ok), frames);
        let recon = "{\"t\":\"span\",\"n\":\"recon.write\",\"id\":1,\"tid\":1,\"s\":1000000000,\"e\":2000000000,\"f\":{\"rows\":64}}\n";
        write("sub/b.jsonl", "recon", Some(ok), recon);
        let bad = |e: &str| {
            format!(r#"{{"t":"footer","status":"error","exit_code":1,"error":"{e}","end_mono_ns":2000000000}}"#)
        };
        write("c.jsonl", "acquire", Some(&bad("cannot open /a/b.h5: gone")), "");
        write("d.jsonl", "recon", Some(&bad("cannot open /c/d.h5: gone")), "");
        write("e.jsonl", "scan", None, "");
        std::fs::write(dir.path().join("junk.jsonl"), "not a log\n").expect("write");
        let r = build(dir.path()).expect("report");
        assert_eq!(r.runs.len(), 5);
        assert_eq!(r.unreadable.len(), 1);
        assert_eq!((r.per_command["acquire"].runs, r.per_command["acquire"].failed), (2, 1));
        assert_eq!(r.per_day["2026-11-22"].runs, 5);
        assert_eq!(r.failures[0].kind, "gone");
        assert_eq!(r.failures[0].count, 2);
        assert_eq!(r.failures[0].contexts, ["cannot open <path>"]);
        assert_eq!(r.failures[1].kind, "no footer (killed or crashed)");
        let a = r.runs.iter().find(|x| x.path.ends_with("a.jsonl")).expect("run a");
        assert_eq!(a.frames, Some(100.0));
        assert_eq!(a.wall_ns, 2_000_000_000);
        assert_eq!(a.frames_per_s, Some(50.0));
        assert_eq!(a.cpu_ns_per_frame, Some(10_000_000.0));
        let b = r.runs.iter().find(|x| x.path.ends_with("b.jsonl")).expect("run b");
        assert_eq!((b.slices, b.slices_per_s), (Some(64.0), Some(32.0)));
        assert_eq!(b.busy_share, Some(0.5));
        let html = render_html(&r);
        assert!(html.contains("cannot open &lt;path&gt;") && html.contains("<svg"));
        assert!(!html.contains("<script"));
    }

    #[test]
    fn folder_symlinks_are_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/x.jsonl"), "{}\n").expect("write");
        for (link, to) in [("self", "."), ("a", "."), ("b", "."), ("sub/up", "..")] {
            std::os::unix::fs::symlink(to, dir.path().join(link)).expect("symlink");
        }
        let found = find_logs(dir.path()).expect("walk ends");
        assert_eq!(found, vec![dir.path().join("sub/x.jsonl")]);
    }
}
