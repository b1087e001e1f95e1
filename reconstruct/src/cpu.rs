//! The CPU backend: rayon inside, bit-identical whatever the thread count and however rows are grouped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rayon::prelude::*;

use crate::backend::{Backend, BackendError, ReconSetup, Slab};
use crate::backproject::{tile_rows, Prepared};
use crate::filter::RowFilter;
use crate::geometry::ScanRange;
use crate::gridrec::Gridrec;
use crate::iterative::{IterationLog, Projector};
use crate::method::Method;
use crate::preprocess::{normalize_minus_log, remove_zingers};
use crate::stripes::remove_stripes_sorting;

/// Counts of values the preprocessing had to change, summed over a run.
#[derive(Debug, Default)]
pub struct PreprocessCounts {
    /// Transmissions that were not positive or not finite and were clamped before `-log`.
    pub clamped: AtomicU64,
    /// Values replaced as zingers.
    pub zingers: AtomicU64,
}

/// A sinogram pipeline for one setup: the filter (and for gridrec its plan) is built once and reused for
/// every row.
#[derive(Debug, Clone)]
pub struct SinogramPipeline {
    setup: ReconSetup,
    filter: RowFilter,
    gridrec: Option<Gridrec>,
    /// The matched projector pair, for SIRT and CGLS.
    projector: Option<Projector>,
}

impl SinogramPipeline {
    /// Validates `setup` and builds the filter.
    pub fn new(setup: &ReconSetup) -> Result<SinogramPipeline, BackendError> {
        validate(setup)?;
        let n = setup.angles_rad.len();
        let weight = ScanRange::of(&setup.angles_rad).weight(n);
        let gridrec = match setup.method {
            Method::Fbp | Method::Sirt | Method::Cgls => None,
            Method::Gridrec => Some(
                Gridrec::new(setup.filter, setup.n_cols, &setup.angles_rad, setup.center, setup.out_size)
                    .map_err(|e| BackendError::Input(e.to_string()))?,
            ),
        };
        let projector = setup
            .method
            .iterative()
            .map(|_| Projector::new(&setup.angles_rad, setup.n_cols, setup.center, setup.out_size));
        Ok(SinogramPipeline {
            setup: setup.clone(),
            filter: RowFilter::new(setup.filter, setup.n_cols, weight),
            gridrec,
            projector,
        })
    }

    /// Raw counts of one detector row (`[angle][col]`, modified in place) to a filtered sinogram ready for
    /// backprojection: normalisation and `-log`, zingers, stripes, filter.
    pub fn raw_to_filtered(
        &self,
        sino: &mut [f32],
        dark: &[f32],
        flat_before: &[f32],
        flat_after: &[f32],
        flat_weight: &[f32],
        counts: &PreprocessCounts,
    ) {
        let clamped = normalize_minus_log(sino, dark, flat_before, flat_after, flat_weight);
        counts.clamped.fetch_add(clamped, Ordering::Relaxed);
        self.minus_log_to_filtered(sino, counts);
    }

    /// A `-log` sinogram (`[angle][col]`, modified in place) to a filtered one: zingers, stripes, filter.
    pub fn minus_log_to_filtered(&self, sino: &mut [f32], counts: &PreprocessCounts) {
        self.minus_log_cleaned(sino, counts);
        self.filter.apply(sino, self.setup.angles_rad.len());
    }

    /// Zinger and stripe removal on a `-log` sinogram (in place), without the filter (gridrec filters in
    /// Fourier space itself).
    pub fn minus_log_cleaned(&self, sino: &mut [f32], counts: &PreprocessCounts) {
        let n_cols = self.setup.n_cols;
        if let Some(t) = self.setup.zinger_threshold {
            counts.zingers.fetch_add(remove_zingers(sino, n_cols, t), Ordering::Relaxed);
        }
        if let Some(size) = self.setup.stripe_size {
            remove_stripes_sorting(sino, n_cols, size);
        }
    }

    /// The gridrec plan, when the setup's method is gridrec.
    pub fn gridrec(&self) -> Option<&Gridrec> {
        self.gridrec.as_ref()
    }

    /// Prepares a filtered sinogram for backprojection with the setup's geometry.
    pub fn prepare(&self, filtered: &[f32]) -> Prepared {
        let s = &self.setup;
        Prepared::new(filtered, s.n_cols, &s.angles_rad, s.center, s.out_size)
    }

    /// Reconstructs one cleaned `-log` sinogram of detector row `row` with SIRT or CGLS (the setup's
    /// iterative settings; from its FBP slice with `--init fbp`), recording residuals in `log`. `None` when
    /// the setup's method is not iterative.
    pub fn reconstruct_iterative(
        &self,
        sino: &[f32],
        row: usize,
        log: &IterationLog,
    ) -> Option<Result<Vec<f32>, BackendError>> {
        let (method, p) = (self.setup.method.iterative()?, self.projector.as_ref()?);
        let opts = &self.setup.iterative;
        let init = (opts.init == crate::iterative::Init::Fbp).then(|| {
            let mut f = sino.to_vec();
            self.filter.apply(&mut f, self.setup.angles_rad.len());
            backproject_all(std::slice::from_ref(&self.prepare(&f)), self.setup.out_size)
        });
        Some(
            crate::iterative::reconstruct_row(method, p, sino, init.as_deref(), opts, row, log)
                .map_err(|e| BackendError::Input(e.to_string())),
        )
    }

