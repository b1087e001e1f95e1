//! The CPU harness: every kernel of this crate compiled as C++ (through `harness/shim.h`) and launched over
//! its whole grid, one simulated thread at a time, with the launch shapes of [`crate::launch`].
//!
//! It exists to test the kernels' arithmetic and indexing without a GPU; it is slow (no parallelism) and is
//! not a backend.

use crate::launch::{self, Launch, LaunchError};
use crate::{BackprojectGeometry, SlabShape};

mod ffi {
    extern "C" {
        pub fn harness_normalize_minus_log(
            grid: *const u32,
            block: *const u32,
            raw: *const f32,
            dark: *const f32,
            flat_before: *const f32,
            flat_after: *const f32,
            flat_weight: *const f32,
            out: *mut f32,
            n_rows: u32,
            n_angles: u32,
            n_cols: u32,
            floor_value: f32,
        );
        pub fn harness_remove_zingers(
            grid: *const u32,
            block: *const u32,
            input: *const f32,
            out: *mut f32,
            n_rows: u32,
            n_angles: u32,
            n_cols: u32,
            threshold: f32,
        );
        pub fn harness_filter_convolve(
            grid: *const u32,
            block: *const u32,
            input: *const f32,
            taps: *const f32,
            out: *mut f32,
            n_lines: u32,
            n_cols: u32,
        );
        pub fn harness_backproject(
            grid: *const u32,
            block: *const u32,
            filtered: *const f32,
            cos_t: *const f32,
            sin_t: *const f32,
            out: *mut f32,
            n_rows: u32,
            n_angles: u32,
            n_cols: u32,
            out_size: u32,
            c0: f32,
            pad: i32,
        );
        pub fn harness_normalize_minus_log_u16(
            grid: *const u32,
            block: *const u32,
            raw: *const u16,
            dark: *const f32,
            flat_before: *const f32,
            flat_after: *const f32,
            flat_weight: *const f32,
            out: *mut f32,
            n_rows: u32,
            n_angles: u32,
            n_cols: u32,
            floor_value: f32,
        );
        pub fn harness_backproject_rows(
            grid: *const u32,
            block: *const u32,
            filtered: *const f32,
            cos_t: *const f32,
            sin_t: *const f32,
            out: *mut f32,
            n_rows: u32,
            n_angles: u32,
            n_cols: u32,
            out_size: u32,
            c0: f32,
            pad: i32,
        ) -> i32;
        pub fn harness_backproject_rows_f16(
            grid: *const u32,
            block: *const u32,
            filtered: *const u16,
            cos_t: *const f32,
            sin_t: *const f32,
            out: *mut f32,
            n_rows: u32,
            n_angles: u32,
            n_cols: u32,
            out_size: u32,
            c0: f32,
            pad: i32,
        ) -> i32;
        pub fn harness_to_half(grid: *const u32, block: *const u32, input: *const f32, out: *mut u16, n: u64);
        pub fn harness_pad_lines(
            grid: *const u32,
            block: *const u32,
            input: *const f32,
            padded: *mut f32,
            n_lines: u32,
            n_cols: u32,
            padded_len: u32,
        );
        pub fn harness_multiply_response(
            grid: *const u32,
            block: *const u32,
            spectrum: *mut f32,
            response: *const f32,
            n_lines: u32,
            n_freq: u32,
        );
        pub fn harness_crop_lines(
            grid: *const u32,
            block: *const u32,
            padded: *const f32,
            out: *mut f32,
            n_lines: u32,
            n_cols: u32,
            padded_len: u32,
        );
    }
}

