//! Gridrec: direct Fourier inversion by gridding, the Fourier-space alternative to filtered backprojection.
//!
//! # What is computed
//!
//! Filtered backprojection evaluates, for every pixel at `(x, y)` (geometry as in [`crate::geometry`]),
//! `f(x, y) = sum_a q_a(x cos t_a + y sin t_a + center)` where `q_a` is the filtered projection. Writing `q_a`
//! through its spectrum on the padded length `L` (the filter's own FFT, [`crate::filter`]),
//! `q_a(s) = (1/L) sum_j P_a[j] H[j] exp(2 pi i j s / L)`, turns the slice into a sum of plane waves at the
//! polar frequencies `(j/L)(cos t_a, sin t_a)` (the Fourier slice theorem): a non-uniform inverse Fourier
//! transform. Gridrec evaluates it with
//!
//! 1. one real FFT per projection (two projections per complex FFT), times the filter response `H` (the
//!    same ramp and windows and the same `pi / n_angles` weight as FBP, hence the same output scale) and the
//!    phase that puts the axis at `center`;
//! 2. spreading ("gridding") every polar sample onto a Cartesian frequency grid oversampled 2x (`M = 2N`)
//!    with a Kaiser-Bessel kernel of width [`KERNEL_WIDTH`] grid cells;
//! 3. one 2-D inverse FFT of that grid, of which the central `N x N` are kept;
//! 4. division by the kernel's Fourier transform (de-apodisation).
//!
//! The slice is real, so only the half plane `v >= 0` is gridded (a sample at `(u, v)` with `v < 0` is the
//! conjugate of one at `(-u, -v)`) and the image is twice the real part: half the spreads, and row FFTs only
//! for the half plane. (Packing two slices into one complex problem would halve the FFTs once more, but makes
//! a slice's rounding depend on its partner, and the backend contract is that a row's result depends only on
//! that row.)
//!
//! Differences from FBP are the interpolation of `q_a` (exact band-limited here, linear in FBP, so gridrec is
//! a little sharper) and what lies beyond the detector (FBP reads zeros there, gridrec the periodic
//! continuation of the filtered row): inside the disc the detector sees, both estimate the same image.
//!
//! # Cost and parallelism
//!
//! Per slice: `n_angles / 2` FFTs of `L`, `n_angles x (L/2 + 1)` spreads of `W^2` cells, `M/2 + W` row FFTs
//! and `N` column FFTs of `M`. Everything that depends only on the geometry (filter times phase per polar
//! sample, the kernel table, which samples touch which grid rows, de-apodisation, FFT plans) is computed once
//! in [`Gridrec::new`]. Slices run in parallel and each slice's stages run in parallel (rayon) over angle
//! pairs, grid row strips and column blocks; scratch buffers are per thread and reused, and every pixel's sums
//! run in a fixed order, so the result is bit-identical whatever the thread count.

use std::cell::RefCell;
use std::f64::consts::PI;
use std::fmt;
use std::sync::Arc;

use rayon::prelude::*;
use rustfft::num_complex::Complex32;
use rustfft::{Fft, FftPlanner};

use crate::filter::{frequency_response, padded_len, FilterKind};
use crate::geometry::ScanRange;

/// Width of the Kaiser-Bessel gridding kernel in grid cells (per dimension).
pub const KERNEL_WIDTH: usize = 6;
/// Oversampling of the Cartesian frequency grid: `M >= OVERSAMPLING x out_size`.
pub const OVERSAMPLING: usize = 2;
const W: usize = KERNEL_WIDTH;
/// Kernel table samples per grid cell (linear interpolation between them).
const TABLE_STEPS: usize = 1024;
/// Grid rows per parallel strip.
const STRIP_ROWS: usize = 32;
/// Output columns per column-FFT task.
const COLUMN_BLOCK: usize = 8;

