//! The CUDA backend and everything around it: NVRTC compilation of the `kernels` crate's sources, the
//! host-side constants the kernels take, device discovery, and run-time backend selection.
//!
//! Nothing here links CUDA: cudarc loads libcuda and libnvrtc at run time, and every entry point checks
//! that they are present before touching them, so the binary builds and runs on machines without CUDA
//! (`--backend auto` then says so in one line and uses the CPU).

pub mod bench;
pub mod device;
pub mod host;
pub mod nvrtc;
pub mod select;

/// The kernel sources and their CPU harness (re-exported so tools and tests reach them through this crate).
pub use kernels;

pub use device::{driver_present, list_devices, CudaBackend, DeviceInfo};
pub use select::{open_gpus, select_backends};

/// Why the GPU side could not be used.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// No CUDA driver library on this machine.
    #[error("no CUDA driver found (libcuda.so.1 not loadable): install the NVIDIA driver, or use --backend cpu")]
    NoDriver,
    /// The driver is present but reports no device.
    #[error("the CUDA driver reports no GPU: check `nvidia-smi`, or use --backend cpu")]
    NoDevice,
    /// A driver call failed.
    #[error("CUDA driver: {0}")]
    Driver(String),
    /// A kernel did not compile.
    #[error(transparent)]
    Compile(#[from] nvrtc::CompileError),
}
