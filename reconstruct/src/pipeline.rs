//! A file to a volume: the entry point the CLI, the demo and scripts call.
//!
//! [`reconstruct_file`] opens the NXtomo file, chooses the centre (given or automatic), sizes slabs of
//! detector rows to the `--memory` budget, and drives them through [`crate::schedule::run`] with the reader
//! in this module and the TIFF or HDF5 writer, so CPU and GPU backends share everything else.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::backend::{Backend, BackendError, ReconSetup, Slab};
use crate::center::{find_center, CenterError, CenterEstimate};
use crate::cpu::{CpuBackend, PreprocessCounts, SinogramPipeline};
use crate::filter::FilterKind;
use crate::gpu::GpuError;
use crate::output::{tiff_name, write_provenance_file, write_tiff, H5Volume, Provenance, TiffDepth, WriteError};
use crate::preprocess::normalize_minus_log;
use crate::reader::{NxTomo, ReadError};
use crate::schedule::{self, ScheduleError};

/// How the rotation axis is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum CenterChoice {
    /// Found from the data ([`crate::center`]).
    Auto,
    /// Given, in detector-column units ([`crate::geometry`]).
    Column(f64),
    // --- issue 15 §4 (Vo's centre) ---
    /// Vo's sinogram Fourier metric ([`crate::vo_center`]), whatever the angles.
    Vo,
}

/// Sample type of TIFF output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Bits {
    /// 32-bit float (default).
    F32,
    /// 16-bit unsigned, scaled from a range.
    U16,
    /// 8-bit unsigned, scaled from a range.
    U8,
}

/// Output container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Format {
    /// One TIFF file per slice in a folder.
    Tiff,
    /// One HDF5 file, `/entry/data/data`.
    Hdf5,
}

/// Which hardware reconstructs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum BackendChoice {
    /// CUDA when available, else CPU.
    Auto,
    /// The CPU (rayon).
    Cpu,
    /// CUDA GPUs.
    Cuda,
}

/// Everything `beamline recon` can be asked.
#[derive(Debug, Clone, Serialize)]
pub struct ReconOptions {
    /// NXtomo input file.
    pub input: PathBuf,
    /// Output folder (TIFF) or folder / `.h5` file (HDF5).
    pub output: PathBuf,
    /// Detector rows to reconstruct (`None`: all).
    pub slices: Option<Range<usize>>,
    /// Only the `I`-th (1-based) of `N` equal shares of the slices, for job arrays.
    pub part: Option<(usize, usize)>,
    /// Rotation axis.
    pub center: CenterChoice,
    /// Filter.
    pub filter: FilterKind,
    /// Container.
    pub format: Format,
    /// TIFF sample type.
    pub bits: Bits,
    /// Range mapped onto the integer sample range for 16/8-bit output (`None`: automatic from the middle
    /// slice, 0.1 and 99.9 percentiles).
    pub range: Option<(f32, f32)>,
    /// Hardware.
    pub backend: BackendChoice,
    /// Memory budget in bytes for slabs in flight.
    pub memory_bytes: u64,
    /// Vo stripe removal window, if any.
    pub stripe_size: Option<usize>,
    /// Zinger threshold, if any.
    pub zinger: Option<f32>,
    /// rayon threads for the CPU backend (`None`: all cores).
    pub threads: Option<usize>,
    /// Output slice side (`None`: detector width).
    pub out_size: Option<usize>,
    /// Filtered backprojection, gridrec, SIRT or CGLS (all but FBP run on the CPU).
    pub method: crate::method::Method,
    // --- issue 14 (inputs, completeness, outputs): options below ---
    /// Reconstruct a scan that [`crate::completeness::ScanCheck`] finds incomplete (`--allow-incomplete`).
    pub allow_incomplete: bool,
    // --- end issue 14 options ---
    // --- issue 15 options ---
    /// `--iterations`, `--nonnegative`, `--init` (checked against `method` when the run starts).
    pub method_options: crate::method::MethodOptions,
    /// Told of every SIRT/CGLS iteration of every slice (progress lines); not part of provenance.
    #[serde(skip)]
    pub on_iteration: Option<crate::iterative::IterationHook>,
    // --- end issue 15 options ---
}

impl BackendChoice {
    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Cpu => "cpu",
            BackendChoice::Cuda => "cuda",
        }
    }
}

impl ReconOptions {
    /// Defaults for `input` and `output`: all slices, automatic centre, ramp, float32 TIFF, CPU, 4 GiB.
    pub fn new(input: impl Into<PathBuf>, output: impl Into<PathBuf>) -> ReconOptions {
        ReconOptions {
            input: input.into(),
            output: output.into(),
            slices: None,
            part: None,
            center: CenterChoice::Auto,
            filter: FilterKind::Ramp,
            format: Format::Tiff,
            bits: Bits::F32,
            range: None,
            backend: BackendChoice::Auto,
            memory_bytes: 4 << 30,
            stripe_size: None,
            zinger: None,
            threads: None,
            out_size: None,
            method: crate::method::Method::Fbp,
            // --- issue 14 defaults ---
            allow_incomplete: false,
            // --- end issue 14 defaults ---
            method_options: crate::method::MethodOptions::default(),
            on_iteration: None,
        }
    }
}