/// Why a gridrec plan or reconstruction was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GridrecError {
    /// Sizes or geometry that cannot be reconstructed.
    #[error("gridrec: {0}")]
    Input(String),
}

/// The Kaiser-Bessel shape parameter for width `w` at oversampling `sigma` (Beatty, Nishimura and Pauly 2005).
fn kb_beta(w: f64, sigma: f64) -> f64 {
    PI * ((w / sigma).powi(2) * (sigma - 0.5).powi(2) - 0.8).sqrt()
}

/// Modified Bessel function of the first kind, order 0 (power series; converges for every argument used).
fn bessel_i0(x: f64) -> f64 {
    let q = x * x / 4.0;
    let (mut term, mut sum) = (1.0f64, 1.0f64);
    for k in 1..500 {
        term *= q / (k * k) as f64;
        sum += term;
        if term < 1e-17 * sum {
            break;
        }
    }
    sum
}

/// The gridding kernel at offset `x` (grid cells), normalised to 1 at the centre, zero beyond `|x| > w/2`.
pub fn kernel(x: f64, w: f64, beta: f64) -> f64 {
    let t = 2.0 * x / w;
    if t.abs() > 1.0 {
        0.0
    } else {
        bessel_i0(beta * (1.0 - t * t).sqrt()) / bessel_i0(beta)
    }
}

/// The continuous Fourier transform `int kernel(x) exp(-2 pi i x t) dx` of [`kernel`] at `t` (cycles per grid
/// cell): the de-apodisation divides by it.
pub fn kernel_transform(t: f64, w: f64, beta: f64) -> f64 {
    let a = beta * beta - (PI * w * t).powi(2);
    let shape = if a > 1e-12 {
        let r = a.sqrt();
        r.sinh() / r
    } else if a < -1e-12 {
        let r = (-a).sqrt();
        r.sin() / r
    } else {
        1.0
    };
    w * shape / bessel_i0(beta)
}

/// Transfer function `sinc^2(f)` of linear interpolation between detector samples (`f` in cycles per
/// sample): FBP interpolates its filtered rows linearly, which damps the highest frequencies; gridrec applies
/// the same factor so that both give images of the same resolution (without it gridrec keeps the full
/// Nyquist band, sharper but with the sampling's aliasing at full strength).
fn linear_interpolation_response(f: f64) -> f64 {
    if f == 0.0 {
        1.0
    } else {
        let x = PI * f;
        (x.sin() / x).powi(2)
    }
}

/// The smallest even `n >= min` whose only prime factors are 2, 3, 5 and 7 (fast FFT lengths).
fn fft_friendly(min: usize) -> usize {
    let mut n = min.max(2);
    loop {
        if n & 1 == 0 {
            let mut k = n;
            for p in [2, 3, 5, 7] {
                while k / p * p == k {
                    k /= p;
                }
            }
            if k == 1 {
                return n;
            }
        }
        n += 1;
    }
}

/// Grid rows `[r0, r1)` and, per angle, the radial samples `[lo, hi)` whose kernel may touch them.
#[derive(Debug, Clone)]
struct Strip {
    r0: usize,
    r1: usize,
    ranges: Vec<(u32, u32)>,
}

