//! Issue 15 §2 end to end: `beamline simulate --energy --distance --pixel-size` carries the beam geometry in the
//! series start, `beamline receive` stores it in the NXtomo places with units (read back by h5py), and
//! `beamline recon --phase paganin --delta-beta R` takes it from the file, options overriding, and says which
//! values it used in provenance; without them it says which option to give.

use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tests::{beamline, free_endpoint, output_text as text, recon_quiet as recon, run_python};

fn wait(mut child: Child, what: &str) -> Output {
    let t0 = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if t0.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("{what} did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn provenance(out_dir: &Path) -> Value {
    let s = std::fs::read_to_string(out_dir.join("provenance.json")).expect("provenance.json");
    serde_json::from_str(&s).expect("provenance JSON")
}

#[test]
fn simulate_stores_the_geometry_and_paganin_reads_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ep = free_endpoint();
    let file = dir.path().join("scan.h5");
    let rx = beamline()
        .args(["receive", "--bind", &ep, "--output", file.to_str().unwrap(), "-q"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start beamline receive");
    let sim = beamline()
        .args(["simulate", "--connect", &ep, "-q", "--rows", "24", "--cols", "64", "--angles", "90"])
        .args(["--flats", "4", "--darks", "3", "--energy", "25", "--distance", "0.2", "--pixel-size", "1.5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start beamline simulate");
    let s = wait(sim, "simulate");
    assert!(s.status.success(), "{}", text(&s));
    let r = wait(rx, "receive");
    assert!(r.status.success(), "{}", text(&r));

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
