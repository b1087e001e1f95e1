//! Benchmarks of the CPU backend on the exact Shepp-Logan sinogram: seconds per slice and G updates/s
//! (`out_size^2 x angles / seconds`) for FBP, seconds per slice for gridrec, and each method's RMSE against
//! the phantom, for `beamline bench recon`.

use std::time::Instant;

use acquisition::phantom::{shepp_logan_2d, sinogram_2d};
use serde::Serialize;

use crate::backend::ReconSetup;
use crate::cpu::SinogramPipeline;

/// One benchmark case and what it measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchCase {
    /// Slice side (pixels) = detector columns.
    pub size: usize,
    /// Projection angles over 180 degrees.
    pub angles: usize,
    /// Slices reconstructed per timed repetition.
    pub slices: usize,
    /// rayon threads used.
    pub threads: usize,
    /// Best seconds per slice over the repetitions (filter + backprojection).
    pub seconds_per_slice: f64,
    /// Best seconds per slice for the backprojection alone.
    pub backproject_seconds_per_slice: f64,
    /// `size^2 * angles / seconds_per_slice / 1e9`.
    pub gups: f64,
    /// The same for the backprojection alone.
    pub backproject_gups: f64,
}

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
#[error("benchmark: {0}")]
pub struct BenchError(String);

/// Times the reconstruction of `slices` slices of `size x size` from `angles` angles, best of `repeats`, on
/// `threads` rayon threads (`None`: the global pool, all cores).
pub fn run_case(
    size: usize,
    angles: usize,
    slices: usize,
    repeats: usize,
    threads: Option<usize>,
) -> Result<BenchCase, BenchError> {
    match threads {
        None => Ok(run_here(size, angles, slices, repeats)),
        Some(n) => {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(n).build().map_err(|e| BenchError(e.to_string()))?;
            Ok(pool.install(|| run_here(size, angles, slices, repeats)))
        }
    }
}

fn run_here(size: usize, angles: usize, slices: usize, repeats: usize) -> BenchCase {
    let angles_rad: Vec<f64> = (0..angles).map(|i| std::f64::consts::PI * i as f64 / angles as f64).collect();
    let center = (size as f64 - 1.0) / 2.0;
    let sino = sinogram_2d(&shepp_logan_2d(), &angles_rad, size, center, size as f64 / 2.0);
    let setup = ReconSetup::new(angles_rad.iter().map(|&a| a as f32).collect(), size, center, size);
    let pipe = match SinogramPipeline::new(&setup) {
        Ok(p) => p,
        Err(e) => unreachable!("benchmark setup is valid by construction: {e}"),
    };
    let sinos: Vec<Vec<f32>> = (0..slices).map(|_| sino.clone()).collect();
    let counts = crate::cpu::PreprocessCounts::default();
    let (mut best, mut best_bp) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..repeats.max(1) {
        let t0 = Instant::now();
        let preps: Vec<_> = {
            use rayon::prelude::*;
            sinos
                .par_iter()
                .map(|s| {
                    let mut s = s.clone();
                    pipe.minus_log_to_filtered(&mut s, &counts);
                    pipe.prepare(&s)
                })
                .collect()
        };
        let t1 = Instant::now();
        let out = crate::cpu::backproject_all(&preps, size);
        let t2 = Instant::now();
        std::hint::black_box(out);
        best = best.min((t2 - t0).as_secs_f64() / slices as f64);
        best_bp = best_bp.min((t2 - t1).as_secs_f64() / slices as f64);
    }
    let updates = (size * size * angles) as f64;
    BenchCase {
        size,
        angles,
        slices,
        threads: rayon::current_num_threads(),
        seconds_per_slice: best,
        backproject_seconds_per_slice: best_bp,
        gups: updates / best / 1e9,
        backproject_gups: updates / best_bp / 1e9,
    }
}

/// One gridrec benchmark case: best seconds per slice (1-D FFTs and filter, gridding, 2-D FFT).
#[derive(Debug, Clone, Serialize)]
pub struct GridrecCase {
    /// Slice side (pixels) = detector columns.
    pub size: usize,
    /// Projection angles over 180 degrees.
    pub angles: usize,
    /// Slices reconstructed per timed repetition.
    pub slices: usize,
    /// rayon threads used.
    pub threads: usize,
    /// Side of the oversampled Fourier grid.
    pub grid: usize,
    /// Best seconds per slice over the repetitions.
    pub seconds_per_slice: f64,
    /// Seconds to plan (once per geometry, shared by all slices; not in `seconds_per_slice`).
    pub plan_seconds: f64,
}

