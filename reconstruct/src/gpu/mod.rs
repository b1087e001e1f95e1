//! The CUDA backend and everything around it: NVRTC compilation of the `kernels` crate's sources, the
//! host-side constants the kernels take, device discovery, the GPUs the environment (Slurm `--gres`,
//! `CUDA_VISIBLE_DEVICES`) leaves this process, and run-time backend selection.
//!
//! Nothing here links CUDA: cudarc loads libcuda and libnvrtc at run time, and every entry point checks
//! that they are present before touching them, so the binary builds and runs on machines without CUDA
//! (`--backend auto` then says so in one line and uses the CPU).
//!
//! # Status
//!
//! Compiled and checked without a GPU: the kernels compile with NVRTC for sm_80 and sm_90 without warnings,
//! and the CPU harness runs them against the CPU backend (tests/tests/gpu_*.rs). [`CudaBackend`] compiles
//! but has never executed: no machine it was written on has a GPU. No GPU figure has been measured;
//! `beamline gpu bench` measures them on a GPU node (1..N devices, per-device rates, speed-up, and the
//! per-stage device times of [`stages`]). Each kernel source is compiled by NVRTC once per process
//! ([`nvrtc::compilations`]) and its PTX loaded once per device context.
//!
//! # Design against the targets (arithmetic, not measurements)
//!
//! For 2048^3 from 2048 angles: the slabs carry f32 counts, 34 GB host-to-device and 34 GB back, which the
//! two lanes per device overlap with the kernels (A100: separate copy engines each way, PCIe 4 x16 about
//! 25 GB/s, so about 1.4 s each way). The direct backprojection is 2048^4 = 1.8e13 updates, at least 7 s at
//! the A100's fp32 peak: it cannot meet tomocupy's 7 s (which uses Fourier-based backprojection), and the
//! direct-convolution filter costs as many multiply-adds again. The next steps once a GPU is available to
//! verify them: a cuFFT filter (needs cudarc's `cufft` feature), u16 counts on the wire (halves the upload),
//! several output slices per thread. Scaling: devices share only the reader and the in-order writer, and a
//! slab costs a device seconds of compute against well under a second of reading, so two GPUs should
//! approach 2x; `beamline gpu bench` checks this.

pub mod bench;
pub mod check;
pub mod device;
pub mod host;
pub mod nvrtc;
pub mod select;
pub mod stages;
pub mod visible;

/// The kernel sources and their CPU harness (re-exported so tools and tests reach them through this crate).
pub use kernels;

pub use device::{
    cufft_present, device_count, driver_present, list_devices, CudaBackend, DeviceInfo, GpuDtype, GpuFilter, GpuOptions,
};
pub use select::{open_gpus, open_gpus_with, select_backends, select_backends_with};
pub use stages::{StageReport, StageSummary, StageTimes};
pub use visible::{visible_ordinals, Visibility, VisibilityError};

/// Why the GPU side could not be used.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// No CUDA driver library on this machine.
    #[error("no CUDA driver found (libcuda.so.1 not loadable): install the NVIDIA driver, or use --backend cpu")]
    NoDriver,
    /// The driver is present but reports no device.
    #[error("the CUDA driver reports no GPU: check `nvidia-smi`, or use --backend cpu")]
    NoDevice,
    /// The driver lists GPUs, but the environment leaves this process none of them.
    #[error("no GPU visible to this process ({0}): check the job's --gres=gpu:N, or use --backend cpu")]
    NoneVisible(String),
    /// `CUDA_VISIBLE_DEVICES` or a Slurm GPU list could not be used.
    #[error(transparent)]
    Visibility(#[from] visible::VisibilityError),
    /// A driver call failed.
    #[error("CUDA driver: {0}")]
    Driver(String),
    /// `--gpu-filter fft` was asked for, but libcufft does not load.
    #[error(
        "cuFFT (libcufft.so.12) not found: put the CUDA toolkit's or the nvidia-cufft wheel's lib folder on \
         LD_LIBRARY_PATH, or use the direct-convolution filter (the default falls back to it)"
    )]
    NoCufft,
    /// A kernel did not compile.
    #[error(transparent)]
    Compile(#[from] nvrtc::CompileError),
}
