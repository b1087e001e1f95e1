//! Iterative reconstruction on the CPU: SIRT and CGLS with a matched projector pair.
//!
//! [`Projector`] holds the pair. Its backprojection `A^T` is the one of [`crate::backproject`]: output pixel at
//! `(x, y)` ([`crate::geometry`]) takes, per angle, the linearly interpolated sinogram value at
//! `s = x cos + y sin + center`. Its forward projection `A` is the exact adjoint of that: the pixel's value is
//! split between detector columns `floor(s)` and `floor(s) + 1` with the same two weights. Pixels outside the
//! circular mask (the disc inscribed in the slice) are not unknowns: `A` ignores them and `A^T` leaves them
//! zero. With sinogram values in pixel lengths (as FBP takes them) the solutions are on FBP's scale.
//!
//! * SIRT: `x <- x + C A^T R (b - A x)` with `R`, `C` the inverse row and column sums of `A`, optionally
//!   clamped to `x >= 0` after each step.
//! * CGLS: conjugate gradients on the normal equations; the residual `||b - A x||` never increases.
//!
//! Both start from zero or from the FBP slice (`--init fbp`), log the residual norm per iteration (tracing,
//! `recon.iterate` spans) and stop after the iterations asked for.

use rayon::prelude::*;
use serde::Serialize;

/// How an iterative method starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Init {
    /// From a zero slice.
    #[default]
    Zero,
    /// From the filtered backprojection of the same sinogram.
    Fbp,
}

/// Settings of SIRT and CGLS (`--iterations`, `--nonneg`, `--init`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IterativeOptions {
    /// Iterations to run.
    pub iterations: usize,
    /// SIRT only: clamp to non-negative values after every step.
    pub nonnegative: bool,
    /// Starting slice.
    pub init: Init,
}

impl Default for IterativeOptions {
    /// 100 iterations (SIRT; CGLS converges in fewer, see `--help`), no clamp, from zero.
    fn default() -> Self {
        IterativeOptions { iterations: 100, nonnegative: false, init: Init::Zero }
    }
}

/// Why an iterative reconstruction was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IterativeError {
    /// The sinogram or slice does not have the size of the projector.
    #[error("{what} has {len} values, the projector expects {want}")]
    Size {
        /// `sinogram`, `initial slice`.
        what: &'static str,
        /// Values given.
        len: usize,
        /// Values expected.
        want: usize,
    },
}

/// The matched pair `A` (forward projection) and `A^T` (backprojection) for one geometry.
#[derive(Debug, Clone)]
pub struct Projector {
    n_cols: usize,
    out_size: usize,
    center: f64,
    trig: Vec<(f64, f64)>,
    /// Per output row, the column range inside the circular mask.
    mask: Vec<std::ops::Range<usize>>,
}

impl Projector {
    /// The pair for `angles_rad`, an `n_cols`-column detector with the axis at `center`, and `out_size^2`
    /// slices.
    pub fn new(angles_rad: &[f32], n_cols: usize, center: f64, out_size: usize) -> Projector {
        let h = (out_size as f64 - 1.0) / 2.0;
        let r2 = (out_size as f64 / 2.0).powi(2);
        let mask = (0..out_size)
            .map(|row| {
                let y = h - row as f64;
                let cols: Vec<usize> = (0..out_size).filter(|&c| (c as f64 - h).powi(2) + y * y <= r2).collect();
                match (cols.first(), cols.last()) {
                    (Some(&a), Some(&b)) => a..b + 1,
                    _ => 0..0,
                }
            })
            .collect();
        let trig = angles_rad.iter().map(|&t| ((t as f64).cos(), (t as f64).sin())).collect();
        Projector { n_cols, out_size, center, trig, mask }
    }

    /// Values of one sinogram (`angles x n_cols`).
    pub fn sinogram_len(&self) -> usize {
        self.trig.len() * self.n_cols
    }

    /// Values of one slice (`out_size^2`).
    pub fn slice_len(&self) -> usize {
        self.out_size * self.out_size
    }