/// What a reconstruction did.
#[derive(Debug, Clone, Serialize)]
pub struct ReconSummary {
    /// Detector rows reconstructed.
    pub rows: Range<usize>,
    /// Slices written.
    pub slices: usize,
    /// Wall seconds, from opening the file to the last slice written.
    pub seconds: f64,
    /// Axis used.
    pub center: f64,
    /// How the axis was found, when automatic.
    pub center_residual: Option<f64>,
    /// Values clamped before `-log`.
    pub clamped: u64,
    /// Values replaced as zingers.
    pub zingers: u64,
    /// Rows per slab used.
    pub slab_rows: usize,
    /// Devices and how many slabs each took.
    pub devices: Vec<(String, usize)>,
    /// The output file or folder.
    pub output: PathBuf,
    /// Giga voxel-angle updates per second over the whole run.
    pub gups: f64,
    /// What `--backend` chose, and why when `auto` fell back to the CPU.
    pub backend: String,
    // --- issue 15 §4 ---
    /// How the axis was chosen: `given`, `auto`, `vo` or `auto-vo` ([`CenterMode::name`]).
    pub center_mode: &'static str,
    // --- issue 15 §3 ---
    /// SIRT/CGLS: per slice (detector row), the residual norm `||b - A x||` at the start and after every
    /// iteration; empty for FBP and gridrec.
    pub residuals: Vec<(usize, Vec<f64>)>,
}

