//! The multi-device scheduler (`reconstruct::schedule::run`) with several CPU "devices": the volume must be
//! bit-identical to a single-device run, rows must reach the writer exactly once and in order, and a device
//! that fails (error or panic) must have its slab retried elsewhere and be reported as retired.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use reconstruct::backend::{Backend, BackendError, ReconSetup, Slab};
use reconstruct::schedule::{self, ScheduleError};

const N_COLS: usize = 24;
const N_ANGLES: usize = 9;
const OUT: usize = 20;
const ROWS: Range<usize> = 3..70;

fn setup() -> ReconSetup {
    let angles = (0..N_ANGLES).map(|a| a as f32 * std::f32::consts::PI / N_ANGLES as f32).collect();
    ReconSetup::new(angles, N_COLS, (N_COLS as f64 - 1.0) / 2.0, OUT)
}

/// Raw counts that differ per row, angle and column, with dark/flat fields, so rows cannot be confused.
fn read(rows: Range<usize>) -> Result<Slab, String> {
    let n = rows.len();
    let projections = rows
        .clone()
        .flat_map(|r| (0..N_ANGLES * N_COLS).map(move |i| 100.0 + ((r * 7919 + i * 104_729) % 1000) as f32 * 0.37))
        .collect();
    Ok(Slab {
        rows: rows.clone(),
        projections,
        dark: rows.clone().flat_map(|r| (0..N_COLS).map(move |c| ((r + c) % 5) as f32)).collect(),
        flat_before: vec![600.0; n * N_COLS],
        flat_after: vec![640.0; n * N_COLS],
        flat_weight: (0..N_ANGLES).map(|a| a as f32 / (N_ANGLES - 1) as f32).collect(),
    })
}

/// A deterministic per-row backend standing in for a device: dark/flat normalisation, -log, then an
/// unfiltered backprojection with nearest-neighbour lookup. Each output row depends only on its input row.
struct RowBackend {
    name: String,
    rows_per_slab: usize,
}

