//! Paganin single-distance phase retrieval (Paganin et al. 2002, J. Microsc. 206:33), with physical
//! parameters: X-ray energy, sample-detector distance, detector pixel size and the material's `delta/beta`.
//!
//! For a homogeneous object the intensity at distance `z` is, to first order in `z`,
//! `I_z = (1 - (z delta / mu) nabla^2) exp(-mu t)`, so the filter
//! `T = F^-1[ F[I_z / I_0] / (1 + pi lambda z (delta/beta) |f|^2) ]` (`f` in cycles per metre) gives back
//! `exp(-mu t)` and `-ln T = mu t`: the usual `-log` then reconstructs the attenuation of the projected
//! thickness. `delta/beta` is explicit: TomoPy's `alpha` is a regulariser, not `delta/beta`.
//!
//! [`Paganin::apply`] filters one flat-fielded projection (`rows x cols` transmissions) in place, padded with
//! its edge values to at least [`Paganin::margin`] pixels on every side (the kernel decays as `exp(-r / l)`,
//! `l = sqrt(lambda z delta/beta / (4 pi)) / pixel`; the margin is `8 l`), so nothing wraps around. A slab of
//! detector rows is filtered with `margin` rows of context above and below ([`PaganinParams::halo_rows`]).

use std::sync::Arc;

use rustfft::num_complex::Complex32;
use rustfft::{Fft, FftPlanner};
use serde::Serialize;

/// `h c` in keV metres: `lambda = HC_KEV_M / E`.
pub const HC_KEV_M: f64 = 1.239_841_984_332e-9;

/// The physical parameters of one phase retrieval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PaganinParams {
    /// Photon energy, keV.
    pub energy_kev: f64,
    /// Sample-detector (propagation) distance, metres.
    pub distance_m: f64,
    /// Detector pixel size (in the object plane), micrometres.
    pub pixel_size_um: f64,
    /// `delta / beta` of the material.
    pub delta_beta: f64,
}

/// Why a phase retrieval cannot be set up.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PaganinError {
    /// A parameter that is missing from both the options and the file.
    #[error(
        "--phase paganin needs the {what}: give {option}, or record it in the file at {path} (with a units attribute)"
    )]
    Missing {
        /// `energy`, `distance`, `pixel size`.
        what: &'static str,
        /// The option that gives it.
        option: &'static str,
        /// Where the file would hold it.
        path: &'static str,
    },
    /// A parameter that is not a positive finite number.
    #[error("--phase paganin: {what} {value} is not positive; give {option} as a positive number")]
    NotPositive {
        /// Which parameter.
        what: &'static str,
        /// The option.
        option: &'static str,
        /// The value.
        value: f64,
    },
    /// A frame whose length is not `rows x cols`.
    #[error("projection has {len} values, the filter was made for {rows} x {cols}")]
    Size {
        /// Values given.
        len: usize,
        /// Rows of the filter.
        rows: usize,
        /// Columns of the filter.
        cols: usize,
    },
}

/// What `--phase paganin` was given; missing values come from the file ([`FilePhysics`]).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PhaseOptions {
    /// `--energy KEV`.
    pub energy_kev: Option<f64>,
    /// `--distance M`.
    pub distance_m: Option<f64>,
    /// `--pixel-size UM`.
    pub pixel_size_um: Option<f64>,
    /// `--delta-beta R`.
    pub delta_beta: f64,
}

/// Energy, distance and pixel size as recorded in an NXtomo file, converted to keV, m and um.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct FilePhysics {
    /// keV.
    pub energy_kev: Option<f64>,
    /// m.
    pub distance_m: Option<f64>,
    /// um.
    pub pixel_size_um: Option<f64>,
}

/// Where the energy is looked for (first found wins; NXsource, NXbeam, NXmonochromator).
pub const ENERGY_PATHS: &[&str] =
    &["/entry/instrument/source/energy", "/entry/beam/incident_energy", "/entry/instrument/monochromator/energy"];
/// Where the sample-detector distance is looked for.
pub const DISTANCE_PATHS: &[&str] =
    &["/entry/instrument/detector/distance", "/entry/instrument/detector/sample_distance"];
/// Where the pixel size is looked for.
pub const PIXEL_SIZE_PATHS: &[&str] = &["/entry/instrument/detector/x_pixel_size"];