/// Why the harness refused to launch a kernel.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HarnessError {
    /// An input buffer does not have the length the shape implies.
    #[error("{what} has {got} values, the slab shape needs {want}")]
    Length {
        /// Which buffer.
        what: &'static str,
        /// Its length.
        got: usize,
        /// The length needed.
        want: usize,
    },
    /// The threads of a block did not all reach the same `__syncthreads` barriers (undefined on a GPU).
    #[error("{kernel}: the threads of a block reached different barriers")]
    DivergentBarrier {
        /// Which kernel.
        kernel: &'static str,
    },
    /// The shape does not fit one launch.
    #[error(transparent)]
    Launch(#[from] LaunchError),
}

fn need<T>(what: &'static str, buf: &[T], want: usize) -> Result<(), HarnessError> {
    if buf.len() == want {
        Ok(())
    } else {
        Err(HarnessError::Length { what, got: buf.len(), want })
    }
}

/// Flat fields and dark of a slab, `[row][col]` each, and the per-angle weight of `flat_after`.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    /// Dark field.
    pub dark: &'a [f32],
    /// Flat field before the scan.
    pub flat_before: &'a [f32],
    /// Flat field after the scan.
    pub flat_after: &'a [f32],
    /// Weight of `flat_after`, one per angle.
    pub flat_weight: &'a [f32],
}

/// The C entry point of a `normalize_minus_log` variant whose raw counts are `T`.
type NormalizeFn<T> = unsafe extern "C" fn(
    *const u32,
    *const u32,
    *const T,
    *const f32,
    *const f32,
    *const f32,
    *const f32,
    *mut f32,
    u32,
    u32,
    u32,
    f32,
);

/// Checks the lengths of a flat-field-and-log call and runs `kernel` on `raw` (`[row][angle][col]`).
fn normalize_with<T>(
    kernel: NormalizeFn<T>,
    shape: SlabShape,
    raw: &[T],
    fields: Fields<'_>,
    floor_value: f32,
) -> Result<Vec<f32>, HarnessError> {
    let per_row = shape.rows as usize * shape.cols as usize;
    need("raw", raw, shape.len())?;
    need("dark", fields.dark, per_row)?;
    need("flat_before", fields.flat_before, per_row)?;
    need("flat_after", fields.flat_after, per_row)?;
    need("flat_weight", fields.flat_weight, shape.angles as usize)?;
    let mut out = vec![0f32; shape.len()];
    let l = launch::elementwise(shape);
    // SAFETY: every buffer has the length the kernel indexes (checked above); `out` is exclusive.
    unsafe {
        kernel(
            l.grid.as_ptr(),
            l.block.as_ptr(),
            raw.as_ptr(),
            fields.dark.as_ptr(),
            fields.flat_before.as_ptr(),
            fields.flat_after.as_ptr(),
            fields.flat_weight.as_ptr(),
            out.as_mut_ptr(),
            shape.rows,
            shape.angles,
            shape.cols,
            floor_value,
        )
    };
    Ok(out)
}

/// Runs `normalize_minus_log` on `raw` (`[row][angle][col]`); returns the `-log` slab.
pub fn normalize_minus_log(
    shape: SlabShape,
    raw: &[f32],
    fields: Fields<'_>,
    floor_value: f32,
) -> Result<Vec<f32>, HarnessError> {
    normalize_with(ffi::harness_normalize_minus_log, shape, raw, fields, floor_value)
}

/// Runs `remove_zingers` on a `-log` slab.
pub fn remove_zingers(shape: SlabShape, input: &[f32], threshold: f32) -> Result<Vec<f32>, HarnessError> {
    need("input", input, shape.len())?;
    let mut out = vec![0f32; shape.len()];
    let l = launch::elementwise(shape);
    // SAFETY: lengths checked; `out` is exclusive.
    unsafe {
        ffi::harness_remove_zingers(
            l.grid.as_ptr(),
            l.block.as_ptr(),
            input.as_ptr(),
            out.as_mut_ptr(),
            shape.rows,
            shape.angles,
            shape.cols,
            threshold,
        )
    };
    Ok(out)
}

