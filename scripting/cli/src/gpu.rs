//! `beamline gpu check` (what an operator runs on a new node: drivers, devices, every kernel through NVRTC)
//! and `beamline bench gpu` (multi-device scaling of the reconstruction scheduler).

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use reconstruct::gpu::bench::{ScalingPoint, ScanShape};
use reconstruct::gpu::check::{self, DeviceProbe, ScalingDevices, ScalingError};
use reconstruct::gpu::kernels;
use reconstruct::gpu::{CudaBackend, GpuDtype, GpuFilter, GpuOptions};

/// Subcommands of this area.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// GPU tools: list devices and compile every kernel with NVRTC.
    Gpu {
        /// What to do.
        #[command(subcommand)]
        action: GpuAction,
    },
}

/// `beamline gpu ...`.
#[derive(Debug, Subcommand)]
pub enum GpuAction {
    /// List CUDA drivers and devices (or say there are none), compile every kernel with NVRTC and print
    /// each kernel's PTX size. Exits 0 when every kernel compiles for every architecture.
    Check(CheckArgs),
    /// Multi-device scaling benchmark: reconstruction on 1..N GPUs through the scheduler, with speed-up,
    /// per-device rates and per-stage device times (upload, normalise, filter, backprojection, download,
    /// overlap share). `--backend cpu`, or no usable GPU (said in one line), runs the same path on the CPU.
    Bench(BenchArgs),
    /// CUDA against the CPU backend on the same slab (first GPU): maximum absolute and relative
    /// difference against a stated bound, for each filter path and storage asked. Exits 1 when a
    /// comparison is outside its bound, 2 when no GPU can be opened.
    Compare(CompareArgs),
}

/// Storage of the filtered sinogram on the GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DtypeArg {
    /// 32-bit float (bit for bit the CPU backprojection).
    F32,
    /// IEEE half (half the bytes; error bound in reconstruct/src/gpu/ARITHMETIC.md).
    F16,
}

impl DtypeArg {
    pub(crate) fn dtype(self) -> GpuDtype {
        match self {
            DtypeArg::F32 => GpuDtype::F32,
            DtypeArg::F16 => GpuDtype::F16,
        }
    }
}

/// The GPU filter implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FilterArg {
    /// cuFFT when libcufft loads, else the direct convolution.
    Auto,
    /// cuFFT only (error without libcufft).
    Fft,
    /// The direct real-space convolution.
    Convolve,
}

impl FilterArg {
    pub(crate) fn filter(self) -> GpuFilter {
        match self {
            FilterArg::Auto => GpuFilter::Auto,
            FilterArg::Fft => GpuFilter::Fft,
            FilterArg::Convolve => GpuFilter::Convolve,
        }
    }
}

/// `beamline gpu compare` arguments.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Slice side and detector columns.
    #[arg(long, default_value_t = 512)]
    size: usize,
    /// Projection angles.
    #[arg(long, default_value_t = 720)]
    angles: usize,
    /// Slices in the slab.
    #[arg(long, default_value_t = 4)]
    slices: usize,
    /// Storage of the filtered sinogram to compare (repeat or comma-separate).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [DtypeArg::F32, DtypeArg::F16])]
    gpu_dtype: Vec<DtypeArg>,
    /// Filter implementations to compare (repeat or comma-separate).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [FilterArg::Fft, FilterArg::Convolve])]
    gpu_filter: Vec<FilterArg>,
    /// Print one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

/// `beamline gpu check` arguments.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Architectures to compile for, besides those of the GPUs found (repeat or comma-separate).
    #[arg(long, value_delimiter = ',', default_values_t = ["sm_80".to_string(), "sm_90".to_string()])]
    arch: Vec<String>,
    /// Print one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

/// Benchmarks of this area.
#[derive(Debug, Subcommand)]
pub enum Bench {
    /// Reconstruction on 1..N devices through the multi-device scheduler: wall time, slices/s, speed-up,
    /// per-device rates and per-stage device times. With `--backend cuda` (the default) and no usable GPU it
    /// says so in one line and runs on the CPU (its JSON: `"backend_ran": "cpu"`, no stage figures).
    Gpu(BenchArgs),
}

/// Which devices `beamline bench gpu` runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BenchBackend {
    /// Every CUDA GPU, 1..N of them.
    Cuda,
    /// One CPU backend (all cores): the same scheduler path, as a reference on machines without GPUs.
    Cpu,
}

/// `beamline bench gpu` arguments.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Devices to run on.
    #[arg(long, value_enum, default_value_t = BenchBackend::Cuda)]
    backend: BenchBackend,
    /// Slice side and detector columns.
    #[arg(long, default_value_t = 2048)]
    size: usize,
    /// Projection angles.
    #[arg(long, default_value_t = 2048)]
    angles: usize,
    /// Slices per run.
    #[arg(long, default_value_t = 64)]
    slices: usize,
    /// Use at most this many devices (default: all).
    #[arg(long)]
    max_devices: Option<usize>,
    /// Storage of the filtered sinogram on the GPUs.
    #[arg(long, value_enum, default_value_t = DtypeArg::F32)]
    gpu_dtype: DtypeArg,
    /// Filter implementation on the GPUs.
    #[arg(long, value_enum, default_value_t = FilterArg::Auto)]
    gpu_filter: FilterArg,
    /// Print one JSON object on the last line.
    #[arg(long)]
    json: bool,
}

