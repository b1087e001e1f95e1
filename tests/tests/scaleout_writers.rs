//! Scale-out over several writers: one sender deals a series over three `beamline receive` processes,
//! `beamline stitch` builds the master NXtomo file, and h5py (an independent reader) finds every frame in
//! order and identical to the same series written by one receiver (frame timestamps included: they must be
//! where the single writer puts them and equal to the source files'). A missing source file or a missing
//! writer is a clear error and writes no master.

#[path = "scaleout_util.rs"]
mod util;

use std::process::Child;

use tests::{beamline, free_endpoint, run_python};
use util::{acquire, finish, receiver, text};

const SIZE: u32 = 40;
const ANGLES: u32 = 31;

#[test]
fn three_writers_stitch_into_the_single_writer_series() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();

    // The reference: the simulator into one receiver.
    let single = acquire(d, "scan", SIZE, ANGLES);

    // The same series dealt over three receivers.
    let eps: Vec<String> = (0..3).map(|_| free_endpoint()).collect();
    let files: Vec<_> = (0..3).map(|k| d.join(format!("writer{k}.h5"))).collect();
    let rxs: Vec<Child> = eps.iter().zip(&files).map(|(e, f)| receiver(e, f)).collect();
    let mut spread = beamline();
    spread.args(["spread", "--size", &SIZE.to_string(), "--angles", &ANGLES.to_string(), "--series", "scan"]);
    for e in &eps {
        spread.args(["--to", e]);
    }
    let sp = spread.output().expect("run beamline spread");
    assert!(sp.status.success(), "spread failed: {}", text(&sp));
    for (rx, f) in rxs.into_iter().zip(&files) {
        let out = finish(rx);
        // Each writer holds a complete third of the series: the rest was never sent to it, nothing is missing.
        assert_eq!(out.status.code(), Some(0), "receiver for {} failed: {}", f.display(), text(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("missing 0; status complete"), "{}", text(&out));
        assert!(f.exists(), "{} not written: {}", f.display(), text(&out));
    }

    let master = d.join("master.h5");
    let st = beamline().arg("stitch").args(&files).arg("-o").arg(&master).output().expect("run beamline stitch");
    assert!(st.status.success(), "stitch failed: {}", text(&st));
    let frames = 10 + 10 + ANGLES;
    assert!(String::from_utf8_lossy(&st.stdout).contains(&format!("{frames} frames")), "{}", text(&st));

    let seen = run_python("e2e_stitch_check.py", &[master.to_str().unwrap(), single.to_str().unwrap(), "3"]);
    let v: serde_json::Value = serde_json::from_str(seen.trim()).expect("checker prints JSON");
    assert_eq!(v["frames"], frames);
    // A strict round robin is one regular mapping per writer.
    assert_eq!(v["mappings"], 3, "{v}");

    // Refusals: a writer's file left out, and a source that is gone. Neither writes a master.
    let partial = d.join("partial.h5");
    let st = beamline().arg("stitch").args([&files[0], &files[2]]).arg("-o").arg(&partial).output().unwrap();
    assert!(!st.status.success() && !partial.exists(), "stitching two of three writers must fail: {}", text(&st));
    assert!(String::from_utf8_lossy(&st.stderr).contains("in no source file"), "{}", text(&st));

    std::fs::remove_file(&files[1]).unwrap();
    let again = d.join("again.h5");
    let st = beamline().arg("stitch").args(&files).arg("-o").arg(&again).output().unwrap();
    assert!(!st.status.success() && !again.exists(), "a missing source must fail: {}", text(&st));
    assert!(String::from_utf8_lossy(&st.stderr).contains("does not exist"), "{}", text(&st));
}
