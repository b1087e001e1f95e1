//! Runs a reconstruction over one or many devices: a reader produces slabs, each device's worker pulls the
//! next slab, results are handed to the writer in slice order.
//!
//! PLACEHOLDER (owned by the GPU engineer, issue 4): this first version is sequential on the first device;
//! the signature is the contract the pipeline codes against.

use std::ops::Range;

use crate::backend::{Backend, BackendError, ReconSetup, Slab};

/// What a scheduled run did.
#[derive(Debug, Default, Clone)]
pub struct RunReport {
    /// Rows (slices) reconstructed.
    pub rows: usize,
    /// Slabs reconstructed per device name.
    pub slabs_per_device: Vec<(String, usize)>,
    /// Slabs that failed on a device and were retried on another, with the reason.
    pub retries: Vec<String>,
}

/// Why a scheduled run stopped.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// Reading a slab failed.
    #[error("reading rows {rows:?}: {reason}")]
    Read {
        /// Rows being read.
        rows: Range<usize>,
        /// What went wrong.
        reason: String,
    },
    /// Every device failed on a slab.
    #[error("no device could reconstruct rows {rows:?}: {source}")]
    AllDevicesFailed {
        /// Rows of the slab.
        rows: Range<usize>,
        /// The last device error.
        source: BackendError,
    },
    /// Writing results failed.
    #[error("writing rows {rows:?}: {reason}")]
    Write {
        /// Rows being written.
        rows: Range<usize>,
        /// What went wrong.
        reason: String,
    },
    /// There is no device to run on.
    #[error("no device to run on")]
    NoDevice,
}

/// Reconstructs `rows` on `devices`. `read` loads the slab for a range of rows (called from a reader
/// thread, so it must be `Send + Sync`); `write` receives `[row][y][x]` results strictly in row order.
pub fn run<R, W>(
    setup: &ReconSetup,
    mut devices: Vec<Box<dyn Backend>>,
    rows: Range<usize>,
    read: R,
    mut write: W,
) -> Result<RunReport, ScheduleError>
where
    R: Fn(Range<usize>) -> Result<Slab, String> + Send + Sync,
    W: FnMut(Range<usize>, Vec<f32>) -> Result<(), String>,
{
    let device = devices.first_mut().ok_or(ScheduleError::NoDevice)?;
    let step = device.preferred_rows(setup).max(1);
    let mut report = RunReport::default();
    let mut start = rows.start;
    let mut count = 0;
    while start < rows.end {
        let r = start..(start + step).min(rows.end);
        let slab = read(r.clone()).map_err(|reason| ScheduleError::Read { rows: r.clone(), reason })?;
        let out = device
            .reconstruct(setup, &slab)
            .map_err(|source| ScheduleError::AllDevicesFailed { rows: r.clone(), source })?;
        write(r.clone(), out).map_err(|reason| ScheduleError::Write { rows: r.clone(), reason })?;
        report.rows += r.len();
        count += 1;
        start = r.end;
    }
    report.slabs_per_device.push((device.name(), count));
    Ok(report)
}
