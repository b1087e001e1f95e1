//! `beamline recon` (NXtomo or DXchange file to a volume, centre sweeps, merging `--part` outputs),
//! `beamline rerun OUTPUT` (re-execute a recorded reconstruction and compare) and `beamline bench recon`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use reconstruct::method::Method;
use reconstruct::pipeline::{self, BackendChoice, Format, Progress};
use reconstruct::request::{self, ReconRequest};

/// Subcommands of this area.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Reconstruct an NXtomo file into a volume (float32 TIFF stack by default).
    ///
    /// Example: beamline recon scan.h5 -o out/ --center auto --filter ramp
    Recon(Box<ReconArgs>),
    /// Re-execute the reconstruction an output records and prove it: reads its provenance (input path and
    /// SHA-256, every option, version, centre used), checks the input's hash, reconstructs again into a
    /// temporary output beside it and compares the slice hashes. Prints "identical", or what changed and
    /// the first slice that differs (exit 1).
    ///
    /// Example: beamline rerun out/
    Rerun(RerunArgs),
}

/// `beamline rerun OUTPUT`.
#[derive(Debug, Args)]
pub struct RerunArgs {
    /// A `beamline recon` output: a TIFF folder (provenance.json), a multi-page TIFF (NAME.provenance.json
    /// beside it) or an HDF5 volume.
    output: PathBuf,
}

/// Benchmarks of this area.
#[derive(Debug, Subcommand)]
pub enum Bench {
    /// Reconstruction speed: 512x512 slices from 720 angles (seconds per slice, G updates/s on all
    /// cores and on one), and one 2048x2048 slice from 1500 angles; FBP and gridrec in the same run, with
    /// their ratio and each one's RMSE on the exact phantom; SIRT (50 iterations) and CGLS (15) against FBP on
    /// a 256x256 slice from 90 angles.
    Recon(BenchArgs),
}

/// `beamline recon ...`
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ReconArgs {
    #[command(subcommand)]
    sub: Option<ReconSub>,
    #[command(flatten)]
    run: RunArgs,
}

/// Subcommands of `beamline recon`.
#[derive(Debug, Subcommand)]
enum ReconSub {
    /// Join HDF5 volumes written with `--part I/N --format h5` into one volume, bit for bit.
    Merge(MergeArgs),
}

/// `beamline recon merge`.
#[derive(Debug, Args)]
struct MergeArgs {
    /// Part volumes (any order).
    #[arg(required = true)]
    parts: Vec<PathBuf>,
    /// Output HDF5 file.
    #[arg(short, long)]
    output: PathBuf,
}

/// Output formats on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    /// One TIFF file per slice (slice_00000.tif ...) plus provenance.json; with -o NAME.tif one multi-page
    /// TIFF (provenance in NAME.provenance.json).
    Tiff,
    /// One HDF5 file laid out as NeXus: /entry/data (NXdata, @signal) data [slice][y][x], voxel size in
    /// x/y/z_pixel_size with units, /entry/provenance. Chosen too by -o NAME.h5.
    H5,
}

/// Backends on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum BackendArg {
    /// CUDA if wired in and present, else CPU.
    Auto,
    /// CPU (rayon, all cores).
    Cpu,
    /// CUDA GPUs.
    Cuda,
}

/// Methods on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum MethodArg {
    /// Filtered backprojection (CPU or CUDA).
    Fbp,
    /// Fourier gridding (CPU).
    Gridrec,
    /// Simultaneous iterative reconstruction (CPU).
    Sirt,
    /// Conjugate gradients least squares (CPU).
    Cgls,
}

/// Phase retrieval methods on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum PhaseArg {
    /// Paganin's single-distance filter.
    Paganin,
}

/// Sides of `--offset-axis` on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum OffsetArg {
    /// The side of the axis given with --center, or found.
    Auto,
    /// The axis is near column 0.
    Left,
    /// The axis is near the last column.
    Right,
}

/// Starting slices of SIRT and CGLS on the command line.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum InitArg {
    /// A zero slice.
    Zero,
    /// The FBP slice (same filter).
    Fbp,
}

