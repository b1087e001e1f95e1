//! Multi-device scaling benchmark: the same synthetic scan reconstructed through [`crate::schedule::run`]
//! on 1, 2, ... N devices, with wall time, slices per second, speed-up over one device and per-device
//! rates. Used by `beamline bench gpu`; prints nothing itself.
//!
//! The input is a raw-count Shepp-Logan scan (dark and flat applied in reverse), generated once per
//! detector row and copied into every slab by the reader, so reading costs a memory copy and the figures
//! measure the scheduler and the devices, not a disk.

use std::convert::Infallible;
use std::ops::Range;
use std::time::Instant;

use acquisition::phantom::{shepp_logan_2d, sinogram_2d};
use serde::Serialize;

use crate::backend::{Backend, ReconSetup, Slab};
use crate::schedule::{self, DeviceStats, ScheduleError};

/// The scan shape of a benchmark.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ScanShape {
    /// Detector columns = slice side.
    pub size: usize,
    /// Projection angles over 180 degrees.
    pub angles: usize,
    /// Slices (detector rows) reconstructed per run.
    pub slices: usize,
}

/// One run on a given number of devices.
#[derive(Debug, Clone, Serialize)]
pub struct ScalingPoint {
    /// Devices used.
    pub devices: usize,
    /// Wall seconds for the whole run (reader, devices, in-order writer).
    pub seconds: f64,
    /// Slices per second over the run.
    pub slices_per_second: f64,
    /// `size^2 * angles * slices / seconds / 1e9`.
    pub gups: f64,
    /// Speed-up over the one-device run.
    pub speedup: f64,
    /// What each device did.
    pub per_device: Vec<DeviceStats>,
    /// Rows per slab the scheduler used.
    pub slab_rows: usize,
    /// Device time per stage (CUDA events), per device and summed; `None` on the CPU, which measures none.
    pub stages: Option<crate::gpu::StageReport>,
}

/// Why the benchmark stopped.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The devices could not be provided.
    #[error("opening devices: {0}")]
    Devices(String),
    /// The scheduled run failed.
    #[error(transparent)]
    Run(#[from] ScheduleError<Infallible, Infallible>),
}

/// The raw slab source of the benchmark: one row's counts and fields, copied for every row.
struct Scan {
    row: Vec<f32>,
    dark: Vec<f32>,
    flat: Vec<f32>,
    angles: usize,
}

impl Scan {
    fn new(shape: ScanShape, setup: &ReconSetup) -> Scan {
        let angles64: Vec<f64> = setup.angles_rad.iter().map(|a| *a as f64).collect();
        let sino = sinogram_2d(&shepp_logan_2d(), &angles64, shape.size, setup.center, shape.size as f64 / 2.0);
        let (dark, flat) = (100.0f32, 10_000.0f32);
        let mu = 4.0 / shape.size as f32;
        let row = sino.iter().map(|p| dark + (flat - dark) * (-mu * p).exp()).collect();
        Scan { row, dark: vec![dark; shape.size], flat: vec![flat; shape.size], angles: shape.angles }
    }

    fn read(&self, rows: Range<usize>) -> Slab {
        let n = rows.len();
        Slab {
            rows,
            projections: self.row.repeat(n),
            dark: self.dark.repeat(n),
            flat_before: self.flat.repeat(n),
            flat_after: self.flat.repeat(n),
            flat_weight: vec![0.0; self.angles],
        }
    }
}

/// Runs the scan on `1..=max_devices` devices; `open(k)` provides `k` fresh devices. A first run on one
/// device warms up (kernel compilation, allocation) and is not reported.
pub fn run_scaling<F>(shape: ScanShape, max_devices: usize, mut open: F) -> Result<Vec<ScalingPoint>, BenchError>
where
    F: FnMut(usize) -> Result<Vec<Box<dyn Backend>>, String>,
{
    let center = (shape.size as f64 - 1.0) / 2.0;
    let angles = (0..shape.angles).map(|i| (std::f64::consts::PI * i as f64 / shape.angles as f64) as f32).collect();
    let setup = ReconSetup::new(angles, shape.size, center, shape.size);
    let scan = Scan::new(shape, &setup);
    let run = |devices: Vec<Box<dyn Backend>>, rows: usize| -> Result<(f64, schedule::RunReport), BenchError> {
        let t0 = Instant::now();
        let report = schedule::run(
            &setup,
            devices,
            0..rows,
            |r| Ok::<_, Infallible>(scan.read(r)),
            |_, data| {
                std::hint::black_box(data);
                Ok::<_, Infallible>(())
            },
        )?;
        Ok((t0.elapsed().as_secs_f64(), report))
    };
    run(open(1).map_err(BenchError::Devices)?, shape.slices.min(4))?;
    let mut points: Vec<ScalingPoint> = Vec::new();
    for k in 1..=max_devices.max(1) {
        let (seconds, report) = run(open(k).map_err(BenchError::Devices)?, shape.slices)?;
        let base = points.first().map(|p| p.seconds).unwrap_or(seconds);
        points.push(ScalingPoint {
            devices: k,
            seconds,
            slices_per_second: shape.slices as f64 / seconds,
            gups: (shape.size * shape.size * shape.angles * shape.slices) as f64 / seconds / 1e9,
            speedup: base / seconds,
            stages: crate::gpu::StageReport::of(&report.devices),
            per_device: report.devices,
            slab_rows: report.slab_rows,
        });
    }
    Ok(points)
}

