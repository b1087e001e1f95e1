//! GPU selection from the environment (`reconstruct::gpu::visible`) driving the multi-device scheduler: a
//! node with four stand-in devices (CPU backends named `cuda:0`..`cuda:3`, as `open_gpus` would open them)
//! and the variables Slurm sets for `--gres=gpu:N`; the run must use exactly the selected devices and still
//! produce every row.

use std::ops::Range;

use reconstruct::backend::{Backend, BackendError, ReconSetup, Slab};
use reconstruct::gpu::{visible_ordinals, VisibilityError};
use reconstruct::schedule;

const NODE_GPUS: usize = 4;
const N_COLS: usize = 8;
const N_ANGLES: usize = 3;
const OUT: usize = 4;
const ROWS: Range<usize> = 0..23;

fn setup() -> ReconSetup {
    let angles = (0..N_ANGLES).map(|a| a as f32 * std::f32::consts::PI / N_ANGLES as f32).collect();
    ReconSetup::new(angles, N_COLS, (N_COLS as f64 - 1.0) / 2.0, OUT)
}

fn read(rows: Range<usize>) -> Result<Slab, String> {
    let n = rows.len();
    Ok(Slab {
        rows: rows.clone(),
        projections: rows.clone().flat_map(|r| (0..N_ANGLES * N_COLS).map(move |i| (r * 31 + i) as f32)).collect(),
        dark: vec![0.0; n * N_COLS],
        flat_before: vec![1.0; n * N_COLS],
        flat_after: vec![1.0; n * N_COLS],
        flat_weight: vec![0.0; N_ANGLES],
    })
}

/// A stand-in device: each output row holds the sum of its input row, so rows cannot be confused.
struct StandIn {
    name: String,
}

impl Backend for StandIn {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn reconstruct(&mut self, _setup: &ReconSetup, slab: &Slab) -> Result<Vec<f32>, BackendError> {
        let per_row = N_ANGLES * N_COLS;
        Ok(slab.projections.chunks(per_row).flat_map(|row| vec![row.iter().sum::<f32>(); OUT * OUT]).collect())
    }

    fn preferred_rows(&self, _setup: &ReconSetup) -> usize {
        2
    }
}

/// Opens the stand-in devices the environment `vars` selects on a node with [`NODE_GPUS`], runs the
/// scheduler on them and returns the names of the devices the run used.
fn run_with(vars: &[(&str, &str)]) -> Result<Vec<String>, VisibilityError> {
    let env = |k: &str| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
    // With CUDA_VISIBLE_DEVICES the driver itself lists only the devices named there.
    let driver_count = match env("CUDA_VISIBLE_DEVICES") {
        Some(v) => reconstruct::gpu::visible::parse_cuda_visible(&v).len().min(NODE_GPUS),
        None => NODE_GPUS,
    };
    let ordinals = visible_ordinals(env, driver_count)?;
    let devices: Vec<Box<dyn Backend>> =
        ordinals.iter().map(|o| Box::new(StandIn { name: format!("cuda:{o}") }) as Box<dyn Backend>).collect();
    if devices.is_empty() {
        return Ok(Vec::new());
    }
    let mut next = ROWS.start;
    let report = schedule::run(&setup(), devices, ROWS, read, |rows, data| {
        assert_eq!(rows.start, next, "rows in order");
        for (k, r) in rows.clone().enumerate() {
            let expected: f32 = (0..N_ANGLES * N_COLS).map(|i| (r * 31 + i) as f32).sum();
            assert!(data[k * OUT * OUT..(k + 1) * OUT * OUT].iter().all(|v| *v == expected), "row {r}");
        }
        next = rows.end;
        Ok(())
    })
    .expect("run on the selected devices");
    assert_eq!(next, ROWS.end, "every row written");
    assert_eq!(report.rows, ROWS.len());
    let mut names: Vec<String> = report.devices.iter().map(|d| d.name.clone()).collect();
    names.sort();
    Ok(names)
}

fn names(ordinals: &[usize]) -> Vec<String> {
    ordinals.iter().map(|o| format!("cuda:{o}")).collect()
}

#[test]
fn slurm_gres_selects_the_allocated_devices() {
    assert_eq!(run_with(&[]), Ok(names(&[0, 1, 2, 3])), "no restriction: every device");
    assert_eq!(run_with(&[("SLURM_JOB_GPUS", "1,3")]), Ok(names(&[1, 3])));
    assert_eq!(run_with(&[("SLURM_JOB_GPUS", "0,1,2,3"), ("SLURM_STEP_GPUS", "2")]), Ok(names(&[2])));
    // CUDA_VISIBLE_DEVICES=1,3: the driver lists two devices, renumbered 0 and 1, and both are used.
    assert_eq!(run_with(&[("CUDA_VISIBLE_DEVICES", "1,3"), ("SLURM_JOB_GPUS", "1,3")]), Ok(names(&[0, 1])));
    assert_eq!(run_with(&[("CUDA_VISIBLE_DEVICES", "NoDevFiles")]), Ok(vec![]));
    assert_eq!(
        run_with(&[("SLURM_JOB_GPUS", "2,7")]),
        Err(VisibilityError::Absent { var: "SLURM_JOB_GPUS", index: 7, count: NODE_GPUS })
    );
}