    /// Whether pixel `[row][col]` is an unknown (inside the circular mask).
    pub fn in_mask(&self, row: usize, col: usize) -> bool {
        self.mask.get(row).is_some_and(|r| r.contains(&col))
    }

    /// `y = A x`: forward projection of slice `x` (`out_size^2`) into `y` (`angles x n_cols`, overwritten).
    /// Parallel over angles; each sinogram row sums its pixels in a fixed order.
    pub fn forward(&self, x: &[f32], y: &mut [f32]) {
        let n = self.out_size;
        let h = (n as f64 - 1.0) / 2.0;
        let nc = self.n_cols;
        y.par_chunks_mut(nc).zip(&self.trig).for_each(|(row, &(cs, sn))| {
            let mut acc = vec![0f64; nc];
            for (r, cols) in self.mask.iter().enumerate() {
                let yy = h - r as f64;
                for c in cols.clone() {
                    let v = x[r * n + c] as f64;
                    let s = (c as f64 - h) * cs + yy * sn + self.center;
                    let i = s.floor();
                    let f = s - i;
                    let i = i as i64;
                    if i >= 0 && (i as usize) < nc {
                        acc[i as usize] += (1.0 - f) * v;
                    }
                    if i + 1 >= 0 && ((i + 1) as usize) < nc {
                        acc[(i + 1) as usize] += f * v;
                    }
                }
            }
            for (o, a) in row.iter_mut().zip(&acc) {
                *o = *a as f32;
            }
        });
    }

    /// `x = A^T y`: backprojection of sinogram `y` into slice `x` (overwritten; zero outside the mask).
    /// Parallel over output rows; each pixel sums its angles in acquisition order.
    pub fn backward(&self, y: &[f32], x: &mut [f32]) {
        let n = self.out_size;
        let h = (n as f64 - 1.0) / 2.0;
        let nc = self.n_cols;
        x.par_chunks_mut(n).zip(&self.mask).enumerate().for_each(|(r, (out, cols))| {
            out.iter_mut().for_each(|v| *v = 0.0);
            let yy = h - r as f64;
            for c in cols.clone() {
                let mut acc = 0f64;
                for (a, &(cs, sn)) in self.trig.iter().enumerate() {
                    let q = &y[a * nc..(a + 1) * nc];
                    let s = (c as f64 - h) * cs + yy * sn + self.center;
                    let i = s.floor();
                    let f = s - i;
                    let i = i as i64;
                    if i >= 0 && (i as usize) < nc {
                        acc += (1.0 - f) * q[i as usize] as f64;
                    }
                    if i + 1 >= 0 && ((i + 1) as usize) < nc {
                        acc += f * q[(i + 1) as usize] as f64;
                    }
                }
                out[c] = acc as f32;
            }
        });
    }

    fn check(&self, sino: &[f32], init: Option<&[f32]>) -> Result<(), IterativeError> {
        if sino.len() != self.sinogram_len() {
            return Err(IterativeError::Size { what: "sinogram", len: sino.len(), want: self.sinogram_len() });
        }
        if let Some(x) = init.filter(|x| x.len() != self.slice_len()) {
            return Err(IterativeError::Size { what: "initial slice", len: x.len(), want: self.slice_len() });
        }
        Ok(())
    }

    fn start(&self, init: Option<&[f32]>) -> Vec<f32> {
        let mut x = init.map_or_else(|| vec![0f32; self.slice_len()], <[f32]>::to_vec);
        let n = self.out_size;
        for (r, cols) in self.mask.iter().enumerate() {
            for c in 0..n {
                if !cols.contains(&c) {
                    x[r * n + c] = 0.0;
                }
            }
        }
        x
    }
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|&a| (a as f64) * (a as f64)).sum::<f64>().sqrt()
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&p, &q)| p as f64 * q as f64).sum()
}

/// The result of an iterative run: the slice and `||b - A x||` after every iteration (index 0: the start).
#[derive(Debug, Clone)]
pub struct IterativeResult {
    /// The slice, `out_size^2`.
    pub slice: Vec<f32>,
    /// Residual norm at the start and after each iteration.
    pub residuals: Vec<f64>,
}