/// The reconstruction arguments.
#[derive(Debug, Args)]
struct RunArgs {
    /// NXtomo HDF5 file (projections, flats, darks selected by image_key) or DXchange file (/exchange/data,
    /// data_white, data_dark, theta in degrees), detected from the file.
    #[arg(required = true)]
    input: Option<PathBuf>,
    /// Output: a folder (one TIFF per slice), NAME.tif (one multi-page TIFF) or NAME.h5 (one HDF5 volume).
    /// A folder or file that is not empty is refused unless --overwrite.
    #[arg(short, long, required = true)]
    output: Option<PathBuf>,
    /// Detector rows to reconstruct, A:B with B exclusive (default: all).
    #[arg(long, value_name = "A:B")]
    slices: Option<String>,
    /// Rotation axis: `auto` (opposite projections compared; Vo's Fourier metric when no two projections are
    /// 180 degrees apart), `vo` (Vo et al. 2014 sinogram Fourier metric, sub-pixel, any angles), or the
    /// detector column it projects onto (column c has its centre at c; the middle of a 512-column detector is
    /// 255.5). With --offset-axis, `auto` compares opposite projections over their overlap near the edge. With
    /// --phase, the centre is found on the phase-retrieved rows. The centre used is printed and stored in
    /// provenance (`center`, `center_mode`).
    #[arg(long, default_value = "auto", value_name = "auto|vo|X", allow_hyphen_values = true)]
    center: String,
    /// Instead of a volume, reconstruct the middle slice once per centre A, A+STEP, ... <= B and write
    /// center_<value>.tif files (phase-retrieved with --phase, stitched per centre with --offset-axis, as
    /// the volume would be).
    #[arg(long, value_name = "A:B:STEP", conflicts_with = "part")]
    center_sweep: Option<String>,
    /// Filter: ramp, shepp-logan, cosine, hamming, hann, parzen.
    #[arg(long, default_value = "ramp")]
    filter: String,
    /// Reconstruction method. `fbp`: filtered backprojection, the reference and the only method on CUDA;
    /// a little more accurate on 360-degree scans whose opposite views interlace. `gridrec`: direct Fourier
    /// inversion by gridding (CPU only), the same filters, axis and output scale, RMSE within 5% of FBP's;
    /// on the CPU many times faster (`beamline bench recon`: ~8x at 512^2 x 720, ~16x at 2048^2 x 1500).
    /// `sirt` and `cgls`: iterative least-squares fits of the -log sinogram with a matched forward/back
    /// projector pair (CPU only; the --filter is not used, except by --init fbp), inside the circular mask (the
    /// disc inscribed in the slice; zero outside); each iteration costs about two FBPs. Use them for few
    /// (e.g. 60) or noisy angles, where they beat FBP's RMSE; CGLS converges fastest, stop it early on noisy
    /// data; SIRT is smoother and can clamp to non-negative values (--nonnegative).
    #[arg(long, value_enum, default_value = "fbp")]
    method: MethodArg,
    /// SIRT/CGLS iterations (default: 100 for sirt, 20 for cgls). The residual norm ||b - Ax|| of every
    /// iteration is logged (run log event `iteration`) and shown on the progress line.
    #[arg(long, value_name = "N")]
    iterations: Option<usize>,
    /// SIRT: clamp the slice to non-negative values after every iteration.
    #[arg(long)]
    nonnegative: bool,
    /// SIRT/CGLS starting slice: `zero`, or `fbp` (warm start from the filtered backprojection; fewer
    /// iterations for the same residual).
    #[arg(long, value_enum, value_name = "zero|fbp")]
    init: Option<InitArg>,
    /// Phase retrieval before -log: `paganin` (Paganin et al. 2002, single distance, homogeneous object) on
    /// every flat-fielded projection, edge-padded so nothing wraps around, with rows of context read above and
    /// below each slab. Needs --delta-beta; energy, distance and pixel size come from the file
    /// (/entry/instrument/source/energy or /entry/beam/incident_energy, detector/distance,
    /// detector/x_pixel_size, with their units) unless given. Use it for propagation-based phase contrast
    /// (edge fringes, weakly absorbing samples); the slices then hold mu of the retrieved thickness.
    #[arg(long, value_enum, requires = "delta_beta")]
    phase: Option<PhaseArg>,
    /// Paganin: photon energy, keV (overrides the file).
    #[arg(long, value_name = "KEV", requires = "phase")]
    energy: Option<f64>,
    /// Paganin: sample-detector distance, metres (overrides the file).
    #[arg(long, value_name = "M", requires = "phase")]
    distance: Option<f64>,
    /// Paganin: detector pixel size, micrometres (overrides the file).
    #[arg(long, value_name = "UM", requires = "phase")]
    pixel_size: Option<f64>,
    /// Paganin: delta/beta of the material (the ratio itself, e.g. 300 for soft tissue at 20 keV; not
    /// TomoPy's `alpha`, which is a regulariser).
    #[arg(long, value_name = "R", requires = "phase")]
    delta_beta: Option<f64>,
    /// Half-acquisition (offset-axis) 360-degree scan: the rotation axis projects near one edge of the detector
    /// (`left` or `right`; `auto`, the default when the option is given alone, takes the side of the axis), so
    /// each projection sees a little more than half the sample. Every projection of the first half turn is
    /// joined with the mirrored one half a turn later, blended linearly across the columns both see, into a
    /// 180-degree sinogram about twice as wide, and the doubled field of view is reconstructed (slices of that
    /// width unless --size; --memory counts the doubled width). --center auto finds the axis by comparing each
    /// projection with the mirror of the one half a turn later over their overlap; a given --center stays in
    /// detector columns. Refused for a 180-degree scan, a scan that is not a full turn, or an axis in the
    /// middle half of the detector. Like tomocupy's --file-type double_fov and nabu's enable_halftomo.
    #[arg(long, value_enum, value_name = "auto|left|right", num_args = 0..=1, default_missing_value = "auto")]
    offset_axis: Option<OffsetArg>,
    /// Output format.
    #[arg(long, value_enum, default_value = "tiff")]
    format: FormatArg,
    /// TIFF bits per sample: 32 (float), 16 or 8 (scaled from --range). Integer TIFFs record their scaling in
    /// the ImageDescription JSON ("scaling": lo, hi, max) and in SMinSampleValue = lo, SMaxSampleValue = hi;
    /// back to attenuation per voxel: value = lo + stored * (hi - lo) / max (max 65535 or 255).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(8..=32))]
    bits: u32,
    /// Value range LO:HI mapped to 0..max for 16/8-bit output (default: 0.1/99.9 percentiles of the middle
    /// slice, reconstructed as the volume is: phase-retrieved, stitched).
    #[arg(long, value_name = "LO:HI", allow_hyphen_values = true)]
    range: Option<String>,
    /// Hardware.
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendArg,
    /// CUDA backend: storage of the filtered sinogram for the backprojection. `f32` (the default) is bit
    /// for bit the CPU's backprojection; `f16` halves the bytes the backprojection reads, at most 2^-11 of
    /// the backprojected magnitude per pixel (reconstruct/src/gpu/ARITHMETIC.md). Recorded in provenance.
    /// Refused with --backend cpu (and with CPU-only methods); with --backend auto on a node without a
    /// usable GPU the run goes on on the CPU and says the option was not applied.
    #[arg(long, value_enum, value_name = "f32|f16")]
    gpu_dtype: Option<super::gpu::DtypeArg>,
    /// CUDA backend: the filter. `auto` (the default) is cuFFT when libcufft loads, else the direct
    /// convolution; `fft` requires cuFFT; `convolve` is the direct real-space convolution. Same rules as
    /// --gpu-dtype on the CPU.
    #[arg(long, value_enum, value_name = "auto|fft|convolve")]
    gpu_filter: Option<super::gpu::FilterArg>,
    /// Memory budget for slabs in flight, e.g. 512M, 8G.
    #[arg(long, default_value = "4G", value_name = "SIZE")]
    memory: String,
    /// Vo's sorting-based stripe (ring) removal with this median window in columns (odd, e.g. 21).
    #[arg(long, value_name = "SIZE")]
    stripes: Option<usize>,
    /// Zinger removal: replace values further than T (in -log units) from their angular median.
    #[arg(long, value_name = "T")]
    zinger: Option<f32>,
    /// CPU threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Reconstruct only share I of N (1-based) of the slices, e.g. --part $SLURM_ARRAY_TASK_ID/16.
    #[arg(long, value_name = "I/N")]
    part: Option<String>,
    /// Output slice side in pixels (default: detector width after cropping and binning). Crops or pads the
    /// slice around the axis; to reduce resolution use --binning.
    #[arg(long)]
    size: Option<usize>,
    /// Bin detector rows and columns by 2 or 4: the mean of 2x2 or 4x4 pixels, for projections, flats and
    /// darks alike (values stay attenuation per voxel, of the binned voxel). --slices count binned rows;
    /// --center stays in detector columns.
    #[arg(long, default_value_t = 1, value_name = "2|4")]
    binning: usize,
    /// First projection to use (0-based index among the projections, as tomocupy's --start-proj).
    #[arg(long, value_name = "N")]
    start_proj: Option<usize>,
    /// One past the last projection to use (as tomocupy's --end-proj).
    #[arg(long, value_name = "N")]
    end_proj: Option<usize>,
    /// First detector column to read (crops the sinogram; --center stays in detector columns).
    #[arg(long, value_name = "C")]
    start_column: Option<usize>,
    /// One past the last detector column to read.
    #[arg(long, value_name = "C")]
    end_column: Option<usize>,
    /// Write into an output that is not empty: first remove what previous `beamline recon` runs wrote there
    /// (the files their provenance lists, and only those; anything else there is refused).
    #[arg(long)]
    overwrite: bool,
    /// Reconstruct even a scan found incomplete (projections covering less than the declared range, frames
    /// the receiver never got, angular gaps, no flats or darks); without it such a scan is refused before any
    /// work starts. Missing darks count as zero, missing flats as the brightest projection per pixel.
    #[arg(long)]
    allow_incomplete: bool,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
}