/// Everything that depends only on the geometry.
struct Plan {
    n_cols: usize,
    n_angles: usize,
    out_size: usize,
    /// Padded row length of the 1-D FFTs (the filter's).
    l: usize,
    /// Radial samples kept per angle: `j = 0 ..= l/2`.
    half: usize,
    /// Side of the oversampled Cartesian grid (even).
    m: usize,
    /// Stored grid rows: `v` index `k2 = r - (W/2 - 1)` for `r` in `0..rows`.
    rows: usize,
    /// Stored row width: `u` index `k1 = c - (m/2 + W/2)` for `c` in `0..width`.
    width: usize,
    /// Per angle: grid cells per radial index along `u` and `v` (folded into `v >= 0`), and whether folding
    /// conjugated the samples.
    step: Vec<(f64, f64)>,
    flip: Vec<bool>,
    /// Per `(angle, j)`: `c_j / L x H[j] x exp(2 pi i j shift_a / L)`, conjugated where folded.
    weights: Vec<Complex32>,
    /// Kernel samples at `x = q / TABLE_STEPS - W/2`, `q = 0 ..= W * TABLE_STEPS + 1`.
    table: Vec<f32>,
    strips: Vec<Strip>,
    /// Per output column: FFT index of its `u` position and `2 / kernel_transform`.
    col_index: Vec<usize>,
    col_scale: Vec<f32>,
    /// Per output row: FFT index of its `v` position and `1 / kernel_transform`.
    row_index: Vec<usize>,
    row_scale: Vec<f32>,
    /// FFT index of each stored grid row.
    grid_row_index: Vec<usize>,
    fft_l: Arc<dyn Fft<f32>>,
    fft_m: Arc<dyn Fft<f32>>,
    scratch_l: usize,
    scratch_m: usize,
}

/// A gridrec reconstructor for one geometry (angles, detector width, axis, slice size, filter): build it
/// once, then reconstruct any number of `-log` sinograms with it.
#[derive(Clone)]
pub struct Gridrec {
    plan: Arc<Plan>,
}

impl fmt::Debug for Gridrec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.plan;
        f.debug_struct("Gridrec")
            .field("n_cols", &p.n_cols)
            .field("n_angles", &p.n_angles)
            .field("out_size", &p.out_size)
            .field("padded", &p.l)
            .field("grid", &p.m)
            .finish()
    }
}

/// Per-slice buffers, reused from slice to slice.
struct SliceWork {
    /// Weighted spectra `[angle][j]`.
    spectra: Vec<Complex32>,
    /// Row-transformed grid, only the output columns: `[stored row][out col]`.
    rows_out: Vec<Complex32>,
    /// The slice, transposed: `[col][row]`.
    image_t: Vec<f32>,
}

impl SliceWork {
    fn new(p: &Plan) -> SliceWork {
        SliceWork {
            spectra: vec![Complex32::new(0.0, 0.0); p.n_angles * p.half],
            rows_out: vec![Complex32::new(0.0, 0.0); p.rows * p.out_size],
            image_t: vec![0.0; p.out_size * p.out_size],
        }
    }

    fn bytes(p: &Plan) -> usize {
        8 * (p.n_angles * p.half + p.rows * p.out_size) + 4 * p.out_size * p.out_size
    }
}

/// Two reusable per-thread buffers.
#[derive(Default)]
struct Scratch {
    a: Vec<Complex32>,
    b: Vec<Complex32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch buffers of at least `a` and `b` values (contents undefined). Falls back
/// to fresh buffers if the thread's are in use (never the case for the leaf tasks here, but never a panic).
fn with_scratch<R>(a: usize, b: usize, f: impl FnOnce(&mut [Complex32], &mut [Complex32]) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut s) => {
            let zero = Complex32::new(0.0, 0.0);
            if s.a.len() < a {
                s.a.resize(a, zero);
            }
            if s.b.len() < b {
                s.b.resize(b, zero);
            }
            let Scratch { a: sa, b: sb } = &mut *s;
            f(&mut sa[..a], &mut sb[..b])
        }
        Err(_) => {
            let zero = Complex32::new(0.0, 0.0);
            f(&mut vec![zero; a], &mut vec![zero; b])
        }
    })
}

