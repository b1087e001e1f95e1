//! Issue 15 §3 end to end: `beamline recon --method sirt|cgls --iterations N [--init fbp] [--nonnegative]` on an
//! h5py-written file with few angles (60 over 180 degrees), read back by tifffile and compared with the phantom;
//! the residual norm of every iteration is in the run log (`iteration` events) and summed up on stdout, the
//! settings are in provenance, and settings that do not fit the method are refused.

use std::path::Path;
use std::process::Output;

use serde_json::Value;
use tests::{beamline, make_nxtomo as make, output_text as text, run_python};

fn recon(log: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = beamline();
    if let Some(l) = log {
        cmd.arg("--log").arg(l);
    }
    cmd.arg("recon").args(args).arg("--quiet").output().expect("run beamline")
}

/// Per-slice RMSE against the phantom (tifffile reads the stack) and the provenance of the first slice.
fn rmse(out: &Path, rows: usize, first: usize) -> (Vec<f64>, Value) {
    let s = run_python("recon_check_tiffs.py", &[out.to_str().unwrap(), "128", &rows.to_string(), &first.to_string()]);
    let v: Value = serde_json::from_str(s.trim()).expect("JSON from recon_check_tiffs.py");
    let r = v["slices"].as_array().expect("slices").iter().map(|s| s["rmse"].as_f64().expect("rmse")).collect();
    let prov = serde_json::from_str(v["provenance"].as_str().expect("ImageDescription")).expect("provenance JSON");
    (r, prov)
}

/// The `iteration` events of a run log, in order: (method, iteration, residual).
fn iterations(log: &Path) -> Vec<(String, u64, f64)> {
    let s = std::fs::read_to_string(log).expect("run log");
    s.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["t"] == "event" && v["n"] == "iteration")
        .map(|v| {
            let f = &v["f"];
            (
                f["method"].as_str().expect("method").to_string(),
                f["iteration"].as_u64().expect("iteration"),
                f["residual"].as_f64().expect("residual"),
            )
        })
        .collect()
}

#[test]
fn sirt_and_cgls_on_60_angles_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("scan60.h5");
    make(&input, &["--angles", "60"]);
    let inp = input.to_str().unwrap();
    let common = ["--center", "63.5", "--slices", "2:4"];

    let fbp = dir.path().join("fbp");
    let o = recon(None, &[&[inp, "-o", fbp.to_str().unwrap()][..], &common].concat());
    assert!(o.status.success(), "{}", text(&o));
    let (rmse_fbp, _) = rmse(&fbp, 2, 2);

    // SIRT, warm-started from FBP, non-negative: better than FBP on 60 angles.
    let sirt = dir.path().join("sirt");
    let log = dir.path().join("sirt.jsonl");
    let args = [inp, "-o", sirt.to_str().unwrap(), "--method", "sirt", "--iterations", "30", "--init", "fbp"];
    let o = recon(Some(&log), &[&args[..], &["--nonnegative"], &common].concat());
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("sirt: 30 iterations on 2 slice(s)"), "{stdout}");
    let (rmse_sirt, prov) = rmse(&sirt, 2, 2);
    for (s, f) in rmse_sirt.iter().zip(&rmse_fbp) {
        assert!(s < f, "SIRT RMSE {s} vs FBP {f}");
    }
    let p = &prov["parameters"];
    assert_eq!(p["method"], "sirt");
    assert_eq!(p["iterative"]["iterations"], 30);
    assert_eq!(p["iterative"]["init"], "fbp");
    assert_eq!(p["iterative"]["nonnegative"], true);
    let steps = iterations(&log);
    assert_eq!(steps.len(), 60, "30 iterations x 2 slices: {steps:?}");
    assert!(steps.iter().all(|(m, _, r)| m == "sirt" && r.is_finite() && *r > 0.0), "{steps:?}");

    // CGLS from zero: the residual never rises, and the slice is close to the phantom.
    let cgls = dir.path().join("cgls");
    let log = dir.path().join("cgls.jsonl");
    let args = [inp, "-o", cgls.to_str().unwrap(), "--method", "cgls", "--iterations", "12"];
    let o = recon(Some(&log), &[&args[..], &common].concat());
    assert!(o.status.success(), "{}", text(&o));
    let (rmse_cgls, prov) = rmse(&cgls, 2, 2);
    assert_eq!(prov["parameters"]["iterative"]["init"], "zero");
    for (c, f) in rmse_cgls.iter().zip(&rmse_fbp) {
        assert!(*c < 1.2 * f, "CGLS RMSE {c} vs FBP {f}");
    }
    let steps = iterations(&log);
    assert_eq!(steps.len(), 24, "12 iterations x 2 slices: {steps:?}");
    for slice in steps.chunks(12) {
        assert_eq!(slice.iter().map(|s| s.1).collect::<Vec<_>>(), (1..=12).collect::<Vec<_>>());
        for w in slice.windows(2) {
            assert!(w[1].2 <= w[0].2 * (1.0 + 1e-6), "CGLS residual rose: {slice:?}");
        }
        assert!(slice[11].2 < 0.2 * slice[0].2, "{slice:?}");
    }
}

#[test]
fn iterative_settings_that_do_not_fit_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("scan.h5");
    make(&input, &["--angles", "30", "--rows", "2"]);
    let out = dir.path().join("out");
    let (inp, o) = (input.to_str().unwrap(), out.to_str().unwrap());
    for (args, says) in [
        (vec!["--iterations", "5"], "--iterations applies to --method sirt or cgls"),
        (vec!["--method", "cgls", "--nonnegative"], "--nonnegative applies to --method sirt"),
        (vec!["--method", "sirt", "--iterations", "0"], "--iterations must be at least 1"),
        (vec!["--method", "sirt", "--backend", "cuda"], "--method sirt runs on the CPU"),
    ] {
        let r = recon(None, &[&[inp, "-o", o, "--center", "63.5"][..], &args].concat());
        assert!(!r.status.success() && text(&r).contains(says), "{args:?}: {}", text(&r));
    }
    assert!(!out.join("slice_00000.tif").exists(), "nothing written for a refused request");
}
