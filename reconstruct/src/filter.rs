//! The six reconstruction filters and row filtering with zero padding (rustfft).
//!
//! Every filter is the ramp built in *real space* (Kak & Slaney: `h[0] = 1/4`, `h[k] = -1/(pi k)^2` for odd
//! `k`, 0 for even `k`, on the padded length), transformed to frequency space, then multiplied by a window
//! of the frequency `f` in cycles per sample (`|f| <= 1/2`):
//!
//! | name          | window                                     |
//! |---------------|--------------------------------------------|
//! | `ramp`        | 1 (Ram-Lak)                                |
//! | `shepp-logan` | `sin(pi f) / (pi f)`                        |
//! | `cosine`      | `cos(pi f)`                                 |
//! | `hamming`     | `0.54 + 0.46 cos(2 pi f)`                   |
//! | `hann`        | `0.5 + 0.5 cos(2 pi f)`                     |
//! | `parzen`      | Parzen window of `w = 2|f|`: `1 - 6w^2 + 6w^3` (w <= 1/2), `2 (1 - w)^3` |
//!
//! The real-space ramp keeps the zero-frequency term right (no DC offset), as scikit-image and ASTRA do.
//! Rows are zero-padded to the next power of two at least twice their length. The filter already includes
//! the backprojection weight `pi / n_angles`, so the backprojector only sums.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rustfft::num_complex::Complex32;
use rustfft::{Fft, FftPlanner};

/// Which window multiplies the ramp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FilterKind {
    /// Ram-Lak: the bare ramp.
    Ramp,
    /// Ramp times sinc.
    SheppLogan,
    /// Ramp times cosine.
    Cosine,
    /// Ramp times Hamming.
    Hamming,
    /// Ramp times Hann.
    Hann,
    /// Ramp times Parzen.
    Parzen,
}

impl FilterKind {
    /// All filters, in documentation order.
    pub const ALL: [FilterKind; 6] = [
        FilterKind::Ramp,
        FilterKind::SheppLogan,
        FilterKind::Cosine,
        FilterKind::Hamming,
        FilterKind::Hann,
        FilterKind::Parzen,
    ];

    /// The name used on the command line and in provenance.
    pub fn name(self) -> &'static str {
        match self {
            FilterKind::Ramp => "ramp",
            FilterKind::SheppLogan => "shepp-logan",
            FilterKind::Cosine => "cosine",
            FilterKind::Hamming => "hamming",
            FilterKind::Hann => "hann",
            FilterKind::Parzen => "parzen",
        }
    }

    /// The window at frequency `f` (cycles per sample, `|f| <= 1/2`).
    pub fn window(self, f: f64) -> f64 {
        use std::f64::consts::PI;
        let f = f.abs();
        match self {
            FilterKind::Ramp => 1.0,
            FilterKind::SheppLogan => {
                if f == 0.0 {
                    1.0
                } else {
                    (PI * f).sin() / (PI * f)
                }
            }
            FilterKind::Cosine => (PI * f).cos(),
            FilterKind::Hamming => 0.54 + 0.46 * (2.0 * PI * f).cos(),
            FilterKind::Hann => 0.5 + 0.5 * (2.0 * PI * f).cos(),
            FilterKind::Parzen => {
                let w = (2.0 * f).min(1.0);
                if w <= 0.5 {
                    1.0 - 6.0 * w * w + 6.0 * w * w * w
                } else {
                    2.0 * (1.0 - w).powi(3)
                }
            }
        }
    }
}

impl fmt::Display for FilterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A filter name that is not one of the six.
#[derive(Debug, Clone, thiserror::Error)]
#[error("unknown filter {0:?}: use one of ramp, shepp-logan, cosine, hamming, hann, parzen")]
pub struct UnknownFilter(pub String);

impl FromStr for FilterKind {
    type Err = UnknownFilter;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key = s.to_ascii_lowercase().replace('_', "-");
        FilterKind::ALL
            .into_iter()
            .find(|k| k.name() == key || (key == "ram-lak" && *k == FilterKind::Ramp))
            .ok_or_else(|| UnknownFilter(s.to_string()))
    }
}

/// Padded length for rows of `n_cols`: the next power of two `>= max(64, 2 n_cols)`.
pub fn padded_len(n_cols: usize) -> usize {
    (2 * n_cols).max(64).next_power_of_two()
}

