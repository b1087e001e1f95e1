//! The seam between the pipeline and the hardware that computes: a [`Backend`] turns one [`Slab`] of raw
//! sinograms into reconstructed slices. The CPU backend (rayon) and the CUDA backend implement it; the
//! multi-device scheduler is generic over it.
//!
//! Contract every implementation keeps: the slices it returns for a detector row depend only on that row's
//! data and on the [`ReconSetup`] — never on which other rows share the slab — so any cutting of the
//! volume into slabs, over any number of devices, gives a bit-identical volume on the same backend.

use std::ops::Range;

use crate::filter::FilterKind;

/// Everything about the reconstruction that is the same for every slab.
///
/// Two setups are equal when every field is (floats by `==`): a backend that keeps per-setup constants
/// (the CUDA backend's uploaded tables) compares the setup it prepared for with the one it is given.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconSetup {
    /// Projection angles in radians, one per projection, in acquisition order.
    pub angles_rad: Vec<f32>,
    /// Detector columns per row.
    pub n_cols: usize,
    /// Rotation axis position in detector columns (convention documented in the crate's `geometry`
    /// module: column `c` has its centre at `c`, so the middle of a 512-column detector is 255.5).
    pub center: f64,
    /// Output slices are `out_size` x `out_size` pixels.
    pub out_size: usize,
    /// Filter applied to each projection row before backprojection.
    pub filter: FilterKind,
    /// Vo's sorting-based stripe removal with this median window (columns), or none.
    pub stripe_size: Option<usize>,
    /// Zinger removal with this threshold (in `-log` units), or none.
    pub zinger_threshold: Option<f32>,
    /// Filtered backprojection, gridrec, SIRT or CGLS (all but FBP run on the CPU backend only).
    pub method: crate::method::Method,
    // --- issue 15 §3 ---
    /// Iterations, non-negativity and start of SIRT and CGLS (unused by FBP and gridrec).
    pub iterative: crate::iterative::IterativeOptions,
}

impl ReconSetup {
    /// A setup with the ramp filter, filtered backprojection and no stripe or zinger removal.
    pub fn new(angles_rad: Vec<f32>, n_cols: usize, center: f64, out_size: usize) -> ReconSetup {
        ReconSetup {
            angles_rad,
            n_cols,
            center,
            out_size,
            filter: FilterKind::Ramp,
            stripe_size: None,
            zinger_threshold: None,
            method: crate::method::Method::Fbp,
            iterative: crate::iterative::IterativeOptions::default(),
        }
    }
}

/// One unit of work: a contiguous slab of detector rows, raw counts, with the dark and flat fields for
/// those rows.
#[derive(Debug, Clone)]
pub struct Slab {
    /// Detector rows held (each becomes one output slice).
    pub rows: Range<usize>,
    /// Raw projection counts as f32, laid out `[row][angle][col]` (sinogram order).
    pub projections: Vec<f32>,
    /// Averaged dark field, `[row][col]`.
    pub dark: Vec<f32>,
    /// Averaged flat field taken before the projections, `[row][col]`.
    pub flat_before: Vec<f32>,
    /// Averaged flat field taken after the projections, `[row][col]`; equal to `flat_before` when only
    /// one set of flats exists.
    pub flat_after: Vec<f32>,
    /// Per angle, the weight of `flat_after` in the interpolated flat (0 = before only, 1 = after only).
    pub flat_weight: Vec<f32>,
}

/// Why a backend could not reconstruct a slab. The scheduler retries a failed slab on another device.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The device failed (lost, out of memory, launch error); the slab may be retried elsewhere.
    #[error("device {device} failed: {reason}")]
    Device {
        /// Which device.
        device: String,
        /// What went wrong.
        reason: String,
    },
    /// The input itself is wrong; retrying elsewhere will not help.
    #[error("invalid input: {0}")]
    Input(String),
}

/// Something that reconstructs slabs: the CPU, or one GPU.
pub trait Backend: Send {
    /// Human-readable device name for logs and lanes ("cpu", "cuda:0 NVIDIA A100-SXM4-40GB").
    fn name(&self) -> String;
    /// Reconstructs every row of `slab`; returns `[row][y][x]`, `rows.len() * out_size * out_size` values.
    fn reconstruct(&mut self, setup: &ReconSetup, slab: &Slab) -> Result<Vec<f32>, BackendError>;
    /// How many detector rows this device takes per slab (a GPU sizes this from its free memory).
    fn preferred_rows(&self, setup: &ReconSetup) -> usize {
        let _ = setup;
        16
    }
    /// Device time per stage over every slab so far, for backends that measure it (the CUDA backend's
    /// CUDA events); `None` for those that do not (the CPU), so no report shows a stage figure that was
    /// never measured.
    fn stage_times(&self) -> Option<crate::gpu::StageTimes> {
        None
    }
}