impl Gridrec {
    /// Plans gridrec for sinograms of `angles_rad.len()` rows of `n_cols` columns, the axis at `center`
    /// (detector columns, [`crate::geometry`]), slices of `out_size x out_size`, filter `filter`.
    pub fn new(
        filter: FilterKind,
        n_cols: usize,
        angles_rad: &[f32],
        center: f64,
        out_size: usize,
    ) -> Result<Gridrec, GridrecError> {
        let bad = |m: String| Err(GridrecError::Input(m));
        if n_cols < 2 {
            return bad(format!("detector has {n_cols} columns; need at least 2"));
        }
        if angles_rad.is_empty() || angles_rad.iter().any(|a| !a.is_finite()) {
            return bad("need at least one finite projection angle".into());
        }
        if out_size == 0 || out_size > 65536 {
            return bad(format!("output size {out_size} is out of range 1..=65536"));
        }
        if !center.is_finite() {
            return bad(format!("rotation axis {center} is not finite"));
        }
        let n_angles = angles_rad.len();
        let l = padded_len(n_cols);
        let half = l / 2 + 1;
        let m = fft_friendly(OVERSAMPLING * out_size);
        let rows = m / 2 + W;
        let width = m + W + 1;
        let weight = ScanRange::of(angles_rad).weight(n_angles);
        let response = frequency_response(filter, l, weight);
        let n = out_size;
        let n2 = n / 2;
        // Output pixel (row, col) is at x = col - n2 + delta, y = n2 - row - delta.
        let delta = n2 as f64 - (n as f64 - 1.0) / 2.0;

        let mut step = Vec::with_capacity(n_angles);
        let mut flip = Vec::with_capacity(n_angles);
        let mut weights = vec![Complex32::new(0.0, 0.0); n_angles * half];
        for (a, &theta) in angles_rad.iter().enumerate() {
            let (s, c) = (theta as f64).sin_cos();
            let f = s < 0.0;
            let (cu, cv) = if f { (-c, -s) } else { (c, s) };
            step.push((m as f64 * cu / l as f64, m as f64 * cv / l as f64));
            flip.push(f);
            // Detector position of the integer-grid origin at this angle.
            let shift = center + delta * (c - s);
            let (ds, dc) = (2.0 * PI * shift / l as f64).sin_cos();
            let rot = (dc, ds);
            let mut z = (1.0f64, 0.0f64);
            for j in 0..half {
                // Re-anchor every 64 steps so the recurrence cannot drift.
                if j % 64 == 0 {
                    let (zs, zc) = (2.0 * PI * ((j as f64 * shift / l as f64).fract())).sin_cos();
                    z = (zc, zs);
                }
                let cj = if j == 0 || j == l / 2 { 0.5 } else { 1.0 };
                let h = cj * response[j] as f64 * linear_interpolation_response(j as f64 / l as f64) / l as f64;
                let im = if f { -z.1 } else { z.1 };
                weights[a * half + j] = Complex32::new((h * z.0) as f32, (h * im) as f32);
                z = (z.0 * rot.0 - z.1 * rot.1, z.0 * rot.1 + z.1 * rot.0);
            }
        }

        let beta = kb_beta(W as f64, OVERSAMPLING as f64);
        let table: Vec<f32> = (0..=W * TABLE_STEPS + 1)
            .map(|q| kernel(q as f64 / TABLE_STEPS as f64 - W as f64 / 2.0, W as f64, beta) as f32)
            .collect();

        let mut strips = Vec::new();
        let mut r0 = 0;
        while r0 < rows {
            let r1 = (r0 + STRIP_ROWS).min(rows);
            let ranges = step
                .iter()
                .map(|&(_, cv)| {
                    // A sample at gy = j cv touches rows floor(gy) .. floor(gy) + W - 1.
                    let lo_gy = r0 as f64 - (W as f64 - 1.0);
                    let hi_gy = r1 as f64;
                    if cv * (half as f64) < 1e-9 {
                        if lo_gy <= 0.0 && hi_gy > 0.0 {
                            (0, half as u32)
                        } else {
                            (0, 0)
                        }
                    } else {
                        let lo = ((lo_gy / cv).floor() - 1.0).clamp(0.0, half as f64) as u32;
                        let hi = ((hi_gy / cv).ceil() + 1.0).clamp(0.0, half as f64) as u32;
                        (lo, hi.max(lo))
                    }
                })
                .collect();
            strips.push(Strip { r0, r1, ranges });
            r0 = r1;
        }

        let wrap = |k: i64| k.rem_euclid(m as i64) as usize;
        let deapod = |k: i64| kernel_transform(k as f64 / m as f64, W as f64, beta);
        let col_index = (0..n).map(|c| wrap(c as i64 - n2 as i64)).collect();
        let col_scale = (0..n).map(|c| (2.0 / deapod(c as i64 - n2 as i64)) as f32).collect();
        let row_index = (0..n).map(|r| wrap(n2 as i64 - r as i64)).collect();
        let row_scale = (0..n).map(|r| (1.0 / deapod(n2 as i64 - r as i64)) as f32).collect();
        let grid_row_index = (0..rows).map(|r| wrap(r as i64 - (W as i64 / 2 - 1))).collect();

        let mut planner = FftPlanner::<f32>::new();
        let fft_l = planner.plan_fft_forward(l);
        let fft_m = planner.plan_fft_inverse(m);
        let (scratch_l, scratch_m) = (fft_l.get_inplace_scratch_len(), fft_m.get_inplace_scratch_len());
        let plan = Plan {
            n_cols,
            n_angles,
            out_size,
            l,
            half,
            m,
            rows,
            width,
            step,
            flip,
            weights,
            table,
            strips,
            col_index,
            col_scale,
            row_index,
            row_scale,
            grid_row_index,
            fft_l,
            fft_m,
            scratch_l,
            scratch_m,
        };
        Ok(Gridrec { plan: Arc::new(plan) })
    }

