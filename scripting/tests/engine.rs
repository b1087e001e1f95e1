//! The engine's safety: operation limit, `eval` disabled, error locations, device names, imports.

mod common;

use common::{error_text, recording, run, zero_time};
use scripting::RunStatus;

#[test]
fn infinite_loop_is_stopped_by_the_operation_limit() {
    let mut cfg = zero_time();
    cfg.engine.max_operations = 200_000;
    let (opts, det, _) = recording(cfg);
    let o = run("let x = 0;\nloop {\n    x += 1;\n}\n", opts);
    assert_eq!(o.status, RunStatus::LimitExceeded, "{o:?}");
    assert_eq!(o.status.exit_code(), 6);
    let e = error_text(&o);
    assert!(e.contains("operation limit (200000 operations)"), "{e}");
    assert!(e.contains("endless loop"), "{e}");
    assert!(e.contains("test.rhai:"), "{e}");
    assert!(e.contains("max_operations") || e.contains("[engine]"), "{e}");
    // The preflight dry run caught it: the live beamline never started, nothing was staged.
    assert!(det.series().is_empty());
}

#[test]
fn infinite_loop_inside_a_scan_loop_stops_and_leaves_the_beamline_safe() {
    let mut cfg = zero_time();
    cfg.engine.max_operations = 100_000;
    let (mut opts, det, _) = recording(cfg);
    opts.preflight = false;
    let o = run("open_shutter();\nmove(samx, 3.0);\nwhile true { let y = position(samx); }\n", opts);
    assert_eq!(o.status, RunStatus::LimitExceeded);
    assert!(!o.shutter_open, "the shutter must be closed after the script is stopped");
    assert!(o.moving.is_empty());
    assert!(det.series().is_empty());
}

#[test]
fn eval_is_disabled() {
    let (opts, _, _) = recording(zero_time());
    let o = run("let x = eval(\"40 + 2\");\n", opts);
    assert_ne!(o.status, RunStatus::Success);
    assert!(error_text(&o).contains("eval"), "{}", error_text(&o));
}

#[test]
fn syntax_error_shows_file_line_column_and_the_line() {
    let (opts, _, _) = recording(zero_time());
    let o = run("let a = 1;\nlet b = (a + ;\n", opts);
    assert_eq!(o.status, RunStatus::SyntaxError);
    assert_eq!(o.status.exit_code(), 3);
    let e = o.error.clone().unwrap();
    let at = e.at.clone().unwrap();
    assert_eq!((at.source.as_str(), at.line), ("test.rhai", 2));
    assert_eq!(e.line_text.as_deref(), Some("let b = (a + ;"));
    assert!(error_text(&o).starts_with("test.rhai:2:"), "{}", error_text(&o));
}

#[test]
fn device_error_names_the_device_and_the_line() {
    let (mut opts, _, _) = recording(zero_time());
    opts.preflight = false;
    let o = run("move(samx, 1.0);\n\n    move(samz, 99.0);\n", opts);
    assert_eq!(o.status, RunStatus::DeviceError);
    assert_eq!(o.status.exit_code(), 5);
    let e = o.error.clone().unwrap();
    assert_eq!(e.device.as_deref(), Some("samz"));
    let at = e.at.clone().unwrap();
    assert_eq!((at.line, at.column), (3, 5));
    let text = error_text(&o);
    assert!(text.contains("soft limits [-10, 40]") && text.contains("device: samz"), "{text}");
    assert!(text.contains("move(samz, 99.0);"), "{text}");
    assert_eq!(o.positions["samz"], 0.0, "nothing moved");
}

#[test]
fn unknown_motor_lists_the_motors_that_exist() {
    let (opts, _, _) = recording(zero_time());
    let o = run("move(\"samq\", 1.0);", opts);
    assert_eq!(o.status, RunStatus::DeviceError);
    let e = error_text(&o);
    assert!(e.contains("samq") && e.contains("samx, samy, samz, rot"), "{e}");
}

#[test]
fn errors_inside_functions_show_the_call_chain() {
    let (mut opts, _, _) = recording(zero_time());
    opts.preflight = false;
    let o = run("fn to_height(z) {\n  move(dev::samz, z);\n}\nto_height(1.0);\nto_height(100.0);\n", opts);
    assert_eq!(o.status, RunStatus::DeviceError, "{}", error_text(&o));
    let e = o.error.clone().unwrap();
    assert_eq!(e.at.as_ref().map(|a| a.line), Some(2));
    assert!(e.calls.iter().any(|c| c.contains("to_height") && c.contains("test.rhai:5")), "{:?}", e.calls);
}

#[test]
fn a_misspelt_option_is_an_error_not_ignored() {
    let (opts, _, _) = recording(zero_time());
    let o = run("tomo_scan(#{projections: 10, exposre: 0.1, flats: 0});", opts);
    assert_eq!(o.status, RunStatus::ScriptError);
    let e = error_text(&o);
    assert!(e.contains("unknown option `exposre`") && e.contains("exposure"), "{e}");
}

#[test]
fn parameters_are_typed_like_their_defaults() {
    let (mut opts, _, lines) = recording(zero_time());
    opts.params.insert("n".into(), "7".into());
    let script = "let n = param(\"n\", 3); let x = param(\"x\", 2.5); print(`${n * 2} ${x}`);";
    let o = run(script, opts.clone());
    assert_eq!(o.status, RunStatus::Success, "{}", error_text(&o));
    assert!(lines.lock().unwrap().iter().any(|l| l == "14 2.5"), "{:?}", lines.lock().unwrap());
    assert!(o.unused_params.is_empty());
    // A name the script never reads is refused by the preflight (the messages are checked in habits.rs).
    let mut with_unused = opts.clone();
    with_unused.params.insert("unused".into(), "1".into());
    let o = run(script, with_unused);
    assert_eq!(o.status, RunStatus::Failed, "{}", error_text(&o));
    assert_eq!(o.unused_params, vec!["unused".to_string()]);
    opts.params.insert("n".into(), "seven".into());
    let o = run("let n = param(\"n\", 3);", opts);
    assert_eq!(o.status, RunStatus::ScriptError);
    assert!(error_text(&o).contains("expects an integer"), "{}", error_text(&o));
}

#[test]
fn import_reads_only_the_site_library() {
    let lib = tempfile::tempdir().unwrap();
    std::fs::write(lib.path().join("helpers.rhai"), "fn twice(x) { x * 2 }\nfn to_height(z) { move(dev::samz, z); }\n")
        .unwrap();
    let mut cfg = zero_time();
    cfg.engine.site_library = Some(lib.path().to_path_buf());
    let (opts, _, _) = recording(cfg.clone());
    let o = run("import \"helpers\" as h;\nh::to_height(h::twice(1.5));\n", opts);
    assert_eq!(o.status, RunStatus::Success, "{}", error_text(&o));
    assert_eq!(o.positions["samz"], 3.0);

    let (opts, _, _) = recording(cfg.clone());
    let o = run("import \"../etc/passwd\" as p;\n", opts);
    assert_ne!(o.status, RunStatus::Success);
    assert!(error_text(&o).contains("plain names"), "{}", error_text(&o));

    let (opts, _, _) = recording(zero_time());
    let o = run("import \"helpers\" as h;\n", opts);
    assert_ne!(o.status, RunStatus::Success, "no site library configured: import must fail");
}