/// Why a reconstruction failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconError {
    /// The input could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// `--slices` lies outside the detector or is empty.
    #[error("--slices {start}:{end} is outside the detector's rows 0:{rows} (end is exclusive): give a non-empty range within 0:{rows}")]
    SlicesOutOfRange {
        /// First row asked for.
        start: usize,
        /// One past the last row asked for.
        end: usize,
        /// Rows of the detector.
        rows: usize,
    },
    /// `--part I/N` with `I` not between 1 and `N`.
    #[error("--part {index}/{count}: I must be between 1 and N (the first of N parts is --part 1/N)")]
    BadPart {
        /// `I`.
        index: usize,
        /// `N`.
        count: usize,
    },
    /// `--part I/N` leaves this part without slices.
    #[error("--part {index}/{count}: this share of {slices} slices is empty; use at most {slices} parts")]
    EmptyPart {
        /// `I`.
        index: usize,
        /// `N`.
        count: usize,
        /// Slices shared out.
        slices: usize,
    },
    /// `--center` is out of reach of the detector.
    #[error(
        "--center {center} is far outside the {cols}-column detector; --center takes a column position \
         (the middle is {middle}), or leave it out to find the axis from the data"
    )]
    BadCenter {
        /// The centre given.
        center: f64,
        /// Detector columns.
        cols: usize,
        /// The detector's middle column.
        middle: f64,
    },
    /// `--memory` cannot hold one detector row per slab.
    #[error(
        "--memory {memory_mib} MiB is too small for this file: one detector row needs about {row_mib} MiB with \
         {in_flight} slabs in flight over {devices} device(s); give at least --memory {need_mib}M"
    )]
    MemoryTooSmall {
        /// The budget, MiB.
        memory_mib: u64,
        /// Bytes per detector row, MiB.
        row_mib: u64,
        /// Slabs in flight at most.
        in_flight: usize,
        /// Devices sharing the budget.
        devices: usize,
        /// The smallest budget that works, MiB.
        need_mib: u64,
    },
    /// A method other than FBP was asked of a CUDA backend.
    #[error("--method {0} runs on the CPU; use --backend cpu or auto, or --method fbp on CUDA")]
    MethodNeedsCpu(crate::method::Method),
    /// Method settings that do not fit the method.
    #[error(transparent)]
    MethodOptions(#[from] crate::method::MethodOptionError),
    /// `--phase paganin` lacks a parameter or has a bad one.
    #[error("{path}: {reason}")]
    Phase {
        /// File.
        path: PathBuf,
        /// Which parameter (in the message, said once).
        reason: crate::paganin::PaganinError,
    },
    /// `--backend` cannot be honoured.
    #[error("--backend {choice}: {reason}")]
    Backend {
        /// The choice (`cuda`, ...).
        choice: &'static str,
        /// Why (in the message, not chained, so it is said once).
        reason: GpuError,
    },
    /// Volumes given to merge mix `--part` volumes with others.
    #[error(
        "{path} was made with --part but other volumes given were not: merge only the volume_partIIIofNNN.h5 \
         files of one run"
    )]
    MixedParts {
        /// A volume made with `--part`.
        path: PathBuf,
    },
    /// Volumes given to merge are parts of runs with different part counts.
    #[error("{path} is part {index}/{count} but {first} is of {first_count} parts: merge the parts of one run")]
    PartCountMismatch {
        /// The odd volume.
        path: PathBuf,
        /// Its `I`.
        index: u64,
        /// Its `N`.
        count: u64,
        /// The first volume.
        first: PathBuf,
        /// The first volume's `N`.
        first_count: u64,
    },
    /// Parts of a `--part I/N` run are missing from a merge.
    #[error(
        "part(s) {absent} missing: the volume would lack their slices; run `beamline recon ... --part I/{count}` \
         for them and pass all {count} volume_partIIIof{count:03}.h5 files"
    )]
    PartsMissing {
        /// The missing parts, `I/N`, comma-separated (at most 10).
        absent: String,
        /// `N`.
        count: u64,
    },
    /// A file given to merge is not a volume this crate wrote.
    #[error("{path}: {reason}")]
    NotAVolume {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A part volume could not be read.
    #[error("{path}: reading the part volume: {source}")]
    PartRead {
        /// The file.
        path: PathBuf,
        /// HDF5's error.
        source: hdf5::Error,
    },
    /// Parts given to merge do not fit together.
    #[error("{path}: {reason}")]
    PartsDoNotFit {
        /// The part that does not fit.
        path: PathBuf,
        /// How.
        reason: String,
    },
    /// Nothing to merge.
    #[error("no parts given: pass the volume_partIIIofNNN.h5 files to merge")]
    NoParts,
    /// Automatic centre finding failed. (Not a `#[source]`: the message already says why, and a chained
    /// report would say it twice.)
    #[error("{path}: automatic centre: {reason}")]
    Center {
        /// File.
        path: PathBuf,
        /// Why.
        reason: CenterError,
    },
    /// The scan is incomplete or inconsistent ([`crate::completeness::ScanCheck::problems`]).
    #[error(
        "{path} is an incomplete scan: {}; reconstructing it would give a misleading volume. Check the \
         acquisition, or pass --allow-incomplete to reconstruct it anyway",
        problems.join("; ")
    )]
    Incomplete {
        /// File.
        path: PathBuf,
        /// What is missing, one sentence each.
        problems: Vec<String>,
    },
    /// The backend refused the setup.
    #[error(transparent)]
    Setup(#[from] BackendError),
    /// The scheduled run failed.
    #[error(transparent)]
    Schedule(#[from] ScheduleError<ReadError, WriteError>),
    /// Output failed.
    #[error(transparent)]
    Write(#[from] WriteError),
}

// --- issue 14: completeness check ---
/// Refuses an incomplete scan before any work starts, unless `--allow-incomplete`; then it warns once.
pub fn check_complete(file: &NxTomo, opts: &ReconOptions) -> Result<(), ReconError> {
    let problems = &file.check().problems;
    if problems.is_empty() {
        return Ok(());
    }
    if !opts.allow_incomplete {
        return Err(ReconError::Incomplete { path: file.path().to_path_buf(), problems: problems.clone() });
    }
    tracing::warn!(problems = %problems.join("; "), "incomplete scan reconstructed (--allow-incomplete)");
    Ok(())
}
// --- end issue 14: completeness check ---

/// Progress of a run, for progress bars.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Slices written so far.
    pub done: usize,
    /// Slices in the run.
    pub total: usize,
}

/// Resolves `--slices` and `--part` against a detector of `rows` rows.
pub fn select_rows(
    rows: usize,
    slices: Option<Range<usize>>,
    part: Option<(usize, usize)>,
) -> Result<Range<usize>, ReconError> {
    let r = slices.unwrap_or(0..rows);
    if r.start >= r.end || r.end > rows {
        return Err(ReconError::SlicesOutOfRange { start: r.start, end: r.end, rows });
    }
    let Some((i, n)) = part else { return Ok(r) };
    if n == 0 || i == 0 || i > n {
        return Err(ReconError::BadPart { index: i, count: n });
    }
    let len = r.len();
    let lo = r.start + len * (i - 1) / n;
    let hi = r.start + len * i / n;
    if lo == hi {
        return Err(ReconError::EmptyPart { index: i, count: n, slices: len });
    }
    Ok(lo..hi)
}

/// Most rows a slab holds, whatever the budget allows.
pub const MAX_SLAB_ROWS: usize = 256;

/// Rows per slab that keep the slabs in flight over `devices` devices within `memory_bytes`.
pub fn slab_rows_for_budget(
    file: &NxTomo,
    out_size: usize,
    memory_bytes: u64,
    devices: usize,
) -> Result<usize, ReconError> {
    let n_angles = file.projections().len() as u64;
    let (frames_row, out_row) = (file.slab_bytes_per_row() as u64, (out_size * out_size * 4) as u64);
    // Per row: every slab in flight holds its raw rows (all frames, f32) or its output slices; one more raw
    // copy exists while a slab is read; the backend holds a sinogram copy, the padded sinogram (~1.42 x
    // out_size wide) and the output of the slab it works on; every device works on a slab at once.
    let in_flight = schedule::max_in_flight(devices) as u64;
    let padded = (file.cols() as f64 + 1.42 * out_size as f64 + 8.0) as u64;
    let working = n_angles * (file.cols() as u64 + padded) * 4 + out_row;
    let per_row = in_flight * (frames_row + out_row) + frames_row + devices.max(1) as u64 * working;
    let rows = memory_bytes / per_row;
    if rows == 0 {
        return Err(ReconError::MemoryTooSmall {
            memory_mib: memory_bytes >> 20,
            row_mib: per_row >> 20,
            in_flight: in_flight as usize,
            devices,
            need_mib: (per_row >> 20) + 1,
        });
    }
    Ok((rows as usize).min(MAX_SLAB_ROWS))
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

// --- issue 15 §2 ---
/// Reads detector rows `r` with [`crate::paganin::PaganinParams::halo_rows`] rows of context above and below,
/// phase-retrieves every projection, and returns the rows `r` as transmissions (dark 0, flats 1) for the
/// backends' usual `-log`. Transmissions floored before the filter are counted in `counts.clamped`.
pub fn read_phase_retrieved(
    file: &NxTomo,
    p: &crate::paganin::PaganinParams,
    r: Range<usize>,
    counts: &PreprocessCounts,
) -> Result<Slab, ReadError> {
    let halo = p.halo_rows();
    let (lo, hi) = (r.start.saturating_sub(halo), (r.end + halo).min(file.rows()));
    let big = file.read_slab(lo..hi)?;
    let _span = tracing::info_span!("recon.paganin", rows = r.len(), context_rows = hi - lo).entered();
    let filter = crate::paganin::Paganin::new(*p, hi - lo, file.cols());
    let (slab, clamped) =
        crate::paganin::retrieve_slab(&filter, &big, r.start - lo..r.end - lo, r.clone()).map_err(|e| {
            ReadError::Values {
                path: file.path().to_path_buf(),
                dataset: file.data_path().to_string(),
                reason: format!("phase retrieval: {e}"),
            }
        })?;
    counts.clamped.fetch_add(clamped, std::sync::atomic::Ordering::Relaxed);
    Ok(slab)
}
// --- end issue 15 §2 ---

/// Reads `rows` and returns their `-log` sinograms `[row][angle][col]` (for centre finding and previews).
pub fn read_minus_log(file: &NxTomo, rows: Range<usize>) -> Result<Vec<f32>, ReconError> {
    let mut slab = file.read_slab(rows.clone())?;
    let nc = file.cols();
    let per = file.projections().len() * nc;
    for r in 0..rows.len() {
        let row = r * nc..(r + 1) * nc;
        normalize_minus_log(
            &mut slab.projections[r * per..(r + 1) * per],
            &slab.dark[row.clone()],
            &slab.flat_before[row.clone()],
            &slab.flat_after[row],
            &slab.flat_weight,
        );
    }
    Ok(slab.projections)
}

/// Finds the axis from up to 8 rows around the middle of the whole detector. The rows depend only on the
/// file, never on `--slices` or `--part`, so every part of a job array (and a single run over any slices)
/// finds the same centre and parts merge bit for bit.
pub fn auto_center(file: &NxTomo) -> Result<CenterEstimate, ReconError> {
    auto_center_with(file, CenterChoice::Auto).map(|(est, _)| est)
}

// --- issue 15 §4 (Vo's centre) ---
/// How an automatic centre was found, as stored in provenance (`center_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CenterMode {
    /// Given with `--center X`.
    Given,
    /// Opposite projections compared ([`crate::center`]).
    Pairs,
    /// Vo's Fourier metric, asked for with `--center vo`.
    Vo,
    /// Vo's Fourier metric because `--center auto` found no 0/180-degree pair.
    AutoVo,
}

impl CenterMode {
    /// The name in provenance: `given`, `auto`, `vo`, `auto-vo`.
    pub fn name(self) -> &'static str {
        match self {
            CenterMode::Given => "given",
            CenterMode::Pairs => "auto",
            CenterMode::Vo => "vo",
            CenterMode::AutoVo => "auto-vo",
        }
    }
}

