//! Profiling: the `tracing` layer that records every run's spans to a log, the timeline model, the
//! self-contained HTML timeline, Chrome-trace export, stall analysis and reports across many runs.
//!
//! This crate does not depend on any other beamline crate, and recording stays nearly free: per-thread
//! buffers, one background writer, bounded memory, dropped records counted (see [`recorder`]).
//!
//! # Conventions for instrumented code (everyone follows these)
//!
//! **Spans** are named `area.action` (`receive.recv`, `hdf5.write_chunk`, `recon.backproject`,
//! `scan.point`, `device.move`). Create and enter them where the work happens:
//!
//! ```
//! let _s = tracing::info_span!("hdf5.write_chunk", frame = 12u64, bytes = 524_288u64).entered();
//! ```
//!
//! **Levels**: per-stage spans (a series, a slab, a flush, every `wait.*`) use `info_span!` or
//! `debug_span!` and are always recorded. Per-frame (per-point, per-chunk, per-slice) work spans use
//! `trace_span!` and are recorded only with `BEAMLINE_TRACE=frames` (`beamline --trace frames`); when off
//! their callsites are cached as disabled and cost a few ns. Counters and events are recorded at any level.
//!
//! A span lasts from its creation to its close (when its last handle is dropped). Fields are shown on
//! hover and exported; keep them few and small (indices, sizes), never whole buffers.
//!
//! **Waiting** gets a span of its own whose name starts with `wait.` followed by WHAT the thread waits
//! for: `wait.frames`, `wait.queue_pop`, `wait.queue_push`, `wait.lock`, `wait.device`, `wait.gpu`. Wrap
//! exactly the blocking call:
//!
//! ```
//! # let rx = crossbeam_channel::bounded::<u32>(1).1; drop(rx);
//! let frame = { let _w = tracing::trace_span!("wait.frames").entered(); /* rx.recv() */ };
//! ```
//!
//! Say on whom a wait waits: a queue wait is `wait.queue` with fields `queue` (its name), `wants`
//! (`"data"`: starved by its producer, or `"space"`: blocked by its consumer) and `on` (the stage it
//! waits for); producers may mark their work spans `feeds = "<queue>"`. Lock waits are `wait.lock` with
//! `lock` and `holder` ([`lock::NamedMutex`] does this). Expected waits (`wait.idle` between series,
//! `wait.exposure`, `wait.device` with the device's name) are never ranked as stalls; see [`diagnose`].
//!
//! Stall analysis treats `wait.*` spans and untraced gaps between spans as idle time; the text after
//! `wait.` is what the page says the lane was waiting for ("writer idle 42% of the run, waiting for
//! frames").
//!
//! **Threads**: name every thread (`std::thread::Builder::new().name("writer".into())`); the name labels
//! its lane. **Devices** that are not threads (a GPU, a CUDA stream): put a field `lane = "gpu0"` on the
//! span and it is drawn on a lane of that name within the process instead of its thread's lane.
//!
//! **Counters** are events whose field names start with `counter.`; every such field is one sample
//! (integer, float or bool) of the counter named by the rest of the field name, and the event records
//! nothing else:
//!
//! ```
//! tracing::trace!(counter.queue_depth = 3u64);
//! tracing::trace!(counter.frames = 1200u64, counter.bytes_per_s = 2.5e9);
//! ```
//!
//! Use counters for levels (queue depth, bytes in flight) and for running totals. Two totals are read by
//! `beamline runs report`: `counter.frames` (frames completed so far by the run) and `counter.slices`
//! (slices reconstructed so far); emit them as cumulative values, the last sample is the run's total.
//!
//! **Instant events** are any other event (`tracing::info!(frame = 7u64, "frame dropped")`): drawn as
//! a tick on the lane of their thread, named by their message.
//!
//! # Log format (JSON lines, one record per line)
//!
//! ```text
//! {"t":"header","format":"beamline-trace","format_version":1,"version":"0.1.0","command":"acquire",
//!   "argv":[...],"pid":4242,"host":"h","start_unix_ns":...,"start_mono_ns":...}
//! {"t":"thread","tid":4243,"name":"writer"}
//! {"t":"span","n":"hdf5.write_chunk","id":7,"p":3,"tid":4243,"s":<mono ns>,"e":<mono ns>,"f":{"frame":12}}
//! {"t":"event","n":"frame dropped","tid":4243,"ts":<mono ns>,"span":7,"level":"INFO","f":{"frame":7}}
//! {"t":"counter","n":"queue_depth","tid":4243,"ts":<mono ns>,"v":3}
//! {"t":"footer","status":"ok|error|panic|unknown","exit_code":0,"error":null,"dropped":0,
//!   "end_unix_ns":...,"end_mono_ns":...,"cpu_user_ns":...,"cpu_sys_ns":...,"max_rss_kib":...,"written":N}
//! ```
//!
//! Why JSON lines and not a binary format (measured with `beamline bench trace --no-browser --json`, 1M
//! spans on one thread, on this 2-core machine shared with other builds, load average 4 to 8): records
//! are encoded on the background writer thread, so the format does not change the cost on instrumented
//! threads (150–185 ns thread-CPU per recorded span with the recorder as its own subscriber, 1.4–2.1 ns
//! per disabled per-frame span; `tracing_subscriber::Registry` alone costs 170–190 ns). The writer spends
//! 100–150 ns CPU per record (process CPU 265–315 ns per span): CPU is not what makes it fall behind (0
//! of 1M spans dropped in 9 of 9 runs at load 4–8, three of them pinned to one core beside three busy
//! loops). Its `write(2)` calls are: the bench produces ~120 bytes per span at up to 500 MB/s, and while
//! other processes keep the page cache full of dirty pages (~2 GB here) the kernel throttles such a
//! writer to the disk's pace. The 262k packed records that may wait (≤ 17.4 MB) then cover about 65 ms
//! at full speed before whole batches are dropped and counted: 0–470k of 1M dropped in 6 such runs,
//! against 220k–720k in 6 runs of the previous 65k-record buffer alternating with them (no clear win: a
//! smaller log, not a bigger buffer, is what would keep up with a throttled disk). A binary log would be
//! about 3× smaller but every reader (jq, pandas, the Python test peers, older `beamline` versions) would
//! need a converter; the page embeds its own compact encoding anyway (~13 bytes per span).
//!
//! Times are `CLOCK_MONOTONIC` nanoseconds, shared by all processes of the machine, so logs of several
//! processes merge onto one time axis. A log without footer comes from a process that was killed.
//!
//! # Using it
//!
//! - Record: [`install`] (global, once per process) or [`recorder`] / [`record_to_file`] (a layer to
//!   compose yourself), then [`Guard::finish`] with the [`Outcome`].
//! - Render: [`render_html`], [`render_chrome`] from log paths; [`verdict`] gives the diagnosis (what
//!   limited a run) as one sentence, e.g. for the end of `beamline demo`.
//! - Reports over many runs: [`report`].

