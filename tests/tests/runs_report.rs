//! `beamline runs report` over real run logs made with the real binary: failures grouped by their error
//! class (the root cause of the error chain, not the outer context, no mangled file names), efficiency
//! per run, the parameters that go with slow runs, readable dates.

use std::path::Path;

use serde_json::Value;
use tests::beamline;

fn run_in(dir: &Path, args: &[&str]) -> bool {
    let out = beamline().env("BEAMLINE_RUN_DIR", dir).args(args).output().expect("run beamline");
    out.status.success()
}

#[test]
fn failures_by_root_cause_efficiency_and_the_parameters_of_slow_runs() {
    let runs = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let d = runs.path();
    // Two fast pipelines and one with a 300 ms stall.
    for extra in [&[][..], &[][..], &["--inject-stall-ms", "300"][..]] {
        let mut args = vec!["bench", "trace", "--pipeline-only", "--frames", "100"];
        args.extend_from_slice(extra);
        assert!(run_in(d, &args), "{args:?}");
    }
    // Two reconstructions of missing files (one class), one of a file that is not HDF5 (another).
    let bad = work.path().join("notes.h5");
    std::fs::write(&bad, "not HDF5\n").expect("write");
    for input in [work.path().join("gone/scan1.h5"), work.path().join("scan2.h5"), bad] {
        let out = work.path().join("out");
        let ok = run_in(d, &["recon", input.to_str().expect("utf-8"), "-o", out.to_str().expect("utf-8"), "--quiet"]);
        assert!(!ok, "recon of {} fails", input.display());
    }
    let html = work.path().join("report.html");
    let out = beamline().args(["runs", "report"]).arg(d).arg("-o").arg(&html).output().expect("runs report");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_str(&std::fs::read_to_string(html.with_extension("json")).expect("json"))
        .expect("report JSON");
    let failures = r["failures"].as_array().expect("failures");
    let kinds: Vec<&str> = failures.iter().filter_map(|f| f["kind"].as_str()).collect();
    assert_eq!(kinds.len(), 2, "missing file and not-HDF5 are two classes: {kinds:?}");
    for k in &kinds {
        assert!(!k.starts_with("reconstructing"), "the class is the root cause, not the outer context: {k}");
        assert!(!k.contains("hN") && !k.contains("exited with"), "{k}");
    }
    let missing = failures.iter().find(|f| f["count"] == 2).expect("the two missing files are one class");
    let contexts: Vec<&str> =
        missing["contexts"].as_array().expect("contexts").iter().filter_map(Value::as_str).collect();
    assert_eq!(contexts, ["reconstructing <path>"], "what the runs were doing, paths taken out");
    let other = failures.iter().find(|f| f["count"] == 1).expect("the not-HDF5 file");
    assert!(other["kind"].as_str().unwrap_or("").contains("signature"), "{other}");
    // Efficiency per run: frames/s and CPU per frame of the pipelines; the stall's parameter is slow.
    let benches: Vec<&Value> =
        r["runs"].as_array().expect("runs").iter().filter(|x| x["command"] == "bench trace").collect();
    assert_eq!(benches.len(), 3);
    assert!(benches
        .iter()
        .all(|b| b["frames_per_s"].as_f64() > Some(0.0) && b["cpu_ns_per_frame"].as_f64() > Some(0.0)));
    let params = r["parameters"].as_array().expect("parameters");
    let stall = params.iter().find(|p| p["param"] == "--inject-stall-ms 300").expect("the stall parameter");
    assert!(stall["vs_command"].as_f64().unwrap_or(1.0) < 0.8, "runs with the stall are slower: {stall}");
    let recon_fail = params.iter().find(|p| p["command"] == "recon" && p["param"] == "--quiet").expect("recon param");
    assert_eq!((recon_fail["runs"].as_u64(), recon_fail["failed"].as_u64()), (Some(3), Some(3)));
    let page = std::fs::read_to_string(&html).expect("html");
    assert!(page.contains("Parameters of slow or failing runs") && page.contains("--inject-stall-ms 300"));
    assert!(page.contains(" UTC"), "dates and times are readable");
}

