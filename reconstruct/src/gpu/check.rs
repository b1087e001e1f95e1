//! The drivers behind `beamline gpu check` and `beamline bench gpu`: what an operator runs on a new node.
//!
//! [`probe_devices`] says what the CUDA driver sees, [`archs_to_compile`] and [`compile_kernels`] compile
//! every kernel through NVRTC for each architecture (reporting each compilation as it finishes), and
//! [`ScalingPlan`] opens the devices of a scaling benchmark and runs it through [`super::bench`]. Nothing
//! here prints: callers word the results.

use std::time::Instant;

use crate::backend::Backend;
use crate::cpu::CpuBackend;

use super::bench::{run_scaling, BenchError, ScalingPoint, ScanShape};
use super::{device, kernels, nvrtc, open_gpus, DeviceInfo, GpuError, GpuOptions};

/// What the CUDA driver of this machine reports.
#[derive(Debug, Clone)]
pub enum DeviceProbe {
    /// libcuda.so.1 is not loadable: no GPU can run here.
    NoDriver,
    /// The driver loaded.
    Driver {
        /// CUDA version the driver reports, as `12.4` (`None` when it does not say).
        version: Option<String>,
        /// The GPUs it lists (possibly none), or why listing them failed.
        devices: Result<Vec<DeviceInfo>, String>,
    },
}

impl DeviceProbe {
    /// The architectures (`sm_80` ...) of the GPUs found.
    pub fn archs(&self) -> Vec<String> {
        match self {
            DeviceProbe::Driver { devices: Ok(devices), .. } => devices.iter().map(DeviceInfo::arch).collect(),
            _ => Vec::new(),
        }
    }
}

/// Asks the CUDA driver (if any) for its version and devices; never fails, never panics.
pub fn probe_devices() -> DeviceProbe {
    if !device::driver_present() {
        return DeviceProbe::NoDriver;
    }
    let version = device::driver_version().map(|(a, b)| format!("{a}.{b}"));
    DeviceProbe::Driver { version, devices: device::list_devices().map_err(|e| e.to_string()) }
}

/// Why the kernel check could not start.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// An architecture that is not `sm_NN` or `compute_NN`.
    #[error("--arch {0:?}: architectures look like sm_80 or compute_80")]
    Arch(Vec<String>),
}

/// The architectures to compile for: `requested` (trimmed, empty entries dropped) followed by those of the
/// GPUs `probe` found that are not already asked for.
pub fn archs_to_compile(requested: &[String], probe: &DeviceProbe) -> Result<Vec<String>, CheckError> {
    let mut archs: Vec<String> = requested.iter().map(|a| a.trim().to_string()).filter(|a| !a.is_empty()).collect();
    for a in probe.archs() {
        if !archs.contains(&a) {
            archs.push(a);
        }
    }
    if archs.iter().any(|a| !a.starts_with("sm_") && !a.starts_with("compute_")) {
        return Err(CheckError::Arch(archs));
    }
    Ok(archs)
}

/// The NVRTC version as `12.4`, or why NVRTC cannot be used.
pub fn nvrtc_version() -> Result<String, nvrtc::CompileError> {
    nvrtc::nvrtc_version().map(|(a, b)| format!("{a}.{b}"))
}

/// One kernel compiled (or not) for one architecture.
#[derive(Debug, Clone)]
pub struct KernelCompile {
    /// Target architecture.
    pub arch: String,
    /// Kernel name.
    pub kernel: &'static str,
    /// Bytes of PTX, or NVRTC's complaint.
    pub result: Result<usize, String>,
    /// Milliseconds the compilation took (0 when it came from the cache).
    pub millis: f64,
}

/// Every compilation of [`compile_kernels`].
#[derive(Debug, Clone)]
pub struct KernelCheck {
    /// One entry per architecture and kernel, architectures outermost.
    pub results: Vec<KernelCompile>,
    /// NVRTC runs it took: kernels of one source file share one run per architecture.
    pub nvrtc_runs: usize,
}

impl KernelCheck {
    /// Compilations that failed.
    pub fn failures(&self) -> usize {
        self.results.iter().filter(|r| r.result.is_err()).count()
    }
    /// Whether every kernel compiled for every architecture.
    pub fn ok(&self) -> bool {
        self.failures() == 0
    }
}

/// Compiles every kernel of the `kernels` crate for every architecture in `archs`, calling `each` as each
/// compilation finishes.
pub fn compile_kernels(archs: &[String], mut each: impl FnMut(&KernelCompile)) -> KernelCheck {
    let before = nvrtc::compilations();
    let mut results = Vec::with_capacity(archs.len() * kernels::ALL.len());
    for arch in archs {
        for kernel in kernels::ALL {
            let t0 = Instant::now();
            let result = nvrtc::compile(kernel, arch).map(|c| c.ptx().len()).map_err(|e| e.to_string());
            let c = KernelCompile {
                arch: arch.clone(),
                kernel: kernel.name,
                result,
                millis: t0.elapsed().as_secs_f64() * 1e3,
            };
            each(&c);
            results.push(c);
        }
    }
    KernelCheck { results, nvrtc_runs: nvrtc::compilations() - before }
}

