//! Pins the rotation-axis convention (reconstruct::geometry): column `c` has its centre at `c`, `center` is
//! the column the axis projects onto, output pixel `[row][col]` sits at `x = col - (n-1)/2`,
//! `y = (n-1)/2 - row`. A small off-centre disc with the axis off the detector middle must come back at
//! exactly the pixel the convention says, and half a pixel of error in `center` must show.

use acquisition::phantom::{rasterize_2d_area, sinogram_2d, Ellipse};
use reconstruct::backend::ReconSetup;
use reconstruct::cpu::SinogramPipeline;
use reconstruct::geometry::{detector_position, pixel_centre};

/// Intensity-weighted centroid (col, row) of the pixels above half the peak (the disc, not the ringing).
fn centroid(img: &[f32], n: usize) -> (f64, f64) {
    let peak = img.iter().copied().fold(f32::MIN, f32::max);
    let (mut sx, mut sy, mut s) = (0.0, 0.0, 0.0);
    for r in 0..n {
        for c in 0..n {
            let v = img[r * n + c];
            let v = if v > 0.5 * peak { v as f64 } else { 0.0 };
            sx += v * c as f64;
            sy += v * r as f64;
            s += v;
        }
    }
    (sx / s, sy / s)
}

fn disc(n: usize, x: f64, y: f64) -> Ellipse {
    let ppu = n as f64 / 2.0;
    Ellipse { intensity: 1.0, a: 3.0 / ppu, b: 3.0 / ppu, x0: x / ppu, y0: y / ppu, phi: 0.0 }
}

fn reconstruct_disc(n: usize, true_center: f64, used_center: f64, x: f64, y: f64) -> Vec<f32> {
    let ppu = n as f64 / 2.0;
    let disc = disc(n, x, y);
    let angles: Vec<f64> = (0..360).map(|i| (i as f64 * 0.5).to_radians()).collect();
    let sino = sinogram_2d(&[disc], &angles, n, true_center, ppu);
    let setup = ReconSetup::new(angles.iter().map(|&a| a as f32).collect(), n, used_center, n);
    SinogramPipeline::new(&setup).expect("valid setup").reconstruct_minus_log(&sino)
}

#[test]
fn axis_convention() {
    let n = 128;
    let (x, y) = (20.0, 30.0); // right of and above the axis, in pixels
    let center = 70.25; // axis 6.75 columns right of the detector middle (63.5)
    let img = reconstruct_disc(n, center, center, x, y);
    let (c, r) = centroid(&img, n);
    // Convention: col = x + (n-1)/2 = 83.5, row = (n-1)/2 - y = 33.5.
    assert!((c - 83.5).abs() < 0.05 && (r - 33.5).abs() < 0.05, "disc found at col {c:.3} row {r:.3}");
    let (px, py) = pixel_centre(n, 33, 83);
    assert_eq!((px, py), (19.5, 30.5));
    // At angle 0 the disc projects onto column x + center; at 90 degrees onto y + center.
    assert!((detector_position(x, y, 0.0, center) - 90.25).abs() < 1e-12);
    assert!((detector_position(x, y, std::f64::consts::FRAC_PI_2, center) - 100.25).abs() < 1e-9);
}

#[test]
fn half_pixel_centre_error_moves_and_blurs_the_object() {
    let n = 128;
    let truth = rasterize_2d_area(&[disc(n, 20.0, 30.0)], n, 8);
    let rmse = |img: &[f32]| {
        (img.iter().zip(&truth).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>() / (n * n) as f64).sqrt()
    };
    let right = rmse(&reconstruct_disc(n, 63.5, 63.5, 20.0, 30.0));
    let off = rmse(&reconstruct_disc(n, 63.5, 64.0, 20.0, 30.0));
    // The wrong axis smears the disc into an arc: clearly worse than the right one.
    assert!(off > 1.5 * right, "RMSE with the right axis {right:.5}, half a pixel off {off:.5}");
}
