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
//! | `normalize_minus_log_u16` | value (grid-stride) | the same from uint16 counts                             |
//! | `remove_zingers`      | value (grid-stride)     | 3-angle median outlier replacement                      |
//! | `filter_convolve`     | output value            | row filter as a direct real-space convolution           |
//! | `pad_lines`, `multiply_response`, `crop_lines` | value | the non-FFT steps of the cuFFT filter          |
//! | `backproject`         | output pixel            | parallel-beam backprojection, manual linear interpolation |
//! | `backproject_rows`    | output pixel of 8 slices | the same, angles tiled in shared memory, positions shared |
//! | `to_half`, `backproject_rows_f16` | value / pixel of 8 slices | half-precision storage of the filtered sinogram |
//!
//! Two filters: cuFFT (batched real-to-complex over every line, then `multiply_response` and back; the CUDA
//! backend's default when libcufft loads) and `filter_convolve`, a direct convolution with the real-space
//! taps of the same frequency response (see `cuda/filter.cu`), kept as the harness reference and the
//! fallback when cuFFT is absent. The convolution costs `n_cols` multiply-adds per value instead of
//! `O(log n)`, about as much arithmetic as the backprojection itself when `n_angles ~ n_cols`. cuFFT cannot
//! run in the harness; its padding, response and cropping kernels can, around a CPU FFT.
//!
//! # What the CPU harness covers
//!
//! Every kernel body, index computation and boundary test, launched over the same grid and block shapes
//! ([`launch`]) the GPU backend uses. It does not cover: fused multiply-add contraction (NVRTC fuses by
//! default, the harness is built with `-ffp-contract=off`), the GPU's `logf` (within 1 ulp of glibc's),
//! memory transfers, streams and launch failures. `backproject_rows` uses shared memory and
//! `__syncthreads`: the harness runs each block's threads as coroutines that meet at every barrier (see
//! `harness/shim.h`), and reports a block whose threads reach different barriers. No kernel uses warp
//! intrinsics or atomics, which the harness does not simulate.

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

/// Dark/flat normalisation and `-log` of uint16 counts (the detector's own type, half the upload bytes).
pub const NORMALIZE_MINUS_LOG_U16: Kernel = kernel!("normalize_minus_log_u16", "normalize.cu");

/// cuFFT filter: copy lines into zero-padded lines of the CPU backend's padded length.
pub const PAD_LINES: Kernel = kernel!("pad_lines", "filter_fft.cu");

/// cuFFT filter: multiply each line's half spectrum by the (pre-scaled) frequency response.
pub const MULTIPLY_RESPONSE: Kernel = kernel!("multiply_response", "filter_fft.cu");

/// cuFFT filter: the first `n_cols` values of each padded line.
pub const CROP_LINES: Kernel = kernel!("crop_lines", "filter_fft.cu");

/// Backprojection of [`launch::BACKPROJECT_ROWS`] slices per block, angles tiled through shared memory.
pub const BACKPROJECT_ROWS: Kernel = kernel!("backproject_rows", "backproject_rows.cu");

/// [`BACKPROJECT_ROWS`] reading the filtered sinogram as IEEE half.
pub const BACKPROJECT_ROWS_F16: Kernel = kernel!("backproject_rows_f16", "backproject_rows.cu");

/// float to IEEE half (round to nearest even), for [`BACKPROJECT_ROWS_F16`].
pub const TO_HALF: Kernel = kernel!("to_half", "backproject_rows.cu");

/// Every kernel, in pipeline order.
pub const ALL: [Kernel; 11] = [
    NORMALIZE_MINUS_LOG,
    NORMALIZE_MINUS_LOG_U16,
    REMOVE_ZINGERS,
    FILTER_CONVOLVE,
    PAD_LINES,
    MULTIPLY_RESPONSE,
    CROP_LINES,
    BACKPROJECT,
    BACKPROJECT_ROWS,
    TO_HALF,
    BACKPROJECT_ROWS_F16,
];

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
