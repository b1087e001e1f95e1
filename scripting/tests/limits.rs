//! A script cannot exhaust the machine or block the beamline: its total memory is bounded, scans with too
//! many points are refused before anything is allocated, and `sleep` is the beamline's (abortable,
//! beamline-clock, validated).

mod common;

use std::time::Duration;

use common::{error_text, recording, run, zero_time};
use scripting::config::BeamlineConfig;
use scripting::{RunStatus, ScanRun};

// What the `beamline` binary installs: the engine can then see the process's memory.
#[global_allocator]
static ALLOC: scripting::memory::CountingAllocator = scripting::memory::CountingAllocator;

#[test]
fn strings_kept_in_a_map_or_an_array_are_stopped_at_the_memory_limit() {
    for body in ["m[\"k\" + i] = big + i;", "a[i] = big + i;"] {
        let mut cfg = zero_time();
        cfg.engine.max_memory_mb = 64;
        let (opts, _, _) = recording(cfg);
        // 512 KiB strings, each under the string limit; 2000 of them would be 1 GiB.
        let script = format!(
            "let big = \"x\"; for i in 0..19 {{ big += big; }}\nlet m = #{{}}; let a = [];\na.pad(2000, 0);\n\
             for i in 0..2000 {{ {body} }}\nprint(\"done\");"
        );
        let o = run(&script, opts);
        assert_eq!(o.status, RunStatus::LimitExceeded, "{body}: {}", error_text(&o));
        assert_eq!(o.status.exit_code(), 6);
        let e = error_text(&o);
        assert!(e.contains("exceeded the memory limit (64 MiB, [engine] max_memory_mb)"), "{e}");
    }
}

#[test]
fn scans_with_too_many_points_are_refused_before_anything_is_allocated() {
    for (script, what) in [
        ("count(1e9);", "count = 1000000000"),
        ("scan(samx, 0, 1, 1e9);", "num = 1000000000"),
        ("grid_scan(samx, 0, 1, 100000, samy, 0, 1, 100000);", "num1 x num2 = 10000000000"),
        ("tomo_scan(#{projections: 2e9});", "projections = 2000000000"),
    ] {
        let (mut opts, det, _) = recording(zero_time());
        opts.dry_run = true;
        let o = run(script, opts);
        assert_eq!(o.status, RunStatus::LimitExceeded, "{script}: {}", error_text(&o));
        let e = error_text(&o);
        assert!(e.contains(&format!("{what} is more than the 1000000 points one scan may have")), "{script}: {e}");
        assert!(det.series().is_empty());
    }
}

#[test]
fn sleep_is_on_the_beamline_clock_and_in_the_estimate() {
    // Real time scale: Rhai's own sleep would block for 7 s and not count; the beamline's is instant in a
    // dry run and adds its time to the estimate.
    let mut cfg = BeamlineConfig::default();
    cfg.clock.time_scale = 1.0;
    let (mut opts, _, _) = recording(cfg);
    opts.dry_run = true;
    let o = run("sleep(5.0); sleep(2);", opts);
    assert_eq!(o.status, RunStatus::Success, "{}", error_text(&o));
    assert!(o.report.duration_s >= 7.0, "{}", o.report.duration_s);
}

#[test]
fn sleep_refuses_negative_non_finite_and_huge_durations() {
    for (arg, shown) in [("-1.0", "-1.0"), ("1e300", "1e300"), ("0.0 / 0.0", "NaN"), ("-3", "-3.0")] {
        let (opts, _, _) = recording(zero_time());
        let o = run(&format!("sleep({arg});"), opts);
        assert_eq!(o.status, RunStatus::ScriptError, "{arg}: {}", error_text(&o));
        let e = error_text(&o);
        assert!(e.contains(&format!("sleep must be seconds >= 0 and below 1e7, got {shown}")), "{arg}: {e}");
    }
}

#[test]
fn an_abort_ends_a_long_sleep() {
    let mut cfg = BeamlineConfig::default();
    cfg.clock.time_scale = 1.0;
    let (mut opts, _, _) = recording(cfg);
    opts.preflight = false;
    let run = ScanRun::start("s.rhai", "sleep(9999999.0);".into(), opts).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    run.control().abort("operator");
    let o = run.wait().unwrap();
    assert_eq!(o.status, RunStatus::Aborted, "{}", error_text(&o));
    assert!(error_text(&o).contains("operator"));
}