/// SIRT on `-log` sinogram `b` (`angles x n_cols`), from `init` (masked) or zero. `each` is called after every
/// iteration with its number (from 1), the residual norm `||b - A x||` and the slice so far.
pub fn sirt(
    p: &Projector,
    b: &[f32],
    init: Option<&[f32]>,
    opts: &IterativeOptions,
    each: &mut dyn FnMut(usize, f64, &[f32]),
) -> Result<IterativeResult, IterativeError> {
    p.check(b, init)?;
    let mut x = p.start(init);
    let ones_x: Vec<f32> = (0..p.slice_len()).map(|i| p.in_mask(i / p.out_size, i % p.out_size) as u8 as f32).collect();
    let mut row_sum = vec![0f32; p.sinogram_len()];
    p.forward(&ones_x, &mut row_sum);
    let mut col_sum = vec![0f32; p.slice_len()];
    p.backward(&vec![1f32; p.sinogram_len()], &mut col_sum);
    let inv = |v: &mut [f32]| v.iter_mut().for_each(|a| *a = if *a > 1e-6 { 1.0 / *a } else { 0.0 });
    let (mut r_inv, mut c_inv) = (row_sum, col_sum);
    inv(&mut r_inv);
    inv(&mut c_inv);
    let (mut ax, mut upd) = (vec![0f32; p.sinogram_len()], vec![0f32; p.slice_len()]);
    let mut residuals = Vec::with_capacity(opts.iterations + 1);
    p.forward(&x, &mut ax);
    for k in 0..=opts.iterations {
        // ax becomes the weighted residual R (b - A x).
        ax.par_iter_mut().zip(b).for_each(|(a, &bv)| *a = bv - *a);
        let res = norm(&ax);
        residuals.push(res);
        if k > 0 {
            tracing::info!(method = "sirt", iteration = k, residual = res, "iteration");
            each(k, res, &x);
        }
        if k == opts.iterations {
            break;
        }
        let _span = tracing::info_span!("recon.iterate", method = "sirt", iteration = k + 1).entered();
        ax.par_iter_mut().zip(&r_inv).for_each(|(a, &w)| *a *= w);
        p.backward(&ax, &mut upd);
        x.par_iter_mut().zip(&upd).zip(&c_inv).for_each(|((xv, &u), &w)| {
            *xv += w * u;
            if opts.nonnegative && *xv < 0.0 {
                *xv = 0.0;
            }
        });
        p.forward(&x, &mut ax);
    }
    Ok(IterativeResult { slice: x, residuals })
}

/// CGLS on `-log` sinogram `b` (`angles x n_cols`), from `init` (masked) or zero. `each` is called after every
/// iteration with its number (from 1), the residual norm `||b - A x||` and the slice so far.
pub fn cgls(
    p: &Projector,
    b: &[f32],
    init: Option<&[f32]>,
    opts: &IterativeOptions,
    each: &mut dyn FnMut(usize, f64, &[f32]),
) -> Result<IterativeResult, IterativeError> {
    p.check(b, init)?;
    let mut x = p.start(init);
    let mut r = vec![0f32; p.sinogram_len()];
    p.forward(&x, &mut r);
    r.iter_mut().zip(b).for_each(|(a, &bv)| *a = bv - *a);
    let mut s = vec![0f32; p.slice_len()];
    p.backward(&r, &mut s);
    let mut dir = s.clone();
    let mut gamma = dot(&s, &s);
    let mut q = vec![0f32; p.sinogram_len()];
    let mut residuals = vec![norm(&r)];
    for k in 1..=opts.iterations {
        let _span = tracing::info_span!("recon.iterate", method = "cgls", iteration = k).entered();
        if gamma <= 0.0 {
            // Exactly solved (or a zero sinogram): nothing left to reduce.
            let res = norm(&r);
            residuals.push(res);
            each(k, res, &x);
            continue;
        }
        p.forward(&dir, &mut q);
        let qq = dot(&q, &q);
        if qq <= 0.0 {
            let res = norm(&r);
            residuals.push(res);
            each(k, res, &x);
            continue;
        }
        let alpha = gamma / qq;
        x.iter_mut().zip(&dir).for_each(|(xv, &d)| *xv = (*xv as f64 + alpha * d as f64) as f32);
        r.iter_mut().zip(&q).for_each(|(rv, &qv)| *rv = (*rv as f64 - alpha * qv as f64) as f32);
        p.backward(&r, &mut s);
        let gamma_new = dot(&s, &s);
        let beta = gamma_new / gamma;
        dir.iter_mut().zip(&s).for_each(|(d, &sv)| *d = (sv as f64 + beta * *d as f64) as f32);
        gamma = gamma_new;
        let res = norm(&r);
        residuals.push(res);
        tracing::info!(method = "cgls", iteration = k, residual = res, "iteration");
        each(k, res, &x);
    }
    Ok(IterativeResult { slice: x, residuals })
}