impl Backend for RowBackend {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn reconstruct(&mut self, setup: &ReconSetup, slab: &Slab) -> Result<Vec<f32>, BackendError> {
        let (nc, na, n) = (setup.n_cols, setup.angles_rad.len(), setup.out_size);
        let mut out = vec![0f32; slab.rows.len() * n * n];
        for r in 0..slab.rows.len() {
            for (a, theta) in setup.angles_rad.iter().enumerate() {
                let line: Vec<f32> = (0..nc)
                    .map(|c| {
                        let w = slab.flat_weight[a];
                        let flat = (1.0 - w) * slab.flat_before[r * nc + c] + w * slab.flat_after[r * nc + c];
                        let d = slab.dark[r * nc + c];
                        -((slab.projections[(r * na + a) * nc + c] - d) / (flat - d)).max(1e-6).ln()
                    })
                    .collect();
                for y in 0..n {
                    for x in 0..n {
                        let (px, py) = (x as f64 - (n as f64 - 1.0) / 2.0, (n as f64 - 1.0) / 2.0 - y as f64);
                        let t = px * (*theta as f64).cos() + py * (*theta as f64).sin() + setup.center;
                        let c = t.round();
                        if c >= 0.0 && (c as usize) < nc {
                            out[(r * n + y) * n + x] += line[c as usize];
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    fn preferred_rows(&self, _setup: &ReconSetup) -> usize {
        self.rows_per_slab
    }
}

/// How an injected failure shows itself.
#[derive(Clone, Copy)]
enum Failure {
    Error,
    Panic,
}

/// Wraps a device and makes it fail on its `fail_on`-th slab (0-based) and every slab after; counts the
/// slabs it was given in `calls`.
struct Flaky {
    inner: Box<dyn Backend>,
    fail_on: usize,
    calls: Arc<AtomicUsize>,
    how: Failure,
}

impl Flaky {
    fn new(inner: Box<dyn Backend>, fail_on: usize, how: Failure) -> (Flaky, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        (Flaky { inner, fail_on, calls: calls.clone(), how }, calls)
    }
}

impl Backend for Flaky {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn reconstruct(&mut self, setup: &ReconSetup, slab: &Slab) -> Result<Vec<f32>, BackendError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) >= self.fail_on {
            match self.how {
                Failure::Error => {
                    return Err(BackendError::Device { device: self.name(), reason: "injected: device lost".into() })
                }
                Failure::Panic => panic!("injected panic in {}", self.name()),
            }
        }
        self.inner.reconstruct(setup, slab)
    }

    fn preferred_rows(&self, setup: &ReconSetup) -> usize {
        self.inner.preferred_rows(setup)
    }
}

/// A healthy device that starts its first slab only once `calls` reached `until`, so that a flaky device
/// is sure to receive the slabs it is meant to fail on (the schedule is otherwise first come, first served).
struct Gated {
    inner: Box<dyn Backend>,
    calls: Arc<AtomicUsize>,
    until: usize,
}

impl Backend for Gated {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn reconstruct(&mut self, setup: &ReconSetup, slab: &Slab) -> Result<Vec<f32>, BackendError> {
        while self.calls.load(Ordering::SeqCst) < self.until {
            std::thread::yield_now();
        }
        self.inner.reconstruct(setup, slab)
    }

    fn preferred_rows(&self, setup: &ReconSetup) -> usize {
        self.inner.preferred_rows(setup)
    }
}

fn gated(inner: Box<dyn Backend>, calls: &Arc<AtomicUsize>, until: usize) -> Box<dyn Backend> {
    Box::new(Gated { inner, calls: calls.clone(), until })
}

fn device(name: &str, rows_per_slab: usize) -> Box<dyn Backend> {
    Box::new(RowBackend { name: name.into(), rows_per_slab })
}

/// Runs the scheduler, checking that the writer sees contiguous ranges starting at `ROWS.start`.
fn run(
    devices: Vec<Box<dyn Backend>>,
) -> (Result<schedule::RunReport, ScheduleError<String, String>>, Vec<f32>, usize) {
    let setup = setup();
    let mut volume = Vec::new();
    let mut next_row = ROWS.start;
    let result = schedule::run(&setup, devices, ROWS, read, |rows, data| {
        assert_eq!(rows.start, next_row, "rows must arrive in order, without gap or repeat");
        assert_eq!(data.len(), rows.len() * OUT * OUT);
        next_row = rows.end;
        volume.extend_from_slice(&data);
        Ok::<(), String>(())
    });
    (result, volume, next_row)
}

fn single_device_volume() -> Vec<f32> {
    let (result, volume, end) = run(vec![device("cpu:0", 64)]);
    let report = result.expect("single-device run");
    assert_eq!(end, ROWS.end);
    assert_eq!(report.rows, ROWS.len());
    volume
}

fn assert_bit_identical(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    let differing = a.iter().zip(b).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
    assert_eq!(differing, 0, "{differing} voxels differ from the single-device run");
}

#[test]
fn several_devices_give_the_single_device_volume() {
    let reference = single_device_volume();
    assert!(reference.iter().any(|v| *v != 0.0), "the reference volume must not be empty");
    let devices = vec![device("cpu:0", 5), device("cpu:1", 3), device("cpu:2", 8)];
    let (result, volume, _) = run(devices);
    let report = result.expect("three-device run");
    assert_bit_identical(&reference, &volume);
    assert_eq!(report.slab_rows, 3, "slabs are cut to the smallest preferred size");
    let slabs: usize = report.slabs_per_device.iter().map(|(_, n)| n).sum();
    assert_eq!(slabs, ROWS.len().div_ceil(3), "every slab reconstructed exactly once");
    assert!(report.retries.is_empty() && report.retired.is_empty());
}

#[test]
fn a_failing_device_is_retired_and_its_slab_retried() {
    let reference = single_device_volume();
    for how in [Failure::Error, Failure::Panic] {
        let (flaky, calls) = Flaky::new(device("cpu:1", 4), 2, how);
        let devices = vec![gated(device("cpu:0", 4), &calls, 3), Box::new(flaky), gated(device("cpu:2", 4), &calls, 3)];
        let (result, volume, _) = run(devices);
        let report = result.expect("run survives one failing device");
        assert_bit_identical(&reference, &volume);
        assert_eq!(report.retired, vec!["cpu:1".to_string()]);
        assert_eq!(report.retries.len(), 1, "{:?}", report.retries);
        assert!(report.retries[0].contains("cpu:1 retired"), "{}", report.retries[0]);
        let slabs: usize = report.slabs_per_device.iter().map(|(_, n)| n).sum();
        assert_eq!(slabs, ROWS.len().div_ceil(4), "no slab lost or doubled: {:?}", report.slabs_per_device);
        let flaky_slabs = report.slabs_per_device.iter().find(|(n, _)| n == "cpu:1").map(|(_, n)| *n);
        assert!(flaky_slabs.unwrap_or(0) <= 2, "a device counts only the slabs it finished");
    }
}

#[test]
fn every_device_failing_is_an_error_and_nothing_is_doubled() {
    // cpu:0 fails on its 4th slab; cpu:1 fails on its 1st, once cpu:0 has failed.
    let (first, calls) = Flaky::new(device("cpu:0", 4), 3, Failure::Error);
    let (second, _) = Flaky::new(device("cpu:1", 4), 0, Failure::Error);
    let devices: Vec<Box<dyn Backend>> = vec![Box::new(first), gated(Box::new(second), &calls, 4)];
    let (result, volume, end) = run(devices);
    match result {
        Err(ScheduleError::AllDevicesFailed { source: BackendError::Device { .. }, .. }) => {}
        other => panic!("expected AllDevicesFailed, got {other:?}"),
    }
    // What was written is an in-order prefix of the single-device volume.
    let reference = single_device_volume();
    assert!(end < ROWS.end, "a failed run cannot have written every row");
    assert_eq!(volume.len(), (end - ROWS.start) * OUT * OUT);
    assert_bit_identical(&reference[..volume.len()], &volume);
}

#[test]
fn read_and_write_errors_stop_the_run_cleanly() {
    let setup = setup();
    let devices = vec![device("cpu:0", 4), device("cpu:1", 4)];
    let result = schedule::run(
        &setup,
        devices,
        ROWS,
        |rows| {
            if rows.start >= 30 {
                Err("disk on fire".to_string())
            } else {
                read(rows)
            }
        },
        |_, _| Ok::<(), String>(()),
    );
    match result {
        Err(ScheduleError::Read { rows, source: reason }) => {
            assert!(rows.start >= 30);
            assert_eq!(reason, "disk on fire");
        }
        other => panic!("expected a read error, got {other:?}"),
    }

    let written = Arc::new(AtomicUsize::new(0));
    let devices = vec![device("cpu:0", 4), device("cpu:1", 4)];
    let w = written.clone();
    let result = schedule::run(&setup, devices, ROWS, read, move |rows, _| {
        if w.fetch_add(1, Ordering::SeqCst) == 2 {
            Err(format!("disk full at {rows:?}"))
        } else {
            Ok(())
        }
    });
    assert!(matches!(result, Err(ScheduleError::Write { .. })), "{result:?}");
    assert_eq!(written.load(Ordering::SeqCst), 3, "the writer is not called after it failed");
}

#[test]
fn an_input_error_is_not_retried() {
    /// Rejects every slab as invalid input.
    struct Rejecting(Arc<AtomicUsize>);
    impl Backend for Rejecting {
        fn name(&self) -> String {
            "picky".into()
        }
        fn reconstruct(&mut self, _: &ReconSetup, _: &Slab) -> Result<Vec<f32>, BackendError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Err(BackendError::Input("angles do not match projections".into()))
        }
    }
    /// A healthy device that starts only once the picky one has rejected something, so the order is fixed.
    struct AfterRejection(Arc<AtomicUsize>, Box<dyn Backend>);
    impl Backend for AfterRejection {
        fn name(&self) -> String {
            self.1.name()
        }
        fn reconstruct(&mut self, setup: &ReconSetup, slab: &Slab) -> Result<Vec<f32>, BackendError> {
            while self.0.load(Ordering::SeqCst) == 0 {
                std::thread::yield_now();
            }
            self.1.reconstruct(setup, slab)
        }
    }
    let rejected = Arc::new(AtomicUsize::new(0));
    let devices: Vec<Box<dyn Backend>> =
        vec![Box::new(Rejecting(rejected.clone())), Box::new(AfterRejection(rejected.clone(), device("cpu:1", 16)))];
    let (result, _, _) = run(devices);
    assert!(matches!(result, Err(ScheduleError::Rejected { .. })), "{result:?}");
    assert_eq!(rejected.load(Ordering::SeqCst), 1, "the picky device is not asked again");
}

#[test]
fn no_device_and_empty_range() {
    let setup = setup();
    let none = schedule::run(&setup, Vec::new(), ROWS, read, |_, _| Ok::<(), String>(()));
    assert!(matches!(none, Err(ScheduleError::NoDevice)));
    let empty = schedule::run(&setup, vec![device("cpu:0", 4)], 5..5, read, |_, _| -> Result<(), String> {
        panic!("nothing to write")
    });
    assert_eq!(empty.expect("empty range").rows, 0);
}

/// The real CPU backend as several "devices" (different slab sizes, one of them failing mid-run) gives the
/// same bits as one CPU device taking the whole range.
#[test]
fn cpu_backend_devices_are_bit_identical_with_and_without_failure() {
    use reconstruct::cpu::CpuBackend;
    let cpu = |rows_per_slab| -> Box<dyn Backend> { Box::new(CpuBackend { rows_per_slab, ..CpuBackend::default() }) };
    let (result, reference, _) = run(vec![cpu(ROWS.len())]);
    result.expect("single CPU device");
    assert!(reference.iter().all(|v| v.is_finite()) && reference.iter().any(|v| *v != 0.0));

    let (result, volume, _) = run(vec![cpu(7), cpu(2), cpu(5)]);
    result.expect("three CPU devices");
    assert_bit_identical(&reference, &volume);

    let (flaky, calls) = Flaky::new(cpu(3), 1, Failure::Error);
    let (result, volume, _) = run(vec![gated(cpu(3), &calls, 2), Box::new(flaky)]);
    let report = result.expect("one CPU device failing");
    assert_bit_identical(&reference, &volume);
    assert_eq!(report.retired.len(), 1);
    assert_eq!(report.retries.len(), 1);
}