/// [`auto_center`] for `--center auto` (pairs, falling back to Vo's metric when the angles hold no 0/180-degree
/// pair) or `--center vo`; a given column is returned as is. Says which way the centre was found.
pub fn auto_center_with(file: &NxTomo, choice: CenterChoice) -> Result<(CenterEstimate, CenterMode), ReconError> {
    if let CenterChoice::Column(c) = choice {
        return Ok((CenterEstimate { center: c, residual: 0.0, references: 0 }, CenterMode::Given));
    }
    let rows = file.rows();
    let lo = (rows / 2).saturating_sub(4);
    let hi = (lo + 8).min(rows);
    let _span = tracing::info_span!("recon.center", rows = hi - lo).entered();
    let sinos = read_minus_log(file, lo..hi)?;
    let angles: Vec<f32> = file.angles().iter().map(|a| a.to_radians() as f32).collect();
    let err = |reason| ReconError::Center { path: file.path().to_path_buf(), reason };
    let vo = || crate::vo_center::find_center_vo(&sinos, file.cols(), &angles).map_err(err);
    match choice {
        CenterChoice::Vo => Ok((vo()?, CenterMode::Vo)),
        _ => match find_center(&sinos, file.cols(), &angles) {
            Ok(est) => Ok((est, CenterMode::Pairs)),
            Err(CenterError::NoPairs) => {
                tracing::info!("no 0/180-degree pair of projections: centre by Vo's Fourier metric");
                Ok((vo()?, CenterMode::AutoVo))
            }
            Err(e) => Err(err(e)),
        },
    }
}
// --- end issue 15 §4 ---