/// One iteration of one slice, as [`IterationLog`] reports it to its hook.
#[derive(Debug, Clone, Copy)]
pub struct IterationStep {
    /// `sirt` or `cgls`.
    pub method: &'static str,
    /// The detector row (slice) being reconstructed.
    pub row: usize,
    /// Iteration just finished, from 1.
    pub iteration: usize,
    /// Iterations asked for.
    pub of: usize,
    /// `||b - A x||` after it.
    pub residual: f64,
}

/// Called after every iteration of every slice (from the thread reconstructing it): progress lines.
#[derive(Clone)]
pub struct IterationHook(pub std::sync::Arc<dyn Fn(&IterationStep) + Send + Sync>);

impl std::fmt::Debug for IterationHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IterationHook(..)")
    }
}

/// The residual history of every slice an iterative run reconstructed, shared by the backend and whoever
/// reports the run, and an optional hook told of every iteration.
#[derive(Debug, Default)]
pub struct IterationLog {
    /// Told of every iteration as it finishes.
    pub hook: Option<IterationHook>,
    residuals: std::sync::Mutex<Vec<(usize, Vec<f64>)>>,
}

impl IterationLog {
    /// A log that tells `hook` of every iteration.
    pub fn with_hook(hook: Option<IterationHook>) -> IterationLog {
        IterationLog { hook, residuals: Default::default() }
    }

    /// Per slice reconstructed (by detector row, ascending): the residual norm at the start and after every
    /// iteration.
    pub fn residuals(&self) -> Vec<(usize, Vec<f64>)> {
        let mut v = self.residuals.lock().map(|g| g.clone()).unwrap_or_else(|p| p.into_inner().clone());
        v.sort_by_key(|(row, _)| *row);
        v
    }

    fn record(&self, row: usize, residuals: Vec<f64>) {
        match self.residuals.lock() {
            Ok(mut g) => g.push((row, residuals)),
            Err(p) => p.into_inner().push((row, residuals)),
        }
    }
}

/// Which iterative method [`reconstruct_row`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Iterative {
    /// [`sirt`].
    Sirt,
    /// [`cgls`].
    Cgls,
}

impl Iterative {
    /// `sirt` or `cgls`.
    pub fn name(self) -> &'static str {
        match self {
            Iterative::Sirt => "sirt",
            Iterative::Cgls => "cgls",
        }
    }
}

/// Reconstructs detector row `row` from its `-log` sinogram with `method`, starting from `init` (the FBP slice
/// for `--init fbp`); records the residual history in `log` and tells its hook of every iteration.
pub fn reconstruct_row(
    method: Iterative,
    p: &Projector,
    sino: &[f32],
    init: Option<&[f32]>,
    opts: &IterativeOptions,
    row: usize,
    log: &IterationLog,
) -> Result<Vec<f32>, IterativeError> {
    let _span =
        tracing::info_span!("recon.iterative", method = method.name(), row, iterations = opts.iterations).entered();
    let mut each = |k: usize, residual: f64, _: &[f32]| {
        if let Some(h) = &log.hook {
            (h.0)(&IterationStep { method: method.name(), row, iteration: k, of: opts.iterations, residual });
        }
    };
    let r = match method {
        Iterative::Sirt => sirt(p, sino, init, opts, &mut each)?,
        Iterative::Cgls => cgls(p, sino, init, opts, &mut each)?,
    };
    log.record(row, r.residuals);
    Ok(r.slice)
}