    /// Output slice side.
    pub fn out_size(&self) -> usize {
        self.plan.out_size
    }

    /// Side of the oversampled Fourier grid.
    pub fn grid_size(&self) -> usize {
        self.plan.m
    }

    /// Reconstructs one `-log` sinogram `[angle][col]` (unfiltered: the filter is applied here) into an
    /// `out_size^2` slice `[row][col]`.
    pub fn reconstruct(&self, sino: &[f32]) -> Result<Vec<f32>, GridrecError> {
        let n = self.plan.out_size;
        let mut out = vec![0f32; n * n];
        self.reconstruct_into(sino, &mut out)?;
        Ok(out)
    }

    /// Reconstructs every sinogram of `sinos` (`[slice][angle][col]`) into `out` (`[slice][row][col]`),
    /// parallel over slices and inside each slice.
    pub fn reconstruct_into(&self, sinos: &[f32], out: &mut [f32]) -> Result<(), GridrecError> {
        let p = &*self.plan;
        let per_sino = p.n_angles * p.n_cols;
        let per_slice = p.out_size * p.out_size;
        if sinos.len() / per_sino * per_sino != sinos.len() {
            return Err(GridrecError::Input(format!(
                "{} sinogram values are not a whole number of {} x {} sinograms",
                sinos.len(),
                p.n_angles,
                p.n_cols
            )));
        }
        let slices = sinos.len() / per_sino;
        if out.len() != slices * per_slice {
            return Err(GridrecError::Input(format!(
                "output has {} values, expected {} slices of {}^2",
                out.len(),
                slices,
                p.out_size
            )));
        }
        if slices == 0 {
            return Ok(());
        }
        // Slices in flight: one per thread, within about 2 GiB of per-slice buffers.
        let by_memory = ((2usize << 30) / SliceWork::bytes(p).max(1)).max(1);
        let groups = slices.min(rayon::current_num_threads()).min(by_memory).max(1);
        let per_group = slices.div_ceil(groups);
        out.par_chunks_mut(per_group * per_slice).zip(sinos.par_chunks(per_group * per_sino)).for_each(|(o, s)| {
            let mut work = SliceWork::new(p);
            for (slice, sino) in o.chunks_mut(per_slice).zip(s.chunks(per_sino)) {
                self.slice(sino, slice, &mut work);
            }
        });
        Ok(())
    }