/// The setup for `file` with `opts` and a resolved centre.
pub fn setup_for(file: &NxTomo, opts: &ReconOptions, center: f64) -> ReconSetup {
    let mut setup = ReconSetup::new(
        file.angles().iter().map(|a| a.to_radians() as f32).collect(),
        file.cols(),
        center,
        opts.out_size.unwrap_or(file.cols()),
    );
    setup.filter = opts.filter;
    setup.stripe_size = opts.stripe_size;
    setup.zinger_threshold = opts.zinger;
    setup.method = opts.method;
    // Checked by `reconstruct_file_on` and `center_sweep` before any setup is made.
    setup.iterative = opts.method_options.iterative_for(opts.method).unwrap_or_default();
    setup
}

fn cpu_backend(
    threads: Option<usize>,
    rows_per_slab: usize,
    counts: Arc<PreprocessCounts>,
) -> Result<CpuBackend, ReconError> {
    let backend = match threads {
        Some(n) => CpuBackend::with_threads(n, rows_per_slab)?,
        None => CpuBackend { rows_per_slab, ..Default::default() },
    };
    Ok(CpuBackend { counts, ..backend })
}

/// A device whose slabs hold at most `rows` rows (its share of the memory budget), whatever it prefers.
struct BudgetCap {
    inner: Box<dyn Backend>,
    rows: usize,
}

impl Backend for BudgetCap {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn reconstruct(&mut self, setup: &ReconSetup, slab: &Slab) -> Result<Vec<f32>, BackendError> {
        self.inner.reconstruct(setup, slab)
    }

    fn preferred_rows(&self, setup: &ReconSetup) -> usize {
        self.inner.preferred_rows(setup).min(self.rows)
    }
}

/// Where the HDF5 volume goes for `opts`.
pub fn h5_path(opts: &ReconOptions) -> PathBuf {
    let o = &opts.output;
    if o.extension().is_some_and(|e| e == "h5" || e == "hdf5" || e == "nxs") {
        return o.clone();
    }
    match opts.part {
        Some((i, n)) => o.join(format!("volume_part{i:03}of{n:03}.h5")),
        None => o.join("volume.h5"),
    }
}

fn percentile_range(data: &[f32]) -> (f32, f32) {
    let mut v: Vec<f32> = data.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return (0.0, 1.0);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    (at(0.001), at(0.999))
}

/// The devices of a run and one line saying what was chosen (what [`crate::gpu::select_backends`] returns).
pub type Devices = (Vec<Box<dyn Backend>>, String);

/// Reconstructs `opts.input` into `opts.output` on the devices `--backend` selects
/// ([`crate::gpu::select_backends`]); `progress` is called after every slab written.
pub fn reconstruct_file(opts: &ReconOptions, progress: &mut dyn FnMut(Progress)) -> Result<ReconSummary, ReconError> {
    // Gridrec, SIRT and CGLS are implemented on the CPU only: `auto` means the CPU for them, `cuda` is refused.
    let backend = match (opts.method.runs_on_cuda(), opts.backend) {
        (false, BackendChoice::Cuda) => return Err(ReconError::MethodNeedsCpu(opts.method)),
        (false, _) => BackendChoice::Cpu,
        (true, b) => b,
    };
    let mut choose = |cpu: &CpuBackend| {
        crate::gpu::select_backends(backend, cpu)
            .map_err(|reason| ReconError::Backend { choice: backend.name(), reason })
    };
    reconstruct_file_on(opts, &mut choose, progress)
}