/// One line summing up the residual histories of a run (`None` when there are none): iterations, slices, and
/// the residual norm at the start and at the end, for the first slice and averaged over all.
pub fn residual_line(method: &str, residuals: &[(usize, Vec<f64>)]) -> Option<String> {
    let (row, first) = residuals.first()?;
    let ends = |h: &Vec<f64>| (h.first().copied().unwrap_or(0.0), h.last().copied().unwrap_or(0.0));
    let (a, b) = ends(first);
    let n = residuals.len() as f64;
    let (ma, mb) = residuals.iter().map(|(_, h)| ends(h)).fold((0.0, 0.0), |(x, y), (p, q)| (x + p / n, y + q / n));
    Some(format!(
        "{method}: {} iterations on {} slice(s); residual ||b - Ax|| slice {row}: {a:.4e} -> {b:.4e}, mean over slices: {ma:.4e} -> {mb:.4e}",
        first.len().saturating_sub(1),
        residuals.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(state: &mut u64) -> f32 {
        *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (*state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }

    #[test]
    fn forward_is_the_adjoint_of_backward() {
        for (n_cols, out, center, span) in [(96, 96, 47.5, 180.0), (80, 100, 43.2, 360.0), (64, 48, 29.9, 170.0)] {
            let angles: Vec<f32> = (0..37).map(|i| (i as f64 * span / 37.0).to_radians() as f32).collect();
            let p = Projector::new(&angles, n_cols, center, out);
            let mut st = 7u64;
            let x: Vec<f32> = (0..p.slice_len()).map(|_| lcg(&mut st)).collect();
            let y: Vec<f32> = (0..p.sinogram_len()).map(|_| lcg(&mut st)).collect();
            let (mut ax, mut aty) = (vec![0f32; p.sinogram_len()], vec![0f32; p.slice_len()]);
            p.forward(&x, &mut ax);
            p.backward(&y, &mut aty);
            // x outside the mask is not an unknown: A ignores it, A^T gives zero there.
            let (l, r) = (dot(&ax, &y), dot(&x, &aty));
            let rel = (l - r).abs() / l.abs().max(r.abs());
            assert!(rel < 1e-5, "<Ax,y> = {l}, <x,A^T y> = {r}: relative {rel}");
        }
    }

    #[test]
    fn cgls_residual_never_increases() {
        let angles: Vec<f32> = (0..30).map(|i| (i as f32 * 6.0).to_radians()).collect();
        let p = Projector::new(&angles, 64, 31.5, 64);
        let mut st = 3u64;
        let b: Vec<f32> = (0..p.sinogram_len()).map(|_| lcg(&mut st) + 1.0).collect();
        let opts = IterativeOptions { iterations: 40, ..Default::default() };
        let res = cgls(&p, &b, None, &opts, &mut |_, _, _| {}).expect("sizes match");
        assert_eq!(res.residuals.len(), 41);
        for w in res.residuals.windows(2) {
            assert!(w[1] <= w[0] * (1.0 + 1e-6), "residual rose: {:?}", res.residuals);
        }
        assert!(res.residuals[40] < 0.5 * res.residuals[0]);
    }

    #[test]
    fn wrong_sizes_are_errors() {
        let p = Projector::new(&[0.0, 1.0], 16, 7.5, 16);
        let opts = IterativeOptions::default();
        assert!(sirt(&p, &[0.0; 5], None, &opts, &mut |_, _, _| {}).is_err());
        assert!(cgls(&p, &[0.0; 32], Some(&[0.0; 3]), &opts, &mut |_, _, _| {}).is_err());
    }
}
