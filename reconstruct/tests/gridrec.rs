//! Gridrec against the exact Radon transform of the Shepp-Logan ellipses, side by side with FBP on the same
//! sinogram: RMSE over the inner disc, the residual's radial profile (no ring or edge artefact), the output
//! scale, every filter, a full turn and an off-centre axis, and bit-identical results whatever the threads or
//! the grouping of slices.

use acquisition::phantom::{rasterize_2d_area, shepp_logan_2d, sinogram_2d, Ellipse};
use reconstruct::accuracy::rmse_disc;
use reconstruct::backend::ReconSetup;
use reconstruct::cpu::SinogramPipeline;
use reconstruct::filter::FilterKind;
use reconstruct::gridrec::Gridrec;
use reconstruct::method::Method;

/// Pixels within `radius` of the slice centre, as `(index, radius)`.
fn disc(n: usize, radius: f64) -> Vec<(usize, f64)> {
    let h = (n as f64 - 1.0) / 2.0;
    let mut v = Vec::new();
    for r in 0..n {
        for c in 0..n {
            let (x, y) = (c as f64 - h, h - r as f64);
            let d = (x * x + y * y).sqrt();
            if d <= radius {
                v.push((r * n + c, d));
            }
        }
    }
    v
}

/// Mean `|a - b|` in rings of `width` px from the centre out to `radius`.
fn ring_profile(a: &[f32], b: &[f32], n: usize, radius: f64, width: f64) -> Vec<f64> {
    let rings = (radius / width).ceil() as usize;
    let (mut sum, mut count) = (vec![0.0; rings], vec![0usize; rings]);
    for (i, d) in disc(n, radius) {
        let k = ((d / width) as usize).min(rings - 1);
        sum[k] += (a[i] as f64 - b[i] as f64).abs();
        count[k] += 1;
    }
    sum.iter().zip(&count).map(|(s, &c)| s / c.max(1) as f64).collect()
}

struct Case {
    n: usize,
    fbp: Vec<f32>,
    gridrec: Vec<f32>,
    truth: Vec<f32>,
}

/// FBP and gridrec of the same exact sinogram.
fn both(ellipses: &[Ellipse], n: usize, n_angles: usize, span_deg: f64, filter: FilterKind, center: f64) -> Case {
    let angles: Vec<f64> = (0..n_angles).map(|i| (i as f64 * span_deg / n_angles as f64).to_radians()).collect();
    let sino = sinogram_2d(ellipses, &angles, n, center, n as f64 / 2.0);
    let mut setup = ReconSetup::new(angles.iter().map(|&a| a as f32).collect(), n, center, n);
    setup.filter = filter;
    let fbp = SinogramPipeline::new(&setup).expect("valid setup").reconstruct_minus_log(&sino);
    setup.method = Method::Gridrec;
    let gridrec = SinogramPipeline::new(&setup).expect("valid setup").reconstruct_minus_log(&sino);
    Case { n, fbp, gridrec, truth: rasterize_2d_area(ellipses, n, 8) }
}

#[test]
fn gridrec_matches_fbp_accuracy_on_the_exact_sinogram() {
    let c = both(&shepp_logan_2d(), 512, 720, 180.0, FilterKind::Ramp, 255.5);
    let (f, g) = (rmse_disc(&c.fbp, &c.truth, c.n, 250.0), rmse_disc(&c.gridrec, &c.truth, c.n, 250.0));
    let between = rmse_disc(&c.fbp, &c.gridrec, c.n, 250.0);
    println!("512x512, 720 angles, ramp, disc r=250: RMSE FBP {f:.5}, gridrec {g:.5}; RMS gridrec - FBP {between:.5}");
    assert!(g <= 1.1 * f, "gridrec RMSE {g} more than 10% above FBP's {f}");
    assert!(g <= 0.0165, "gridrec RMSE {g} above the 0.0165 peers reach");
}