/// [`reconstruct_file`] with the devices chosen by `choose` instead of `--backend`: it is given the run's CPU
/// backend (whose counters the summary reports) and returns the devices to schedule over. For tests and
/// for programs that bring their own [`Backend`]s.
pub fn reconstruct_file_on(
    opts: &ReconOptions,
    choose: &mut dyn FnMut(&CpuBackend) -> Result<Devices, ReconError>,
    progress: &mut dyn FnMut(Progress),
) -> Result<ReconSummary, ReconError> {
    let t0 = Instant::now();
    let created_unix = now_unix();
    let iterative = opts.method_options.iterative_for(opts.method)?;
    let file = NxTomo::open(&opts.input)?;
    // --- issue 15 §2: the phase retrieval's parameters, options over what the file records ---
    let phase = match &opts.method_options.phase {
        Some(p) => Some(
            p.resolve(&crate::paganin::FilePhysics::of(&opts.input))
                .map_err(|reason| ReconError::Phase { path: opts.input.clone(), reason })?,
        ),
        None => None,
    };
    if let Some(p) = &phase {
        tracing::info!(
            energy_kev = p.energy_kev,
            distance_m = p.distance_m,
            pixel_size_um = p.pixel_size_um,
            delta_beta = p.delta_beta,
            halo_rows = p.halo_rows(),
            "paganin phase retrieval"
        );
    }
    check_complete(&file, opts)?;
    let rows = select_rows(file.rows(), opts.slices.clone(), opts.part)?;
    let mut center_mode = CenterMode::Given;
    let (center, residual) = match opts.center {
        CenterChoice::Column(c) if !crate::cpu::center_within_reach(c, file.cols()) => {
            return Err(ReconError::BadCenter {
                center: c,
                cols: file.cols(),
                middle: (file.cols() as f64 - 1.0) / 2.0,
            })
        }
        CenterChoice::Column(c) => (c, None),
        // --- issue 15 §4: `auto` falls back to Vo's metric; `vo` asks for it ---
        choice => {
            let (est, mode) = auto_center_with(&file, choice)?;
            center_mode = mode;
            tracing::info!(center = est.center, residual = est.residual, mode = mode.name(), "automatic centre");
            (est.center, Some(est.residual))
        }
    };
    let setup = setup_for(&file, opts, center);
    crate::cpu::validate(&setup)?;
    let counts = Arc::new(PreprocessCounts::default());
    // The budget is shared by every device's slabs, so slabs are sized once the devices are known; until
    // then the CPU backend (and through it the GPUs) asks for the most rows a slab may hold.
    let iteration_log = Arc::new(crate::iterative::IterationLog::with_hook(opts.on_iteration.clone()));
    let cpu =
        CpuBackend { iterations: iteration_log.clone(), ..cpu_backend(opts.threads, MAX_SLAB_ROWS, counts.clone())? };
    let (devices, backend_line) = choose(&cpu)?;
    let slab_rows = slab_rows_for_budget(&file, setup.out_size, opts.memory_bytes, devices.len())?;
    let devices: Vec<Box<dyn Backend>> =
        devices.into_iter().map(|inner| Box::new(BudgetCap { inner, rows: slab_rows }) as Box<dyn Backend>).collect();
    tracing::info!(backend = %backend_line, "backend selected");
    let provenance = Provenance {
        software: format!("beamline {}", env!("CARGO_PKG_VERSION")),
        input: opts.input.display().to_string(),
        dataset: file.data_path().to_string(),
        created_unix,
        parameters: serde_json::json!({
            "center": center,
            "center_mode": center_mode.name(),
            "filter": opts.filter.name(),
            "method": opts.method.name(),
            "rows": [rows.start, rows.end],
            "part": opts.part,
            "out_size": setup.out_size,
            "stripe_size": opts.stripe_size,
            "zinger": opts.zinger,
            "bits": opts.bits,
            "backend": opts.backend.name(),
            "angles": file.angles().len(),
            "flats_before_after_darks": file.reference_counts(),
            "allow_incomplete": opts.allow_incomplete,
            "iterative": opts.method.iterative().map(|_| serde_json::json!({
                "iterations": iterative.iterations,
                "nonnegative": iterative.nonnegative,
                "init": iterative.init,
                "mask": "circular: the disc inscribed in the slice; zero outside",
            })),
            "phase": phase.map(|p| serde_json::json!({
                "method": "paganin",
                "energy_kev": p.energy_kev,
                "distance_m": p.distance_m,
                "pixel_size_um": p.pixel_size_um,
                "delta_beta": p.delta_beta,
                "halo_rows": p.halo_rows(),
                "applied": "per projection after flat-field, edge-padded, before -log",
            })),
            "scan_problems": &file.check().problems,
            "convention": "column c has its centre at c; center = column of the rotation axis; slice pixel (row, col) at x = col - (n-1)/2, y = (n-1)/2 - row",
        }),
    };
    let prov_json = provenance.to_json();
    let depth = match opts.bits {
        Bits::F32 => TiffDepth::F32,
        b => {
            let (lo, hi) = match opts.range {
                Some(r) => r,
                None => {
                    let mid = (rows.start + rows.end) / 2;
                    let sino = read_minus_log(&file, mid..mid + 1)?;
                    let pipe = SinogramPipeline::new(&setup)?;
                    percentile_range(&pipe.reconstruct_minus_log(&sino))
                }
            };
            if b == Bits::U16 {
                TiffDepth::U16 { lo, hi }
            } else {
                TiffDepth::U8 { lo, hi }
            }
        }
    };
    let out_size = setup.out_size;
    let h5 = match opts.format {
        Format::Hdf5 => {
            let path = h5_path(opts);
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| WriteError::Io { path: dir.to_path_buf(), reason: e.to_string() })?;
            }
            Some(H5Volume::create(&path, rows.start, rows.len(), out_size, &prov_json)?)
        }
        Format::Tiff => {
            std::fs::create_dir_all(&opts.output)
                .map_err(|e| WriteError::Io { path: opts.output.clone(), reason: e.to_string() })?;
            write_provenance_file(&opts.output, &provenance)?;
            None
        }
    };
    let total = rows.len();
    let mut done = 0;
    progress(Progress { done, total });
    let read_delay = injected_read_delay();
    let read = |r: Range<usize>| -> Result<Slab, ReadError> {
        if let Some(d) = read_delay {
            std::thread::sleep(d);
        }
        match &phase {
            None => file.read_slab(r),
            Some(p) => read_phase_retrieved(&file, p, r, &counts),
        }
    };
    let write = |r: Range<usize>, data: Vec<f32>| -> Result<(), WriteError> {
        let _span = tracing::info_span!("recon.write", rows = r.len()).entered();
        match &h5 {
            Some(vol) => vol.write(r.start, &data)?,
            None => {
                for (k, slice) in data.chunks(out_size * out_size).enumerate() {
                    let path = opts.output.join(tiff_name(r.start + k));
                    write_tiff(&path, out_size, slice, depth, &prov_json)?;
                }
            }
        }
        done += r.len();
        progress(Progress { done, total });
        Ok(())
    };
    let report = schedule::run(&setup, devices, rows.clone(), read, write)?;
    let seconds = t0.elapsed().as_secs_f64();
    let clamped = counts.clamped.load(std::sync::atomic::Ordering::Relaxed);
    if clamped > 0 {
        tracing::warn!(clamped, "non-positive or non-finite transmissions clamped before -log");
    }
    // SIRT and CGLS project forward and back once per iteration (FBP once back).
    let passes = if opts.method.iterative().is_some() { 2 * iterative.iterations } else { 1 };
    let updates = (total * out_size * out_size * setup.angles_rad.len() * passes) as f64;
    Ok(ReconSummary {
        rows: rows.clone(),
        slices: total,
        seconds,
        center,
        center_residual: residual,
        clamped,
        zingers: counts.zingers.load(std::sync::atomic::Ordering::Relaxed),
        slab_rows: report.slab_rows,
        devices: report.slabs_per_device,
        output: if opts.format == Format::Hdf5 { h5_path(opts) } else { opts.output.clone() },
        gups: updates / seconds.max(1e-9) / 1e9,
        backend: backend_line,
        center_mode: center_mode.name(),
        residuals: iteration_log.residuals(),
    })
}

