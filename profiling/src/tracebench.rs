//! The measurements of `beamline bench trace`: what tracing costs per span (off, registry only, with the
//! recording layer), the memory a recording holds, the time to read and render a page of a million spans,
//! and the time headless Chromium takes to load it. [`measure`] takes them; it prints nothing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::browser::{self, BrowserError, PageLoad};
use crate::{clock, workload, Config, Outcome, RunInfo};

/// Why the benchmark stopped.
#[derive(Debug, thiserror::Error)]
pub enum TraceBenchError {
    /// The scratch folder could not be created.
    #[error("cannot create {}", path.display())]
    Scratch {
        /// The folder.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The rendered page could not be written.
    #[error("cannot write {}", path.display())]
    Page {
        /// The page.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// Recording or reading the log failed.
    #[error(transparent)]
    Log(#[from] crate::Error),
}

/// Cost of one span, ns.
#[derive(Debug, Clone, Copy)]
pub struct Cost {
    /// Wall time.
    pub wall: f64,
    /// CPU time of the recording thread.
    pub cpu: f64,
}

/// Every figure of one benchmark run.
#[derive(Debug)]
pub struct TraceFigures {
    /// Spans per measurement (at least 1000).
    pub spans: u64,
    /// Spans disabled (no subscriber): the cost of the instrumentation alone.
    pub off: Cost,
    /// Registry only: what tracing-subscriber costs before any layer records anything.
    pub registry: Cost,
    /// The recording layer without per-frame spans (the default): what each disabled `trace_span!` costs.
    pub disabled: Cost,
    /// Registry and the recording layer writing a real log, per-frame spans on; best of 3.
    pub on: Cost,
    /// CPU ns per span of the whole process (the writer thread included), recording on.
    pub process_cpu: f64,
    /// Records written by the last recording.
    pub written: u64,
    /// Records it dropped.
    pub dropped: u64,
    /// Seconds the writer needed after the loop to drain the rest.
    pub writer_drain_s: f64,
    /// Bytes of the log.
    pub log_bytes: u64,
    /// Peak RSS growth while recording, bytes.
    pub rss_growth: u64,
    /// Design bound of the recorder's buffers, bytes.
    pub buffer_bound: usize,
    /// Spans on the rendered page.
    pub page_spans: usize,
    /// Seconds to read the log into the timeline model.
    pub page_read_s: f64,
    /// Seconds to render the page.
    pub page_render_s: f64,
    /// Bytes of the page.
    pub page_bytes: usize,
    /// The page in headless Chromium (`None`: not asked for).
    pub browser: Option<Result<PageLoad, BrowserError>>,
}

/// Measures the per-span cost over `spans` spans (at least 1000), the recording's memory, and renders the
/// last log as a page, loaded in headless Chromium when `browser` is set.
pub fn measure(spans: u64, browser: bool) -> Result<TraceFigures, TraceBenchError> {
    let n = spans.max(1000);
    let tmp = Scratch::new()?;
    let off = time_spans(n, tracing::Dispatch::none());
    let registry = time_spans(n, crate::registry_dispatch());
    // Registry + the recording layer writing a real log in the background; best of 3 recorders, each
    // recording exactly n spans; the last log is rendered below.
    let log = tmp.path().join("bench.jsonl");
    let info = RunInfo {
        command: "bench trace (recorded spans)".into(),
        argv: vec!["bench".into()],
        version: env!("CARGO_PKG_VERSION").into(),
    };
    // The default recording (per-frame spans off): the workload's `trace_span!`s are disabled callsites.
    let disabled = {
        let (layer, guard) = crate::record_to_file(&log, &info, Config::default())?;
        let c = time_spans(n, layer.into_dispatch());
        guard.finish(&Outcome::Success)?;
        c
    };
    let config = Config { frames: true, ..Config::default() };
    let mut on = Cost { wall: f64::INFINITY, cpu: f64::INFINITY };
    let (mut totals, mut flush_s, mut growth, mut proc_cpu) = (crate::Totals::default(), 0.0, 0, f64::INFINITY);
    for _ in 0..3 {
        let (layer, guard) = crate::record_to_file(&log, &info, config)?;
        let rss0 = clock::rss_bytes();
        let peak = Arc::new(AtomicU64::new(rss0));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (peak, stop) = (peak.clone(), stop.clone());
            std::thread::Builder::new()
                .name("rss-sampler".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        peak.fetch_max(clock::rss_bytes(), Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(2));
                    }
                })
                .map_err(crate::Error::Spawn)?
        };
        let cpu0 = clock::process_cpu_ns();
        let c = time_once(n, &layer.into_dispatch());
        let t_flush = Instant::now();
        let finished = guard.finish(&Outcome::Success);
        flush_s = t_flush.elapsed().as_secs_f64();
        proc_cpu = proc_cpu.min(clock::process_cpu_ns().saturating_sub(cpu0) as f64 / n as f64);
        stop.store(true, Ordering::Relaxed);
        let _ = sampler.join();
        totals = finished?;
        growth = growth.max(peak.load(Ordering::Relaxed).saturating_sub(rss0));
        on = Cost { wall: on.wall.min(c.wall), cpu: on.cpu.min(c.cpu) };
    }
    let log_bytes = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    // Packed records: ~50 bytes per span with its short fields, plus the 16-byte name reference.
    let buffer_bound = (config.max_batches_in_flight + 2) * config.batch_records * 66;