/// Which devices a scaling benchmark runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalingDevices {
    /// Every CUDA GPU, 1..N of them.
    Cuda,
    /// One CPU backend (all cores): the same scheduler path, as a reference on machines without GPUs.
    Cpu,
}

/// Why a scaling benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum ScalingError {
    /// A shape too small to reconstruct.
    #[error("--size and --angles must be at least 2 and --slices at least 1")]
    Shape,
    /// No GPU side at all.
    #[error(
        "nothing to measure: GPU figures are only ever measured on GPUs (`--backend cpu` runs the same scheduler \
         path on the CPU)"
    )]
    NoGpus(#[source] GpuError),
    /// GPUs listed, none opened.
    #[error("no GPU could be opened: {}", .0.join("; "))]
    NoneOpened(Vec<String>),
    /// The benchmark failed.
    #[error(transparent)]
    Bench(#[from] BenchError),
}

/// A scaling benchmark with its devices found: [`ScalingPlan::run`] measures it.
#[derive(Debug, Clone)]
pub struct ScalingPlan {
    /// The devices.
    pub devices: ScalingDevices,
    /// The scan reconstructed.
    pub shape: ScanShape,
    /// What runs: `cpu`, or the GPU names joined by `, `.
    pub label: String,
    /// Runs go from 1 to this many devices.
    pub max_devices: usize,
    /// GPUs that were found but could not be opened, with why.
    pub not_used: Vec<String>,
    /// Options of the CUDA backends (storage, filter); set after [`ScalingPlan::open`].
    pub options: GpuOptions,
    /// Why GPUs were asked for and the CPU runs instead ([`bench_scaling`]); `None` when what was asked runs.
    pub fallback: Option<String>,
}

impl ScalingPlan {
    /// Checks the shape and finds the devices (at most `max_devices` GPUs, default all).
    pub fn open(
        devices: ScalingDevices,
        shape: ScanShape,
        max_devices: Option<usize>,
    ) -> Result<ScalingPlan, ScalingError> {
        if shape.size < 2 || shape.angles < 2 || shape.slices == 0 {
            return Err(ScalingError::Shape);
        }
        let (label, max, not_used) = match devices {
            ScalingDevices::Cpu => ("cpu".to_string(), 1, Vec::new()),
            ScalingDevices::Cuda => {
                let (gpus, failed) = open_gpus().map_err(ScalingError::NoGpus)?;
                if gpus.is_empty() {
                    return Err(ScalingError::NoneOpened(failed));
                }
                let names: Vec<String> = gpus.iter().map(|g| g.name()).collect();
                (names.join(", "), max_devices.unwrap_or(gpus.len()).min(gpus.len()), failed)
            }
        };
        Ok(ScalingPlan {
            devices,
            shape,
            label,
            max_devices: max,
            not_used,
            options: GpuOptions::default(),
            fallback: None,
        })
    }

    /// Reconstructs the scan on 1, 2, ... `max_devices` devices through the scheduler.
    pub fn run(&self) -> Result<Vec<ScalingPoint>, ScalingError> {
        let (devices, options) = (self.devices, self.options);
        let open = |k: usize| -> Result<Vec<Box<dyn Backend>>, String> {
            match devices {
                ScalingDevices::Cpu => Ok(vec![Box::new(CpuBackend::default())]),
                ScalingDevices::Cuda => (0..k)
                    .map(|i| {
                        super::CudaBackend::with_options(i, options)
                            .map(|b| Box::new(b) as Box<dyn Backend>)
                            .map_err(|e| e.to_string())
                    })
                    .collect(),
            }
        };
        Ok(run_scaling(self.shape, self.max_devices, open)?)
    }
}

/// What a scaling benchmark asked for and measured (`beamline gpu bench`, `beamline bench recon --backend
/// cuda`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScalingBench {
    /// `cuda` or `cpu`: what was asked.
    pub backend_asked: &'static str,
    /// `cuda` or `cpu`: what really ran (the CPU when GPUs were asked and none could be used).
    pub backend_ran: &'static str,
    /// What ran: `cpu`, or the GPU names joined by `, `.
    pub backend: String,
    /// Why the CPU ran instead of the GPUs asked for.
    pub fallback: Option<String>,
    /// GPUs found but not opened, with why.
    pub not_used: Vec<String>,
    /// The scan.
    pub shape: ScanShape,
    /// Storage of the filtered sinogram on the GPUs (`None` when no GPU ran).
    pub gpu_dtype: Option<&'static str>,
    /// Filter option of the GPUs (`None` when no GPU ran).
    pub gpu_filter: Option<&'static str>,
    /// One point per device count.
    pub points: Vec<ScalingPoint>,
}

impl ScalingBench {
    /// The stage times of the one-device run, when a GPU ran.
    pub fn stages(&self) -> Option<&super::StageReport> {
        self.points.first().and_then(|p| p.stages.as_ref())
    }
}