/// Reconstructs one slice (the middle of `opts.slices`, or of the detector) once per centre in `centers`,
/// writing `center_<value>.tif` into `opts.output`; returns the files written.
pub fn center_sweep(opts: &ReconOptions, centers: &[f64]) -> Result<Vec<PathBuf>, ReconError> {
    opts.method_options.iterative_for(opts.method)?;
    let file = NxTomo::open(&opts.input)?;
    check_complete(&file, opts)?;
    let rows = select_rows(file.rows(), opts.slices.clone(), None)?;
    let mid = (rows.start + rows.end) / 2;
    let sino = read_minus_log(&file, mid..mid + 1)?;
    std::fs::create_dir_all(&opts.output)
        .map_err(|e| WriteError::Io { path: opts.output.clone(), reason: e.to_string() })?;
    let mut written = Vec::new();
    for &c in centers {
        let setup = setup_for(&file, opts, c);
        let pipe = SinogramPipeline::new(&setup)?;
        let slice = pipe.reconstruct_minus_log(&sino);
        let path = opts.output.join(sweep_name(c));
        let prov = serde_json::json!({"input": opts.input.display().to_string(), "row": mid, "center": c, "filter": opts.filter.name(), "method": opts.method.name()});
        write_tiff(&path, setup.out_size, &slice, TiffDepth::F32, &prov.to_string())?;
        written.push(path);
    }
    Ok(written)
}

/// File name of a centre-sweep trial slice: `center_0255.50.tif`.
pub fn sweep_name(center: f64) -> String {
    format!("center_{center:07.2}.tif")
}

/// `I/N` of a part volume, from the `parameters.part` of its provenance (`None` for a volume made without
/// `--part`).
fn part_number(provenance: &str) -> Option<(u64, u64)> {
    let v: serde_json::Value = serde_json::from_str(provenance).ok()?;
    let p = v.get("parameters")?.get("part")?.as_array()?;
    Some((p.first()?.as_u64()?, p.get(1)?.as_u64()?))
}

/// Checks that volumes made with `--part I/N` are every part `1..=N` of one run (a missing first or last part
/// leaves no hole in the slices, so only the part numbers reveal it).
fn check_part_numbers(parts: &[(&Path, &str)]) -> Result<(), ReconError> {
    let numbered: Vec<(&Path, (u64, u64))> =
        parts.iter().filter_map(|(p, prov)| Some((*p, part_number(prov)?))).collect();
    let Some(&(first_path, (_, n))) = numbered.first() else { return Ok(()) };
    if numbered.len() != parts.len() {
        return Err(ReconError::MixedParts { path: first_path.to_path_buf() });
    }
    if let Some((p, (i, m))) = numbered.iter().find(|(_, (_, m))| *m != n) {
        return Err(ReconError::PartCountMismatch {
            path: p.to_path_buf(),
            index: *i,
            count: *m,
            first: first_path.to_path_buf(),
            first_count: n,
        });
    }
    let absent: Vec<String> =
        (1..=n).filter(|k| !numbered.iter().any(|(_, (i, _))| i == k)).take(10).map(|k| format!("{k}/{n}")).collect();
    if !absent.is_empty() {
        return Err(ReconError::PartsMissing { absent: absent.join(", "), count: n });
    }
    Ok(())
}

