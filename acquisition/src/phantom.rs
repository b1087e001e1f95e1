//! Shepp-Logan phantoms with exact (analytic) projections: the 2-D ellipses with their exact Radon
//! transform, and the 3-D ellipsoids with their exact parallel-beam line integrals.
//!
//! # Coordinates (read this before using any function here)
//!
//! The phantoms live in *phantom units*: the head fits in the square (cube) `[-1, 1]`. Every function takes a
//! scale, `pixels_per_unit`, and works in **pixel units** outside: one pixel (or voxel) is 1 long, and line
//! integrals are returned in `intensity x pixels`. Reconstructing such projections with a correctly scaled
//! filtered backprojection gives back the phantom intensities (1.0 for the skull, 0.2 for brain, ...).
//! For an `n x n` image that exactly holds the phantom, use `pixels_per_unit = n / 2`.
//!
//! * Object coordinates `(x, y, z)` in pixels: `x` to the right, `y` up, `z` up (the rotation axis). The
//!   origin is on the rotation axis.
//! * Image pixel `[row][col]` of an `n x n` slice has its centre at `x = col - (n - 1) / 2`,
//!   `y = (n - 1) / 2 - row` (row 0 at the top, so `y` decreases with the row index).
//! * A projection at angle `theta` (radians) holds, in detector column `c`, the integral along the line
//!   `x cos(theta) + y sin(theta) = s` with `s = c - center`, where `center` is the column (possibly
//!   fractional) the rotation axis projects onto. Column `c` has its centre at position `c`, so the middle of a
//!   512-column detector is `255.5`. The ray direction is `(-sin(theta), cos(theta), 0)`.
//! * Detector row `r` of a projection with `rows` rows sits at height `z = (rows - 1) / 2 - r` (row 0 at
//!   the top); the 3-D rasteriser uses the same `z` for slice `r`.
//!
//! The intensities are the "modified" Shepp-Logan ones (Toft), as used by MATLAB `phantom`, scikit-image and
//! ASTRA's examples, so the contrast inside the skull is visible.

/// One ellipse of a 2-D phantom, in phantom units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ellipse {
    /// Additive intensity inside the ellipse.
    pub intensity: f64,
    /// Semi-axis along the ellipse's own x axis.
    pub a: f64,
    /// Semi-axis along the ellipse's own y axis.
    pub b: f64,
    /// Centre x.
    pub x0: f64,
    /// Centre y.
    pub y0: f64,
    /// Counter-clockwise rotation of the ellipse, radians.
    pub phi: f64,
}

/// The modified (Toft) Shepp-Logan head: ten ellipses, intensities 1, -0.8, -0.2, -0.2, 0.1 x 6.
pub fn shepp_logan_2d() -> Vec<Ellipse> {
    const T: [[f64; 6]; 10] = [
        // intensity, a, b, x0, y0, phi (degrees)
        [1.0, 0.69, 0.92, 0.0, 0.0, 0.0],
        [-0.8, 0.6624, 0.874, 0.0, -0.0184, 0.0],
        [-0.2, 0.11, 0.31, 0.22, 0.0, -18.0],
        [-0.2, 0.16, 0.41, -0.22, 0.0, 18.0],
        [0.1, 0.21, 0.25, 0.0, 0.35, 0.0],
        [0.1, 0.046, 0.046, 0.0, 0.1, 0.0],
        [0.1, 0.046, 0.046, 0.0, -0.1, 0.0],
        [0.1, 0.046, 0.023, -0.08, -0.605, 0.0],
        [0.1, 0.023, 0.023, 0.0, -0.605, 0.0],
        [0.1, 0.023, 0.046, 0.06, -0.605, 0.0],
    ];
    T.iter()
        .map(|r| Ellipse { intensity: r[0], a: r[1], b: r[2], x0: r[3], y0: r[4], phi: r[5].to_radians() })
        .collect()
}

impl Ellipse {
    /// Whether the point `(x, y)` (phantom units) is inside the ellipse (boundary included).
    pub fn contains(&self, x: f64, y: f64) -> bool {
        let (s, c) = self.phi.sin_cos();
        let dx = x - self.x0;
        let dy = y - self.y0;
        let u = dx * c + dy * s;
        let v = -dx * s + dy * c;
        (u / self.a).powi(2) + (v / self.b).powi(2) <= 1.0
    }