/// Runs `filter_convolve` on a `-log` slab with `taps` (`2 cols - 1` values).
pub fn filter_convolve(shape: SlabShape, input: &[f32], taps: &[f32]) -> Result<Vec<f32>, HarnessError> {
    need("input", input, shape.len())?;
    need("taps", taps, (2 * shape.cols as usize).saturating_sub(1))?;
    let mut out = vec![0f32; shape.len()];
    let l: Launch = launch::filter(shape)?;
    // SAFETY: lengths checked; `out` is exclusive; `lines` fits u32 because the launch check passed.
    unsafe {
        ffi::harness_filter_convolve(
            l.grid.as_ptr(),
            l.block.as_ptr(),
            input.as_ptr(),
            taps.as_ptr(),
            out.as_mut_ptr(),
            shape.lines() as u32,
            shape.cols,
        )
    };
    Ok(out)
}

/// Runs `backproject` on a filtered slab with per-angle `cos`/`sin`; returns `[row][y][x]`.
pub fn backproject(
    shape: SlabShape,
    filtered: &[f32],
    cos: &[f32],
    sin: &[f32],
    geometry: BackprojectGeometry,
) -> Result<Vec<f32>, HarnessError> {
    need("filtered", filtered, shape.len())?;
    need("cos", cos, shape.angles as usize)?;
    need("sin", sin, shape.angles as usize)?;
    let n = geometry.out_size as usize;
    let mut out = vec![0f32; shape.rows as usize * n * n];
    let l = launch::backproject(shape.rows, geometry.out_size)?;
    // SAFETY: lengths checked; `out` is exclusive and holds rows x out_size^2 values.
    unsafe {
        ffi::harness_backproject(
            l.grid.as_ptr(),
            l.block.as_ptr(),
            filtered.as_ptr(),
            cos.as_ptr(),
            sin.as_ptr(),
            out.as_mut_ptr(),
            shape.rows,
            shape.angles,
            shape.cols,
            geometry.out_size,
            geometry.c0,
            geometry.pad,
        )
    };
    Ok(out)
}

/// Runs `normalize_minus_log_u16` on uint16 counts `raw` (`[row][angle][col]`); returns the `-log` slab.
pub fn normalize_minus_log_u16(
    shape: SlabShape,
    raw: &[u16],
    fields: Fields<'_>,
    floor_value: f32,
) -> Result<Vec<f32>, HarnessError> {
    normalize_with(ffi::harness_normalize_minus_log_u16, shape, raw, fields, floor_value)
}