/// `beamline bench recon` arguments.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Print one JSON object on the last line.
    #[arg(long)]
    json: bool,
    /// Skip the 2048x2048x1500 slice (a few seconds).
    #[arg(long)]
    quick: bool,
    /// `cpu` (all cores) or `cuda` (the same 512x512 x 720 case on every GPU, 1..N devices, with per-device
    /// rates and per-stage device times; on a machine without a usable GPU it says so in one line and runs
    /// the scheduler path on the CPU, its JSON saying `"backend_ran": "cpu"` with no stage figures).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "cuda"])]
    backend: String,
    /// With --backend cuda: storage of the filtered sinogram on the GPUs.
    #[arg(long, value_enum, default_value = "f32")]
    gpu_dtype: super::gpu::DtypeArg,
    /// With --backend cuda: the GPUs' filter.
    #[arg(long, value_enum, default_value = "auto")]
    gpu_filter: super::gpu::FilterArg,
}

impl RunArgs {
    /// The library's request: the arguments as written, parsed and checked by [`ReconRequest::options`].
    fn request(&self) -> ReconRequest {
        ReconRequest {
            input: self.input.clone(),
            output: self.output.clone(),
            slices: self.slices.clone(),
            center: self.center.clone(),
            filter: self.filter.clone(),
            format: match self.format {
                FormatArg::Tiff => Format::Tiff,
                FormatArg::H5 => Format::Hdf5,
            },
            bits: self.bits,
            range: self.range.clone(),
            backend: match self.backend {
                BackendArg::Auto => BackendChoice::Auto,
                BackendArg::Cpu => BackendChoice::Cpu,
                BackendArg::Cuda => BackendChoice::Cuda,
            },
            memory: self.memory.clone(),
            stripes: self.stripes,
            zinger: self.zinger,
            threads: self.threads,
            part: self.part.clone(),
            size: self.size,
            method: match self.method {
                MethodArg::Fbp => Method::Fbp,
                MethodArg::Gridrec => Method::Gridrec,
                MethodArg::Sirt => Method::Sirt,
                MethodArg::Cgls => Method::Cgls,
            },
            allow_incomplete: self.allow_incomplete,
            start_proj: self.start_proj,
            end_proj: self.end_proj,
            start_column: self.start_column,
            end_column: self.end_column,
            binning: self.binning,
            overwrite: self.overwrite,
            method_options: reconstruct::method::MethodOptions {
                iterations: self.iterations,
                nonnegative: self.nonnegative,
                init: match self.init {
                    Some(InitArg::Fbp) => reconstruct::iterative::Init::Fbp,
                    Some(InitArg::Zero) | None => reconstruct::iterative::Init::Zero,
                },
                phase: self.phase.map(|PhaseArg::Paganin| reconstruct::paganin::PhaseOptions {
                    energy_kev: self.energy,
                    distance_m: self.distance,
                    pixel_size_um: self.pixel_size,
                    delta_beta: self.delta_beta.unwrap_or(f64::NAN),
                }),
                offset_axis: self.offset_axis.map(|o| match o {
                    OffsetArg::Auto => reconstruct::offset_axis::OffsetAxis::Auto,
                    OffsetArg::Left => reconstruct::offset_axis::OffsetAxis::Left,
                    OffsetArg::Right => reconstruct::offset_axis::OffsetAxis::Right,
                }),
            },
            gpu_dtype: self.gpu_dtype.map(|d| d.dtype()),
            gpu_filter: self.gpu_filter.map(|f| f.filter()),
        }
    }
}