    /// Exact Radon transform: the integral of this ellipse along the line `x cos(theta) + y sin(theta) = s`
    /// (phantom units in, phantom units out).
    pub fn radon(&self, theta: f64, s: f64) -> f64 {
        let t = theta - self.phi;
        let a2 = (self.a * t.cos()).powi(2) + (self.b * t.sin()).powi(2);
        let sp = s - (self.x0 * theta.cos() + self.y0 * theta.sin());
        let d = a2 - sp * sp;
        if d <= 0.0 {
            0.0
        } else {
            2.0 * self.intensity * self.a * self.b * d.sqrt() / a2
        }
    }
}

/// Point-samples the 2-D phantom at the centres of an `n x n` image (`pixels_per_unit = n / 2`); returns
/// `[row][col]` values (coordinates in the module documentation).
pub fn rasterize_2d(ellipses: &[Ellipse], n: usize) -> Vec<f32> {
    let ppu = n as f64 / 2.0;
    let half = (n as f64 - 1.0) / 2.0;
    let mut out = vec![0f32; n * n];
    for (row, line) in out.chunks_mut(n.max(1)).enumerate() {
        let y = (half - row as f64) / ppu;
        for (col, v) in line.iter_mut().enumerate() {
            let x = (col as f64 - half) / ppu;
            *v = ellipses.iter().filter(|e| e.contains(x, y)).map(|e| e.intensity).sum::<f64>() as f32;
        }
    }
    out
}

/// Averages the 2-D phantom over each pixel of an `n x n` image with `k x k` point samples per pixel (an
/// approximation of the pixel-area average that converges as `k` grows); same layout as [`rasterize_2d`].
pub fn rasterize_2d_area(ellipses: &[Ellipse], n: usize, k: usize) -> Vec<f32> {
    let k = k.max(1);
    let ppu = n as f64 / 2.0;
    let half = (n as f64 - 1.0) / 2.0;
    let mut out = vec![0f32; n * n];
    for (row, line) in out.chunks_mut(n.max(1)).enumerate() {
        for (col, v) in line.iter_mut().enumerate() {
            let mut sum = 0.0;
            for i in 0..k {
                let y = (half - row as f64 + 0.5 - (i as f64 + 0.5) / k as f64) / ppu;
                for j in 0..k {
                    let x = (col as f64 - half - 0.5 + (j as f64 + 0.5) / k as f64) / ppu;
                    sum += ellipses.iter().filter(|e| e.contains(x, y)).map(|e| e.intensity).sum::<f64>();
                }
            }
            *v = (sum / (k * k) as f64) as f32;
        }
    }
    out
}

/// Exact sinogram of the 2-D phantom, `[angle][col]`, in pixel units: `n_cols` detector columns with the
/// rotation axis at column `center`, `pixels_per_unit` pixels per phantom unit, angles in radians.
pub fn sinogram_2d(
    ellipses: &[Ellipse],
    angles_rad: &[f64],
    n_cols: usize,
    center: f64,
    pixels_per_unit: f64,
) -> Vec<f32> {
    let mut out = Vec::with_capacity(angles_rad.len() * n_cols);
    for &theta in angles_rad {
        for c in 0..n_cols {
            let s = (c as f64 - center) / pixels_per_unit;
            let p: f64 = ellipses.iter().map(|e| e.radon(theta, s)).sum();
            out.push((p * pixels_per_unit) as f32);
        }
    }
    out
}

/// One ellipsoid of a 3-D phantom, in phantom units: `(p - c)^T R diag(1/a^2, 1/b^2, 1/c^2) R^T (p - c) <= 1`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ellipsoid {
    /// Additive intensity inside the ellipsoid.
    pub intensity: f64,
    /// Semi-axes along the ellipsoid's own x, y, z axes.
    pub axes: [f64; 3],
    /// Centre `(x, y, z)`.
    pub center: [f64; 3],
    /// Rotation from the ellipsoid's own axes to object axes (columns are the own axes), row-major.
    pub rotation: [[f64; 3]; 3],
}

