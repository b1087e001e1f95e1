//! `beamline recon` (NXtomo file to a volume, centre sweeps, merging `--part` outputs) and
//! `beamline bench recon`.

use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use reconstruct::filter::FilterKind;
use reconstruct::pipeline::{self, BackendChoice, Bits, CenterChoice, Format, Progress, ReconOptions};

/// Subcommands of this area.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Reconstruct an NXtomo file into a volume (float32 TIFF stack by default).
    ///
    /// Example: beamline recon scan.h5 -o out/ --center auto --filter ramp
    Recon(ReconArgs),
}

/// Benchmarks of this area.
#[derive(Debug, Subcommand)]
pub enum Bench {
    /// Reconstruction speed: 512x512 slices from 720 angles (seconds per slice, G updates/s on all
    /// cores and on one), and one 2048x2048 slice from 1500 angles.
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
    /// One float TIFF file per slice (slice_00000.tif ...) plus provenance.json.
    Tiff,
    /// One HDF5 file, /entry/data/data [slice][y][x] with /entry/provenance.
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

/// The reconstruction arguments.
#[derive(Debug, Args)]
struct RunArgs {
    /// NXtomo HDF5 file (projections, flats, darks selected by image_key).
    #[arg(required = true)]
    input: Option<PathBuf>,
    /// Output folder (TIFF), or folder or .h5 file (HDF5).
    #[arg(short, long, required = true)]
    output: Option<PathBuf>,
    /// Detector rows to reconstruct, A:B with B exclusive (default: all).
    #[arg(long, value_name = "A:B")]
    slices: Option<String>,
    /// Rotation axis: `auto`, or the detector column it projects onto (column c has its centre at c; the
    /// middle of a 512-column detector is 255.5).
    #[arg(long, default_value = "auto", value_name = "auto|X", allow_hyphen_values = true)]
    center: String,
    /// Instead of a volume, reconstruct the middle slice once per centre A, A+STEP, ... <= B and write
    /// center_<value>.tif files.
    #[arg(long, value_name = "A:B:STEP", conflicts_with = "part")]
    center_sweep: Option<String>,
    /// Filter: ramp, shepp-logan, cosine, hamming, hann, parzen.
    #[arg(long, default_value = "ramp")]
    filter: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "tiff")]
    format: FormatArg,
    /// TIFF bits per sample: 32 (float), 16 or 8 (scaled from --range).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(8..=32))]
    bits: u32,
    /// Value range LO:HI mapped to 0..max for 16/8-bit output (default: 0.1/99.9 percentiles of the middle
    /// slice).
    #[arg(long, value_name = "LO:HI", allow_hyphen_values = true)]
    range: Option<String>,
    /// Hardware.
    #[arg(long, value_enum, default_value = "auto")]
    backend: BackendArg,
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
    /// Output slice side in pixels (default: detector width).
    #[arg(long)]
    size: Option<usize>,
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
    /// rates; refuses on a machine without GPUs rather than print a figure that was not measured on one).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "cuda"])]
    backend: String,
}

/// Parses `A:B` into a range (B exclusive).
fn parse_range(s: &str, what: &str) -> anyhow::Result<Range<usize>> {
    let (a, b) = s.split_once(':').with_context(|| format!("{what} {s:?}: expected A:B, e.g. 100:200"))?;
    let a: usize = a.trim().parse().with_context(|| format!("{what} {s:?}: {a:?} is not a row number"))?;
    let b: usize = b.trim().parse().with_context(|| format!("{what} {s:?}: {b:?} is not a row number"))?;
    if b <= a {
        bail!("{what} {s:?}: the end must be after the start (B is exclusive)");
    }
    Ok(a..b)
}

/// Parses a size like `512M`, `8G`, `1.5GiB`, `1000000`.
fn parse_size(s: &str) -> anyhow::Result<u64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.trim_end_matches("ib").trim_end_matches('b');
    let (num, mul) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let v: f64 = num.trim().parse().with_context(|| format!("--memory {s:?}: expected a size like 512M or 8G"))?;
    if !(v > 0.0) {
        bail!("--memory {s:?} must be positive");
    }
    Ok((v * mul as f64) as u64)
}

fn parse_pair_f32(s: &str, what: &str) -> anyhow::Result<(f32, f32)> {
    let (a, b) = s.split_once(':').with_context(|| format!("{what} {s:?}: expected LO:HI"))?;
    let lo: f32 = a.trim().parse().with_context(|| format!("{what} {s:?}: {a:?} is not a number"))?;
    let hi: f32 = b.trim().parse().with_context(|| format!("{what} {s:?}: {b:?} is not a number"))?;
    if !(hi > lo) {
        bail!("{what} {s:?}: HI must be above LO");
    }
    Ok((lo, hi))
}