/// The exact Shepp-Logan sinogram of the benchmarks (`angles` over 180 degrees, axis in the middle).
fn phantom_case(size: usize, angles: usize) -> (Vec<f32>, Vec<f32>, f64) {
    let angles_rad: Vec<f64> = (0..angles).map(|i| std::f64::consts::PI * i as f64 / angles as f64).collect();
    let center = (size as f64 - 1.0) / 2.0;
    let sino = sinogram_2d(&shepp_logan_2d(), &angles_rad, size, center, size as f64 / 2.0);
    (sino, angles_rad.iter().map(|&a| a as f32).collect(), center)
}

/// Times gridrec on `slices` slices of `size x size` from `angles` angles (ramp filter), best of `repeats`,
/// on the global rayon pool, the same sinogram and the same work (from the `-log` sinogram) as [`run_case`].
pub fn run_gridrec_case(size: usize, angles: usize, slices: usize, repeats: usize) -> Result<GridrecCase, BenchError> {
    let (sino, angles_rad, center) = phantom_case(size, angles);
    let t0 = Instant::now();
    let g = crate::gridrec::Gridrec::new(crate::filter::FilterKind::Ramp, size, &angles_rad, center, size)
        .map_err(|e| BenchError(e.to_string()))?;
    let plan_seconds = t0.elapsed().as_secs_f64();
    let sinos: Vec<f32> = (0..slices).flat_map(|_| sino.iter().copied()).collect();
    let mut out = vec![0f32; slices * size * size];
    let mut best = f64::INFINITY;
    for _ in 0..repeats.max(1) {
        let t0 = Instant::now();
        let input = sinos.clone();
        g.reconstruct_into(&input, &mut out).map_err(|e| BenchError(e.to_string()))?;
        best = best.min(t0.elapsed().as_secs_f64() / slices as f64);
        std::hint::black_box(&out);
    }
    Ok(GridrecCase {
        size,
        angles,
        slices,
        threads: rayon::current_num_threads(),
        grid: g.grid_size(),
        seconds_per_slice: best,
        plan_seconds,
    })
}

/// RMSE of `method` (ramp filter) against the pixel-area-averaged Shepp-Logan phantom over the disc of radius
/// `250 x size / 512` (the accuracy test's measure), from the exact sinogram of `angles` angles.
pub fn phantom_rmse(method: crate::method::Method, size: usize, angles: usize) -> Result<f64, BenchError> {
    let (sino, angles_rad, center) = phantom_case(size, angles);
    let mut setup = ReconSetup::new(angles_rad, size, center, size);
    setup.method = method;
    let pipe = SinogramPipeline::new(&setup).map_err(|e| BenchError(e.to_string()))?;
    let slice = pipe.reconstruct_minus_log(&sino);
    let truth = acquisition::phantom::rasterize_2d_area(&shepp_logan_2d(), size, 8);
    let radius = 250.0 * size as f64 / 512.0;
    Ok(crate::accuracy::rmse_disc(&slice, &truth, size, radius))
}

/// The textbook loop, for comparison in the same run: for every pixel, for every angle, compute the
/// detector position from `cos`/`sin`, test the bounds and interpolate (one thread, no blocking, no SIMD).
pub fn textbook_backproject(
    filtered: &[f32],
    n_cols: usize,
    angles_rad: &[f32],
    center: f64,
    out_size: usize,
) -> Vec<f32> {
    let h = (out_size as f64 - 1.0) / 2.0;
    let trig: Vec<(f64, f64)> = angles_rad.iter().map(|&t| ((t as f64).cos(), (t as f64).sin())).collect();
    let mut out = vec![0f32; out_size * out_size];
    for r in 0..out_size {
        for c in 0..out_size {
            let (x, y) = (c as f64 - h, h - r as f64);
            let mut acc = 0f32;
            for (a, &(cs, sn)) in trig.iter().enumerate() {
                let s = x * cs + y * sn + center;
                // The detector reads zero beyond its edges (as in the optimised loop's padding).
                let q = &filtered[a * n_cols..(a + 1) * n_cols];
                let at = |i: i64| if i >= 0 && (i as usize) < n_cols { q[i as usize] } else { 0.0 };
                let i = s.floor() as i64;
                let f = (s - i as f64) as f32;
                let (lo, hi) = (at(i), at(i + 1));
                acc += lo + f * (hi - lo);
            }
            out[r * out_size + c] = acc;
        }
    }
    out
}