    /// One slice, every stage parallel inside.
    fn slice(&self, sino: &[f32], out: &mut [f32], work: &mut SliceWork) {
        let p = &*self.plan;
        let _span = tracing::trace_span!("gridrec.slice", n = p.out_size).entered();
        self.spectra(sino, &mut work.spectra);
        self.grid_and_transform_rows(&work.spectra, &mut work.rows_out);
        self.transform_columns(&work.rows_out, &mut work.image_t);
        // Transpose [col][row] into [row][col].
        let n = p.out_size;
        let image_t = &work.image_t;
        out.par_chunks_mut(16 * n).enumerate().for_each(|(bi, block)| {
            let r0 = bi * 16;
            let nr = block.len() / n;
            for c in 0..n {
                let src = &image_t[c * n + r0..c * n + r0 + nr];
                for (r, v) in src.iter().enumerate() {
                    block[r * n + c] = *v;
                }
            }
        });
    }

    /// Stage 1: weighted spectra of every projection, two projections per complex FFT.
    fn spectra(&self, sino: &[f32], spectra: &mut [Complex32]) {
        let p = &*self.plan;
        let (l, half, nc) = (p.l, p.half, p.n_cols);
        spectra.par_chunks_mut(2 * half).enumerate().for_each(|(pi, spec)| {
            let a0 = 2 * pi;
            let two = spec.len() == 2 * half;
            with_scratch(l, p.scratch_l, |buf, scr| {
                buf.fill(Complex32::new(0.0, 0.0));
                for (b, v) in buf.iter_mut().zip(&sino[a0 * nc..(a0 + 1) * nc]) {
                    b.re = *v;
                }
                if two {
                    for (b, v) in buf.iter_mut().zip(&sino[(a0 + 1) * nc..(a0 + 2) * nc]) {
                        b.im = *v;
                    }
                }
                p.fft_l.process_with_scratch(buf, scr);
                let wa = &p.weights[a0 * half..(a0 + 1) * half];
                let (fa, fb) = (p.flip[a0], two && p.flip[a0 + 1]);
                let (sa, sb) = spec.split_at_mut(half);
                for j in 0..half {
                    let z = buf[j];
                    let zm = buf[(l - j) % l].conj();
                    let pa = (z + zm) * 0.5;
                    sa[j] = if fa { pa.conj() } else { pa } * wa[j];
                    if two {
                        let pb = (z - zm) * Complex32::new(0.0, -0.5);
                        let wb = p.weights[(a0 + 1) * half + j];
                        sb[j] = if fb { pb.conj() } else { pb } * wb;
                    }
                }
            });
        });
    }

    /// Stage 2: spread the samples onto the grid strip by strip, fold the `u` wrap-around and inverse-FFT each
    /// row, keeping the output columns.
    fn grid_and_transform_rows(&self, spectra: &[Complex32], rows_out: &mut [Complex32]) {
        let p = &*self.plan;
        let (m, n, width) = (p.m, p.out_size, p.width);
        let off = m / 2 + W / 2;
        rows_out.par_chunks_mut(STRIP_ROWS * n).zip(p.strips.par_iter()).for_each(|(dst, strip)| {
            let sr = strip.r1 - strip.r0;
            with_scratch(sr * width, m + p.scratch_m, |grid, tmp| {
                grid.fill(Complex32::new(0.0, 0.0));
                grid_strip(p, spectra, strip, grid);
                let (buf, scr) = tmp.split_at_mut(m);
                for (r, row) in grid.chunks(width).enumerate() {
                    buf.fill(Complex32::new(0.0, 0.0));
                    // Stored column c is u index c - off, at FFT position (c - off) mod m.
                    let mut k = (m - off % m) % m;
                    for v in row {
                        buf[k] += *v;
                        k += 1;
                        if k == m {
                            k = 0;
                        }
                    }
                    p.fft_m.process_with_scratch(buf, scr);
                    for (d, &i) in dst[r * n..(r + 1) * n].iter_mut().zip(&p.col_index) {
                        *d = buf[i];
                    }
                }
            });
        });
    }

