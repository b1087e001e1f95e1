//! Issue 15 §2 end to end: `beamline simulate --energy --distance --pixel-size` carries the beam geometry in the
//! series start, `beamline receive` stores it in the NXtomo places with units (read back by h5py), and
//! `beamline recon --phase paganin --delta-beta R` takes it from the file, options overriding, and says which
//! values it used in provenance; without them it says which option to give.

use std::path::Path;
use std::process::Output;

use serde_json::Value;
use tests::{make_nxtomo, output_text as text, provenance, python, recon_quiet as recon, run_python, simulate_into};

#[test]
fn simulate_stores_the_geometry_and_paganin_reads_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("scan.h5");
    let geometry = ["--energy", "25", "--distance", "0.2", "--pixel-size", "1.5"];
    let scan = ["--rows", "24", "--cols", "64", "--angles", "90", "--flats", "4", "--darks", "3"];
    simulate_into(&file, &[&scan[..], &geometry[..]].concat());

    let v: Value = serde_json::from_str(run_python("phase_fields.py", &[file.to_str().unwrap()]).trim()).expect("JSON");
    assert_eq!(v["/entry/instrument/source/energy"], serde_json::json!([25.0, "keV"]), "{v}");
    assert_eq!(v["/entry/instrument/detector/distance"], serde_json::json!([0.2, "m"]), "{v}");
    for p in ["/entry/instrument/detector/x_pixel_size", "/entry/instrument/detector/y_pixel_size"] {
        let (m, u) = (v[p][0].as_f64().expect("pixel size"), &v[p][1]);
        assert!((m - 1.5e-6).abs() < 1e-12 && u == "m", "{p}: {v}");
    }
    assert_eq!(v["source_class"], "NXsource");

    let out = dir.path().join("from_file");
    let inp = file.to_str().unwrap();
    let args = [inp, "-o", out.to_str().unwrap(), "--slices", "10:14", "--phase", "paganin", "--delta-beta", "200"];
    let o = recon(&args);
    assert!(o.status.success(), "{}", text(&o));
    let ph = &provenance(&out)["parameters"]["phase"];
    assert_eq!(ph["method"], "paganin", "{ph}");
    assert_eq!(ph["energy_kev"], 25.0);
    assert_eq!(ph["distance_m"], 0.2);
    assert!((ph["pixel_size_um"].as_f64().expect("pixel size") - 1.5).abs() < 1e-9, "{ph}");
    assert_eq!(ph["delta_beta"], 200.0);

    let out2 = dir.path().join("override");
    let o = recon(&[&args[..2], &[out2.to_str().unwrap()], &args[3..], &["--energy", "30"]].concat());
    assert!(o.status.success(), "{}", text(&o));
    let ph = &provenance(&out2)["parameters"]["phase"];
    assert_eq!(ph["energy_kev"], 30.0, "--energy overrides the file: {ph}");
    assert_eq!(ph["distance_m"], 0.2);

    // Without phase retrieval the slices differ: the filter did something.
    let plain = dir.path().join("plain");
    let o = recon(&[inp, "-o", plain.to_str().unwrap(), "--slices", "10:14"]);
    assert!(o.status.success(), "{}", text(&o));
    let a = std::fs::read(out.join("slice_00012.tif")).expect("slice");
    let b = std::fs::read(plain.join("slice_00012.tif")).expect("slice");
    assert_ne!(a, b, "phase retrieval left the slice unchanged");
}

#[test]
fn paganin_without_the_geometry_names_the_option() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("scan.h5");
    run_python("recon_make_nxtomo.py", &[input.to_str().unwrap(), "--rows", "2", "--cols", "64"]);
    let out = dir.path().join("out");
    let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());
    let r = recon(&[i, "-o", o, "--phase", "paganin", "--delta-beta", "100", "--energy", "20"]);
    assert!(!r.status.success() && text(&r).contains("--distance M"), "{}", text(&r));
    let r = recon(&[i, "-o", o, "--phase", "paganin"]);
    assert!(!r.status.success() && text(&r).contains("--delta-beta"), "{}", text(&r));
    let r = recon(&[i, "-o", o, "--phase", "paganin", "--delta-beta", "100", "--energy", "20", "--distance", "0.1"]);
    assert!(!r.status.success() && text(&r).contains("--pixel-size UM"), "{}", text(&r));
    let r = recon(&[
        i,
        "-o",
        o,
        "--phase",
        "paganin",
        "--delta-beta",
        "100",
        "--energy",
        "20",
        "--distance",
        "0.1",
        "--pixel-size",
        "2",
        "--center",
        "31.5",
    ]);
    assert!(r.status.success(), "{}", text(&r));
}

/// tifffile + numpy: the largest absolute difference between the pixels of two TIFF files (argv[1], argv[2]).
const TIFF_DIFF: &str = r#"
import sys
import numpy as np, tifffile
a = tifffile.imread(sys.argv[1]).astype(np.float64)
b = tifffile.imread(sys.argv[2]).astype(np.float64)
print(float(np.abs(a - b).max()))
"#;