fn parse_sweep(s: &str) -> anyhow::Result<Vec<f64>> {
    let parts: Vec<&str> = s.split(':').collect();
    let [a, b, step] = parts[..] else { bail!("--center-sweep {s:?}: expected A:B:STEP, e.g. 250:260:0.5") };
    let num = |x: &str| x.trim().parse::<f64>().with_context(|| format!("--center-sweep {s:?}: {x:?} is not a number"));
    let (a, b, step) = (num(a)?, num(b)?, num(step)?);
    if !(step > 0.0) || b < a {
        bail!("--center-sweep {s:?}: need A <= B and STEP > 0");
    }
    let n = ((b - a) / step + 1e-9).floor() as usize + 1;
    if n > 1000 {
        bail!("--center-sweep {s:?} gives {n} slices; use a larger STEP (at most 1000 trials)");
    }
    Ok((0..n).map(|i| a + i as f64 * step).collect())
}

fn parse_part(s: &str) -> anyhow::Result<(usize, usize)> {
    let (i, n) = s.split_once('/').with_context(|| format!("--part {s:?}: expected I/N, e.g. 3/16"))?;
    let i: usize = i.trim().parse().with_context(|| format!("--part {s:?}: I is not a number"))?;
    let n: usize = n.trim().parse().with_context(|| format!("--part {s:?}: N is not a number"))?;
    if i == 0 || i > n {
        bail!("--part {s:?}: I counts from 1 to N");
    }
    Ok((i, n))
}

impl RunArgs {
    fn options(&self) -> anyhow::Result<ReconOptions> {
        let input = self.input.clone().context("give the input NXtomo file")?;
        let output = self.output.clone().context("give the output with -o")?;
        let mut o = ReconOptions::new(input, output);
        o.slices = self.slices.as_deref().map(|s| parse_range(s, "--slices")).transpose()?;
        o.center = if self.center.eq_ignore_ascii_case("auto") {
            CenterChoice::Auto
        } else {
            let c: f64 = self
                .center
                .parse()
                .with_context(|| format!("--center {:?}: give `auto` or a column position like 255.5", self.center))?;
            CenterChoice::Column(c)
        };
        o.filter = self.filter.parse::<FilterKind>()?;
        o.format = match self.format {
            FormatArg::Tiff => Format::Tiff,
            FormatArg::H5 => Format::Hdf5,
        };
        o.bits = match self.bits {
            32 => Bits::F32,
            16 => Bits::U16,
            8 => Bits::U8,
            b => bail!("--bits {b}: use 32, 16 or 8"),
        };
        if o.format == Format::Hdf5 && o.bits != Bits::F32 {
            bail!("--bits {} applies to TIFF output; HDF5 volumes are float32", self.bits);
        }
        o.range = self.range.as_deref().map(|s| parse_pair_f32(s, "--range")).transpose()?;
        o.backend = match self.backend {
            BackendArg::Auto => BackendChoice::Auto,
            BackendArg::Cpu => BackendChoice::Cpu,
            BackendArg::Cuda => BackendChoice::Cuda,
        };
        o.memory_bytes = parse_size(&self.memory)?;
        o.stripe_size = self.stripes;
        o.zinger = self.zinger;
        o.threads = self.threads;
        o.part = self.part.as_deref().map(parse_part).transpose()?;
        o.out_size = self.size;
        Ok(o)
    }
}

fn bar(quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(0);
    b.set_style(
        ProgressStyle::with_template("{spinner} recon [{bar:40}] {pos}/{len} slices {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b
}

impl Command {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let Command::Recon(args) = self;
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
        let opts = run.options()?;
        if let Some(sweep) = &run.center_sweep {
            let centers = parse_sweep(sweep)?;
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
        let mut progress = |p: Progress| {
            pb.set_length(p.total as u64);
            pb.set_position(p.done as u64);
        };
        let result = pipeline::reconstruct_file(&opts, &mut progress);
        pb.finish_and_clear();
        let s = result.with_context(|| format!("reconstructing {}", opts.input.display()))?;
        if !run.quiet {
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
        println!(
            "reconstructed {} slices (rows {}..{}) in {:.2} s: {:.1} slices/s, {:.2} G updates/s; centre {:.2}{}; {} -> {}",
            s.slices,
            s.rows.start,
            s.rows.end,
            s.seconds,
            s.slices as f64 / s.seconds.max(1e-9),
            s.gups,
            s.center,
            if s.center_residual.is_some() { " (auto)" } else { "" },
            s.devices.iter().map(|(d, n)| format!("{d}: {n} slabs")).collect::<Vec<_>>().join(", "),
            s.output.display()
        );
        Ok(ExitCode::SUCCESS)
    }
}

impl Bench {
    /// Runs the benchmark.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let Bench::Recon(args) = self;
        if args.backend == "cuda" {
            return super::gpu::bench_recon_on_gpus(args.json);
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
        if args.json {
            let v = serde_json::json!({
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