/// Rotation `Rz(phi) * Rx(theta) * Rz(psi)` (angles in degrees), the Euler convention of the classic
/// `phantom3d` tables.
pub fn euler_zxz(phi: f64, theta: f64, psi: f64) -> [[f64; 3]; 3] {
    let rz = |a: f64| {
        let (s, c) = a.to_radians().sin_cos();
        [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
    };
    let (s, c) = theta.to_radians().sin_cos();
    let rx = [[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]];
    matmul(&matmul(&rz(phi), &rx), &rz(psi))
}

fn matmul(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut m = [[0.0; 3]; 3];
    for (i, row) in m.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    m
}

/// The 3-D modified Shepp-Logan head (Kak & Slaney geometry, Toft intensities): ten ellipsoids whose
/// `z = 0` cross-section is close to the 2-D head.
pub fn shepp_logan_3d() -> Vec<Ellipsoid> {
    const T: [[f64; 10]; 10] = [
        // intensity, a, b, c, x0, y0, z0, phi, theta, psi (degrees)
        [1.0, 0.69, 0.92, 0.81, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        [-0.8, 0.6624, 0.874, 0.78, 0.0, -0.0184, 0.0, 0.0, 0.0, 0.0],
        [-0.2, 0.11, 0.31, 0.22, 0.22, 0.0, 0.0, -18.0, 0.0, 10.0],
        [-0.2, 0.16, 0.41, 0.28, -0.22, 0.0, 0.0, 18.0, 0.0, 10.0],
        [0.1, 0.21, 0.25, 0.41, 0.0, 0.35, -0.15, 0.0, 0.0, 0.0],
        [0.1, 0.046, 0.046, 0.05, 0.0, 0.1, 0.25, 0.0, 0.0, 0.0],
        [0.1, 0.046, 0.046, 0.05, 0.0, -0.1, 0.25, 0.0, 0.0, 0.0],
        [0.1, 0.046, 0.023, 0.05, -0.08, -0.605, 0.0, 0.0, 0.0, 0.0],
        [0.1, 0.023, 0.023, 0.02, 0.0, -0.606, 0.0, 0.0, 0.0, 0.0],
        [0.1, 0.023, 0.046, 0.02, 0.06, -0.605, 0.0, 0.0, 0.0, 0.0],
    ];
    T.iter()
        .map(|r| Ellipsoid {
            intensity: r[0],
            axes: [r[1], r[2], r[3]],
            center: [r[4], r[5], r[6]],
            rotation: euler_zxz(r[7], r[8], r[9]),
        })
        .collect()
}

impl Ellipsoid {
    /// `M = R diag(1/a^2, 1/b^2, 1/c^2) R^T`, the quadratic form of the ellipsoid.
    fn form(&self) -> [[f64; 3]; 3] {
        let r = &self.rotation;
        let mut m = [[0.0; 3]; 3];
        for (i, row) in m.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = (0..3).map(|k| r[i][k] * r[j][k] / (self.axes[k] * self.axes[k])).sum();
            }
        }
        m
    }

    /// Whether `p` (phantom units) is inside (boundary included).
    pub fn contains(&self, p: [f64; 3]) -> bool {
        let q = [p[0] - self.center[0], p[1] - self.center[1], p[2] - self.center[2]];
        quad(&self.form(), q, q) <= 1.0
    }

    /// Exact length of the chord cut by the line `p + t d` (unit `d`), times the intensity.
    pub fn line_integral(&self, p: [f64; 3], d: [f64; 3]) -> f64 {
        chord(&self.form(), self.center, p, d) * self.intensity
    }
}

fn quad(m: &[[f64; 3]; 3], u: [f64; 3], v: [f64; 3]) -> f64 {
    (0..3).map(|i| (0..3).map(|j| u[i] * m[i][j] * v[j]).sum::<f64>()).sum()
}

/// Chord length of `p + t d` through `{ q : (q - c)^T M (q - c) <= 1 }`, `d` a unit vector.
fn chord(m: &[[f64; 3]; 3], c: [f64; 3], p: [f64; 3], d: [f64; 3]) -> f64 {
    let q = [p[0] - c[0], p[1] - c[1], p[2] - c[2]];
    let a = quad(m, d, d);
    let b = quad(m, d, q);
    let cc = quad(m, q, q) - 1.0;
    let disc = b * b - a * cc;
    if disc <= 0.0 || a <= 0.0 {
        0.0
    } else {
        2.0 * disc.sqrt() / a
    }
}

/// Detector geometry for 3-D projections (pixel units; see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detector {
    /// Detector rows (height).
    pub rows: usize,
    /// Detector columns (width).
    pub cols: usize,
    /// Column the rotation axis projects onto (column `c` has its centre at `c`).
    pub center: f64,
    /// Pixels per phantom unit (`cols / 2` makes the head fill the width).
    pub pixels_per_unit: f64,
}

impl Detector {
    /// A detector with the axis in the middle (`(cols - 1) / 2`) and the head filling the width.
    pub fn centered(rows: usize, cols: usize) -> Detector {
        Detector { rows, cols, center: (cols as f64 - 1.0) / 2.0, pixels_per_unit: cols as f64 / 2.0 }
    }

    /// A half-acquisition detector: the axis at column `center`, near one edge, and the head filling the
    /// circle the far edge sweeps (its radius, the axis's distance to the far edge of the detector, is one
    /// phantom unit), so a 360-degree scan sees the whole head only by joining opposite projections.
    pub fn offset_axis(rows: usize, cols: usize, center: f64) -> Detector {
        let half = (center + 0.5).max(cols as f64 - 0.5 - center);
        Detector { rows, cols, center, pixels_per_unit: half }
    }

