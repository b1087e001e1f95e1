//! Issue 15 §5 end to end: `beamline simulate --offset-axis COLS --range 360` sends a half-acquisition scan (the
//! rotation axis at column COLS near the right edge, the phantom filling the circle the far edge sweeps, so no
//! projection sees all of it), `beamline receive` stores it, and `beamline recon --offset-axis --center auto`
//! finds the axis (within 0.5 px of COLS), stitches opposite projections into the doubled field of view and
//! reconstructs it, compared with the phantom over the inner disc; a plain reconstruction of the same scan is
//! far worse. Then the refusals: a 180-degree scan, less than a full turn, an axis in the middle, the wrong
//! side, `--center vo`; and `--memory` counting the doubled width.

use std::path::{Path, PathBuf};

use acquisition::phantom::{rasterize_3d_slice, shepp_logan_3d};
use acquisition::protocol::Dtype;
use acquisition::sim::SimConfig;
use reconstruct::accuracy::rmse_disc;
use serde_json::Value;
use tests::{make_nxtomo, output_text as text, recon_quiet as recon, simulate_into};

const ROWS: usize = 8;
const COLS: usize = 64;
const AXIS: f64 = 54.5;
const ANGLES: usize = 400;

/// `beamline simulate ... --cols COLS --angles ANGLES --range RANGE [--offset-axis AXIS]` into `beamline receive`.
fn simulate_scan(dir: &Path, name: &str, cols: usize, angles: usize, range: &str, axis: Option<f64>) -> PathBuf {
    let file = dir.join(name);
    let (rows, cols, angles) = (ROWS.to_string(), cols.to_string(), angles.to_string());
    let mut args = vec!["--rows", &rows, "--cols", &cols, "--angles", &angles, "--range", range];
    args.extend(["--flats", "6", "--darks", "4"]);
    let axis = axis.map(|a| a.to_string());
    if let Some(a) = &axis {
        args.extend(["--offset-axis", a]);
    }
    simulate_into(&file, &args);
    file
}

/// The volume and the provenance of an HDF5 output.
fn volume(path: &Path) -> (Vec<f32>, usize, Value) {
    let f = hdf5::File::open(path).expect("open volume");
    let ds = f.dataset(reconstruct::output::VOLUME_PATH).expect("volume dataset");
    let n = ds.shape()[1];
    let data = ds.read_raw::<f32>().expect("read volume");
    let prov: hdf5::types::VarLenUnicode =
        f.dataset(reconstruct::output::PROVENANCE_PATH).and_then(|d| d.read_scalar()).expect("provenance");
    (data, n, serde_json::from_str(prov.as_str()).expect("provenance JSON"))
}

/// The phantom's attenuation on detector row `row`, `n x n` about the axis, in the units of the slices.
fn truth(row: usize, n: usize) -> Vec<f32> {
    truth_about(AXIS, row, n)
}

/// [`truth`] for a scan simulated with its axis at `axis`.
fn truth_about(axis: f64, row: usize, n: usize) -> Vec<f32> {
    let mut cfg = SimConfig::new(ROWS, COLS, Dtype::Uint16);
    cfg.axis = Some(axis);
    let det = cfg.detector();
    let k = (cfg.attenuation / (2.0 * det.pixels_per_unit)) as f32;
    rasterize_3d_slice(&shepp_logan_3d(), &det, row, n).into_iter().map(|v| v * k).collect()
}

