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
