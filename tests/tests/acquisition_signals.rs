//! Signals: SIGTERM and SIGHUP stop `beamline receive` as Ctrl-C does (queued frames written, the file
//! closed as incomplete with its missing list, exit status 2), and a second Ctrl-C while the writer drains a
//! backlog stops at once with the file still consistent.

mod acquisition_common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use acquisition_common::wait;
use tests::{beamline, free_endpoint};

fn signal(child: &Child, sig: &str) {
    let st = Command::new("kill").args([sig, &child.id().to_string()]).status().expect("run kill");
    assert!(st.success(), "kill {sig} failed");
}

fn wait_for(path: &Path) {
    let t0 = Instant::now();
    while !path.exists() {
        assert!(t0.elapsed() < Duration::from_secs(60), "receiver never created {}", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// (status, image keys, missing_frames) of a closed file.
fn read_file(path: &Path) -> (String, Vec<i32>, Vec<u64>) {
    let f = hdf5::File::open(path).expect("the file opens");
    let status: hdf5::types::VarLenUnicode =
        f.dataset("entry/acquisition/status").unwrap().read_scalar().expect("status");
    let keys: Vec<i32> = f.dataset("entry/instrument/detector/image_key").unwrap().read_raw().unwrap();
    let missing: Vec<u64> = f.dataset("entry/acquisition/missing_frames").unwrap().read_raw().unwrap();
    (status.as_str().to_string(), keys, missing)
}

fn assert_consistent(path: &Path) -> usize {
    let (status, keys, missing) = read_file(path);
    assert_eq!(status, "incomplete (receiver stopped before series end)");
    let absent: Vec<u64> = keys.iter().enumerate().filter(|(_, k)| **k == 3).map(|(i, _)| i as u64).collect();
    assert_eq!(missing, absent, "missing_frames lists exactly the frames whose image_key is 3");
    assert!(!missing.is_empty());
    keys.len() - missing.len()
}

fn receiver(ep: &str, file: &Path, delay_ms: &str, extra: &[&str]) -> Child {
    beamline()
        .env("BEAMLINE_TEST_WRITE_DELAY_MS", delay_ms)
        .args(["receive", "--bind", ep, "--output", file.to_str().unwrap(), "-q", "--flush-ms", "100"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start beamline receive")
}

fn sender(ep: &str, angles: &str, fps: &str) -> Child {
    beamline()
        .args(["simulate", "--connect", ep, "--size", "32", "--angles", angles, "--flats", "0", "--darks", "0"])
        .args(["--fps", fps, "--series", "sig", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn terminated_like_ctrl_c(sig: &str) {
    let dir = tempfile::tempdir().unwrap();
    let ep = free_endpoint();
    let file = dir.path().join("t.h5");
    let rx = receiver(&ep, &file, "5", &[]);
    let mut tx = sender(&ep, "2000", "200");
    wait_for(&file);
    std::thread::sleep(Duration::from_millis(1000));
    signal(&rx, sig);
    let out = wait(rx, Duration::from_secs(60), "receiver after the signal");
    let _ = tx.kill();
    let _ = tx.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{sig}: exit status 2 (incomplete), got {}\n{stdout}", out.status);
    assert!(stdout.contains("series sig"), "{sig}: closing line printed:\n{stdout}");
    let written = assert_consistent(&file);
    assert!(written > 0, "{sig}: frames received before the signal are in the file");
}

#[test]
fn sigterm_stops_like_ctrl_c() {
    terminated_like_ctrl_c("-TERM");
}

#[test]
fn sighup_stops_like_ctrl_c() {
    terminated_like_ctrl_c("-HUP");
}

#[test]
fn a_second_interrupt_while_draining_a_backlog_stops_at_once_with_a_consistent_file() {
    let dir = tempfile::tempdir().unwrap();
    let ep = free_endpoint();
    let file = dir.path().join("d.h5");
    // A slow disk (300 ms a frame) and a deep queue: within a second the 400-frame queue is full.
    let rx = receiver(&ep, &file, "300", &["--queue", "400"]);
    let mut tx = sender(&ep, "2000", "0");
    wait_for(&file);
    std::thread::sleep(Duration::from_millis(1000));
    signal(&rx, "-INT");
    std::thread::sleep(Duration::from_millis(300));
    signal(&rx, "-INT");
    let out = wait(rx, Duration::from_secs(60), "receiver after two interrupts");
    let _ = tx.kill();
    let _ = tx.wait();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let written = assert_consistent(&file);
    // Draining the whole backlog would have written the 400 queued frames (2 minutes at 300 ms each).
    assert!(written < 100, "{written} frames written: the second interrupt did not drop the queue");
}