/// One device against the CPU backend on the same slab of the benchmark scan.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The scan shape (`slices` rows in one slab).
    pub shape: ScanShape,
    /// The compared device.
    pub device: String,
    /// `max |device - cpu|` over the slab.
    pub max_abs: f64,
    /// `max_abs / max |cpu|`.
    pub max_rel: f64,
    /// The bound `max_rel` is held to.
    pub bound_rel: f64,
    /// `max_rel <= bound_rel`.
    pub within: bool,
    /// Wall seconds of the CPU backend and of the device on the slab (the device's include its first-use
    /// preparation: constants, buffers, cuFFT plans).
    pub cpu_seconds: f64,
    /// See `cpu_seconds`.
    pub device_seconds: f64,
}

/// The CPU backend's reconstruction of the first `shape.slices` rows of the benchmark scan, computed once
/// and compared with any number of devices.
pub struct Reference {
    shape: ScanShape,
    setup: ReconSetup,
    slab: Slab,
    cpu: Vec<f32>,
    max: f64,
    cpu_seconds: f64,
}

impl Reference {
    /// Reconstructs the slab on the CPU backend (all cores).
    pub fn new(shape: ScanShape) -> Result<Reference, BenchError> {
        let center = (shape.size as f64 - 1.0) / 2.0;
        let angles =
            (0..shape.angles).map(|i| (std::f64::consts::PI * i as f64 / shape.angles as f64) as f32).collect();
        let setup = ReconSetup::new(angles, shape.size, center, shape.size);
        let slab = Scan::new(shape, &setup).read(0..shape.slices);
        let t0 = Instant::now();
        let cpu = crate::cpu::CpuBackend::default()
            .reconstruct(&setup, &slab)
            .map_err(|e| BenchError::Devices(format!("CPU backend: {e}")))?;
        let cpu_seconds = t0.elapsed().as_secs_f64();
        let max = cpu.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
        Ok(Reference { shape, setup, slab, cpu, max, cpu_seconds })
    }

    /// Reconstructs the same slab with `device` and compares it against `bound_rel` (relative to the CPU
    /// volume's largest magnitude).
    pub fn compare(&self, device: &mut dyn Backend, bound_rel: f64) -> Result<Comparison, BenchError> {
        let t0 = Instant::now();
        let got = device
            .reconstruct(&self.setup, &self.slab)
            .map_err(|e| BenchError::Devices(format!("{}: {e}", device.name())))?;
        let device_seconds = t0.elapsed().as_secs_f64();
        let max_abs = if got.len() == self.cpu.len() {
            got.iter().zip(&self.cpu).fold(0f64, |m, (g, c)| m.max((*g as f64 - *c as f64).abs()))
        } else {
            f64::INFINITY
        };
        let max_rel = if self.max > 0.0 { max_abs / self.max } else { max_abs };
        Ok(Comparison {
            shape: self.shape,
            device: device.name(),
            max_abs,
            max_rel,
            bound_rel,
            within: max_rel <= bound_rel,
            cpu_seconds: self.cpu_seconds,
            device_seconds,
        })
    }
}

/// The relative bound `beamline gpu compare` holds CUDA to (of the CPU volume's largest magnitude): for
/// f32 storage `1e-4`, the whole-chain harness bound (filter rounding accumulated over angles; FMA
/// contraction and cuFFT's own rounding are of the same order); for f16 storage `2e-3`, the half's
/// `2^-11` relative rounding of every filtered value carried through the backprojection (see
/// ARITHMETIC.md for the per-pixel bound the harness checks).
pub fn comparison_bound(dtype: crate::gpu::GpuDtype) -> f64 {
    match dtype {
        crate::gpu::GpuDtype::F32 => 1e-4,
        crate::gpu::GpuDtype::F16 => 2e-3,
    }
}

#[cfg(test)]
mod compare_tests {
    use super::*;

    /// The comparison runs (CPU against itself: zero difference) and fails a device that is off.
    #[test]
    fn compare_measures_the_difference() {
        let shape = ScanShape { size: 32, angles: 24, slices: 2 };
        let reference = Reference::new(shape).unwrap();
        let c = reference.compare(&mut crate::cpu::CpuBackend::default(), 1e-6).unwrap();
        assert!(c.within && c.max_abs == 0.0, "{c:?}");
        struct Off(crate::cpu::CpuBackend);
        impl Backend for Off {
            fn name(&self) -> String {
                "off".into()
            }
            fn reconstruct(&mut self, s: &ReconSetup, slab: &Slab) -> Result<Vec<f32>, crate::backend::BackendError> {
                Ok(self.0.reconstruct(s, slab)?.into_iter().map(|v| v * 1.001).collect())
            }
            fn preferred_rows(&self, s: &ReconSetup) -> usize {
                self.0.preferred_rows(s)
            }
        }
        let c = reference.compare(&mut Off(crate::cpu::CpuBackend::default()), 1e-4).unwrap();
        assert!(!c.within && c.max_rel > 5e-4, "{c:?}");
    }
}
