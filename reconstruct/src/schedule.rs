//! Runs a reconstruction over one or many devices: a reader thread produces slabs into a bounded queue,
//! one worker thread per device pulls the next slab (so a faster device simply takes more), and the
//! caller's thread hands results to the writer strictly in slice order.
//!
//! Guarantees:
//! - every row of the requested range is written exactly once, in order, or the run returns an error;
//! - a device that fails (a [`BackendError::Device`] or a panic inside the backend) is retired for the rest
//!   of the run and its slab is retried on another device; [`RunReport::retries`] says so;
//! - memory is bounded: at most [`max_in_flight`] slabs exist at once (read, being reconstructed, or
//!   waiting in the reorder buffer for a slower device), whatever the relative speed of the devices.
//!
//! Slab size is the smallest [`Backend::preferred_rows`] over the devices, so any device can take any slab.
//! Because a backend's output for a row depends only on that row (the [`Backend`] contract), the volume is
//! bit-identical to a single-device run whatever the cut and whichever device took which slab.

use std::collections::BTreeMap;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::{bounded, select, unbounded, Receiver, Sender};
use tracing::{info_span, trace, warn};

use crate::backend::{Backend, BackendError, ReconSetup, Slab};

/// What a scheduled run did.
#[derive(Debug, Default, Clone)]
pub struct RunReport {
    /// Rows (slices) reconstructed.
    pub rows: usize,
    /// Slabs reconstructed per device name, in the order the devices were given.
    pub slabs_per_device: Vec<(String, usize)>,
    /// Slabs that failed on a device and were retried on another, with the reason.
    pub retries: Vec<String>,
    /// Devices retired during the run after a failure (they took no further slab).
    pub retired: Vec<String>,
    /// Rows per slab used for this run.
    pub slab_rows: usize,
    /// Per device, in the order the devices were given: what it did and how long it was busy.
    pub devices: Vec<DeviceStats>,
}

/// What one device did during a run.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct DeviceStats {
    /// Device name.
    pub name: String,
    /// Slabs it finished.
    pub slabs: usize,
    /// Rows (slices) it finished.
    pub rows: usize,
    /// Seconds spent inside its backend's `reconstruct` (successful slabs only).
    pub busy_seconds: f64,
    /// Device time per stage over this run's successful slabs, for backends that measure it
    /// ([`Backend::stage_times`]: the CUDA backend); absent for the CPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stages: Option<crate::gpu::StageTimes>,
}

impl DeviceStats {
    /// Slices per second while busy (0 when it did nothing).
    pub fn slices_per_second(&self) -> f64 {
        if self.busy_seconds > 0.0 {
            self.rows as f64 / self.busy_seconds
        } else {
            0.0
        }
    }
}

/// Why a scheduled run stopped. `R` and `W` are the errors of the caller's read and write functions,
/// kept as they are (with their sources).
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError<R, W> {
    /// Reading a slab failed.
    #[error("reading rows {rows:?}: {source}")]
    Read {
        /// Rows being read.
        rows: Range<usize>,
        /// What went wrong.
        source: R,
    },
    /// Every device failed on a slab.
    #[error("no device could reconstruct rows {rows:?} (every device failed and was retired): {source}")]
    AllDevicesFailed {
        /// Rows of the slab.
        rows: Range<usize>,
        /// The last device error.
        source: BackendError,
    },
    /// A device rejected the slab's input as invalid; retrying elsewhere would not help.
    #[error("rows {rows:?} rejected: {source}")]
    Rejected {
        /// Rows of the slab.
        rows: Range<usize>,
        /// The backend's reason.
        source: BackendError,
    },
    /// Writing results failed.
    #[error("writing rows {rows:?}: {source}")]
    Write {
        /// Rows being written.
        rows: Range<usize>,
        /// What went wrong.
        source: W,
    },
    /// There is no device to run on.
    #[error("no device to run on: give at least one backend (the CPU backend always works)")]
    NoDevice,
    /// The operating system refused a thread of the run.
    #[error(
        "cannot start the {thread:?} thread: {source}; the system is out of threads or memory \
         (check `ulimit -u` and free memory, or run with fewer devices)"
    )]
    Spawn {
        /// The thread's name ("reader" or the device's).
        thread: String,
        /// What the operating system said.
        source: std::io::Error,
    },
}

/// How many slabs may exist at once for `devices` devices: two per device (one being reconstructed, one
/// queued so the device never waits for the reader) plus two for the reader and the writer.
pub fn max_in_flight(devices: usize) -> usize {
    2 * devices + 2
}

/// A slab with its position in the run.
struct Work {
    /// Position of the slab in row order (0, 1, 2, ...).
    seq: usize,
    slab: Slab,
}