    /// Height `z` of detector row (and reconstructed slice) `row`, in pixels.
    pub fn z_of_row(&self, row: usize) -> f64 {
        (self.rows as f64 - 1.0) / 2.0 - row as f64
    }
}

/// Exact parallel-beam projection of a 3-D phantom at rotation angle `theta` (radians): `[row][col]`
/// line integrals in `intensity x pixels`. Column `c` integrates along `x cos + y sin = c - center` at height
/// `z = z_of_row(row)`.
pub fn project_3d(ellipsoids: &[Ellipsoid], det: &Detector, theta: f64) -> Vec<f32> {
    let ppu = det.pixels_per_unit;
    let (sn, cs) = theta.sin_cos();
    let d = [-sn, cs, 0.0];
    // The ray of column s on a row at height z starts at s u + (0, 0, z): relative to an ellipsoid's centre
    // c it is q = s u + w with w = (0, 0, z) - c, so `chord`'s terms are polynomials in s, set up once per
    // ellipsoid and row (the per-pixel work drops from three 3x3 quadratic forms to a few products).
    let u = [cs, sn, 0.0];
    let forms: Vec<_> = ellipsoids.iter().map(|e| (e.form(), e.center, e.intensity)).collect();
    let mut out = vec![0f32; det.rows * det.cols];
    let mut terms: Vec<RowTerms> = Vec::with_capacity(forms.len());
    for (row, line) in out.chunks_mut(det.cols.max(1)).enumerate() {
        let z = det.z_of_row(row) / ppu;
        terms.clear();
        terms.extend(forms.iter().filter_map(|(m, c, mu)| RowTerms::new(m, *c, *mu, d, u, z)));
        for (col, v) in line.iter_mut().enumerate() {
            let s = (col as f64 - det.center) / ppu;
            let sum: f64 = terms.iter().map(|t| t.at(s)).sum();
            *v = (sum * ppu) as f32;
        }
    }
    out
}

/// One ellipsoid's [`chord`] along a detector row, as polynomials in the column's offset `s`:
/// `b(s) = b1 s + b0`, `cc(s) = (c2 s + c1) s + c0`, chord `2 sqrt(b^2 - a cc) / a`, times the intensity.
struct RowTerms {
    a: f64,
    b1: f64,
    b0: f64,
    c2: f64,
    c1: f64,
    c0: f64,
    /// `2 intensity / a`.
    scale: f64,
}

impl RowTerms {
    /// `None` when the ellipsoid meets no ray of the row (or is degenerate), so it costs nothing there.
    fn new(m: &[[f64; 3]; 3], c: [f64; 3], mu: f64, d: [f64; 3], u: [f64; 3], z: f64) -> Option<RowTerms> {
        let w = [-c[0], -c[1], z - c[2]];
        let a = quad(m, d, d);
        if a <= 0.0 {
            return None;
        }
        let t = RowTerms {
            a,
            b1: quad(m, d, u),
            b0: quad(m, d, w),
            c2: quad(m, u, u),
            c1: 2.0 * quad(m, u, w),
            c0: quad(m, w, w) - 1.0,
            scale: 2.0 * mu / a,
        };
        // The discriminant is k2 s^2 + k1 s + k0; with k2 < 0 its largest value is k0 - k1^2 / (4 k2).
        let k2 = t.b1 * t.b1 - a * t.c2;
        let k1 = 2.0 * t.b1 * t.b0 - a * t.c1;
        let k0 = t.b0 * t.b0 - a * t.c0;
        (k2 >= 0.0 || k0 - k1 * k1 / (4.0 * k2) > 0.0).then_some(t)
    }

    fn at(&self, s: f64) -> f64 {
        let b = self.b1 * s + self.b0;
        let cc = (self.c2 * s + self.c1) * s + self.c0;
        let disc = b * b - self.a * cc;
        if disc > 0.0 {
            self.scale * disc.sqrt()
        } else {
            0.0
        }
    }
}

