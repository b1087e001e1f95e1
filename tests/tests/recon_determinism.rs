//! The CPU backend gives bit-identical volumes whatever the thread count and however rows are grouped into
//! slabs (including through the multi-device scheduler).

use acquisition::phantom::{project_3d, shepp_logan_3d, Detector};
use reconstruct::backend::{Backend, ReconSetup, Slab};
use reconstruct::cpu::CpuBackend;
use reconstruct::schedule;

struct Data {
    setup: ReconSetup,
    rows: usize,
    /// Raw counts `[row][angle][col]`.
    raw: Vec<f32>,
    cols: usize,
}

fn data() -> Data {
    let det = Detector::centered(9, 96);
    let n_angles = 120;
    let angles: Vec<f64> = (0..n_angles).map(|i| std::f64::consts::PI * i as f64 / n_angles as f64).collect();
    let phantom = shepp_logan_3d();
    let mut raw = vec![0f32; det.rows * n_angles * det.cols];
    for (a, &t) in angles.iter().enumerate() {
        let p = project_3d(&phantom, &det, t);
        for r in 0..det.rows {
            for c in 0..det.cols {
                raw[(r * n_angles + a) * det.cols + c] = 100.0 + 20000.0 * (-0.02 * p[r * det.cols + c]).exp();
            }
        }
    }
    let mut setup = ReconSetup::new(angles.iter().map(|&a| a as f32).collect(), det.cols, 47.5, det.cols);
    setup.filter = reconstruct::filter::FilterKind::Hann;
    setup.stripe_size = Some(5);
    setup.zinger_threshold = Some(0.5);
    Data { setup, rows: det.rows, raw, cols: det.cols }
}

fn slab(d: &Data, rows: std::ops::Range<usize>) -> Slab {
    let per = d.setup.angles_rad.len() * d.cols;
    let n = rows.len();
    Slab {
        projections: d.raw[rows.start * per..rows.end * per].to_vec(),
        dark: vec![100.0; n * d.cols],
        flat_before: vec![20100.0; n * d.cols],
        flat_after: vec![20100.0; n * d.cols],
        flat_weight: vec![0.0; d.setup.angles_rad.len()],
        rows,
    }
}

fn run(d: &Data, threads: usize, slab_rows: usize) -> Vec<f32> {
    let backend = CpuBackend::with_threads(threads, slab_rows).expect("thread pool");
    let mut out = Vec::new();
    schedule::run(
        &d.setup,
        vec![Box::new(backend) as Box<dyn Backend>],
        0..d.rows,
        |r| Ok::<_, String>(slab(d, r)),
        |_, v| {
            out.extend(v);
            Ok::<(), String>(())
        },
    )
    .expect("run");
    out
}

#[test]
fn same_bits_for_any_thread_count_and_slab_size() {
    let d = data();
    let reference = run(&d, 1, 9);
    assert_eq!(reference.len(), d.rows * d.cols * d.cols);
    assert!(reference.iter().any(|v| *v != 0.0));
    for (threads, rows) in [(2, 1), (3, 2), (2, 4), (4, 9), (1, 5)] {
        let v = run(&d, threads, rows);
        let same = v.iter().zip(&reference).all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{threads} threads, {rows} rows per slab differ from 1 thread, one slab");
    }
}

#[test]
fn two_cpu_devices_through_the_scheduler_give_the_same_volume() {
    let d = data();
    let reference = run(&d, 2, 3);
    let devices: Vec<Box<dyn Backend>> =
        (0..2).map(|_| Box::new(CpuBackend { rows_per_slab: 2, ..Default::default() }) as Box<dyn Backend>).collect();
    let mut out = Vec::new();
    schedule::run(
        &d.setup,
        devices,
        0..d.rows,
        |r| Ok::<_, String>(slab(&d, r)),
        |_, v| {
            out.extend(v);
            Ok::<(), String>(())
        },
    )
    .expect("run");
    assert!(out.iter().zip(&reference).all(|(a, b)| a.to_bits() == b.to_bits()));
}