/// Times [`textbook_backproject`] on one `size x size` slice from `angles` angles: `(seconds, G updates/s,
/// largest absolute difference from the optimised backprojector)`.
pub fn textbook_case(size: usize, angles: usize) -> (f64, f64, f32) {
    let angles_rad: Vec<f32> = (0..angles).map(|i| (std::f64::consts::PI * i as f64 / angles as f64) as f32).collect();
    let center = (size as f64 - 1.0) / 2.0;
    let a64: Vec<f64> = angles_rad.iter().map(|&a| a as f64).collect();
    let mut sino = sinogram_2d(&shepp_logan_2d(), &a64, size, center, size as f64 / 2.0);
    crate::filter::filter_sinogram(&mut sino, size, crate::filter::FilterKind::Ramp);
    let t0 = Instant::now();
    let slow = textbook_backproject(&sino, size, &angles_rad, center, size);
    let secs = t0.elapsed().as_secs_f64();
    let fast = crate::backproject::backproject_sinogram(&sino, size, &angles_rad, center, size);
    let diff = slow.iter().zip(&fast).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    (secs, (size * size * angles) as f64 / secs / 1e9, diff)
}

// --- issue 15 §3: SIRT and CGLS ---
/// One iterative benchmark case: SIRT or CGLS (or FBP, for the comparison in the same run) on the exact
/// Shepp-Logan sinogram of few angles.
#[derive(Debug, Clone, Serialize)]
pub struct IterativeCase {
    /// `fbp`, `sirt` or `cgls`.
    pub method: &'static str,
    /// Slice side (pixels) = detector columns.
    pub size: usize,
    /// Projection angles over 180 degrees.
    pub angles: usize,
    /// Iterations (0 for FBP).
    pub iterations: usize,
    /// rayon threads used.
    pub threads: usize,
    /// Best seconds per slice over the repetitions.
    pub seconds_per_slice: f64,
    /// RMSE against the pixel-area-averaged phantom over the disc of radius `250 x size / 512`.
    pub rmse: f64,
    /// Residual norm `||b - A x||` at the start and after the last iteration (SIRT/CGLS).
    pub residual_first_last: Option<(f64, f64)>,
}

/// Times `method` (`Fbp`, `Sirt` or `Cgls`; SIRT non-negative) on one `size x size` slice from `angles` exact
/// projections over 180 degrees, best of `repeats`, and scores it against the phantom.
pub fn run_iterative_case(
    method: crate::method::Method,
    size: usize,
    angles: usize,
    iterations: usize,
    repeats: usize,
) -> Result<IterativeCase, BenchError> {
    let (sino, angles_rad, center) = phantom_case(size, angles);
    let mut setup = ReconSetup::new(angles_rad, size, center, size);
    setup.method = method;
    setup.iterative = crate::iterative::IterativeOptions {
        iterations,
        nonnegative: method == crate::method::Method::Sirt,
        init: crate::iterative::Init::Zero,
    };
    let pipe = SinogramPipeline::new(&setup).map_err(|e| BenchError(e.to_string()))?;
    let (mut best, mut slice, mut residual) = (f64::INFINITY, Vec::new(), None);
    for _ in 0..repeats.max(1) {
        let log = crate::iterative::IterationLog::default();
        let t0 = Instant::now();
        slice = match pipe.reconstruct_iterative(&sino, 0, &log) {
            Some(r) => r.map_err(|e| BenchError(e.to_string()))?,
            None => pipe.reconstruct_minus_log(&sino),
        };
        best = best.min(t0.elapsed().as_secs_f64());
        residual = log.residuals().first().and_then(|(_, h)| Some((*h.first()?, *h.last()?)));
    }
    let truth = acquisition::phantom::rasterize_2d_area(&shepp_logan_2d(), size, 8);
    let radius = 250.0 * size as f64 / 512.0;
    Ok(IterativeCase {
        method: method.name(),
        size,
        angles,
        iterations: if method.iterative().is_some() { iterations } else { 0 },
        threads: rayon::current_num_threads(),
        seconds_per_slice: best,
        rmse: crate::accuracy::rmse_disc(&slice, &truth, size, radius),
        residual_first_last: residual,
    })
}
