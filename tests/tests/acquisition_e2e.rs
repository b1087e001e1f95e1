//! End to end: `beamline simulate` -> ZeroMQ -> `beamline receive` -> NXtomo, checked by h5py + hdf5plugin
//! (every NXtomo field and every frame's pixels against frames regenerated in-process).

mod acquisition_common;

use std::process::Stdio;
use std::time::Duration;

use acquisition::protocol::{BloscParams, Compression, Compressor, Degrees, Dtype, Shuffle};
use acquisition::sim::{Schedule, SimConfig};
use acquisition_common::{check, ok, simulated, spawn_receiver, wait};
use tests::{beamline, free_endpoint};

const LIMIT: Duration = Duration::from_secs(120);

fn receive(endpoint: &str, out: &std::path::Path) -> std::process::Child {
    spawn_receiver(endpoint, out, &[])
}

fn simulate(endpoint: &str, extra: &[&str]) -> std::process::Output {
    let child = beamline()
        .args(["simulate", "--connect", endpoint, "-q"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start beamline simulate");
    wait(child, LIMIT, "beamline simulate")
}

#[test]
fn simulated_blosc_series_lands_exactly_in_nxtomo() {
    let dir = tempfile::tempdir().unwrap();
    let ep = free_endpoint();
    let file = dir.path().join("scan.h5");
    let rx = receive(&ep, &file);
    let args = "--rows 48 --cols 64 --angles 40 --flats 4 --darks 3 --series e2e-blosc --seed 7 --clevel 3";
    ok(&simulate(&ep, &args.split(' ').collect::<Vec<_>>()), "simulate");
    let stdout = ok(&wait(rx, LIMIT, "receive"), "receive");
    assert!(stdout.contains("expected 47, received 47, rejected 0, missing 0"), "closing line: {stdout}");

    let mut cfg = SimConfig::new(48, 64, Dtype::Uint16);
    cfg.seed = 7;
    let schedule = Schedule { darks: 3, flats: 4, angles: 40, range: Degrees(180.0) };
    let comp = Compression::Blosc1(BloscParams { compressor: Compressor::Lz4, clevel: 3, shuffle: Shuffle::Byte });
    let exp = simulated("e2e-blosc", &cfg, &schedule, comp).write(dir.path(), "expected");
    let r = check(&file, &exp, false);
    assert_eq!(r["checked_frames"], 47);
}

#[test]
fn uncompressed_float32_360_degree_series_lands_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let ep = free_endpoint();
    let file = dir.path().join("raw.h5");
    let rx = receive(&ep, &file);
    let args =
        "--size 32 --angles 24 --range 360 --flats 2 --darks 2 --dtype float32 --compression none --series raw32";
    ok(&simulate(&ep, &args.split(' ').collect::<Vec<_>>()), "simulate");
    let stdout = ok(&wait(rx, LIMIT, "receive"), "receive");
    assert!(stdout.contains("expected 28, received 28, rejected 0, missing 0"), "closing line: {stdout}");
    let cfg = SimConfig::new(32, 32, Dtype::Float32);
    let schedule = Schedule { darks: 2, flats: 2, angles: 24, range: Degrees(360.0) };
    let exp = simulated("raw32", &cfg, &schedule, Compression::None).write(dir.path(), "expected");
    assert_eq!(check(&file, &exp, false)["checked_frames"], 28);
}

#[test]
fn replay_resends_a_file_frame_for_frame_and_output_dir_serves_series_after_series() {
    let dir = tempfile::tempdir().unwrap();
    let ep = free_endpoint();
    let first = dir.path().join("first.h5");
    let rx = receive(&ep, &first);
    ok(
        &simulate(
            &ep,
            &["--size", "24", "--angles", "10", "--flats", "2", "--darks", "1", "--series", "orig", "--dtype", "uint8"],
        ),
        "simulate",
    );
    ok(&wait(rx, LIMIT, "receive"), "receive");

    // A directory receiver takes the replayed series and a second simulated one, one file each.
    let out_dir = dir.path().join("many");
    let ep2 = free_endpoint();
    let rx = beamline()
        .args(["receive", "--bind", &ep2, "--output-dir", out_dir.to_str().unwrap(), "-q"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    ok(&simulate(&ep2, &["--replay", first.to_str().unwrap(), "--series", "again"]), "replay");
    ok(
        &simulate(&ep2, &["--size", "16", "--angles", "5", "--flats", "1", "--darks", "1", "--series", "second"]),
        "simulate 2",
    );
    // Both series must be closed before Ctrl-C; the closing of the second shows in its file's status.
    let deadline = std::time::Instant::now() + LIMIT;
    while !(out_dir.join("again.h5").exists() && out_dir.join("second.h5").exists()) {
        assert!(std::time::Instant::now() < deadline, "files not created");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let st = std::process::Command::new("kill").args(["-INT", &rx.id().to_string()]).status().unwrap();
    assert!(st.success());
    let stdout = ok(&wait(rx, LIMIT, "receive --output-dir"), "receive --output-dir");
    assert!(stdout.contains("series again"), "{stdout}");
    assert!(stdout.contains("series second"), "{stdout}");

    let mut cfg = SimConfig::new(24, 24, Dtype::Uint8);
    cfg.seed = 1;
    let schedule = Schedule { darks: 1, flats: 2, angles: 10, range: Degrees(180.0) };
    let mut exp = simulated("again", &cfg, &schedule, Compression::Blosc1(BloscParams::default()));
    exp.metadata = serde_json::json!({"source": "beamline simulate --replay"});
    let exp = exp.write(dir.path(), "replayed");
    assert_eq!(check(&out_dir.join("again.h5"), &exp, false)["checked_frames"], 13);
}