    let t = Instant::now();
    let tl = crate::timeline::Timeline::from_paths(std::slice::from_ref(&log))?;
    let page_read_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let page = crate::html::render(&tl, "bench trace: recorded spans");
    let page_render_s = t.elapsed().as_secs_f64();
    let html = tmp.path().join("bench.html");
    std::fs::write(&html, &page).map_err(|source| TraceBenchError::Page { path: html.clone(), source })?;
    let browser = browser.then(|| browser::load_time(&html, tmp.path()));
    Ok(TraceFigures {
        spans: n,
        off,
        registry,
        disabled,
        on,
        process_cpu: proc_cpu,
        written: totals.written,
        dropped: totals.dropped,
        writer_drain_s: flush_s,
        log_bytes,
        rss_growth: growth,
        buffer_bound,
        page_spans: tl.span_count(),
        page_read_s,
        page_render_s,
        page_bytes: page.len(),
        browser,
    })
}

/// A scratch folder removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch, TraceBenchError> {
        let p = std::env::temp_dir().join(format!("beamline-bench-trace-{}-{}", std::process::id(), clock::mono_ns()));
        std::fs::create_dir_all(&p).map_err(|source| TraceBenchError::Scratch { path: p.clone(), source })?;
        Ok(Scratch(p))
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Cost per span of `workload::nested_spans(n)` under `dispatch`, best of 3 after a warm-up.
fn time_spans(n: u64, dispatch: tracing::Dispatch) -> Cost {
    time_once(n / 10, &dispatch);
    (0..3).map(|_| time_once(n, &dispatch)).fold(Cost { wall: f64::INFINITY, cpu: f64::INFINITY }, |a, b| Cost {
        wall: a.wall.min(b.wall),
        cpu: a.cpu.min(b.cpu),
    })
}

fn time_once(n: u64, dispatch: &tracing::Dispatch) -> Cost {
    tracing::dispatcher::with_default(dispatch, || {
        let (t, c) = (Instant::now(), clock::thread_cpu_ns());
        workload::nested_spans(n);
        let cpu = clock::thread_cpu_ns().saturating_sub(c);
        Cost { wall: t.elapsed().as_nanos() as f64 / n as f64, cpu: cpu as f64 / n as f64 }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_run_records_every_span_and_renders_them() {
        let f = measure(1000, false).unwrap();
        assert_eq!(f.spans, 1000);
        assert!(f.browser.is_none());
        // nested_spans(n) records n spans on one thread; a writer that falls behind counts what it drops.
        assert!(f.written + f.dropped >= 1000, "{f:?}");
        assert!(f.page_spans as u64 + f.dropped >= 1000 && f.page_bytes > 0, "{f:?}");
        assert!(f.log_bytes > 0 && f.buffer_bound > 0);
        assert!(f.on.wall.is_finite() && f.off.wall.is_finite() && f.registry.wall.is_finite());
    }
}
