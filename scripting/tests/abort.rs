//! Abort and pause: motors stop, the shutter closes, the file is complete and marked aborted, motors
//! return where the scan says; a pause holds the scan at a checkpoint.

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{error_text, read_nxtomo, recording, zero_time};
use scripting::config::BeamlineConfig;
use scripting::device::{Beamline, Motor};
use scripting::{DetectorChoice, RunStatus, ScanOptions, ScanRun};

const STEP: f64 = 3.6; // 180 degrees / 50 projections

/// A slow rotation (one 3.6-degree step takes 1.8 s of beamline time) at a quarter of real time.
fn slow_rotation() -> BeamlineConfig {
    let mut c = BeamlineConfig::default();
    c.clock.time_scale = 0.25;
    let rot = c.motors.iter_mut().find(|m| m.name == "rot").unwrap();
    rot.velocity = 2.0;
    rot.acceleration = 100.0;
    c
}

/// Starts a tomography scan writing a real file, waits until the rotation is in the middle of the move to
/// the fourth projection, aborts, and returns the outcome plus the rotation motor.
fn abort_mid_rotation(return_rotation: bool) -> (scripting::ScanOutcome, Arc<dyn Motor>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let rot_slot: Arc<Mutex<Option<Arc<dyn Motor>>>> = Arc::default();
    let slot = rot_slot.clone();
    let opts = ScanOptions {
        config: slow_rotation(),
        detector: DetectorChoice::Acquisition,
        output_dir: Some(dir.path().to_path_buf()),
        output: Arc::new(|_: &str| {}),
        on_live_start: Some(Arc::new(move |b: &Beamline| {
            *slot.lock().unwrap() = Some(b.motor("rot").unwrap());
        })),
        ..ScanOptions::default()
    };
    let script = format!(
        "tomo_scan(#{{projections: 50, exposure: 0.01, darks: 2, flats: 2, sample_out: 5.0, \
         return_rotation: {return_rotation}, name: \"aborted\"}});"
    );
    let run = ScanRun::start("abort.rhai", script, opts).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let rot = loop {
        assert!(Instant::now() < deadline, "the scan never reached the fourth projection");
        assert!(!run.is_finished(), "the scan ended before it could be aborted");
        if let Some(rot) = rot_slot.lock().unwrap().clone() {
            let pos = rot.position().unwrap();
            if rot.is_moving().unwrap() && pos > 3.0 * STEP + 0.3 && pos < 4.0 * STEP - 1.0 {
                run.control().abort("test");
                break rot;
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let o = run.wait().unwrap();
    (o, rot, dir)
}

#[test]
fn abort_during_a_move_stops_the_motor_closes_the_shutter_and_the_file() {
    let (o, rot, _dir) = abort_mid_rotation(false);
    assert_eq!(o.status, RunStatus::Aborted, "{}", error_text(&o));
    assert_eq!(o.status.exit_code(), 130);
    assert!(o.moving.is_empty(), "motors still moving: {:?}", o.moving);
    assert!(!rot.is_moving().unwrap());
    // Stopped where it was, between two projection angles: the move really was interrupted.
    let pos = rot.position().unwrap();
    assert!(pos > 3.0 * STEP && pos < 4.0 * STEP, "rotation at {pos}");
    assert!(!o.shutter_open, "the shutter must be closed");
    // The sample motor goes back in whatever happens.
    assert_eq!(o.positions["samx"], 0.0);

    // The file is complete and says it was aborted: 2 darks, 2 flats, 4 projections kept.
    let s = &o.series[0];
    assert_eq!(s.status.as_str(), "aborted");
    let f = read_nxtomo(s.file.as_ref().unwrap());
    assert_eq!(f.status, "aborted");
    assert_eq!(f.end["status"], "aborted");
    assert_eq!(f.end["abort_reason"], "test");
    assert_eq!(f.shape[0], 54, "the file keeps the planned frame count");
    assert_eq!(&f.image_key[..8], &[2, 2, 1, 1, 0, 0, 0, 0]);
    assert!(f.image_key[8..].iter().all(|&k| k == 3), "frames never taken are marked invalid (3)");
    assert_eq!(o.points, 8);
}

#[test]
fn abort_returns_the_rotation_when_the_scan_says_so() {
    let (o, rot, _dir) = abort_mid_rotation(true);
    assert_eq!(o.status, RunStatus::Aborted);
    assert_eq!(rot.position().unwrap(), 0.0);
    assert!(o.moving.is_empty());
    assert!(!o.shutter_open);
    assert_eq!(read_nxtomo(o.series[0].file.as_ref().unwrap()).status, "aborted");
}

#[test]
fn abort_interrupts_a_long_plain_move() {
    let mut cfg = BeamlineConfig::default();
    cfg.clock.time_scale = 1.0;
    let (opts, _, _) = recording(cfg);
    let run = ScanRun::start("m.rhai", "move(samz, 35.0);".into(), opts).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    run.control().abort("operator");
    let t0 = Instant::now();
    let o = run.wait().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5), "abort must not wait for the 18-second move");
    assert_eq!(o.status, RunStatus::Aborted);
    let z = o.positions["samz"];
    assert!(z > 0.0 && z < 35.0, "samz stopped at {z}");
    assert!(o.moving.is_empty());
    assert!(error_text(&o).contains("operator"));
}

#[test]
fn a_script_cannot_catch_an_abort() {
    let (opts, det, _) = recording(zero_time());
    let script = "try { abort(\"enough\"); } catch (e) { print(\"caught\"); }\nmove(samx, 5.0);\n";
    let o = ScanRun::start("a.rhai", script.into(), ScanOptions { preflight: false, ..opts }).unwrap().wait().unwrap();
    assert_eq!(o.status, RunStatus::Aborted);
    assert_eq!(o.positions["samx"], 0.0, "nothing after the abort may run");
    assert!(det.series().is_empty());
}

#[test]
fn pause_holds_at_a_checkpoint_and_resume_finishes_every_point() {
    let (opts, det, _) = recording(zero_time());
    let control = Arc::new(scripting::control::Control::default());
    control.pause();
    let run =
        ScanRun::start_with("p.rhai", "scan(samx, 0.0, 1.0, 20, #{exposure: 0.0});".into(), opts, control.clone())
            .unwrap();
    let p = run.progress().clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !p.paused.load(Ordering::Acquire) {
        assert!(Instant::now() < deadline && !run.is_finished(), "never paused");
        std::thread::sleep(Duration::from_millis(5));
    }
    let before = p.points_done.load(Ordering::Acquire);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(p.points_done.load(Ordering::Acquire), before, "no point may be taken while paused");
    assert!(!run.is_finished());
    control.resume();
    let o = run.wait().unwrap();
    assert_eq!(o.status, RunStatus::Success, "{}", error_text(&o));
    assert_eq!(o.points, 20);
    assert_eq!(det.series()[0].frames.len(), 20);
}