/// Scale of a length unit to metres, of an energy unit to keV (`None`: unknown unit).
fn unit_scale(units: &str, energy: bool) -> Option<f64> {
    let u = units.trim();
    if energy {
        return match u {
            "keV" | "kev" | "KeV" => Some(1.0),
            "eV" | "ev" => Some(1e-3),
            "MeV" => Some(1e3),
            "J" => Some(1.0 / 1.602_176_634e-16),
            _ => None,
        };
    }
    match u {
        "m" => Some(1.0),
        "cm" => Some(1e-2),
        "mm" => Some(1e-3),
        "um" | "µm" | "micron" | "microns" | "micrometre" | "micrometer" => Some(1e-6),
        "nm" => Some(1e-9),
        _ => None,
    }
}

fn read_scaled(file: &hdf5::File, paths: &[&str], energy: bool) -> Option<f64> {
    paths.iter().find_map(|p| {
        let ds = file.dataset(p).ok()?;
        let v = *ds.read_raw::<f64>().ok()?.first()?;
        let units = ds.attr("units").ok().and_then(|a| a.read_scalar::<hdf5::types::VarLenUnicode>().ok());
        // NeXus defaults: energy in keV, lengths in metres, when no units are written.
        let scale = match units {
            Some(u) => unit_scale(u.as_str(), energy)?,
            None => 1.0,
        };
        Some(v * scale).filter(|x| x.is_finite())
    })
}

impl FilePhysics {
    /// What `path` records (nothing when it cannot be opened: the reader reports that).
    pub fn of(path: &std::path::Path) -> FilePhysics {
        let Ok(f) = hdf5::File::open(path) else { return FilePhysics::default() };
        FilePhysics {
            energy_kev: read_scaled(&f, ENERGY_PATHS, true),
            distance_m: read_scaled(&f, DISTANCE_PATHS, false),
            pixel_size_um: read_scaled(&f, PIXEL_SIZE_PATHS, false).map(|m| m * 1e6),
        }
    }
}

impl PhaseOptions {
    /// The parameters: options override what the file records.
    pub fn resolve(&self, file: &FilePhysics) -> Result<PaganinParams, PaganinError> {
        let pick = |given: Option<f64>, found: Option<f64>, what, option, path| {
            let v = given.or(found).ok_or(PaganinError::Missing { what, option, path })?;
            if v > 0.0 && v.is_finite() {
                Ok(v)
            } else {
                Err(PaganinError::NotPositive { what, option, value: v })
            }
        };
        let p = PaganinParams {
            energy_kev: pick(self.energy_kev, file.energy_kev, "energy", "--energy KEV", ENERGY_PATHS[0])?,
            distance_m: pick(self.distance_m, file.distance_m, "distance", "--distance M", DISTANCE_PATHS[0])?,
            pixel_size_um: pick(
                self.pixel_size_um,
                file.pixel_size_um,
                "pixel size",
                "--pixel-size UM",
                PIXEL_SIZE_PATHS[0],
            )?,
            delta_beta: pick(Some(self.delta_beta), None, "delta/beta", "--delta-beta R", "-")?,
        };
        Ok(p)
    }
}

impl PaganinParams {
    /// Wavelength, metres.
    pub fn wavelength_m(&self) -> f64 {
        HC_KEV_M / self.energy_kev
    }

    /// `a` of the filter `1 / (1 + a (fx^2 + fy^2))` with `f` in cycles per pixel: `pi lambda z (delta/beta) / p^2`.
    pub fn coefficient_pixels(&self) -> f64 {
        let p = self.pixel_size_um * 1e-6;
        std::f64::consts::PI * self.wavelength_m() * self.distance_m * self.delta_beta / (p * p)
    }

    /// Decay length of the filter's kernel, pixels: `sqrt(a) / (2 pi)`.
    pub fn kernel_length_pixels(&self) -> f64 {
        self.coefficient_pixels().sqrt() / (2.0 * std::f64::consts::PI)
    }

    /// Rows of context a slab needs above and below for its rows to be filtered as in the whole frame:
    /// eight kernel lengths (the kernel has fallen to `e^-8` there), at least 2.
    pub fn halo_rows(&self) -> usize {
        ((8.0 * self.kernel_length_pixels()).ceil() as usize).max(2)
    }
}

