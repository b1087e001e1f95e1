//! `beamline gpu check` (what an operator runs on a new node: drivers, devices, every kernel through NVRTC)
//! and `beamline bench gpu` (multi-device scaling of the reconstruction scheduler).

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use reconstruct::backend::Backend;
use reconstruct::cpu::CpuBackend;
use reconstruct::gpu::bench::{run_scaling, ScalingPoint, ScanShape};
use reconstruct::gpu::{device, kernels, nvrtc, open_gpus};

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
    /// Multi-device scaling benchmark: reconstruction on 1..N GPUs through the scheduler, with speed-up
    /// and per-device rates (`--backend cpu` runs the same path on the CPU).
    Bench(BenchArgs),
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
    /// Reconstruction on 1..N devices through the multi-device scheduler: wall time, slices/s, speed-up
    /// and per-device rates. Needs GPUs for `--backend cuda` (the default).
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
        }
    }
}

/// `beamline bench recon --backend cuda`: the CPU benchmark's 512x512 x 720-angle case on every GPU of the
/// node through the multi-device scheduler, 1..N devices, with per-device rates.
pub(crate) fn bench_recon_on_gpus(json: bool) -> anyhow::Result<ExitCode> {
    bench(BenchArgs { backend: BenchBackend::Cuda, size: 512, angles: 720, slices: 64, max_devices: None, json })
}

impl Bench {
    /// Runs the benchmark.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Bench::Gpu(args) => bench(args),
        }
    }
}

/// The devices part of `gpu check`: prints what was found, returns the architectures of the GPUs and a
/// JSON description.
fn report_devices() -> (Vec<String>, serde_json::Value) {
    if !device::driver_present() {
        println!("CUDA driver: not found (libcuda.so.1 is not loadable) -- no GPU can run here");
        println!("devices: none (install the NVIDIA driver on a GPU node; kernels are still compiled below)");
        return (Vec::new(), serde_json::json!({ "driver": null, "devices": [] }));
    }
    let version = device::driver_version().map(|(a, b)| format!("{a}.{b}"));
    println!("CUDA driver: found, CUDA {}", version.as_deref().unwrap_or("version unknown"));
    match device::list_devices() {
        Ok(devices) if devices.is_empty() => {
            println!("devices: none (the driver reports no GPU; check `nvidia-smi`)");
            (Vec::new(), serde_json::json!({ "driver": version, "devices": [] }))
        }
        Ok(devices) => {
            let mut archs = Vec::new();
            let mut list = Vec::new();
            for d in &devices {
                println!(
                    "  cuda:{} {} ({}, {:.1} of {:.1} GiB free)",
                    d.ordinal,
                    d.name,
                    d.arch(),
                    d.free_bytes as f64 / (1u64 << 30) as f64,
                    d.total_bytes as f64 / (1u64 << 30) as f64
                );
                archs.push(d.arch());
                list.push(serde_json::json!({
                    "ordinal": d.ordinal, "name": d.name, "arch": d.arch(),
                    "free_bytes": d.free_bytes, "total_bytes": d.total_bytes,
                }));
            }
            (archs, serde_json::json!({ "driver": version, "devices": list }))
        }
        Err(e) => {
            println!("devices: the driver failed to list them: {e}");
            (Vec::new(), serde_json::json!({ "driver": version, "devices": [], "error": e.to_string() }))
        }
    }
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let (device_archs, devices_json) = report_devices();
    let mut archs: Vec<String> = args.arch.iter().map(|a| a.trim().to_string()).filter(|a| !a.is_empty()).collect();
    for a in device_archs {
        if !archs.contains(&a) {
            archs.push(a);
        }
    }
    if archs.iter().any(|a| !a.starts_with("sm_") && !a.starts_with("compute_")) {
        bail!("--arch {archs:?}: architectures look like sm_80 or compute_80");
    }
    let version = match nvrtc::nvrtc_version() {
        Ok((a, b)) => format!("{a}.{b}"),
        Err(e) => {
            println!("NVRTC: {e}");
            if args.json {
                println!("{}", serde_json::json!({ "check": "gpu", "ok": false, "nvrtc": null, "gpu": devices_json }));
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    println!("NVRTC {version}: compiling {} kernels for {}", kernels::ALL.len(), archs.join(", "));
    let mut failures = 0;
    let mut results = Vec::new();
    for arch in &archs {
        for kernel in kernels::ALL {
            let t0 = Instant::now();
            match nvrtc::compile(kernel, arch) {
                Ok(c) => {
                    let ms = t0.elapsed().as_secs_f64() * 1e3;
                    println!("  {arch:<8} {:<20} {:>7} bytes PTX  ({ms:.0} ms)", kernel.name, c.ptx.len());
                    results.push(serde_json::json!({ "arch": arch, "kernel": kernel.name, "ptx_bytes": c.ptx.len(), "ok": true }));
                }
                Err(e) => {
                    failures += 1;
                    println!("  {arch:<8} {:<20} FAILED: {e}", kernel.name);
                    results.push(
                        serde_json::json!({ "arch": arch, "kernel": kernel.name, "ok": false, "error": e.to_string() }),
                    );
                }
            }
        }
    }
    let total = archs.len() * kernels::ALL.len();
    if failures == 0 {
        println!("ok: all {total} compilations succeeded without warnings");
    } else {
        println!("FAILED: {failures} of {total} compilations failed (logs above)");
    }
    if args.json {
        let v = serde_json::json!({
            "check": "gpu", "ok": failures == 0, "nvrtc": version, "gpu": devices_json, "kernels": results,
        });
        println!("{v}");
    }
    Ok(if failures == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn bench(args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.size < 2 || args.angles < 2 || args.slices == 0 {
        bail!("--size and --angles must be at least 2 and --slices at least 1");
    }
    let shape = ScanShape { size: args.size, angles: args.angles, slices: args.slices };
    let (label, max) = match args.backend {
        BenchBackend::Cpu => ("cpu".to_string(), 1),
        BenchBackend::Cuda => {
            let (gpus, failed) = open_gpus().context(
                "nothing to measure: GPU figures are only ever measured on GPUs \
                 (`--backend cpu` runs the same scheduler path on the CPU)",
            )?;
            for f in &failed {
                eprintln!("not used: {f}");
            }
            if gpus.is_empty() {
                bail!("no GPU could be opened: {}", failed.join("; "));
            }
            let names: Vec<String> = gpus.iter().map(|g| g.name()).collect();
            (names.join(", "), args.max_devices.unwrap_or(gpus.len()).min(gpus.len()))
        }
    };
    println!(
        "reconstruction through the multi-device scheduler: {0}x{0} slices from {1} angles, {2} slices per run, on {label}",
        args.size, args.angles, args.slices
    );
    let backend = args.backend;
    let open = |k: usize| -> Result<Vec<Box<dyn Backend>>, String> {
        match backend {
            BenchBackend::Cpu => Ok(vec![Box::new(CpuBackend::default())]),
            BenchBackend::Cuda => (0..k)
                .map(|i| {
                    reconstruct::gpu::CudaBackend::new(i)
                        .map(|b| Box::new(b) as Box<dyn Backend>)
                        .map_err(|e| e.to_string())
                })
                .collect(),
        }
    };
    let points = run_scaling(shape, max, open)?;
    for p in &points {
        print_point(p);
    }
    if args.json {
        let v = serde_json::json!({
            "bench": "gpu", "backend": label, "shape": shape, "points": points,
            "slices_per_second_1": points.first().map(|p| p.slices_per_second),
            "speedup_max": points.last().map(|p| p.speedup),
        });
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
    }
}