/// Real frequency response (length `padded_len`, FFT order) of `kind`, scaled by `weight`.
pub fn frequency_response(kind: FilterKind, padded_len: usize, weight: f64) -> Vec<f32> {
    use std::f64::consts::PI;
    let l = padded_len;
    let mut h: Vec<Complex32> = vec![Complex32::new(0.0, 0.0); l];
    for (j, v) in h.iter_mut().enumerate() {
        let k = j.min(l - j);
        let val = if k == 0 {
            0.25
        } else if k % 2 == 1 {
            -1.0 / (PI * k as f64).powi(2)
        } else {
            0.0
        };
        v.re = val as f32;
    }
    let mut planner = FftPlanner::<f32>::new();
    planner.plan_fft_forward(l).process(&mut h);
    (0..l)
        .map(|j| {
            let k = j.min(l - j);
            let f = k as f64 / l as f64;
            (h[j].re as f64 * kind.window(f) * weight) as f32
        })
        .collect()
}

/// A ready-to-use row filter for rows of `n_cols` values.
#[derive(Clone)]
pub struct RowFilter {
    n_cols: usize,
    response: Vec<f32>,
    forward: Arc<dyn Fft<f32>>,
    inverse: Arc<dyn Fft<f32>>,
}

impl fmt::Debug for RowFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RowFilter").field("n_cols", &self.n_cols).field("padded", &self.response.len()).finish()
    }
}

impl RowFilter {
    /// Builds the filter `kind` for rows of `n_cols`, including the backprojection `weight`.
    pub fn new(kind: FilterKind, n_cols: usize, weight: f64) -> RowFilter {
        let l = padded_len(n_cols);
        let mut planner = FftPlanner::<f32>::new();
        RowFilter {
            n_cols,
            response: frequency_response(kind, l, weight),
            forward: planner.plan_fft_forward(l),
            inverse: planner.plan_fft_inverse(l),
        }
    }

    /// The padded length used.
    pub fn padded_len(&self) -> usize {
        self.response.len()
    }

    /// Filters every row of `rows` (a whole number of rows of `n_cols`) in place. Two real rows share one
    /// complex FFT (the filter is real and even, so real and imaginary parts stay apart exactly). The result
    /// of a row does not depend on which other rows are present *as long as the pairing is the same*; to keep
    /// it independent of slab cuts, pairs are formed within each sinogram (`rows_per_group` rows, the number
    /// of angles), never across sinograms.
    pub fn apply(&self, rows: &mut [f32], rows_per_group: usize) {
        let n = self.n_cols;
        let l = self.response.len();
        let norm = 1.0 / l as f32;
        let mut buf = vec![Complex32::new(0.0, 0.0); l];
        let scratch_len = self.forward.get_inplace_scratch_len().max(self.inverse.get_inplace_scratch_len());
        let mut scratch = vec![Complex32::new(0.0, 0.0); scratch_len];
        let group_len = rows_per_group.max(1) * n;
        for group in rows.chunks_mut(group_len) {
            let mut pairs = group.chunks_mut(2 * n);
            for pair in &mut pairs {
                let (a, b) = pair.split_at_mut(n.min(pair.len()));
                buf.iter_mut().for_each(|c| *c = Complex32::new(0.0, 0.0));
                for (i, v) in a.iter().enumerate() {
                    buf[i].re = *v;
                }
                for (i, v) in b.iter().enumerate() {
                    buf[i].im = *v;
                }
                self.forward.process_with_scratch(&mut buf, &mut scratch);
                for (c, h) in buf.iter_mut().zip(&self.response) {
                    *c *= *h * norm;
                }
                self.inverse.process_with_scratch(&mut buf, &mut scratch);
                for (i, v) in a.iter_mut().enumerate() {
                    *v = buf[i].re;
                }
                for (i, v) in b.iter_mut().enumerate() {
                    *v = buf[i].im;
                }
            }
        }
    }
}

/// Filters one sinogram (`[angle][col]`) with `kind`, weight `pi / n_angles` included: the per-stage CPU
/// reference for the GPU kernels.
pub fn filter_sinogram(sino: &mut [f32], n_cols: usize, kind: FilterKind) {
    let n_angles = sino.len() / n_cols.max(1);
    let f = RowFilter::new(kind, n_cols, std::f64::consts::PI / n_angles.max(1) as f64);
    f.apply(sino, n_angles);
}