/// Python peer: runs the command in argv[1:] and prints the CPU time (user + system, seconds) the child
/// used, as the kernel accounted it (`getrusage(RUSAGE_CHILDREN)`).
const CPU_OF_CHILD: &str = r#"
import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print(r.returncode, u.ru_utime + u.ru_stime)
"#;

#[test]
fn cpu_seconds_per_slice_match_the_cpu_time_the_kernel_measured() {
    let runs = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    let input = work.path().join("scan.h5");
    // 32 rows: 32 slices of 256 × 256, some seconds of CPU for one thread.
    tests::make_nxtomo(&input, &["--cols", "256", "--rows", "32", "--angles", "360"]);
    let out = std::process::Command::new(tests::python())
        .env("BEAMLINE_RUN_DIR", runs.path())
        .args(["-c", CPU_OF_CHILD])
        .arg(tests::beamline_bin())
        .arg("recon")
        .arg(&input)
        .arg("-o")
        .arg(work.path().join("out"))
        .args(["--backend", "cpu", "--threads", "1", "--quiet"])
        .output()
        .expect("python");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut it = text.split_whitespace();
    assert_eq!(it.next(), Some("0"), "recon succeeds: {text} {}", String::from_utf8_lossy(&out.stderr));
    let measured_s: f64 = it.next().and_then(|v| v.parse().ok()).expect("cpu seconds");
    let html = work.path().join("report.html");
    let rep = beamline().args(["runs", "report"]).arg(runs.path()).arg("-o").arg(&html).output().expect("report");
    assert!(rep.status.success(), "{}", String::from_utf8_lossy(&rep.stderr));
    let r: Value = serde_json::from_str(&std::fs::read_to_string(html.with_extension("json")).expect("json"))
        .expect("report JSON");
    let run = &r["runs"][0];
    assert_eq!(run["command"], "recon", "{run}");
    assert_eq!(run["slices"].as_f64(), Some(32.0), "one slice per row: {run}");
    let per_slice = run["cpu_ns_per_slice"].as_f64().expect("cpu per slice") / 1e9;
    let expected = measured_s / 32.0;
    // The footer is written just before the process exits: its CPU time is the kernel's figure less the
    // exit (a few ms of 32 slices' worth).
    assert!(
        per_slice <= expected * 1.02 && per_slice >= expected * 0.85 - 0.002,
        "report {per_slice:.4} s/slice, kernel {expected:.4} s/slice (total {measured_s:.3} s)"
    );
    assert!(measured_s > 0.2, "the run did enough work to compare ({measured_s} s)");
}

#[test]
fn a_flag_without_value_does_not_take_the_positional_argument_after_it() {
    let runs = tempfile::tempdir().expect("tempdir");
    let work = tempfile::tempdir().expect("tempdir");
    // `--quiet` takes no value: `scan` is recon's input (missing, so the run fails fast), not `--quiet`'s.
    let out = beamline()
        .current_dir(work.path())
        .env("BEAMLINE_RUN_DIR", runs.path())
        .args(["recon", "--quiet", "scan", "-o", "out", "--threads", "2"])
        .output()
        .expect("recon");
    assert!(!out.status.success(), "the input is missing");
    let html = work.path().join("report.html");
    let rep = beamline().args(["runs", "report"]).arg(runs.path()).arg("-o").arg(&html).output().expect("report");
    assert!(rep.status.success(), "{}", String::from_utf8_lossy(&rep.stderr));
    let r: Value = serde_json::from_str(&std::fs::read_to_string(html.with_extension("json")).expect("json"))
        .expect("report JSON");
    let mut params: Vec<&str> =
        r["runs"][0]["params"].as_array().expect("params").iter().filter_map(Value::as_str).collect();
    params.sort();
    assert_eq!(params, ["--quiet", "--threads 2"], "{}", r["runs"][0]);
    let listed: Vec<&str> =
        r["parameters"].as_array().expect("parameters").iter().filter_map(|p| p["param"].as_str()).collect();
    assert!(listed.contains(&"--quiet") && !listed.iter().any(|p| p.contains("scan")), "{listed:?}");
}
