//! What the host computes once per setup for the kernels: the filter's real-space taps, the per-angle
//! trigonometry and the backprojection frame. Shared by the CUDA backend and the harness tests, so both
//! feed the kernels exactly the same numbers.

use rustfft::num_complex::Complex64;
use rustfft::FftPlanner;

use kernels::BackprojectGeometry;

use crate::backend::{BackendError, ReconSetup};
use crate::filter::{frequency_response, padded_len};
use crate::geometry::ScanRange;

/// The real-space taps of the setup's filter for `filter_convolve`: `2 n_cols - 1` values, index
/// `d + n_cols - 1` holding the tap for output column minus input column `d`.
///
/// They are the inverse FFT of the CPU backend's frequency response (same filter, padding and
/// backprojection weight `pi / n_angles`), computed in f64 and rounded once to f32. Because the padded
/// length is at least `2 n_cols`, convolving with them is exactly what the CPU's padded FFT filter
/// computes, up to rounding.
pub fn filter_taps(setup: &ReconSetup) -> Vec<f32> {
    let n = setup.n_cols;
    let l = padded_len(n);
    let weight = ScanRange::of(&setup.angles_rad).weight(setup.angles_rad.len());
    let response = frequency_response(setup.filter, l, weight);
    let mut h: Vec<Complex64> = response.iter().map(|v| Complex64::new(*v as f64, 0.0)).collect();
    FftPlanner::<f64>::new().plan_fft_inverse(l).process(&mut h);
    (0..(2 * n).saturating_sub(1))
        .map(|i| {
            let d = i as isize - (n as isize - 1);
            (h[d.rem_euclid(l as isize) as usize].re / l as f64) as f32
        })
        .collect()
}

/// The response `multiply_response` applies after cuFFT's real-to-complex transform: the CPU backend's
/// frequency response (same filter, padded length and weight) at the `L / 2 + 1` non-negative
/// frequencies, divided by `L` because cuFFT's inverse is unnormalised (the CPU backend divides by `L`
/// after its inverse FFT). Returns `(L, response)`.
pub fn fft_response(setup: &ReconSetup) -> (usize, Vec<f32>) {
    let l = padded_len(setup.n_cols);
    let weight = ScanRange::of(&setup.angles_rad).weight(setup.angles_rad.len());
    let response = frequency_response(setup.filter, l, weight);
    (l, response[..l / 2 + 1].iter().map(|h| (*h as f64 / l as f64) as f32).collect())
}

/// Per-angle `(cos, sin)` tables as f32, computed in f64 like the CPU backend.
pub fn trig_tables(angles_rad: &[f32]) -> (Vec<f32>, Vec<f32>) {
    angles_rad.iter().map(|&t| ((t as f64).cos() as f32, (t as f64).sin() as f32)).unzip()
}

/// The backprojection frame: the CPU backend's left padding (enough that every detector position reached
/// by an `out_size` slice is non-negative) and the padded axis position. Using the same frame lets the
/// kernel round positions exactly as the CPU backend does.
pub fn backproject_geometry(setup: &ReconSetup) -> Result<BackprojectGeometry, BackendError> {
    let out_size = u32::try_from(setup.out_size)
        .map_err(|_| BackendError::Input(format!("output size {} is too large", setup.out_size)))?;
    let reach = setup.out_size as f64 * std::f64::consts::FRAC_1_SQRT_2 + 2.0;
    let lo = (setup.center - reach).floor().min(0.0);
    let pad = (-lo) as i64 + 2;
    let pad = i32::try_from(pad)
        .map_err(|_| BackendError::Input(format!("rotation axis {} is out of reach", setup.center)))?;
    Ok(BackprojectGeometry { out_size, c0: (setup.center + pad as f64) as f32, pad })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The taps of the bare ramp are the Kak-Slaney kernel times the weight: h[0] = w/4, h[odd k] =
    /// -w/(pi k)^2, h[even k] = 0 (up to the window-free FFT round trip).
    #[test]
    fn ramp_taps_are_the_real_space_ramp() {
        let n = 50;
        let setup = ReconSetup::new(vec![0.0, 1.0, 2.0, 3.0], n, 24.5, 32);
        let w = std::f64::consts::PI / 4.0;
        let taps = filter_taps(&setup);
        assert_eq!(taps.len(), 2 * n - 1);
        for d in -(n as isize - 1)..n as isize {
            let k = d.unsigned_abs();
            let want = if k == 0 {
                0.25 * w
            } else if k % 2 == 1 {
                -w / (std::f64::consts::PI * k as f64).powi(2)
            } else {
                0.0
            };
            let got = taps[(d + n as isize - 1) as usize] as f64;
            assert!((got - want).abs() < 1e-6, "d = {d}: {got} vs {want}");
        }
    }
}
