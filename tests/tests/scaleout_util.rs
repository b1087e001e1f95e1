//! Helpers shared by the scale-out and end-to-end tests (included with `#[path]`; as a test target of its
//! own it holds no tests).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use tests::{beamline, free_endpoint};

/// A `beamline receive` process binding `endpoint` and writing one series to `file`.
pub fn receiver(endpoint: &str, file: &Path) -> Child {
    beamline()
        .args(["receive", "--quiet", "--bind", endpoint, "--output"])
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start beamline receive")
}

/// Waits for a child (killing it after two minutes), returns its output.
pub fn finish(mut child: Child) -> Output {
    let t0 = Instant::now();
    while child.try_wait().expect("poll child").is_none() {
        if t0.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("child output")
}

/// Status, stdout and stderr of a finished process, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `beamline ARGS` to the end and asserts success.
pub fn ok(args: &[&str]) -> Output {
    let o = beamline().args(args).output().expect("run beamline");
    assert!(o.status.success(), "beamline {args:?} failed: {}", text(&o));
    o
}

/// A simulated series of `size x size` frames and `angles` projections (10 darks, 10 flats) written by one
/// `beamline receive` into `dir/name.h5`.
pub fn acquire(dir: &Path, name: &str, size: u32, angles: u32) -> PathBuf {
    let ep = free_endpoint();
    let file = dir.join(format!("{name}.h5"));
    let rx = receiver(&ep, &file);
    let (size, angles) = (size.to_string(), angles.to_string());
    ok(&["simulate", "--quiet", "--connect", &ep, "--size", &size, "--angles", &angles, "--series", name]);
    let out = finish(rx);
    assert!(out.status.success(), "receiver failed: {}", text(&out));
    file
}