#![warn(missing_docs)]

pub mod browser;
pub mod chrome;
pub mod clock;
pub mod diagnose;
mod error;
pub mod html;
mod json;
pub mod lock;
pub mod log;
mod pack;
pub mod recorder;
pub mod report;
pub mod rundir;
pub mod sanitize;
pub mod stalls;
pub mod stats;
pub mod timeline;
pub mod tracebench;
pub mod workload;

pub use error::Error;
pub use recorder::{
    install, record_to_file, recorder, registry_dispatch, Config, Detail, Guard, Outcome, RecordingLayer, RunInfo,
    Totals,
};

/// Field-name prefix that marks an event field as a counter sample.
pub const COUNTER_PREFIX: &str = "counter.";

/// Span-name prefix that marks a span as waiting.
pub const WAIT_PREFIX: &str = "wait.";

/// Reads the logs at `paths` and renders them as one self-contained HTML page.
pub fn render_html(paths: &[std::path::PathBuf], title: &str) -> Result<String, Error> {
    let tl = timeline::Timeline::from_paths(paths)?;
    Ok(html::render(&tl, title))
}

/// Reads the logs at `paths` and renders them as Chrome Trace Event JSON (for Perfetto / chrome://tracing).
pub fn render_chrome(paths: &[std::path::PathBuf]) -> Result<String, Error> {
    let tl = timeline::Timeline::from_paths(paths)?;
    Ok(chrome::render(&tl))
}

/// The diagnosis of the runs at `paths` in one sentence (what limited them, or that no stage did), as
/// `beamline timeline --summary` and the page's verdict box give it.
pub fn verdict(paths: &[std::path::PathBuf]) -> Result<String, Error> {
    let tl = timeline::Timeline::from_paths(paths)?;
    Ok(diagnose::diagnose(&tl).verdict)
}