/// Joins HDF5 part volumes (from `--part I/N`) into one volume at `out`, bit for bit. Parts may come in any
/// order; they must have the same slice size and cover a contiguous range without overlap, and parts made
/// with `--part I/N` must include every part 1 to N.
pub fn merge_h5_parts(parts: &[PathBuf], out: &Path) -> Result<Range<usize>, ReconError> {
    use crate::output::{FIRST_SLICE_ATTR, PROVENANCE_PATH, VOLUME_PATH};
    let not_a_volume = |p: &Path, reason: String| ReconError::NotAVolume { path: p.to_path_buf(), reason };
    let unreadable = |p: &Path| {
        let path = p.to_path_buf();
        move |source| ReconError::PartRead { path, source }
    };
    let misfit = |p: &Path, reason: String| ReconError::PartsDoNotFit { path: p.to_path_buf(), reason };
    let mut info = Vec::new();
    for p in parts {
        let f = hdf5::File::open(p).map_err(|e| {
            not_a_volume(p, format!("cannot open: {e}; give the .h5 volumes of `beamline recon --format h5`"))
        })?;
        let ds = f
            .dataset(VOLUME_PATH)
            .map_err(|_| not_a_volume(p, format!("no {VOLUME_PATH}: not a `beamline recon --format h5` volume")))?;
        let first: u64 = ds.attr(FIRST_SLICE_ATTR).and_then(|a| a.read_scalar()).map_err(|_| {
            not_a_volume(p, format!("{VOLUME_PATH} has no {FIRST_SLICE_ATTR} attribute: not a `beamline recon` volume"))
        })?;
        let shape = ds.shape();
        if shape.len() != 3 || shape[1] != shape[2] {
            return Err(not_a_volume(p, format!("{VOLUME_PATH} has shape {shape:?}, expected [slices][n][n]")));
        }
        let prov: String = f
            .dataset(PROVENANCE_PATH)
            .and_then(|d| d.read_scalar::<hdf5::types::VarLenUnicode>())
            .map(|s| s.to_string())
            .unwrap_or_default();
        info.push((first as usize, shape[0], shape[1], p.clone(), prov));
    }
    check_part_numbers(&info.iter().map(|i| (i.3.as_path(), i.4.as_str())).collect::<Vec<_>>())?;
    info.sort_by_key(|i| i.0);
    let Some(head) = info.first() else { return Err(ReconError::NoParts) };
    let size = head.2;
    let mut next = head.0;
    for (first, n, s, p, _) in &info {
        if *s != size {
            return Err(misfit(p, format!("slices are {s} px, the other parts {size} px: merge the parts of one run")));
        }
        if *first != next {
            return Err(misfit(
                p,
                format!("starts at slice {first}, expected {next}: parts missing or overlapping; pass every part once"),
            ));
        }
        next = first + n;
    }
    let range = head.0..next;
    let prov = serde_json::json!({
        "merged_from": info.iter().map(|i| i.3.display().to_string()).collect::<Vec<_>>(),
        "part_provenance": info.iter().map(|i| i.4.clone()).collect::<Vec<_>>(),
    });
    let vol = H5Volume::create(out, range.start, range.len(), size, &prov.to_string())?;
    for (first, n, _, p, _) in &info {
        let f = hdf5::File::open(p).map_err(unreadable(p))?;
        let ds = f.dataset(VOLUME_PATH).map_err(unreadable(p))?;
        for k in 0..*n {
            let slice: Vec<f32> = ds
                .read_slice::<f32, _, ndarray::Ix2>(ndarray::s![k, .., ..])
                .map_err(unreadable(p))?
                .into_iter()
                .collect();
            vol.write(first + k, &slice)?;
        }
    }
    Ok(range)
}

/// Test-only hook: `BEAMLINE_TEST_READ_DELAY_MS=N` makes every slab read sleep N ms first (a slow
/// filesystem, for the timeline's bottleneck tests).
fn injected_read_delay() -> Option<std::time::Duration> {
    let ms: u64 = std::env::var("BEAMLINE_TEST_READ_DELAY_MS").ok()?.parse().ok()?;
    (ms > 0).then(|| std::time::Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prov(part: Option<(u64, u64)>) -> String {
        serde_json::json!({"software": "beamline", "parameters": {"part": part}}).to_string()
    }

    #[test]
    fn merge_needs_every_part_number_of_one_run() {
        let (a, b, c) = (Path::new("a.h5"), Path::new("b.h5"), Path::new("c.h5"));
        let (p1, p2, p3) = (prov(Some((1, 3))), prov(Some((2, 3))), prov(Some((3, 3))));
        let (p1, p2, p3) = (p1.as_str(), p2.as_str(), p3.as_str());
        assert!(check_part_numbers(&[(c, p3), (a, p1), (b, p2)]).is_ok());
        let none = prov(None);
        let none = none.as_str();
        assert!(check_part_numbers(&[(a, none), (b, none)]).is_ok(), "volumes made without --part");
        for (given, absent) in [(vec![(b, p2), (c, p3)], "1/3"), (vec![(a, p1), (b, p2)], "3/3")] {
            let e = check_part_numbers(&given).unwrap_err().to_string();
            assert!(e.contains(&format!("part(s) {absent} missing")), "{e}");
        }
        let other = prov(Some((2, 4)));
        let other = other.as_str();
        assert!(check_part_numbers(&[(a, p1), (b, other), (c, p3)]).unwrap_err().to_string().contains("of 3 parts"));
        assert!(check_part_numbers(&[(a, p1), (b, none)]).is_err());
    }
}
