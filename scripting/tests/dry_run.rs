//! Dry runs: what a script would do, and soft-limit violations found before anything moves.

mod common;

use common::{error_text, recording, run, zero_time};
use scripting::RunStatus;

const OUT_OF_LIMITS: &str = "move(samy, 2.0);\nscan(samx, 0.0, 30.0, 7);\nmove(samz, -50.0);\n";

#[test]
fn dry_run_reports_every_soft_limit_violation_and_moves_nothing() {
    let (mut opts, det, _) = recording(zero_time());
    opts.dry_run = true;
    let o = run(OUT_OF_LIMITS, opts);
    assert!(o.dry_run);
    let r = &o.report;
    // samx 25 and 30 exceed [-25, 25] (25 is allowed); samz -50 is below -10.
    let v: Vec<(String, f64, usize)> =
        r.violations.iter().map(|v| (v.motor.clone(), v.target, v.at.as_ref().unwrap().line)).collect();
    assert_eq!(v, vec![("samx".into(), 30.0, 2), ("samz".into(), -50.0, 3)]);
    assert_eq!(r.scans.len(), 1);
    assert_eq!(r.scans[0].points, 7);
    assert_eq!((r.motors["samx"].min, r.motors["samx"].max), (0.0, 30.0));
    assert!(r.duration_s > 0.0);
    let text = r.to_string();
    assert!(text.contains("soft-limit violations (2)") && text.contains("estimated duration"), "{text}");
    // The dry run used its own simulated devices; the live detector was never touched.
    assert!(det.series().is_empty());
}

#[test]
fn live_run_refuses_before_any_motion_when_the_preflight_finds_a_violation() {
    let (opts, det, _) = recording(zero_time());
    let o = run(OUT_OF_LIMITS, opts);
    assert_eq!(o.status, RunStatus::LimitViolation);
    assert_eq!(o.status.exit_code(), 7);
    assert_eq!(o.preflight.as_ref().unwrap().violations.len(), 2);
    // Even the first, valid move(samy, 2.0) did not happen: the live run never started.
    assert_eq!(o.positions["samy"], 0.0);
    assert!(det.series().is_empty());
    assert_eq!(o.points, 0);
}

#[test]
fn a_step_scan_checks_all_its_points_before_moving() {
    let (mut opts, det, _) = recording(zero_time());
    opts.preflight = false;
    let o = run("scan(samx, 0.0, 30.0, 7);", opts);
    assert_eq!(o.status, RunStatus::DeviceError, "{}", error_text(&o));
    assert_eq!(o.positions["samx"], 0.0);
    assert!(det.series().is_empty(), "no series may start for a scan that would leave the limits");
}

#[test]
fn dry_run_estimates_tomography_duration_from_motion_and_exposure() {
    let (mut opts, _, _) = recording(zero_time());
    opts.dry_run = true;
    let o = run("tomo_scan(#{projections: 100, exposure: 0.5, darks: 4, flats: 6, sample_out: 10.0});", opts);
    assert_eq!(o.status, RunStatus::Success, "{}", error_text(&o));
    assert_eq!(o.report.points, 110);
    // 110 exposures of 0.5 s plus 2 ms readout at least; motion adds more.
    assert!(o.report.duration_s > 110.0 * 0.502, "{}", o.report.duration_s);
    // The end angle is included by default: 100 projections from 0 to 180°.
    assert_eq!(o.report.motors["rot"].max, 180.0);
}

#[test]
fn a_bad_series_name_is_found_before_anything_moves() {
    let (opts, det, _) = recording(zero_time());
    let o = run("move(samx, 1.0);\ncount(3, #{name: \"../etc/x\"});\n", opts);
    assert_eq!(o.status, RunStatus::ScriptError);
    let e = error_text(&o);
    assert!(e.contains("option `name`") && e.contains("nothing was moved"), "{e}");
    assert_eq!(o.positions["samx"], 0.0);
    assert!(det.series().is_empty());
}