/// The filter for frames of `rows x cols`: plans and the response built once, reused for every projection.
#[derive(Clone)]
pub struct Paganin {
    params: PaganinParams,
    rows: usize,
    cols: usize,
    margin: usize,
    pr: usize,
    pc: usize,
    response: Vec<f32>,
    row_fft: (Arc<dyn Fft<f32>>, Arc<dyn Fft<f32>>),
    col_fft: (Arc<dyn Fft<f32>>, Arc<dyn Fft<f32>>),
}

impl std::fmt::Debug for Paganin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paganin")
            .field("params", &self.params)
            .field("frame", &(self.rows, self.cols))
            .field("padded", &(self.pr, self.pc))
            .finish()
    }
}

/// FFT sizes: a power of two at or above `n`.
fn fft_len(n: usize) -> usize {
    n.max(2).next_power_of_two()
}

impl Paganin {
    /// The filter for `rows x cols` frames.
    pub fn new(params: PaganinParams, rows: usize, cols: usize) -> Paganin {
        let margin = params.halo_rows();
        let (pr, pc) = (fft_len(rows + 2 * margin), fft_len(cols + 2 * margin));
        let a = params.coefficient_pixels();
        let freq = |i: usize, n: usize| {
            let k = if i <= n / 2 { i as f64 } else { i as f64 - n as f64 };
            k / n as f64
        };
        let norm = 1.0 / (pr * pc) as f64;
        let mut response = Vec::with_capacity(pr * pc);
        for r in 0..pr {
            let fy = freq(r, pr);
            for c in 0..pc {
                let fx = freq(c, pc);
                response.push((norm / (1.0 + a * (fx * fx + fy * fy))) as f32);
            }
        }
        let mut planner = FftPlanner::<f32>::new();
        let row_fft = (planner.plan_fft_forward(pc), planner.plan_fft_inverse(pc));
        let col_fft = (planner.plan_fft_forward(pr), planner.plan_fft_inverse(pr));
        Paganin { params, rows, cols, margin, pr, pc, response, row_fft, col_fft }
    }

    /// The parameters.
    pub fn params(&self) -> &PaganinParams {
        &self.params
    }

    /// Edge padding on every side, pixels (at least).
    pub fn margin(&self) -> usize {
        self.margin
    }

    /// Filters one projection of transmissions (`rows x cols`, row-major) in place.
    pub fn apply(&self, frame: &mut [f32]) -> Result<(), PaganinError> {
        let (rows, cols, pr, pc, m) = (self.rows, self.cols, self.pr, self.pc, self.margin);
        if frame.len() != rows * cols {
            return Err(PaganinError::Size { len: frame.len(), rows, cols });
        }
        // Edge-replicated padding: the frame sits at (m, m); the rest of the padded grid takes the nearest
        // frame value, so the periodic FFT sees no jump at the frame's edges.
        let clamp = |i: usize, n: usize| i.saturating_sub(m).min(n - 1);
        let mut g = vec![Complex32::new(0.0, 0.0); pr * pc];
        for r in 0..pr {
            let src = &frame[clamp(r, rows) * cols..][..cols];
            for (c, v) in g[r * pc..(r + 1) * pc].iter_mut().enumerate() {
                *v = Complex32::new(src[clamp(c, cols)], 0.0);
            }
        }
        self.fft2(&mut g, true);
        g.iter_mut().zip(&self.response).for_each(|(v, &w)| *v *= w);
        self.fft2(&mut g, false);
        for r in 0..rows {
            for c in 0..cols {
                frame[r * cols + c] = g[(r + m) * pc + c + m].re;
            }
        }
        Ok(())
    }

    fn fft2(&self, g: &mut [Complex32], forward: bool) {
        let (pr, pc) = (self.pr, self.pc);
        let (rf, cf) = if forward { (&self.row_fft.0, &self.col_fft.0) } else { (&self.row_fft.1, &self.col_fft.1) };
        let mut scratch =
            vec![Complex32::new(0.0, 0.0); rf.get_inplace_scratch_len().max(cf.get_inplace_scratch_len())];
        for row in g.chunks_mut(pc) {
            rf.process_with_scratch(row, &mut scratch);
        }
        let mut col = vec![Complex32::new(0.0, 0.0); pr];
        for c in 0..pc {
            for r in 0..pr {
                col[r] = g[r * pc + c];
            }
            cf.process_with_scratch(&mut col, &mut scratch);
            for r in 0..pr {
                g[r * pc + c] = col[r];
            }
        }
    }
}