#[test]
fn residual_has_no_ring_or_edge_artefact() {
    // The residual |recon - phantom| per 10-px ring, out to the edge of the field of view (r = 255.5 of a
    // 512 slice). Gridrec's ring errors (kernel aliasing, de-apodisation, the grid's wrap-around) would show up
    // as a ring or an edge where gridrec's residual rises above FBP's. FBP's own residual is the level set by
    // the phantom's edges and the angular sampling ("the noise" of this noise-free test). Bound: every ring
    // within 1.5x FBP's residual in the same ring plus 5e-4 (1/2000 of the skull's intensity). Measured:
    // gridrec is within 0.9-1.25x of FBP in most rings; 1.45x in the central ring (0.0011 vs 0.0008) and 1.6x
    // at the skull's inner edge (r 160-170, 0.0033 vs 0.0021), where exact and linear interpolation give
    // different edge responses.
    let c = both(&shepp_logan_2d(), 512, 720, 180.0, FilterKind::Ramp, 255.5);
    let (pf, pg) =
        (ring_profile(&c.fbp, &c.truth, c.n, 255.5, 10.0), ring_profile(&c.gridrec, &c.truth, c.n, 255.5, 10.0));
    // Gridrec against FBP directly, printed alongside.
    let pd = ring_profile(&c.gridrec, &c.fbp, c.n, 255.5, 10.0);
    let mut worst: Option<(usize, f64, f64)> = None;
    for (k, ((f, g), d)) in pf.iter().zip(&pg).zip(&pd).enumerate() {
        println!(
            "ring {:>3}-{:<3} px: mean |residual| FBP {f:.5}, gridrec {g:.5}, |gridrec - FBP| {d:.5}",
            k * 10,
            k * 10 + 10
        );
        if *g > 1.5 * f + 5e-4 && worst.is_none() {
            worst = Some((k, *f, *g));
        }
    }
    assert!(worst.is_none(), "ring (index, FBP, gridrec) {worst:?}: gridrec residual above FBP's");
    // Outside the head (the skull's outer edge is at r = 0.69 x 256 = 177 px horizontally, 0.92 x 256 = 235
    // vertically; the corners of the inscribed disc between r = 240 and 255 are empty), the residual is the
    // artefact level alone: it must stay below 1% of the skull's intensity on average.
    let h = (c.n as f64 - 1.0) / 2.0;
    let (mut sum, mut count) = (0.0, 0);
    for (i, d) in disc(c.n, 255.5) {
        let (x, y) = ((i % c.n) as f64 - h, h - (i / c.n) as f64);
        let inside_head = (x / (0.69 * 256.0 + 3.0)).powi(2) + (y / (0.92 * 256.0 + 3.0)).powi(2) <= 1.0;
        if d >= 240.0 && !inside_head {
            sum += c.gridrec[i].abs() as f64;
            count += 1;
        }
    }
    let edge = sum / count as f64;
    println!("mean |gridrec| in the empty edge band r 240-255.5 ({count} px): {edge:.5}");
    assert!(edge < 0.01, "edge band artefact {edge}");
}

#[test]
fn output_scale_is_fbps() {
    // A uniform disc of intensity 1 and radius 60 px in a 256 slice: the mean over its inner part is 1 for
    // both methods, and the two agree to 0.2%.
    let disc_phantom = [Ellipse { intensity: 1.0, a: 60.0 / 128.0, b: 60.0 / 128.0, x0: 0.1, y0: -0.05, phi: 0.0 }];
    let c = both(&disc_phantom, 256, 360, 180.0, FilterKind::Ramp, 127.5);
    let h = 127.5;
    let (cx, cy) = (0.1 * 128.0, -0.05 * 128.0);
    let mean = |img: &[f32]| {
        let (mut s, mut k) = (0.0, 0);
        for r in 0..256 {
            for col in 0..256 {
                let (x, y) = (col as f64 - h - cx, h - r as f64 - cy);
                if x * x + y * y <= 50.0 * 50.0 {
                    s += img[r * 256 + col] as f64;
                    k += 1;
                }
            }
        }
        s / k as f64
    };
    let (f, g) = (mean(&c.fbp), mean(&c.gridrec));
    println!("uniform disc, inner mean: FBP {f:.5}, gridrec {g:.5}, ratio {:.5}", g / f);
    assert!((g / f - 1.0).abs() < 2e-3, "gridrec scale {g} vs FBP {f}");
    assert!((g - 1.0).abs() < 0.01, "gridrec disc value {g}, expected 1");
    // And the Shepp-Logan phantom's mean over the inner disc.
    let c = both(&shepp_logan_2d(), 256, 360, 180.0, FilterKind::SheppLogan, 127.5);
    let inner = disc(256, 120.0);
    let m = |img: &[f32]| inner.iter().map(|&(i, _)| img[i] as f64).sum::<f64>() / inner.len() as f64;
    let (f, g, t) = (m(&c.fbp), m(&c.gridrec), m(&c.truth));
    println!("Shepp-Logan inner-disc mean: FBP {f:.5}, gridrec {g:.5}, phantom {t:.5}");
    assert!((g / f - 1.0).abs() < 2e-3, "gridrec mean {g} vs FBP {f}");
}

