//! A file to a volume: the entry point the CLI, the demo and scripts call.
//!
//! [`reconstruct_file`] opens the NXtomo file, chooses the centre (given or automatic), sizes slabs of
//! detector rows to the `--memory` budget, and drives them through [`crate::schedule::run`] with the reader
//! in this module and the TIFF or HDF5 writer, so CPU and GPU backends share everything else.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::backend::{Backend, BackendError, ReconSetup, Slab};
use crate::center::{find_center, CenterError, CenterEstimate};
use crate::cpu::{CpuBackend, PreprocessCounts, SinogramPipeline};
use crate::filter::FilterKind;
use crate::gpu::GpuError;
use crate::output::{
    file_sha256, slice_sha256, tiff_name, volume_sha256, write_provenance_at, write_tiff, H5Volume, Provenance,
    Scaling, TiffDepth, TiffPages, Voxel, WriteError,
};
use crate::preprocess::normalize_minus_log;
use crate::reader::{NxTomo, ReadError, Selection};
use crate::schedule::{self, ScheduleError};

/// How the rotation axis is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Bits {
    /// 32-bit float (default).
    F32,
    /// 16-bit unsigned, scaled from a range.
    U16,
    /// 8-bit unsigned, scaled from a range.
    U8,
}

/// Output container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Format {
    /// One TIFF file per slice in a folder.
    Tiff,
    /// One HDF5 file, `/entry/data/data`.
    Hdf5,
}

/// Which hardware reconstructs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackendChoice {
    /// CUDA when available, else CPU.
    Auto,
    /// The CPU (rayon).
    Cpu,
    /// CUDA GPUs.
    Cuda,
}

/// Everything `beamline recon` can be asked.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
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
    /// Projections, columns and binning read ([`Selection`]).
    pub selection: Selection,
    /// Replace what a previous run wrote to the output (and only that).
    pub overwrite: bool,
    // --- end issue 14 options ---
    // --- issue 15 options ---
    /// `--iterations`, `--nonnegative`, `--init` (checked against `method` when the run starts).
    pub method_options: crate::method::MethodOptions,
    /// Told of every SIRT/CGLS iteration of every slice (progress lines); not part of provenance.
    #[serde(skip)]
    pub on_iteration: Option<crate::iterative::IterationHook>,
    // --- end issue 15 options ---
    // --- issue 16 options ---
    /// `--gpu-dtype`: storage of the filtered sinogram on the CUDA backend (`None`: not given, f32).
    pub gpu_dtype: Option<crate::gpu::GpuDtype>,
    /// `--gpu-filter`: the CUDA backend's filter (`None`: not given, auto).
    pub gpu_filter: Option<crate::gpu::GpuFilter>,
    // --- end issue 16 options ---
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
    /// The CUDA backend's options: those given, defaults for the rest.
    pub fn gpu_options(&self) -> crate::gpu::GpuOptions {
        crate::gpu::GpuOptions {
            dtype: self.gpu_dtype.unwrap_or_default(),
            filter: self.gpu_filter.unwrap_or_default(),
        }
    }

    /// The GPU options given, as on the command line (`--gpu-dtype f16 --gpu-filter fft`), or `None`.
    pub fn gpu_options_given(&self) -> Option<String> {
        let given: Vec<String> = [
            self.gpu_dtype.map(|d| format!("--gpu-dtype {}", d.name())),
            self.gpu_filter.map(|f| format!("--gpu-filter {}", f.name())),
        ]
        .into_iter()
        .flatten()
        .collect();
        (!given.is_empty()).then(|| given.join(" "))
    }
}