    /// Reconstructs one `-log` sinogram `[angle][col]` into an `out_size^2` slice: the in-memory entry
    /// point for a live preview of a few slices.
    pub fn reconstruct_minus_log(&self, sino: &[f32]) -> Vec<f32> {
        let mut s = sino.to_vec();
        if self.projector.is_some() {
            self.minus_log_cleaned(&mut s, &PreprocessCounts::default());
            return match self.reconstruct_iterative(&s, 0, &IterationLog::default()) {
                Some(Ok(slice)) => slice,
                // The sinogram length is the setup's by the caller's contract; a mismatch leaves a zero slice.
                Some(Err(e)) => {
                    tracing::error!(error = %e, "iterative reconstruction refused the sinogram");
                    vec![0f32; self.setup.out_size * self.setup.out_size]
                }
                None => vec![0f32; self.setup.out_size * self.setup.out_size],
            };
        }
        if let Some(g) = &self.gridrec {
            self.minus_log_cleaned(&mut s, &PreprocessCounts::default());
            let n = self.setup.out_size;
            let mut out = vec![0f32; n * n];
            // The sinogram length is the setup's by the caller's contract; a mismatch leaves a zero slice.
            if let Err(e) = g.reconstruct_into(&s, &mut out) {
                tracing::error!(error = %e, "gridrec refused the sinogram");
            }
            return out;
        }
        self.minus_log_to_filtered(&mut s, &PreprocessCounts::default());
        let prep = self.prepare(&s);
        backproject_all(std::slice::from_ref(&prep), self.setup.out_size)
    }

    /// The setup this pipeline was built for.
    pub fn setup(&self) -> &ReconSetup {
        &self.setup
    }
}

/// Backprojects every prepared sinogram into its own slice, parallel over (slice, row tile).
pub fn backproject_all(preps: &[Prepared], out_size: usize) -> Vec<f32> {
    let per_slice = out_size * out_size;
    let tr = tile_rows(out_size);
    let mut out = vec![0f32; per_slice * preps.len()];
    out.par_chunks_mut(per_slice)
        .zip(preps)
        .flat_map(|(slice, prep)| slice.par_chunks_mut(tr * out_size).enumerate().map(move |(t, tile)| (prep, t, tile)))
        .for_each(|(prep, t, tile)| prep.backproject_tile(out_size, t * tr, tile));
    out
}

/// Checks a setup before any work: sizes, angles, a centre within reach of the detector.
pub fn validate(setup: &ReconSetup) -> Result<(), BackendError> {
    let bad = |m: String| Err(BackendError::Input(m));
    if setup.n_cols < 2 {
        return bad(format!("detector has {} columns; need at least 2", setup.n_cols));
    }
    if setup.angles_rad.is_empty() {
        return bad("no projection angles".into());
    }
    if setup.angles_rad.iter().any(|a| !a.is_finite()) {
        return bad("projection angles contain NaN or infinity".into());
    }
    if setup.out_size == 0 || setup.out_size > 65536 {
        return bad(format!("output size {} is out of range 1..=65536", setup.out_size));
    }
    let n = setup.n_cols as f64;
    if !center_within_reach(setup.center, setup.n_cols) {
        return bad(format!(
            "rotation axis at column {} is far outside the {}-column detector; --center takes a column \
             position (the middle is {})",
            setup.center,
            setup.n_cols,
            (n - 1.0) / 2.0
        ));
    }
    Ok(())
}

/// Whether a rotation axis at column `center` can be reconstructed from an `n_cols`-column detector: finite,
/// and no further than one detector width outside it.
pub fn center_within_reach(center: f64, n_cols: usize) -> bool {
    let n = n_cols as f64;
    center.is_finite() && center >= -n && center <= 2.0 * n
}

/// The CPU backend (rayon). Holds run-wide counters the pipeline reads after the run.
#[derive(Debug, Default, Clone)]
pub struct CpuBackend {
    /// Preprocessing counters shared with whoever created the backend.
    pub counts: Arc<PreprocessCounts>,
    /// Rows per slab; 0 chooses from the setup.
    pub rows_per_slab: usize,
    /// A dedicated rayon pool (`--threads`), or `None` for the global one.
    pub pool: Option<Arc<rayon::ThreadPool>>,
    /// Residual histories of SIRT and CGLS slices, and the per-iteration hook.
    pub iterations: Arc<IterationLog>,
}

impl Backend for CpuBackend {
    fn name(&self) -> String {
        format!("cpu ({} threads)", self.threads())
    }

    fn reconstruct(&mut self, setup: &ReconSetup, slab: &Slab) -> Result<Vec<f32>, BackendError> {
        match &self.pool {
            Some(pool) => pool.install(|| self.reconstruct_here(setup, slab)),
            None => self.reconstruct_here(setup, slab),
        }
    }