/// Flat-fields a slab of raw rows `[row][angle][col]` (with its darks and flats) into transmissions, filters
/// every projection with `filter` (made for `rows x cols` of the slab), and returns the rows `keep` (relative to
/// the slab) as a slab of transmissions: dark 0, flats 1, so the backends' usual normalisation and `-log` follow.
/// Non-positive or non-finite transmissions before the filter are floored at
/// [`crate::preprocess::TRANSMISSION_FLOOR`] and counted in the returned number.
pub fn retrieve_slab(
    filter: &Paganin,
    slab: &crate::backend::Slab,
    keep: std::ops::Range<usize>,
    keep_rows: std::ops::Range<usize>,
) -> Result<(crate::backend::Slab, u64), PaganinError> {
    use rayon::prelude::*;
    let rows = slab.rows.len();
    let (na, nc) = (slab.flat_weight.len(), slab.dark.len() / rows.max(1));
    let per_row = na * nc;
    let mut clamped = 0u64;
    let mut frames: Vec<Vec<f32>> = (0..na)
        .map(|a| {
            let mut f = vec![0f32; rows * nc];
            let w = slab.flat_weight[a];
            for r in 0..rows {
                let raw = &slab.projections[r * per_row + a * nc..][..nc];
                for (c, &v) in raw.iter().enumerate() {
                    let i = r * nc + c;
                    let flat = (1.0 - w) * slab.flat_before[i] + w * slab.flat_after[i];
                    let t = (v - slab.dark[i]) / (flat - slab.dark[i]);
                    f[i] = if t > 0.0 && t.is_finite() {
                        t
                    } else {
                        clamped += 1;
                        crate::preprocess::TRANSMISSION_FLOOR
                    };
                }
            }
            f
        })
        .collect();
    frames.par_iter_mut().try_for_each(|f| filter.apply(f))?;
    let k = keep.len();
    let mut projections = vec![0f32; k * per_row];
    for (ri, r) in keep.clone().enumerate() {
        for (a, f) in frames.iter().enumerate() {
            projections[ri * per_row + a * nc..][..nc].copy_from_slice(&f[r * nc..(r + 1) * nc]);
        }
    }
    let out = crate::backend::Slab {
        rows: keep_rows,
        projections,
        dark: vec![0.0; k * nc],
        flat_before: vec![1.0; k * nc],
        flat_after: vec![1.0; k * nc],
        flat_weight: slab.flat_weight.clone(),
    };
    Ok((out, clamped))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_precedence() {
        let file = FilePhysics { energy_kev: Some(20.0), distance_m: Some(0.5), pixel_size_um: None };
        let o =
            PhaseOptions { energy_kev: Some(25.0), pixel_size_um: Some(1.3), delta_beta: 300.0, ..Default::default() };
        let p = o.resolve(&file).unwrap();
        assert_eq!((p.energy_kev, p.distance_m, p.pixel_size_um, p.delta_beta), (25.0, 0.5, 1.3, 300.0));
        let e = PhaseOptions { delta_beta: 300.0, ..Default::default() }.resolve(&file).unwrap_err().to_string();
        assert!(e.contains("--pixel-size UM") && e.contains("x_pixel_size"), "{e}");
        let e = PhaseOptions { delta_beta: 0.0, pixel_size_um: Some(1.0), ..Default::default() }.resolve(&file);
        assert!(e.unwrap_err().to_string().contains("--delta-beta"));
        assert_eq!(unit_scale("eV", true), Some(1e-3));
        assert_eq!(unit_scale("mm", false), Some(1e-3));
        assert_eq!(unit_scale("parsec", false), None);
        // 12.398 keV is 1 Angstrom.
        let p = PaganinParams { energy_kev: 12.398_419_843_32, distance_m: 1.0, pixel_size_um: 1.0, delta_beta: 1.0 };
        assert!((p.wavelength_m() - 1e-10).abs() < 1e-18);
    }

    #[test]
    fn a_flat_frame_stays_flat() {
        let p = PaganinParams { energy_kev: 20.0, distance_m: 0.5, pixel_size_um: 2.0, delta_beta: 500.0 };
        let f = Paganin::new(p, 20, 30);
        let mut frame = vec![0.7f32; 600];
        f.apply(&mut frame).unwrap();
        assert!(frame.iter().all(|v| (v - 0.7).abs() < 1e-5), "{:?}", &frame[..5]);
        assert!(f.apply(&mut [0.0; 5]).is_err());
    }
}
