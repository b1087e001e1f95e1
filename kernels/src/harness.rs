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
    /// The shape does not fit one launch.
    #[error(transparent)]
    Launch(#[from] LaunchError),
}

fn need(what: &'static str, buf: &[f32], want: usize) -> Result<(), HarnessError> {
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

/// Runs `normalize_minus_log` on `raw` (`[row][angle][col]`); returns the `-log` slab.
pub fn normalize_minus_log(
    shape: SlabShape,
    raw: &[f32],
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
        ffi::harness_normalize_minus_log(
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