fn bar(quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(0);
    b.set_style(
        ProgressStyle::with_template("{spinner} recon [{bar:40}] {pos}/{len} slices {per_sec} eta {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b
}

impl Command {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let args = match self {
            Command::Recon(args) => *args,
            Command::Rerun(r) => return rerun(&r.output),
        };
        if let Some(ReconSub::Merge(m)) = args.sub {
            let range = pipeline::merge_h5_parts(&m.parts, &m.output)?;
            println!(
                "merged {} parts: slices {}..{} ({} slices) -> {}",
                m.parts.len(),
                range.start,
                range.end,
                range.len(),
                m.output.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        let run = args.run;
        let mut opts = run.request().options()?;
        if let Some(sweep) = &run.center_sweep {
            let centers = request::parse_sweep(sweep)?;
            let files = pipeline::center_sweep(&opts, &centers)?;
            println!(
                "wrote {} trial slices (centre {:.2} to {:.2}) to {}; pick the sharpest and pass --center VALUE",
                files.len(),
                centers[0],
                centers[centers.len() - 1],
                opts.output.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        let pb = bar(run.quiet);
        if opts.method.iterative().is_some() {
            let line = pb.clone();
            opts.on_iteration = Some(reconstruct::iterative::IterationHook(std::sync::Arc::new(move |s| {
                line.set_message(format!(
                    "slice {} {} iteration {}/{} residual {:.4e}",
                    s.row, s.method, s.iteration, s.of, s.residual
                ))
            })));
        }
        let mut progress = |p: Progress| {
            pb.set_length(p.total as u64);
            pb.set_position(p.done as u64);
        };
        let result = pipeline::reconstruct_file(&opts, &mut progress);
        pb.finish_and_clear();
        let s = result.with_context(|| format!("reconstructing {}", opts.input.display()))?;
        if s.backend_worth_telling && !run.quiet {
            eprintln!("{}", s.backend);
        }
        if s.clamped > 0 {
            eprintln!(
                "warning: {} transmission values were not positive (raw <= dark, or flat <= dark) and were clamped before -log",
                s.clamped
            );
        }
        if s.zingers > 0 {
            eprintln!("note: {} zinger values replaced", s.zingers);
        }
        if let Some(line) = reconstruct::iterative::residual_line(opts.method.name(), &s.residuals) {
            println!("{line}");
        }
        println!(
            "reconstructed {} slices (rows {}..{}) in {:.2} s: {:.1} slices/s, {:.2} G updates/s; centre {:.2} ({}); {} -> {}",
            s.slices,
            s.rows.start,
            s.rows.end,
            s.seconds,
            s.slices as f64 / s.seconds.max(1e-9),
            s.gups,
            s.center,
            s.center_mode,
            s.devices.iter().map(|(d, n)| format!("{d}: {n} slabs")).collect::<Vec<_>>().join(", "),
            s.output.display()
        );
        Ok(ExitCode::SUCCESS)
    }
}

/// `beamline rerun OUTPUT`.
fn rerun(output: &std::path::Path) -> anyhow::Result<ExitCode> {
    let r = pipeline::rerun(output)?;
    let short = |h: &str| h.chars().take(16).collect::<String>();
    let input_ok = r.input_sha256_recorded.as_deref() == Some(r.input_sha256_now.as_str());
    if input_ok {
        println!("input {}: sha256 {} as recorded", r.input.display(), short(&r.input_sha256_now));
    } else {
        println!(
            "input {}: sha256 {} but the provenance records {}: the input has changed",
            r.input.display(),
            short(&r.input_sha256_now),
            r.input_sha256_recorded.as_deref().map(short).unwrap_or_else(|| "none".into())
        );
    }
    if r.identical() {
        println!(
            "identical: {} slices re-executed (centre {:.2}) give volume sha256 {}",
            r.slices,
            r.center,
            short(&r.output_sha256_now)
        );
        return Ok(ExitCode::SUCCESS);
    }
    match r.first_differing_slice {
        Some(i) => println!(
            "differs: slice {i} is the first of {} slices whose values differ (volume sha256 {} now, {} recorded)",
            r.slices,
            short(&r.output_sha256_now),
            r.output_sha256_recorded.as_deref().map(short).unwrap_or_default()
        ),
        None => println!("every slice is identical to the recorded ones, but the input is not the recorded input"),
    }
    Ok(ExitCode::FAILURE)
}

impl Bench {
    /// Runs the benchmark.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let Bench::Recon(args) = self;
        if args.backend == "cuda" {
            return super::gpu::bench_recon_on_gpus(args.json, args.gpu_dtype, args.gpu_filter);
        }
        use reconstruct::bench::run_case;
        println!("CPU backprojection (filter + backprojection), exact Shepp-Logan sinogram, best of 3");
        let all = run_case(512, 720, 8, 3, None)?;
        let threads = all.threads;
        let one = run_case(512, 720, 2, 3, Some(1))?;
        let print = |label: &str, c: &reconstruct::bench::BenchCase| {
            println!(
                "  {label:<28} {:>4}x{:<4} x{:>5} angles, {} thread(s): {:.4} s/slice, {:.2} G updates/s (backprojection alone {:.2})",
                c.size, c.size, c.angles, c.threads, c.seconds_per_slice, c.gups, c.backproject_gups
            );
        };
        print("512 all cores", &all);
        print("512 one core", &one);
        let (tb_secs, tb_gups, tb_diff) = reconstruct::bench::textbook_case(512, 720);
        println!(
            "  {:<28} 512x512  x  720 angles, 1 thread(s): {tb_secs:.4} s/slice, {tb_gups:.2} G updates/s (max |difference| {tb_diff:.2e})",
            "textbook loop, same run"
        );
        println!("  peers measured on this machine for the issue: ASTRA CPU FBP 0.28-0.33, algotom numba 0.53-0.70 G updates/s");
        let big = if args.quick { None } else { Some(run_case(2048, 1500, 1, 2, None)?) };
        if let Some(b) = &big {
            print("2048 all cores", b);
            let ratio = b.seconds_per_slice / all.seconds_per_slice;
            let expected = (2048.0 * 2048.0 * 1500.0) / (512.0 * 512.0 * 720.0);
            println!("  2048 slice costs {ratio:.1}x a 512 slice; N^2 x angles predicts {expected:.1}x");
        }
        // Gridrec in the same run: the same sinograms, seconds per slice and the ratio to FBP, and each
        // method's RMSE on the exact phantom.
        use reconstruct::method::Method;
        println!(
            "gridrec (Fourier gridding, Kaiser-Bessel width {}, {}x oversampled), same sinograms",
            reconstruct::gridrec::KERNEL_WIDTH,
            reconstruct::gridrec::OVERSAMPLING
        );
        let g512 = reconstruct::bench::run_gridrec_case(512, 720, 8, 3)?;
        let g2048 = if args.quick { None } else { Some(reconstruct::bench::run_gridrec_case(2048, 1500, 2, 2)?) };
        let ratio = |g: &reconstruct::bench::GridrecCase, f: &reconstruct::bench::BenchCase| {
            g.seconds_per_slice / f.seconds_per_slice
        };
        let r512 = ratio(&g512, &all);
        let r2048 = g2048.as_ref().zip(big.as_ref()).map(|(g, f)| ratio(g, f));
        for (g, f, r) in [(Some(&g512), Some(&all), Some(r512)), (g2048.as_ref(), big.as_ref(), r2048)] {
            if let (Some(g), Some(f), Some(r)) = (g, f, r) {
                println!(
                    "  {:>4}x{:<4} x{:>5} angles, {} thread(s): fbp {:.4} s/slice, gridrec {:.4} s/slice (grid {}, plan {:.3} s once): gridrec/fbp {r:.3} ({:.1}x faster)",
                    g.size, g.size, g.angles, g.threads, f.seconds_per_slice, g.seconds_per_slice, g.grid, g.plan_seconds, 1.0 / r
                );
            }
        }
        let rmse_fbp = reconstruct::bench::phantom_rmse(Method::Fbp, 512, 720)?;
        let rmse_gridrec = reconstruct::bench::phantom_rmse(Method::Gridrec, 512, 720)?;
        println!(
            "  RMSE vs phantom (512x512, 720 angles, ramp, disc r=250): fbp {rmse_fbp:.5}, gridrec {rmse_gridrec:.5}"
        );
        // SIRT and CGLS in the same run, where they are meant to be used: few angles (90 for a 256 slice).
        println!(
            "iterative (matched projector pair, circular mask), exact sinogram, 256x256 from 90 angles, best of 2"
        );
        let few = [
            reconstruct::bench::run_iterative_case(Method::Fbp, 256, 90, 0, 2)?,
            reconstruct::bench::run_iterative_case(Method::Sirt, 256, 90, 50, 2)?,
            reconstruct::bench::run_iterative_case(Method::Cgls, 256, 90, 15, 2)?,
        ];
        for c in &few {
            let res = c.residual_first_last.map_or(String::new(), |(a, b)| format!(", residual {a:.3e} -> {b:.3e}"));
            println!(
                "  {:<5} {:>3} iterations, {} thread(s): {:.4} s/slice, RMSE vs phantom {:.5}{res}",
                c.method, c.iterations, c.threads, c.seconds_per_slice, c.rmse
            );
        }
        if args.json {
            let v = serde_json::json!({
                "few_angles_256x90": few,
                "methods": {
                    "fbp": {"seconds_per_slice_512": all.seconds_per_slice, "seconds_per_slice_2048": big.as_ref().map(|b| b.seconds_per_slice), "rmse_512": rmse_fbp},
                    "gridrec": {"seconds_per_slice_512": g512.seconds_per_slice, "seconds_per_slice_2048": g2048.as_ref().map(|g| g.seconds_per_slice), "rmse_512": rmse_gridrec, "slice_512": g512, "slice_2048": g2048},
                    "sirt": {"seconds_per_slice_256x90": few[1].seconds_per_slice, "rmse_256x90": few[1].rmse, "iterations": few[1].iterations, "fbp_rmse_256x90": few[0].rmse},
                    "cgls": {"seconds_per_slice_256x90": few[2].seconds_per_slice, "rmse_256x90": few[2].rmse, "iterations": few[2].iterations, "fbp_rmse_256x90": few[0].rmse},
                },
                "gridrec_over_fbp_512": r512,
                "gridrec_over_fbp_2048": r2048,
                "bench": "recon",
                "threads": threads,
                "slice_512": all,
                "slice_512_one_thread": one,
                "textbook_512_one_thread": {"seconds_per_slice": tb_secs, "gups": tb_gups, "max_abs_difference": tb_diff},
                "slice_2048": big,
                "gups_512": all.gups,
                "seconds_per_slice_512": all.seconds_per_slice,
            });
            println!("{v}");
        }
        Ok(ExitCode::SUCCESS)
    }
}
