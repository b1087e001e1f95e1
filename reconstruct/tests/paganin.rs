//! Issue 15 §2: Paganin phase retrieval against closed forms, computed here independently of the library's
//! filter: (1) a cosine transmission pattern comes out scaled by exactly `1 / (1 + pi lambda z (delta/beta) f^2)`;
//! (2) a homogeneous object's exit wave, propagated to the detector with the Fresnel propagator (computed in this
//! test), gives back the projected thickness within 3% of its maximum, where plain `-log` is off by far more.

use rustfft::num_complex::Complex64;
use rustfft::FftPlanner;

use reconstruct::paganin::{Paganin, PaganinParams};

fn fft2(g: &mut [Complex64], n: usize, inverse: bool) {
    let mut planner = FftPlanner::<f64>::new();
    let f = if inverse { planner.plan_fft_inverse(n) } else { planner.plan_fft_forward(n) };
    for row in g.chunks_mut(n) {
        f.process(row);
    }
    let mut col = vec![Complex64::new(0.0, 0.0); n];
    for c in 0..n {
        for r in 0..n {
            col[r] = g[r * n + c];
        }
        f.process(&mut col);
        for r in 0..n {
            g[r * n + c] = col[r];
        }
    }
    if inverse {
        let s = 1.0 / (n * n) as f64;
        g.iter_mut().for_each(|v| *v *= s);
    }
}

fn freq(i: usize, n: usize) -> f64 {
    (if i <= n / 2 { i as f64 } else { i as f64 - n as f64 }) / n as f64
}

#[test]
fn a_cosine_is_scaled_by_the_closed_form_response() {
    let p = PaganinParams { energy_kev: 20.0, distance_m: 0.1, pixel_size_um: 1.0, delta_beta: 100.0 };
    let (rows, cols) = (96, 160);
    let filter = Paganin::new(p, rows, cols);
    let lambda = 1.239_841_984e-9 / 20.0;
    let a = std::f64::consts::PI * lambda * 0.1 * 100.0 / 1e-12;
    for period in [8.0, 16.0, 40.0] {
        let f = 1.0 / period;
        let mut frame: Vec<f32> = (0..rows * cols)
            .map(|i| (0.6 + 0.2 * (2.0 * std::f64::consts::PI * f * (i % cols) as f64).cos()) as f32)
            .collect();
        filter.apply(&mut frame).expect("size");
        let want = 0.2 / (1.0 + a * f * f);
        // Amplitude in the middle third (away from the padded edges), by projection on the cosine.
        let r = rows / 2;
        let (mut num, mut den) = (0.0, 0.0);
        for c in cols / 3..2 * cols / 3 {
            let basis = (2.0 * std::f64::consts::PI * f * c as f64).cos();
            num += (frame[r * cols + c] as f64 - 0.6) * basis;
            den += basis * basis;
        }
        let got = num / den;
        assert!((got - want).abs() < 0.02 * 0.2, "period {period}: amplitude {got}, closed form {want}");
        assert!((frame[r * cols + cols / 2] as f64 - 0.6 - want).abs() < 0.02 * 0.2, "period {period}");
    }
}

#[test]
fn thickness_of_a_homogeneous_object_is_recovered_after_fresnel_propagation() {
    let n = 256;
    let (energy_kev, z, pixel, delta_beta) = (20.0, 0.05, 1e-6, 300.0);
    let lambda = 1.239_841_984e-9 / energy_kev;
    let mu = 6000.0; // 1/m: exp(-mu t) = 0.7 at the thickest (60 um)
    let beta = mu * lambda / (4.0 * std::f64::consts::PI);
    let delta = delta_beta * beta;
    // A smooth dome, t = T0 (1 - (r/R)^2)^2 for r < R, so the exit wave's phase is well sampled.
    let (t0, radius) = (60.0 * pixel, 45.0);
    let h = n as f64 / 2.0;
    let thickness: Vec<f64> = (0..n * n)
        .map(|i| {
            let (y, x) = ((i / n) as f64 - h, (i % n) as f64 - h);
            let q = (x * x + y * y) / (radius * radius);
            if q < 1.0 {
                t0 * (1.0 - q) * (1.0 - q)
            } else {
                0.0
            }
        })
        .collect();
    let k = 2.0 * std::f64::consts::PI / lambda;
    let mut psi: Vec<Complex64> =
        thickness.iter().map(|&t| Complex64::from_polar((-mu * t / 2.0).exp(), -k * delta * t)).collect();
    fft2(&mut psi, n, false);
    for r in 0..n {
        for c in 0..n {
            let (fy, fx) = (freq(r, n) / pixel, freq(c, n) / pixel);
            let phase = -std::f64::consts::PI * lambda * z * (fx * fx + fy * fy);
            psi[r * n + c] *= Complex64::from_polar(1.0, phase);
        }
    }
    fft2(&mut psi, n, true);
    let intensity: Vec<f32> = psi.iter().map(|v| v.norm_sqr() as f32).collect();
    let contrast = intensity.iter().fold(0f32, |m, v| m.max(*v)) - intensity.iter().fold(1f32, |m, v| m.min(*v));
    assert!(contrast > 0.3, "propagation should show strong edge fringes: contrast {contrast}");

    let filter =
        Paganin::new(PaganinParams { energy_kev, distance_m: z, pixel_size_um: pixel * 1e6, delta_beta }, n, n);
    let mut retrieved = intensity.clone();
    filter.apply(&mut retrieved).expect("size");
    let err = |frame: &[f32]| {
        frame.iter().zip(&thickness).map(|(&v, &t)| ((-(v as f64).ln() / mu) - t).abs()).fold(0.0, f64::max) / t0
    };
    let (e_paganin, e_plain) = (err(&retrieved), err(&intensity));
    println!("max |thickness error| / T0: Paganin {e_paganin:.4}, plain -log {e_plain:.4}");
    assert!(e_paganin < 0.03, "Paganin thickness off by {e_paganin} of T0");
    assert!(e_plain > 3.0 * e_paganin, "plain -log {e_plain} should be far worse than Paganin {e_paganin}");
}
