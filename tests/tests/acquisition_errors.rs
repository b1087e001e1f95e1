//! Clear errors: an unwritable output is refused at start, and a device that is full (`/dev/full`) makes
//! the receiver stop with a message that names the file and says what to do.

mod acquisition_common;

use std::process::Stdio;
use std::time::Duration;

use acquisition_common::wait;
use tests::{beamline, free_endpoint};

#[test]
fn unwritable_output_is_refused_with_what_to_do() {
    for args in [["--output", "/proc/no-such-dir/x.h5"], ["--output-dir", "/proc/no-such-dir"]] {
        let out = beamline().args(["receive", "--bind", &free_endpoint()]).args(args).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("cannot write to /proc/no-such-dir"), "{err}");
        assert!(err.contains("Choose a writable --output"), "{err}");
    }
}

#[test]
fn full_device_stops_the_receiver_with_a_clear_error() {
    let ep = free_endpoint();
    let rx = beamline()
        .args(["receive", "--bind", &ep, "--output", "/dev/full", "-q"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let tx = beamline()
        .args(["simulate", "--connect", &ep, "--size", "16", "--angles", "5", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = wait(rx, Duration::from_secs(60), "beamline receive");
    let _ = wait(tx, Duration::from_secs(60), "beamline simulate");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/dev/full"), "{err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert!(err.contains("Check that the disk is not full"), "{err}");
}

#[test]
fn receive_needs_an_output_and_says_so() {
    let out = beamline().args(["receive"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--output"), "{err}");
}
