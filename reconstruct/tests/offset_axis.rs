//! Issue 15 §5 (library part): a half-acquisition 360-degree scan of the analytic Shepp-Logan phantom (the axis
//! 8 columns from one edge of a 72-column detector, so no projection sees the whole object) stitched into a
//! double-width 180-degree sinogram and reconstructed by FBP, scored against the phantom like the accuracy test
//! and against FBP of a full-width 180-degree scan of the same field.

use acquisition::phantom::{rasterize_2d_area, shepp_logan_2d, sinogram_2d};
use reconstruct::accuracy::rmse_disc;
use reconstruct::backend::ReconSetup;
use reconstruct::cpu::SinogramPipeline;
use reconstruct::offset_axis::stitch_360;

fn fbp(sino: &[f32], angles: &[f32], n_cols: usize, center: f64, out: usize) -> Vec<f32> {
    let setup = ReconSetup::new(angles.to_vec(), n_cols, center, out);
    SinogramPipeline::new(&setup).expect("valid setup").reconstruct_minus_log(sino)
}

#[test]
fn a_half_acquisition_scan_stitches_into_the_doubled_field() {
    let out = 127;
    let ppu = out as f64 / 2.0;
    let truth = rasterize_2d_area(&shepp_logan_2d(), out, 8);
    let radius = 0.45 * out as f64;
    // Reference: a full-width detector over 180 degrees, 360 angles.
    let half: Vec<f64> = (0..360).map(|i| (i as f64 * 0.5).to_radians()).collect();
    let full = sinogram_2d(&shepp_logan_2d(), &half, out, 63.0, ppu);
    let h32: Vec<f32> = half.iter().map(|&a| a as f32).collect();
    let rmse_full = rmse_disc(&fbp(&full, &h32, out, 63.0, out), &truth, out, radius);

    let turn: Vec<f64> = (0..720).map(|i| (i as f64 * 0.5).to_radians()).collect();
    let t32: Vec<f32> = turn.iter().map(|&a| a as f32).collect();
    // The axis near the right edge (column 63 of 72), then near the left edge (column 8.4 of 72).
    for (n_cols, center, shift) in [(72usize, 63.0f64, 0.0f64), (72, 8.4, 63.0 - 8.4)] {
        // Column c of the narrow detector sees s = c - center; the phantom is centred on the axis.
        let sino = sinogram_2d(&shepp_logan_2d(), &turn, n_cols, center, ppu);
        let s = stitch_360(&sino, &t32, n_cols, center).expect("stitches");
        assert_eq!(s.angles_rad.len(), 360);
        assert!(s.n_cols >= out - 1 && s.overlap >= 16, "{} columns, overlap {}", s.n_cols, s.overlap);
        let slice = fbp(&s.sinogram, &s.angles_rad, s.n_cols, s.center, out);
        let e = rmse_disc(&slice, &truth, out, radius);
        println!(
            "axis {center} (shift {shift}): stitched {} cols, centre {:.2}, RMSE {e:.4} (full width {rmse_full:.4})",
            s.n_cols, s.center
        );
        // An integer 2 x centre maps mirrored columns onto columns (measured: the same RMSE as full width); a
        // sub-pixel one interpolates the mirrored half linearly, which blurs it a little (measured 1.29x).
        let allowed = if (2.0 * center).fract() == 0.0 { 1.05 } else { 1.4 };
        assert!(e < allowed * rmse_full, "stitched RMSE {e} vs full-width {rmse_full}");
        // Without stitching, a plain reconstruction of the first half turn misses half the object.
        let first: Vec<f32> = sino[..360 * n_cols].to_vec();
        let plain = fbp(&first, &t32[..360], n_cols, center, out);
        assert!(rmse_disc(&plain, &truth, out, radius) > 2.0 * e);
    }
    assert!(stitch_360(&full, &h32, out, 63.0).is_err(), "an axis in the middle is refused");
}

#[test]
fn the_plan_gives_the_stitched_geometry_and_the_refusals() {
    use reconstruct::offset_axis::{check_full_turn, plan, OffsetAxis, StitchError};
    let turn: Vec<f64> = (0..400).map(|i| (i as f64 * 0.9).to_radians()).collect();
    let t32: Vec<f32> = turn.iter().map(|&a| a as f32).collect();
    for (n_cols, center) in [(64usize, 54.5f64), (64, 55.3), (72, 8.4), (96, 10.0)] {
        let sino = sinogram_2d(&shepp_logan_2d(), &turn, n_cols, center, 40.0);
        let s = stitch_360(&sino, &t32, n_cols, center).expect("stitches");
        let p = plan(&t32, n_cols, center).expect("plan");
        assert_eq!((p.n_cols, p.overlap, &p.angles_rad), (s.n_cols, s.overlap, &s.angles_rad), "axis {center}");
        assert!((p.center - s.center).abs() < 1e-12, "axis {center}: {} vs {}", p.center, s.center);
    }
    let half: Vec<f32> = (0..180).map(|i| (i as f32).to_radians()).collect();
    assert!(matches!(check_full_turn(&half), Err(StitchError::HalfTurn { .. })));
    assert!(matches!(check_full_turn(&t32[..300]), Err(StitchError::NotFullTurn { .. })));
    assert!(check_full_turn(&t32).is_ok());
    assert!(matches!(OffsetAxis::Auto.check(31.5, 64), Err(StitchError::AxisCentred { .. })));
    assert!(matches!(OffsetAxis::Left.check(54.5, 64), Err(StitchError::WrongSide { found: "right", .. })));
    assert!(OffsetAxis::Right.check(54.5, 64).is_ok() && OffsetAxis::Left.check(8.0, 64).is_ok());
}

#[test]
fn the_axis_of_a_half_acquisition_scan_is_found_over_the_overlap() {
    use reconstruct::center::{find_center, find_center_offset};
    // The axis 10.3 columns from either edge of a 96-column detector; the head spans the doubled field.
    let angles: Vec<f64> = (0..360).map(|i| (i as f64).to_radians()).collect();
    let a32: Vec<f32> = angles.iter().map(|&a| a as f32).collect();
    for truth in [85.7, 10.3] {
        let sino = sinogram_2d(&shepp_logan_2d(), &angles, 96, truth, 86.0);
        // The 0/180-degree finder searches the middle half and needs a quarter of the columns to overlap.
        assert!(find_center(&sino, 96, &a32).map_or(true, |e| (e.center - truth).abs() > 1.0));
        let est = find_center_offset(&sino, 96, &a32).expect("centre found");
        assert!((est.center - truth).abs() < 0.1, "found {} want {truth}", est.center);
    }
}