/// Runs a scaling benchmark: finds the devices, calls `started` with the plan (before the minutes of
/// measuring), runs 1..N devices. When GPUs are asked for and none can be used (no driver, no device, none
/// opened) the same scheduler path runs on the CPU instead and [`ScalingPlan::fallback`] says why; its
/// figures are the CPU's and it reports no stage times.
pub fn bench_scaling(
    devices: ScalingDevices,
    shape: ScanShape,
    max_devices: Option<usize>,
    options: GpuOptions,
    started: impl FnOnce(&ScalingPlan),
) -> Result<ScalingBench, ScalingError> {
    let mut plan = match ScalingPlan::open(devices, shape, max_devices) {
        Ok(plan) => plan,
        Err(ScalingError::NoGpus(e)) => {
            ScalingPlan { fallback: Some(e.to_string()), ..ScalingPlan::open(ScalingDevices::Cpu, shape, None)? }
        }
        Err(ScalingError::NoneOpened(failed)) => ScalingPlan {
            fallback: Some(format!("no GPU could be opened: {}", failed.join("; "))),
            ..ScalingPlan::open(ScalingDevices::Cpu, shape, None)?
        },
        Err(e) => return Err(e),
    };
    plan.options = options;
    started(&plan);
    let points = plan.run()?;
    let name = |d: ScalingDevices| match d {
        ScalingDevices::Cuda => "cuda",
        ScalingDevices::Cpu => "cpu",
    };
    let on_gpu = plan.devices == ScalingDevices::Cuda;
    Ok(ScalingBench {
        backend_asked: name(devices),
        backend_ran: name(plan.devices),
        backend: plan.label,
        fallback: plan.fallback,
        not_used: plan.not_used,
        shape,
        gpu_dtype: on_gpu.then(|| options.dtype.name()),
        gpu_filter: on_gpu.then(|| options.filter.name()),
        points,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architectures_add_the_devices_and_refuse_nonsense() {
        let probe = DeviceProbe::NoDriver;
        let asked = vec![" sm_80".to_string(), "".into(), "compute_90".into()];
        assert_eq!(archs_to_compile(&asked, &probe).unwrap(), vec!["sm_80", "compute_90"]);
        assert!(matches!(archs_to_compile(&["80".into()], &probe).unwrap_err(), CheckError::Arch(_)));
        let gpu =
            DeviceInfo { ordinal: 0, name: "test".into(), compute_capability: (9, 0), free_bytes: 1, total_bytes: 2 };
        let probe = DeviceProbe::Driver { version: None, devices: Ok(vec![gpu.clone(), gpu]) };
        assert_eq!(archs_to_compile(&["sm_80".into()], &probe).unwrap(), vec!["sm_80", "sm_90"]);
        assert_eq!(archs_to_compile(&["sm_90".into()], &probe).unwrap(), vec!["sm_90"]);
    }

    #[test]
    fn scaling_refuses_empty_shapes_and_runs_on_the_cpu() {
        let bad = ScanShape { size: 1, angles: 8, slices: 1 };
        assert!(matches!(ScalingPlan::open(ScalingDevices::Cpu, bad, None).unwrap_err(), ScalingError::Shape));
        let shape = ScanShape { size: 16, angles: 8, slices: 2 };
        let plan = ScalingPlan::open(ScalingDevices::Cpu, shape, None).unwrap();
        assert_eq!((plan.label.as_str(), plan.max_devices), ("cpu", 1));
        let points = plan.run().unwrap();
        assert_eq!(points.len(), 1);
        assert_eq!(points[0].devices, 1);
        assert!(points[0].stages.is_none(), "the CPU measures no stage times");
    }

    /// Asked for GPUs on a machine without a driver, the benchmark runs on the CPU, says why and what ran,
    /// and carries no GPU figure (no stage times, no GPU options).
    #[test]
    fn scaling_on_cuda_without_a_driver_runs_on_the_cpu_and_says_so() {
        if device::driver_present() {
            return; // a GPU node: the GPU path is what runs (tests/tests/gpu_check.rs covers it).
        }
        let shape = ScanShape { size: 16, angles: 8, slices: 2 };
        let mut seen = None;
        let options = GpuOptions { dtype: super::super::GpuDtype::F16, filter: super::super::GpuFilter::Convolve };
        let b = bench_scaling(ScalingDevices::Cuda, shape, None, options, |p| seen = p.fallback.clone()).unwrap();
        assert_eq!((b.backend_asked, b.backend_ran, b.backend.as_str()), ("cuda", "cpu", "cpu"));
        let why = b.fallback.as_deref().expect("says why");
        assert!(why.contains("no CUDA driver"), "{why}");
        assert_eq!(seen.as_deref(), Some(why), "the caller hears of it before the run");
        assert_eq!((b.gpu_dtype, b.gpu_filter), (None, None));
        assert!(b.stages().is_none() && b.points.iter().all(|p| p.stages.is_none()));
        let json = serde_json::to_value(&b).unwrap();
        assert_eq!(json["backend_ran"], "cpu");
        assert!(json["points"][0]["per_device"][0].get("stages").is_none(), "{json}");
    }
}
