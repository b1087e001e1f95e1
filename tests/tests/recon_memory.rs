//! `--memory` holds on a node with several devices: [`reconstruct::pipeline::reconstruct_file_on`] over N test
//! devices (the real CPU backend behind a GPU-like slab preference) keeps the heap it allocates during the run
//! within the budget. The heap is measured by a counting global allocator, so this file holds one test only
//! (nothing else may allocate in the process while it measures).

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use reconstruct::backend::{Backend, BackendError, ReconSetup, Slab};
use reconstruct::cpu::CpuBackend;
use reconstruct::pipeline::{reconstruct_file_on, CenterChoice, Format, ReconOptions};

/// Counts the bytes allocated through Rust's allocator that are alive, and the most alive at once.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = LIVE.fetch_add(bytes, Ordering::SeqCst) + bytes;
    PEAK.fetch_max(now, Ordering::SeqCst);
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are updated.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const ROWS: usize = 24;
const COLS: usize = 64;
const ANGLES: usize = 180;
const OUT: usize = 128;
const DEVICES: usize = 4;

/// An uncompressed NXtomo file (3 darks, 4 flats, `ANGLES` projections, 4 flats), so the reader holds no
/// decompression buffers and what the run allocates is its slabs.
fn write_nxtomo(path: &Path) -> hdf5::Result<()> {
    let keys: Vec<i32> = [vec![2; 3], vec![1; 4], vec![0; ANGLES], vec![1; 4]].concat();
    let frames = keys.len();
    let angles: Vec<f64> = keys
        .iter()
        .scan(0usize, |k, key| {
            let a = (*k).min(ANGLES - 1) as f64 * 180.0 / ANGLES as f64;
            if *key == 0 {
                *k += 1;
            }
            Some(a)
        })
        .collect();
    let mut data = vec![0u16; frames * ROWS * COLS];
    for (f, key) in keys.iter().enumerate() {
        for r in 0..ROWS {
            for c in 0..COLS {
                let beam = 30_000.0;
                let v = match key {
                    2 => 100.0,
                    1 => beam + 100.0,
                    _ => {
                        let x = c as f64 - (COLS as f64 - 1.0) / 2.0 + 8.0 * (f as f64 * 0.05).sin();
                        beam * (-(0.02 * (24.0 - x.abs()).max(0.0)) * (1.0 + r as f64 * 0.01)).exp() + 100.0
                    }
                };
                data[(f * ROWS + r) * COLS + c] = v.round() as u16;
            }
        }
    }
    let file = hdf5::File::create(path)?;
    let entry = file.create_group("entry")?;
    let det = entry.create_group("instrument")?.create_group("detector")?;
    det.new_dataset::<u16>().shape([frames, ROWS, COLS]).create("data")?.write_raw(&data)?;
    det.new_dataset_builder().with_data(&keys).create("image_key")?;
    entry.create_group("sample")?.new_dataset_builder().with_data(&angles).create("rotation_angle")?;
    Ok(())
}

/// A device standing in for a GPU: the CPU backend computing, but asking for large slabs like a GPU with
/// plenty of free memory; capped, as `select_backends` caps GPUs, by the rows of the run's CPU backend.
struct TestDevice {
    name: String,
    cpu: CpuBackend,
    max_rows: usize,
}

impl Backend for TestDevice {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn reconstruct(&mut self, setup: &ReconSetup, slab: &Slab) -> Result<Vec<f32>, BackendError> {
        self.cpu.reconstruct(setup, slab)
    }

    fn preferred_rows(&self, _: &ReconSetup) -> usize {
        self.max_rows
    }
}

#[test]
fn slabs_in_flight_over_several_devices_stay_within_the_memory_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("scan.h5");
    write_nxtomo(&input).expect("write the NXtomo file");
    let memory: u64 = 4 << 20;
    let mut opts = ReconOptions::new(&input, dir.path().join("volume.h5"));
    opts.center = CenterChoice::Column((COLS as f64 - 1.0) / 2.0);
    opts.format = Format::Hdf5;
    opts.out_size = Some(OUT);
    opts.memory_bytes = memory;

    let mut choose = |cpu: &CpuBackend| {
        let cap = if cpu.rows_per_slab > 0 { cpu.rows_per_slab } else { 1024 };
        let devices: Vec<Box<dyn Backend>> = (0..DEVICES)
            .map(|k| {
                Box::new(TestDevice { name: format!("test:{k}"), cpu: cpu.clone(), max_rows: cap.min(1024) })
                    as Box<dyn Backend>
            })
            .collect();
        Ok((devices, format!("backend: {DEVICES} test devices")))
    };
    let baseline = LIVE.load(Ordering::SeqCst);
    PEAK.store(baseline, Ordering::SeqCst);
    let summary = reconstruct_file_on(&opts, &mut choose, &mut |_| {}).expect("reconstruction");
    let peak = PEAK.load(Ordering::SeqCst) - baseline;

    assert_eq!(summary.slices, ROWS);
    assert_eq!(summary.devices.len(), DEVICES, "{:?}", summary.devices);
    assert_eq!(summary.devices.iter().map(|(_, n)| n).sum::<usize>(), ROWS.div_ceil(summary.slab_rows));
    println!(
        "{DEVICES} devices, --memory {} KiB: {} rows per slab, peak heap during the run {} KiB",
        memory >> 10,
        summary.slab_rows,
        peak >> 10
    );
    assert!(
        peak as u64 <= memory,
        "{peak} bytes alive at once during the run, over the --memory budget of {memory} bytes \
         ({} rows per slab over {DEVICES} devices)",
        summary.slab_rows
    );
}
