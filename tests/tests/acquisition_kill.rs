//! Crash safety: `kill -9` of the receiver mid-series leaves a file that h5py opens as is (no h5clear), with
//! every frame written before the last flush intact (those are the frames whose image_key is not 3).

mod acquisition_common;

use std::process::Stdio;
use std::time::Duration;

use acquisition::protocol::{BloscParams, Compression, Degrees, Dtype};
use acquisition::sim::{Schedule, SimConfig};
use acquisition_common::{check, simulated, spawn_receiver};
use tests::{beamline, free_endpoint};

#[test]
fn kill_9_mid_series_leaves_a_readable_file_with_every_flushed_frame_intact() {
    let dir = tempfile::tempdir().unwrap();
    let ep = free_endpoint();
    let file = dir.path().join("killed.h5");
    let mut rx = spawn_receiver(&ep, &file, &["--flush-ms", "100"]);
    let mut tx = beamline()
        .args(["simulate", "--connect", &ep, "--size", "64", "--angles", "400", "--flats", "3", "--darks", "2"])
        .args(["--fps", "40", "--seed", "5", "--series", "killed", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the file exists and has had time for several flushes, then SIGKILL the receiver.
    let t0 = std::time::Instant::now();
    while !file.exists() {
        assert!(t0.elapsed() < Duration::from_secs(60), "receiver never created the file");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(2500));
    rx.kill().unwrap(); // SIGKILL
    rx.wait().unwrap();
    let _ = tx.kill();
    let _ = tx.wait();

    let mut cfg = SimConfig::new(64, 64, Dtype::Uint16);
    cfg.seed = 5;
    let schedule = Schedule { darks: 2, flats: 3, angles: 400, range: Degrees(180.0) };
    let exp = simulated("killed", &cfg, &schedule, Compression::Blosc1(BloscParams::default()));
    let exp = exp.write(dir.path(), "expected");
    let r = check(&file, &exp, true);
    let n = r["checked_frames"].as_u64().unwrap();
    eprintln!("{n} flushed frames checked");
    assert!(n >= 20, "only {n} frames were flushed before the kill");
    assert!(n < 405, "the kill came after the series ended ({n} frames)");
}