/// The bytes in "needs about 12.3 KiB" of a `--memory` refusal.
fn needs_about(message: &str) -> f64 {
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

/// A small NXtomo file (h5py) in a temporary folder, and `beamline recon` on it with or without Paganin.
struct PhaseCase {
    dir: tempfile::TempDir,
    input: std::path::PathBuf,
}

const PHASE: [&str; 10] =
    ["--phase", "paganin", "--delta-beta", "300", "--energy", "20", "--distance", "1", "--pixel-size", "1"];

impl PhaseCase {
    fn new() -> PhaseCase {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("scan.h5");
        make_nxtomo(&input, &["--rows", "8", "--cols", "64", "--angles", "120"]);
        PhaseCase { dir, input }
    }

    fn run(&self, name: &str, extra: &[&str], with_phase: bool) -> (Output, std::path::PathBuf) {
        let out = self.dir.path().join(name);
        let mut args = vec![self.input.to_str().unwrap(), "-o", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        if with_phase {
            args.extend_from_slice(&PHASE);
        }
        (recon(&args), out)
    }

    fn ok(&self, name: &str, extra: &[&str], with_phase: bool) -> std::path::PathBuf {
        let (o, out) = self.run(name, extra, with_phase);
        assert!(o.status.success(), "{}", text(&o));
        out
    }
}

/// Runs a Python snippet (tifffile + numpy) with `args` and returns its stdout.
fn py(code: &str, args: &[&Path]) -> String {
    let o = std::process::Command::new(python())
        .arg("-c")
        .arg(code)
        .args(args.iter().map(|p| p.as_os_str()))
        .output()
        .expect("python");
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

// Issue 15 §2 follow-up: Paganin is applied not only to the volume but to what decides how it is made and
// shown: the centre sweep's trial slices, the automatic centre, the automatic 16-bit range; and the memory
// budget counts its context rows.

#[test]
fn paganin_reaches_the_centre_sweep() {
    let c = PhaseCase::new();
    let sweep_p = c.ok("sweep_phase", &["--center-sweep", "31:32:0.5"], true);
    let sweep = c.ok("sweep_plain", &["--center-sweep", "31:32:0.5"], false);
    let vol_p = c.ok("vol_phase", &["--center", "31.5", "--slices", "4:5"], true);
    let diff = |a: &Path, b: &Path| -> f64 { py(TIFF_DIFF, &[a, b]).trim().parse().expect("a number") };
    // The sweep reconstructs the middle row (4 of 0:8): the same slice as the volume's at that centre.
    let same = diff(&sweep_p.join("center_0031.50.tif"), &vol_p.join("slice_00004.tif"));
    let plain = diff(&sweep.join("center_0031.50.tif"), &vol_p.join("slice_00004.tif"));
    assert!(same < 1e-5 && plain > 1e-4, "phase sweep vs phase volume {same}, plain sweep vs phase volume {plain}");
}

#[test]
fn paganin_reaches_the_automatic_centre() {
    // The automatic centre is found on the phase-retrieved rows: its residual is theirs.
    let c = PhaseCase::new();
    let auto_p = c.ok("auto_phase", &["--slices", "4:5"], true);
    let auto = c.ok("auto_plain", &["--slices", "4:5"], false);
    let residual = |d: &Path| provenance(d)["parameters"]["center_residual"].as_f64().expect("center_residual");
    let (rp, r) = (residual(&auto_p), residual(&auto));
    assert!((rp - r).abs() > 1e-3 * r.abs(), "residual with Paganin {rp}, without {r}");
}

#[test]
fn paganin_reaches_the_automatic_range() {
    // The automatic 16-bit range comes from the phase-retrieved middle slice: it holds that slice's values.
    let c = PhaseCase::new();
    let vol_p = c.ok("vol_phase", &["--center", "31.5", "--slices", "4:5"], true);
    let u16p = c.ok("u16_phase", &["--center", "31.5", "--slices", "4:5", "--bits", "16"], true);
    let u16 = c.ok("u16_plain", &["--center", "31.5", "--slices", "4:5", "--bits", "16"], false);
    let range = |d: &Path| {
        let s = &provenance(d)["scaling"];
        (s["lo"].as_f64().expect("lo"), s["hi"].as_f64().expect("hi"))
    };
    let v: Vec<f64> = py(PERCENTILES, &[&vol_p.join("slice_00004.tif")])
        .split_whitespace()
        .map(|w| w.parse().expect("number"))
        .collect();
    let ((lo, hi), (plo, phi)) = (range(&u16p), range(&u16));
    let tol = 1e-4 * (v[1] - v[0]).abs();
    assert!((lo - v[0]).abs() <= tol && (hi - v[1]).abs() <= tol, "range {lo}:{hi}, phase slice percentiles {v:?}");
    assert!((plo - lo).abs() > 10.0 * tol || (phi - hi).abs() > 10.0 * tol, "plain {plo}:{phi} vs phase {lo}:{hi}");
}

#[test]
fn paganin_halo_rows_count_in_the_memory_budget() {
    let c = PhaseCase::new();
    let need = |with_phase: bool| {
        let (o, _) = c.run("m", &["--center", "31.5", "--memory", "1K"], with_phase);
        assert!(!o.status.success());
        needs_about(&text(&o))
    };
    let (with, without) = (need(true), need(false));
    assert!(with > without, "smallest slab with Paganin {with} bytes, without {without}");
}

/// numpy: the 0.1 and 99.9 percentiles of a TIFF slice (argv[1]) as `percentile_range` takes them.
const PERCENTILES: &str = r#"
import sys
import numpy as np, tifffile
v = np.sort(tifffile.imread(sys.argv[1]).astype(np.float32).ravel())
at = lambda p: float(v[int(round((len(v) - 1) * p))])
print(at(0.001), at(0.999))
"#;