    /// Stage 3: inverse-FFT each output column along `v`, keep the output rows, take twice the real part and
    /// de-apodise, into the transposed image.
    fn transform_columns(&self, rows_out: &[Complex32], image_t: &mut [f32]) {
        let p = &*self.plan;
        let (m, n) = (p.m, p.out_size);
        image_t.par_chunks_mut(COLUMN_BLOCK * n).enumerate().for_each(|(bi, dst)| {
            let c0 = bi * COLUMN_BLOCK;
            let nb = dst.len() / n;
            with_scratch(nb * m, p.scratch_m, |buf, scr| {
                buf.fill(Complex32::new(0.0, 0.0));
                for (r, &k) in p.grid_row_index.iter().enumerate() {
                    let src = &rows_out[r * n + c0..r * n + c0 + nb];
                    for (b, v) in src.iter().enumerate() {
                        buf[b * m + k] = *v;
                    }
                }
                p.fft_m.process_with_scratch(buf, scr);
                for b in 0..nb {
                    let cs = p.col_scale[c0 + b];
                    let col = &buf[b * m..(b + 1) * m];
                    for ((d, &i), &rs) in dst[b * n..(b + 1) * n].iter_mut().zip(&p.row_index).zip(&p.row_scale) {
                        *d = col[i].re * cs * rs;
                    }
                }
            });
        });
    }
}

/// The `W` kernel weights for a sample at fractional offset `t` in `[0, 1)` from its cell: weight `i` is for
/// the cell `i - (W/2 - 1)` cells from `floor`.
#[inline(always)]
fn kernel_weights(table: &[f32], t: f32) -> [f32; W] {
    let pos = (1.0 - t) * TABLE_STEPS as f32;
    let i0 = (pos as usize).min(TABLE_STEPS);
    let fr = pos - i0 as f32;
    std::array::from_fn(|i| {
        let q = i0 + i * TABLE_STEPS;
        let (a, b) = (table[q], table[q + 1]);
        a + fr * (b - a)
    })
}

