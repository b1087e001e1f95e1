//! Flat-field normalisation, clamping, `-log`, and zinger removal: the per-stage CPU reference functions.

/// Values of the normalised transmission at or below zero (or not finite) are replaced by this floor
/// before `-log`, which caps the attenuation at `-ln(1e-6) = 13.8`.
pub const TRANSMISSION_FLOOR: f32 = 1e-6;

/// Normalises one sinogram of raw counts in place and takes `-log`:
/// `-ln((raw - dark) / (flat - dark))` with `flat = (1 - w) flat_before + w flat_after` for the angle's
/// weight `w`. `sino` is `[angle][col]`; `dark`, `flat_before`, `flat_after` are one row of `n_cols`;
/// `flat_weight` has one entry per angle. Returns how many values were clamped to
/// [`TRANSMISSION_FLOOR`] because the transmission was not positive or not finite.
pub fn normalize_minus_log(
    sino: &mut [f32],
    dark: &[f32],
    flat_before: &[f32],
    flat_after: &[f32],
    flat_weight: &[f32],
) -> u64 {
    let n_cols = dark.len();
    let mut clamped = 0u64;
    for (a, row) in sino.chunks_mut(n_cols.max(1)).enumerate() {
        let w = flat_weight.get(a).copied().unwrap_or(0.0);
        for (c, v) in row.iter_mut().enumerate() {
            let flat = (1.0 - w) * flat_before[c] + w * flat_after[c];
            let t = (*v - dark[c]) / (flat - dark[c]);
            let t = if t > 0.0 && t.is_finite() {
                t
            } else {
                clamped += 1;
                TRANSMISSION_FLOOR
            };
            *v = -t.ln();
        }
    }
    clamped
}

/// Removes zingers (single-frame bright or dark outliers) from a `-log` sinogram `[angle][col]` in place:
/// a value differing from the median of itself and its two angular neighbours by more than `threshold`
/// is replaced by that median. Returns how many values were replaced.
pub fn remove_zingers(sino: &mut [f32], n_cols: usize, threshold: f32) -> u64 {
    let n_angles = sino.len() / n_cols.max(1);
    if n_angles < 3 {
        return 0;
    }
    let orig = sino.to_vec();
    let mut replaced = 0;
    for a in 0..n_angles {
        let prev = if a == 0 { 1 } else { a - 1 };
        let next = if a + 1 == n_angles { n_angles - 2 } else { a + 1 };
        for c in 0..n_cols {
            let v = orig[a * n_cols + c];
            let med = median3(orig[prev * n_cols + c], v, orig[next * n_cols + c]);
            if (v - med).abs() > threshold {
                sino[a * n_cols + c] = med;
                replaced += 1;
            }
        }
    }
    replaced
}

fn median3(a: f32, b: f32, c: f32) -> f32 {
    a.min(b).max(a.max(b).min(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_interpolates_flats_and_counts_clamps() {
        // 2 angles x 2 cols.
        let mut s = vec![60.0, 0.0, 110.0, 50.0];
        let dark = [10.0, 10.0];
        let fb = [110.0, 110.0];
        let fa = [210.0, 210.0];
        let n = normalize_minus_log(&mut s, &dark, &fb, &fa, &[0.0, 1.0]);
        assert_eq!(n, 1); // raw 0 < dark
        assert!((s[0] - -(0.5f32).ln()).abs() < 1e-6);
        assert!((s[1] - -TRANSMISSION_FLOOR.ln()).abs() < 1e-4);
        assert!((s[2] - -(0.5f32).ln()).abs() < 1e-6);
    }

    #[test]
    fn zinger_is_replaced_by_angular_median() {
        let mut s = vec![1.0, 1.0, 1.0, -5.0, 1.0, 1.0];
        let n = remove_zingers(&mut s, 1, 0.5);
        assert_eq!(n, 1);
        assert_eq!(s[3], 1.0);
    }
}
