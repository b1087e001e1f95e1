//! The habits users bring: an unknown function is answered with the closest API names and their
//! signatures, an unknown variable (a misspelt motor) with the list of devices.

mod common;

use common::{error_text, recording, run, zero_time};
use scripting::RunStatus;

fn error_of(script: &str) -> String {
    let (opts, _, _) = recording(zero_time());
    let o = run(script, opts);
    assert_eq!(o.status, RunStatus::ScriptError, "{script}: {}", error_text(&o));
    error_text(&o)
}

#[test]
fn an_unknown_function_gets_the_closest_api_names_with_signatures() {
    let e = error_of("rel_scn(samy, -1, 1, 20);");
    assert!(e.contains("did you mean: rel_scan(m, start, stop, num, opts?)"), "{e}");
    let e = error_of("tomoscan(#{projections: 10});");
    assert!(e.contains("did you mean: tomo_scan(#{projections: n, ...}) | scan(m, start, stop, num, opts?)"), "{e}");
}

#[test]
fn a_known_function_with_wrong_arguments_shows_its_signature() {
    let e = error_of("scan(samx, 0, 1);");
    assert!(e.contains("expected: scan(m, start, stop, num, opts?)"), "{e}");
}

#[test]
fn a_misspelt_motor_lists_the_devices() {
    let e = error_of("move(samxx, 1.0);");
    assert!(e.contains("unknown variable `samxx`; did you mean `samx`?"), "{e}");
    assert!(e.contains("Devices: ") && e.contains("samy") && e.contains("rot") && e.contains("i0"), "{e}");
}

#[test]
fn a_set_name_the_script_never_reads_is_refused_before_anything_moves() {
    let script = r#"let n = param("points", 3); move(samx, 1.0); scan(samx, 0, 1, n);"#;
    for dry_run in [false, true] {
        let (mut opts, det, _) = recording(zero_time());
        opts.dry_run = dry_run;
        opts.params.insert("pionts".into(), "7".into());
        let o = run(script, opts);
        assert_eq!(o.status, RunStatus::Failed, "dry_run {dry_run}: {}", error_text(&o));
        let e = error_text(&o);
        assert!(e.contains("the script never reads --set pionts=... (did you mean `points`?)"), "{e}");
        assert!(e.contains("it reads: points") && e.contains("nothing was moved"), "{e}");
        assert_eq!(det.series().iter().map(|s| s.frames.len()).sum::<usize>(), 0, "no frame taken");
        if !dry_run {
            assert_eq!(o.positions["samx"], 0.0, "the live samx never moved");
        }
    }
    // A name the script does read runs as usual.
    let (mut opts, _, _) = recording(zero_time());
    opts.params.insert("points".into(), "4".into());
    let o = run(script, opts);
    assert_eq!(o.status, RunStatus::Success, "{}", error_text(&o));
    assert_eq!(o.points, 4);
}

#[test]
fn default_scan_names_are_unique_per_day_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let date = scripting::numbering::today().replace('-', "");
    let mut names = Vec::new();
    for _ in 0..2 {
        let (mut opts, _, _) = recording(zero_time());
        opts.output_dir = Some(dir.path().to_path_buf());
        let o = run("scan(samx, 0, 1, 3); scan(samx, 0, 1, 2);", opts);
        assert_eq!(o.status, RunStatus::Success, "{}", error_text(&o));
        names.extend(o.series.iter().map(|s| s.name.clone()));
    }
    let want: Vec<String> = (1..=4).map(|n| format!("scan_{date}_{n:03}")).collect();
    assert_eq!(names, want, "numbers continue across runs in one folder");
    // The table files carry the names, so nothing in the folder is overwritten or suffixed.
    for n in &want {
        assert!(dir.path().join(format!("{n}.h5")).exists(), "{n}.h5 in {:?}", std::fs::read_dir(dir.path()));
    }
}