impl Default for ReconOptions {
    fn default() -> ReconOptions {
        ReconOptions::new("", "")
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
            selection: Selection::default(),
            overwrite: false,
            // --- end issue 14 defaults ---
            method_options: crate::method::MethodOptions::default(),
            on_iteration: None,
            gpu_dtype: None,
            gpu_filter: None,
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
    /// Whether [`ReconSummary::backend`] is worth telling: a GPU run, or `--backend auto` falling back to the
    /// CPU on a machine whose CUDA driver is present but failed (not a machine without one).
    pub backend_worth_telling: bool,
    /// SHA-256 of the input file.
    pub input_sha256: String,
    /// SHA-256 of the volume (the slice hashes, [`crate::output::volume_sha256`]).
    pub output_sha256: String,
    /// SHA-256 of each slice's float32 values, in slice order.
    pub slice_sha256: Vec<String>,
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
    /// `--center` lies outside the detector.
    #[error(
        "--center {center} is outside the {cols}-column detector (columns 0 to {last}, edges at -0.5 and \
         {edge}); --center takes the detector column the rotation axis projects onto (the middle is {middle}), \
         or use --center auto to find it from the data"
    , last = edge_of(.cols, 1.0), edge = edge_of(.cols, 0.5))]
    BadCenter {
        /// The centre given.
        center: f64,
        /// Detector columns.
        cols: usize,
        /// The detector's middle column.
        middle: f64,
    },
    /// `--memory` cannot hold one slab of one row.
    #[error(
        "--memory {} is too small for this file: the smallest slab (one detector row of every frame) needs \
         about {} with {in_flight} slab(s) in flight over {devices} device(s); give at least --memory {}M",
        size_text(*.memory), size_text(*.per_row), .need.div_ceil(1 << 20)
    )]
    MemoryTooSmall {
        /// The budget, bytes.
        memory: u64,
        /// Bytes one row costs with every slab in flight.
        per_row: u64,
        /// Slabs in flight at most.
        in_flight: usize,
        /// Devices sharing the budget.
        devices: usize,
        /// The smallest budget that works, bytes.
        need: u64,
    },
    /// `--center` lies inside the detector but outside the columns kept by `--start-column/--end-column`.
    #[error(
        "--center {center} is outside the columns {start}..{end} kept by --start-column/--end-column; the axis \
         must project onto a column that is read"
    )]
    CenterOutsideColumns {
        /// The centre given (detector columns).
        center: f64,
        /// First column kept.
        start: usize,
        /// One past the last column kept.
        end: usize,
    },
    /// The output holds files and `--overwrite` was not given.
    #[error(
        "{path} is not empty ({entries} entries): choose a new output, or pass --overwrite to remove what a \
         previous `beamline recon` wrote there (the files its provenance lists) and write anew"
    )]
    OutputNotEmpty {
        /// The output folder or file.
        path: PathBuf,
        /// Entries found.
        entries: usize,
    },
    /// The output file exists and `--overwrite` was not given.
    #[error("{path} exists: choose a new output, or pass --overwrite to replace it")]
    OutputExists {
        /// The file.
        path: PathBuf,
    },
    /// `--overwrite` would remove something no `beamline recon` wrote.
    #[error("--overwrite: {path}: {reason}; nothing was removed")]
    NotOurs {
        /// The folder or file.
        path: PathBuf,
        /// What is there.
        reason: String,
    },
    /// `beamline rerun` could not use what it was given.
    #[error("{path}: {reason}")]
    Rerun {
        /// The output given.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The input could not be hashed.
    #[error("{path}: computing its SHA-256 for the provenance: {source}")]
    InputHash {
        /// The input.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// `--gpu-dtype`/`--gpu-filter` with a run that cannot use a GPU.
    #[error(
        "{given} set how the CUDA backend works, but {why} runs on the CPU, where they would change nothing: \
         leave them out, or use --backend cuda (or auto, which uses them when a GPU is there)"
    )]
    GpuOptionsOnCpu {
        /// The options as given.
        given: String,
        /// What makes the run CPU-only (`--backend cpu`, `--method gridrec`).
        why: String,
    },
    /// A method other than FBP was asked of a CUDA backend.
    #[error("--method {0} runs on the CPU; use --backend cpu or auto, or --method fbp on CUDA")]
    MethodNeedsCpu(crate::method::Method),
    /// Method settings that do not fit the method.
    #[error(transparent)]
    MethodOptions(#[from] crate::method::MethodOptionError),
    /// `--offset-axis` does not apply to this scan or centre.
    #[error("{path}: {reason}")]
    OffsetAxis {
        /// File.
        path: PathBuf,
        /// Why (in the message, said once).
        reason: crate::offset_axis::StitchError,
    },
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

/// Rows per slab that keep the slabs in flight over `devices` devices within `memory_bytes`, for the backends'
/// geometry `setup` (the doubled width and half the angles of an offset-axis scan) and what `prep` does while
/// reading: phase retrieval reads [`crate::paganin::PaganinParams::halo_rows`] rows of context above and below
/// every slab and filters copies of its frames; stitching holds the `-log` rows and the stitched slab at once.
pub fn slab_rows_for_budget(
    file: &NxTomo,
    setup: &ReconSetup,
    memory_bytes: u64,
    devices: usize,
    prep: &Prepare,
) -> Result<usize, ReconError> {
    let threads = rayon::current_num_threads() as u64;
    let cost = SlabCost {
        frames_row: file.slab_bytes_per_row() as u64,
        frames: file.frames() as u64,
        cols: file.cols() as u64,
        angles: setup.angles_rad.len() as u64,
        sino_cols: setup.n_cols as u64,
        out_size: setup.out_size as u64,
        stitched: prep.stitch.is_some(),
        halo_rows: prep.phase.map_or(0, |p| p.halo_rows() as u64),
        threads,
    };
    let in_flight = schedule::max_in_flight(devices) as u64;
    let (per_row, fixed) = cost.bytes(in_flight, devices.max(1) as u64);
    let rows = memory_bytes.saturating_sub(fixed) / per_row;
    if rows == 0 {
        return Err(ReconError::MemoryTooSmall {
            memory: memory_bytes,
            per_row: per_row + fixed,
            in_flight: in_flight as usize,
            devices,
            need: per_row + fixed,
        });
    }
    Ok((rows as usize).min(MAX_SLAB_ROWS))
}

/// What one slab row costs ([`slab_rows_for_budget`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlabCost {
    /// Bytes of one detector row of every frame as read (f32).
    pub frames_row: u64,
    /// Frames (projections and references) in the file.
    pub frames: u64,
    /// Columns read.
    pub cols: u64,
    /// Angles of the backends' sinogram.
    pub angles: u64,
    /// Columns of the backends' sinogram (the stitched width for an offset-axis scan).
    pub sino_cols: u64,
    /// Output slice side.
    pub out_size: u64,
    /// Offset-axis stitching while reading.
    pub stitched: bool,
    /// Paganin context rows above and below each slab (0 without phase retrieval).
    pub halo_rows: u64,
    /// Threads filtering projections at once (each with its padded FFT grid).
    pub threads: u64,
}

impl SlabCost {
    /// `(bytes per slab row, bytes per slab whatever its rows)` with `in_flight` slabs queued and `devices`
    /// devices working. Per row: every slab in flight holds its rows as the backends get them (raw frames, or
    /// the stitched transmissions) or its output slices; the slab being read holds its raw rows, the stitched
    /// copy and, with Paganin, the filtered frames and the threads' padded FFT rows; every device holds a
    /// sinogram copy, the padded sinogram (~1.42 x out_size wide) and its output. Per slab: Paganin's context
    /// rows (raw and filtered) and their padded FFT rows.
    pub fn bytes(&self, in_flight: u64, devices: u64) -> (u64, u64) {
        let out_row = self.out_size * self.out_size * 4;
        let sino_row = self.angles * self.sino_cols * 4;
        let slab_row = if self.stitched { sino_row + 3 * self.sino_cols * 4 } else { self.frames_row };
        let padded = (self.sino_cols as f64 + 1.42 * self.out_size as f64 + 8.0) as u64;
        let working = self.angles * (self.sino_cols + padded) * 4 + out_row;
        // Paganin: filtered frames (f32) and each thread's padded complex grid (power-of-two width, up to 2x).
        let fft_row = 2 * (self.cols + 2 * self.halo_rows).next_power_of_two() * 8;
        let phase_row = if self.halo_rows > 0 { self.frames * self.cols * 4 + self.threads * 2 * fft_row } else { 0 };
        let read_row = self.frames_row + if self.stitched { slab_row } else { 0 } + phase_row;
        let per_row = in_flight * (slab_row + out_row) + read_row + devices * working;
        let fixed = 2 * self.halo_rows * (self.frames_row + phase_row);
        (per_row, fixed)
    }
}

