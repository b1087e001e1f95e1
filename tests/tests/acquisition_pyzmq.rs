//! Interop: a Python pyzmq sender written from PROTOCOL.md only sends series (blosc chunks made by another
//! c-blosc, and raw frames) to `beamline receive`; h5py + hdf5plugin then check the file holds exactly them.

mod acquisition_common;

use std::time::Duration;

use acquisition_common::{check, spawn_receiver, wait};
use tests::{free_endpoint, run_python};

fn python_series(codec: &str) {
    let dir = tempfile::tempdir().unwrap();
    let ep = free_endpoint();
    let file = dir.path().join("py.h5");
    let rx = spawn_receiver(&ep, &file, &[]);
    run_python("acq_sender.py", &[&ep, dir.path().to_str().unwrap(), codec]);
    let out = wait(rx, Duration::from_secs(120), "beamline receive");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // One frame missing: the receiver says so and exits with code 2.
    assert_eq!(out.status.code(), Some(2), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("expected 30, received 29, rejected 1 (duplicate_frame 1), missing 1 (5); status aborted"),
        "closing line: {stdout}"
    );
    let r = check(&file, &dir.path().join("expected.json"), false);
    assert_eq!(r["checked_frames"], 29);
}

#[test]
fn pyzmq_sender_with_blosc_chunks_from_hdf5plugin() {
    python_series("blosc1");
}

#[test]
fn pyzmq_sender_with_raw_frames() {
    python_series("none");
}