/// The filtered sinogram as `backproject_rows` reads it: float, or IEEE half bits (from [`to_half`]).
#[derive(Debug, Clone, Copy)]
pub enum Filtered<'a> {
    /// 32-bit floats.
    F32(&'a [f32]),
    /// IEEE binary16 bit patterns.
    F16(&'a [u16]),
}

/// Runs `backproject_rows` (or `backproject_rows_f16`) over a slab, every block's threads meeting at each
/// barrier (see `harness/shim.h`).
pub fn backproject_rows(
    shape: SlabShape,
    filtered: Filtered<'_>,
    cos: &[f32],
    sin: &[f32],
    geometry: BackprojectGeometry,
) -> Result<Vec<f32>, HarnessError> {
    match filtered {
        Filtered::F32(v) => need("filtered", v, shape.len())?,
        Filtered::F16(v) => need("filtered", v, shape.len())?,
    }
    need("cos", cos, shape.angles as usize)?;
    need("sin", sin, shape.angles as usize)?;
    let n = geometry.out_size as usize;
    let mut out = vec![0f32; shape.rows as usize * n * n];
    let l = launch::backproject_rows(shape.rows, geometry.out_size)?;
    let (g, b, o) = (l.grid.as_ptr(), l.block.as_ptr(), out.as_mut_ptr());
    let (rows, angles, cols, size, c0, pad) =
        (shape.rows, shape.angles, shape.cols, geometry.out_size, geometry.c0, geometry.pad);
    // SAFETY: lengths checked; `out` is exclusive.
    let consistent = unsafe {
        match filtered {
            Filtered::F32(v) => ffi::harness_backproject_rows(
                g,
                b,
                v.as_ptr(),
                cos.as_ptr(),
                sin.as_ptr(),
                o,
                rows,
                angles,
                cols,
                size,
                c0,
                pad,
            ),
            Filtered::F16(v) => ffi::harness_backproject_rows_f16(
                g,
                b,
                v.as_ptr(),
                cos.as_ptr(),
                sin.as_ptr(),
                o,
                rows,
                angles,
                cols,
                size,
                c0,
                pad,
            ),
        }
    };
    if consistent == 1 {
        Ok(out)
    } else {
        Err(HarnessError::DivergentBarrier { kernel: crate::BACKPROJECT_ROWS.name })
    }
}

/// Runs `to_half`: IEEE half bits of every value (round to nearest even).
pub fn to_half(values: &[f32]) -> Vec<u16> {
    let mut out = vec![0u16; values.len()];
    let l = launch::elementwise_len(values.len() as u64);
    // SAFETY: `out` has the length of `values`, which is the `n` passed.
    unsafe {
        ffi::harness_to_half(l.grid.as_ptr(), l.block.as_ptr(), values.as_ptr(), out.as_mut_ptr(), out.len() as u64)
    };
    out
}

/// Runs `pad_lines`: `lines` lines of `n_cols` values into lines of `padded_len` (zeros after the data).
pub fn pad_lines(input: &[f32], n_cols: u32, padded_len: u32) -> Result<Vec<f32>, HarnessError> {
    let n_lines = input.len() / (n_cols.max(1) as usize);
    need("input", input, n_lines * n_cols as usize)?;
    let mut out = vec![f32::NAN; n_lines * padded_len as usize];
    let l = launch::lines(n_lines as u64, padded_len)?;
    // SAFETY: lengths checked; `out` is exclusive; `n_lines` fits u32 because the launch check passed.
    unsafe {
        ffi::harness_pad_lines(
            l.grid.as_ptr(),
            l.block.as_ptr(),
            input.as_ptr(),
            out.as_mut_ptr(),
            n_lines as u32,
            n_cols,
            padded_len,
        )
    };
    Ok(out)
}

/// Runs `multiply_response` on interleaved `(re, im)` spectra of `response.len()` bins per line.
pub fn multiply_response(spectrum: &mut [f32], response: &[f32]) -> Result<(), HarnessError> {
    let n_freq = response.len();
    let n_lines = spectrum.len() / (2 * n_freq.max(1));
    need("spectrum", spectrum, 2 * n_lines * n_freq)?;
    let l = launch::lines(n_lines as u64, n_freq as u32)?;
    // SAFETY: lengths checked; the spectrum is exclusive.
    unsafe {
        ffi::harness_multiply_response(
            l.grid.as_ptr(),
            l.block.as_ptr(),
            spectrum.as_mut_ptr(),
            response.as_ptr(),
            n_lines as u32,
            n_freq as u32,
        )
    };
    Ok(())
}

/// Runs `crop_lines`: the first `n_cols` values of every padded line.
pub fn crop_lines(padded: &[f32], n_cols: u32, padded_len: u32) -> Result<Vec<f32>, HarnessError> {
    let n_lines = padded.len() / (padded_len.max(1) as usize);
    need("padded", padded, n_lines * padded_len as usize)?;
    let mut out = vec![f32::NAN; n_lines * n_cols as usize];
    let l = launch::lines(n_lines as u64, n_cols)?;
    // SAFETY: lengths checked; `out` is exclusive.
    unsafe {
        ffi::harness_crop_lines(
            l.grid.as_ptr(),
            l.block.as_ptr(),
            padded.as_ptr(),
            out.as_mut_ptr(),
            n_lines as u32,
            n_cols,
            padded_len,
        )
    };
    Ok(out)
}