/// What the reader and the workers tell the caller's thread.
enum Event<R> {
    /// A device finished a slab.
    Done {
        seq: usize,
        rows: Range<usize>,
        device: usize,
        data: Vec<f32>,
        seconds: f64,
        /// The device's stage times since the run started (cumulative), when it measures them.
        stages: Option<crate::gpu::StageTimes>,
    },
    /// A device failed on a slab and retired; the slab comes back for another device.
    Failed { device: usize, work: Work, error: BackendError },
    /// A device rejected a slab's input.
    Rejected { rows: Range<usize>, error: BackendError },
    /// The reader could not read a slab.
    ReadFailed { rows: Range<usize>, error: R },
    /// The reader produced every slab; this many in total.
    ReaderDone { slabs: usize },
}

/// Reconstructs `rows` on `devices`. `read` loads the slab for a range of rows (called from a reader
/// thread, so it must be `Send + Sync`); `write` receives `[row][y][x]` results strictly in row order, on
/// the caller's thread.
pub fn run<R, W, RE, WE>(
    setup: &ReconSetup,
    devices: Vec<Box<dyn Backend>>,
    rows: Range<usize>,
    read: R,
    mut write: W,
) -> Result<RunReport, ScheduleError<RE, WE>>
where
    R: Fn(Range<usize>) -> Result<Slab, RE> + Send + Sync,
    W: FnMut(Range<usize>, Vec<f32>) -> Result<(), WE>,
    RE: Send,
{
    let slab_rows = devices.iter().map(|d| d.preferred_rows(setup).max(1)).min().ok_or(ScheduleError::NoDevice)?;
    let names: Vec<String> = devices.iter().map(|d| d.name()).collect();
    let n_devices = devices.len();
    let in_flight = max_in_flight(n_devices);

    // Work flows reader -> `work` (bounded) -> workers; failed slabs come back through `retry`.
    let (work_tx, work_rx) = bounded::<Work>(2 * n_devices);
    let (retry_tx, retry_rx) = unbounded::<Work>();
    let (event_tx, event_rx) = unbounded::<Event<RE>>();
    // One token per slab in flight: the reader blocks on a full `credits` channel; the caller's thread
    // frees a token each time it has written a slab.
    let (credit_tx, credit_rx) = bounded::<()>(in_flight);
    let cancel = AtomicBool::new(false);

    let mut report = RunReport {
        slabs_per_device: names.iter().map(|n| (n.clone(), 0)).collect(),
        devices: names.iter().map(|n| DeviceStats { name: n.clone(), ..DeviceStats::default() }).collect(),
        slab_rows,
        ..RunReport::default()
    };

    std::thread::scope(|scope| {
        let mut started = {
            let (read, cancel, events, rows) = (&read, &cancel, event_tx.clone(), rows.clone());
            spawn(scope, 0, "reader".into(), move || {
                read_slabs(read, rows, slab_rows, cancel, &credit_tx, &work_tx, &events)
            })
        };
        for (index, device) in devices.into_iter().enumerate() {
            if started.is_err() {
                break;
            }
            let (work_rx, retry_rx, events) = (work_rx.clone(), retry_rx.clone(), event_tx.clone());
            started = spawn(scope, index + 1, thread_name(&names[index]), move || {
                work(index, device, setup, &work_rx, &retry_rx, &events)
            });
        }
        drop((work_rx, retry_rx, event_tx));
        let outcome = match started {
            Ok(()) => collect(&mut report, &names, event_rx, retry_tx, credit_rx, &mut write),
            Err(error) => {
                // The threads already started see their channels close and exit.
                drop((event_rx, retry_tx, credit_rx));
                Err(error)
            }
        };
        // Whatever happened, let the reader stop early; every channel end this thread held is dropped by
        // now, so the workers drain and exit and the scope can join them.
        cancel.store(true, Ordering::Relaxed);
        outcome
    })?;
    Ok(report)
}

/// Starts the run's thread number `index` (0 is the reader) in `scope`.
fn spawn<'scope, F, R, W>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    index: usize,
    name: String,
    f: F,
) -> Result<(), ScheduleError<R, W>>
where
    F: FnOnce() + Send + 'scope,
{
    let builder = std::thread::Builder::new().name(name.clone());
    #[cfg(test)]
    let builder = match tests::HUGE_STACK_FROM.with(|from| from.get()) {
        // A stack no system can map: the operating system refuses the thread.
        Some(first) if index >= first => builder.stack_size(1 << 50),
        _ => builder,
    };
    #[cfg(not(test))]
    let _ = index;
    builder.spawn_scoped(scope, f).map(drop).map_err(|source| ScheduleError::Spawn { thread: name, source })
}