/// Spreads every sample whose kernel touches the strip's rows into `grid` (`[strip row][width]`).
fn grid_strip(p: &Plan, spectra: &[Complex32], strip: &Strip, grid: &mut [Complex32]) {
    let (r0, r1) = (strip.r0 as i64, strip.r1 as i64);
    let half_m = (p.m / 2) as f64;
    let half = p.half;
    let width = p.width;
    for (a, &(lo, hi)) in strip.ranges.iter().enumerate() {
        let (cu, cv) = p.step[a];
        let spec = &spectra[a * half..(a + 1) * half];
        let (lo, hi) = (lo as usize, (hi as usize).min(spec.len()));
        for (j, &v) in spec.iter().enumerate().take(hi).skip(lo) {
            let gy = (j as f64 * cv).clamp(0.0, half_m);
            let fy = gy.floor();
            let iy0 = fy as i64;
            let first = (r0 - iy0).max(0);
            let last = (r1 - iy0).min(W as i64);
            if first >= last {
                continue;
            }
            let gx = (j as f64 * cu).clamp(-half_m, half_m);
            let fx = gx.floor();
            let wx = kernel_weights(&p.table, (gx - fx) as f32);
            let wy = kernel_weights(&p.table, (gy - fy) as f32);
            // First touched stored column: u index floor(gx) - (W/2 - 1), stored at + m/2 + W/2.
            let c0 = (fx as i64 + half_m as i64 + 1) as usize;
            for iy in first..last {
                let r = (iy0 + iy - r0) as usize;
                let wy = wy[iy as usize];
                let (vr, vi) = (v.re * wy, v.im * wy);
                let cells = &mut grid[r * width + c0..r * width + c0 + W];
                for (cell, &w) in cells.iter_mut().zip(&wx) {
                    cell.re += vr * w;
                    cell.im += vi * w;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The closed-form transform used for de-apodisation matches numerical quadrature of the kernel.
    #[test]
    fn kernel_transform_matches_quadrature() {
        let w = W as f64;
        let beta = kb_beta(w, OVERSAMPLING as f64);
        for t in [0.0, 0.05, 0.125, 0.25, 0.4, 0.75, 1.0] {
            let steps = 20000;
            let h = w / steps as f64;
            // Simpson's rule over [-w/2, w/2].
            let mut sum = 0.0;
            for i in 0..=steps {
                let x = -w / 2.0 + i as f64 * h;
                let c = if i == 0 || i == steps {
                    1.0
                } else if i % 2 == 1 {
                    4.0
                } else {
                    2.0
                };
                sum += c * kernel(x, w, beta) * (2.0 * PI * x * t).cos();
            }
            let quad = sum * h / 3.0;
            let closed = kernel_transform(t, w, beta);
            assert!((quad - closed).abs() < 1e-6 * kernel_transform(0.0, w, beta), "t {t}: {quad} vs {closed}");
        }
    }

    /// Table interpolation reproduces the kernel, and the weights for one sample sit where they should.
    #[test]
    fn kernel_weights_follow_the_kernel() {
        let w = W as f64;
        let beta = kb_beta(w, OVERSAMPLING as f64);
        let table: Vec<f32> = (0..=W * TABLE_STEPS + 1)
            .map(|q| kernel(q as f64 / TABLE_STEPS as f64 - w / 2.0, w, beta) as f32)
            .collect();
        for t in [0.0f32, 0.1, 0.37, 0.5, 0.999] {
            let got = kernel_weights(&table, t);
            for (i, g) in got.iter().enumerate() {
                let x = i as f64 - (W as f64 / 2.0 - 1.0) - t as f64;
                let want = kernel(x, w, beta);
                assert!((*g as f64 - want).abs() < 2e-5, "t {t} i {i}: {g} vs {want}");
            }
        }
    }

    #[test]
    fn fft_friendly_sizes() {
        assert_eq!(fft_friendly(1024), 1024);
        assert_eq!(fft_friendly(1000), 1000);
        assert_eq!(fft_friendly(1022), 1024);
        assert_eq!(fft_friendly(3), 4);
        assert_eq!(fft_friendly(2 * 1001), 2016);
    }

    /// A point object's sinogram reconstructs to a peak at the point's pixel, with the same axis convention
    /// as FBP, for an off-centre axis and an odd slice size.
    #[test]
    fn point_lands_on_its_pixel() {
        for (n, center) in [(64usize, 31.5f64), (65, 33.25)] {
            let n_angles = 90;
            let angles: Vec<f32> = (0..n_angles).map(|i| (PI * i as f64 / n_angles as f64) as f32).collect();
            let (px, py) = (7.0f64, -5.0f64);
            let mut sino = vec![0f32; n_angles * n];
            for (a, &t) in angles.iter().enumerate() {
                let s = crate::geometry::detector_position(px, py, t as f64, center);
                let i = s.floor() as usize;
                let f = (s - s.floor()) as f32;
                sino[a * n + i] += 1.0 - f;
                sino[a * n + i + 1] += f;
            }
            let g = Gridrec::new(FilterKind::Ramp, n, &angles, center, n).unwrap();
            let img = g.reconstruct(&sino).unwrap();
            let (best, _) = img.iter().enumerate().fold((0, f32::MIN), |b, (i, &v)| if v > b.1 { (i, v) } else { b });
            let (row, col) = (best / n, best % n);
            let (x, y) = crate::geometry::pixel_centre(n, row, col);
            assert!((x - px).abs() < 0.51 && (y - py).abs() < 0.51, "n {n}: peak at ({x}, {y})");
        }
    }
}