/// Point-samples the 3-D phantom on slice `row` of `det` (height `det.z_of_row(row)`) as an `n x n` image,
/// `[y-row][x-col]`, pixel centres as in the module documentation (origin on the rotation axis).
pub fn rasterize_3d_slice(ellipsoids: &[Ellipsoid], det: &Detector, row: usize, n: usize) -> Vec<f32> {
    let ppu = det.pixels_per_unit;
    let z = det.z_of_row(row) / ppu;
    let half = (n as f64 - 1.0) / 2.0;
    let mut out = vec![0f32; n * n];
    for (r, line) in out.chunks_mut(n.max(1)).enumerate() {
        let y = (half - r as f64) / ppu;
        for (c, v) in line.iter_mut().enumerate() {
            let x = (c as f64 - half) / ppu;
            let p = [x, y, z];
            *v = ellipsoids.iter().filter(|e| e.contains(p)).map(|e| e.intensity).sum::<f64>() as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The analytic Radon transform must equal a brute-force line integral of the rasterised disc.
    #[test]
    fn ellipse_radon_matches_numeric_integral() {
        let e = Ellipse { intensity: 0.7, a: 0.4, b: 0.2, x0: 0.1, y0: -0.2, phi: 0.5 };
        for &(theta, s) in &[(0.3f64, 0.05f64), (1.2, -0.1), (2.5, 0.2)] {
            let n = 200_000;
            let (st, ct) = theta.sin_cos();
            let h = 4.0 / n as f64;
            let numeric: f64 = (0..n)
                .map(|i| {
                    let t = -2.0 + (i as f64 + 0.5) * h;
                    let (x, y) = (s * ct - t * st, s * st + t * ct);
                    if e.contains(x, y) {
                        e.intensity * h
                    } else {
                        0.0
                    }
                })
                .sum();
            assert!((numeric - e.radon(theta, s)).abs() < 1e-4, "{numeric} vs {}", e.radon(theta, s));
        }
    }

    /// A 3-D ellipsoid with no tilt, cut at z, projects like the 2-D ellipse of its cross-section.
    #[test]
    fn ellipsoid_projection_matches_2d_cross_section() {
        let e3 = Ellipsoid {
            intensity: 1.0,
            axes: [0.5, 0.3, 0.4],
            center: [0.1, 0.0, 0.0],
            rotation: euler_zxz(30.0, 0.0, 0.0),
        };
        let det = Detector::centered(1, 64);
        let theta = 0.7;
        let p3 = project_3d(&[e3], &det, theta);
        // z of the single row is 0: the cross-section is the 2-D ellipse itself.
        let e2 = Ellipse { intensity: 1.0, a: 0.5, b: 0.3, x0: 0.1, y0: 0.0, phi: 30f64.to_radians() };
        let p2 = sinogram_2d(&[e2], &[theta], 64, det.center, det.pixels_per_unit);
        for (a, b) in p3.iter().zip(&p2) {
            assert!((a - b).abs() < 1e-3, "{a} vs {b}");
        }
    }

    /// The row-wise set-up gives every pixel what the per-ray chord gives (the 3-D head, tilted ellipsoids
    /// included, at angles of every quadrant, with the axis off centre and rows above and below the head).
    #[test]
    fn projection_matches_the_per_ray_line_integral() {
        let head = shepp_logan_3d();
        let det = Detector { rows: 40, cols: 56, center: 30.5, pixels_per_unit: 24.0 };
        for theta in [0.0, 0.4, 1.9, 3.3, 5.8f64] {
            let p = project_3d(&head, &det, theta);
            let (sn, cs) = theta.sin_cos();
            let mut hit = 0;
            for row in 0..det.rows {
                let z = det.z_of_row(row) / det.pixels_per_unit;
                for col in 0..det.cols {
                    let s = (col as f64 - det.center) / det.pixels_per_unit;
                    let want: f64 =
                        head.iter().map(|e| e.line_integral([s * cs, s * sn, z], [-sn, cs, 0.0])).sum::<f64>()
                            * det.pixels_per_unit;
                    let got = p[row * det.cols + col] as f64;
                    assert!((got - want).abs() <= 1e-5 * want.abs().max(1.0), "{theta} ({row},{col}): {got} vs {want}");
                    hit += (want != 0.0) as usize;
                }
            }
            assert!(hit > det.rows * det.cols / 4, "the head covers the detector: {hit} rays");
        }
    }

    #[test]
    fn rasterised_head_has_toft_intensities() {
        let img = rasterize_2d(&shepp_logan_2d(), 256);
        // centre of the image: inside skull (1) and brain (-0.8) and nothing else near (0, 0)... plus none.
        let centre = img[128 * 256 + 128];
        assert!((centre - 0.2).abs() < 1e-6, "{centre}");
        // Corner is outside everything.
        assert_eq!(img[0], 0.0);
        let slice = rasterize_3d_slice(&shepp_logan_3d(), &Detector::centered(256, 256), 128, 256);
        assert!(slice.iter().all(|v| v.is_finite()));
    }
}