#[test]
fn a_simulated_half_acquisition_scan_is_stitched_and_reconstructed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = simulate_scan(dir.path(), "half_acquisition.h5", COLS, ANGLES, "360", Some(AXIS));
    let inp = file.to_str().unwrap();
    let out = dir.path().join("stitched.h5");
    let o = recon(&[inp, "-o", out.to_str().unwrap(), "--slices", "3:5", "--offset-axis", "--center", "auto"]);
    assert!(o.status.success(), "{}", text(&o));
    let (data, n, prov) = volume(&out);
    let p = &prov["parameters"];
    let found = p["center"].as_f64().expect("centre in provenance");
    assert!((found - AXIS).abs() < 0.5, "axis found at {found}, simulated at {AXIS}: {p}");
    assert_eq!(p["center_mode"], "auto-offset-axis", "{p}");
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains(&format!("centre {found:.2} (auto-offset-axis)")), "{stdout}");
    let oa = &p["offset_axis"];
    assert_eq!(oa["side"], "auto", "{oa}");
    assert_eq!(oa["angles_used"], ANGLES / 2, "{oa}");
    // The doubled field: twice the axis's distance to the left edge (about 2 x 54.5 + 1 columns).
    assert!((109..=111).contains(&n), "slice side {n}: {oa}");
    assert_eq!(oa["stitched_columns"], n, "{oa}");

    // Against the phantom over the inner disc (the head's outline is partial-volume at this size).
    let radius = 0.4 * n as f64;
    let mut rmse = Vec::new();
    for (k, row) in (3..5).enumerate() {
        let slice = &data[k * n * n..(k + 1) * n * n];
        rmse.push(rmse_disc(slice, &truth(row, n), n, radius));
    }
    let worst = rmse.iter().copied().fold(0.0, f64::max);
    // Reference: the same phantom at the same scale on a full-width detector (n columns, the axis in the
    // middle), 180 degrees with as many angles as the stitched sinogram, reconstructed plainly.
    let wide = simulate_scan(dir.path(), "full_width.h5", n, ANGLES / 2, "180", None);
    let wide_out = dir.path().join("full_width_vol.h5");
    let o = recon(&[wide.to_str().unwrap(), "-o", wide_out.to_str().unwrap(), "--slices", "3:4"]);
    assert!(o.status.success(), "{}", text(&o));
    let (wdata, wn, _) = volume(&wide_out);
    assert_eq!(wn, n);
    let reference = rmse_disc(&wdata, &truth(3, n), n, radius);
    println!("offset-axis RMSE per slice {rmse:?} (axis found {found:.3}); full-width 180-degree scan {reference}");
    // The phantom's attenuation peaks at 0.036 per pixel here; the RMSE is mostly the partial-volume outline of
    // the skull against the point-sampled phantom. Measured 0.0026 for both slices.
    assert!(worst < 0.0035, "offset-axis RMSE {worst}");
    assert!(worst < 1.3 * reference, "offset-axis RMSE {worst} vs full-width {reference}");

    // Without stitching, the same scan about the same axis misses the far half of the head.
    let plain = dir.path().join("plain.h5");
    let c = format!("{found}");
    let o = recon(&[inp, "-o", plain.to_str().unwrap(), "--slices", "3:5", "--center", &c, "--size", &n.to_string()]);
    assert!(o.status.success(), "{}", text(&o));
    let (pdata, pn, _) = volume(&plain);
    assert_eq!(pn, n);
    let plain_rmse = rmse_disc(&pdata[..n * n], &truth(3, n), n, radius);
    println!("plain RMSE {plain_rmse}");
    // Measured 0.0083, 3.2x the stitched one.
    assert!(plain_rmse > 2.5 * rmse[0], "plain {plain_rmse} vs stitched {}", rmse[0]);

    // A given centre near the right edge with the side named gives the same geometry.
    let given = dir.path().join("given.h5");
    let o =
        recon(&[inp, "-o", given.to_str().unwrap(), "--slices", "3:4", "--offset-axis", "right", "--center", "54.5"]);
    assert!(o.status.success(), "{}", text(&o));
    let (gdata, gn, gprov) = volume(&given);
    assert_eq!(gn, 110, "{}", gprov["parameters"]["offset_axis"]);
    assert!(rmse_disc(&gdata, &truth(3, gn), gn, 0.4 * gn as f64) < 0.0035);

    // Refusals that name what to do.
    let e = recon(&[inp, "-o", dir.path().join("x1").to_str().unwrap(), "--offset-axis", "left"]);
    assert!(
        !e.status.success() && text(&e).contains("is near the right edge; give --offset-axis right"),
        "{}",
        text(&e)
    );
    let e = recon(&[inp, "-o", dir.path().join("x2").to_str().unwrap(), "--offset-axis", "--center", "vo"]);
    assert!(!e.status.success() && text(&e).contains("--center vo with --offset-axis"), "{}", text(&e));
    let e = recon(&[
        inp,
        "-o",
        dir.path().join("x3").to_str().unwrap(),
        "--offset-axis",
        "--end-proj",
        "300",
        "--allow-incomplete",
    ]);
    assert!(!e.status.success() && text(&e).contains("needs a full turn"), "{}", text(&e));
    let e = recon(&[inp, "-o", dir.path().join("x4").to_str().unwrap(), "--offset-axis", "--center", "31.5"]);
    assert!(!e.status.success() && text(&e).contains("is not near an edge"), "{}", text(&e));

    // --memory counts the doubled width: the smallest slab of the stitched scan costs more than the plain one.
    let need = |extra: &[&str]| {
        let o = recon(&[&[inp, "-o", dir.path().join("m").to_str().unwrap(), "--memory", "1K"], extra].concat());
        assert!(!o.status.success());
        needs_about(&text(&o))
    };
    let (stitched, plain) = (need(&["--offset-axis", "--center", "54.5"]), need(&["--center", "54.5"]));
    assert!(stitched > plain, "stitched slab {stitched} bytes, plain {plain}");
}

