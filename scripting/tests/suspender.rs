//! The beam suspender: the scan holds while the ring current is low and re-takes the interrupted point, so
//! no point is lost or doubled.

mod common;

use common::{error_text, recording, run, zero_time};
use scripting::device::sim::BeamLoss;
use scripting::device::ImageKey;
use scripting::RunStatus;

fn with_losses(losses: &[(f64, f64)]) -> scripting::config::BeamlineConfig {
    let mut c = zero_time();
    c.beam.losses = losses.iter().map(|&(start, duration)| BeamLoss { start, duration }).collect();
    c
}

fn projection_angles(frames: &[scripting::device::FrameRequest]) -> Vec<f64> {
    frames.iter().filter(|f| f.key == ImageKey::Projection).map(|f| f.angle).collect()
}

#[test]
fn beam_loss_suspends_and_resumes_with_no_point_lost_or_doubled() {
    // Each projection is a ~0.14 s move plus a 1 s exposure; three losses in the middle of the scan.
    let (opts, det, lines) = recording(with_losses(&[(10.3, 4.0), (20.7, 1.0), (31.1, 2.5)]));
    let o = run("tomo_scan(#{projections: 36, exposure: 1.0, darks: 0, flats: 0, endpoint: false});", opts);
    assert_eq!(o.status, RunStatus::Success, "{}", error_text(&o));
    assert!(o.suspensions >= 3, "suspensions {}", o.suspensions);
    assert!(o.retakes >= 1, "a loss during an exposure must discard and re-take the frame");
    let series = det.series();
    assert_eq!(series.len(), 1);
    let s = &series[0];
    assert_eq!(s.discarded, o.retakes);
    // Every angle exactly once, in order, with indices 0..36 without gaps.
    let expected: Vec<f64> = (0..36).map(|i| 180.0 * i as f64 / 36.0).collect();
    assert_eq!(projection_angles(&s.frames), expected);
    assert_eq!(s.frames.iter().map(|f| f.index).collect::<Vec<_>>(), (0..36).collect::<Vec<u64>>());
    // The suspended time shows in the beamline time (36 s of exposures + motion + 7.5 s without beam).
    assert!(o.beamline_time.as_secs_f64() > 36.0 + 7.5);
    let l = lines.lock().unwrap();
    assert!(l.iter().any(|x| x.starts_with("suspended:")) && l.iter().any(|x| x.starts_with("resumed:")), "{l:?}");
}

#[test]
fn fly_scan_restarts_the_rotation_from_the_lost_projection() {
    let (opts, det, _) = recording(with_losses(&[(12.05, 3.0)]));
    let o = run("tomo_scan(#{projections: 40, exposure: 0.5, darks: 0, flats: 0, mode: \"fly\"});", opts);
    assert_eq!(o.status, RunStatus::Success, "{}", error_text(&o));
    assert!(o.suspensions >= 1 && o.retakes >= 1, "suspensions {} retakes {}", o.suspensions, o.retakes);
    // The default end-point rule includes 180 degrees: 40 projections are 39 steps.
    let expected: Vec<f64> = (0..40).map(|i| 180.0 / 39.0 * i as f64).collect();
    assert_eq!(projection_angles(&det.series()[0].frames), expected);
}

#[test]
fn without_a_suspender_beam_loss_is_ignored() {
    let mut cfg = with_losses(&[(2.0, 5.0)]);
    cfg.suspender = None;
    let (opts, _, _) = recording(cfg);
    let o = run("count(10, #{exposure: 1.0});", opts);
    assert_eq!(o.status, RunStatus::Success);
    assert_eq!((o.suspensions, o.retakes, o.points), (0, 0, 10));
}
