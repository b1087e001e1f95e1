//! DECTRIS SIMPLON stream v2 in: a Python sender (cbor2 + pyzmq, bslz4 chunks from hdf5plugin's Bitshuffle
//! filter) binds PUSH like a detector, `beamline receive --format stream2 --connect` writes the file, and
//! h5py + hdf5plugin check it pixel-exact (out-of-order ids, a duplicate, a damaged chunk, garbage, no end).

mod acquisition_common;

use std::process::{Child, Stdio};
use std::time::Duration;

use acquisition_common::wait;
use tests::{beamline, free_endpoint, run_python};

fn receiver(ep: &str, file: &std::path::Path) -> Child {
    beamline()
        .args(["receive", "--format", "stream2", "--quiet", "--connect", ep, "--output"])
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn check(file: &std::path::Path, dir: &std::path::Path) -> serde_json::Value {
    let out = run_python("stream2_sender.py", &["check", file.to_str().unwrap(), dir.to_str().unwrap()]);
    serde_json::from_str(out.trim().lines().last().unwrap()).unwrap()
}

#[test]
fn bslz4_series_with_damage_and_garbage_lands_pixel_exact() {
    let dir = tempfile::tempdir().unwrap();
    let ep = free_endpoint();
    let file = dir.path().join("s2.h5");
    let rx = receiver(&ep, &file);
    run_python("stream2_sender.py", &["send", &ep, dir.path().to_str().unwrap(), "complete"]);
    let out = wait(rx, Duration::from_secs(60), "beamline receive --format stream2");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("expected 6, received 6, rejected 3"), "{stdout}");
    let r = check(&file, dir.path());
    assert_eq!(r["checked"], 6);
    assert_eq!(r["status"], "complete");
    assert_eq!(r["rejected"], serde_json::json!({"bad_cbor": 1, "duplicate_frame": 1, "compressed_framing": 1}));
}

#[test]
fn raw_series_lands_pixel_exact() {
    let dir = tempfile::tempdir().unwrap();
    let ep = free_endpoint();
    let file = dir.path().join("raw.h5");
    let rx = receiver(&ep, &file);
    run_python("stream2_sender.py", &["send", &ep, dir.path().to_str().unwrap(), "raw"]);
    let out = wait(rx, Duration::from_secs(60), "beamline receive --format stream2");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(check(&file, dir.path())["checked"], 6);
}

#[test]
fn a_series_without_end_is_closed_incomplete_on_ctrl_c_with_its_missing_frame() {
    let dir = tempfile::tempdir().unwrap();
    let ep = free_endpoint();
    let file = dir.path().join("noend.h5");
    let rx = receiver(&ep, &file);
    run_python("stream2_sender.py", &["send", &ep, dir.path().to_str().unwrap(), "noend"]);
    std::thread::sleep(Duration::from_millis(500));
    let kill = std::process::Command::new("kill").args(["-INT", &rx.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let out = wait(rx, Duration::from_secs(60), "beamline receive --format stream2");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("received 5") && stdout.contains("missing 1 (2)"), "{stdout}");
    let r = check(&file, dir.path());
    assert_eq!(r["checked"], 5);
    assert!(r["status"].as_str().unwrap().starts_with("incomplete"), "{r}");
}

fn simulate(args: &[&str]) {
    let out = beamline()
        .args(["simulate", "--size", "48", "--angles", "12", "--flats", "2", "--darks", "2", "--seed", "5", "-q"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "simulate {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn simulate_as_stream2_lands_the_same_frames_as_our_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let (ours, theirs) = (dir.path().join("ours.h5"), dir.path().join("stream2.h5"));
    let ep = free_endpoint();
    let rx = beamline()
        .args(["receive", "--quiet", "--bind", &ep, "--output"])
        .arg(&ours)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    simulate(&["--connect", &ep, "--compression", "none"]);
    let out = wait(rx, Duration::from_secs(60), "beamline receive");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    for encoding in ["bslz4", "lz4", "none"] {
        let ep = free_endpoint();
        let _ = std::fs::remove_file(&theirs);
        let rx = receiver(&ep, &theirs);
        simulate(&["--format", "stream2", "--encoding", encoding, "--bind", &ep]);
        let out = wait(rx, Duration::from_secs(60), "beamline receive --format stream2");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{encoding}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("expected 16, received 16, rejected 0"), "{encoding}: {stdout}");
        let r: serde_json::Value = serde_json::from_str(
            run_python("stream2_sender.py", &["compare", ours.to_str().unwrap(), theirs.to_str().unwrap()])
                .trim()
                .lines()
                .last()
                .unwrap(),
        )
        .unwrap();
        let filters = match encoding {
            "bslz4" => serde_json::json!([32008]),
            "lz4" => serde_json::json!([32004]),
            _ => serde_json::json!([]),
        };
        assert_eq!(r["filters"], filters, "{encoding}: {r}");
        assert_eq!(
            (&r["frames_equal"], &r["keys_equal"], &r["angles_equal"]),
            (&true.into(), &true.into(), &true.into()),
            "{encoding}: {r}"
        );
        assert_eq!(r["status"], "complete");
    }
}