/// `cols - minus`, for messages about detector columns.
fn edge_of(cols: &usize, minus: f64) -> f64 {
    *cols as f64 - minus
}

/// A byte count as people write it: `512 bytes`, `1.0 KiB`, `3.2 MiB`, `1.50 GiB`.
pub fn size_text(bytes: u64) -> String {
    const K: f64 = 1024.0;
    let b = bytes as f64;
    if b < K {
        format!("{bytes} bytes")
    } else if b < K * K {
        format!("{:.1} KiB", b / K)
    } else if b < K * K * K {
        format!("{:.1} MiB", b / (K * K))
    } else {
        format!("{:.2} GiB", b / (K * K * K))
    }
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

// --- issue 15 §5 (offset axis) and §2 (Paganin everywhere) ---
/// What happens to detector rows between the file and the backends, the same for the reconstruction, the
/// automatic centre, the centre sweep and the automatic output range: phase retrieval of every projection,
/// then, for a half-acquisition scan, stitching into the doubled detector.
#[derive(Debug, Clone, Default)]
pub struct Prepare {
    /// `--phase paganin`, resolved.
    pub phase: Option<crate::paganin::PaganinParams>,
    /// `--offset-axis`: the axis in the columns read and the stitched geometry.
    pub stitch: Option<(f64, crate::offset_axis::StitchPlan)>,
}

/// Detector rows `r` flat-fielded or, with `phase`, phase-retrieved (then transmissions: dark 0, flats 1).
pub fn read_corrected(
    file: &NxTomo,
    phase: Option<&crate::paganin::PaganinParams>,
    r: Range<usize>,
    counts: &PreprocessCounts,
) -> Result<Slab, ReadError> {
    match phase {
        None => file.read_slab(r),
        Some(p) => read_phase_retrieved(file, p, r, counts),
    }
}

/// `-log` of every row of `slab` in place (`[row][angle][col]`, `n_cols` columns); clamps counted.
fn minus_log_in_place(slab: &mut Slab, n_cols: usize, counts: &PreprocessCounts) {
    let per = slab.flat_weight.len() * n_cols;
    for r in 0..slab.rows.len() {
        let row = r * n_cols..(r + 1) * n_cols;
        let clamped = normalize_minus_log(
            &mut slab.projections[r * per..(r + 1) * per],
            &slab.dark[row.clone()],
            &slab.flat_before[row.clone()],
            &slab.flat_after[row],
            &slab.flat_weight,
        );
        counts.clamped.fetch_add(clamped, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Detector rows `r` as the backends get them under `prep`: raw counts with their references, or
/// transmissions (dark 0, flats 1) of the phase-retrieved and/or stitched rows, in the geometry of
/// [`setup_prepared`].
pub fn read_prepared(
    file: &NxTomo,
    prep: &Prepare,
    r: Range<usize>,
    counts: &PreprocessCounts,
) -> Result<Slab, ReadError> {
    let mut slab = read_corrected(file, prep.phase.as_ref(), r, counts)?;
    let Some((center, plan)) = &prep.stitch else { return Ok(slab) };
    let _span = tracing::info_span!("recon.stitch", rows = slab.rows.len(), cols = plan.n_cols).entered();
    let (nc, w, na) = (file.cols(), plan.n_cols, plan.angles_rad.len());
    let angles: Vec<f32> = file.angles().iter().map(|a| a.to_radians() as f32).collect();
    minus_log_in_place(&mut slab, nc, counts);
    let per = angles.len() * nc;
    let mut projections = Vec::with_capacity(slab.rows.len() * na * w);
    for row in slab.projections.chunks(per.max(1)) {
        let s = crate::offset_axis::stitch_360(row, &angles, nc, *center).map_err(|e| ReadError::Values {
            path: file.path().to_path_buf(),
            dataset: file.data_path().to_string(),
            reason: format!("offset-axis stitching: {e}"),
        })?;
        projections.extend(s.sinogram.iter().map(|v| (-v).exp()));
    }
    let k = slab.rows.len();
    Ok(Slab {
        rows: slab.rows,
        projections,
        dark: vec![0.0; k * w],
        flat_before: vec![1.0; k * w],
        flat_after: vec![1.0; k * w],
        flat_weight: vec![0.0; na],
    })
}

/// Rows `r` as `-log` sinograms `[row][angle][col]` under `prep` (stitched ones for an offset-axis scan).
pub fn read_minus_log_prepared(file: &NxTomo, prep: &Prepare, r: Range<usize>) -> Result<Vec<f32>, ReconError> {
    let counts = PreprocessCounts::default();
    let mut slab = read_prepared(file, prep, r, &counts)?;
    let n_cols = slab.dark.len() / slab.rows.len().max(1);
    minus_log_in_place(&mut slab, n_cols, &counts);
    Ok(slab.projections)
}

/// The setup for `file` with `opts`, a resolved centre (columns read) and `prep`: the stitched geometry for
/// an offset-axis scan (output side: the doubled field unless `--size`), else [`setup_for`].
pub fn setup_prepared(file: &NxTomo, opts: &ReconOptions, center: f64, prep: &Prepare) -> ReconSetup {
    let mut setup = setup_for(file, opts, center);
    if let Some((_, plan)) = &prep.stitch {
        setup.angles_rad = plan.angles_rad.clone();
        setup.n_cols = plan.n_cols;
        setup.center = plan.center;
        setup.out_size = opts.out_size.unwrap_or(plan.n_cols);
    }
    setup
}

/// The stitched geometry for an axis at `center` (columns read), or why `--offset-axis` does not apply.
pub fn stitch_plan(
    file: &NxTomo,
    side: crate::offset_axis::OffsetAxis,
    center: f64,
) -> Result<(f64, crate::offset_axis::StitchPlan), ReconError> {
    let err = |reason| ReconError::OffsetAxis { path: file.path().to_path_buf(), reason };
    let angles: Vec<f32> = file.angles().iter().map(|a| a.to_radians() as f32).collect();
    crate::offset_axis::check_full_turn(&angles).map_err(err)?;
    side.check(center, file.cols()).map_err(err)?;
    Ok((center, crate::offset_axis::plan(&angles, file.cols(), center).map_err(err)?))
}

/// `--phase` resolved against what the file records.
pub fn phase_of(opts: &ReconOptions) -> Result<Option<crate::paganin::PaganinParams>, ReconError> {
    opts.method_options
        .phase
        .as_ref()
        .map(|p| {
            p.resolve(&crate::paganin::FilePhysics::of(&opts.input))
                .map_err(|reason| ReconError::Phase { path: opts.input.clone(), reason })
        })
        .transpose()
}
// --- end issue 15 §5 / §2 ---

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
    /// `--center auto --offset-axis`: opposite projections compared over their overlap.
    OffsetPairs,
}

impl CenterMode {
    /// The name in provenance: `given`, `auto`, `vo`, `auto-vo`, `auto-offset-axis`.
    pub fn name(self) -> &'static str {
        match self {
            CenterMode::Given => "given",
            CenterMode::Pairs => "auto",
            CenterMode::Vo => "vo",
            CenterMode::AutoVo => "auto-vo",
            CenterMode::OffsetPairs => "auto-offset-axis",
        }
    }
}

/// [`auto_center`] for `--center auto` (pairs, falling back to Vo's metric when the angles hold no 0/180-degree
/// pair) or `--center vo`; a given column is returned as is. Says which way the centre was found.
pub fn auto_center_with(file: &NxTomo, choice: CenterChoice) -> Result<(CenterEstimate, CenterMode), ReconError> {
    auto_center_prepared(file, choice, None, None)
}

/// [`auto_center_with`] on the rows as they are reconstructed: phase-retrieved with `phase`, and for an
/// offset-axis scan (`offset`) each projection compared with the mirror of the one half a turn later over
/// their overlap ([`crate::center::find_center_offset`]), the axis found checked to lie near the edge asked.
pub fn auto_center_prepared(
    file: &NxTomo,
    choice: CenterChoice,
    phase: Option<&crate::paganin::PaganinParams>,
    offset: Option<crate::offset_axis::OffsetAxis>,
) -> Result<(CenterEstimate, CenterMode), ReconError> {
    if let CenterChoice::Column(c) = choice {
        return Ok((CenterEstimate { center: c, residual: 0.0, references: 0 }, CenterMode::Given));
    }
    let rows = file.rows();
    let lo = (rows / 2).saturating_sub(4);
    let hi = (lo + 8).min(rows);
    let _span = tracing::info_span!("recon.center", rows = hi - lo).entered();
    let angles: Vec<f32> = file.angles().iter().map(|a| a.to_radians() as f32).collect();
    let err = |reason| ReconError::Center { path: file.path().to_path_buf(), reason };
    if let Some(side) = offset {
        let stitch_err = |reason| ReconError::OffsetAxis { path: file.path().to_path_buf(), reason };
        if choice == CenterChoice::Vo {
            return Err(stitch_err(crate::offset_axis::StitchError::VoCentre));
        }
        crate::offset_axis::check_full_turn(&angles).map_err(stitch_err)?;
        let prep = Prepare { phase: phase.copied(), stitch: None };
        let sinos = read_minus_log_prepared(file, &prep, lo..hi)?;
        let est = crate::center::find_center_offset(&sinos, file.cols(), &angles).map_err(err)?;
        side.check(est.center, file.cols()).map_err(stitch_err)?;
        return Ok((est, CenterMode::OffsetPairs));
    }
    let sinos = match phase {
        None => read_minus_log(file, lo..hi)?,
        Some(p) => read_minus_log_prepared(file, &Prepare { phase: Some(*p), stitch: None }, lo..hi)?,
    };
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
///
/// `center` is in the columns read ([`NxTomo::to_read_column`]), as are the setup's.
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

    fn stage_times(&self) -> Option<crate::gpu::StageTimes> {
        self.inner.stage_times()
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
    if let (Some(given), BackendChoice::Cpu) = (opts.gpu_options_given(), backend) {
        let why = match opts.backend {
            BackendChoice::Cpu => "--backend cpu".to_string(),
            _ => format!("--method {}", opts.method.name()),
        };
        return Err(ReconError::GpuOptionsOnCpu { given, why });
    }
    let gpu = opts.gpu_options();
    let mut choose = |cpu: &CpuBackend| {
        crate::gpu::select_backends_with(backend, cpu, gpu)
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
    let file = NxTomo::open_selected(&opts.input, &opts.selection)?;
    // --- issue 15 §2: the phase retrieval's parameters, options over what the file records ---
    let phase = phase_of(opts)?;
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
    // `center` is in the columns read (cropped, binned), `center_detector` in detector columns.
    let offset = opts.method_options.offset_axis;
    let (center, residual) = match opts.center {
        CenterChoice::Column(c) => (given_center(&file, c)?, None),
        // --- issue 15 §4: `auto` falls back to Vo's metric; `vo` asks for it ---
        // --- issue 15 §2/§5: on the phase-retrieved rows; over the overlap of an offset-axis scan ---
        choice => {
            let (est, mode) = auto_center_prepared(&file, choice, phase.as_ref(), offset)?;
            center_mode = mode;
            tracing::info!(center = est.center, residual = est.residual, mode = mode.name(), "automatic centre");
            (est.center, Some(est.residual))
        }
    };
    let center_detector = file.to_detector_column(center);
    let prep = Prepare { phase, stitch: offset.map(|side| stitch_plan(&file, side, center)).transpose()? };
    if let Some((_, plan)) = &prep.stitch {
        tracing::info!(
            columns = plan.n_cols,
            center = plan.center,
            overlap = plan.overlap,
            angles = plan.angles_rad.len(),
            "offset-axis scan stitched into the doubled field of view"
        );
    }
    let setup = setup_prepared(&file, opts, center, &prep);
    crate::cpu::validate(&setup)?;
    let counts = Arc::new(PreprocessCounts::default());
    // The budget is shared by every device's slabs, so slabs are sized once the devices are known; until
    // then the CPU backend (and through it the GPUs) asks for the most rows a slab may hold.
    let iteration_log = Arc::new(crate::iterative::IterationLog::with_hook(opts.on_iteration.clone()));
    let cpu =
        CpuBackend { iterations: iteration_log.clone(), ..cpu_backend(opts.threads, MAX_SLAB_ROWS, counts.clone())? };
    let (devices, mut backend_line) = choose(&cpu)?;
    let on_cpu_only = devices.iter().all(|d| d.name().starts_with("cpu"));
    // `--backend auto` with GPU options on a node without a usable GPU: the run goes on, and says so.
    let gpu_given_unused = opts.gpu_options_given().filter(|_| on_cpu_only);
    if let Some(given) = &gpu_given_unused {
        backend_line.push_str(&format!("; {given} not applied: no GPU ran"));
    }
    let backend_worth_telling = !on_cpu_only
        || gpu_given_unused.is_some()
        || (opts.backend == BackendChoice::Auto
            && backend_line.contains("using the CPU")
            && crate::gpu::driver_present());
    let slab_rows = slab_rows_for_budget(&file, &setup, opts.memory_bytes, devices.len(), &prep)?;
    let devices: Vec<Box<dyn Backend>> =
        devices.into_iter().map(|inner| Box::new(BudgetCap { inner, rows: slab_rows }) as Box<dyn Backend>).collect();
    tracing::info!(backend = %backend_line, "backend selected");
    let out_size = setup.out_size;
    let kind = output_kind(opts);
    let planned = planned_outputs(&kind, rows.clone());
    prepare_output(&kind, opts, &planned)?;
    let depth = match opts.bits {
        Bits::F32 => TiffDepth::F32,
        b => {
            let (lo, hi) = match opts.range {
                Some(r) => r,
                None => {
                    // The middle slice as it is reconstructed (phase-retrieved, stitched).
                    let mid = (rows.start + rows.end) / 2;
                    let sino = read_minus_log_prepared(&file, &prep, mid..mid + 1)?;
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
    let voxel = voxel_of(&file);
    let mut provenance = Provenance {
        software: format!("beamline {}", env!("CARGO_PKG_VERSION")),
        input: opts.input.display().to_string(),
        dataset: file.data_path().to_string(),
        created_unix,
        parameters: serde_json::json!({
            "center": center_detector,
            "center_read_columns": center,
            "center_mode": center_mode.name(),
            "center_residual": residual,
            "filter": opts.filter.name(),
            "method": opts.method.name(),
            "rows": [rows.start, rows.end],
            "part": opts.part,
            "out_size": setup.out_size,
            "stripe_size": opts.stripe_size,
            "zinger": opts.zinger,
            "bits": opts.bits,
            "backend": opts.backend.name(),
            "backend_used": &backend_line,
            "gpu": {
                "dtype": opts.gpu_options().dtype.name(),
                "filter": opts.gpu_options().filter.name(),
                "given": opts.gpu_options_given(),
                "applied": !on_cpu_only,
            },
            "angles": file.angles().len(),
            "flats_before_after_darks": file.reference_counts(),
            "allow_incomplete": opts.allow_incomplete,
            "iterative": opts.method.iterative().map(|_| serde_json::json!({
                "iterations": iterative.iterations,
                "nonnegative": iterative.nonnegative,
                "init": iterative.init,
                "mask": "circular: the disc inscribed in the slice; zero outside",
            })),
            "offset_axis": prep.stitch.as_ref().map(|(_, plan)| serde_json::json!({
                "side": offset.map(|o| o.name()),
                "stitched_columns": plan.n_cols,
                "stitched_center": plan.center,
                "overlap_columns": plan.overlap,
                "angles_used": plan.angles_rad.len(),
                "applied": "each projection of the first half turn joined with the mirrored one half a turn later (interpolated in angle), linear blend across the overlap, after -log",
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
            "input_layout": file.layout().name(),
            "projections": opts.selection.projections,
            "columns": [file.columns().start, file.columns().end],
            "binning": file.binning(),
            "binning_mode": "mean",
            "voxel_size": &voxel,
            "convention": "column c has its centre at c; center = detector column of the rotation axis; slice pixel (row, col) at x = col - (n-1)/2, y = (n-1)/2 - row",
        }),
        input_sha256: None,
        options: serde_json::to_value(opts).unwrap_or_default(),
        outputs: planned.iter().map(|p| p.0.clone()).collect(),
        first_slice: rows.start,
        slice_sha256: Vec::new(),
        output_sha256: None,
        scaling: Scaling::of(depth),
        complete: false,
    };
    // The input's hash is computed beside the reconstruction, which reads the same file.
    let input_hash = {
        let path = opts.input.clone();
        std::thread::spawn(move || file_sha256(&path))
    };
    let description = provenance.description();
    enum Sink {
        Folder(PathBuf),
        Pages(std::sync::Mutex<TiffPages>),
        H5(H5Volume),
    }
    let sink = match &kind {
        OutputKind::Hdf5(path) => {
            Sink::H5(H5Volume::create(path, rows.start, rows.len(), out_size, &description, &voxel)?)
        }
        OutputKind::TiffFile(path) => {
            Sink::Pages(std::sync::Mutex::new(TiffPages::create(path, rows.start, out_size, depth, &description)?))
        }
        OutputKind::TiffFolder(dir) => Sink::Folder(dir.clone()),
    };
    if let Some(p) = provenance_file(&kind, opts) {
        write_provenance_at(&p, &provenance)?;
    }
    let total = rows.len();
    let mut done = 0;
    progress(Progress { done, total });
    let read_delay = injected_read_delay();
    let read = |r: Range<usize>| -> Result<Slab, ReadError> {
        if let Some(d) = read_delay {
            std::thread::sleep(d);
        }
        read_prepared(&file, &prep, r, &counts)
    };
    let mut hashes = std::collections::BTreeMap::new();
    let write = |r: Range<usize>, data: Vec<f32>| -> Result<(), WriteError> {
        let _span = tracing::info_span!("recon.write", rows = r.len()).entered();
        for (k, slice) in data.chunks(out_size * out_size).enumerate() {
            hashes.insert(r.start + k, slice_sha256(slice));
        }
        match &sink {
            Sink::H5(vol) => vol.write(r.start, &data)?,
            Sink::Pages(pages) => pages
                .lock()
                .map_err(|_| WriteError::Io { path: opts.output.clone(), reason: "writer poisoned".into() })?
                .write(r.start, &data)?,
            Sink::Folder(dir) => {
                for (k, slice) in data.chunks(out_size * out_size).enumerate() {
                    let path = dir.join(tiff_name(r.start + k));
                    write_tiff(&path, out_size, slice, depth, &description)?;
                }
            }
        }
        done += r.len();
        progress(Progress { done, total });
        Ok(())
    };
    let report = schedule::run(&setup, devices, rows.clone(), read, write)?;
    let input_sha256 = input_hash
        .join()
        .map_err(|_| ReconError::Rerun { path: opts.input.clone(), reason: "the hashing thread panicked".into() })?
        .map_err(|source| ReconError::InputHash { path: opts.input.clone(), source })?;
    provenance.slice_sha256 = hashes.into_values().collect();
    let output_sha256 = volume_sha256(&provenance.slice_sha256);
    provenance.output_sha256 = Some(output_sha256.clone());
    provenance.input_sha256 = Some(input_sha256.clone());
    provenance.complete = true;
    if let Sink::H5(vol) = &sink {
        vol.set_provenance(&provenance.to_json())?;
    }
    drop(sink);
    if let Some(p) = provenance_file(&kind, opts) {
        write_provenance_at(&p, &provenance)?;
    }
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
        center: center_detector,
        center_residual: residual,
        clamped,
        zingers: counts.zingers.load(std::sync::atomic::Ordering::Relaxed),
        slab_rows: report.slab_rows,
        devices: report.slabs_per_device,
        output: kind.path().to_path_buf(),
        gups: updates / seconds.max(1e-9) / 1e9,
        backend: backend_line,
        backend_worth_telling,
        input_sha256,
        output_sha256,
        slice_sha256: provenance.slice_sha256,
        center_mode: center_mode.name(),
        residuals: iteration_log.residuals(),
    })
}

// --- issue 14: options checked against the data, outputs that keep their meaning, reruns ---

/// A given `--center` (detector columns) checked against the detector and the columns read, converted to
/// the columns read.
pub fn given_center(file: &NxTomo, c: f64) -> Result<f64, ReconError> {
    let cols = file.detector()[1];
    if !c.is_finite() || c < -0.5 || c > cols as f64 - 0.5 {
        return Err(ReconError::BadCenter { center: c, cols, middle: (cols as f64 - 1.0) / 2.0 });
    }
    let read = file.to_read_column(c);
    if read < -0.5 || read > file.cols() as f64 - 0.5 {
        let r = file.columns();
        return Err(ReconError::CenterOutsideColumns { center: c, start: r.start, end: r.end });
    }
    Ok(read)
}

/// The voxel size of the volume: the input's pixel size ([`crate::inspect::pixel_size`]) times the
/// binning, or `binning` in `pixel` units when the input records none.
pub fn voxel_of(file: &NxTomo) -> Voxel {
    let b = file.binning() as f64;
    match crate::inspect::pixel_size(file.path()) {
        Some((size, units)) => Voxel { size: size * b, units },
        None => Voxel { size: b, units: "pixel".into() },
    }
}

/// What `-o` and `--format` ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputKind {
    /// A folder of `slice_NNNNN.tif` files plus `provenance.json`.
    TiffFolder(PathBuf),
    /// One multi-page TIFF (`-o NAME.tif`), provenance beside it in `NAME.provenance.json`.
    TiffFile(PathBuf),
    /// One HDF5 file (`-o NAME.h5`, or `volume.h5` in the folder given).
    Hdf5(PathBuf),
}

impl OutputKind {
    /// The folder or file written.
    pub fn path(&self) -> &Path {
        match self {
            OutputKind::TiffFolder(p) | OutputKind::TiffFile(p) | OutputKind::Hdf5(p) => p,
        }
    }
}

/// Whether `path` names a TIFF file (`.tif`, `.tiff`).
pub fn is_tiff_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("tif") || e.eq_ignore_ascii_case("tiff"))
}

/// Whether `path` names an HDF5 file (`.h5`, `.hdf5`, `.nxs`).
pub fn is_h5_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "h5" || e == "hdf5" || e == "nxs")
}

/// The output `opts` asks for.
pub fn output_kind(opts: &ReconOptions) -> OutputKind {
    match opts.format {
        Format::Hdf5 => OutputKind::Hdf5(h5_path(opts)),
        Format::Tiff if is_tiff_file(&opts.output) => OutputKind::TiffFile(opts.output.clone()),
        Format::Tiff => OutputKind::TiffFolder(opts.output.clone()),
    }
}

/// Files a run writes for `rows`, as `(name relative to the folder, path)`.
fn planned_outputs(kind: &OutputKind, rows: Range<usize>) -> Vec<(String, PathBuf)> {
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match kind {
        OutputKind::TiffFolder(dir) => rows.map(|r| (tiff_name(r), dir.join(tiff_name(r)))).collect(),
        OutputKind::TiffFile(p) => vec![(name(p), p.clone()), (name(&sidecar(p)), sidecar(p))],
        OutputKind::Hdf5(p) => vec![(name(p), p.clone())],
    }
}

/// The provenance file beside a multi-page TIFF: `NAME.provenance.json`.
pub fn sidecar(tiff: &Path) -> PathBuf {
    tiff.with_extension("provenance.json")
}

/// Where the provenance JSON file goes (`None` for HDF5, which holds it).
fn provenance_file(kind: &OutputKind, opts: &ReconOptions) -> Option<PathBuf> {
    match kind {
        OutputKind::TiffFolder(dir) => Some(dir.join(match opts.part {
            Some((i, n)) => format!("provenance_part{i:03}of{n:03}.json"),
            None => "provenance.json".into(),
        })),
        OutputKind::TiffFile(p) => Some(sidecar(p)),
        OutputKind::Hdf5(_) => None,
    }
}

/// Reads the provenance a previous run left: `provenance*.json` in a folder, the sidecar of a TIFF file,
/// `/entry/provenance` of an HDF5 volume.
pub fn read_provenance(path: &Path) -> Result<Provenance, ReconError> {
    let bad = |reason: String| ReconError::Rerun { path: path.to_path_buf(), reason };
    let text = if path.is_dir() {
        let p = path.join("provenance.json");
        std::fs::read_to_string(&p).map_err(|e| bad(format!("no readable provenance.json ({e})")))?
    } else if is_tiff_file(path) {
        let p = sidecar(path);
        std::fs::read_to_string(&p).map_err(|e| bad(format!("no readable {} ({e})", p.display())))?
    } else {
        let f = hdf5::File::open(path).map_err(|e| bad(format!("not a readable HDF5 volume ({e})")))?;
        f.dataset(crate::output::PROVENANCE_PATH)
            .and_then(|d| d.read_scalar::<hdf5::types::VarLenUnicode>())
            .map(|s| s.to_string())
            .map_err(|_| bad(format!("no {}: not a `beamline recon` volume", crate::output::PROVENANCE_PATH)))?
    };
    serde_json::from_str(&text).map_err(|e| bad(format!("provenance is not what `beamline recon` writes: {e}")))
}

/// Refuses an output that holds anything unless `--overwrite`; with it, removes what previous runs wrote
/// there (the files their provenance lists), and only that, refusing if anything else is there.
fn prepare_output(kind: &OutputKind, opts: &ReconOptions, planned: &[(String, PathBuf)]) -> Result<(), ReconError> {
    let io = |p: &Path, e: std::io::Error| {
        ReconError::Write(WriteError::Io { path: p.to_path_buf(), reason: e.to_string() })
    };
    match kind {
        OutputKind::TiffFolder(dir) if opts.part.is_none() => {
            let entries: Vec<PathBuf> = match std::fs::read_dir(dir) {
                Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
                Err(_) => Vec::new(),
            };
            if !entries.is_empty() {
                if !opts.overwrite {
                    return Err(ReconError::OutputNotEmpty { path: dir.clone(), entries: entries.len() });
                }
                let mut ours = std::collections::BTreeSet::new();
                for e in &entries {
                    let name = e.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    if name.starts_with("provenance") && name.ends_with(".json") {
                        let prov: Option<Provenance> =
                            std::fs::read_to_string(e).ok().and_then(|t| serde_json::from_str(&t).ok());
                        if let Some(prov) = prov {
                            ours.insert(name);
                            ours.extend(prov.outputs.into_iter().filter(|o| !o.contains('/') && !o.contains("..")));
                        }
                    }
                }
                let foreign: Vec<&PathBuf> = entries
                    .iter()
                    .filter(|e| !e.file_name().is_some_and(|n| ours.contains(n.to_string_lossy().as_ref())))
                    .collect();
                if let Some(first) = foreign.first() {
                    return Err(ReconError::NotOurs {
                        path: dir.clone(),
                        reason: format!(
                            "{} entries were not written by `beamline recon` (e.g. {}); move them or choose a new output",
                            foreign.len(),
                            first.display()
                        ),
                    });
                }
                for e in &entries {
                    std::fs::remove_file(e).map_err(|x| io(e, x))?;
                }
            }
            std::fs::create_dir_all(dir).map_err(|e| io(dir, e))
        }
        OutputKind::TiffFolder(dir) => {
            // One part of a job array: the folder is shared, only this part's files must be new.
            let exists: Vec<&PathBuf> = planned.iter().map(|p| &p.1).filter(|p| p.exists()).collect();
            if let Some(first) = exists.first() {
                if !opts.overwrite {
                    return Err(ReconError::OutputExists { path: (*first).clone() });
                }
                for p in exists {
                    std::fs::remove_file(p).map_err(|x| io(p, x))?;
                }
            }
            std::fs::create_dir_all(dir).map_err(|e| io(dir, e))
        }
        OutputKind::TiffFile(path) | OutputKind::Hdf5(path) => {
            if path.exists() {
                if !opts.overwrite {
                    return Err(ReconError::OutputExists { path: path.clone() });
                }
                if path.is_dir() {
                    return Err(ReconError::NotOurs { path: path.clone(), reason: "is a folder".into() });
                }
                read_provenance(path).map_err(|_| ReconError::NotOurs {
                    path: path.clone(),
                    reason: "has no provenance of a `beamline recon` run".into(),
                })?;
                for (_, p) in planned {
                    if p.exists() {
                        std::fs::remove_file(p).map_err(|x| io(p, x))?;
                    }
                }
            }
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
            }
            Ok(())
        }
    }
}

/// What `beamline rerun` found.
#[derive(Debug, Clone, Serialize)]
pub struct RerunReport {
    /// The input file re-read.
    pub input: PathBuf,
    /// Its SHA-256 as recorded.
    pub input_sha256_recorded: Option<String>,
    /// Its SHA-256 now.
    pub input_sha256_now: String,
    /// The volume's SHA-256 as recorded.
    pub output_sha256_recorded: Option<String>,
    /// The volume's SHA-256 of the re-execution.
    pub output_sha256_now: String,
    /// Volume row of the first slice whose hash differs (`None`: none differs).
    pub first_differing_slice: Option<usize>,
    /// Slices compared.
    pub slices: usize,
    /// The centre used (detector columns), as recorded.
    pub center: f64,
}

impl RerunReport {
    /// Whether the input is unchanged and the re-execution gave the recorded volume bit for bit.
    pub fn identical(&self) -> bool {
        self.input_sha256_recorded.as_deref() == Some(self.input_sha256_now.as_str())
            && self.output_sha256_recorded.as_deref() == Some(self.output_sha256_now.as_str())
            && self.first_differing_slice.is_none()
    }
}

/// `beamline rerun OUTPUT`: reads the provenance `output` holds, checks the input's hash, re-executes the
/// recorded options (with the centre the run used) into a temporary output beside it, compares the slice
/// hashes and removes the temporary output.
pub fn rerun(output: &Path) -> Result<RerunReport, ReconError> {
    let bad = |reason: String| ReconError::Rerun { path: output.to_path_buf(), reason };
    let prov = read_provenance(output)?;
    if !prov.complete || prov.output_sha256.is_none() {
        return Err(bad("the recorded run did not finish (no output hashes in its provenance); run it again".into()));
    }
    let mut opts: ReconOptions = serde_json::from_value(prov.options.clone())
        .map_err(|e| bad(format!("the provenance holds no options this version can re-execute: {e}")))?;
    let center =
        prov.parameters.get("center").and_then(|v| v.as_f64()).ok_or_else(|| bad("no centre recorded".into()))?;
    opts.center = CenterChoice::Column(center);
    let input_now =
        file_sha256(&opts.input).map_err(|source| ReconError::InputHash { path: opts.input.clone(), source })?;
    let parent = output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let stem = output.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "output".into());
    let ext = output
        .extension()
        .filter(|_| !output.is_dir())
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    let temp = parent.join(format!(".{stem}.rerun-{}{ext}", std::process::id()));
    opts.output = temp.clone();
    opts.overwrite = false;
    let result = reconstruct_file(&opts, &mut |_| {});
    let _ = if temp.is_dir() { std::fs::remove_dir_all(&temp) } else { std::fs::remove_file(&temp) };
    let _ = std::fs::remove_file(sidecar(&temp));
    let summary = result?;
    let again = summary.slice_sha256;
    let first_differing_slice = prov
        .slice_sha256
        .iter()
        .zip(&again)
        .position(|(a, b)| a != b)
        .or_else(|| (prov.slice_sha256.len() != again.len()).then_some(prov.slice_sha256.len().min(again.len())))
        .map(|i| prov.first_slice + i);
    Ok(RerunReport {
        input: opts.input.clone(),
        input_sha256_recorded: prov.input_sha256.clone(),
        input_sha256_now: input_now,
        output_sha256_recorded: prov.output_sha256.clone(),
        output_sha256_now: summary.output_sha256,
        first_differing_slice,
        slices: again.len(),
        center,
    })
}
// --- end issue 14 ---

/// Reconstructs one slice (the middle of `opts.slices`, or of the detector) once per centre in `centers`,
/// writing `center_<value>.tif` into `opts.output`; returns the files written.
pub fn center_sweep(opts: &ReconOptions, centers: &[f64]) -> Result<Vec<PathBuf>, ReconError> {
    opts.method_options.iterative_for(opts.method)?;
    let file = NxTomo::open_selected(&opts.input, &opts.selection)?;
    check_complete(&file, opts)?;
    let rows = select_rows(file.rows(), opts.slices.clone(), None)?;
    for &c in centers {
        given_center(&file, c)?;
    }
    // The trial slices see what is reconstructed: the phase-retrieved row, stitched for each trial centre of
    // an offset-axis scan.
    let phase = phase_of(opts)?;
    let offset = opts.method_options.offset_axis;
    let mid = (rows.start + rows.end) / 2;
    let corrected = Prepare { phase, stitch: None };
    let sino = read_minus_log_prepared(&file, &corrected, mid..mid + 1)?;
    let mut plans = Vec::new();
    for &c in centers {
        let read = file.to_read_column(c);
        plans.push(offset.map(|side| stitch_plan(&file, side, read)).transpose()?);
    }
    std::fs::create_dir_all(&opts.output)
        .map_err(|e| WriteError::Io { path: opts.output.clone(), reason: e.to_string() })?;
    let angles: Vec<f32> = file.angles().iter().map(|a| a.to_radians() as f32).collect();
    let mut written = Vec::new();
    for (&c, stitch) in centers.iter().zip(plans) {
        let read = file.to_read_column(c);
        let sino = match &stitch {
            None => sino.clone(),
            Some((center, _)) => {
                crate::offset_axis::stitch_360(&sino, &angles, file.cols(), *center)
                    .map_err(|reason| ReconError::OffsetAxis { path: opts.input.clone(), reason })?
                    .sinogram
            }
        };
        let setup = setup_prepared(&file, opts, read, &Prepare { phase, stitch });
        let pipe = SinogramPipeline::new(&setup)?;
        let slice = pipe.reconstruct_minus_log(&sino);
        let path = opts.output.join(sweep_name(c));
        let prov = serde_json::json!({"input": opts.input.display().to_string(), "row": mid, "center": c, "filter": opts.filter.name(), "method": opts.method.name(), "phase": phase.is_some(), "offset_axis": offset.map(|o| o.name())});
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
    let voxel = voxel_of_volume(&head.3);
    let vol = H5Volume::create(out, range.start, range.len(), size, &prov.to_string(), &voxel)?;
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

/// The voxel size an HDF5 volume records (`x_pixel_size` in its NXdata), `1 pixel` when it records none.
fn voxel_of_volume(path: &Path) -> Voxel {
    let read = || -> Option<Voxel> {
        let f = hdf5::File::open(path).ok()?;
        let d = f.dataset("/entry/data/x_pixel_size").ok()?;
        let size = d.read_scalar::<f64>().ok()?;
        let units = d.attr("units").ok()?.read_scalar::<hdf5::types::VarLenUnicode>().ok()?.to_string();
        Some(Voxel { size, units })
    };
    read().unwrap_or(Voxel { size: 1.0, units: "pixel".into() })
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