    fn preferred_rows(&self, setup: &ReconSetup) -> usize {
        if self.rows_per_slab > 0 {
            return self.rows_per_slab;
        }
        let _ = setup;
        2 * self.threads()
    }
}

impl CpuBackend {
    /// A backend computing on its own pool of `threads` rayon threads (named `recon-cpu-N`), with
    /// `rows_per_slab` rows per slab (0: twice the threads).
    pub fn with_threads(threads: usize, rows_per_slab: usize) -> Result<CpuBackend, BackendError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("recon-cpu-{i}"))
            .build()
            .map_err(|e| BackendError::Input(format!("cannot start {threads} CPU threads: {e}")))?;
        Ok(CpuBackend { rows_per_slab, pool: Some(Arc::new(pool)), ..Default::default() })
    }

    /// Threads this backend computes with.
    pub fn threads(&self) -> usize {
        self.pool.as_ref().map_or_else(rayon::current_num_threads, |p| p.current_num_threads())
    }

    fn reconstruct_here(&self, setup: &ReconSetup, slab: &Slab) -> Result<Vec<f32>, BackendError> {
        let pipe = SinogramPipeline::new(setup)?;
        let n_rows = slab.rows.len();
        let (na, nc) = (setup.angles_rad.len(), setup.n_cols);
        let per_row = na * nc;
        let check = |what: &str, len: usize, want: usize| {
            if len == want {
                Ok(())
            } else {
                Err(BackendError::Input(format!("slab {what} has {len} values, expected {want}")))
            }
        };
        check("projections", slab.projections.len(), n_rows * per_row)?;
        check("dark", slab.dark.len(), n_rows * nc)?;
        check("flat_before", slab.flat_before.len(), n_rows * nc)?;
        check("flat_after", slab.flat_after.len(), n_rows * nc)?;
        check("flat_weight", slab.flat_weight.len(), na)?;
        let counts = &self.counts;
        if setup.method.iterative().is_some() {
            // One slice after another, each iteration parallel inside (over angles, then output rows): the
            // working set stays a few sinograms and slices whatever the slab's size.
            let per_slice = setup.out_size * setup.out_size;
            let mut out = vec![0f32; n_rows * per_slice];
            for (r, slice) in out.chunks_mut(per_slice).enumerate() {
                let mut sino = slab.projections[r * per_row..(r + 1) * per_row].to_vec();
                let row = r * nc..(r + 1) * nc;
                {
                    let _span = tracing::info_span!("recon.preprocess", rows = 1).entered();
                    let clamped = normalize_minus_log(
                        &mut sino,
                        &slab.dark[row.clone()],
                        &slab.flat_before[row.clone()],
                        &slab.flat_after[row],
                        &slab.flat_weight,
                    );
                    counts.clamped.fetch_add(clamped, Ordering::Relaxed);
                    pipe.minus_log_cleaned(&mut sino, counts);
                }
                if let Some(res) = pipe.reconstruct_iterative(&sino, slab.rows.start + r, &self.iterations) {
                    slice.copy_from_slice(&res?);
                }
            }
            return Ok(out);
        }
        if let Some(g) = pipe.gridrec() {
            let mut sinos = slab.projections.clone();
            {
                let _span = tracing::info_span!("recon.preprocess", rows = n_rows).entered();
                sinos.par_chunks_mut(per_row).enumerate().for_each(|(r, sino)| {
                    let row = r * nc..(r + 1) * nc;
                    let clamped = normalize_minus_log(
                        sino,
                        &slab.dark[row.clone()],
                        &slab.flat_before[row.clone()],
                        &slab.flat_after[row],
                        &slab.flat_weight,
                    );
                    counts.clamped.fetch_add(clamped, Ordering::Relaxed);
                    pipe.minus_log_cleaned(sino, counts);
                });
            }
            let _span = tracing::info_span!("recon.gridrec", rows = n_rows).entered();
            let mut out = vec![0f32; n_rows * setup.out_size * setup.out_size];
            g.reconstruct_into(&sinos, &mut out).map_err(|e| BackendError::Input(e.to_string()))?;
            return Ok(out);
        }
        let preps: Vec<Prepared> = {
            let _span = tracing::info_span!("recon.preprocess", rows = n_rows).entered();
            (0..n_rows)
                .into_par_iter()
                .map(|r| {
                    let mut sino = slab.projections[r * per_row..(r + 1) * per_row].to_vec();
                    let row = r * nc..(r + 1) * nc;
                    pipe.raw_to_filtered(
                        &mut sino,
                        &slab.dark[row.clone()],
                        &slab.flat_before[row.clone()],
                        &slab.flat_after[row],
                        &slab.flat_weight,
                        counts,
                    );
                    pipe.prepare(&sino)
                })
                .collect()
        };
        let _span = tracing::info_span!("recon.backproject", rows = n_rows).entered();
        Ok(backproject_all(&preps, setup.out_size))
    }
}