/// Thread names must be short enough to show in tools; a device name such as
/// "cuda:0 NVIDIA A100-SXM4-40GB" keeps its id and model.
fn thread_name(device: &str) -> String {
    device.chars().filter(|c| *c != '\0').take(48).collect()
}

/// The reader thread: cuts `rows` into slabs of `slab_rows` and queues them in order.
fn read_slabs<R, RE>(
    read: &R,
    rows: Range<usize>,
    slab_rows: usize,
    cancel: &AtomicBool,
    credits: &Sender<()>,
    work: &Sender<Work>,
    events: &Sender<Event<RE>>,
) where
    R: Fn(Range<usize>) -> Result<Slab, RE>,
{
    let mut seq = 0;
    let mut start = rows.start;
    while start < rows.end {
        if cancel.load(Ordering::Relaxed) {
            return;
        }
        let r = start..(start + slab_rows).min(rows.end);
        if info_span!("wait.queue", queue = "in_flight", wants = "space", on = "collector", rows = r.len())
            .in_scope(|| credits.send(()))
            .is_err()
        {
            return;
        }
        let slab =
            info_span!("recon.read", feeds = "slabs", start = r.start, rows = r.len()).in_scope(|| read(r.clone()));
        let slab = match slab {
            Ok(slab) => slab,
            Err(error) => {
                let _ = events.send(Event::ReadFailed { rows: r, error });
                return;
            }
        };
        let sent = info_span!("wait.queue", queue = "slabs", wants = "space", on = "workers", start = r.start)
            .in_scope(|| work.send(Work { seq, slab }).is_ok());
        if !sent {
            return;
        }
        trace!(counter.slab_queue = work.len() as u64);
        seq += 1;
        start = r.end;
    }
    let _ = events.send(Event::ReaderDone { slabs: seq });
}

/// One device's worker: takes retried slabs first, then new ones, until the queues close or the device
/// fails (it then hands its slab back and retires).
fn work<RE>(
    index: usize,
    mut device: Box<dyn Backend>,
    setup: &ReconSetup,
    work: &Receiver<Work>,
    retry: &Receiver<Work>,
    events: &Sender<Event<RE>>,
) {
    let name = device.name();
    // Stage times are cumulative over a backend's life: report what this run added.
    let stages_before = device.stage_times().unwrap_or_default();
    loop {
        let next = match retry.try_recv() {
            Ok(w) => Some(w),
            Err(_) => info_span!("wait.queue", queue = "slabs", wants = "data", on = "reader", device = %name)
                .in_scope(|| {
                    select! {
                        recv(retry) -> w => w.ok(),
                        recv(work) -> w => w.ok().or_else(|| retry.recv().ok()),
                    }
                }),
        };
        let Some(item) = next else { return };
        let rows = item.slab.rows.clone();
        let span = info_span!("recon.slab", feeds = "results", device = %name, start = rows.start, rows = rows.len());
        let t0 = std::time::Instant::now();
        let result = span.in_scope(|| {
            catch_unwind(AssertUnwindSafe(|| device.reconstruct(setup, &item.slab))).unwrap_or_else(|panic| {
                Err(BackendError::Device { device: name.clone(), reason: panic_message(panic.as_ref()) })
            })
        });
        let event = match result {
            Ok(data) => Event::Done {
                seq: item.seq,
                rows,
                device: index,
                data,
                seconds: t0.elapsed().as_secs_f64(),
                stages: device.stage_times().map(|t| t.since(&stages_before)),
            },
            Err(BackendError::Input(reason)) => {
                // The run ends on this; take no further slab.
                let _ = events.send(Event::Rejected { rows, error: BackendError::Input(reason) });
                return;
            }
            Err(error) => {
                warn!(device = %name, start = rows.start, rows = rows.len(), %error, "device failed; retiring it");
                let _ = events.send(Event::Failed { device: index, work: item, error });
                return;
            }
        };
        if events.send(event).is_err() {
            return;
        }
    }
}

/// Text of a panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    format!("backend panicked: {text}")
}