#[test]
fn an_axis_near_the_left_edge_off_the_half_pixel_grid() {
    // Column 9.3: the stitched detector is built mirrored and flipped back, and 2 x 9.3 is not an integer, so
    // the mirrored half is interpolated.
    let dir = tempfile::tempdir().expect("tempdir");
    let axis = 9.3;
    let file = simulate_scan(dir.path(), "left.h5", COLS, ANGLES, "360", Some(axis));
    let out = dir.path().join("left_vol.h5");
    let o = recon(&[file.to_str().unwrap(), "-o", out.to_str().unwrap(), "--slices", "4:5", "--offset-axis", "left"]);
    assert!(o.status.success(), "{}", text(&o));
    let (data, n, prov) = volume(&out);
    let p = &prov["parameters"];
    let found = p["center"].as_f64().expect("centre");
    assert!((found - axis).abs() < 0.5, "axis found at {found}, simulated at {axis}: {p}");
    assert_eq!(p["offset_axis"]["side"], "left");
    assert!((107..=109).contains(&n), "slice side {n}");
    let e = rmse_disc(&data, &truth_about(axis, 4, n), n, 0.4 * n as f64);
    println!("left edge: axis found {found:.3}, {n} px, RMSE {e}");
    // Measured 0.0029 (0.0026 with the axis at 54.5 on the right: the interpolated mirror blurs a little).
    assert!(e < 0.0035, "RMSE {e}");
}

/// The bytes in "needs about 12.3 KiB" of a `--memory` refusal.
pub fn needs_about(message: &str) -> f64 {
    let rest = message.split("needs about ").nth(1).unwrap_or_else(|| panic!("no size in {message}"));
    let mut words = rest.split_whitespace();
    let value: f64 = words.next().and_then(|w| w.parse().ok()).expect("a number");
    let unit = match words.next() {
        Some("KiB") => 1024.0,
        Some("MiB") => 1024.0 * 1024.0,
        Some("GiB") => 1024.0 * 1024.0 * 1024.0,
        _ => 1.0,
    };
    value * unit
}

#[test]
fn a_180_degree_or_centred_scan_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let half = dir.path().join("half.h5");
    make_nxtomo(&half, &["--rows", "2", "--cols", "64", "--angles", "90", "--span", "180", "--center", "56"]);
    let o = recon(&[half.to_str().unwrap(), "-o", dir.path().join("a").to_str().unwrap(), "--offset-axis"]);
    assert!(!o.status.success() && text(&o).contains("this is a 180-degree scan"), "{}", text(&o));
    assert!(text(&o).contains("without --offset-axis"), "{}", text(&o));
    let full = dir.path().join("full.h5");
    make_nxtomo(&full, &["--rows", "2", "--cols", "64", "--angles", "180", "--span", "360"]);
    let o = recon(&[full.to_str().unwrap(), "-o", dir.path().join("b").to_str().unwrap(), "--offset-axis"]);
    assert!(!o.status.success() && text(&o).contains("is not near an edge"), "{}", text(&o));
}