#[test]
fn every_filter_and_a_full_turn_and_an_off_centre_axis() {
    for f in FilterKind::ALL {
        let c = both(&shepp_logan_2d(), 128, 180, 180.0, f, 63.5);
        let (rf, rg) = (rmse_disc(&c.fbp, &c.truth, 128, 62.0), rmse_disc(&c.gridrec, &c.truth, 128, 62.0));
        println!("{f}: RMSE FBP {rf:.4}, gridrec {rg:.4}");
        assert!(rg <= 1.1 * rf, "{f}: gridrec {rg} vs FBP {rf}");
        assert!(c.gridrec.iter().all(|v| v.is_finite()));
    }
    // A full turn exercises the half-plane folding of angles beyond 180 degrees.
    for (span, center) in [(360.0, 255.5), (180.0, 262.25), (360.0, 250.75)] {
        let c = both(&shepp_logan_2d(), 512, 720, span, FilterKind::Ramp, center);
        let (rf, rg) = (rmse_disc(&c.fbp, &c.truth, 512, 240.0), rmse_disc(&c.gridrec, &c.truth, 512, 240.0));
        println!("{span} deg, axis {center}: RMSE FBP {rf:.5}, gridrec {rg:.5}");
        // With a full turn and an axis a quarter pixel off the middle, opposite views interlace: FBP's linear
        // interpolation gains more from that (0.0104) than gridrec (0.0131, still better than either method
        // with a centred axis, 0.016); elsewhere within 10%.
        let factor = if center == 250.75 { 1.3 } else { 1.1 };
        assert!(rg <= factor * rf, "{span} deg, axis {center}: gridrec {rg} vs FBP {rf}");
    }
}

#[test]
fn half_pixel_axis_error_costs_accuracy() {
    // The axis convention is FBP's: half a pixel off must be clearly worse for gridrec too.
    let n = 256;
    let angles: Vec<f64> = (0..360).map(|i| (i as f64 * 0.5).to_radians()).collect();
    let sino = sinogram_2d(&shepp_logan_2d(), &angles, n, 127.5, n as f64 / 2.0);
    let truth = rasterize_2d_area(&shepp_logan_2d(), n, 8);
    let a32: Vec<f32> = angles.iter().map(|&a| a as f32).collect();
    let rec = |center: f64| {
        let g = Gridrec::new(FilterKind::Ramp, n, &a32, center, n).unwrap();
        rmse_disc(&g.reconstruct(&sino).unwrap(), &truth, n, 125.0)
    };
    let (right, off) = (rec(127.5), rec(128.0));
    println!("gridrec: axis right {right:.4}, half a pixel off {off:.4}");
    assert!(off > 1.5 * right, "{right} vs {off}");
}

#[test]
fn bit_identical_whatever_the_threads_and_the_grouping() {
    let (n, n_angles, slices) = (96, 120, 5);
    let angles: Vec<f32> = (0..n_angles).map(|i| (std::f64::consts::PI * i as f64 / n_angles as f64) as f32).collect();
    let a64: Vec<f64> = angles.iter().map(|&a| a as f64).collect();
    let mut sinos = Vec::new();
    for s in 0..slices {
        let mut e = shepp_logan_2d();
        e[0].intensity = 1.0 + 0.1 * s as f64; // every slice different
        sinos.extend(sinogram_2d(&e, &a64, n, 47.25, n as f64 / 2.0));
    }
    let g = Gridrec::new(FilterKind::Hann, n, &angles, 47.25, n).unwrap();
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let mut out = vec![0f32; slices * n * n];
        pool.install(|| g.reconstruct_into(&sinos, &mut out)).unwrap();
        out
    };
    let one = run(1);
    for t in [2, 3, 8] {
        assert!(run(t).iter().zip(&one).all(|(a, b)| a.to_bits() == b.to_bits()), "{t} threads differ");
    }
    for s in 0..slices {
        let alone = g.reconstruct(&sinos[s * n_angles * n..(s + 1) * n_angles * n]).unwrap();
        assert!(alone.iter().zip(&one[s * n * n..]).all(|(a, b)| a.to_bits() == b.to_bits()), "slice {s} alone");
    }
    // Wrong sizes are refused, not a panic.
    assert!(g.reconstruct(&sinos[..10]).is_err());
    let mut short = vec![0f32; 3];
    assert!(g.reconstruct_into(&sinos, &mut short).is_err());
}
