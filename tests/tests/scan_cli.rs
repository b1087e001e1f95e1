//! `beamline scan` end to end: the release binary runs the example scripts; the NXtomo files are read back
//! by an independent peer (h5py + hdf5plugin); exit statuses, dry run, Ctrl-C.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tests::{beamline, run_python, workspace_root};

fn example(name: &str) -> PathBuf {
    workspace_root().join("scripting/examples").join(name)
}

fn text(o: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn scan(args: &[&str]) -> Output {
    beamline().arg("scan").args(args).output().expect("run beamline scan")
}

fn check_file(file: &Path, script: &Path) -> serde_json::Value {
    let out = run_python("check_scan_nxtomo.py", &[file.to_str().unwrap(), script.to_str().unwrap()]);
    serde_json::from_str(out.trim()).expect("peer prints JSON")
}

fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

#[test]
fn tomography_example_writes_an_nxtomo_file_read_by_h5py() {
    let dir = tempfile::tempdir().unwrap();
    let script = example("tomo.rhai");
    let o = scan(&[
        script.to_str().unwrap(),
        "--time-scale",
        "0",
        "-o",
        dir.path().to_str().unwrap(),
        "--set",
        "projections=36",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let file = dir.path().join("tomo.h5");
    assert!(String::from_utf8_lossy(&o.stdout).contains(file.to_str().unwrap()), "{}", text(&o));
    let j = check_file(&file, &script);
    assert_eq!(j["status"], "complete");
    assert_eq!(j["shape"][0], 10 + 10 + 36 + 10);
    assert_eq!(j["counts"]["0"], 36);
    assert_eq!(j["counts"]["1"], 20);
    assert_eq!(j["counts"]["2"], 10);
    assert_eq!(j["counts"]["3"], 0);
    let angles: Vec<f64> = serde_json::from_value(j["projection_angles"].clone()).unwrap();
    // The end angle is included by default: 36 projections over 0 -> 180 degrees are 35 steps.
    assert_eq!(angles.len(), 36);
    for (i, a) in angles.iter().enumerate() {
        assert!((a - 180.0 / 35.0 * i as f64).abs() < 1e-9, "angle {i}: {a}");
    }
    // Physics sanity: dark < projection < flat.
    let m = &j["mean_by_key"];
    assert!(m["2"].as_f64() < m["0"].as_f64() && m["0"].as_f64() < m["1"].as_f64(), "{m}");
    assert_eq!(j["sha256_matches"], true);
    assert_eq!(j["script_matches"], true);
    assert_eq!(j["parameters"]["projections"], "36");
    assert_eq!(j["exit_status"], "success");
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let o = scan(&["--dry-run", example("tomo.rhai").to_str().unwrap(), "-o", dir.path().to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for needle in ["dry run (nothing moved)", "tomo_scan", "211 points", "rot", "no violations", "estimated duration"] {
        assert!(out.contains(needle), "missing {needle:?} in {out}");
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn exit_statuses_say_what_went_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let limits = write_script(d, "limits.rhai", "move(samy, 1.0);\nscan(samx, 0.0, 40.0, 5);\n");
    let o = scan(&[limits.to_str().unwrap(), "--time-scale", "0", "-o", d.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(7), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("nothing was moved") && err.contains("samx -> 30") && err.contains("limits.rhai:2:"), "{err}");

    let syntax = write_script(d, "syntax.rhai", "let a = 1;\nlet b = (a + ;\n");
    let o = scan(&[syntax.to_str().unwrap(), "--time-scale", "0"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("syntax.rhai:2:"), "{}", text(&o));

    let device = write_script(d, "device.rhai", "move(samz, 1.0);\nmove(samz, 99.0);\n");
    let o = scan(&[device.to_str().unwrap(), "--time-scale", "0", "--no-preflight"]);
    assert_eq!(o.status.code(), Some(5), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("device: samz"), "{}", text(&o));

    let config = String::from_utf8(scan(&["--print-config"]).stdout).unwrap();
    let small = config.replace("max_operations = 50_000_000", "max_operations = 10_000");
    assert_ne!(small, config, "the printed configuration must hold max_operations");
    let cfg = write_script(d, "small.toml", &small);
    let endless = write_script(d, "endless.rhai", "let i = 0;\nloop { i += 1; }\n");
    let o = scan(&[endless.to_str().unwrap(), "--config", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(6), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("operation limit (10000 operations)"), "{}", text(&o));
}

#[test]
fn ctrl_c_aborts_and_leaves_a_complete_file_marked_aborted() {
    signal_aborts_and_leaves_a_complete_file_marked_aborted("INT");
}

/// `kill` (SIGTERM) and a closed terminal (SIGHUP) do what Ctrl-C does: shutter, motors, file `aborted`.
#[test]
fn sigterm_and_sighup_abort_like_ctrl_c() {
    signal_aborts_and_leaves_a_complete_file_marked_aborted("TERM");
    signal_aborts_and_leaves_a_complete_file_marked_aborted("HUP");
}

fn signal_aborts_and_leaves_a_complete_file_marked_aborted(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let script = example("tomo.rhai");
    let mut child = beamline()
        .args(["scan", script.to_str().unwrap(), "--time-scale", "1", "-o", dir.path().to_str().unwrap()])
        .args(["--set", "projections=400", "--set", "exposure=0.05", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start beamline scan");
    let file = dir.path().join("tomo.h5");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !file.exists() {
        assert!(Instant::now() < deadline, "the scan never created its file");
        assert!(child.try_wait().unwrap().is_none(), "the scan ended before Ctrl-C");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let kill = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().expect("kill");
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "SIG{signal}: {}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let outcome: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(outcome["status"], "aborted");
    assert_eq!(outcome["shutter_open"], false);
    assert_eq!(outcome["moving"].as_array().unwrap().len(), 0);
    assert_eq!(outcome["positions"]["rot"], 0.0, "the rotation returns after an abort");
    assert_eq!(outcome["positions"]["samx"], 0.0);
    let j = check_file(&file, &script);
    assert_eq!(j["status"], "aborted", "SIG{signal}");
    assert_eq!(j["end_status"], "aborted");
    assert_eq!(j["exit_status"], "aborted");
    assert!(j["counts"]["3"].as_u64().unwrap() > 0, "frames never taken are marked invalid");
    assert_eq!(j["counts"]["2"], 10, "the darks were all taken before the abort");
}

/// The live table's rows reach the run log as `scan.row` events carrying every column, and they are the
/// values the file's `/entry/scan` table holds.
#[test]
fn scan_rows_reach_the_run_log_with_the_files_values() {
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let out = dir.path().join("out");
    let o = beamline()
        .env("BEAMLINE_RUN_DIR", &runs)
        .args(["scan", example("step_scan.rhai").to_str().unwrap(), "--time-scale", "0", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let logs: Vec<PathBuf> = std::fs::read_dir(&runs).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    let log = profiling::log::RunLog::read(&logs[0]).unwrap();
    let rows: Vec<serde_json::Value> = log
        .events
        .iter()
        .filter(|e| &*e.name == "scan.row")
        .map(|e| {
            let v = e.fields.iter().find(|(k, _)| &**k == "values").map(|(_, v)| v.clone()).expect("values field");
            serde_json::from_str(v.as_str().expect("values is a JSON text")).unwrap()
        })
        .collect();
    // step_scan.rhai: the edge scan (11 points) first; its table in the file must match the log row by row.
    let f = hdf5::File::open(out.join("edge_samy.h5")).unwrap();
    let samy = f.dataset("entry/scan/samy").unwrap().read_raw::<f64>().unwrap();
    let det = f.dataset("entry/scan/det_total").unwrap().read_raw::<f64>().unwrap();
    assert_eq!(samy.len(), 11);
    assert!(rows.len() >= samy.len(), "{} scan.row events for {} points", rows.len(), samy.len());
    for (i, r) in rows.iter().take(samy.len()).enumerate() {
        assert_eq!(r["point"].as_f64(), Some(i as f64), "{r}");
        assert_eq!(r["samy"].as_f64(), Some(samy[i]), "point {i}: {r}");
        assert_eq!(r["det_total"].as_f64(), Some(det[i]), "point {i}: {r}");
    }
}
