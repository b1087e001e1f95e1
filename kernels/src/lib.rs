//! Kernels: the CUDA C sources of every GPU kernel, embedded as strings for NVRTC, plus a CPU harness that
//! compiles the same kernel bodies as C++ so tests can check their arithmetic without a GPU.
//!
//! This crate must not link CUDA or decide scheduling; it only owns kernel text, launch shapes and the
//! harness.
//!
//! # The kernels
//!
//! | kernel                | one thread per          | what it does                                            |
//! |-----------------------|-------------------------|---------------------------------------------------------|
//! | `normalize_minus_log` | value (grid-stride)     | dark/flat (interpolated flats), clamp, `-log`           |
//! | `remove_zingers`      | value (grid-stride)     | 3-angle median outlier replacement                      |
//! | `filter_convolve`     | output value            | row filter as a direct real-space convolution           |
//! | `backproject`         | output pixel            | parallel-beam backprojection, manual linear interpolation |
//!
//! The filter is a direct convolution with the real-space taps of the CPU backend's frequency response,
//! not cuFFT: cuFFT cannot run here, so a cuFFT path could never be checked against the CPU backend; the
//! convolution is the same linear map (see `cuda/filter.cu`) and the harness runs it exactly as the GPU does.
//! It costs `n_cols` multiply-adds per value instead of `O(log n)`, about as much arithmetic as the
//! backprojection itself when `n_angles ~ n_cols`.
//!
//! # What the CPU harness covers
//!
//! Every kernel body, index computation and boundary test, launched over the same grid and block shapes
//! ([`launch`]) the GPU backend uses. It does not cover: fused multiply-add contraction (NVRTC fuses by
//! default, the harness is built with `-ffp-contract=off`), the GPU's `logf` (within 1 ulp of glibc's),
//! memory transfers, streams and launch failures; none of the kernels uses shared memory, barriers, warp
//! intrinsics or atomics, the constructs a sequential harness could not run faithfully.

#![warn(missing_docs)]

pub mod harness;
pub mod launch;

/// One CUDA kernel: its entry point and the source file that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kernel {
    /// The `extern "C" __global__` function name (what the driver looks up in the module).
    pub name: &'static str,
    /// File name under `kernels/cuda/`.
    pub file: &'static str,
    /// The CUDA C source, self-contained (no `#include`), for NVRTC.
    pub source: &'static str,
}

/// A [`Kernel`] for entry point `$name` in `cuda/$file`.
macro_rules! kernel {
    ($name:literal, $file:literal) => {
        Kernel { name: $name, file: $file, source: include_str!(concat!("../cuda/", $file)) }
    };
}

/// Dark/flat normalisation and `-log`.
pub const NORMALIZE_MINUS_LOG: Kernel = kernel!("normalize_minus_log", "normalize.cu");

/// Zinger removal (median of three neighbouring angles).
pub const REMOVE_ZINGERS: Kernel = kernel!("remove_zingers", "zingers.cu");

/// Row filter as a direct convolution with real-space taps.
pub const FILTER_CONVOLVE: Kernel = kernel!("filter_convolve", "filter.cu");

/// Parallel-beam backprojection.
pub const BACKPROJECT: Kernel = kernel!("backproject", "backproject.cu");

/// Every kernel, in pipeline order.
pub const ALL: [Kernel; 4] = [NORMALIZE_MINUS_LOG, REMOVE_ZINGERS, FILTER_CONVOLVE, BACKPROJECT];

/// The shape of a slab as the kernels see it: `rows` sinograms of `angles` x `cols` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlabShape {
    /// Detector rows (sinograms, and output slices) in the slab.
    pub rows: u32,
    /// Projection angles per sinogram.
    pub angles: u32,
    /// Detector columns.
    pub cols: u32,
}

impl SlabShape {
    /// Number of values in the slab's sinograms.
    pub fn len(&self) -> usize {
        self.rows as usize * self.angles as usize * self.cols as usize
    }

    /// True when the slab holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of filter lines (one per row and angle).
    pub fn lines(&self) -> u64 {
        self.rows as u64 * self.angles as u64
    }
}

/// Where the backprojection puts the rotation axis, in the padded column frame of the CPU backend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackprojectGeometry {
    /// Output slices are `out_size` x `out_size`.
    pub out_size: u32,
    /// Axis position plus padding, `center + pad`, as f32.
    pub c0: f32,
    /// Columns of zero padding assumed on the left of the detector (keeps positions non-negative).
    pub pad: i32,
}