impl Command {
    /// Runs the subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Command::Gpu { action: GpuAction::Check(args) } => check(args),
            Command::Gpu { action: GpuAction::Bench(args) } => bench(args),
            Command::Gpu { action: GpuAction::Compare(args) } => compare(args),
        }
    }
}

/// `beamline bench recon --backend cuda`: the CPU benchmark's 512x512 x 720-angle case on every GPU of the
/// node through the multi-device scheduler, 1..N devices, with per-device rates and per-stage device
/// times (on the CPU, with one line saying so, when no GPU can be used).
pub(crate) fn bench_recon_on_gpus(json: bool, gpu_dtype: DtypeArg, gpu_filter: FilterArg) -> anyhow::Result<ExitCode> {
    bench(BenchArgs {
        backend: BenchBackend::Cuda,
        size: 512,
        angles: 720,
        slices: 64,
        max_devices: None,
        gpu_dtype,
        gpu_filter,
        json,
    })
}

impl Bench {
    /// Runs the benchmark.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Bench::Gpu(args) => bench(args),
        }
    }
}

/// The devices part of `gpu check`: prints what was found, returns a JSON description.
fn report_devices(probe: &DeviceProbe) -> serde_json::Value {
    let (version, devices) = match probe {
        DeviceProbe::NoDriver => {
            println!("CUDA driver: not found (libcuda.so.1 is not loadable) -- no GPU can run here");
            println!("devices: none (install the NVIDIA driver on a GPU node; kernels are still compiled below)");
            return serde_json::json!({ "driver": null, "devices": [] });
        }
        DeviceProbe::Driver { version, devices } => (version, devices),
    };
    println!("CUDA driver: found, CUDA {}", version.as_deref().unwrap_or("version unknown"));
    match devices {
        Ok(devices) if devices.is_empty() => {
            println!("devices: none (the driver reports no GPU; check `nvidia-smi`)");
            serde_json::json!({ "driver": version, "devices": [] })
        }
        Ok(devices) => {
            let mut list = Vec::new();
            for d in devices {
                println!(
                    "  cuda:{} {} ({}, {:.1} of {:.1} GiB free)",
                    d.ordinal,
                    d.name,
                    d.arch(),
                    d.free_bytes as f64 / (1u64 << 30) as f64,
                    d.total_bytes as f64 / (1u64 << 30) as f64
                );
                list.push(serde_json::json!({
                    "ordinal": d.ordinal, "name": d.name, "arch": d.arch(),
                    "free_bytes": d.free_bytes, "total_bytes": d.total_bytes,
                }));
            }
            serde_json::json!({ "driver": version, "devices": list })
        }
        Err(e) => {
            println!("devices: the driver failed to list them: {e}");
            serde_json::json!({ "driver": version, "devices": [], "error": e })
        }
    }
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let probe = check::probe_devices();
    let devices_json = report_devices(&probe);
    let archs = check::archs_to_compile(&args.arch, &probe)?;
    let version = match check::nvrtc_version() {
        Ok(v) => v,
        Err(e) => {
            println!("NVRTC: {e}");
            if args.json {
                println!("{}", serde_json::json!({ "check": "gpu", "ok": false, "nvrtc": null, "gpu": devices_json }));
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    println!("NVRTC {version}: compiling {} kernels for {}", kernels::ALL.len(), archs.join(", "));
    let report = check::compile_kernels(&archs, |c| match &c.result {
        Ok(ptx) => println!("  {:<8} {:<20} {:>7} bytes PTX  ({:.0} ms)", c.arch, c.kernel, ptx, c.millis),
        Err(e) => println!("  {:<8} {:<20} FAILED: {e}", c.arch, c.kernel),
    });
    let (failures, total) = (report.failures(), report.results.len());
    if failures == 0 {
        println!(
            "ok: all {total} kernel compilations succeeded without warnings ({} NVRTC runs: each source file once \
             per architecture)",
            report.nvrtc_runs
        );
    } else {
        println!("FAILED: {failures} of {total} compilations failed (logs above)");
    }
    if args.json {
        let results: Vec<serde_json::Value> = report
            .results
            .iter()
            .map(|c| match &c.result {
                Ok(ptx) => serde_json::json!({ "arch": c.arch, "kernel": c.kernel, "ptx_bytes": ptx, "ok": true }),
                Err(e) => serde_json::json!({ "arch": c.arch, "kernel": c.kernel, "ok": false, "error": e }),
            })
            .collect();
        let v = serde_json::json!({
            "check": "gpu", "ok": failures == 0, "nvrtc": version, "gpu": devices_json, "kernels": results,
            "nvrtc_runs": report.nvrtc_runs,
        });
        println!("{v}");
    }
    Ok(if failures == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let shape = ScanShape { size: args.size, angles: args.angles, slices: args.slices };
    let devices = match args.backend {
        BenchBackend::Cpu => ScalingDevices::Cpu,
        BenchBackend::Cuda => ScalingDevices::Cuda,
    };
    let options = GpuOptions { dtype: args.gpu_dtype.dtype(), filter: args.gpu_filter.filter() };
    let started = |plan: &check::ScalingPlan| {
        for f in &plan.not_used {
            eprintln!("not used: {f}");
        }
        if let Some(why) = &plan.fallback {
            eprintln!(
                "no GPU: {why}; running the same scheduler path on the CPU instead (the figures below are the \
                 CPU's: no GPU figure is measured)"
            );
        }
        println!(
            "reconstruction through the multi-device scheduler: {0}x{0} slices from {1} angles, {2} slices per run, on {3}",
            args.size, args.angles, args.slices, plan.label
        );
    };
    let b = match check::bench_scaling(devices, shape, args.max_devices, options, started) {
        Ok(b) => b,
        Err(e) => {
            if let ScalingError::NoneOpened(failed) = &e {
                for f in failed {
                    eprintln!("not used: {f}");
                }
            }
            return Err(e.into());
        }
    };
    for p in &b.points {
        print_point(p);
    }
    if args.json {
        let mut v = serde_json::to_value(&b)?;
        v["bench"] = "gpu".into();
        v["stages"] = serde_json::to_value(b.stages())?;
        v["slices_per_second_1"] = serde_json::to_value(b.points.first().map(|p| p.slices_per_second))?;
        v["speedup_max"] = serde_json::to_value(b.points.last().map(|p| p.speedup))?;
        println!("{v}");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_point(p: &ScalingPoint) {
    println!(
        "  {} device(s): {:.2} s, {:.2} slices/s, {:.2} G updates/s, speed-up {:.2}x (slabs of {} rows)",
        p.devices, p.seconds, p.slices_per_second, p.gups, p.speedup, p.slab_rows
    );
    for d in &p.per_device {
        println!(
            "      {:<36} {:>4} slabs {:>5} slices  busy {:>7.2} s  {:>8.2} slices/s",
            d.name,
            d.slabs,
            d.rows,
            d.busy_seconds,
            d.slices_per_second()
        );
        if let Some(t) = &d.stages {
            println!("        {}", t.line());
        }
    }
    if let Some(stages) = p.stages.as_ref().filter(|s| s.per_device.len() > 1) {
        println!("      all devices: {}", stages.total.times.line());
    }
}

fn compare(args: CompareArgs) -> anyhow::Result<ExitCode> {
    let shape = ScanShape { size: args.size, angles: args.angles, slices: args.slices };
    println!(
        "CUDA against the CPU backend: {0}x{0} slices from {1} angles, {2} slices in one slab",
        args.size, args.angles, args.slices
    );
    let mut results = Vec::new();
    let mut all_within = true;
    let mut reference = None;
    for filter in &args.gpu_filter {
        for dtype in &args.gpu_dtype {
            let options = GpuOptions { dtype: dtype.dtype(), filter: filter.filter() };
            let bound = reconstruct::gpu::bench::comparison_bound(options.dtype);
            let mut gpu = match CudaBackend::with_options(0, options) {
                Ok(g) => g,
                Err(e) => {
                    println!(
                        "  filter {} storage {}: cannot open cuda:0: {e}",
                        options.filter.name(),
                        options.dtype.name()
                    );
                    if args.json {
                        println!("{}", serde_json::json!({ "compare": "gpu", "ok": false, "error": e.to_string() }));
                    }
                    return Ok(ExitCode::from(2));
                }
            };
            // The CPU reference is computed once, after the first GPU opened.
            let r = match reference.take() {
                Some(r) => r,
                None => reconstruct::gpu::bench::Reference::new(shape)?,
            };
            let c = r.compare(&mut gpu, bound)?;
            reference = Some(r);
            println!(
                "  filter {:<8} storage {}: max |cuda - cpu| = {:.3e} ({:.3e} of max |cpu|, bound {:.1e}) {}  \
                 cpu {:.2} s, cuda {:.2} s",
                gpu.filter_path(),
                options.dtype.name(),
                c.max_abs,
                c.max_rel,
                c.bound_rel,
                if c.within { "ok" } else { "OUTSIDE THE BOUND" },
                c.cpu_seconds,
                c.device_seconds
            );
            let t = gpu.stage_times();
            println!("      {}", t.line());
            all_within &= c.within;
            results.push(serde_json::json!({
                "filter": gpu.filter_path(), "dtype": options.dtype.name(), "comparison": c,
                "stages": t, "overlap_share": t.overlap_share(),
                "backprojection_updates_per_s": (shape.size * shape.size * shape.angles * shape.slices) as f64
                    / t.backproject_s.max(1e-12),
            }));
        }
    }
    if args.json {
        println!("{}", serde_json::json!({ "compare": "gpu", "ok": all_within, "shape": shape, "results": results }));
    }
    Ok(if all_within { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