/// The caller's thread: reorders results, writes them in slice order, requeues failed slabs.
fn collect<W, RE, WE>(
    report: &mut RunReport,
    names: &[String],
    events: Receiver<Event<RE>>,
    retry: Sender<Work>,
    credits: Receiver<()>,
    write: &mut W,
) -> Result<(), ScheduleError<RE, WE>>
where
    W: FnMut(Range<usize>, Vec<f32>) -> Result<(), WE>,
{
    let mut live = names.len();
    let mut pending: BTreeMap<usize, (Range<usize>, Vec<f32>)> = BTreeMap::new();
    let mut next = 0;
    let mut total = None;
    while total != Some(next) {
        let event = info_span!("wait.queue", queue = "results", wants = "data", on = "workers", next)
            .in_scope(|| events.recv());
        // Every sender is gone only if the reader and all workers have exited without finishing, which the
        // events below rule out; treat it as every device having gone.
        let Ok(event) = event else {
            return Err(ScheduleError::AllDevicesFailed {
                rows: 0..0,
                source: BackendError::Device { device: "all".into(), reason: "every worker exited".into() },
            });
        };
        match event {
            Event::Done { seq, rows, device, data, seconds, stages } => {
                report.slabs_per_device[device].1 += 1;
                let stats = &mut report.devices[device];
                stats.slabs += 1;
                stats.rows += rows.len();
                stats.busy_seconds += seconds;
                if stages.is_some() {
                    stats.stages = stages;
                }
                pending.insert(seq, (rows, data));
                trace!(counter.reorder_buffer = pending.len() as u64);
                while let Some((rows, data)) = pending.remove(&next) {
                    info_span!("recon.write", feeds = "in_flight", start = rows.start, rows = rows.len())
                        .in_scope(|| write(rows.clone(), data))
                        .map_err(|source| ScheduleError::Write { rows: rows.clone(), source })?;
                    report.rows += rows.len();
                    next += 1;
                    let _ = credits.try_recv();
                }
            }
            Event::Failed { device, work, error } => {
                live -= 1;
                let rows = work.slab.rows.clone();
                report.retired.push(names[device].clone());
                if live == 0 {
                    return Err(ScheduleError::AllDevicesFailed { rows, source: error });
                }
                report.retries.push(format!(
                    "rows {}..{}: {error}; {} retired, slab retried on another device",
                    rows.start, rows.end, names[device]
                ));
                // The receiving workers are alive (live > 0), so this cannot fail.
                let _ = retry.send(work);
            }
            Event::Rejected { rows, error } => return Err(ScheduleError::Rejected { rows, source: error }),
            Event::ReadFailed { rows, error } => return Err(ScheduleError::Read { rows, source: error }),
            Event::ReaderDone { slabs } => total = Some(slabs),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::cpu::CpuBackend;

    thread_local! {
        /// Threads of a run started from this thread with this index or above (0 is the reader) get a stack
        /// no system can map, so the operating system refuses them.
        pub(super) static HUGE_STACK_FROM: Cell<Option<usize>> = const { Cell::new(None) };
    }

    fn slab(rows: Range<usize>) -> Slab {
        let (n, a, c) = (rows.len(), 4, 8);
        Slab {
            projections: vec![50.0; n * a * c],
            dark: vec![0.0; n * c],
            flat_before: vec![100.0; n * c],
            flat_after: vec![100.0; n * c],
            flat_weight: vec![0.0; a],
            rows,
        }
    }

    #[test]
    fn a_thread_the_system_refuses_is_an_error_not_a_panic() {
        let setup = ReconSetup::new(vec![0.0, 0.5, 1.0, 1.5], 8, 3.5, 8);
        let devices = || -> Vec<Box<dyn Backend>> {
            (0..3)
                .map(|_| Box::new(CpuBackend { rows_per_slab: 2, ..CpuBackend::default() }) as Box<dyn Backend>)
                .collect()
        };
        // Rows 0..10 over the three devices; returns the outcome and the rows written.
        let run_counting = || {
            let mut written = 0;
            let result = run(
                &setup,
                devices(),
                0..10,
                |r| Ok::<_, String>(slab(r)),
                |r, _| {
                    written += r.len();
                    Ok::<_, String>(())
                },
            );
            (result, written)
        };
        let (healthy, written) = run_counting();
        assert_eq!(healthy.expect("a run with every thread started").rows, 10);
        assert_eq!(written, 10);
        // The reader refused; then a worker refused once the reader and another worker run (they must stop).
        for (first_refused, thread) in [(0, "reader"), (2, "cpu (")] {
            HUGE_STACK_FROM.with(|from| from.set(Some(first_refused)));
            let (result, written) = run_counting();
            HUGE_STACK_FROM.with(|from| from.set(None));
            match result {
                Err(ScheduleError::Spawn { thread: name, source }) => {
                    assert!(name.starts_with(thread), "{name}");
                    assert!(source.raw_os_error().is_some(), "the refusal comes from the system: {source}");
                }
                other => panic!("expected a spawn error, got {other:?}"),
            }
            assert_eq!(written, 0, "nothing is written when the run cannot start");
        }
    }
}
