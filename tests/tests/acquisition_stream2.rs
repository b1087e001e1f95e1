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

/// The simulator's series (with `sim_args`) sent over our own protocol into `file`, the reference the stream
/// v2 files are compared with.
fn simulate_ours(file: &std::path::Path, sim_args: &[&str]) {
    let ep = free_endpoint();
    let rx = beamline()
        .args(["receive", "--quiet", "--bind", &ep, "--output"])
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut args = vec!["--connect", ep.as_str()];
    args.extend_from_slice(sim_args);
    simulate(&args);
    let out = wait(rx, Duration::from_secs(60), "beamline receive");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
}

/// `stream2_sender.py compare OURS THEIRS`: h5py's view of how the two files' frames, keys and angles agree.
fn compare(ours: &std::path::Path, theirs: &std::path::Path) -> serde_json::Value {
    let out = run_python("stream2_sender.py", &["compare", ours.to_str().unwrap(), theirs.to_str().unwrap()]);
    serde_json::from_str(out.trim().lines().last().unwrap()).unwrap()
}

#[test]
fn simulate_as_stream2_lands_the_same_frames_as_our_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let (ours, theirs) = (dir.path().join("ours.h5"), dir.path().join("stream2.h5"));
    simulate_ours(&ours, &["--compression", "none"]);
    for encoding in ["bslz4", "lz4", "none"] {
        let ep = free_endpoint();
        let _ = std::fs::remove_file(&theirs);
        let rx = receiver(&ep, &theirs);
        simulate(&["--format", "stream2", "--encoding", encoding, "--bind", &ep]);
        let out = wait(rx, Duration::from_secs(60), "beamline receive --format stream2");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{encoding}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("expected 16, received 16, rejected 0"), "{encoding}: {stdout}");
        let r = compare(&ours, &theirs);
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

/// Several receivers on one stream v2: the sender deals every message to one PULL client in turn, as a DECTRIS
/// detector does, so one receiver gets the `start` and another the `end`. With `--peers DIR` they share those
/// two through the folder; each file holds the images dealt to it, and `beamline stitch` gives one master file
/// in which h5py + hdf5plugin find every image exactly once, pixel-exact, with its key and angle.
#[test]
fn two_receivers_on_one_stream_share_start_and_end_and_stitch_into_one_master() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ep = free_endpoint();
    let peers = d.join("peers");
    let files: Vec<_> = (0..2).map(|k| d.join(format!("rx{k}.h5"))).collect();
    let rxs: Vec<Child> = files
        .iter()
        .map(|f| {
            beamline()
                .args(["receive", "--format", "stream2", "--quiet", "--connect", &ep, "--peers"])
                .arg(&peers)
                .arg("--output")
                .arg(f)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    run_python("stream2_sender.py", &["shared", &ep, d.to_str().unwrap(), "2"]);
    for (rx, f) in rxs.into_iter().zip(&files) {
        let out = wait(rx, Duration::from_secs(60), "beamline receive --format stream2 --peers");
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{}: {stdout}\n{stderr}", f.display());
        assert!(stdout.contains("rejected 0, missing 0; status complete"), "{stdout}\n{stderr}");
    }
    let master = d.join("master.h5");
    let st = beamline().arg("stitch").args(&files).arg("-o").arg(&master).output().unwrap();
    let st_text = format!("{}{}", String::from_utf8_lossy(&st.stdout), String::from_utf8_lossy(&st.stderr));
    assert!(st.status.success(), "stitch: {st_text}");
    let mut args = vec!["check_master".to_string(), master.display().to_string(), d.display().to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_python("stream2_sender.py", &args);
    let r: serde_json::Value = serde_json::from_str(out.trim().lines().last().unwrap()).unwrap();
    assert_eq!(r["images"], 6);
    // Round robin over two clients: both hold images (one of them never saw the start, one never the end).
    assert!(r["held"].as_array().unwrap().iter().all(|h| !h.as_array().unwrap().is_empty()), "{r}");
}

/// `simulate --format stream2 --replay FILE`: a file our protocol wrote, sent again as stream v2, lands with the
/// same frames, keys and angles (frames marked invalid in the file are not replayed).
#[test]
fn a_file_replayed_as_stream2_lands_with_the_same_frames_keys_and_angles() {
    let dir = tempfile::tempdir().unwrap();
    let (ours, theirs) = (dir.path().join("ours.h5"), dir.path().join("replayed.h5"));
    simulate_ours(&ours, &[]);
    let ep = free_endpoint();
    let rx = receiver(&ep, &theirs);
    let sent = beamline()
        .args(["simulate", "--format", "stream2", "-q", "--bind", &ep, "--replay"])
        .arg(&ours)
        .output()
        .unwrap();
    let sent_text = String::from_utf8_lossy(&sent.stdout);
    assert!(
        sent.status.success() && sent_text.contains("16 images"),
        "{sent_text}{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let out = wait(rx, Duration::from_secs(60), "beamline receive --format stream2 (replay)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("expected 16, received 16, rejected 0"), "{stdout}");
    let r = compare(&ours, &theirs);
    assert_eq!(r["filters"], serde_json::json!([32008]), "{r}");
    assert_eq!(
        (&r["frames_equal"], &r["keys_equal"], &r["angles_equal"]),
        (&true.into(), &true.into(), &true.into()),
        "{r}"
    );
}
