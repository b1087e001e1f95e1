//! Every example script runs; the tomography example produces a real NXtomo file (read back with hdf5).

mod common;

use std::path::PathBuf;

use common::{error_text, read_nxtomo, zero_time};
use scripting::provenance::sha256_hex;
use scripting::{run_scan_file, DetectorChoice, RunStatus, ScanOptions, ScanOutcome};

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples").join(name)
}

fn run_example(name: &str, params: &[(&str, &str)], out: &std::path::Path) -> ScanOutcome {
    let opts = ScanOptions {
        config: zero_time(),
        detector: DetectorChoice::Acquisition,
        output_dir: Some(out.to_path_buf()),
        params: params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        output: std::sync::Arc::new(|_: &str| {}),
        ..ScanOptions::default()
    };
    let o = run_scan_file(&example(name), opts).unwrap();
    assert_eq!(o.status, RunStatus::Success, "{name}: {}", error_text(&o));
    o
}

fn assert_close(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len());
    assert!(got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-9), "{got:?} vs {want:?}");
}

#[test]
fn tomography_example_writes_a_complete_nxtomo_file_with_provenance() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_example("tomo.rhai", &[("projections", "90"), ("darks", "4"), ("flats", "5")], dir.path());
    assert_eq!(o.files(), vec![dir.path().join("tomo.h5")]);
    let f = read_nxtomo(&dir.path().join("tomo.h5"));
    assert_eq!(f.status, "complete");
    assert_eq!(f.shape, vec![4 + 5 + 90 + 5, 64, 96]);
    // darks, flats (sample out), projections, flats again.
    let mut expected = vec![2; 4];
    expected.extend([1; 5]);
    expected.extend([0; 90]);
    expected.extend([1; 5]);
    assert_eq!(f.image_key, expected);
    // 90 projections from 0 to 180° inclusive (the default end-point rule).
    let proj: Vec<f64> = f.angles[9..99].to_vec();
    assert_close(&proj, &(0..90).map(|i| 180.0 * i as f64 / 89.0).collect::<Vec<_>>());
    // Provenance: script text and hash, --set parameters, times, exit status.
    let text = std::fs::read_to_string(example("tomo.rhai")).unwrap();
    let p = &f.end["provenance"];
    assert_eq!(p["script"], text.as_str());
    assert_eq!(p["script_sha256"], sha256_hex(text.as_bytes()).as_str());
    assert_eq!(p["parameters"]["projections"], "90");
    assert_eq!(f.end["exit_status"], "success");
    assert!(f.end["started"].as_str().unwrap() <= f.end["stopped"].as_str().unwrap());
    // The rotation went back, the sample is in, the shutter closed.
    assert_eq!(o.positions["rot"], 0.0);
    assert_eq!(o.positions["samx"], 0.0);
    assert!(!o.shutter_open);
}

#[test]
fn fly_tomography_example_writes_the_planned_angles() {
    let dir = tempfile::tempdir().unwrap();
    run_example("tomo.rhai", &[("projections", "60"), ("mode", "fly"), ("flats_at", "start")], dir.path());
    let f = read_nxtomo(&dir.path().join("tomo.h5"));
    assert_eq!(f.status, "complete");
    assert_eq!(f.image_key.iter().filter(|&&k| k == 0).count(), 60);
    let proj: Vec<f64> = f.angles[20..].to_vec();
    assert_close(&proj, &(0..60).map(|i| 180.0 * i as f64 / 59.0).collect::<Vec<_>>());
}

#[test]
fn step_scan_example_runs_every_step_primitive() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_example("step_scan.rhai", &[("points", "9")], dir.path());
    let kinds: Vec<&str> = o.report.scans.iter().map(|s| s.kind.as_str()).collect();
    assert_eq!(kinds, ["scan", "rel_scan", "list_scan", "grid_scan"]);
    assert_eq!(o.report.scans.iter().map(|s| s.points).collect::<Vec<_>>(), [9, 5, 4, 12]);
    assert_eq!(o.files().len(), 4);
    assert_eq!(o.positions["samx"], 1.5, "rel_scan returns samx to where it started");
    let edge = read_nxtomo(&dir.path().join("edge_samy.h5"));
    assert_eq!((edge.status.as_str(), edge.shape[0]), ("complete", 9));
}

#[test]
fn user_defined_scan_example_takes_one_tomography_per_height() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_example("tomo_heights.rhai", &[("heights", "3"), ("projections", "30")], dir.path());
    let names: Vec<&str> = o.series.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["tomo_z0", "tomo_z1", "tomo_z2"]);
    for s in &o.series {
        let f = read_nxtomo(s.file.as_ref().unwrap());
        assert_eq!((f.status.as_str(), f.shape[0]), ("complete", 5 + 5 + 30));
    }
    assert_eq!(o.report.motors["samz"].max, 4.0);
    assert_eq!(o.positions["samz"], 0.0);
}
